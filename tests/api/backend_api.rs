//! The trusted-backend API against a real `redis-server`: API keys, RFC 7662 introspection and
//! sessions for externally authenticated subjects.
//!
//! 1. a configured key works (either header), its neighbours do not: a key one character off,
//!    a well-formed key that is not configured, another scheme, none; each refusal is a 401
//!    problem+json, counted and audited, and the limit is per key;
//! 2. introspection answers `active: true` with the session's owner for a live session token
//!    and for an access token of a live session, and exactly `{"active": false}` for anything
//!    else (ended, unknown, garbage, an access token whose session ended);
//! 3. a backend session answers like a login, works on every protected route, carries its data
//!    to the profile, forward auth (`X-Session-Data`) and introspection, keeps it across a
//!    refresh, obeys the cap, the `ttl` and the active gauge, and ends by id or by subject,
//!    leaving no key behind;
//! 4. bad input changes nothing: `data` over 4 KiB, a body over the limit, a bad subject, role
//!    or `ttl`, an unknown field;
//! 5. a subject spelled like a username never reaches that user's sessions, either way;
//! 6. roles the backend states reach the subject's live sessions.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sessiond::users::BackendKeys;

use crate::helpers::*;

/// Two configured backends and one that is not.
struct Keys {
    billing: String,
    reports: String,
    unconfigured: String,
}

fn keys() -> (Keys, Vec<sessiond::users::BackendKey>) {
    let billing = BackendKeys::generate("billing").expect("key");
    let reports = BackendKeys::generate("reports").expect("key");
    let unconfigured = BackendKeys::generate("billing").expect("key");
    let entries = [&billing.entry, &reports.entry].iter().map(|e| e.parse().expect("entry")).collect();
    (Keys { billing: billing.key, reports: reports.key, unconfigured: unconfigured.key }, entries)
}

async fn backend_app(redis: &RedisServer, tweak: impl FnOnce(&mut sessiond::Config)) -> (TestApp, Keys) {
    let (keys, entries) = keys();
    let app = spawn_app_with(Some(redis), |config| {
        config.backend_keys = entries;
        tweak(config);
    })
    .await;
    (app, keys)
}

fn with_key(request: reqwest::RequestBuilder, key: &str) -> reqwest::RequestBuilder {
    request.header("authorization", format!("ApiKey {key}"))
}

async fn create(app: &TestApp, key: &str, body: &Value) -> Response {
    with_key(app.client.post(app.url("/v1/backend/sessions")), key).json(body).send().await.expect("create")
}

/// A new backend session: (token, session id, body).
async fn created(app: &TestApp, key: &str, body: &Value) -> (String, String, Value) {
    let response = create(app, key, body).await;
    assert_eq!(response.status(), StatusCode::CREATED, "create {body}");
    assert!(response.headers().get("set-cookie").is_none(), "a backend session is never a cookie");
    let body: Value = response.json().await.expect("json");
    (token_of(&body), body["session_id"].as_str().expect("session_id").to_owned(), body)
}

async fn introspect_form(app: &TestApp, key: &str, token: &str) -> Value {
    let response = with_key(app.client.post(app.url("/v1/introspect")), key)
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    response.json().await.expect("json")
}

