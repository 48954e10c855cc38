//! Instances whose clocks are 30 s apart share one Redis: sessions end when the configured
//! timeouts say, by Redis's clock, whichever instance created, used or checks them.
//!
//! The clocks are moved with libfaketime (`LD_PRELOAD`) on the real binary: one instance runs
//! 30 s ahead, the other 30 s behind. Each instance follows Redis's clock (`TIME`), so neither
//! ends a session early nor lets one live past its deadline.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{unique, RedisServer, ServerProcess, PASSWORD};

/// Where Debian installs libfaketime.
const LIBFAKETIME: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// How far each instance's clock is off, in seconds.
const SKEW_S: i64 = 30;

fn libfaketime() -> &'static str {
    LIBFAKETIME.iter().copied().find(|path| std::path::Path::new(path).exists()).unwrap_or_else(|| {
        panic!(
            "libfaketime not found (looked in {LIBFAKETIME:?}): these tests move an instance's clock \
             with it. Install it with `apt-get install -y faketime` (or run ./test, which installs it)"
        )
    })
}

/// The real binary with its wall clock moved by `offset` (libfaketime syntax: `+30s`, `-30s`).
fn skewed(redis: &RedisServer, offset: &str, idle: &str, absolute: &str) -> ServerProcess {
    let vars = [
        ("LD_PRELOAD", libfaketime()),
        ("FAKETIME", offset),
        // Timers and timeouts run on the monotonic clock: leave it alone.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("SESSIOND_IDLE_TIMEOUT", idle),
        ("SESSIOND_ABSOLUTE_TIMEOUT", absolute),
        ("SESSIOND_LOG_FORMAT", "json"),
        // All traffic comes from one address.
        ("SESSIOND_RATE_LIMIT_IP", "0"),
        ("SESSIOND_RATE_LIMIT_LOGIN_IP", "0"),
        ("SESSIOND_RATE_LIMIT_REGISTER_IP", "0"),
    ];
    ServerProcess::start(&redis.url(), &vars)
}

fn unix_ms(at: SystemTime) -> i64 {
    i64::try_from(at.duration_since(UNIX_EPOCH).expect("after 1970").as_millis()).expect("ms")
}

/// Seconds the instance's clock is ahead of this host's, from its `Date` header (whole seconds).
async fn clock_ahead_s(client: &reqwest::Client, server: &ServerProcess) -> i64 {
    let response = client.get(server.url("/healthz")).send().await.expect("healthz");
    let date = response.headers().get("date").and_then(|d| d.to_str().ok()).expect("a Date header").to_owned();
    let theirs = httpdate_to_unix(&date);
    (theirs - unix_ms(SystemTime::now())).div_euclid(1000)
}

fn httpdate_to_unix(date: &str) -> i64 {
    unix_ms(humantime::parse_rfc3339(&imf_to_rfc3339(date)).expect("an IMF-fixdate"))
}

/// `Sun, 06 Dec 2026 10:00:00 GMT` as RFC 3339.
fn imf_to_rfc3339(date: &str) -> String {
    let parts: Vec<&str> = date.split_whitespace().collect();
    assert_eq!(parts.len(), 6, "an IMF-fixdate: {date}");
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = months.iter().position(|m| *m == parts[2]).expect("a month") + 1;
    format!("{}-{month:02}-{}T{}Z", parts[3], parts[1], parts[4])
}

/// The offset each instance measured to Redis's clock, from its start-up warning.
fn measured_offset_ms(server: &ServerProcess) -> Option<i64> {
    server.stderr().lines().filter(|line| line.contains("differs from Redis")).find_map(|line| {
        let log: serde_json::Value = serde_json::from_str(line).ok()?;
        log["offset_ms"].as_i64()
    })
}

/// Redis's clock in Unix milliseconds.
fn redis_now_ms(redis: &RedisServer) -> i64 {
    let time = redis.cmd(&["TIME"]).strings();
    time[0].parse::<i64>().expect("seconds") * 1000 + time[1].parse::<i64>().expect("micros") / 1000
}

/// The one stored session: its creation time and its deadlines (Unix ms) and the key's TTL.
struct Stored {
    created: i64,
    idle_deadline: i64,
    absolute_deadline: i64,
    pttl: i64,
}

fn stored_session(redis: &RedisServer) -> Stored {
    let keys = redis.cmd(&["KEYS", "sessiond:*:sess:*"]).strings();
    assert_eq!(keys.len(), 1, "one session: {keys:?}");
    let value = redis.cmd(&["GET", &keys[0]]).text();
    let fields: Vec<&str> = value.split('\u{1f}').collect();
    let number = |n: usize| fields[n].parse::<i64>().expect("a time field");
    let created = number(3);
    Stored {
        created,
        idle_deadline: created + number(5),
        absolute_deadline: created + number(6),
        pttl: redis.cmd(&["PTTL", &keys[0]]).int(),
    }
}

