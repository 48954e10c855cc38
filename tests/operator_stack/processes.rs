//! The processes of the stack: `redis-server` configured as in `docker-compose.yml`,
//! redis_exporter, two sessiond instances and Prometheus with the repository's configuration
//! and rules, each on a free port with its output in a log file, all killed on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::tools::{repo_root, require_pyyaml, require_tool, yaml_file};

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
pub(crate) struct Instance {
    proc: Proc,
    pub(crate) api: String,
    admin: String,
}

/// Every process of the stack. Fields drop in order: Prometheus and the instances go first,
/// the temporary directory last.
pub(crate) struct Stack {
    prometheus: Proc,
    pub(crate) instances: Vec<Instance>,
    exporter: Proc,
    redis: Proc,
    pub(crate) prometheus_url: String,
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
                 in tests/operator_stack/processes.rs and give its local address"
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
    pub(crate) async fn start(http: &reqwest::Client) -> Self {
        let redis_bin = require_tool("redis-server", "apt-get install -y redis-server");
        let prometheus_bin = require_tool("prometheus", "apt-get install -y prometheus");
        // The Redis dashboard reads redis_exporter's metrics.
        let exporter_bin = require_tool("prometheus-redis-exporter", "apt-get install -y prometheus-redis-exporter");
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

    pub(crate) fn ensure_running(&mut self) {
        self.redis.ensure_running();
        self.exporter.ensure_running();
        for instance in &mut self.instances {
            instance.proc.ensure_running();
        }
        self.prometheus.ensure_running();
    }

    /// `sessiond admin grant-role <user> <role>`, with the instances' configuration.
    pub(crate) async fn grant_role(&self, username: &str, role: &str) {
        let mut cmd = tokio::process::Command::from(sessiond_command(self.redis_port));
        let out = cmd.args(["admin", "grant-role", username, role]).output().await.expect("run sessiond admin");
        assert!(
            out.status.success(),
            "sessiond admin grant-role {username} {role} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn log_tails(&self) -> String {
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
