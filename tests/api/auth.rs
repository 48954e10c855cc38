//! Register, login, logout, refresh: statuses, cookies, rotation, fixation, identical 401s.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

fn rfc3339(value: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(value.as_str().expect("string time")).expect("RFC 3339")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_login_returns_a_session_and_cookie() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;

    let r = app.register("Alice.Smith", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["username"], "Alice.Smith");
    assert!(uuid_like(body["user_id"].as_str().expect("user_id")));

    assert_problem(app.register("alice.smith", "another password").await, StatusCode::CONFLICT).await;

    let r = app.login_response("ALICE.SMITH", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let cookie = r.headers()["set-cookie"].to_str().expect("ascii").to_owned();
    let body: Value = r.json().await.expect("json");
    let token = token_of(&body);
    assert_eq!(token.len(), 43);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(cookie, format!("sid={token}; HttpOnly; SameSite=Lax; Path=/"));
    assert_eq!(body["session_id"].as_str().expect("id").len(), 22);
    assert_ne!(body["session_id"].as_str(), Some(token.as_str()));
    let expires = rfc3339(&body["expires_at"]);
    let idle = rfc3339(&body["idle_expires_at"]);
    assert!(idle <= expires);
    let now = std::time::SystemTime::now();
    let idle_left = idle.duration_since(now).expect("future");
    assert!(idle_left > Duration::from_secs(29 * 60) && idle_left <= Duration::from_secs(30 * 60));
    let abs_left = expires.duration_since(now).expect("future");
    assert!(abs_left > Duration::from_secs(12 * 3600 - 60) && abs_left <= Duration::from_secs(12 * 3600));

    let r = app.get("/v1/profile", &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let profile: Value = r.json().await.expect("json");
    assert_eq!(profile["username"], "Alice.Smith");
    assert_eq!(profile["roles"], json!(["user"]));
    assert_eq!(profile["session"]["session_id"], body["session_id"]);
    for field in ["created_at", "last_seen_at", "expires_at", "idle_expires_at"] {
        rfc3339(&profile["session"][field]);
    }
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_unless_disabled() {
    let app = spawn_app_with(None, |c| c.cookie_secure = true).await;
    app.register("secure", PASSWORD).await;
    let r = app.login_response("secure", PASSWORD).await;
    let cookie = r.headers()["set-cookie"].to_str().expect("ascii").to_owned();
    assert!(cookie.ends_with("; HttpOnly; SameSite=Lax; Path=/; Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_credential_channel_works_and_bearer_wins() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let token = token_of(&app.signup_login("channels").await);

    let bearer = app.client.get(app.url("/v1/profile")).bearer_auth(&token).send().await.expect("send");
    assert_eq!(bearer.status(), StatusCode::OK);
    let cookie = app
        .client
        .get(app.url("/v1/profile"))
        .header("cookie", format!("theme=dark; sid={token}"))
        .send()
        .await
        .expect("send");
    assert_eq!(cookie.status(), StatusCode::OK);
    let header = app.client.get(app.url("/v1/profile")).header("x-session-id", &token).send().await.expect("send");
    assert_eq!(header.status(), StatusCode::OK);

    // Precedence: an Authorization header decides even when a valid cookie is present.
    let bogus = "A".repeat(43);
    let r = app
        .client
        .get(app.url("/v1/profile"))
        .bearer_auth(&bogus)
        .header("cookie", format!("sid={token}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_401s_look_the_same() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let revoked = token_of(&app.signup_login("same401").await);
    assert_eq!(app.post("/v1/auth/logout", &revoked).await.status(), StatusCode::NO_CONTENT);

    let mut bodies = Vec::new();
    let requests = [
        app.client.get(app.url("/v1/profile")),
        app.client.get(app.url("/v1/profile")).bearer_auth("A".repeat(43)),
        app.client.get(app.url("/v1/profile")).bearer_auth("not-a-token"),
        app.client.get(app.url("/v1/profile")).bearer_auth(&revoked),
        app.client.get(app.url("/v1/profile")).header("cookie", format!("sid={revoked}")),
        app.client.get(app.url("/v1/profile")).header("x-session-id", &revoked),
    ];
    for request in requests {
        let r = request.send().await.expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        bodies.push(r.text().await.expect("body"));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "401 bodies differ: {bodies:?}");
    assert!(!bodies[0].contains(&revoked));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    // Real argon2id parameters, so that skipping the hash for unknown users would show.
    let app = spawn_app_with(None, |c| {
        c.argon2_memory_kib = 19_456;
        c.argon2_iterations = 2;
    })
    .await;
    app.register("victim", PASSWORD).await;

    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    let mut bodies = std::collections::HashSet::new();
    for _ in 0..5 {
        for (user, samples) in [("nobody-here", &mut unknown), ("victim", &mut wrong)] {
            let started = Instant::now();
            let r = app.login_response(user, "wrong password!").await;
            samples.push(started.elapsed());
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            bodies.insert(r.text().await.expect("body"));
        }
    }
    assert_eq!(bodies.len(), 1, "bodies differ: {bodies:?}");
    unknown.sort();
    wrong.sort();
    let (u, w) = (unknown[2].as_secs_f64(), wrong[2].as_secs_f64());
    assert!(u > w * 0.5 && u < w * 2.0, "median unknown-user login {u:.4}s vs wrong-password login {w:.4}s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_never_adopts_a_client_session_and_rotates_an_existing_one() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    app.register("fixation", PASSWORD).await;

    // Fixation: an attacker-chosen, well-formed token is ignored.
    let planted = "plantedplantedplantedplantedplantedplantedA".to_owned();
    assert_eq!(planted.len(), 43);
    let r = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("cookie", format!("sid={planted}"))
        .json(&json!({ "username": "fixation", "password": PASSWORD }))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let first: Value = r.json().await.expect("json");
    assert_ne!(token_of(&first), planted);
    assert_eq!(app.profile_status(&planted).await, StatusCode::UNAUTHORIZED);

    // A login that carries a valid session revokes it.
    let old = token_of(&first);
    let r = app
        .client
        .post(app.url("/v1/auth/login"))
        .bearer_auth(&old)
        .json(&json!({ "username": "fixation", "password": PASSWORD }))
        .send()
        .await
        .expect("send");
    let second: Value = r.json().await.expect("json");
    assert_ne!(second["session_id"], first["session_id"]);
    assert_eq!(app.profile_status(&old).await, StatusCode::UNAUTHORIZED);
    let new = token_of(&second);
    assert_eq!(app.profile_status(&new).await, StatusCode::OK);
    assert_eq!(app.session_ids(&new).await.len(), 1);

    // Plain logins each create a new session.
    let third = app.login("fixation").await;
    assert_ne!(third["session_id"], second["session_id"]);
    assert_eq!(app.session_ids(&new).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_deletes_the_session_and_clears_the_cookie() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let token = token_of(&app.signup_login("leaver").await);
    let digest = base64_sha256(&token);
    assert!(
        redis.keys().iter().any(|k| k.ends_with(&format!(":sess:{digest}"))),
        "session stored under the token digest"
    );

    let r = app.post("/v1/auth/logout", &token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["set-cookie"], "sid=; Max-Age=0; HttpOnly; SameSite=Lax; Path=/");
    assert!(!redis.keys().iter().any(|k| k.contains(":sess:")), "session key gone: {:?}", redis.keys());
    assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);
    assert_problem(app.post("/v1/auth/logout", &token).await, StatusCode::UNAUTHORIZED).await;
}

/// The store's key for a token: the first 128 bits of its SHA-256, base64url.
fn base64_sha256(token: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&Sha256::digest(token.as_bytes())[..16])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_never_holds_a_token_or_password() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let token = token_of(&app.signup_login("dumped").await);
    let mut everything = String::new();
    for key in redis.keys() {
        everything.push_str(&key);
        let kind = redis.cmd(&["TYPE", &key]).text();
        let dump = match kind.as_str() {
            "string" => redis.cmd(&["GET", &key]).text(),
            "hash" => redis.cmd(&["HGETALL", &key]).strings().join(" "),
            "zset" => redis.cmd(&["ZRANGE", &key, "0", "-1"]).strings().join(" "),
            other => panic!("unexpected key type {other} for {key}"),
        };
        everything.push_str(&dump);
    }
    assert!(!everything.contains(&token), "the token is in Redis");
    assert!(!everything.contains(PASSWORD), "the password is in Redis");
    assert!(everything.contains("$argon2id$v=19$"), "password stored as argon2id PHC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_the_token_but_keeps_the_session() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let login = app.signup_login("refresher").await;
    let old = token_of(&login);
    let before: Value = app.get("/v1/profile", &old).await.json().await.expect("json");
    tokio::time::sleep(Duration::from_millis(20)).await;

    let r = app.post("/v1/auth/refresh", &old).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A refresh by bearer answers in the body only (a cookie refresh sets the cookie instead:
    // tests/api/browser_rules.rs).
    assert!(r.headers().get("set-cookie").is_none(), "a bearer refresh sets no cookie");
    let refreshed: Value = r.json().await.expect("json");
    let new = token_of(&refreshed);
    assert_ne!(new, old);
    assert_eq!(refreshed["session_id"], login["session_id"]);
    assert_eq!(refreshed["expires_at"], login["expires_at"], "absolute deadline does not move");

    assert_eq!(app.profile_status(&old).await, StatusCode::UNAUTHORIZED, "old token dead at once");
    let after: Value = app.get("/v1/profile", &new).await.json().await.expect("json");
    assert_eq!(after["session"]["created_at"], before["session"]["created_at"]);
    assert_eq!(after["session"]["expires_at"], before["session"]["expires_at"]);
    assert!(rfc3339(&after["session"]["last_seen_at"]) > rfc3339(&before["session"]["last_seen_at"]));
    assert_eq!(app.session_ids(&new).await, vec![login["session_id"].as_str().expect("id").to_owned()]);
    assert_eq!(app.post("/v1/auth/refresh", &old).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_share_sessions() {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;
    a.register("roamer", PASSWORD).await;
    let token = token_of(&b.login("roamer").await);
    assert_eq!(a.profile_status(&token).await, StatusCode::OK);
    assert_eq!(b.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    // A's validation cache hears of the logout through Redis's invalidation push: within
    // milliseconds (tests/api/cache.rs bounds it), not necessarily before the next request.
    let started = Instant::now();
    while a.profile_status(&token).await != StatusCode::UNAUTHORIZED {
        assert!(started.elapsed() < Duration::from_millis(500), "instance A still accepts the logged-out token");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_validation_cache_a_logout_elsewhere_is_refused_at_once() {
    let redis = RedisServer::start();
    let no_cache = |c: &mut sessiond::Config| c.validation_cache_ttl = Duration::ZERO;
    let a = spawn_app_with(Some(&redis), no_cache).await;
    let b = spawn_app_with(Some(&redis), no_cache).await;
    a.register("strict", PASSWORD).await;
    for _ in 0..5 {
        let token = token_of(&b.login("strict").await);
        assert_eq!(a.profile_status(&token).await, StatusCode::OK);
        assert_eq!(a.profile_status(&token).await, StatusCode::OK);
        assert_eq!(b.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
        assert_eq!(a.profile_status(&token).await, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_checked_exactly_as_given() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let exact = "Correct Horse Battery Staple, with a tail that a truncating hash would drop ...";
    assert_eq!(app.register("exact", exact).await.status(), StatusCode::CREATED);
    let truncated: String = exact.chars().take(72).collect();
    for near in [exact.to_lowercase(), exact.to_uppercase(), format!("{exact} "), truncated] {
        assert_eq!(app.login_response("exact", &near).await.status(), StatusCode::UNAUTHORIZED, "{near:?}");
    }
    assert_eq!(app.login_response("exact", exact).await.status(), StatusCode::OK);
}
