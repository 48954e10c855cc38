//! The life of an instance: health and readiness, graceful shutdown (drain, in-flight
//! requests, slow clients), request and header timeouts, and the real binary (configuration
//! errors, SIGTERM, start-up without Redis, the `admin` subcommand).

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// Raw HTTP on a socket, for clients that misbehave on purpose.

/// Wait until nothing accepts connections on `addr` (the listener is closed).
async fn wait_listener_closed(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} still accepts connections after {within:?}");
}

/// Read until the peer closes (EOF or reset); `None` if it is still open after `within`.
async fn read_until_closed(reader: &mut (impl AsyncRead + Unpin), within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Await the serving task with a deadline; it must have returned `Ok(())`.
async fn assert_stops_within(handle: tokio::task::JoinHandle<anyhow::Result<()>>, within: Duration) {
    match tokio::time::timeout(within, handle).await {
        Ok(joined) => joined.expect("the serving task panicked").expect("run_until failed"),
        Err(_) => panic!("the instance did not stop within {within:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Health, readiness, graceful shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_200_with_redis() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let response = app.client.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("json"), json!({ "status": "ok" }));
    let pings = redis.command_calls("ping");
    let response = app.client.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("json"), json!({ "status": "ready" }));
    // Readiness is a real round trip to Redis, not a cached flag.
    assert!(redis.command_calls("ping") > pings, "/readyz did not ping Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_during_the_drain_while_healthz_and_the_api_still_answer() {
    let redis = RedisServer::start();
    let drain = Duration::from_secs(1);
    let mut app = spawn_app_with(Some(&redis), |c| c.shutdown_drain_delay = drain).await;
    let token = token_of(&app.signup_login(&unique("drain")).await);
    let handle = app.take_handle();
    let stopped_at = Instant::now();
    app.stop_signal().send(()).expect("the instance is listening for stop");

    // Readiness is withdrawn at once...
    let deadline = Instant::now() + Duration::from_millis(500);
    let not_ready = loop {
        let response = app.client.get(app.url("/readyz")).send().await.expect("readyz during the drain");
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert!(Instant::now() < deadline, "/readyz still {} after stop", response.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let problem = assert_problem(not_ready, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem["detail"].as_str().unwrap_or_default().contains("shutting down"), "{problem}");

    // ...while liveness and real traffic are still served, on new connections too.
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    assert_eq!(fresh.get(app.url("/healthz")).send().await.expect("healthz").status(), StatusCode::OK);
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    assert_eq!(app.register(&unique("late"), PASSWORD).await.status(), StatusCode::CREATED);
    assert!(stopped_at.elapsed() < drain, "the checks above ran after the drain; the test proves nothing");

    // Then the server stops: not before the drain delay, not much after it.
    assert_stops_within(handle, Duration::from_secs(3)).await;
    let elapsed = stopped_at.elapsed();
    assert!(elapsed >= drain - Duration::from_millis(50), "stopped after {elapsed:?}, before the {drain:?} drain");
    wait_listener_closed(app.addr, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_request_completes_during_shutdown() {
    let redis = RedisServer::start();
    let mut app = spawn_app(Some(&redis)).await; // no drain delay: the listener closes at once
    let user = unique("InFlight");
    let body = json!({ "username": user, "password": PASSWORD }).to_string();
    let (first, second) = body.as_bytes().split_at(body.len() / 2);

    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /v1/auth/register HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        app.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    // `100 Continue` is sent when the handler starts reading the body: the request is in flight.
    let mut buf = Vec::new();
    let interim = tokio::time::timeout(Duration::from_secs(2), read_response(&mut stream, &mut buf))
        .await
        .expect("100 Continue within 2 s")
        .expect("100 Continue");
    assert_eq!(interim.status, 100);
    stream.write_all(first).await.expect("write the first half");

    let handle = app.take_handle();
    app.stop_signal().send(()).expect("stop");
    wait_listener_closed(app.addr, Duration::from_secs(2)).await;
    assert!(!handle.is_finished(), "the server stopped with a request in flight");
    tokio::time::sleep(Duration::from_millis(100)).await;

    stream.write_all(second).await.expect("write the second half");
    let response = tokio::time::timeout(Duration::from_secs(3), read_response(&mut stream, &mut buf))
        .await
        .expect("a response within 3 s")
        .expect("a response");
    assert_eq!(response.status, 201, "{}", response.text());
    let registered: Value = serde_json::from_slice(&response.body).expect("json");
    assert_eq!(registered["username"], user.as_str());
    // The connection is not kept alive past shutdown.
    assert!(read_until_closed(&mut stream, Duration::from_secs(2)).await.is_some(), "connection kept open");
    assert_stops_within(handle, Duration::from_secs(2)).await;
    let user_key = format!("user:{}", user.to_ascii_lowercase());
    assert!(redis.keys().iter().any(|k| k.ends_with(&user_key)), "the registration was not stored: {:?}", redis.keys());
}

/// Connect and start a request head, then keep trickling header lines (every 100 ms, for up
/// to 10 s) without ever finishing it. Returns the read half.
async fn trickling_client(addr: SocketAddr) -> (tokio::net::tcp::OwnedReadHalf, tokio::task::JoinHandle<()>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (reader, mut writer) = stream.into_split();
    writer.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes()).await.expect("write");
    let trickle = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
    (reader, trickle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_headers_is_disconnected_after_the_header_read_timeout() {
    let redis = RedisServer::start();
    let timeout = Duration::from_millis(500);
    let app = spawn_app_with(Some(&redis), |c| c.header_read_timeout = timeout).await;
    let started = Instant::now();
    let (mut reader, trickle) = trickling_client(app.addr).await;

    // Other clients are served meanwhile.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.expect("healthz").status(), StatusCode::OK);

    let received = read_until_closed(&mut reader, Duration::from_secs(3))
        .await
        .expect("the trickling connection was still open after 3 s");
    let elapsed = started.elapsed();
    trickle.abort();
    assert!(elapsed >= timeout - Duration::from_millis(100), "disconnected after {elapsed:?}, before the timeout");
    assert!(elapsed < Duration::from_secs(2), "disconnected only after {elapsed:?}");
    let text = String::from_utf8_lossy(&received);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "the unfinished request was answered: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_headers_does_not_hold_up_shutdown() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(Some(&redis), |c| {
        c.header_read_timeout = Duration::from_millis(500);
        c.shutdown_timeout = Duration::from_secs(30); // so only the header timeout can end it
    })
    .await;
    let (mut reader, trickle) = trickling_client(app.addr).await;
    tokio::time::sleep(Duration::from_millis(150)).await; // the server is reading the head

    let handle = app.take_handle();
    let stopped_at = Instant::now();
    app.stop_signal().send(()).expect("stop");
    assert_stops_within(handle, Duration::from_secs(2)).await;
    assert!(stopped_at.elapsed() < Duration::from_secs(2));
    assert!(read_until_closed(&mut reader, Duration::from_millis(500)).await.is_some(), "the slow connection survived");
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_does_not_hold_up_shutdown() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(Some(&redis), |c| c.shutdown_timeout = Duration::from_secs(30)).await;
    // Connected, accepted, and not a single byte sent.
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let handle = app.take_handle();
    app.stop_signal().send(()).expect("stop");
    assert_stops_within(handle, Duration::from_secs(2)).await;
    assert!(
        read_until_closed(&mut silent, Duration::from_millis(500)).await.is_some(),
        "the silent connection survived"
    );
}

/// Regression: `SESSIOND_HEADER_READ_TIMEOUT` is "a client that has not sent its request
/// headers within this time is disconnected". With hyper-util's `auto` builder, protocol
/// sniffing read the first bytes before hyper's header timer ran, so a client that sent
/// nothing, or only the start of the HTTP/2 preface, kept its connection until shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_disconnected_after_the_header_read_timeout() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.header_read_timeout = Duration::from_millis(500)).await;
    for (what, first_bytes) in [("no bytes", &b""[..]), ("a partial HTTP/2 preface", &b"PRI * HTTP/2.0\r\n"[..])] {
        let mut stream = TcpStream::connect(app.addr).await.expect("connect");
        stream.write_all(first_bytes).await.expect("write");
        let closed = read_until_closed(&mut stream, Duration::from_secs(2)).await;
        assert!(closed.is_some(), "a client that sent {what} was still connected 2 s after a 500 ms header timeout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slower_than_the_request_timeout_is_408() {
    let redis = RedisServer::start();
    let limit = Duration::from_millis(500);
    let app = spawn_app_with(Some(&redis), |c| c.request_timeout = limit).await;
    let stream = TcpStream::connect(app.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/auth/register HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"username\":",
        app.addr
    );
    writer.write_all(head.as_bytes()).await.expect("write head");
    let started = Instant::now();
    // One byte every 100 ms: the 100-byte body would take 10 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let response = tokio::time::timeout(Duration::from_secs(3), read_response(&mut reader, &mut buf))
        .await
        .expect("a response within 3 s")
        .expect("a response");
    let elapsed = started.elapsed();
    trickle.abort();
    assert_eq!(response.status, 408, "{}", response.text());
    assert!(elapsed >= limit - Duration::from_millis(100), "408 after {elapsed:?}, before the limit");
    assert!(elapsed < Duration::from_secs(2), "408 only after {elapsed:?}");
    assert_eq!(response.header("content-type"), Some("application/problem+json"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    let problem: Value = serde_json::from_slice(&response.body).expect("problem json");
    assert_eq!(problem["status"], 408);
    assert_eq!(problem["type"], "urn:sessiond:problem:request-timeout");
    assert!(redis.keys().is_empty(), "a timed-out request wrote {:?}", redis.keys());
    // The instance is fine afterwards.
    assert_eq!(app.register(&unique("after408"), PASSWORD).await.status(), StatusCode::CREATED);
}

// ---------------------------------------------------------------------------------------------
// The real binary.

/// `sessiond` with a clean environment (PATH only) plus `vars`.
fn sessiond(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    // Never collide on the default ports (and, should a bad configuration be accepted by
    // mistake, still start harmlessly).
    command.env("SESSIOND_LISTEN", "127.0.0.1:0");
    command.env("SESSIOND_ADMIN_LISTEN", "127.0.0.1:0");
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// A child process with its output in temp files; killed on drop if still running.
struct Process {
    child: Child,
    stdout: tempfile::NamedTempFile,
    stderr: tempfile::NamedTempFile,
}

impl Process {
    fn spawn(mut command: Command) -> Self {
        let stdout = tempfile::NamedTempFile::new().expect("temp file");
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout.reopen().expect("reopen"))
            .stderr(stderr.reopen().expect("reopen"))
            .spawn()
            .expect("spawn sessiond");
        Self { child, stdout, stderr }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.stdout.path()).expect("read stdout")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).expect("read stderr")
    }

    async fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "sessiond still running after {within:?}; stderr:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill {signal} failed");
    }

    /// Wait until `/healthz` answers 200 on `base`.
    async fn wait_healthy(&mut self, base: &str) {
        self.wait_for_200(base, "/healthz").await;
    }

    /// Wait until `/readyz` answers 200 on `base` (Redis connected).
    async fn wait_ready(&mut self, base: &str) {
        self.wait_for_200(base, "/readyz").await;
    }

    async fn wait_for_200(&mut self, base: &str, path: &str) {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().expect("client");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("sessiond exited with {status} before serving; stderr:\n{}", self.stderr());
            }
            if let Ok(response) = client.get(format!("{base}{path}")).send().await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{path} never answered 200; stderr:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run to completion (at most 10 s).
async fn run(vars: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String, String) {
    let mut command = sessiond(vars);
    command.args(args);
    let mut process = Process::spawn(command);
    let status = process.wait(Duration::from_secs(10)).await;
    (status, process.stdout(), process.stderr())
}

/// Environment of a serving binary: cheap argon2 so start-up is quick in a debug build.
fn serving_env(listen: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SESSIOND_LISTEN", listen.to_owned()),
        ("SESSIOND_ARGON2_MEMORY_KIB", "256".to_owned()),
        ("SESSIOND_ARGON2_ITERATIONS", "1".to_owned()),
        ("SESSIOND_COOKIE_SECURE", "false".to_owned()),
    ]
}

fn spawn_serving(vars: &[(&'static str, String)]) -> Process {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Process::spawn(sessiond(&vars))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_exits_non_zero_with_one_line_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[("SESSIOND_IDLE_TIMEOUT", "banana")], "SESSIOND_IDLE_TIMEOUT"),
        (&[("SESSIOND_IDLE_TIMEOUT", "2h"), ("SESSIOND_ABSOLUTE_TIMEOUT", "1h")], "SESSIOND_IDLE_TIMEOUT"),
        (&[("SESSIOND_REDIS_POOL_SIZE", "0")], "SESSIOND_REDIS_POOL_SIZE"),
        (&[("SESSIOND_REDIS_POOL_SIZE", "many")], "SESSIOND_REDIS_POOL_SIZE"),
        (&[("SESSIOND_REQUEST_TIMEOUT", "0s")], "SESSIOND_REQUEST_TIMEOUT"),
        (&[("SESSIOND_LISTEN", "not-an-address")], "SESSIOND_LISTEN"),
        (&[("SESSIOND_COOKIE_SECURE", "perhaps")], "SESSIOND_COOKIE_SECURE"),
    ];
    for (vars, name) in cases {
        let (status, _, stderr) = run(vars, &[]).await;
        assert!(!status.success(), "{vars:?} was accepted");
        assert!(status.code().is_some(), "{vars:?}: killed by a signal ({status}) instead of exiting");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{vars:?}: expected one line on stderr, got:\n{stderr}");
        assert!(stderr.ends_with('\n'), "{vars:?}: {stderr:?}");
        assert!(lines[0].contains(name), "{vars:?}: the line does not name {name}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_redis_url_is_named_without_printing_its_password() {
    let (status, stdout, stderr) =
        run(&[("SESSIOND_REDIS_URL", "redis://:hunter2secret@127.0.0.1:notaport")], &[]).await;
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("SESSIOND_REDIS_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2secret") && !stdout.contains("hunter2secret"), "the URL's password was printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_binary_with_status_0() {
    let redis = RedisServer::start();
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let mut vars = serving_env(&listen);
    vars.push(("SESSIOND_REDIS_URL", redis.url()));
    let mut process = spawn_serving(&vars);
    process.wait_ready(&base).await;
    // Serve a real request first (register touches Redis).
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({ "username": unique("term"), "password": PASSWORD }))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(!redis.keys().is_empty());

    process.signal("-TERM");
    let status = process.wait(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status}; stderr:\n{}", process.stderr());
    assert!(TcpStream::connect(listen.as_str()).await.is_err(), "still listening after exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_starts_without_redis_and_answers_503_quickly() {
    let dead_redis = format!("redis://127.0.0.1:{}", free_port()); // nothing listens there
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let mut vars = serving_env(&listen);
    vars.push(("SESSIOND_REDIS_URL", dead_redis));
    let mut process = spawn_serving(&vars);
    process.wait_healthy(&base).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");

    let response = client.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;

    let credentials = json!({ "username": unique("noredis"), "password": PASSWORD });
    for path in ["/v1/auth/register", "/v1/auth/login"] {
        let started = Instant::now();
        let response = client.post(format!("{base}{path}")).json(&credentials).send().await.expect("request");
        let elapsed = started.elapsed();
        let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert!(elapsed < Duration::from_secs(1), "{path} took {elapsed:?} to fail");
        assert!(!problem.to_string().contains(PASSWORD));
    }
    // A well-formed token cannot be validated, so it is never accepted.
    let response = client.get(format!("{base}/v1/profile")).bearer_auth("A".repeat(43)).send().await.expect("profile");
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;

    // Still alive, and still stoppable.
    assert_eq!(client.get(format!("{base}/healthz")).send().await.expect("healthz").status(), StatusCode::OK);
    process.signal("-TERM");
    let status = process.wait(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status}; stderr:\n{}", process.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_grant_role_unlocks_the_admin_api() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let admin = unique("Boss");
    let victim = unique("victim");
    let bystander = unique("bystander");
    assert_eq!(app.register(&admin, PASSWORD).await.status(), StatusCode::CREATED);
    let victim_token = token_of(&app.signup_login(&victim).await);
    let bystander_token = token_of(&app.signup_login(&bystander).await);

    // Before the grant, the future admin is a plain user.
    let plain_admin_token = token_of(&app.login(&admin).await);
    let path = format!("/v1/admin/users/{victim}/sessions");
    assert_problem(app.delete(&path, &plain_admin_token).await, StatusCode::FORBIDDEN).await;

    let redis_url = redis.url();
    let (status, stdout, stderr) =
        run(&[("SESSIOND_REDIS_URL", redis_url.as_str())], &["admin", "grant-role", &admin, "admin"]).await;
    assert!(status.success(), "grant-role failed ({status}): {stderr}");
    assert!(stdout.contains("admin") && stdout.contains(&admin), "{stdout}");

    let admin_token = token_of(&app.login(&admin).await);
    let response = app.delete(&path, &admin_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({ "username": victim, "revoked": 1 }));
    assert_problem(app.get("/v1/profile", &victim_token).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.profile_status(&bystander_token).await, StatusCode::OK, "only the target lost its sessions");
    assert_eq!(app.profile_status(&admin_token).await, StatusCode::OK);

    // A plain user is refused, whoever the target is, and revokes nothing.
    let other_path = format!("/v1/admin/users/{admin}/sessions");
    assert_problem(app.delete(&other_path, &bystander_token).await, StatusCode::FORBIDDEN).await;
    assert_problem(app.delete("/v1/admin/users/nobody-at-all/sessions", &bystander_token).await, StatusCode::FORBIDDEN)
        .await;
    assert_eq!(app.profile_status(&admin_token).await, StatusCode::OK);
    // An unknown (or invalid) target is 404 for an admin.
    for target in ["nobody-at-all", "x"] {
        let response = app.delete(&format!("/v1/admin/users/{target}/sessions"), &admin_token).await;
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }

    // grant-role for an unknown user fails and creates nothing.
    let before = redis.keys();
    let ghost = unique("ghost");
    let (status, _, stderr) =
        run(&[("SESSIOND_REDIS_URL", redis_url.as_str())], &["admin", "grant-role", &ghost, "admin"]).await;
    assert!(!status.success(), "grant-role for an unknown user succeeded");
    assert!(stderr.contains(&ghost), "{stderr}");
    let mut after = redis.keys();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before, "grant-role for an unknown user wrote to Redis");
}

/// The port is open before the store is connected: a client that connects the very instant it
/// opens must be served as soon as the store answers, not given a 503 for a store that is a
/// few milliseconds away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connecting_the_instant_the_port_opens_is_served() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let redis = RedisServer::start();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut vars = serving_env(&listen);
    vars.push(("SESSIOND_REDIS_URL", redis.url()));
    let _process = spawn_serving(&vars);
    let started = Instant::now();
    let mut stream = loop {
        if let Ok(stream) = TcpStream::connect(listen.as_str()).await {
            break stream;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the port never opened");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let body = json!({ "username": unique("early"), "password": PASSWORD }).to_string();
    let request = format!(
        "POST /v1/auth/register HTTP/1.1\r\nhost: {listen}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "the first request got:\n{response}");
}
