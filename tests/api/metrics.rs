//! `/metrics` on the admin listener: exact counter deltas for a scripted flow, histogram
//! counts, HELP text, label hygiene, and the exact active-session gauge across instances.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;

/// One scrape, as `name{labels}` → value.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            samples.insert(series.to_owned(), value.parse().expect("sample value"));
        }
        Self(samples)
    }

    /// Sum of every series of `name` whose labels include all of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (series_name, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
                series_name == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| *v)
            .sum()
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    Scrape::parse(&app.metrics_text().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_flow_moves_the_counters_exactly() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let before = scrape(&app).await;

    assert_eq!(app.register("metered", PASSWORD).await.status(), StatusCode::CREATED);
    let first = app.login("metered").await;
    assert_eq!(app.login_response("metered", "wrong password!!").await.status(), StatusCode::UNAUTHORIZED);
    let third = app.login("metered").await;
    let token = token_of(&third);
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    assert_eq!(app.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    let _ = first;

    let after = scrape(&app).await;
    let delta = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
    assert_eq!(delta("sessiond_registrations_total", &[("outcome", "success")]), 1.0);
    assert_eq!(delta("sessiond_logins_total", &[("outcome", "success")]), 2.0);
    assert_eq!(delta("sessiond_logins_total", &[("outcome", "invalid_credentials")]), 1.0);
    assert_eq!(delta("sessiond_logins_total", &[("outcome", "unavailable")]), 0.0);
    assert_eq!(delta("sessiond_sessions_created_total", &[]), 2.0);
    assert_eq!(delta("sessiond_sessions_revoked_total", &[("reason", "logout")]), 1.0);
    // profile + logout each validate once.
    assert_eq!(delta("sessiond_session_validations_total", &[("outcome", "valid")]), 2.0);
    assert_eq!(delta("sessiond_session_validations_total", &[("outcome", "invalid")]), 0.0);
    let route = |method: &str, route: &str, status: &str| {
        delta("sessiond_http_requests_total", &[("method", method), ("route", route), ("status", status)])
    };
    assert_eq!(route("POST", "/v1/auth/register", "201"), 1.0);
    assert_eq!(route("POST", "/v1/auth/login", "200"), 2.0);
    assert_eq!(route("POST", "/v1/auth/login", "401"), 1.0);
    assert_eq!(route("GET", "/v1/profile", "200"), 1.0);
    assert_eq!(route("POST", "/v1/auth/logout", "204"), 1.0);
    assert_eq!(
        delta("sessiond_http_request_duration_seconds_count", &[("method", "POST"), ("route", "/v1/auth/login")]),
        3.0
    );
    // One hash at registration, one verify per login attempt.
    assert_eq!(delta("sessiond_password_hash_duration_seconds_count", &[("op", "hash")]), 1.0);
    assert_eq!(delta("sessiond_password_hash_duration_seconds_count", &[("op", "verify")]), 3.0);
    // One wrong password among correct ones is no guessing flood: no hashing thread rests.
    assert_eq!(delta("sessiond_password_hash_flood_rests_total", &[]), 0.0);
    // Store calls: find_user for each login (a registration inserts without looking first),
    // create for each success.
    assert_eq!(delta("sessiond_redis_command_duration_seconds_count", &[("op", "find_user")]), 3.0);
    assert_eq!(delta("sessiond_redis_command_duration_seconds_count", &[("op", "create_session")]), 2.0);
    // Each validation is answered by the in-process cache or by Redis, never both or neither.
    let hits = delta("sessiond_validation_cache_lookups_total", &[("result", "hit")]);
    let misses = delta("sessiond_validation_cache_lookups_total", &[("result", "miss")]);
    assert_eq!(hits + misses, 2.0);
    assert_eq!(delta("sessiond_redis_command_duration_seconds_count", &[("op", "touch_session")]), misses);
    assert_eq!(delta("sessiond_redis_errors_total", &[]), 0.0);
    // A histogram's +Inf bucket equals its count.
    assert_eq!(
        after.value("sessiond_http_request_duration_seconds_bucket", &[("route", "/v1/auth/login"), ("le", "+Inf")]),
        after.value("sessiond_http_request_duration_seconds_count", &[("route", "/v1/auth/login")])
    );
    assert_eq!(after.value("sessiond_http_requests_in_flight", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_is_complete_and_clean() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.active_sessions_refresh = Duration::from_millis(100)).await;
    let token = token_of(&app.signup_login("hygiene").await);
    assert_eq!(app.get("/v1/sessions/whatever-id", &token).await.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(app.get("/v1/nope/secret-path", &token).await.status(), StatusCode::NOT_FOUND);
    // The active count is refreshed in the background: wait for it rather than for a fixed time.
    wait_for_gauge(&app, 1.0).await;
    let text = app.metrics_text().await;

    for (name, kind) in [
        ("sessiond_http_requests_total", "counter"),
        ("sessiond_http_request_duration_seconds", "histogram"),
        ("sessiond_http_requests_in_flight", "gauge"),
        ("sessiond_logins_total", "counter"),
        ("sessiond_registrations_total", "counter"),
        ("sessiond_sessions_created_total", "counter"),
        ("sessiond_sessions_revoked_total", "counter"),
        ("sessiond_session_validations_total", "counter"),
        ("sessiond_sessions_active", "gauge"),
        ("sessiond_redis_command_duration_seconds", "histogram"),
        ("sessiond_redis_up", "gauge"),
        ("sessiond_password_hash_duration_seconds", "histogram"),
        ("sessiond_password_hash_flood_rests_total", "counter"),
        ("sessiond_build_info", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert!(text.contains(&format!("# TYPE {name} {kind}")), "{name} is not a {kind}:\n{text}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has no HELP");
    }
    // Histograms, not summaries, with buckets from 100 µs to 10 s.
    assert!(
        text.contains(
            "sessiond_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/profile\",le=\"0.0001\"}"
        ) || text.contains("le=\"0.0001\"")
    );
    assert!(text.contains("le=\"10\""));
    assert!(!text.contains("quantile="), "summaries are not allowed");
    let scrape = Scrape::parse(&text);
    assert_eq!(scrape.value("sessiond_redis_up", &[]), 1.0);
    assert_eq!(scrape.value("sessiond_sessions_active", &[]), 1.0);
    assert_eq!(scrape.value("sessiond_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    // Route labels are templates; raw paths, ids, tokens and usernames never appear.
    assert!(text.contains("route=\"unmatched\""));
    assert!(text.contains("route=\"/v1/sessions/{session_id}\""));
    for secret in [token.as_str(), "whatever-id", "secret-path", "hygiene", PASSWORD, "127.0.0.1"] {
        assert!(!text.contains(secret), "{secret:?} leaked into /metrics");
    }
    // /metrics is not on the public router; the probes are on both.
    assert_eq!(app.client.get(app.url("/metrics")).send().await.expect("send").status(), StatusCode::NOT_FOUND);
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(app.client.get(app.admin_url(probe)).send().await.expect("send").status(), StatusCode::OK);
    }
}

async fn wait_for_gauge(app: &TestApp, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = scrape(app).await.value("sessiond_sessions_active", &[]);
        if value == expected {
            return;
        }
        assert!(Instant::now() < deadline, "sessions_active stuck at {value}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_reports_the_same_exact_active_count() {
    let redis = RedisServer::start();
    let tweak = |c: &mut sessiond::Config| {
        // Each refresh is 4 096 ZCOUNTs per instance: more often would keep Redis busy enough
        // to slow the test's own logins on a small machine.
        c.active_sessions_refresh = Duration::from_millis(250);
        // Long enough for three logins and the gauge waits on a loaded machine, short enough
        // to watch a session expire.
        c.idle_timeout = Duration::from_secs(5);
        c.absolute_timeout = Duration::from_secs(60);
    };
    let a = spawn_app_with(Some(&redis), tweak).await;
    let b = spawn_app_with(Some(&redis), tweak).await;
    let alice = token_of(&a.signup_login("counted-a").await);
    let _bob = token_of(&b.signup_login("counted-b").await);
    let carol = token_of(&b.signup_login("counted-c").await);
    for app in [&a, &b] {
        wait_for_gauge(app, 3.0).await;
    }
    assert_eq!(a.post("/v1/auth/logout", &alice).await.status(), StatusCode::NO_CONTENT);
    for app in [&a, &b] {
        wait_for_gauge(app, 2.0).await;
    }
    // Keep carol alive; bob's session expires by TTL (idle 5 s) with nobody touching it.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(5_500) {
        assert_eq!(a.profile_status(&carol).await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    for app in [&a, &b] {
        wait_for_gauge(app, 1.0).await;
    }
}