async fn wait_for_offsets(fast: &ServerProcess, slow: &ServerProcess) -> (i64, i64) {
    let started = Instant::now();
    loop {
        if let (Some(f), Some(s)) = (measured_offset_ms(fast), measured_offset_ms(slow)) {
            return (f, s);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "an instance 30 s off never reported its offset to Redis's clock; stderr:\n{}\n{}",
            fast.stderr(),
            slow.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Start one instance 30 s ahead and one 30 s behind, check that their clocks really are off
/// and that each measured its offset to Redis's clock to within 100 ms.
async fn skewed_pair(
    redis: &RedisServer,
    client: &reqwest::Client,
    idle: &str,
    absolute: &str,
) -> (ServerProcess, ServerProcess) {
    let mut fast = skewed(redis, &format!("+{SKEW_S}s"), idle, absolute);
    let mut slow = skewed(redis, &format!("-{SKEW_S}s"), idle, absolute);
    fast.wait_ready(client).await;
    slow.wait_ready(client).await;
    let (ahead, behind) = (clock_ahead_s(client, &fast).await, clock_ahead_s(client, &slow).await);
    assert!((SKEW_S - 2..=SKEW_S + 1).contains(&ahead), "the fast instance's clock is {ahead} s ahead");
    assert!((-SKEW_S - 2..=-SKEW_S + 1).contains(&behind), "the slow instance's clock is {behind} s ahead");
    let (fast_offset, slow_offset) = wait_for_offsets(&fast, &slow).await;
    assert!((fast_offset + SKEW_S * 1000).abs() < 100, "fast instance measured {fast_offset} ms");
    assert!((slow_offset - SKEW_S * 1000).abs() < 100, "slow instance measured {slow_offset} ms");
    println!("measured offsets to Redis's clock: fast instance {fast_offset} ms, slow instance {slow_offset} ms");
    (fast, slow)
}

async fn profile(client: &reqwest::Client, server: &ServerProcess, token: &str) -> StatusCode {
    client.get(server.url("/v1/profile")).bearer_auth(token).send().await.expect("profile").status()
}

async fn login(client: &reqwest::Client, server: &ServerProcess, name: &str) -> String {
    let credentials = json!({ "username": name, "password": PASSWORD });
    let response = client.post(server.url("/v1/auth/register")).json(&credentials).send().await.expect("register");
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = client.post(server.url("/v1/auth/login")).json(&credentials).send().await.expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("login json");
    body["token"].as_str().expect("token").to_owned()
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_instances_agree_on_the_idle_deadline() {
    let redis = RedisServer::start();
    let client = reqwest::Client::new();
    let (mut fast, mut slow) = skewed_pair(&redis, &client, "4s", "1m").await;

    // Created by the instance 30 s behind: stored on Redis's clock, not on the instance's.
    let before = redis_now_ms(&redis);
    let token = login(&client, &slow, &unique("skew-idle")).await;
    let t0 = Instant::now();
    let after = redis_now_ms(&redis);
    let stored = stored_session(&redis);
    assert!(
        (before - 50..=after + 50).contains(&stored.created),
        "created at {} by an instance 30 s behind, Redis's clock read {before}..{after}",
        stored.created
    );
    println!(
        "a session created by the slow instance: created {} ms from Redis's clock at login",
        (stored.created - (before + after) / 2)
    );
    assert_eq!(stored.idle_deadline - stored.created, 4_000);
    assert!((3_000..=4_000).contains(&stored.pttl), "the key lives for the idle timeout: {} ms", stored.pttl);

    // The instance 30 s ahead does not take it for expired.
    assert_eq!(profile(&client, &fast, &token).await, StatusCode::OK, "ended early by the fast instance");
    // A use through the slow instance slides it: still live past the first idle deadline.
    sleep_until(t0 + Duration::from_secs(3)).await;
    assert_eq!(profile(&client, &slow, &token).await, StatusCode::OK);
    let slid = stored_session(&redis);
    assert!(slid.idle_deadline > stored.idle_deadline + 2_000, "the slow instance's use slid the idle deadline");
    sleep_until(t0 + Duration::from_secs(6)).await;
    assert_eq!(profile(&client, &fast, &token).await, StatusCode::OK, "ended early after a slow instance's slide");
    let last_use = Instant::now();

    // Unused for the idle timeout: over on both, on time.
    sleep_until(last_use + Duration::from_millis(4_500)).await;
    assert_eq!(profile(&client, &slow, &token).await, StatusCode::UNAUTHORIZED, "lived past its idle deadline");
    assert_eq!(profile(&client, &fast, &token).await, StatusCode::UNAUTHORIZED);
    fast.terminate();
    slow.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_instances_agree_on_the_absolute_deadline() {
    let redis = RedisServer::start();
    let client = reqwest::Client::new();
    let (mut fast, mut slow) = skewed_pair(&redis, &client, "3s", "5s").await;

    // Created by the instance 30 s ahead, then used only through the one 30 s behind.
    let token = login(&client, &fast, &unique("skew-abs")).await;
    let t0 = Instant::now();
    let stored = stored_session(&redis);
    let redis_now = redis_now_ms(&redis);
    assert!(
        (stored.absolute_deadline - redis_now - 5_000).abs() < 300,
        "the absolute deadline is 5 s after login on Redis's clock, not on the fast instance's: {} ms away",
        stored.absolute_deadline - redis_now
    );
    while t0.elapsed() < Duration::from_millis(4_300) {
        assert_eq!(profile(&client, &slow, &token).await, StatusCode::OK, "ended early at {:?}", t0.elapsed());
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let last = stored_session(&redis);
    assert!(
        last.idle_deadline <= last.absolute_deadline && last.pttl <= 1_000,
        "slides never pass the absolute deadline: {} ms left",
        last.pttl
    );
    sleep_until(t0 + Duration::from_millis(5_500)).await;
    assert_eq!(profile(&client, &slow, &token).await, StatusCode::UNAUTHORIZED, "lived past its absolute deadline");
    assert_eq!(profile(&client, &fast, &token).await, StatusCode::UNAUTHORIZED);
    fast.terminate();
    slow.terminate();
}
