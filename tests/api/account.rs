//! The account's own lifecycle: changing the password (a rotated session, every other session
//! ended at once on every instance, the failed-login guard counting wrong current passwords),
//! deleting the account (nothing left behind in Redis, the name free again), logging out a
//! token that is no longer valid, and what registration costs and how often it is allowed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sessiond::limits::QuotaSpec;

use crate::helpers::*;

const NEW_PASSWORD: &str = "a brand new passphrase";

fn quota(text: &str) -> QuotaSpec {
    text.parse().expect("quota")
}

fn keys_of(body: &Value) -> BTreeSet<String> {
    body.as_object().expect("object").keys().cloned().collect()
}

async fn profile(app: &TestApp, token: &str) -> Value {
    let response = app.get("/v1/profile", token).await;
    assert_eq!(response.status(), StatusCode::OK, "profile");
    response.json().await.expect("json")
}

/// `DBSIZE` once it has held still for half a second: the instances' own bookkeeping keys
/// (made in the background once connected) are in place.
async fn settled_dbsize(redis: &RedisServer) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut last, mut since) = (redis.cmd(&["DBSIZE"]).int(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let now = redis.cmd(&["DBSIZE"]).int();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_millis(500) {
            return now;
        }
        assert!(Instant::now() < deadline, "DBSIZE never settled (last {last})");
    }
}

