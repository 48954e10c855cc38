//! Redis at `maxmemory`: with `noeviction` (the supported policy) writes are refused, so logins
//! and registrations answer a fast 503 problem+json, existing sessions keep validating,
//! logouts and revocations either happen or say 503, and everything works again as soon as
//! memory is freed, without a restart. With an evicting policy configured by mistake, start-up
//! warns that sessions can disappear.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sessiond::session::SessionToken;

use crate::helpers::{
    assert_problem, metric_value, read_resp, spawn_app, spawn_app_with, token_of, unique, RedisServer, Resp,
    ServerProcess,
};

/// An idle timeout whose slides (every tenth of it) fall due within the test.
const SLIDING_IDLE: Duration = Duration::from_secs(20);

/// A 503 under OOM must come at once: well within one Redis command timeout plus the (cheap,
/// in tests) password hash, on a loaded 2-core machine.
const FAST_503: Duration = Duration::from_millis(750);

/// A command in the Redis protocol (for pipelining many at once).
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Fill Redis until it refuses writes: 4 KiB filler keys, pipelined, until one is refused with
/// OOM; then, since the filler's own buffers are freed when it disconnects (room for a few more
/// small writes, as do the buffers Redis trims on idle connections), pin `maxmemory` well below
/// what Redis now uses so that it stays full. Returns how many filler keys fitted and the
/// pinned limit.
/// The filler connection's name in `CLIENT LIST`.
const FILLER: &str = "oom-filler";

