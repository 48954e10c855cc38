//! Test harness: a real `redis-server` on a free port (killed on drop), sessiond on port 0,
//! and small HTTP/RESP helpers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sessiond::limits::QuotaSpec;
use sessiond::{Application, Config};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Password used by helpers.
pub const PASSWORD: &str = "correct horse battery";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A throwaway `redis-server`: temp dir, no persistence, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Configuration after the defaults (a later directive wins: `--appendonly yes`).
    args: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        Self::start_with_on(port, &[])
    }

    /// With extra configuration (persistence, `maxmemory`, renamed commands).
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_with_on(free_port(), args)
    }

    fn start_with_on(port: u16, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        let mut server = Self { child: None, port, dir, args };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => panic!(
                    "{bin} not found on PATH: these tests need a real Redis. Install it with \
                     `apt-get install -y redis-server` (or run ./test, which installs it), or point \
                     REDIS_SERVER_BIN at a redis-server binary"
                ),
                _ => panic!("cannot start `{bin}`: {e}"),
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        // A restart with persistence answers LOADING while it replays its files.
        while Instant::now() < deadline {
            if matches!(self.try_cmd(&["PING"]), Ok(Resp::Simple(s)) if s == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING within 10 s", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's directory (its data files, when persistence is configured).
    pub fn dir(&self) -> std::path::PathBuf {
        self.dir.path().to_owned()
    }

    /// Kill the server with SIGKILL: nothing is flushed, connections are refused from now on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port and directory: an empty dataset, unless persistence was
    /// configured.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().expect("kill").success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// Freeze the process: connections stay open, nothing answers (a hung Redis).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    pub fn try_cmd(&self, args: &[&str]) -> std::io::Result<Resp> {
        command_on(self.port, args)
    }

    /// Run a command and return its reply.
    pub fn cmd(&self, args: &[&str]) -> Resp {
        self.try_cmd(args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// The keys of sessions and users: every key but the validation cache's flush canaries,
    /// which each instance keeps whatever the traffic (see `store::redis::tracking`).
    pub fn keys(&self) -> Vec<String> {
        self.cmd(&["KEYS", "*"]).strings().into_iter().filter(|key| !key.contains(":flush-canary:")).collect()
    }

    /// Calls of one command since start (`INFO commandstats`).
    pub fn command_calls(&self, command: &str) -> u64 {
        let info = self.cmd(&["INFO", "commandstats"]).text();
        let needle = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
        info.lines()
            .find_map(|line| line.strip_prefix(&needle))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server must be resumed to die cleanly.
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
        self.stop();
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Resp>),
}

impl Resp {
    pub fn text(&self) -> String {
        match self {
            Resp::Simple(s) | Resp::Error(s) | Resp::Bulk(Some(s)) => s.clone(),
            Resp::Int(n) => n.to_string(),
            other => panic!("not text: {other:?}"),
        }
    }
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("not an integer: {other:?}"),
        }
    }
    pub fn strings(&self) -> Vec<String> {
        match self {
            Resp::Array(items) => items.iter().map(Resp::text).collect(),
            other => panic!("not an array: {other:?}"),
        }
    }
}

/// Read one RESP reply.
/// One command on a fresh connection to the Redis at `port`.
pub fn command_on(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = format!("*{}\r\n", args.len());
    for arg in args {
        out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(out.as_bytes())?;
    read_resp(&mut BufReader::new(stream))
}

pub fn read_resp(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    let line = line.trim_end_matches("\r\n");
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad RESP line {line:?}"));
    let (kind, rest) = line.split_at(1.min(line.len()));
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                Resp::Bulk(None)
            } else {
                let mut buf = vec![0u8; usize::try_from(len).map_err(|_| bad())? + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(buf.len() - 2);
                Resp::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..len.max(0) {
                items.push(read_resp(reader)?);
            }
            Resp::Array(items)
        }
        _ => return Err(bad()),
    })
}

/// A configuration for tests: port 0, cheap argon2, non-secure cookies.
pub fn test_config(redis: Option<&RedisServer>) -> Config {
    let mut config = Config::try_from_args(["sessiond"]).unwrap_or_else(|_| panic!("default config"));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin_listen = "127.0.0.1:0".parse().expect("addr");
    config.redis_url = redis.map(RedisServer::url);
    config.cookie_secure = false;
    config.argon2_memory_kib = 256;
    config.argon2_iterations = 1;
    config.shutdown_timeout = Duration::from_secs(5);
    // All test traffic comes from one address: limits are enabled only by the tests of them.
    config.rate_limit_ip = QuotaSpec::Off;
    config.rate_limit_login_ip = QuotaSpec::Off;
    config.rate_limit_login_account = QuotaSpec::Off;
    config.rate_limit_register_ip = QuotaSpec::Off;
    config.login_failures = 0;
    config
}

