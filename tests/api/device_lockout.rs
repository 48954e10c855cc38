//! The targeted-lockout defence: an attacker guessing a user's password locks out only the
//! clients that cannot prove they logged in as that user before. A device token (handed out
//! by a successful login, presented in a header or a cookie) gives its holder an allowance of
//! its own, in the shared failed-login guard and in the per-instance account limiter; a token
//! of another user, a tampered one or none at all does not.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::json;
use sessiond::limits::QuotaSpec;

use crate::helpers::*;

const HEADER: &str = "sessiond-device-token";
const COOKIE: &str = "sessiond_device";
const FAILURES: u32 = 3;

/// How a login attempt presents a device token.
#[derive(Clone, Copy, Debug)]
enum Device<'a> {
    None,
    Header(&'a str),
    Cookie(&'a str),
}

async fn attempt(app: &TestApp, username: &str, password: &str, device: Device<'_>) -> Response {
    let mut request =
        app.client.post(app.url("/v1/auth/login")).json(&json!({ "username": username, "password": password }));
    request = match device {
        Device::None => request,
        Device::Header(token) => request.header(HEADER, token),
        Device::Cookie(token) => request.header("cookie", format!("{COOKIE}={token}")),
    };
    request.send().await.expect("login")
}

async fn status(app: &TestApp, username: &str, password: &str, device: Device<'_>) -> StatusCode {
    attempt(app, username, password, device).await.status()
}

/// The device token a successful response handed out.
fn device_token(response: &Response) -> String {
    response
        .headers()
        .get(HEADER)
        .unwrap_or_else(|| panic!("no {HEADER} header on a {}", response.status()))
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Log in from a new client; returns the device token it was given.
async fn new_device(app: &TestApp, username: &str) -> String {
    let response = attempt(app, username, PASSWORD, Device::None).await;
    assert_eq!(response.status(), StatusCode::OK, "login of {username}");
    device_token(&response)
}

/// The same token with one character changed where every bit is signed data.
fn tampered(token: &str, at: usize) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let at = (at..chars.len()).find(|i| chars[*i].is_ascii_alphanumeric()).expect("an alphanumeric character");
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn guard_config(c: &mut sessiond::Config) {
    c.login_failures = FAILURES;
    c.login_failure_window = Duration::from_secs(60);
}

/// Wrong passwords from clients without a device token until the account is locked for them.
async fn lock_out_untrusted(app: &TestApp, username: &str) {
    for n in 0..FAILURES {
        let wrong = format!("attacker guess {n}");
        assert_eq!(status(app, username, &wrong, Device::None).await, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    assert_eq!(status(app, username, "attacker guess", Device::None).await, StatusCode::TOO_MANY_REQUESTS);
    let response = attempt(app, username, PASSWORD, Device::None).await;
    let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(problem["type"], "urn:sessiond:problem:rate-limited", "a new client is locked out too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_hands_out_a_device_token_in_a_header_and_a_strict_cookie() {
    for secure in [false, true] {
        let redis = RedisServer::start();
        let app = spawn_app_with(Some(&redis), |c| c.cookie_secure = secure).await;
        let user = unique("handed");
        app.register(&user, PASSWORD).await;
        let response = attempt(&app, &user, PASSWORD, Device::None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let token = device_token(&response);
        assert!(token.len() >= 16, "{token:?}");
        // Secure cookies get the __Host- prefix (no Domain, Path=/, HTTPS only).
        let name = if secure { format!("__Host-{COOKIE}") } else { COOKIE.to_owned() };
        let cookie = set_cookie(&response, &name).expect("a device cookie");
        let mut parts = cookie.split("; ");
        assert_eq!(parts.next(), Some(format!("{name}={token}").as_str()), "{cookie}");
        let attributes: BTreeSet<&str> = parts.collect();
        let max_age: u64 = attributes
            .iter()
            .find_map(|a| a.strip_prefix("Max-Age="))
            .unwrap_or_else(|| panic!("no Max-Age: {cookie}"))
            .parse()
            .expect("seconds");
        let thirty_days = 30 * 24 * 3600;
        assert!((thirty_days - 60..=thirty_days).contains(&max_age), "Max-Age {max_age}");
        let mut want: BTreeSet<&str> = ["HttpOnly", "SameSite=Strict", "Path=/"].into();
        let max_age = format!("Max-Age={max_age}");
        want.insert(&max_age);
        if secure {
            want.insert("Secure");
        }
        assert_eq!(attributes, want, "{cookie}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert!(!body.to_string().contains(&token), "the device token is not in the body");

        // A second client gets a device of its own.
        assert_ne!(new_device(&app, &user).await, token, "two clients, one device token");
        // A password change hands out one too.
        let session = token_of(&app.login(&user).await);
        let response = app.change_password(&session, PASSWORD, "a brand new passphrase").await;
        assert_eq!(response.status(), StatusCode::OK);
        // Authenticated by the bearer header, it answers like a bearer login: the header only.
        assert!(!device_token(&response).is_empty());
        assert!(set_cookie(&response, &name).is_none(), "{:?}", set_cookies(&response));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_does_not_lock_out_the_holder_of_a_device_token() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), guard_config).await;
    let name = unique("alice");
    app.register(&name, PASSWORD).await;
    let device = new_device(&app, &name).await;

    lock_out_untrusted(&app, &name).await;
    for channel in [Device::Header(&device), Device::Cookie(&device), Device::Header(&device)] {
        let response = attempt(&app, &name, PASSWORD, channel).await;
        assert_eq!(response.status(), StatusCode::OK, "{channel:?} while the attacker is locked out");
        let token = token_of(&response.json().await.expect("json"));
        assert_eq!(app.profile_status(&token).await, StatusCode::OK);
        // ...and the attacker still is.
        assert_eq!(status(&app, &name, "attacker guess", Device::None).await, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status(&app, &name, PASSWORD, Device::None).await, StatusCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_token_of_another_user_or_a_tampered_one_does_not_help() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), guard_config).await;
    let alice = unique("alice");
    let bob = unique("bob");
    app.register(&alice, PASSWORD).await;
    app.register(&bob, PASSWORD).await;
    let own = new_device(&app, &alice).await;
    let bobs = new_device(&app, &bob).await;

    lock_out_untrusted(&app, &alice).await;
    let forged = [bobs.clone(), tampered(&own, 0), tampered(&own, own.len() / 2), "not-a-device-token".to_owned()];
    for token in &forged {
        for channel in [Device::Header(token), Device::Cookie(token)] {
            assert_eq!(status(&app, &alice, PASSWORD, channel).await, StatusCode::TOO_MANY_REQUESTS, "{channel:?}");
        }
    }
    assert_eq!(status(&app, &alice, PASSWORD, Device::Header(&own)).await, StatusCode::OK, "the genuine token");
    // Bob's token still works for bob.
    assert_eq!(status(&app, &bob, PASSWORD, Device::Header(&bobs)).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_guesses_is_throttled_alone() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), guard_config).await;
    // Failures through the header and a second device through the cookie, then the other way.
    for flip in [false, true] {
        let name = unique("alice");
        app.register(&name, PASSWORD).await;
        let (guessing, other) = (new_device(&app, &name).await, new_device(&app, &name).await);
        assert_ne!(guessing, other);
        let (guessing, other) = if flip {
            (Device::Cookie(&guessing), Device::Header(&other))
        } else {
            (Device::Header(&guessing), Device::Cookie(&other))
        };
        lock_out_untrusted(&app, &name).await;

        for n in 0..FAILURES {
            let wrong = format!("device guess {n}");
            assert_eq!(status(&app, &name, &wrong, guessing).await, StatusCode::UNAUTHORIZED, "{guessing:?} {n}");
        }
        let response = attempt(&app, &name, PASSWORD, guessing).await;
        assert!(response.headers().contains_key("retry-after"), "429 without Retry-After");
        assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;

        assert_eq!(status(&app, &name, PASSWORD, other).await, StatusCode::OK, "{other:?} is another device");
        assert_eq!(status(&app, &name, PASSWORD, guessing).await, StatusCode::TOO_MANY_REQUESTS, "{guessing:?}");
        assert_eq!(status(&app, &name, PASSWORD, Device::None).await, StatusCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_device_token_everyone_shares_the_guard() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), guard_config).await;
    let name = unique("alice");
    app.register(&name, PASSWORD).await;
    // A device token in the body, or under another header, is no device token.
    let device = new_device(&app, &name).await;
    lock_out_untrusted(&app, &name).await;
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-device-token", &device)
        .header("cookie", format!("sid={device}"))
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_instance_account_limiter_keeps_an_allowance_for_the_device() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.login_failures = 0;
        c.rate_limit_login_account = "1/m burst 3".parse::<QuotaSpec>().expect("quota");
    })
    .await;
    let alice = unique("alice");
    let bob = unique("bob");
    app.register(&alice, PASSWORD).await;
    app.register(&bob, PASSWORD).await;
    let device = new_device(&app, &alice).await; // one of the three untrusted attempts
    let bobs = new_device(&app, &bob).await;

    for n in 0..2 {
        let wrong = format!("attacker guess {n}");
        assert_eq!(status(&app, &alice, &wrong, Device::None).await, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    let response = attempt(&app, &alice, "attacker guess", Device::None).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(status(&app, &alice, PASSWORD, Device::None).await, StatusCode::TOO_MANY_REQUESTS);

    for token in [bobs.as_str(), &tampered(&device, 0)] {
        assert_eq!(status(&app, &alice, PASSWORD, Device::Header(token)).await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(status(&app, &alice, PASSWORD, Device::Header(&device)).await, StatusCode::OK);
    assert_eq!(status(&app, &alice, PASSWORD, Device::Cookie(&device)).await, StatusCode::OK);
    assert_eq!(status(&app, &alice, PASSWORD, Device::None).await, StatusCode::TOO_MANY_REQUESTS, "still locked");
}

fn binary_env<'a>(key: &'a str, ttl: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("SESSIOND_DEVICE_TOKEN_KEY", key),
        ("SESSIOND_DEVICE_TOKEN_TTL", ttl),
        ("SESSIOND_LOGIN_FAILURES", "3"),
        ("SESSIOND_LOGIN_FAILURE_WINDOW", "10m"),
        // All traffic comes from one address.
        ("SESSIOND_RATE_LIMIT_LOGIN_IP", "0"),
        ("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "0"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_device_token_key_honour_each_others_device_tokens() {
    let redis = RedisServer::start();
    let key = "k".repeat(24) + "-shared-device-key";
    let vars = binary_env(&key, "1h");
    let mut a = ServerProcess::start(&redis.url(), &vars);
    let mut b = ServerProcess::start(&redis.url(), &vars);
    let client = reqwest::Client::new();
    a.wait_ready(&client).await;
    b.wait_ready(&client).await;
    let name = unique("roaming");
    let login = |server: &ServerProcess, password: &str, device: Option<&str>| {
        let mut request =
            client.post(server.url("/v1/auth/login")).json(&json!({ "username": name, "password": password }));
        if let Some(device) = device {
            request = request.header(HEADER, device);
        }
        async move { request.send().await.expect("login") }
    };
    let body = json!({ "username": name, "password": PASSWORD });
    let response = client.post(a.url("/v1/auth/register")).json(&body).send().await.expect("register");
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = login(&a, PASSWORD, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let device = device_token(&response);
    let cookie = set_cookie(&response, COOKIE).expect("a device cookie");
    assert!(cookie.split("; ").any(|a| a == "Max-Age=3600"), "SESSIOND_DEVICE_TOKEN_TTL=1h: {cookie}");

    // Locked out through B (the guard is shared), let in on B with the token from A.
    for n in 0..3 {
        assert_eq!(login(&b, &format!("attacker guess {n}"), None).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login(&a, PASSWORD, None).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login(&b, PASSWORD, None).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login(&b, PASSWORD, Some(&device)).await.status(), StatusCode::OK, "A's device token on B");
    assert_eq!(login(&a, PASSWORD, Some(&device)).await.status(), StatusCode::OK);
    a.terminate();
    b.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_token_key_shorter_than_32_characters_is_refused_at_start_up() {
    let short = "s".repeat(31);
    let out = sessiond_cli(&[("SESSIOND_DEVICE_TOKEN_KEY", short.as_str())], &[]).await;
    assert!(!out.status.success(), "a 31-character key was accepted");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("SESSIOND_DEVICE_TOKEN_KEY"), "{}", out.stderr);
    assert!(!out.stderr.contains(&short), "the key was printed: {}", out.stderr);
}
