//! Slow and many clients against the real binary on a real Redis: connections that send their
//! request headers one byte a second, idle keep-alive connections, and requests whose body
//! trickles in after the headers, all at once and each reconnecting as soon as it is cut,
//! while legitimate requests are timed. The service must cut each kind at its bound (header
//! read, keep-alive and request timeouts), stay within its file descriptors and memory
//! (`/proc/PID/fd`, `VmRSS`), and keep the legitimate p99 under 10× its unloaded figure.
//!
//! The CI run uses a few hundred connections and short timeouts; `scripts/slow-clients.sh`
//! runs 1 000 + 1 000 with the default timeouts. Knobs (environment): `SLOW_CLIENTS_SLOW`,
//! `SLOW_CLIENTS_IDLE`, `SLOW_CLIENTS_BODIES` (connections of each kind),
//! `SLOW_CLIENTS_HEADER_TIMEOUT`, `SLOW_CLIENTS_KEEPALIVE_TIMEOUT`,
//! `SLOW_CLIENTS_REQUEST_TIMEOUT` (the server's bounds), `SLOW_CLIENTS_SECONDS` (how long the
//! load is held), `SESSIOND_BIN` (another build of the binary).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{free_port, read_response, unique, RedisServer, PASSWORD};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn env_number(name: &str, default: usize) -> usize {
    let value = env_or(name, &default.to_string());
    value.parse().unwrap_or_else(|_| panic!("{name}={value}: not a number"))
}

fn env_duration(name: &str, default: &str) -> Duration {
    let value = env_or(name, default);
    humantime::parse_duration(&value).unwrap_or_else(|_| panic!("{name}={value}: not a duration"))
}

/// The soft limit on open files of this process (`/proc/self/limits`).
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits (Linux only)");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .expect("Max open files in /proc/self/limits")
}

/// The real binary on free ports; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: tempfile::NamedTempFile,
}