/// A running sessiond.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(redis: Option<&RedisServer>) -> TestApp {
    spawn_app_with(redis, |_| {}).await
}

pub async fn spawn_app_with(redis: Option<&RedisServer>, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(redis);
    tweak(&mut config);
    let app = spawn_config(config).await;
    if redis.is_some() {
        app.wait_ready().await;
    }
    app
}

/// Start an instance without waiting for its store.
pub async fn spawn_config(config: Config) -> TestApp {
    let app = Application::build(config).await.expect("build app");
    let addr = app.local_addr().expect("addr");
    let admin_addr = app.admin_addr().expect("admin addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    TestApp { addr, admin_addr, client, stop: Some(stop), handle: Some(handle) }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// The Prometheus exposition from the admin listener.
    pub async fn metrics_text(&self) -> String {
        let r = self.client.get(self.admin_url("/metrics")).send().await.expect("scrape");
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.expect("text")
    }

    /// Wait until `/readyz` answers 200 (the Redis pool connects in the background).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("sessiond never became ready");
    }

    /// Ask the instance to stop and wait until it has.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("run");
        }
    }

    pub fn stop_signal(&mut self) -> oneshot::Sender<()> {
        self.stop.take().expect("not yet stopped")
    }

    pub fn take_handle(&mut self) -> JoinHandle<anyhow::Result<()>> {
        self.handle.take().expect("running")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request")
    }

    pub async fn register(&self, username: &str, password: &str) -> Response {
        self.post_json("/v1/auth/register", &json!({ "username": username, "password": password })).await
    }

    pub async fn login_response(&self, username: &str, password: &str) -> Response {
        self.post_json("/v1/auth/login", &json!({ "username": username, "password": password })).await
    }

    /// Register (if needed) and log in; returns the login body.
    pub async fn signup_login(&self, username: &str) -> Value {
        let r = self.register(username, PASSWORD).await;
        assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT, "register: {}", r.status());
        self.login(username).await
    }

    pub async fn login(&self, username: &str) -> Value {
        let r = self.login_response(username, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "login {username}");
        r.json().await.expect("login json")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.expect("request")
    }

    pub async fn post(&self, path: &str, token: &str) -> Response {
        self.client.post(self.url(path)).bearer_auth(token).send().await.expect("request")
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.client.delete(self.url(path)).bearer_auth(token).send().await.expect("request")
    }

    pub async fn profile_status(&self, token: &str) -> StatusCode {
        self.get("/v1/profile", token).await.status()
    }

    pub async fn session_ids(&self, token: &str) -> Vec<String> {
        let r = self.get("/v1/sessions", token).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.expect("json");
        body["sessions"]
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["session_id"].as_str().expect("id").to_owned())
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

pub fn token_of(body: &Value) -> String {
    body["token"].as_str().expect("token").to_owned()
}

/// Assert a problem+json response and return its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], status.as_u16());
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem lacks {field}: {body}");
    }
    body
}

/// Unique usernames per test.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A response read off a raw socket.
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one HTTP/1.1 response (head plus a `Content-Length` body); `buf` keeps what was read
/// past it, so an interim `100 Continue` and the final response can be read in turn.
pub async fn read_response(reader: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> std::io::Result<RawResponse> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before a response head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf.split_off(head_end + 4);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let len: usize = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while rest.len() < len {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed inside a response body"));
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    *buf = rest.split_off(len);
    Ok(RawResponse { status, headers, body: rest })
}

// ---------------------------------------------------------------------------------------------
// Shared by the account, admin, device-lockout, audit and flush tests.

/// How long a change made through one instance may take to reach another instance's cache:
/// room for a loaded test machine, far below the cache's 10 s backstop.
pub const PROPAGATION: Duration = Duration::from_millis(500);

/// The sum of every sample of `name` whose labels include all of `labels` (0 when absent).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
            series_name == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse::<f64>().expect("sample value"))
        .sum()
}

