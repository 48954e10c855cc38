//! Redis down, hung, or absent at start: 503 fast, never a 500, never "valid"; recovery
//! without a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;

/// `SESSIOND_REDIS_TIMEOUT` in these tests and the slack the requirement allows.
const TIMEOUT: Duration = Duration::from_millis(250);
const SLACK: Duration = Duration::from_millis(100);

async fn timed_status(app: &TestApp, token: &str) -> (StatusCode, Duration) {
    let started = Instant::now();
    let r = app.get("/v1/profile", token).await;
    let elapsed = started.elapsed();
    let status = r.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    (status, elapsed)
}

async fn wait_until_ready(app: &TestApp, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if app.client.get(app.url("/readyz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not ready again within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_gives_fast_503s_then_recovers() {
    let mut redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.redis_timeout = TIMEOUT).await;
    let token = token_of(&app.signup_login("outage").await);

    redis.stop();
    for _ in 0..5 {
        let (status, elapsed) = timed_status(&app, &token).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(elapsed <= TIMEOUT + SLACK, "503 took {elapsed:?}");
    }
    assert_problem(app.login_response("outage", PASSWORD).await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_problem(app.register("newcomer", PASSWORD).await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        app.client.get(app.url("/readyz")).send().await.expect("send").status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.client.get(app.url("/healthz")).send().await.expect("send").status(), StatusCode::OK);

    redis.restart();
    let recovered = wait_until_ready(&app, Duration::from_secs(2)).await;
    eprintln!("recovered {recovered:?} after Redis came back");
    // The restarted Redis is empty: the old session is gone (401, not 500), new work succeeds.
    assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);
    let fresh = token_of(&app.signup_login("outage").await);
    assert_eq!(app.profile_status(&fresh).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_gives_503_within_the_timeout_and_sessions_survive() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.redis_timeout = TIMEOUT).await;
    let token = token_of(&app.signup_login("frozen").await);

    redis.pause();
    let mut worst = Duration::ZERO;
    for _ in 0..8 {
        let (status, elapsed) = timed_status(&app, &token).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a store error must never read as valid");
        worst = worst.max(elapsed);
    }
    assert!(worst <= TIMEOUT + SLACK, "slowest 503 took {worst:?}");
    redis.resume();

    let recovered = wait_until_ready(&app, Duration::from_secs(2)).await;
    eprintln!("recovered {recovered:?} after Redis resumed");
    assert_eq!(app.profile_status(&token).await, StatusCode::OK, "the session outlived the stall");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_redis_and_connects_when_it_appears() {
    let port = free_port();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let mut config = test_config(None);
    config.redis_url = Some(redis_url);
    config.redis_timeout = TIMEOUT;
    let app = spawn_config(config).await;

    assert_eq!(app.client.get(app.url("/healthz")).send().await.expect("send").status(), StatusCode::OK);
    assert_eq!(
        app.client.get(app.url("/readyz")).send().await.expect("send").status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let started = Instant::now();
    assert_problem(app.register("early", PASSWORD).await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(started.elapsed() <= TIMEOUT + SLACK);

    let _redis = RedisServer::start_on(port);
    wait_until_ready(&app, Duration::from_secs(2)).await;
    let token = token_of(&app.signup_login("early").await);
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
}