async fn introspect_json(app: &TestApp, key: &str, token: &str) -> Value {
    let response = with_key(app.client.post(app.url("/v1/introspect")), key)
        .json(&json!({ "token": token, "token_type_hint": "access_token" }))
        .send()
        .await
        .expect("introspect");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

async fn subject_sessions(app: &TestApp, key: &str, subject: &str) -> Vec<String> {
    let path = format!("/v1/backend/subjects/{}/sessions", urlencode(subject));
    let response = with_key(app.client.get(app.url(&path)), key).send().await.expect("list");
    assert_eq!(response.status(), StatusCode::OK, "list {subject}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["subject"], subject);
    body["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["session_id"].as_str().expect("id").to_owned())
        .collect()
}

async fn end_subject(app: &TestApp, key: &str, subject: &str) -> u64 {
    let path = format!("/v1/backend/subjects/{}/sessions", urlencode(subject));
    let response = with_key(app.client.delete(app.url(&path)), key).send().await.expect("end all");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["revoked"].as_u64().expect("revoked")
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn mint(app: &TestApp, token: &str) -> String {
    let response = app.post("/v1/auth/token", token).await;
    assert_eq!(response.status(), StatusCode::OK, "mint");
    let body: Value = response.json().await.expect("json");
    body["access_token"].as_str().expect("access_token").to_owned()
}

async fn dbsize(redis: &RedisServer) -> usize {
    redis.keys().len()
}

// ---------------------------------------------------------------------------------------------
// Keys.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_key_works_and_its_neighbours_do_not() {
    let redis = RedisServer::start();
    let (app, keys) = backend_app(&redis, |_| {}).await;
    let session = app.signup_login(&unique("keyed")).await;
    let token = token_of(&session);

    // Both configured keys, by either header.
    for key in [&keys.billing, &keys.reports] {
        assert_eq!(introspect_form(&app, key, &token).await["active"], true);
        let response = app
            .client
            .post(app.url("/v1/introspect"))
            .header("x-api-key", key.as_str())
            .form(&[("token", token.as_str())])
            .send()
            .await
            .expect("introspect");
        assert_eq!(response.status(), StatusCode::OK);
    }

    let mut flipped = keys.billing.clone();
    let last = flipped.pop().expect("non-empty");
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    let refused = [
        ("authorization", format!("ApiKey {flipped}")),
        ("authorization", format!("ApiKey {}", keys.unconfigured)),
        ("authorization", format!("Bearer {}", keys.billing)),
        ("authorization", format!("Bearer {token}")),
        ("x-api-key", flipped.clone()),
        ("x-api-key", String::new()),
    ];
    let before = metric_value(&app.metrics_text().await, "sessiond_backend_auth_failures_total", &[]);
    for (name, value) in &refused {
        let response = app
            .client
            .post(app.url("/v1/introspect"))
            .header(*name, value.as_str())
            .form(&[("token", token.as_str())])
            .send()
            .await
            .expect("introspect");
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        let text = problem.to_string();
        assert!(!text.contains(value.as_str()) || value.is_empty(), "the key is echoed: {text}");
        assert!(!text.contains(&token), "the token is echoed: {text}");
    }
    let none =
        app.client.post(app.url("/v1/introspect")).form(&[("token", token.as_str())]).send().await.expect("send");
    assert_problem(none, StatusCode::UNAUTHORIZED).await;
    // Every backend route, not just introspection.
    for (method, path) in [
        (reqwest::Method::POST, "/v1/backend/sessions"),
        (reqwest::Method::GET, "/v1/backend/subjects/someone/sessions"),
        (reqwest::Method::DELETE, "/v1/backend/subjects/someone/sessions"),
        (reqwest::Method::DELETE, "/v1/backend/sessions/zWdMbLqwo2Jr9oL65C6iVw"),
    ] {
        let response = with_key(app.client.request(method.clone(), app.url(path)), &flipped)
            .json(&json!({"subject": "someone"}))
            .send()
            .await
            .expect("send");
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let after = metric_value(&app.metrics_text().await, "sessiond_backend_auth_failures_total", &[]);
    assert_eq!(after - before, (refused.len() + 1 + 4) as f64, "every refusal is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_rate_limit_is_per_key() {
    let redis = RedisServer::start();
    let (app, keys) = backend_app(&redis, |config| {
        config.rate_limit_backend = "5/m".parse().expect("quota");
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = with_key(app.client.post(app.url("/v1/introspect")), &keys.billing)
            .form(&[("token", "x")])
            .send()
            .await
            .expect("send");
        statuses.push(response.status());
    }
    let allowed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!((5..8).contains(&allowed), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    // The other backend keeps its own allowance.
    let other = with_key(app.client.post(app.url("/v1/introspect")), &keys.reports)
        .form(&[("token", "x")])
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Introspection.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_tells_a_live_session_and_nothing_else() {
    let redis = RedisServer::start();
    let (app, keys) = backend_app(&redis, |_| {}).await;
    let name = unique("Intro");
    let registered: Value = app.register(&name, PASSWORD).await.json().await.expect("json");
    let login = app.login(&name).await;
    let token = token_of(&login);
    let session_id = login["session_id"].as_str().expect("id");

    let answer = introspect_form(&app, &keys.billing, &token).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["sub"], registered["user_id"]);
    assert_eq!(answer["username"], name.as_str());
    assert_eq!(answer["roles"], json!(["user"]));
    assert_eq!(answer["sid"], session_id);
    assert_eq!(answer["token_type"], "session_token");
    assert!(answer["exp"].as_i64().expect("exp") > answer["iat"].as_i64().expect("iat"));
    assert!(answer.get("data").is_none(), "a password session has no data: {answer}");
    assert_eq!(introspect_json(&app, &keys.billing, &token).await, answer, "form and JSON answer alike");

    let access = mint(&app, &token).await;
    let answer = introspect_json(&app, &keys.billing, &access).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "access_token");
    assert_eq!(answer["sid"], session_id);
    assert_eq!(answer["sub"], registered["user_id"]);

    let inactive = json!({ "active": false });
    let mut tampered = access.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    for garbage in ["", "x", &"A".repeat(43), &tampered, "a.b.c"] {
        assert_eq!(introspect_form(&app, &keys.billing, garbage).await, inactive, "{garbage:?}");
    }
    // After logout: the session token and the access token of that session.
    assert_eq!(app.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(introspect_form(&app, &keys.billing, &token).await, inactive);
    assert_eq!(introspect_form(&app, &keys.billing, &access).await, inactive);

    // Neither JSON without a token nor another media type is an answer.
    let response = with_key(app.client.post(app.url("/v1/introspect")), &keys.billing)
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = with_key(app.client.post(app.url("/v1/introspect")), &keys.billing)
        .header("content-type", "text/plain")
        .body(format!("token={token}"))
        .send()
        .await
        .expect("send");
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

// ---------------------------------------------------------------------------------------------
// Backend sessions.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_session_works_everywhere_and_carries_its_data() {
    let redis = RedisServer::start();
    let (app, keys) = backend_app(&redis, |_| {}).await;
    let baseline = dbsize(&redis).await;
    let subject = "idp|Ünïcode subject/42";
    let data = json!({ "tenant": "acme", "groups": ["a", "b"], "n": 1.5, "nested": {"ok": true} });
    let (token, session_id, body) = created(&app, &keys.billing, &json!({ "subject": subject, "data": data })).await;
    assert!(body["expires_at"].is_string() && body["idle_expires_at"].is_string(), "{body}");

    let profile: Value = app.get("/v1/profile", &token).await.json().await.expect("profile");
    assert_eq!(profile["user_id"], subject);
    assert_eq!(profile["username"], subject);
    assert_eq!(profile["roles"], json!(["user"]));
    assert_eq!(profile["session"]["session_id"], session_id.as_str());
    assert_eq!(profile["data"], data);

    let verified = app.get("/v1/auth/verify", &token).await;
    assert_eq!(verified.status(), StatusCode::OK);
    let header = verified.headers().get("x-session-data").expect("X-Session-Data").to_str().expect("ascii");
    let decoded: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("json");
    assert_eq!(decoded, data);
    // A subject outside ASCII travels as its UTF-8 bytes (HTTP's obs-text).
    assert_eq!(verified.headers().get("x-session-user-id").map(|v| v.as_bytes()), Some(subject.as_bytes()));

    let answer = introspect_form(&app, &keys.reports, &token).await;
    assert_eq!(
        (answer["active"].clone(), answer["sub"].clone(), answer["data"].clone()),
        (json!(true), json!(subject), data.clone())
    );
    let access = mint(&app, &token).await;
    let answer = introspect_form(&app, &keys.reports, &access).await;
    assert_eq!((answer["active"].clone(), answer["data"].clone()), (json!(true), data.clone()), "{answer}");

    // A refresh keeps the session and its data; the old token is refused.
    let refreshed = app.post("/v1/auth/refresh", &token).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let refreshed: Value = refreshed.json().await.expect("json");
    let token2 = token_of(&refreshed);
    assert_eq!(refreshed["session_id"], session_id.as_str());
    assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);
    let profile: Value = app.get("/v1/profile", &token2).await.json().await.expect("profile");
    assert_eq!(profile["data"], data);

    // No password here: the account routes say so, and change nothing.
    let response = app.change_password(&token2, "whatever-password", "another-password-1").await;
    assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(app.profile_status(&token2).await, StatusCode::OK);

    // Listed by subject; a second one; the first ended by id, the rest by subject.
    let (token3, id3, _) = created(&app, &keys.billing, &json!({ "subject": subject })).await;
    let mut listed = subject_sessions(&app, &keys.reports, subject).await;
    listed.sort();
    let mut expected = vec![session_id.clone(), id3.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    let path = format!("/v1/backend/sessions/{session_id}");
    let ended = with_key(app.client.delete(app.url(&path)), &keys.billing).send().await.expect("end");
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&token2).await, StatusCode::UNAUTHORIZED);
    let again = with_key(app.client.delete(app.url(&path)), &keys.billing).send().await.expect("end");
    assert_problem(again, StatusCode::NOT_FOUND).await;
    assert_eq!(app.profile_status(&token3).await, StatusCode::OK);
    assert_eq!(end_subject(&app, &keys.billing, subject).await, 1);
    assert_eq!(app.profile_status(&token3).await, StatusCode::UNAUTHORIZED);
    assert_eq!(introspect_form(&app, &keys.billing, &token3).await, json!({ "active": false }));
    assert_eq!(end_subject(&app, &keys.billing, subject).await, 0, "an unknown subject ends nothing");

    // Only the ended session's id pointers can remain, and they lapse with the sessions.
    let left: Vec<String> = redis.keys().into_iter().filter(|k| !k.contains(":owner:")).collect();
    assert_eq!(left.len(), baseline, "keys left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_the_ttl_and_the_gauge_apply_to_backend_sessions() {
    let redis = RedisServer::start();
    let (app, keys) = backend_app(&redis, |config| {
        config.max_sessions_per_user = 2;
        config.active_sessions_refresh = Duration::from_millis(100);
    })
    .await;
    let subject = unique("capped-subject");
    let (first, _, _) = created(&app, &keys.billing, &json!({ "subject": subject })).await;
    let (second, _, _) = created(&app, &keys.billing, &json!({ "subject": subject, "ttl": 60 })).await;
    let (third, _, body) = created(&app, &keys.billing, &json!({ "subject": subject, "ttl": 2 })).await;
    assert_eq!(app.profile_status(&first).await, StatusCode::UNAUTHORIZED, "the cap evicts the oldest");
    assert_eq!(app.profile_status(&second).await, StatusCode::OK);
    let expires = body["expires_at"].as_str().expect("expires_at");
    let idle = body["idle_expires_at"].as_str().expect("idle_expires_at");
    assert!(idle <= expires, "{body}");
    let metrics = app.metrics_text().await;
    assert!(metric_value(&metrics, "sessiond_sessions_revoked_total", &[("reason", "limit")]) >= 1.0);
    assert!(metric_value(&metrics, "sessiond_sessions_created_total", &[]) >= 3.0, "{metrics}");
    // The active gauge counts them like password sessions: two live.
    until_gauge(&app, 2.0).await;
    // `ttl: 2`: gone within its lifetime (plus Redis's expiry granularity).
    let started = Instant::now();
    until_profile_status(&app, &third, StatusCode::UNAUTHORIZED, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(4), "a 2 s session lived {:?}", started.elapsed());
    assert_eq!(app.profile_status(&second).await, StatusCode::OK);
    until_gauge(&app, 1.0).await;
}

/// Wait (at most 5 s) until `sessiond_sessions_active` shows `expected`.
async fn until_gauge(app: &TestApp, expected: f64) {
    let started = Instant::now();
    loop {
        let value = metric_value(&app.metrics_text().await, "sessiond_sessions_active", &[]);
        if (value - expected).abs() < f64::EPSILON {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "sessiond_sessions_active is {value}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_stores_nothing() {
    let redis = RedisServer::start();
    let (app, keys) = backend_app(&redis, |_| {}).await;
    let baseline = redis.keys();
    let big = json!({ "k": "x".repeat(4096) });
    let cases = [
        (json!({ "subject": "s", "data": big }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "s", "data": [1, 2] }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "s", "data": "text" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "x".repeat(256) }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "é".repeat(128) }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "tab\there" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "s", "roles": ["Admin"] }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "s", "ttl": 0 }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "s", "ttl": 10_000_000 }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "s", "ttl": -1 }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "subject": "s", "password": "x" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "roles": ["user"] }), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, status) in &cases {
        let response = create(&app, &keys.billing, body).await;
        let problem = assert_problem(response, *status).await;
        assert!(problem["detail"].as_str().is_some_and(|d| !d.contains("xxxxxxxx")), "{problem}");
    }
    // A body over the request limit.
    let huge = json!({ "subject": "s", "data": { "k": "x".repeat(2 * 1024 * 1024) } });
    let response = create(&app, &keys.billing, &huge).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Not JSON.
    let response = with_key(app.client.post(app.url("/v1/backend/sessions")), &keys.billing)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    for path in ["/v1/backend/subjects/a%09b/sessions", &format!("/v1/backend/subjects/{}/sessions", "x".repeat(256))] {
        let response = with_key(app.client.get(app.url(path)), &keys.billing).send().await.expect("send");
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let response = with_key(app.client.delete(app.url("/v1/backend/sessions/not-an-id")), &keys.billing)
        .send()
        .await
        .expect("send");
    assert_problem(response, StatusCode::NOT_FOUND).await;
    assert_eq!(redis.keys(), baseline, "a refused request stored something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_spelled_like_a_username_never_reaches_that_user() {
    let redis = RedisServer::start();
    let (app, keys) = backend_app(&redis, |_| {}).await;
    let name = unique("alice");
    let user = app.signup_login(&name).await;
    let user_token = token_of(&user);
    let user_session = user["session_id"].as_str().expect("id").to_owned();
    app.login(&name).await;

    for subject in [name.clone(), name.to_ascii_uppercase()] {
        assert!(subject_sessions(&app, &keys.billing, &subject).await.is_empty(), "{subject}: the user's sessions");
        let (token, id, _) = created(&app, &keys.billing, &json!({ "subject": subject, "roles": ["admin"] })).await;
        assert_eq!(subject_sessions(&app, &keys.billing, &subject).await, vec![id.clone()]);
        // The user sees only their own sessions, with their own roles.
        let ids = app.session_ids(&user_token).await;
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(!ids.contains(&id));
        assert_eq!(app.roles(&user_token).await, json!(["user"]));
        // The subject's session is not the user's: no admin route knows it, no user route mixes.
        let profile: Value = app.get("/v1/profile", &token).await.json().await.expect("profile");
        assert_eq!(profile["user_id"], subject.as_str());
        assert_eq!(app.session_ids(&token).await, vec![id.clone()]);
        // A backend cannot end the user's session by its id, nor all of them by the name.
        let path = format!("/v1/backend/sessions/{user_session}");
        let response = with_key(app.client.delete(app.url(&path)), &keys.billing).send().await.expect("end");
        assert_problem(response, StatusCode::NOT_FOUND).await;
        assert_eq!(end_subject(&app, &keys.billing, &subject).await, 1);
        assert_eq!(app.profile_status(&user_token).await, StatusCode::OK);
        assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);
    }
    // And the user's login never opens the subject's record.
    let (subject_token, _, _) = created(&app, &keys.billing, &json!({ "subject": name })).await;
    let response = app.login_response(&name, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.profile_status(&subject_token).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_a_backend_states_reach_the_subjects_live_sessions() {
    let redis = RedisServer::start();
    let (app, keys) = backend_app(&redis, |_| {}).await;
    let subject = unique("role-subject");
    let (first, _, _) =
        created(&app, &keys.billing, &json!({ "subject": subject, "roles": ["billing", "user", "billing"] })).await;
    assert_eq!(app.roles(&first).await, json!(["billing", "user"]));
    warm_cache(&app, &first).await;
    let (second, _, _) = created(&app, &keys.billing, &json!({ "subject": subject, "roles": [] })).await;
    assert_eq!(app.roles(&second).await, json!([]));
    let started = Instant::now();
    loop {
        if app.roles(&first).await == json!([]) {
            break;
        }
        assert!(started.elapsed() < Duration::from_millis(500), "the first session kept its roles");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let verified =
        app.client.get(app.url("/v1/auth/verify?role=billing")).bearer_auth(&first).send().await.expect("verify");
    assert_eq!(verified.status(), StatusCode::FORBIDDEN);
}