impl Server {
    fn start(redis_url: &str, vars: &[(&str, String)]) -> Self {
        let (port, admin) = (free_port(), free_port());
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let bin = std::env::var("SESSIOND_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sessiond").to_owned());
        let child = Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SESSIOND_LISTEN", format!("127.0.0.1:{port}"))
            .env("SESSIOND_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("SESSIOND_REDIS_URL", redis_url)
            .env("SESSIOND_COOKIE_SECURE", "false")
            .env("SESSIOND_ARGON2_MEMORY_KIB", "256")
            .env("SESSIOND_ARGON2_ITERATIONS", "1")
            .env("SESSIOND_RATE_LIMIT_IP", "0")
            .env("SESSIOND_RATE_LIMIT_LOGIN_IP", "0")
            .env("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "0")
            .env("SESSIOND_RATE_LIMIT_REGISTER_IP", "0")
            .env("SESSIOND_LOGIN_FAILURES", "0")
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().expect("reopen"))
            .spawn()
            .expect("spawn sessiond");
        Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), stderr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// Open file descriptors.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, Iterator::count)
    }

    /// Resident memory in KiB (`VmRSS`).
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("sessiond exited with {status} before it was ready; stderr:\n{}", self.logs());
            }
            if client.get(self.url("/readyz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(Instant::now() < deadline, "sessiond never became ready; stderr:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    SlowHeaders,
    Idle,
    SlowBody,
}

/// One connection's end: how long it lived in the phase that was timed, and what the server
/// sent (a status, if any) before it closed.
#[derive(Debug)]
struct Cut {
    kind: Kind,
    after: Duration,
    status: Option<u16>,
}

type Cuts = Arc<Mutex<Vec<Cut>>>;

/// Headers one byte a second, the first at once; the server must close the connection.
async fn slow_headers(addr: SocketAddr, token: String, cuts: Cuts) {
    let request = format!("GET /v1/profile HTTP/1.1\r\nhost: sessiond\r\nauthorization: Bearer {token}\r\n\r\n");
    loop {
        // Timed from before the connect (the server's clock starts at accept, later): a cut
        // can look late here, never early.
        let started = Instant::now();
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut buf = [0_u8; 1024];
        let mut sent = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let status = loop {
            tokio::select! {
                read = stream.read(&mut buf) => break match read {
                    Ok(n) if n > 0 => String::from_utf8_lossy(&buf[..n]).split(' ').nth(1).and_then(|s| s.parse().ok()),
                    _ => None,
                },
                _ = tick.tick() => {
                    if sent < request.len() {
                        let _ = stream.write_all(&request.as_bytes()[sent..=sent]).await;
                        sent += 1;
                    }
                }
            }
        };
        cuts.lock().expect("cuts").push(Cut { kind: Kind::SlowHeaders, after: started.elapsed(), status });
    }
}

/// One request on a keep-alive connection, then silence; the server must close it.
async fn idle(addr: SocketAddr, token: String, cuts: Cuts, errors: Arc<Mutex<Vec<String>>>) {
    let request = format!("GET /v1/profile HTTP/1.1\r\nhost: sessiond\r\nauthorization: Bearer {token}\r\n\r\n");
    loop {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Timed from the request (the server's clock starts once it has answered, later).
        let idle_since = Instant::now();
        if stream.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        let mut buf = Vec::new();
        match read_response(&mut stream, &mut buf).await {
            Ok(response) if response.status == 200 => {}
            Ok(response) => {
                errors.lock().expect("errors").push(format!("idle: first request answered {}", response.status))
            }
            Err(e) => errors.lock().expect("errors").push(format!("idle: first request: {e}")),
        }
        let mut rest = [0_u8; 256];
        let status = match stream.read(&mut rest).await {
            Ok(n) if n > 0 => String::from_utf8_lossy(&rest[..n]).split(' ').nth(1).and_then(|s| s.parse().ok()),
            _ => None,
        };
        cuts.lock().expect("cuts").push(Cut { kind: Kind::Idle, after: idle_since.elapsed(), status });
    }
}

/// A login whose headers come at once and whose body then trickles one byte a second; the
/// server must answer 408 and close.
async fn slow_body(addr: SocketAddr, cuts: Cuts) {
    let body = json!({ "username": "slow-body-client", "password": "a password that never arrives" }).to_string();
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nhost: sessiond\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    loop {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Timed from before the headers are sent (the request timeout starts once they are
        // read, later).
        let started = Instant::now();
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut buf = [0_u8; 1024];
        let mut sent = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let status = loop {
            tokio::select! {
                read = stream.read(&mut buf) => break match read {
                    Ok(n) if n > 0 => String::from_utf8_lossy(&buf[..n]).split(' ').nth(1).and_then(|s| s.parse().ok()),
                    _ => None,
                },
                _ = tick.tick() => {
                    if sent < body.len() {
                        let _ = stream.write_all(&body.as_bytes()[sent..=sent]).await;
                        sent += 1;
                    }
                }
            }
        };
        let after = started.elapsed();
        // Then the connection must end.
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await;
        let status = if closed.is_ok() { status } else { Some(0) };
        cuts.lock().expect("cuts").push(Cut { kind: Kind::SlowBody, after, status });
    }
}

/// Legitimate validations from `tasks` concurrent clients for `during`: every latency.
async fn timed_validations(base: &str, token: &str, tasks: usize, during: Duration) -> Vec<Duration> {
    let until = Instant::now() + during;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (url, token) = (format!("{base}/v1/profile"), token.to_owned());
        handles.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                let response = client.get(&url).bearer_auth(&token).send().await.expect("legitimate request");
                assert_eq!(response.status(), StatusCode::OK, "a legitimate validation failed");
                let _ = response.bytes().await;
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.expect("validation task"));
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// min / median / max of the cuts of one kind, and the statuses seen.
fn summary(cuts: &[Cut], kind: Kind) -> (usize, Duration, Duration, Duration, Vec<Option<u16>>) {
    let mut after: Vec<Duration> = cuts.iter().filter(|c| c.kind == kind).map(|c| c.after).collect();
    after.sort();
    let mut statuses: Vec<Option<u16>> = cuts.iter().filter(|c| c.kind == kind).map(|c| c.status).collect();
    statuses.sort_unstable();
    statuses.dedup();
    let n = after.len();
    if n == 0 {
        return (0, Duration::ZERO, Duration::ZERO, Duration::ZERO, statuses);
    }
    (n, after[0], after[n / 2], after[n - 1], statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_at_their_bounds_while_others_are_served() {
    let (n_slow, n_idle, n_body) = (
        env_number("SLOW_CLIENTS_SLOW", 200),
        env_number("SLOW_CLIENTS_IDLE", 200),
        env_number("SLOW_CLIENTS_BODIES", 20),
    );
    let header_timeout = env_duration("SLOW_CLIENTS_HEADER_TIMEOUT", "2s");
    let keepalive_timeout = env_duration("SLOW_CLIENTS_KEEPALIVE_TIMEOUT", "3s");
    let request_timeout = env_duration("SLOW_CLIENTS_REQUEST_TIMEOUT", "3s");
    let hold = env_duration("SLOW_CLIENTS_SECONDS", "7s");
    let connections = n_slow + n_idle + n_body;
    let limit = open_files_limit();
    assert!(
        limit > connections + 200,
        "this test opens {connections} connections but may open only {limit} files: raise the limit (`ulimit -n {}`)",
        connections + 1000
    );

    let redis = RedisServer::start();
    let fmt = |d: Duration| humantime::format_duration(d).to_string();
    let mut server = Server::start(
        &redis.url(),
        &[
            ("SESSIOND_HEADER_READ_TIMEOUT", fmt(header_timeout)),
            ("SESSIOND_KEEPALIVE_TIMEOUT", fmt(keepalive_timeout)),
            ("SESSIOND_REQUEST_TIMEOUT", fmt(request_timeout)),
        ],
    );
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
    server.wait_ready(&client).await;
    let base = server.url("");
    let name = unique("legit");
    let r = client.post(server.url("/v1/auth/register")).json(&json!({"username": name, "password": PASSWORD})).send();
    assert_eq!(r.await.expect("register").status(), StatusCode::CREATED);
    let login = json!({"username": name, "password": PASSWORD, "transport": "bearer"});
    let body: Value =
        client.post(server.url("/v1/auth/login")).json(&login).send().await.expect("login").json().await.expect("json");
    let token = body["token"].as_str().expect("token").to_owned();

    // Unloaded.
    let _ = timed_validations(&base, &token, 4, Duration::from_millis(500)).await; // warm-up
    let (fds_before, rss_before) = (server.fds(), server.rss_kib());
    let unloaded = timed_validations(&base, &token, 4, Duration::from_secs(2)).await;

    // Loaded: every slow client reconnects as soon as it is cut, so the load holds.
    let cuts: Cuts = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..n_idle {
        tasks.push(tokio::spawn(idle(server.addr, token.clone(), cuts.clone(), errors.clone())));
    }
    for _ in 0..n_slow {
        tasks.push(tokio::spawn(slow_headers(server.addr, token.clone(), cuts.clone())));
    }
    for _ in 0..n_body {
        tasks.push(tokio::spawn(slow_body(server.addr, cuts.clone())));
    }
    let sampling = Arc::new(Mutex::new((0_usize, 0_u64)));
    let sampler = {
        let sampling = sampling.clone();
        let pid = server.child.id();
        tokio::spawn(async move {
            loop {
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                {
                    let mut max = sampling.lock().expect("sampling");
                    max.0 = max.0.max(fds);
                    max.1 = max.1.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Let every connection open before timing.
    let ramp = Instant::now();
    while server.fds() < fds_before + connections * 9 / 10 {
        assert!(ramp.elapsed() < Duration::from_secs(20), "only {} fds open after 20 s", server.fds());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramped = ramp.elapsed();
    let loaded = timed_validations(&base, &token, 4, hold).await;
    let (fds_max, rss_max) = *sampling.lock().expect("sampling");
    for task in &tasks {
        task.abort();
    }
    sampler.abort();
    for task in tasks {
        let _ = task.await;
    }
    // Every connection closed on our side: the server's count must come back.
    let settle = Instant::now();
    while server.fds() > fds_before + 5 && settle.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (fds_after, rss_after) = (server.fds(), server.rss_kib());

    let (p50_u, p99_u, max_u) = (percentile(&unloaded, 0.5), percentile(&unloaded, 0.99), percentile(&unloaded, 1.0));
    let (p50_l, p99_l, max_l) = (percentile(&loaded, 0.5), percentile(&loaded, 0.99), percentile(&loaded, 1.0));
    let cuts = std::mem::take(&mut *cuts.lock().expect("cuts"));
    eprintln!(
        "slow clients: {n_slow} slow-header + {n_idle} idle keep-alive + {n_body} slow-body connections (ramp-up {}), \
         held {}; timeouts: header {}, keep-alive {}, request {}",
        ms(ramped),
        fmt(hold),
        fmt(header_timeout),
        fmt(keepalive_timeout),
        fmt(request_timeout)
    );
    eprintln!(
        "server fds: {fds_before} before, {fds_max} max under load, {fds_after} after; RSS: {} MiB before, {} MiB max, \
         {} MiB after",
        rss_before / 1024,
        rss_max / 1024,
        rss_after / 1024
    );
    eprintln!(
        "legitimate validations: unloaded {} requests p50 {} p99 {} max {}; loaded {} requests p50 {} p99 {} max {} \
         (p99 ratio {:.2})",
        unloaded.len(),
        ms(p50_u),
        ms(p99_u),
        ms(max_u),
        loaded.len(),
        ms(p50_l),
        ms(p99_l),
        ms(max_l),
        p99_l.as_secs_f64() / p99_u.as_secs_f64()
    );
    for (kind, bound) in
        [(Kind::SlowHeaders, header_timeout), (Kind::Idle, keepalive_timeout), (Kind::SlowBody, request_timeout)]
    {
        let (n, min, median, max, statuses) = summary(&cuts, kind);
        eprintln!(
            "{kind:?}: {n} cut (bound {}): after min {} median {} max {}; answered {statuses:?}",
            fmt(bound),
            ms(min),
            ms(median),
            ms(max)
        );
    }

    let errors = errors.lock().expect("errors");
    assert!(errors.is_empty(), "idle clients' first requests failed: {:?}", &errors[..errors.len().min(5)]);
    // Each kind cut at its bound: not before (each is timed from a moment before the server's
    // clock starts), and not much after (timer and scheduling slack on a loaded machine; a
    // header or body byte a second never extends it).
    let slack = Duration::from_millis(1500);
    for (kind, bound, statuses) in [
        (Kind::SlowHeaders, header_timeout, vec![None]),
        (Kind::Idle, keepalive_timeout, vec![None]),
        (Kind::SlowBody, request_timeout, vec![Some(408)]),
    ] {
        let (n, min, _, max, seen) = summary(&cuts, kind);
        let expected = match kind {
            Kind::SlowHeaders => n_slow,
            Kind::Idle => n_idle,
            Kind::SlowBody => n_body,
        };
        if hold > bound + slack && expected > 0 {
            assert!(n >= expected, "{kind:?}: only {n} of {expected} connections were cut within {}", fmt(hold));
            assert!(
                min + Duration::from_millis(20) >= bound,
                "{kind:?}: cut after {} already, before {}",
                ms(min),
                fmt(bound)
            );
            assert!(max <= bound + slack, "{kind:?}: one lived {}, past {} + slack", ms(max), fmt(bound));
            assert_eq!(seen, statuses, "{kind:?}: the server answered {seen:?}");
        }
    }
    // File descriptors: one per connection and no more; all given back.
    assert!(fds_max <= fds_before + connections + 50, "{fds_max} fds under load for {connections} connections");
    assert!(fds_after <= fds_before + 5, "{fds_after} fds after the load, {fds_before} before: connections leaked");
    // Memory: bounded per connection (hyper's buffers), well under 64 KiB each.
    let per_connection = (rss_max.saturating_sub(rss_before)) * 1024 / connections as u64;
    eprintln!("memory: {per_connection} bytes of RSS per held connection");
    assert!(per_connection < 64 * 1024, "{per_connection} bytes of RSS per held connection");
    // Legitimate requests keep their latency: p99 under 10× the unloaded figure.
    assert!(p99_l < p99_u * 10, "loaded p99 {} is 10× or more the unloaded {}", ms(p99_l), ms(p99_u));
}
