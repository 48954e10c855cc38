//! Listing and revoking one's own sessions; the per-user cap.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// Log in with this `User-Agent`; the 200 body.
async fn login_from(app: &TestApp, username: &str, user_agent: &str) -> Value {
    let r = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("user-agent", user_agent)
        .json(&serde_json::json!({ "username": username, "password": PASSWORD }))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_newest_first_and_marks_the_current_session() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    app.register("lister", PASSWORD).await;
    let mut ids = Vec::new();
    for agent in ["agent/1", "agent/2", "agent/3"] {
        let body = login_from(&app, "lister", agent).await;
        ids.push((body["session_id"].as_str().expect("id").to_owned(), token_of(&body)));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (middle_id, middle_token) = &ids[1];
    let r = app.get("/v1/sessions", middle_token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.expect("json");
    let sessions = body["sessions"].as_array().expect("array");
    let listed: Vec<&str> = sessions.iter().map(|s| s["session_id"].as_str().expect("id")).collect();
    assert_eq!(listed, vec![ids[2].0.as_str(), ids[1].0.as_str(), ids[0].0.as_str()]);
    for s in sessions {
        assert_eq!(s["current"], s["session_id"].as_str() == Some(middle_id.as_str()));
        assert_eq!(s["ip"], "127.0.0.1");
        for field in ["created_at", "last_seen_at", "expires_at"] {
            assert!(s[field].is_string());
        }
    }
    assert_eq!(sessions[0]["device"], "agent/3");
    assert!(sessions[0].get("user_agent").is_none(), "the raw User-Agent is not kept");

    // Other users see only their own.
    let other = token_of(&app.signup_login("someone-else").await);
    assert_eq!(app.session_ids(&other).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_one_session_by_id_is_limited_to_the_owner() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let mine_a = app.signup_login("owner").await;
    let mine_b = app.login("owner").await;
    let theirs = app.signup_login("intruder").await;
    let target = mine_b["session_id"].as_str().expect("id");

    // Knowing a session id neither authenticates nor lets another user revoke it.
    assert_eq!(app.profile_status(target).await, StatusCode::UNAUTHORIZED);
    let r = app.delete(&format!("/v1/sessions/{target}"), &token_of(&theirs)).await;
    assert_problem(r, StatusCode::NOT_FOUND).await;
    assert_eq!(app.profile_status(&token_of(&mine_b)).await, StatusCode::OK);

    let r = app.delete(&format!("/v1/sessions/{target}"), &token_of(&mine_a)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&token_of(&mine_b)).await, StatusCode::UNAUTHORIZED);
    assert_problem(app.delete(&format!("/v1/sessions/{target}"), &token_of(&mine_a)).await, StatusCode::NOT_FOUND)
        .await;
    assert_eq!(app.profile_status(&token_of(&mine_a)).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_with_and_without_the_current_session() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let a = token_of(&app.signup_login("everywhere").await);
    let b = token_of(&app.login("everywhere").await);
    let c = token_of(&app.login("everywhere").await);
    let bystander = token_of(&app.signup_login("bystander").await);

    let r = app.delete("/v1/sessions?except_current=true", &a).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&a).await, StatusCode::OK);
    assert_eq!(app.profile_status(&b).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.profile_status(&c).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.session_ids(&a).await.len(), 1);

    let d = token_of(&app.login("everywhere").await);
    assert_eq!(app.delete("/v1/sessions", &d).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&a).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.profile_status(&d).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.profile_status(&bystander).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_session_is_revoked_past_the_cap() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.max_sessions_per_user = 3).await;
    let first = app.signup_login("capped").await;
    let mut later = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        later.push(app.login("capped").await);
    }
    assert_eq!(app.profile_status(&token_of(&first)).await, StatusCode::UNAUTHORIZED);
    let newest = token_of(&later[2]);
    let listed = app.session_ids(&newest).await;
    assert_eq!(listed.len(), 3);
    assert!(!listed.iter().any(|id| Some(id.as_str()) == first["session_id"].as_str()));
    for body in &later {
        assert_eq!(app.profile_status(&token_of(body)).await, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_session_is_listed_by_browser_and_system() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    app.register("browser-user", PASSWORD).await;
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                  Chrome/131.0.0.0 Safari/537.36";
    let token = token_of(&login_from(&app, "browser-user", chrome).await);
    let body: Value = app.get("/v1/sessions", &token).await.json().await.expect("json");
    assert_eq!(body["sessions"][0]["device"], "Chrome 131 on Windows", "{body}");
    // What Redis holds is the label, never the header.
    let keys = redis.keys();
    let key = keys.iter().find(|k| k.contains(":sess:")).expect("a session key");
    let stored = redis.cmd(&["GET", key]).text();
    let fields: Vec<&str> = stored.split('\u{1f}').collect();
    assert_eq!(fields.get(8).copied(), Some("Chrome 131 on Windows"), "{stored:?}");
    assert!(!stored.contains("AppleWebKit"), "the User-Agent itself is not kept: {stored:?}");
}

/// A session in another layout (as an older build wrote it: a hash with one-letter fields) is
/// not a session: its token gets a 401, not an error, and the owner's other sessions list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_an_older_layout_is_refused_cleanly() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.validation_cache_ttl = std::time::Duration::ZERO).await;
    app.register("old-layout", PASSWORD).await;
    let old = token_of(&login_from(&app, "old-layout", "agent/old").await);
    let keys = redis.keys();
    let key = keys.iter().find(|k| k.contains(":sess:")).expect("the session key").clone();
    let current = login_from(&app, "old-layout", "agent/new").await;
    let stored = redis.cmd(&["GET", &key]).text();
    let fields: Vec<&str> = stored.split('\u{1f}').collect();
    let (sid, user, created) = (fields[1], fields[2], fields[3]);
    redis.cmd(&["DEL", &key]);
    redis.cmd(&["HSET", &key, "s", sid, "u", user, "c", created, "l", "0", "i", "1800000", "e", "43200000"]);

    assert_eq!(app.profile_status(&old).await, StatusCode::UNAUTHORIZED);
    let r = app.get("/v1/sessions", &token_of(&current)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    let listed: Vec<&str> =
        body["sessions"].as_array().expect("array").iter().filter_map(|s| s["session_id"].as_str()).collect();
    assert_eq!(listed, vec![current["session_id"].as_str().expect("id")]);
}