/// Validate `token` on `app` until an answer comes from its validation cache (a hit in
/// `sessiond_validation_cache_lookups_total`): from then on the session is cached there.
pub async fn warm_cache(app: &TestApp, token: &str) {
    let hits = |text: String| metric_value(&text, "sessiond_validation_cache_lookups_total", &[("result", "hit")]);
    let started = Instant::now();
    loop {
        let before = hits(app.metrics_text().await);
        assert_eq!(app.profile_status(token).await, StatusCode::OK, "warming a live session");
        if hits(app.metrics_text().await) > before {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "the session never came from the validation cache");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `GET /v1/profile` with `token` until it answers `want`; how long that took. Fails
/// after `within`.
pub async fn until_profile_status(app: &TestApp, token: &str, want: StatusCode, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = app.profile_status(token).await;
        if status == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "still {status}, not {want}, after {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl TestApp {
    /// A request with an optional bearer token and an optional JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    /// `POST /v1/account/password`.
    pub async fn change_password(&self, token: &str, current: &str, new: &str) -> Response {
        let body = json!({ "current_password": current, "new_password": new });
        self.send(reqwest::Method::POST, "/v1/account/password", Some(token), Some(&body)).await
    }

    /// `DELETE /v1/account`.
    pub async fn delete_account(&self, token: &str, password: &str) -> Response {
        let body = json!({ "password": password });
        self.send(reqwest::Method::DELETE, "/v1/account", Some(token), Some(&body)).await
    }

    /// `/v1/admin/users/{username}{rest}` with `method`, as the holder of `token`.
    pub async fn admin(&self, method: reqwest::Method, username: &str, rest: &str, token: &str) -> Response {
        self.send(method, &format!("/v1/admin/users/{username}{rest}"), Some(token), None).await
    }

    /// The roles `/v1/profile` reports for `token`.
    pub async fn roles(&self, token: &str) -> Value {
        let response = self.get("/v1/profile", token).await;
        assert_eq!(response.status(), StatusCode::OK, "profile");
        let profile: Value = response.json().await.expect("profile json");
        profile["roles"].clone()
    }
}

/// Every `Set-Cookie` header of a response.
pub fn set_cookies(response: &Response) -> Vec<String> {
    response.headers().get_all("set-cookie").iter().map(|v| v.to_str().expect("ascii cookie").to_owned()).collect()
}

/// The `Set-Cookie` header that sets cookie `name`, if any.
pub fn set_cookie(response: &Response, name: &str) -> Option<String> {
    set_cookies(response).into_iter().find(|c| c.starts_with(&format!("{name}=")))
}

/// A finished `sessiond` subcommand.
pub struct CliOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run the real `sessiond` binary with `args`, a clean environment (PATH only) plus `vars`;
/// at most 20 s.
pub async fn sessiond_cli(vars: &[(&str, &str)], args: &[&str]) -> CliOutput {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SESSIOND_LISTEN", "127.0.0.1:0")
        .env("SESSIOND_ADMIN_LISTEN", "127.0.0.1:0")
        .envs(vars.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .unwrap_or_else(|_| panic!("sessiond {args:?} still running after 20 s"))
        .expect("run sessiond");
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `sessiond admin ARGS…` against `redis`; it must succeed. Returns its standard output.
pub async fn admin_cli(redis: &RedisServer, args: &[&str]) -> String {
    let url = redis.url();
    let mut full = vec!["admin"];
    full.extend_from_slice(args);
    let out = sessiond_cli(&[("SESSIOND_REDIS_URL", url.as_str())], &full).await;
    assert!(out.status.success(), "sessiond {full:?} failed ({}): {}", out.status, out.stderr);
    out.stdout
}

/// The real `sessiond` binary serving on free ports (cheap argon2, limits as configured by
/// `vars` over the binary's defaults), standard error kept in a temp file; killed on drop.
pub struct ServerProcess {
    child: Option<Child>,
    pub base: String,
    pub admin_base: String,
    stderr: tempfile::NamedTempFile,
}

impl ServerProcess {
    pub fn start(redis_url: &str, vars: &[(&str, &str)]) -> Self {
        let (port, admin) = (free_port(), free_port());
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SESSIOND_LISTEN", format!("127.0.0.1:{port}"))
            .env("SESSIOND_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("SESSIOND_REDIS_URL", redis_url)
            .env("SESSIOND_COOKIE_SECURE", "false")
            .env("SESSIOND_ARGON2_MEMORY_KIB", "256")
            .env("SESSIOND_ARGON2_ITERATIONS", "1")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().expect("reopen"))
            .spawn()
            .expect("spawn sessiond");
        Self {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            admin_base: format!("http://127.0.0.1:{admin}"),
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the process wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).expect("read stderr")
    }

    /// The process id (to send it a signal).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Wait until `/readyz` answers 200; fails if the process exits first.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("sessiond exited with {status} before it was ready; stderr:\n{}", self.stderr());
            }
            if client.get(self.url("/readyz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(Instant::now() < deadline, "sessiond never became ready; stderr:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The Prometheus exposition from the admin listener.
    pub async fn metrics_text(&self, client: &reqwest::Client) -> String {
        let r = client.get(format!("{}/metrics", self.admin_base)).send().await.expect("scrape");
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.expect("text")
    }

    /// SIGTERM and wait for a clean exit (everything written is flushed by then).
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill -TERM failed");
        let status = child.wait().expect("wait");
        assert!(status.success(), "sessiond exited with {status}; stderr:\n{}", self.stderr());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address works on Linux).
pub fn client_from(ip: &str) -> reqwest::Client {
    let ip: std::net::IpAddr = ip.parse().expect("ip");
    reqwest::Client::builder()
        .local_address(ip)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}
