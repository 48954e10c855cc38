//! Idle and absolute timeouts with short windows, enforced by Redis TTL and by reads.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

fn session_key(redis: &RedisServer) -> Option<String> {
    redis.keys().into_iter().find(|k| k.contains(":sess:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_disappears_by_itself() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.idle_timeout = Duration::from_secs(1);
        c.absolute_timeout = Duration::from_secs(10);
    })
    .await;
    let token = token_of(&app.signup_login("idler").await);
    let key = session_key(&redis).expect("session stored");
    let ttl = redis.cmd(&["PTTL", &key]).int();
    assert!(ttl > 0 && ttl <= 1_000, "TTL follows the idle deadline: {ttl}");
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    // Redis removed the key on its own, before any request touched it.
    assert_eq!(redis.cmd(&["EXISTS", &key]).int(), 0);
    assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_slides_the_idle_deadline_but_never_the_absolute_one() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.idle_timeout = Duration::from_secs(1);
        c.absolute_timeout = Duration::from_secs(2);
    })
    .await;
    let token = token_of(&app.signup_login("busy").await);
    // Used every 250 ms: alive well past the 1 s idle timeout.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    }
    // ...but not past the absolute timeout, however busy.
    let mut status = StatusCode::OK;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = app.profile_status(&token).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "absolute timeout ends the session");
    assert!(session_key(&redis).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validations_do_not_write_until_the_slide_interval() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await; // idle 30 min: slide interval 3 min
    let token = token_of(&app.signup_login("reader").await);
    // The validation cache's own bookkeeping (its flush canary) is written once its link is
    // up: let that happen before counting.
    let started = std::time::Instant::now();
    while redis.cmd(&["KEYS", "sessiond:flush-canary:*"]).strings().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(3), "the validation cache never set up its link");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let writes =
        |r: &RedisServer| ["set", "evalsha", "hset", "pexpire", "zadd", "rename", "del"].map(|c| r.command_calls(c));
    let before = writes(&redis);
    for _ in 0..20 {
        assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    }
    assert_eq!(writes(&redis), before, "validations wrote to Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_counts_as_use_but_keeps_the_absolute_deadline() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.idle_timeout = Duration::from_secs(1);
        c.absolute_timeout = Duration::from_millis(1_600);
    })
    .await;
    let mut token = token_of(&app.signup_login("refresher2").await);
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r = app.post("/v1/auth/refresh", &token).await;
        assert_eq!(r.status(), StatusCode::OK);
        token = token_of(&r.json().await.expect("json"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);
}
