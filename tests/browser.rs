//! The web app in a real browser: `tests/browser/web_app.py` drives headless Chromium (Selenium 4
//! and the system chromedriver) against the real binary and a real `redis-server`. It registers,
//! signs in with the keyboard, checks that the session token never reaches a page (HttpOnly,
//! absent from every page source and response body), manages sessions from two browser
//! profiles, mounts cross-site attacks from another origin of the same site (all must be
//! refused), logs out and presses Back, and checks the sign-in form at phone width.
//!
//! Tools: `apt-get install -y redis-server chromium chromium-driver` and `pip install selenium`,
//! or `./test`, which installs them. A missing tool fails the test with that hint; nothing is
//! skipped.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The whole browser run; a healthy one takes a few seconds.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

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

/// Fails unless `python3` can import `module`, naming how to install it.
fn require_python_module(python: &Path, module: &str, install: &str) {
    let imported = Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        imported,
        "the Python module {module} is missing: install it with `{install}` (or run ./test, which installs it)"
    );
}

/// A child process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child leading its own process group (the browser script, with chromedriver and Chromium
/// under it): on drop the whole group is killed, so no browser outlives the test.
struct ProcessGroup(Child);

impl ProcessGroup {
    fn spawn(command: &mut Command) -> std::io::Result<Self> {
        command.process_group(0).spawn().map(Self)
    }

    /// The exit status, or `None` when it did not end within `within` (the group is then killed).
    fn wait_timeout(&mut self, within: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < within {
            match self.0.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(error) => panic!("waiting for the browser script: {error}"),
            }
        }
        self.kill_group();
        None
    }

    fn kill_group(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill_group();
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

/// How long a debug build on a busy machine may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until `GET /readyz` on `addr` answers 200. Fails at once when `process` exits first,
/// and on timeout, with its log and whether Redis answers, so a failure says why.
fn wait_ready(addr: &str, process: &mut Child, log: &Path, redis_addr: &str) {
    let started = Instant::now();
    let report = |what: String| -> String {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        let redis = if answers_ping(redis_addr) { "answers PING" } else { "does not answer PING" };
        format!("{what}; redis-server at {redis_addr} {redis}; sessiond log:\n{log}")
    };
    while started.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = process.try_wait() {
            panic!("{}", report(format!("sessiond exited with {status} before it was ready")));
        }
        if answers_200(addr, "/readyz") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{}", report(format!("sessiond at {addr} was not ready within {READY_TIMEOUT:?}")));
}

/// Whether a Redis server at `addr` answers `PING`.
fn answers_ping(addr: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 5];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG"
}

/// Redis and sessiond on free ports; returns the public and admin base URLs.
fn start_service(dir: &Path) -> (Vec<Proc>, String, String) {
    let redis_server = require_tool("redis-server", "apt-get install -y redis-server");
    let redis_port = free_port();
    let redis = Command::new(redis_server)
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(std::fs::File::create(dir.join("redis.log")).expect("redis log file"))
        .spawn()
        .expect("start redis-server");
    let redis = Proc(redis);
    let (port, admin) = (free_port(), free_port());
    let log_path = dir.join("sessiond.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    // Only what the test sets: nothing from the calling environment changes the run.
    let sessiond = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs([
            ("SESSIOND_REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
            ("SESSIOND_LISTEN", format!("127.0.0.1:{port}")),
            ("SESSIOND_ADMIN_LISTEN", format!("127.0.0.1:{admin}")),
            // Plain http on 127.0.0.1: the cookie is `sid`, without Secure.
            ("SESSIOND_COOKIE_SECURE", "false".to_owned()),
            // Both browser profiles come from one address.
            ("SESSIOND_RATE_LIMIT_IP", "0".to_owned()),
            ("SESSIOND_RATE_LIMIT_LOGIN_IP", "0".to_owned()),
            ("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "0".to_owned()),
            ("SESSIOND_RATE_LIMIT_REGISTER_IP", "0".to_owned()),
            ("SESSIOND_LOGIN_FAILURES", "0".to_owned()),
            // A debug build hashes slowly; this test checks the browser's view, not hashing cost.
            ("SESSIOND_ARGON2_MEMORY_KIB", "256".to_owned()),
            ("SESSIOND_ARGON2_ITERATIONS", "1".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start sessiond");
    let mut sessiond = Proc(sessiond);
    wait_ready(&format!("127.0.0.1:{admin}"), &mut sessiond.0, &log_path, &format!("127.0.0.1:{redis_port}"));
    (vec![sessiond, redis], format!("http://127.0.0.1:{port}"), format!("http://127.0.0.1:{admin}"))
}

/// Copies each line of `from` to the test's output (so it is shown with `--nocapture` and on
/// failure) and returns them all.
fn relay(from: impl std::io::Read + Send + 'static, to_stderr: bool) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    })
}

#[test]
fn a_real_chromium_signs_in_manages_sessions_and_resists_cross_site_requests() {
    let install_browser = "apt-get install -y chromium chromium-driver";
    require_tool("chromium", install_browser);
    require_tool("chromedriver", install_browser);
    let python = require_tool("python3", "apt-get install -y python3");
    require_python_module(&python, "selenium", "pip install selenium");

    let dir = tempfile::tempdir().expect("temp dir");
    let (_service, base_url, admin_url) = start_service(dir.path());

    let mut script = ProcessGroup::spawn(
        Command::new(&python)
            .current_dir(repo_root())
            .arg("tests/browser/web_app.py")
            .args(["--base", &base_url, "--admin", &admin_url])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("run python3 tests/browser/web_app.py");
    let stdout = relay(script.0.stdout.take().expect("stdout"), false);
    let stderr = relay(script.0.stderr.take().expect("stderr"), true);
    let status = script.wait_timeout(RUN_TIMEOUT);
    let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());

    let log = std::fs::read_to_string(dir.path().join("sessiond.log")).unwrap_or_default();
    let report = format!("web_app.py stdout:\n{stdout}\nweb_app.py stderr:\n{stderr}\nsessiond log:\n{log}");
    let Some(status) = status else { panic!("web_app.py did not finish within {RUN_TIMEOUT:?}:\n{report}") };
    assert!(status.success(), "web_app.py failed ({status}):\n{report}");
    assert!(stdout.contains("steps passed"), "web_app.py exited 0 without its summary line:\n{report}");
}
