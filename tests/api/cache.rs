//! The validation cache: repeated validations skip Redis, and every change to a session or its
//! owner — made on this instance, on another one, or by an operator tool — reaches it; an
//! outage still answers 503, never a stale 200 for longer than the staleness bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sessiond::store::redis::{RedisSettings, RedisStore};
use sessiond::store::Store;
use sessiond::users::Username;

use crate::helpers::*;

/// How long a change made elsewhere may take to reach another instance's cache. Redis pushes
/// the invalidation at once (sub-millisecond on one machine); this leaves room for a loaded
/// test machine while staying far below the cache's 10 s backstop, so a missing push fails.
const PROPAGATION: Duration = Duration::from_millis(500);

/// `SESSIOND_REDIS_TIMEOUT` in the outage cases.
const TIMEOUT: Duration = Duration::from_millis(250);

/// Validate until Redis sees no command for it: the session is then served from the cache.
async fn warm(app: &TestApp, redis: &RedisServer, token: &str) {
    let started = Instant::now();
    loop {
        let reads = |redis: &RedisServer| redis.command_calls("get") + redis.command_calls("evalsha");
        let before = reads(redis);
        assert_eq!(app.profile_status(token).await, StatusCode::OK);
        if reads(redis) == before {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "the session never came from the cache");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll until `token` gets `want`, returning how long that took; fail after `within`.
async fn until_status(app: &TestApp, token: &str, want: StatusCode, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if app.profile_status(token).await == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "still not {want} after {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn roles(app: &TestApp, token: &str) -> Value {
    let response = app.get("/v1/profile", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let profile: Value = response.json().await.expect("json");
    profile["roles"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_validations_are_answered_without_a_redis_round_trip() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let token = token_of(&app.signup_login("cached").await);
    warm(&app, &redis, &token).await;

    let commands = |redis: &RedisServer| ["get", "evalsha", "hgetall", "hget"].map(|c| redis.command_calls(c));
    let before = commands(&redis);
    for _ in 0..200 {
        assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    }
    assert_eq!(commands(&redis), before, "a cached validation sent a command to Redis");
    let metrics = app.metrics_text().await;
    assert!(metrics.contains(r#"sessiond_session_validations_total{outcome="valid"}"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_is_refused_by_the_very_next_request_on_the_same_instance() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    for round in 0..10 {
        let token = token_of(&app.signup_login(&format!("same{round}")).await);
        warm(&app, &redis, &token).await;
        assert_eq!(app.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
        assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED, "round {round}");
    }
    // Rotation and "log out everywhere" too.
    let token = token_of(&app.signup_login("rotating").await);
    warm(&app, &redis, &token).await;
    let response = app.post("/v1/auth/refresh", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated = token_of(&response.json().await.expect("json"));
    assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);
    warm(&app, &redis, &rotated).await;
    let other = token_of(&app.login("rotating").await);
    warm(&app, &redis, &other).await;
    assert_eq!(app.delete("/v1/sessions?except_current=true", &rotated).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&other).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.profile_status(&rotated).await, StatusCode::OK, "the caller's own session stays");
    assert_eq!(app.delete("/v1/sessions", &rotated).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&rotated).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_another_instance_reaches_this_instances_cache() {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;

    let token = token_of(&a.signup_login("roaming").await);
    warm(&b, &redis, &token).await;
    assert_eq!(a.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    let took = until_status(&b, &token, StatusCode::UNAUTHORIZED, PROPAGATION).await;
    eprintln!("logout on A refused on B after {took:?}");

    let token = token_of(&a.login("roaming").await);
    warm(&b, &redis, &token).await;
    let response = a.post("/v1/auth/refresh", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated = token_of(&response.json().await.expect("json"));
    until_status(&b, &token, StatusCode::UNAUTHORIZED, PROPAGATION).await;
    assert_eq!(b.profile_status(&rotated).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_granted_by_an_operator_tool_reaches_a_cached_session() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let token = token_of(&app.signup_login("promoted").await);
    warm(&app, &redis, &token).await;
    assert_eq!(roles(&app, &token).await, json!(["user"]));

    // Straight to Redis, as `sessiond admin grant-role` does: this instance hears of it only
    // through Redis.
    let tool = RedisStore::connect(&RedisSettings::new(redis.url())).expect("connect");
    tool.wait_connected(Duration::from_secs(5)).await.expect("redis reachable");
    let tool: Arc<dyn Store> = Arc::new(tool);
    let user = Username::parse("promoted").expect("username").key();
    assert!(tool.set_role(&user, "admin", true).await.expect("grant"));

    let started = Instant::now();
    while roles(&app, &token).await != json!(["user", "admin"]) {
        assert!(started.elapsed() < PROPAGATION, "the cached session kept its old roles");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_turns_cached_sessions_into_503_and_a_restarted_one_into_401() {
    let mut redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.redis_timeout = TIMEOUT).await;
    let token = token_of(&app.signup_login("stopped").await);
    warm(&app, &redis, &token).await;

    redis.stop();
    // The closed connections clear the cache; at worst the staleness bound (500 ms) runs out.
    let took =
        until_status(&app, &token, StatusCode::SERVICE_UNAVAILABLE, Duration::from_millis(500) + TIMEOUT * 2).await;
    eprintln!("first 503 {took:?} after Redis stopped");
    for _ in 0..5 {
        assert_eq!(app.profile_status(&token).await, StatusCode::SERVICE_UNAVAILABLE);
    }

    // The restarted Redis is empty: the cached session must not come back.
    redis.restart();
    let took = until_status(&app, &token, StatusCode::UNAUTHORIZED, Duration::from_secs(3)).await;
    eprintln!("401 {took:?} after Redis restarted");
    for _ in 0..5 {
        assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_stops_the_cache_within_the_staleness_bound() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.redis_timeout = TIMEOUT).await;
    let token = token_of(&app.signup_login("hung").await);
    warm(&app, &redis, &token).await;

    redis.pause();
    let paused = Instant::now();
    let mut first_503 = None;
    while paused.elapsed() < Duration::from_millis(1_500) {
        let status = app.profile_status(&token).await;
        match (status, first_503) {
            (StatusCode::OK, None) => {}
            (StatusCode::SERVICE_UNAVAILABLE, None) => first_503 = Some(paused.elapsed()),
            (StatusCode::SERVICE_UNAVAILABLE, Some(_)) => {}
            (other, _) => panic!("{other} while Redis is hung (after a 503: {first_503:?})"),
        }
    }
    redis.resume();
    let first_503 = first_503.expect("the cache kept answering while Redis was hung");
    eprintln!("first 503 {first_503:?} after Redis hung");
    // Staleness bound, one heartbeat, one command timeout, and slack for a loaded machine.
    assert!(first_503 <= Duration::from_millis(500 + 100) + TIMEOUT + Duration::from_millis(250), "{first_503:?}");

    until_status(&app, &token, StatusCode::OK, Duration::from_secs(3)).await;
}