/// The problem's detail names `field` (as every 422 does).
fn names_field(problem: &Value, field: &str) -> bool {
    problem["detail"].as_str().unwrap_or_default().contains(&format!("`{field}`"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_rotates_the_calling_session_and_ends_every_other_one_everywhere() {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;
    let name = unique("changer");
    let login = a.signup_login(&name).await;
    let old = token_of(&login);
    let other = token_of(&a.login(&name).await);
    let bystander = token_of(&a.signup_login(&unique("bystander")).await);
    let before = profile(&a, &old).await;
    // Both instances answer these sessions from their caches.
    for app in [&a, &b] {
        warm_cache(app, &old).await;
        warm_cache(app, &other).await;
    }

    let response = a.change_password(&old, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Authenticated by the bearer header: answered the same way, the token in the body and no
    // cookie (a cookie-authenticated change would set the cookie instead).
    assert!(set_cookie(&response, "sid").is_none(), "a bearer change sets no session cookie");
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        keys_of(&body),
        ["expires_at", "idle_expires_at", "session_id", "token"].map(str::to_owned).into(),
        "{body}"
    );
    let new = token_of(&body);
    assert_ne!(new, old, "the session gets a new token");
    assert_eq!(body["session_id"], login["session_id"], "the same session, rotated");
    assert_eq!(body["expires_at"], login["expires_at"], "the absolute deadline does not move");

    // At once, on the instance that changed it and on the other one, cache or not.
    for (label, app) in [("A", &a), ("B", &b)] {
        assert_eq!(app.profile_status(&old).await, StatusCode::UNAUTHORIZED, "old token on {label}");
        assert_eq!(app.profile_status(&other).await, StatusCode::UNAUTHORIZED, "other session on {label}");
        assert_eq!(app.profile_status(&new).await, StatusCode::OK, "new token on {label}");
        assert_eq!(app.profile_status(&bystander).await, StatusCode::OK, "another user's session on {label}");
    }
    let after = profile(&b, &new).await;
    assert_eq!(after["session"]["session_id"], before["session"]["session_id"]);
    assert_eq!(after["session"]["created_at"], before["session"]["created_at"]);
    assert_eq!(after["session"]["expires_at"], before["session"]["expires_at"]);
    assert_eq!(a.session_ids(&new).await, vec![login["session_id"].as_str().expect("id").to_owned()]);

    assert_eq!(a.login_response(&name, PASSWORD).await.status(), StatusCode::UNAUTHORIZED, "old password");
    assert_eq!(b.login_response(&name, PASSWORD).await.status(), StatusCode::UNAUTHORIZED, "old password on B");
    assert_eq!(b.login_response(&name, NEW_PASSWORD).await.status(), StatusCode::OK, "new password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_current_password_is_refused_and_changes_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("careful");
    let token = token_of(&app.signup_login(&name).await);
    let other = token_of(&app.login(&name).await);

    for _ in 0..2 {
        let response = app.change_password(&token, "not my password", NEW_PASSWORD).await;
        let problem = assert_problem(response, StatusCode::FORBIDDEN).await;
        assert_eq!(problem["type"], "urn:sessiond:problem:reauthentication-failed");
        assert!(!problem.to_string().contains(NEW_PASSWORD));
    }
    assert_eq!(app.profile_status(&token).await, StatusCode::OK, "the calling session stays");
    assert_eq!(app.profile_status(&other).await, StatusCode::OK, "other sessions stay");
    assert_eq!(app.login_response(&name, NEW_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login_response(&name, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_current_passwords_count_toward_the_failed_login_guard() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.login_failures = 3;
        c.login_failure_window = Duration::from_secs(60);
    })
    .await;
    let name = unique("guessed");
    let token = token_of(&app.signup_login(&name).await);

    for n in 0..3 {
        let response = app.change_password(&token, &format!("guess number {n}"), NEW_PASSWORD).await;
        assert_problem(response, StatusCode::FORBIDDEN).await;
    }
    // Three failures: the guard now holds the account, for the right password too.
    let response = app.change_password(&token, PASSWORD, NEW_PASSWORD).await;
    assert!(response.headers().contains_key("retry-after"), "429 without Retry-After");
    let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(problem["type"], "urn:sessiond:problem:rate-limited");
    let response = app.login_response(&name, PASSWORD).await;
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    // The guard refused the change: nothing changed.
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    assert_eq!(app.login_response(&name, NEW_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_new_password_is_refused_and_changes_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("picky");
    let token = token_of(&app.signup_login(&name).await);
    let other = token_of(&app.login(&name).await);

    let short = "1234567"; // one below the default minimum of 8
    for new in [short, PASSWORD] {
        let problem =
            assert_problem(app.change_password(&token, PASSWORD, new).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["type"], "urn:sessiond:problem:invalid-field");
        assert!(names_field(&problem, "new_password"), "{new:?}: {problem}");
    }
    // Like every body: an unknown field is 422 naming it.
    let body = json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD });
    let response = app.send(Method::POST, "/v1/account/password", Some(&token), Some(&body)).await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(names_field(&problem, "confirm"), "{problem}");

    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    assert_eq!(app.profile_status(&other).await, StatusCode::OK);
    assert_eq!(app.login_response(&name, short).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login_response(&name, NEW_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login_response(&name, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_needs_a_session() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("anonymous");
    let token = token_of(&app.signup_login(&name).await);
    let body = json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD });

    let response = app.send(Method::POST, "/v1/account/password", None, Some(&body)).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let bogus = "A".repeat(43);
    assert_problem(app.change_password(&bogus, PASSWORD, NEW_PASSWORD).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    assert_problem(app.change_password(&token, PASSWORD, NEW_PASSWORD).await, StatusCode::UNAUTHORIZED).await;
    // Nothing changed.
    assert_eq!(app.login_response(&name, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_ends_its_sessions_frees_the_name_and_leaves_no_key_behind() {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;
    let empty = settled_dbsize(&redis).await;

    let name = unique("leaver");
    assert_eq!(a.register(&name, PASSWORD).await.status(), StatusCode::CREATED);
    let first = token_of(&a.login(&name).await);
    let second = token_of(&b.login(&name).await);
    let response = a.post("/v1/auth/refresh", &second).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second = token_of(&response.json().await.expect("json"));
    warm_cache(&b, &second).await;
    warm_cache(&b, &first).await;
    assert!(redis.cmd(&["DBSIZE"]).int() > empty, "the account and its sessions are stored");

    let response = a.delete_account(&first, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cleared = set_cookie(&response, "sid").expect("a clearing session cookie");
    assert!(cleared.starts_with("sid=; Max-Age=0"), "{cleared}");
    assert_eq!(redis.cmd(&["DBSIZE"]).int(), empty, "keys left behind: {:?}", redis.keys());

    for token in [&first, &second] {
        assert_eq!(a.profile_status(token).await, StatusCode::UNAUTHORIZED);
        until_profile_status(&b, token, StatusCode::UNAUTHORIZED, PROPAGATION).await;
    }
    let deleted = a.login_response(&name, PASSWORD).await;
    assert_eq!(deleted.status(), StatusCode::UNAUTHORIZED);
    let deleted = deleted.text().await.expect("body");
    let unknown = a.login_response(&unique("never-registered"), PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(deleted, unknown.text().await.expect("body"), "a deleted user looks like an unknown one");

    let response = b.register(&name, "another passphrase").await;
    assert_eq!(response.status(), StatusCode::CREATED, "the name is free again");
    assert_eq!(a.login_response(&name, PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(a.login_response(&name, "another passphrase").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_does_not_delete_the_account() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("keeper");
    let token = token_of(&app.signup_login(&name).await);
    let keys = settled_dbsize(&redis).await;

    let problem = assert_problem(app.delete_account(&token, "not my password").await, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["type"], "urn:sessiond:problem:reauthentication-failed");
    assert_eq!(redis.cmd(&["DBSIZE"]).int(), keys);
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    assert_eq!(app.register(&name, PASSWORD).await.status(), StatusCode::CONFLICT, "still registered");
    assert_eq!(app.login_response(&name, PASSWORD).await.status(), StatusCode::OK);
    // And without a session there is nothing to delete.
    let body = json!({ "password": PASSWORD });
    assert_problem(app.send(Method::DELETE, "/v1/account", None, Some(&body)).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_a_revoked_token_is_refused() {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;
    let name = unique("twice");
    let keeper = token_of(&a.signup_login(&name).await);

    // Logged out already.
    let token = token_of(&a.login(&name).await);
    assert_eq!(a.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    assert_problem(a.post("/v1/auth/logout", &token).await, StatusCode::UNAUTHORIZED).await;

    // Revoked by id from another session.
    let login = a.login(&name).await;
    let token = token_of(&login);
    let id = login["session_id"].as_str().expect("id");
    assert_eq!(a.delete(&format!("/v1/sessions/{id}"), &keeper).await.status(), StatusCode::NO_CONTENT);
    assert_problem(a.post("/v1/auth/logout", &token).await, StatusCode::UNAUTHORIZED).await;

    // Ended by "log out everywhere".
    let token = token_of(&a.login(&name).await);
    assert_eq!(a.delete("/v1/sessions?except_current=true", &keeper).await.status(), StatusCode::NO_CONTENT);
    assert_problem(a.post("/v1/auth/logout", &token).await, StatusCode::UNAUTHORIZED).await;

    // Logged out on A while B still holds it in its cache: B's logout ends nothing.
    for round in 0..5 {
        let token = token_of(&a.login(&name).await);
        warm_cache(&b, &token).await;
        assert_eq!(a.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
        let response = b.post("/v1/auth/logout", &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "round {round}: a second logout on B");
    }
    assert_eq!(a.profile_status(&keeper).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_logouts_with_one_token_exactly_one_succeeds() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("racer");
    app.register(&name, PASSWORD).await;
    for round in 0..5 {
        let token = token_of(&app.login(&name).await);
        warm_cache(&app, &token).await;
        let statuses: Vec<StatusCode> =
            futures_util::future::join_all((0..8).map(|_| app.post("/v1/auth/logout", &token)))
                .await
                .iter()
                .map(Response::status)
                .collect();
        let ended = statuses.iter().filter(|s| **s == StatusCode::NO_CONTENT).count();
        assert_eq!(ended, 1, "round {round}: {statuses:?}");
        assert!(
            statuses.iter().all(|s| matches!(*s, StatusCode::NO_CONTENT | StatusCode::UNAUTHORIZED)),
            "{statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_an_expired_token_is_refused() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.idle_timeout = Duration::from_secs(1)).await;
    let name = unique("sleeper");
    let cold = token_of(&app.signup_login(&name).await);
    let cached = token_of(&app.login(&name).await);
    warm_cache(&app, &cached).await;
    let last_use = Instant::now();

    // Past the idle deadline of both (at most one idle timeout after their last use).
    tokio::time::sleep(Duration::from_millis(1_500).saturating_sub(last_use.elapsed())).await;
    for token in [&cold, &cached] {
        let response = app.post("/v1/auth/logout", token).await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(app.profile_status(&cached).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_username_costs_one_password_hash_like_a_fresh_one() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let hashes = |text: String| metric_value(&text, "sessiond_password_hash_duration_seconds_count", &[("op", "hash")]);
    let name = unique("Popular");

    let before = hashes(app.metrics_text().await);
    assert_eq!(app.register(&name, PASSWORD).await.status(), StatusCode::CREATED);
    let fresh = hashes(app.metrics_text().await);
    assert_eq!(fresh - before, 1.0, "a registration hashes its password once");

    let response = app.register(&name.to_lowercase(), "someone else's password").await;
    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "urn:sessiond:problem:username-taken");
    let taken = hashes(app.metrics_text().await);
    assert_eq!(taken - fresh, 1.0, "a taken name costs the same hash as a fresh one");
    // The first owner keeps the account.
    assert_eq!(app.login_response(&name, "someone else's password").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login_response(&name, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_limited_per_client_address() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.rate_limit_register_ip = quota("2/m burst 2")).await;
    let client = client_from("127.0.0.2");
    let register = |client: &reqwest::Client, name: String| {
        let request =
            client.post(app.url("/v1/auth/register")).json(&json!({ "username": name, "password": PASSWORD }));
        async move { request.send().await.expect("register") }
    };
    for _ in 0..2 {
        assert_eq!(register(&client, unique("early")).await.status(), StatusCode::CREATED);
    }
    let late = unique("late");
    let response = register(&client, late.clone()).await;
    let retry: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After on a 429")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(problem["type"], "urn:sessiond:problem:rate-limited");
    assert_eq!(app.login_response(&late, PASSWORD).await.status(), StatusCode::UNAUTHORIZED, "nothing registered");
    // Another address has an allowance of its own.
    assert_eq!(register(&client_from("127.0.0.3"), late.clone()).await.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_limits_registrations_per_address_by_default() {
    let redis = RedisServer::start();
    let mut server = ServerProcess::start(&redis.url(), &[]);
    let client = reqwest::Client::new();
    server.wait_ready(&client).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let body = json!({ "username": unique("defaulted"), "password": PASSWORD });
        let response = client.post(server.url("/v1/auth/register")).json(&body).send().await.expect("register");
        statuses.push(response.status());
    }
    // `10/m burst 5`: five at once, then one every six seconds.
    assert_eq!(statuses[..5], [StatusCode::CREATED; 5], "{statuses:?}");
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    server.terminate();
}
