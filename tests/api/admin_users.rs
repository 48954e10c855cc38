//! The admin API on users and its command-line twin: viewing a user, disabling and enabling an
//! account (sessions ended at once on every instance, logins refused exactly like a wrong
//! password), granting and revoking roles, and how fast a role change reaches every instance:
//! admin calls always read the session from Redis, so a revoked admin is refused at once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// Register `name` and make it an admin with `sessiond admin grant-role`; returns its token.
async fn admin_session(app: &TestApp, redis: &RedisServer, name: &str) -> String {
    assert_eq!(app.register(name, PASSWORD).await.status(), StatusCode::CREATED);
    admin_cli(redis, &["grant-role", name, "admin"]).await;
    token_of(&app.login(name).await)
}

async fn view(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK, "admin call");
    response.json().await.expect("user view json")
}

fn roles_of(view: &Value) -> BTreeSet<String> {
    view["roles"].as_array().expect("roles array").iter().map(|r| r.as_str().expect("role").to_owned()).collect()
}

fn role_set(roles: &[&str]) -> BTreeSet<String> {
    roles.iter().map(|r| (*r).to_owned()).collect()
}

/// Poll `/v1/profile` until its roles are `want` (as a set); fails after [`PROPAGATION`].
async fn until_roles(app: &TestApp, token: &str, want: &[&str]) {
    let started = Instant::now();
    loop {
        let roles: BTreeSet<String> = app
            .roles(token)
            .await
            .as_array()
            .expect("roles")
            .iter()
            .map(|r| r.as_str().expect("role").to_owned())
            .collect();
        if roles == role_set(want) {
            return;
        }
        assert!(started.elapsed() < PROPAGATION, "profile roles still {roles:?}, not {want:?}, after {PROPAGATION:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_views_a_user_with_roles_state_and_live_sessions() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let boss = admin_session(&app, &redis, &unique("boss")).await;
    let name = unique("Viewed");
    let registered: Value = app.register(&name, PASSWORD).await.json().await.expect("json");
    let before = view(app.admin(Method::GET, &name, "", &boss).await).await;
    assert_eq!(before["sessions"], 0);
    let plain = token_of(&app.login(&name).await);
    app.login(&name).await;

    let body = view(app.admin(Method::GET, &name, "", &boss).await).await;
    let keys: BTreeSet<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys, ["created_at", "disabled", "roles", "sessions", "user_id", "username"].into(), "{body}");
    assert_eq!(body["user_id"], registered["user_id"]);
    assert_eq!(body["username"], name.as_str(), "spelled as registered");
    assert_eq!(body["roles"], json!(["user"]));
    assert_eq!(body["disabled"], false);
    assert_eq!(body["sessions"], 2);
    let created = humantime::parse_rfc3339(body["created_at"].as_str().expect("created_at")).expect("RFC 3339");
    let age = SystemTime::now().duration_since(created).unwrap_or_default();
    assert!(age < Duration::from_secs(60), "created {age:?} ago");
    // The username is case-insensitive, like at login.
    let again = view(app.admin(Method::GET, &name.to_uppercase(), "", &boss).await).await;
    assert_eq!(again["user_id"], registered["user_id"]);

    let problem = assert_problem(app.admin(Method::GET, &name, "", &plain).await, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["type"], "urn:sessiond:problem:forbidden");
    assert_problem(app.admin(Method::GET, "nobody-at-all", "", &plain).await, StatusCode::FORBIDDEN).await;
    assert_problem(app.admin(Method::GET, "nobody-at-all", "", &boss).await, StatusCode::NOT_FOUND).await;
    let response = app.send(Method::GET, &format!("/v1/admin/users/{name}"), None, None).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_ends_every_session_on_every_instance_and_refuses_logins_like_a_wrong_password() {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;
    let boss = admin_session(&a, &redis, &unique("boss")).await;
    let name = unique("suspended");
    let first = token_of(&a.signup_login(&name).await);
    let second = token_of(&b.login(&name).await);
    let bystander = token_of(&a.signup_login(&unique("bystander")).await);
    for app in [&a, &b] {
        warm_cache(app, &first).await;
        warm_cache(app, &second).await;
    }
    let wrong = a.login_response(&name, "not the password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong = wrong.text().await.expect("body");

    let body = view(a.admin(Method::POST, &name, "/disable", &boss).await).await;
    assert_eq!(body["disabled"], true);
    assert_eq!(body["sessions"], 0);
    for (label, app) in [("A", &a), ("B", &b)] {
        assert_eq!(app.profile_status(&first).await, StatusCode::UNAUTHORIZED, "first session on {label}");
        assert_eq!(app.profile_status(&second).await, StatusCode::UNAUTHORIZED, "second session on {label}");
        assert_eq!(app.profile_status(&bystander).await, StatusCode::OK, "another user on {label}");
    }
    for (label, app) in [("A", &a), ("B", &b)] {
        for password in [PASSWORD, "not the password"] {
            let response = app.login_response(&name, password).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "login of a disabled user on {label}");
            assert_eq!(response.text().await.expect("body"), wrong, "indistinguishable from a wrong password");
        }
    }
    let state = view(b.admin(Method::GET, &name, "", &boss).await).await;
    assert_eq!((state["disabled"].clone(), state["sessions"].clone()), (json!(true), json!(0)));

    let body = view(b.admin(Method::POST, &name, "/enable", &boss).await).await;
    assert_eq!(body["disabled"], false);
    let token = token_of(&a.login(&name).await);
    assert_eq!(b.profile_status(&token).await, StatusCode::OK);
    assert_eq!(view(a.admin(Method::GET, &name, "", &boss).await).await["sessions"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_disable_enable_or_change_roles() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("target");
    let target = token_of(&app.signup_login(&name).await);
    let plain = token_of(&app.signup_login(&unique("plain")).await);
    for (method, rest) in [
        (Method::POST, "/disable"),
        (Method::POST, "/enable"),
        (Method::PUT, "/roles/admin"),
        (Method::DELETE, "/roles/user"),
    ] {
        let response = app.admin(method.clone(), &name, rest, &plain).await;
        assert_problem(response, StatusCode::FORBIDDEN).await;
        let response = app.send(method.clone(), &format!("/v1/admin/users/{name}{rest}"), None, None).await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(app.profile_status(&target).await, StatusCode::OK);
    assert_eq!(app.roles(&target).await, json!(["user"]));
    assert_eq!(app.roles(&plain).await, json!(["user"]), "no one granted themselves anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_disable_their_own_account() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("selfish");
    let boss = admin_session(&app, &redis, &name).await;
    let problem = assert_problem(app.admin(Method::POST, &name, "/disable", &boss).await, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "urn:sessiond:problem:conflict");
    // Another spelling of the same account is the same account.
    let upper = name.to_uppercase();
    assert_problem(app.admin(Method::POST, &upper, "/disable", &boss).await, StatusCode::CONFLICT).await;
    assert_eq!(app.profile_status(&boss).await, StatusCode::OK);
    assert_eq!(view(app.admin(Method::GET, &name, "", &boss).await).await["disabled"], false);
    app.login(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_granted_and_revoked_through_the_api() {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;
    let boss = admin_session(&a, &redis, &unique("boss")).await;
    let name = unique("promoted");
    let target = token_of(&a.signup_login(&name).await);
    warm_cache(&b, &target).await;

    let body = view(a.admin(Method::PUT, &name, "/roles/auditor", &boss).await).await;
    assert_eq!(roles_of(&body), role_set(&["user", "auditor"]));
    until_roles(&a, &target, &["user", "auditor"]).await;
    until_roles(&b, &target, &["user", "auditor"]).await;
    assert_eq!(roles_of(&view(b.admin(Method::GET, &name, "", &boss).await).await), role_set(&["user", "auditor"]));

    let body = view(b.admin(Method::DELETE, &name, "/roles/auditor", &boss).await).await;
    assert_eq!(roles_of(&body), role_set(&["user"]));
    until_roles(&a, &target, &["user"]).await;
    until_roles(&b, &target, &["user"]).await;

    for bad in ["Auditor", "has%20space", "a%2Bb", &"r".repeat(33)] {
        for method in [Method::PUT, Method::DELETE] {
            let response = a.admin(method.clone(), &name, &format!("/roles/{bad}"), &boss).await;
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    }
    for method in [Method::PUT, Method::DELETE] {
        let response = a.admin(method, "nobody-at-all", "/roles/auditor", &boss).await;
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
    assert_eq!(roles_of(&view(a.admin(Method::GET, &name, "", &boss).await).await), role_set(&["user"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_whose_role_is_revoked_through_the_api_is_refused_at_once_everywhere() {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;
    let boss = admin_session(&a, &redis, &unique("boss")).await;
    let deputy_name = unique("deputy");
    let deputy = admin_session(&a, &redis, &deputy_name).await;
    let someone = unique("someone");
    a.register(&someone, PASSWORD).await;
    for app in [&a, &b] {
        view(app.admin(Method::GET, &someone, "", &deputy).await).await;
        warm_cache(app, &deputy).await;
    }

    view(a.admin(Method::DELETE, &deputy_name, "/roles/admin", &boss).await).await;
    for (label, app) in [("B", &b), ("A", &a)] {
        let response = app.admin(Method::GET, &someone, "", &deputy).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "the next admin call on {label}");
    }
    until_roles(&a, &deputy, &["user"]).await;
    until_roles(&b, &deputy, &["user"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_revoked_on_the_command_line_is_refused_at_once_and_leaves_the_profile_quickly() {
    let redis = RedisServer::start();
    let a = spawn_app(Some(&redis)).await;
    let b = spawn_app(Some(&redis)).await;
    let name = unique("demoted");
    let boss = admin_session(&a, &redis, &name).await;
    let someone = unique("someone");
    a.register(&someone, PASSWORD).await;
    // The admin session has been validated, and is cached, on both instances.
    for app in [&a, &b] {
        view(app.admin(Method::GET, &someone, "", &boss).await).await;
        warm_cache(app, &boss).await;
        assert_eq!(roles_of(&json!({ "roles": app.roles(&boss).await })), role_set(&["user", "admin"]));
    }

    let stdout = admin_cli(&redis, &["revoke-role", &name, "admin"]).await;
    assert!(stdout.contains(&name), "{stdout}");
    for (label, app) in [("A", &a), ("B", &b)] {
        let response = app.admin(Method::GET, &someone, "", &boss).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "the very next admin call on {label}");
        let response = app.admin(Method::POST, &someone, "/disable", &boss).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "a disable on {label}");
    }
    until_roles(&a, &boss, &["user"]).await;
    until_roles(&b, &boss, &["user"]).await;
    assert_eq!(a.profile_status(&boss).await, StatusCode::OK, "the session itself stays");
    a.login(&someone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_disables_and_enables_a_user() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("offline");
    let first = token_of(&app.signup_login(&name).await);
    let second = token_of(&app.login(&name).await);
    warm_cache(&app, &first).await;
    let wrong = app.login_response(&name, "not the password").await.text().await.expect("body");

    let stdout = admin_cli(&redis, &["disable", &name]).await;
    assert_eq!(stdout, format!("disabled {name} (2 sessions ended)\n"));
    for token in [&first, &second] {
        until_profile_status(&app, token, StatusCode::UNAUTHORIZED, PROPAGATION).await;
    }
    let refused = app.login_response(&name, PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.text().await.expect("body"), wrong);

    let stdout = admin_cli(&redis, &["enable", &name]).await;
    assert_eq!(stdout, format!("enabled {name}\n"));
    let token = token_of(&app.login(&name).await);
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);

    let url = redis.url();
    for command in ["disable", "enable"] {
        let ghost = unique("ghost");
        let out = sessiond_cli(&[("SESSIOND_REDIS_URL", url.as_str())], &["admin", command, &ghost]).await;
        assert!(!out.status.success(), "{command} of an unknown user succeeded: {}", out.stdout);
        assert!(out.stderr.contains("no such user"), "{command}: {}", out.stderr);
    }
    // Without a store there is nothing to change.
    let out = sessiond_cli(&[], &["admin", "disable", &name]).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("SESSIOND_REDIS_URL"), "{}", out.stderr);
}