fn fill_until_full(redis: &RedisServer) -> (usize, u64) {
    let written = fill_until_oom(redis.port);
    // The filler's connection (and its buffers) must be gone before the limit is pinned. It is
    // looked for by name: the instances under test may open connections meanwhile.
    let started = Instant::now();
    while redis.cmd(&["CLIENT", "LIST"]).text().contains(&format!("name={FILLER} ")) {
        assert!(started.elapsed() < Duration::from_secs(5), "the filler's connection never closed");
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..50 {
        let limit = used_memory(redis) - 512 * 1024;
        redis.cmd(&["CONFIG", "SET", "maxmemory", &limit.to_string()]);
        match redis.cmd(&["SET", "filler:probe", "x"]) {
            Resp::Error(e) if e.starts_with("OOM") => return (written, limit),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("Redis kept accepting writes below its maxmemory");
}

/// Write 4 KiB filler keys, pipelined, until Redis refuses one with OOM; how many it took.
fn fill_until_oom(port: u16) -> usize {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    writer.write_all(&encode(&["CLIENT", "SETNAME", FILLER])).expect("name the filler");
    assert!(matches!(read_resp(&mut reader).expect("reply"), Resp::Simple(ok) if ok == "OK"));
    let value = "f".repeat(4096);
    let mut written = 0;
    for batch in 0..1000 {
        let mut out = Vec::new();
        for n in 0..64 {
            out.extend(encode(&["SET", &format!("filler:{batch}:{n}"), &value]));
        }
        writer.write_all(&out).expect("pipeline");
        let mut refused = false;
        for _ in 0..64 {
            match read_resp(&mut reader).expect("reply") {
                Resp::Error(e) if e.starts_with("OOM") => refused = true,
                Resp::Simple(ok) if ok == "OK" => written += 1,
                other => panic!("unexpected reply to SET: {other:?}"),
            }
        }
        if refused {
            return written;
        }
    }
    panic!("Redis never refused a write: is maxmemory set?");
}

fn used_memory(redis: &RedisServer) -> u64 {
    let info = redis.cmd(&["INFO", "memory"]).text();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|n| n.trim().parse().ok()).expect("used_memory")
}

/// The session key of `token`, if Redis still holds it.
fn session_key(redis: &RedisServer, token: &str) -> Option<String> {
    let hash = SessionToken::parse(token).expect("a session token").hash();
    redis.cmd(&["KEYS", &format!("sessiond:*:sess:{}", hash.encoded())]).strings().into_iter().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_logins_fast_keeps_sessions_and_recovers_without_restart() {
    let redis = RedisServer::start();
    // A use slides the idle deadline every 2 s: the validations below are due to write.
    let app = spawn_app_with(Some(&redis), |c| c.idle_timeout = SLIDING_IDLE).await;
    let name = unique("oom");
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(token_of(&app.signup_login(&name).await));
    }
    assert_eq!(app.session_ids(&tokens[0]).await.len(), 4);
    let listed: serde_json::Value = app.get("/v1/sessions", &tokens[3]).await.json().await.expect("json");
    let victim_id = listed["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["session_id"].as_str())
        .expect("the current session")
        .to_owned();

    // Fill Redis to a limit just above what it holds now.
    redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let limit = used_memory(&redis) + 512 * 1024;
    redis.cmd(&["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    let (fillers, _) = fill_until_full(&redis);
    assert!(fillers > 0, "some filler fitted before the limit");
    let sessions_before = redis.keys().iter().filter(|k| k.contains(":sess:")).count();

    // Logins and registrations: 503 problem+json at once, never 500, never hung.
    let mut latencies = Vec::new();
    for n in 0..10 {
        let started = Instant::now();
        let response = app.login_response(&name, crate::helpers::PASSWORD).await;
        latencies.push(started.elapsed());
        let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(problem["type"], "urn:sessiond:problem:unavailable", "login {n}: {problem}");
        let started = Instant::now();
        let response = app.register(&unique("oom-new"), crate::helpers::PASSWORD).await;
        latencies.push(started.elapsed());
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    latencies.sort();
    let (median, max) = (latencies[latencies.len() / 2], latencies[latencies.len() - 1]);
    println!("503 under OOM: median {median:?}, max {max:?} over {} requests", latencies.len());
    assert!(max < FAST_503, "a 503 under OOM took {max:?} (median {median:?})");
    assert_eq!(
        redis.keys().iter().filter(|k| k.contains(":sess:")).count(),
        sessions_before,
        "a refused login left a session behind"
    );

    // Existing sessions keep validating, also when a slide is due and Redis refuses to write it
    // (the read stands; the stored session is unchanged).
    let errors = metric_value(&app.metrics_text().await, "sessiond_redis_errors_total", &[("kind", "other")]);
    assert!(errors >= 20.0, "the refused writes are counted as store errors: {errors}");
    let key = session_key(&redis, &tokens[0]).expect("stored");
    let stored = redis.cmd(&["GET", &key]).text();
    tokio::time::sleep(SLIDING_IDLE / 10 + Duration::from_millis(100)).await;
    for _ in 0..3 {
        for token in &tokens {
            assert_eq!(app.profile_status(token).await, StatusCode::OK);
        }
    }
    assert_eq!(redis.cmd(&["GET", &key]).text(), stored, "a slide was written although Redis is full");

    // A refresh either happens (the old token ends) or says 503 (the old token stays).
    let refresh = app.post("/v1/auth/refresh", &tokens[1]).await;
    let refresh_status = refresh.status();
    match refresh_status {
        StatusCode::OK => {
            let fresh = token_of(&refresh.json().await.expect("json"));
            assert!(session_key(&redis, &tokens[1]).is_none(), "the old token's session is still stored");
            assert!(session_key(&redis, &fresh).is_some(), "the new token's session is not stored");
            tokens[1] = fresh;
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            assert!(session_key(&redis, &tokens[1]).is_some(), "a refused refresh ended the session");
        }
        other => panic!("refresh under OOM: {other}"),
    }

    // A logout and a revocation by id either happen (checked in Redis) or say 503.
    let logout = app.post("/v1/auth/logout", &tokens[2]).await.status();
    assert!(logout == StatusCode::NO_CONTENT || logout == StatusCode::SERVICE_UNAVAILABLE, "logout: {logout}");
    assert_eq!(session_key(&redis, &tokens[2]).is_none(), logout == StatusCode::NO_CONTENT, "logout said {logout}");
    let victim = session_key(&redis, &tokens[3]).expect("stored");
    let revoke = app.delete(&format!("/v1/sessions/{victim_id}"), &tokens[0]).await.status();
    assert!(revoke == StatusCode::NO_CONTENT || revoke == StatusCode::SERVICE_UNAVAILABLE, "revoke: {revoke}");
    assert_eq!(
        redis.cmd(&["EXISTS", &victim]).int() == 0,
        revoke == StatusCode::NO_CONTENT,
        "revocation said {revoke}"
    );
    println!("under OOM: refresh {refresh_status}, logout {logout}, revoke {revoke}");

    // More room (an operator raising maxmemory): everything works again, same process.
    redis.cmd(&["CONFIG", "SET", "maxmemory", &(limit * 4).to_string()]);
    let recovered = Instant::now();
    let fresh = unique("oom-after");
    let r = app.register(&fresh, crate::helpers::PASSWORD).await;
    assert_eq!(r.status(), StatusCode::CREATED, "register after memory was raised");
    let token = token_of(&app.login(&fresh).await);
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    assert_eq!(app.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    println!("recovered {:?} after maxmemory was raised", recovered.elapsed());
    assert_eq!(app.profile_status(&tokens[0]).await, StatusCode::OK, "sessions from before the outage live on");
    assert_ne!(redis.cmd(&["GET", &key]).text(), stored, "once Redis has room, the due slide is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_filler_frees_a_full_redis_for_logins_without_restart() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("oom-del");
    let token = token_of(&app.signup_login(&name).await);
    let limit = used_memory(&redis) + 2 * 1024 * 1024;
    redis.cmd(&["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    let (_, full) = fill_until_full(&redis);
    assert_problem(app.login_response(&name, crate::helpers::PASSWORD).await, StatusCode::SERVICE_UNAVAILABLE).await;
    for key in redis.cmd(&["KEYS", "filler:*"]).strings() {
        redis.cmd(&["DEL", &key]);
    }
    assert!(used_memory(&redis) + 512 * 1024 < full, "deleting the filler freed memory");
    let r = app.login_response(&name, crate::helpers::PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK, "login once the filler is gone");
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
}

/// Wait until the process's standard error contains `needle`; fails after 5 s.
async fn until_logged(server: &ServerProcess, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let stderr = server.stderr();
        if stderr.contains(needle) {
            return stderr;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never logged {needle:?}; stderr:\n{stderr}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_maxmemory_policy_is_warned_about_at_start_up() {
    let redis = RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]);
    let mut server = ServerProcess::start(&redis.url(), &[("SESSIOND_LOG_FORMAT", "json")]);
    server.wait_ready(&reqwest::Client::new()).await;
    let stderr = until_logged(&server, "maxmemory-policy is not noeviction").await;
    let line = stderr.lines().find(|l| l.contains("maxmemory-policy is not noeviction")).expect("the line");
    let log: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(log["level"], "WARN", "{line}");
    assert_eq!(log["policy"], "allkeys-lru", "{line}");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noeviction_is_not_warned_about_and_an_unreadable_policy_is_not_fatal() {
    let good = RedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    // Managed Redis services often refuse CONFIG: here it does not exist at all.
    let locked = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", ""]);
    let client = reqwest::Client::new();
    let vars = [("SESSIOND_LOG_FORMAT", "json"), ("RUST_LOG", "info")];
    let mut fine = ServerProcess::start(&good.url(), &vars);
    let mut unreadable = ServerProcess::start(&locked.url(), &vars);
    fine.wait_ready(&client).await;
    unreadable.wait_ready(&client).await;
    until_logged(&unreadable, "could not read Redis maxmemory-policy").await;
    let body = json!({ "username": unique("locked"), "password": crate::helpers::PASSWORD });
    let r = client.post(unreadable.url("/v1/auth/register")).json(&body).send().await.expect("register");
    assert_eq!(r.status(), StatusCode::CREATED, "an instance that could not read the policy serves");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fine.stderr().contains("maxmemory-policy is not noeviction"), "{}", fine.stderr());
    fine.terminate();
    unreadable.terminate();
}
