//! A rolling restart under load: two real `sessiond` processes on one real Redis, behind a
//! real nginx running the shipped configuration (`deploy/nginx/sessiond-auth.conf` and
//! `upstreams.conf`, addresses replaced) as one upstream pair. Client tasks validate, log in
//! and log out through nginx without pause while each instance in turn gets SIGTERM, drains,
//! exits, is started again on the same port and is waited for until nginx sends it traffic
//! again. Every request must succeed, and afterwards every session that was logged in and not
//! logged out must be valid and every logged-out one must stay refused, on both instances.
//!
//! `ROLLING_RESTART_ROUNDS` (default 1: each instance once) and `ROLLING_RESTART_TASKS`
//! (default 8) make longer runs (`scripts/rolling-restart.sh`). nginx is the forward-auth
//! tests' (`nginx.rs`: `NGINX_BIN`, `nginx`, `/usr/sbin/nginx`); without it the test fails and
//! says what to install. `SESSIOND_BIN` runs another build of the binary (a release build).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{free_port, metric_value, unique, RedisServer, PASSWORD};
use crate::nginx::Nginx;

/// How long each instance keeps serving (`/readyz` at 503, `Connection: close` on every
/// response) after SIGTERM, before its listener closes.
const DRAIN: &str = "1s";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

// ---------------------------------------------------------------------------------------------
// sessiond on fixed ports, so that it can be started again where it was.

struct Instance {
    port: u16,
    admin: u16,
    redis_url: String,
    child: Option<Child>,
    stderr: tempfile::NamedTempFile,
    /// Standard error of the runs already stopped.
    past: String,
}

