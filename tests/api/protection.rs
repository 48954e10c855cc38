//! Rate limits and brute-force protection, over real HTTP: headers, independence of clients,
//! trusted proxies, the shared per-account guard, and load shedding of password hashing.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::{Response, StatusCode};
use serde_json::json;
use sessiond::limits::QuotaSpec;

use crate::helpers::*;

fn quota(text: &str) -> QuotaSpec {
    text.parse().expect("quota")
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address works on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    let ip: IpAddr = ip.parse().expect("ip");
    reqwest::Client::builder().local_address(ip).build().expect("client")
}

fn header(r: &Response, name: &str) -> String {
    r.headers().get(name).unwrap_or_else(|| panic!("{name} missing")).to_str().expect("ascii").to_owned()
}

fn rate_limited_total(metrics: &str, limiter: &str) -> u64 {
    let prefix = format!("sessiond_rate_limited_total{{limiter=\"{limiter}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.parse().expect("number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_quota_gets_429_with_standard_headers_then_recovers() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.rate_limit_ip = quota("1/s burst 3")).await;
    let token = token_of(&app.signup_login("bursty").await); // 2 requests of the burst of 3

    let allowed = app.get("/v1/profile", &token).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(header(&allowed, "ratelimit-policy"), "\"ip\";q=3;w=3");
    assert!(header(&allowed, "ratelimit").starts_with("\"ip\";r=0;t="), "{}", header(&allowed, "ratelimit"));

    let refused = app.get("/v1/profile", &token).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&refused, "retry-after").parse().expect("whole seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(header(&refused, "ratelimit-policy"), "\"ip\";q=3;w=3");
    assert_eq!(header(&refused, "ratelimit"), format!("\"ip\";r=0;t={retry}"));
    let body = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "urn:sessiond:problem:rate-limited");

    // Probes and the admin listener are never limited.
    for _ in 0..5 {
        assert_eq!(app.client.get(app.url("/healthz")).send().await.expect("send").status(), StatusCode::OK);
        assert_eq!(app.client.get(app.url("/readyz")).send().await.expect("send").status(), StatusCode::OK);
    }
    let metrics = app.metrics_text().await;
    assert_eq!(rate_limited_total(&metrics, "ip"), 1);

    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(app.profile_status(&token).await, StatusCode::OK, "allowed again after Retry-After");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_addresses_are_independent_and_spoofed_headers_change_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.rate_limit_ip = quota("1/m burst 2")).await;
    let a = client_from("127.0.0.2");
    let b = client_from("127.0.0.3");
    let status = |client: &reqwest::Client, xff: Option<String>| {
        let mut request = client.get(app.url("/v1/profile"));
        if let Some(xff) = xff {
            request = request.header("x-forwarded-for", xff);
        }
        async move { request.send().await.expect("send").status() }
    };
    // Unauthenticated calls still count against the address.
    assert_eq!(status(&a, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&a, None).await, StatusCode::UNAUTHORIZED);
    // A fresh X-Forwarded-For per request from an untrusted peer does not buy a fresh quota.
    for n in 0..3 {
        assert_eq!(status(&a, Some(format!("198.51.100.{n}"))).await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(status(&b, None).await, StatusCode::UNAUTHORIZED, "another address has its own quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_are_honoured_from_trusted_proxies_only() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.rate_limit_ip = quota("1/m burst 1");
        c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr"), "10.0.0.0/8".parse().expect("cidr")];
    })
    .await;
    let proxy = client_from("127.0.0.1");
    let via = |xff: &'static str| {
        let request = proxy.get(app.url("/v1/profile")).header("x-forwarded-for", xff);
        async move { request.send().await.expect("send").status() }
    };
    // The right-most untrusted hop is the client: 203.0.113.5 here, whatever the client claims.
    assert_eq!(via("1.1.1.1, 203.0.113.5, 10.1.2.3").await, StatusCode::UNAUTHORIZED);
    assert_eq!(via("2.2.2.2, 203.0.113.5").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(via("203.0.113.6").await, StatusCode::UNAUTHORIZED, "a different client behind the proxy");
    // The recorded session address is the forwarded client too.
    let app2 = spawn_app_with(Some(&redis), |c| c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await;
    app2.register("proxied", PASSWORD).await;
    let r = proxy
        .post(app2.url("/v1/auth/login"))
        .header("x-forwarded-for", "192.0.2.44")
        .json(&json!({ "username": "proxied", "password": PASSWORD }))
        .send()
        .await
        .expect("send");
    let token = token_of(&r.json().await.expect("json"));
    let list: serde_json::Value = app2.get("/v1/sessions", &token).await.json().await.expect("json");
    assert_eq!(list["sessions"][0]["ip"], "192.0.2.44");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_register_have_stricter_limits() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.rate_limit_login_ip = quota("1/m burst 2");
        c.rate_limit_register_ip = quota("1/m burst 1");
    })
    .await;
    assert_eq!(app.register("strict", PASSWORD).await.status(), StatusCode::CREATED);
    let r = app.register("strict2", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&r, "ratelimit-policy").contains("\"register_ip\";q=1;w=60"));
    app.login("strict").await;
    assert_eq!(app.login_response("strict", "wrong password!").await.status(), StatusCode::UNAUTHORIZED);
    let r = app.login_response("strict", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&r, "retry-after").parse().expect("seconds");
    assert!((1..=60).contains(&retry));
    let metrics = app.metrics_text().await;
    assert_eq!(rate_limited_total(&metrics, "login_ip"), 1);
    assert_eq!(rate_limited_total(&metrics, "register_ip"), 1);
    assert!(metrics.contains("sessiond_logins_total{outcome=\"rate_limited\"} 1"));
    assert!(metrics.contains("sessiond_registrations_total{outcome=\"rate_limited\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_limited_whatever_address_the_attempts_come_from() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.rate_limit_login_account = quota("1/m burst 2")).await;
    app.register("Target", PASSWORD).await;
    let mut statuses = Vec::new();
    for (n, name) in ["target", "TARGET", "tArGeT"].into_iter().enumerate() {
        let r = client_from(&format!("127.0.0.{}", n + 10))
            .post(app.url("/v1/auth/login"))
            .json(&json!({ "username": name, "password": "guess guess guess" }))
            .send()
            .await
            .expect("send");
        statuses.push(r.status());
    }
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]);
    assert_eq!(rate_limited_total(&app.metrics_text().await, "login_account"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_login_guard_holds_across_instances_and_decays() {
    let redis = RedisServer::start();
    let tweak = |c: &mut sessiond::Config| {
        c.login_failures = 3;
        c.login_failure_window = Duration::from_secs(3);
    };
    let a = spawn_app_with(Some(&redis), tweak).await;
    let b = spawn_app_with(Some(&redis), tweak).await;
    a.register("guarded", PASSWORD).await;
    assert_eq!(a.login_response("guarded", "wrong one!").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(b.login_response("guarded", "wrong two!").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(a.login_response("guarded", "wrong three").await.status(), StatusCode::UNAUTHORIZED);
    // Three failures over two instances: the account is now guarded on both, even with the
    // right password (answering it would let guessing continue).
    for app in [&a, &b] {
        let r = app.login_response("guarded", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = header(&r, "retry-after").parse().expect("seconds");
        assert_eq!(retry, 1, "one attempt comes back every window/failures");
        assert_eq!(header(&r, "ratelimit-policy"), "\"login_guard\";q=3;w=3");
    }
    // Unknown accounts behave the same, so the guard does not reveal which accounts exist.
    for n in 0..3 {
        assert_eq!(
            a.login_response("ghost-user", &format!("guess {n} guess")).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(a.login_response("ghost-user", "guess 4 guess").await.status(), StatusCode::TOO_MANY_REQUESTS);
    // The guard decays: after Retry-After the right password works and resets the count.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(b.login_response("guarded", PASSWORD).await.status(), StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(a.login_response("guarded", "wrong again").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(a.login_response("guarded", PASSWORD).await.status(), StatusCode::OK, "success reset the guard");
    let guard_keys: Vec<String> = redis.keys().into_iter().filter(|k| k.contains(":login-guards:")).collect();
    assert!(!guard_keys.is_empty(), "the guard state is in Redis");
    assert!(guard_keys.iter().all(|k| !k.contains("ghost") && !k.contains("guarded")), "guard keys are hashed");
    for key in &guard_keys {
        let ttl = redis.cmd(&["PTTL", key]).int();
        assert!(ttl > 0 && ttl <= 3_000, "guard state is TTL-bounded: {ttl}");
    }
    let metrics = a.metrics_text().await;
    assert!(rate_limited_total(&metrics, "login_guard") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_shed_fast_instead_of_queueing() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.argon2_memory_kib = 19_456;
        c.argon2_iterations = 4;
        c.hash_concurrency = Some(1);
        c.hash_queue = 1;
    })
    .await;
    app.register("flooded", PASSWORD).await;
    let token = token_of(&app.login("flooded").await);
    let attempts = join_all((0..12).map(|_| async {
        let started = Instant::now();
        let status = app.login_response("flooded", "wrong password!").await.status();
        (status, started.elapsed())
    }));
    let validation = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let status = app.profile_status(&token).await;
        (status, started.elapsed())
    };
    let (attempts, (validation_status, validation_time)) = tokio::join!(attempts, validation);
    let shed: Vec<_> = attempts.iter().filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(shed.len() >= 8, "most of the flood is shed: {attempts:?}");
    assert!(attempts.iter().all(|(s, _)| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(validation_status, StatusCode::OK);
    eprintln!("validation during the flood took {validation_time:?}; shed logins answered in {:?}", shed[0].1);
    assert!(rate_limited_total(&app.metrics_text().await, "hash_pool") >= 8);
}

/// The value of one series (name with its labels, as exposed), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.parse::<f64>().expect("number"))
}

/// The mean verification time so far, from sessiond's own histogram.
fn mean_verify_seconds(metrics: &str) -> f64 {
    let value =
        |suffix: &str| sample(metrics, &format!("sessiond_password_hash_duration_seconds_{suffix}{{op=\"verify\"}}"));
    value("sum") / value("count").max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessing_flood_gets_a_share_of_the_hashing_thread() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.argon2_memory_kib = 2_048;
        c.argon2_iterations = 1;
        c.hash_concurrency = Some(1);
        c.hash_queue = 8;
        c.hash_flood_share = 20;
    })
    .await;
    app.register("guessed", PASSWORD).await;
    // A wrong guess every 15 ms for 3 s, far more than one thread verifies: the pool takes
    // some, refuses the rest, and every verification it runs fails: a guessing flood.
    let started = Instant::now();
    let attempts = join_all((0..200u32).map(|n| {
        let app = &app;
        async move {
            tokio::time::sleep(Duration::from_millis(15) * n).await;
            let status = app.login_response("guessed", "wrong password!").await.status();
            (status, started.elapsed())
        }
    }))
    .await;
    let mut verified: Vec<Duration> =
        attempts.iter().filter(|(s, _)| *s == StatusCode::UNAUTHORIZED).map(|(_, at)| *at).collect();
    let shed = attempts.iter().filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).count();
    assert_eq!(verified.len() + shed, attempts.len(), "only 401 or 503: {attempts:?}");
    assert!(shed >= 100, "{} verified, {shed} shed", verified.len());
    verified.sort();
    let metrics = app.metrics_text().await;
    let hash = mean_verify_seconds(&metrics);
    // Operators see the share in force: hashes followed by a flood rest are counted.
    let rests = sample(&metrics, "sessiond_password_hash_flood_rests_total");
    assert!(rests >= 1.0, "no flood rest counted:\n{metrics}");
    assert!(hash > 0.0, "verifications were timed");
    // Once the flood is detected, each hash is followed by a rest of 4x its duration (share
    // 20 %): consecutive failed verifications complete about 5 hash times apart, where a
    // thread hashing flat out completes them one hash time apart. Sleeping can only make the
    // gaps longer; the median leaves out the first ones, before any refusal was seen.
    let mut gaps: Vec<f64> = verified.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    assert!(gaps.len() >= 3, "{} verified", verified.len());
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    assert!(median >= 3.0 * hash, "gaps {gaps:?} against a mean hash of {hash:.4} s");
    // Once the guessing stops (no refusal for a second), a correct password is verified at
    // the full rate again and succeeds.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(app.login_response("guessed", PASSWORD).await.status(), StatusCode::OK);
}
