//! Concurrent logins, logouts and validations keep the per-user index exact and never
//! resurrect a revoked session.

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::helpers::*;

fn index_len(redis: &RedisServer, user: &str) -> i64 {
    let key =
        redis.keys().into_iter().find(|k| k.ends_with(&format!(":user-sessions:{user}"))).expect("user index exists");
    redis.cmd(&["HLEN", &key]).int()
}

fn active_members(redis: &RedisServer) -> i64 {
    redis.keys().iter().filter(|k| k.contains(":active:")).map(|k| redis.cmd(&["ZCARD", k]).int()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_and_logouts_keep_the_index_exact() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    app.register("crowd", PASSWORD).await;
    let logins = join_all((0..24).map(|_| app.login("crowd"))).await;
    let tokens: Vec<String> = logins.iter().map(token_of).collect();
    assert_eq!(index_len(&redis, "crowd"), 24);
    assert_eq!(active_members(&redis), 24);
    assert_eq!(app.session_ids(&tokens[0]).await.len(), 24);

    let logouts = join_all(tokens[..12].iter().map(|t| app.post("/v1/auth/logout", t))).await;
    assert!(logouts.iter().all(|r| r.status() == StatusCode::NO_CONTENT));
    assert_eq!(index_len(&redis, "crowd"), 12);
    assert_eq!(active_members(&redis), 12);
    assert_eq!(app.session_ids(&tokens[23]).await.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_respect_the_cap_exactly() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.max_sessions_per_user = 5).await;
    app.register("capcrowd", PASSWORD).await;
    let logins = join_all((0..20).map(|_| app.login("capcrowd"))).await;
    let mut live = 0;
    for body in &logins {
        if app.profile_status(&token_of(body)).await == StatusCode::OK {
            live += 1;
        }
    }
    assert_eq!(live, 5);
    assert_eq!(index_len(&redis, "capcrowd"), 5);
    assert_eq!(active_members(&redis), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_racing_validations_and_refreshes_is_never_undone() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.idle_timeout = std::time::Duration::from_secs(2)).await;
    app.register("racer", PASSWORD).await;
    let mut resurrected = 0;
    for _ in 0..15 {
        let token = token_of(&app.login("racer").await);
        let validations = join_all((0..12).map(|_| app.profile_status(&token)));
        let refresh = app.post("/v1/auth/refresh", &token);
        let logout = app.post("/v1/auth/logout", &token);
        let (_, refreshed, logout) = tokio::join!(validations, refresh, logout);
        let refreshed_token = if refreshed.status() == StatusCode::OK {
            Some(token_of(&refreshed.json().await.expect("json")))
        } else {
            None
        };
        if logout.status() == StatusCode::NO_CONTENT {
            // The logout was acknowledged: no token for that session may work any more.
            if app.profile_status(&token).await == StatusCode::OK {
                resurrected += 1;
            }
            if let Some(new) = &refreshed_token {
                // The refresh won the race and moved the session; logout with the old token
                // then cannot have succeeded, so reaching here means both were accepted.
                if app.profile_status(new).await == StatusCode::OK {
                    resurrected += 1;
                }
            }
        } else {
            assert_eq!(logout.status(), StatusCode::UNAUTHORIZED, "logout lost the race to the refresh");
            let new = refreshed_token.expect("refresh won");
            assert_eq!(app.post("/v1/auth/logout", &new).await.status(), StatusCode::NO_CONTENT);
        }
    }
    assert_eq!(resurrected, 0);
    assert!(!redis.keys().iter().any(|k| k.contains(":sess:")), "no session survives: {:?}", redis.keys());
    assert_eq!(index_len_or_zero(&redis, "racer"), 0);
    assert_eq!(active_members(&redis), 0);
}

fn index_len_or_zero(redis: &RedisServer, user: &str) -> i64 {
    redis
        .keys()
        .into_iter()
        .find(|k| k.ends_with(&format!(":user-sessions:{user}")))
        .map_or(0, |key| redis.cmd(&["HLEN", &key]).int())
}