impl Instance {
    fn start(redis_url: &str) -> Self {
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let mut instance = Self {
            port: free_port(),
            admin: free_port(),
            redis_url: redis_url.to_owned(),
            child: None,
            stderr,
            past: String::new(),
        };
        instance.spawn();
        instance
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new().write(true).truncate(true).open(self.stderr.path()).expect("stderr");
        let bin = std::env::var("SESSIOND_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sessiond").to_owned());
        let child = Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("SESSIOND_LOG_FORMAT", "json")
            .env("SESSIOND_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("SESSIOND_ADMIN_LISTEN", format!("127.0.0.1:{}", self.admin))
            .env("SESSIOND_REDIS_URL", &self.redis_url)
            .env("SESSIOND_COOKIE_SECURE", "false")
            .env("SESSIOND_ARGON2_MEMORY_KIB", "256")
            .env("SESSIOND_ARGON2_ITERATIONS", "1")
            .env("SESSIOND_DEVICE_TOKEN_KEY", "rolling-restart-device-token-key-0123456789")
            .env("SESSIOND_RATE_LIMIT_IP", "0")
            .env("SESSIOND_RATE_LIMIT_LOGIN_IP", "0")
            .env("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "0")
            .env("SESSIOND_RATE_LIMIT_REGISTER_IP", "0")
            .env("SESSIOND_LOGIN_FAILURES", "0")
            .env("SESSIOND_SHUTDOWN_DRAIN_DELAY", DRAIN)
            .env("SESSIOND_SHUTDOWN_TIMEOUT", "10s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn sessiond");
        self.child = Some(child);
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn logs(&self) -> String {
        format!("{}{}", self.past, std::fs::read_to_string(self.stderr.path()).unwrap_or_default())
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("sessiond exited with {status} before it was ready; stderr:\n{}", self.logs());
            }
            let ready = client.get(format!("{}/readyz", self.base())).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(Instant::now() < deadline, "sessiond never became ready; stderr:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then wait (off the runtime's workers) for a clean exit; how long it took.
    async fn terminate(&mut self) -> Duration {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill -TERM failed");
        let status = tokio::task::spawn_blocking(move || child.wait().expect("wait")).await.expect("join");
        let took = started.elapsed();
        assert!(status.success(), "sessiond exited with {status} on SIGTERM; stderr:\n{}", self.logs());
        self.past = self.logs();
        took
    }

    /// Requests this run of the instance answered on `route`.
    async fn answered(&self, client: &reqwest::Client, route: &str) -> f64 {
        let Ok(response) = client.get(format!("http://127.0.0.1:{}/metrics", self.admin)).send().await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        metric_value(&text, "sessiond_http_requests_total", &[("route", route)])
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The load.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Validate,
    Login,
    Logout,
    /// A logged-out token, which must stay refused.
    Recheck,
}

struct Sample {
    at: Instant,
    latency: Duration,
    op: Op,
    /// Why it failed: a transport error or an unexpected status.
    error: Option<String>,
}

/// What one client task ends with: its samples and its tokens.
#[derive(Default)]
struct Outcome {
    samples: Vec<Sample>,
    live: Vec<String>,
    ended: Vec<String>,
}

/// xorshift64*: enough to mix the operations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        usize::try_from(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33).expect("fits") % n
    }
}

async fn status_of(request: reqwest::RequestBuilder) -> Result<(StatusCode, Option<Value>), String> {
    let response = request.send().await.map_err(|e| format!("transport: {e:?}"))?;
    let status = response.status();
    let body = if status == StatusCode::OK { response.json::<Value>().await.ok() } else { None };
    Ok((status, body))
}

/// One client: its own user, its own tokens; validations mostly, logins and logouts, and
/// re-checks of logged-out tokens, until `stop`.
async fn client_task(base: String, username: String, seed: u64, stop: Arc<AtomicBool>) -> Outcome {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
    let mut rng = Rng(seed | 1);
    let mut out = Outcome::default();
    while !stop.load(Ordering::Relaxed) {
        let op = match rng.below(20) {
            _ if out.live.is_empty() => Op::Login,
            _ if out.live.len() >= 20 => Op::Logout,
            0 | 1 => Op::Login,
            2 | 3 => Op::Logout,
            4 if !out.ended.is_empty() => Op::Recheck,
            _ => Op::Validate,
        };
        let at = Instant::now();
        let error = match op {
            Op::Login => {
                let body = json!({ "username": username, "password": PASSWORD, "transport": "bearer" });
                match status_of(client.post(format!("{base}/v1/auth/login")).json(&body)).await {
                    Ok((StatusCode::OK, Some(body))) => match body["token"].as_str() {
                        Some(token) => {
                            out.live.push(token.to_owned());
                            None
                        }
                        None => Some("login: no token in the body".to_owned()),
                    },
                    Ok((status, _)) => Some(format!("login: {status}")),
                    Err(e) => Some(format!("login: {e}")),
                }
            }
            Op::Logout => {
                let token = out.live.swap_remove(rng.below(out.live.len()));
                let result = status_of(client.post(format!("{base}/v1/auth/logout")).bearer_auth(&token)).await;
                out.ended.push(token);
                match result {
                    Ok((StatusCode::NO_CONTENT, _)) => None,
                    Ok((status, _)) => Some(format!("logout: {status}")),
                    Err(e) => Some(format!("logout: {e}")),
                }
            }
            Op::Validate | Op::Recheck => {
                let (token, want) = if op == Op::Validate {
                    (&out.live[rng.below(out.live.len())], StatusCode::OK)
                } else {
                    (&out.ended[rng.below(out.ended.len())], StatusCode::UNAUTHORIZED)
                };
                let request =
                    client.get(format!("{base}/v1/profile")).header("accept", "application/json").bearer_auth(token);
                match status_of(request).await {
                    Ok((status, _)) if status == want => None,
                    Ok((status, _)) => Some(format!("{op:?}: {status}, expected {want}")),
                    Err(e) => Some(format!("{op:?}: {e}")),
                }
            }
        };
        out.samples.push(Sample { at, latency: at.elapsed(), op, error });
    }
    out
}

/// One restart: its time window and what it took.
struct Restart {
    instance: usize,
    from: Instant,
    to: Instant,
    drained: Duration,
    ready: Duration,
    in_rotation: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_loses_no_request_and_no_session() {
    let rounds = env_number("ROLLING_RESTART_ROUNDS", 1);
    let tasks = env_number("ROLLING_RESTART_TASKS", 8);
    let redis = RedisServer::start();
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let mut pair = [Instance::start(&redis.url()), Instance::start(&redis.url())];
    for instance in &mut pair {
        instance.wait_ready(&probe).await;
    }
    // The shipped site in front of the pair; its application upstream is not used here.
    let instances: Vec<SocketAddr> = pair.iter().map(|i| SocketAddr::from(([127, 0, 0, 1], i.port))).collect();
    let nginx = Nginx::start(&instances, SocketAddr::from(([127, 0, 0, 1], 9)));
    let base = nginx.url("");

    let mut users = Vec::new();
    for _ in 0..tasks {
        let name = unique("roll");
        let body = json!({ "username": name, "password": PASSWORD });
        let r = probe.post(format!("{base}/v1/auth/register")).json(&body).send().await.expect("register");
        assert_eq!(r.status(), StatusCode::CREATED, "register through nginx");
        users.push(name);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let seed = 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(i as u64 + 1);
            tokio::spawn(client_task(base.clone(), name.clone(), seed, stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut restarts = Vec::new();
    for _ in 0..rounds {
        for (i, instance) in pair.iter_mut().enumerate() {
            let from = Instant::now();
            let drained = instance.terminate().await;
            instance.spawn();
            instance.wait_ready(&probe).await;
            let ready = from.elapsed();
            // nginx leaves an instance out for `fail_timeout` (10 s) after three refused
            // connects: the next one restarts only once this one takes traffic again.
            let taking = instance.answered(&probe, "/v1/profile").await;
            let deadline = Instant::now() + Duration::from_secs(20);
            while instance.answered(&probe, "/v1/profile").await <= taking {
                assert!(Instant::now() < deadline, "nginx sent instance {i} no traffic 20 s after its restart");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let to = Instant::now();
            restarts.push(Restart { instance: i, from, to, drained, ready, in_rotation: to - from });
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.expect("client task"));
    }
    let elapsed = started.elapsed();

    // The figures: the whole run, then each restart's window (SIGTERM → back in rotation).
    let samples: Vec<&Sample> = outcomes.iter().flat_map(|o| &o.samples).collect();
    let errors: Vec<&Sample> = samples.iter().copied().filter(|s| s.error.is_some()).collect();
    let count = |op: Op| samples.iter().filter(|s| s.op == op).count();
    let mut all: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    all.sort();
    eprintln!(
        "rolling restart: {} requests in {:.1} s ({} validations, {} logins, {} logouts, {} re-checks), {} errors, \
         p50 {}, p99 {}, max {}; {tasks} client tasks, {} restarts",
        samples.len(),
        elapsed.as_secs_f64(),
        count(Op::Validate),
        count(Op::Login),
        count(Op::Logout),
        count(Op::Recheck),
        errors.len(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(percentile(&all, 1.0)),
        restarts.len()
    );
    for (n, restart) in restarts.iter().enumerate() {
        let window: Vec<&Sample> =
            samples.iter().copied().filter(|s| s.at >= restart.from && s.at <= restart.to).collect();
        let mut latencies: Vec<Duration> = window.iter().map(|s| s.latency).collect();
        latencies.sort();
        let logins = window.iter().filter(|s| s.op == Op::Login).count();
        eprintln!(
            "restart {} (instance {}): {} requests ({logins} logins), {} errors, p99 {}, max latency {}; \
             SIGTERM to exit {}, to ready {}, to back in rotation {}",
            n + 1,
            restart.instance,
            window.len(),
            window.iter().filter(|s| s.error.is_some()).count(),
            ms(percentile(&latencies, 0.99)),
            ms(percentile(&latencies, 1.0)),
            ms(restart.drained),
            ms(restart.ready),
            ms(restart.in_rotation),
        );
    }
    let queued: Vec<String> = pair
        .iter()
        .flat_map(|i| i.logs().lines().filter(|l| l.contains("listener closed")).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    // `"queued":N` in "listener closed" lines: connections taken from the accept queue at close.
    let accepted_at_close: usize = queued
        .iter()
        .filter_map(|line| line.split("\"queued\":").nth(1))
        .filter_map(|rest| {
            rest.trim_start_matches(|c: char| !c.is_ascii_digit()).split(|c: char| !c.is_ascii_digit()).next()
        })
        .filter_map(|digits| digits.parse::<usize>().ok())
        .sum();
    let refused = nginx.logs().matches("Connection refused").count();
    eprintln!(
        "nginx: {refused} refused connects (retried on the other instance); {} listener closes, \
         {accepted_at_close} connections accepted from the queue at close and served",
        queued.len()
    );
    if !errors.is_empty() {
        let first: Vec<String> = errors
            .iter()
            .take(10)
            .map(|s| {
                format!("{:?} at +{} ms: {}", s.op, (s.at - started).as_millis(), s.error.as_deref().unwrap_or(""))
            })
            .collect();
        let nginx_logs = nginx.logs();
        let nginx_errors: Vec<&str> =
            nginx_logs.lines().filter(|l| l.contains("[error]") && !l.contains("Connection refused")).collect();
        panic!(
            "{} of {} requests failed during the rolling restart; first:\n{}\nnginx errors:\n{}",
            errors.len(),
            samples.len(),
            first.join("\n"),
            nginx_errors.join("\n")
        );
    }
    assert!(samples.len() > 100 * restarts.len(), "too little load to mean anything: {} requests", samples.len());

    // No session lost, none resurrected: asked of each instance directly.
    let (mut live, mut ended) = (0, 0);
    for outcome in &outcomes {
        for token in &outcome.live {
            for instance in &pair {
                let status = probe
                    .get(format!("{}/v1/profile", instance.base()))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("profile")
                    .status();
                assert_eq!(status, StatusCode::OK, "a session logged in and never logged out was lost");
            }
            live += 1;
        }
        for token in &outcome.ended {
            for instance in &pair {
                let status = probe
                    .get(format!("{}/v1/profile", instance.base()))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("profile")
                    .status();
                assert_eq!(status, StatusCode::UNAUTHORIZED, "a logged-out session came back");
            }
            ended += 1;
        }
    }
    eprintln!("sessions afterwards: {live} live and valid on both instances, {ended} logged out and refused on both");
    assert!(ended > 0 && live > 0, "the load logged nobody in and out");
}

/// What the rolling restart relies on, one connection at a time: while an instance drains,
/// every response (on a connection kept alive from before, and on a new one) is sent with
/// `Connection: close` and ends its connection, so a proxy retires its pooled connections by
/// reading that header, never by a close it could race with a request.
/// Send `request`, read the 200 answer: its `Connection` header.
async fn exchange(stream: &mut tokio::net::TcpStream, request: &str) -> Option<String> {
    use tokio::io::AsyncWriteExt as _;
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let response = crate::helpers::read_response(stream, &mut buf).await.expect("a response");
    assert_eq!(response.status, 200, "{}", response.text());
    response.header("connection").map(str::to_owned)
}

/// The server ends the connection within a second.
async fn closes(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt as _;
    let mut rest = [0_u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "the connection stayed open after `Connection: close`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_drain_every_response_closes_its_connection() {
    let redis = RedisServer::start();
    let drain = Duration::from_secs(2);
    let mut app = crate::helpers::spawn_app_with(Some(&redis), |c| c.shutdown_drain_delay = drain).await;
    let token = crate::helpers::token_of(&app.signup_login(&unique("drainclose")).await);
    let request = format!("GET /v1/profile HTTP/1.1\r\nhost: sessiond\r\nauthorization: Bearer {token}\r\n\r\n");
    let mut kept = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    assert_eq!(exchange(&mut kept, &request).await, None, "before the drain, connections are kept alive");

    let handle = app.take_handle();
    let stopped_at = Instant::now();
    app.stop_signal().send(()).expect("stop");
    while app.client.get(app.url("/readyz")).send().await.expect("readyz").status() != StatusCode::SERVICE_UNAVAILABLE {
        assert!(stopped_at.elapsed() < Duration::from_millis(500), "readiness not withdrawn");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(exchange(&mut kept, &request).await.as_deref(), Some("close"), "kept-alive connection during the drain");
    closes(kept).await;
    let mut fresh = tokio::net::TcpStream::connect(app.addr).await.expect("connect during the drain");
    assert_eq!(exchange(&mut fresh, &request).await.as_deref(), Some("close"), "new connection during the drain");
    closes(fresh).await;
    assert!(stopped_at.elapsed() < drain, "the checks ran after the drain; the test proves nothing");
    tokio::time::timeout(Duration::from_secs(5), handle).await.expect("stopped").expect("join").expect("run");
}
