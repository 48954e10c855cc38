//! Browser sessions, checked over HTTP:
//!
//! 1. the session cookie is `sid` (plain HTTP) or `__Host-sid` (secure mode), `HttpOnly`,
//!    `SameSite` as configured, `Path=/`, never a `Domain`; a prefixed name is refused at
//!    start-up and insecure cookies are warned about;
//! 2. a login chooses its transport (cookie, bearer, or both), and a refresh answers in the
//!    transport its credential came in;
//! 3. a request carrying the session cookie more than once is an ordinary 401 that touches
//!    nothing;
//! 4. state-changing requests authenticated by the cookie are refused (403) when
//!    `Sec-Fetch-Site` or `Origin` says another site started them, and the refusal changes
//!    nothing and is counted; header credentials and reads are never checked;
//! 5. every response carries the security headers, HTML pages a strict CSP and
//!    `X-Frame-Options`;
//!
//! and the web pages' routes (redirects, the failed sign-in page, the account page) at the
//! HTTP level.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sessiond::config::SameSite;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::helpers::*;

const DEVICE_HEADER: &str = "sessiond-device-token";
const CROSS_SITE: &str = "urn:sessiond:problem:cross-site-request";

// ---------------------------------------------------------------------------------------------
// Cookies.

/// A `Set-Cookie` header taken apart: attribute names lower-cased, values as sent.
#[derive(Debug)]
struct SetCookie {
    name: String,
    value: String,
    attributes: BTreeMap<String, String>,
    raw: String,
}

impl SetCookie {
    fn parse(raw: &str) -> Self {
        let mut parts = raw.split(';').map(str::trim);
        let (name, value) =
            parts.next().and_then(|p| p.split_once('=')).unwrap_or_else(|| panic!("no name=value: {raw}"));
        let attributes = parts
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (key, value) = p.split_once('=').unwrap_or((p, ""));
                (key.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        Self { name: name.to_owned(), value: value.to_owned(), attributes, raw: raw.to_owned() }
    }

    /// Assert the attributes are exactly `want` (`"secure"`, `"samesite=Lax"`, `"max-age"` for
    /// any value); attribute names compare case-insensitively, `SameSite` values too.
    fn assert_attributes(&self, want: &[&str]) {
        let mut expected: BTreeMap<String, Option<String>> = BTreeMap::new();
        for item in want {
            let (key, value) = item.split_once('=').map_or((*item, None), |(k, v)| (k, Some(v.to_owned())));
            expected.insert(key.to_ascii_lowercase(), value);
        }
        let names: Vec<&String> = self.attributes.keys().collect();
        let wanted: Vec<&String> = expected.keys().collect();
        assert_eq!(names, wanted, "attributes of {}", self.raw);
        for (key, value) in &expected {
            let Some(value) = value else { continue };
            let got = &self.attributes[key];
            let same = if key == "samesite" { got.eq_ignore_ascii_case(value) } else { got == value };
            assert!(same, "{key}={got}, not {value}, in {}", self.raw);
        }
    }

    fn max_age(&self) -> u64 {
        self.attributes.get("max-age").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("Max-Age in {}", self.raw))
    }
}

/// The one `Set-Cookie` of `response` that sets `name`; fails if there are several.
fn the_cookie(response: &Response, name: &str) -> SetCookie {
    let matching: Vec<SetCookie> =
        set_cookies(response).iter().map(|raw| SetCookie::parse(raw)).filter(|c| c.name == name).collect();
    assert_eq!(matching.len(), 1, "Set-Cookie for {name} among {:?}", set_cookies(response));
    matching.into_iter().next().expect("one")
}

/// The session cookie's name in a mode.
fn session_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-sid"
    } else {
        "sid"
    }
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().expect("ascii header"))
}

fn location(response: &Response) -> &str {
    header(response, "location").unwrap_or_else(|| panic!("no Location on a {}", response.status()))
}

async fn login_with(app: &TestApp, username: &str, transport: Option<Value>) -> Response {
    let mut body = json!({ "username": username, "password": PASSWORD });
    if let Some(transport) = transport {
        body["transport"] = transport;
    }
    app.post_json("/v1/auth/login", &body).await
}

async fn registered(app: &TestApp, prefix: &str) -> String {
    let name = unique(prefix);
    assert_eq!(app.register(&name, PASSWORD).await.status(), StatusCode::CREATED, "register {name}");
    name
}

/// `GET /v1/profile` with one raw `Cookie` header.
async fn profile_with_cookie(app: &TestApp, cookie: &str) -> StatusCode {
    app.client.get(app.url("/v1/profile")).header("cookie", cookie).send().await.expect("profile").status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_plain_http_the_session_cookie_is_sid_http_only_lax_and_path_root_without_secure_or_domain() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "plaincookie").await;

    let response = login_with(&app, &name, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = the_cookie(&response, "sid");
    session.assert_attributes(&["httponly", "samesite=Lax", "path=/"]);
    let device = the_cookie(&response, "sessiond_device");
    device.assert_attributes(&["httponly", "samesite=Strict", "path=/", "max-age"]);
    assert!(device.max_age() > 0, "{}", device.raw);
    for cookie in set_cookies(&response) {
        assert!(!cookie.starts_with("__Host-") && !cookie.starts_with("__Secure-"), "{cookie}");
    }
    let body: Value = response.json().await.expect("json");
    assert_eq!(session.value, token_of(&body));

    let logout =
        app.client.post(app.url("/v1/auth/logout")).header("cookie", format!("sid={}", session.value)).send().await;
    let logout = logout.expect("logout");
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let cleared = the_cookie(&logout, "sid");
    assert_eq!(cleared.value, "");
    cleared.assert_attributes(&["max-age=0", "httponly", "samesite=Lax", "path=/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_secure_mode_the_session_cookie_is_host_prefixed_secure_http_only_lax_and_path_root_without_domain() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.cookie_secure = true).await;
    let name = registered(&app, "securecookie").await;

    let response = login_with(&app, &name, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = the_cookie(&response, "__Host-sid");
    session.assert_attributes(&["httponly", "samesite=Lax", "path=/", "secure"]);
    let device = the_cookie(&response, "__Host-sessiond_device");
    device.assert_attributes(&["httponly", "samesite=Strict", "path=/", "max-age", "secure"]);
    assert!(device.max_age() > 0, "{}", device.raw);
    assert!(set_cookies(&response).iter().all(|c| c.starts_with("__Host-")), "{:?}", set_cookies(&response));
    let body: Value = response.json().await.expect("json");
    assert_eq!(session.value, token_of(&body));

    let logout = app
        .client
        .post(app.url("/v1/auth/logout"))
        .header("cookie", format!("__Host-sid={}", session.value))
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let cleared = the_cookie(&logout, "__Host-sid");
    assert_eq!(cleared.value, "");
    cleared.assert_attributes(&["max-age=0", "httponly", "samesite=Lax", "path=/", "secure"]);
    assert_eq!(app.profile_status(&session.value).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samesite_strict_is_applied_to_the_session_cookie_when_configured() {
    let redis = RedisServer::start();
    for secure in [false, true] {
        let app = spawn_app_with(Some(&redis), |c| {
            c.cookie_secure = secure;
            c.cookie_samesite = SameSite::Strict;
        })
        .await;
        let name = registered(&app, "strictcookie").await;
        let response = login_with(&app, &name, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = session_cookie(secure);
        let session = the_cookie(&response, cookie);
        let mut want = vec!["httponly", "samesite=Strict", "path=/"];
        if secure {
            want.push("secure");
        }
        session.assert_attributes(&want);

        let logout = app
            .client
            .post(app.url("/v1/auth/logout"))
            .header("cookie", format!("{cookie}={}", session.value))
            .send()
            .await
            .expect("logout");
        assert_eq!(logout.status(), StatusCode::NO_CONTENT, "secure={secure}");
        let cleared = the_cookie(&logout, cookie);
        want.push("max-age=0");
        cleared.assert_attributes(&want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_secure_mode_only_the_host_prefixed_cookie_authenticates() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.cookie_secure = true).await;
    let token = token_of(&app.signup_login(&unique("hostonly")).await);

    assert_eq!(profile_with_cookie(&app, &format!("__Host-sid={token}")).await, StatusCode::OK);
    assert_eq!(profile_with_cookie(&app, &format!("theme=dark; __Host-sid={token}")).await, StatusCode::OK);
    // A cookie without the prefix could have been planted by a sibling subdomain or over HTTP.
    assert_eq!(profile_with_cookie(&app, &format!("sid={token}")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(profile_with_cookie(&app, &format!("__Secure-sid={token}")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_name_carrying_a_host_or_secure_prefix_is_refused_at_start_up() {
    for name in ["__Host-sid", "__Secure-sid"] {
        let out = sessiond_cli(&[("SESSIOND_COOKIE_NAME", name)], &[]).await;
        assert_eq!(out.status.code(), Some(2), "SESSIOND_COOKIE_NAME={name}: {}; stderr:\n{}", out.status, out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "SESSIOND_COOKIE_NAME={name}: expected one line, got:\n{}", out.stderr);
        assert!(lines[0].contains("SESSIOND_COOKIE_NAME"), "the line does not name the variable: {}", out.stderr);
    }
}

/// Lines of `text` that mention `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|line| line.contains(needle)).collect()
}

/// Register and log in `username` against a running binary; the login response.
async fn binary_login(client: &reqwest::Client, process: &ServerProcess, username: &str) -> Response {
    let creds = json!({ "username": username, "password": PASSWORD });
    let r = client.post(process.url("/v1/auth/register")).json(&creds).send().await.expect("register");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client.post(process.url("/v1/auth/login")).json(&creds).send().await.expect("login");
    assert_eq!(r.status(), StatusCode::OK);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_warns_once_about_insecure_cookies_and_prefixes_the_configured_name_only_in_secure_mode() {
    let redis = RedisServer::start();
    let client = reqwest::Client::new();
    const WARNING: &str = "SESSIOND_COOKIE_SECURE=false";

    let mut insecure = ServerProcess::start(&redis.url(), &[("SESSIOND_COOKIE_NAME", "app_sid")]);
    insecure.wait_ready(&client).await;
    let response = binary_login(&client, &insecure, "binaryplain").await;
    the_cookie(&response, "app_sid").assert_attributes(&["httponly", "samesite=Lax", "path=/"]);
    insecure.terminate();
    let stderr = insecure.stderr();
    assert_eq!(lines_with(&stderr, WARNING).len(), 1, "one warning line naming {WARNING}; stderr:\n{stderr}");

    let mut secure = ServerProcess::start(
        &redis.url(),
        &[
            ("SESSIOND_COOKIE_NAME", "app_sid"),
            ("SESSIOND_COOKIE_SECURE", "true"),
            ("SESSIOND_COOKIE_SAMESITE", "strict"),
        ],
    );
    secure.wait_ready(&client).await;
    let response = binary_login(&client, &secure, "binarysecure").await;
    the_cookie(&response, "__Host-app_sid").assert_attributes(&["httponly", "samesite=Strict", "path=/", "secure"]);
    secure.terminate();
    let stderr = secure.stderr();
    assert!(lines_with(&stderr, WARNING).is_empty(), "a secure instance warned about insecure cookies:\n{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Transport.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_transport_login_sets_the_cookies_and_keeps_every_token_out_of_the_body_and_headers() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "cookietransport").await;

    let response = login_with(&app, &name, Some(json!("cookie"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, DEVICE_HEADER).is_none(), "a cookie login sent the device token in a header");
    let session = the_cookie(&response, "sid");
    session.assert_attributes(&["httponly", "samesite=Lax", "path=/"]);
    let device = the_cookie(&response, "sessiond_device");
    let text = response.text().await.expect("body");
    assert!(!text.contains(&session.value), "the session token is in the body: {text}");
    assert!(!text.contains(&device.value), "the device token is in the body: {text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    let mut keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["expires_at", "idle_expires_at", "session_id"], "{body}");

    let profile =
        app.client.get(app.url("/v1/profile")).header("cookie", format!("sid={}", session.value)).send().await;
    let profile = profile.expect("profile");
    assert_eq!(profile.status(), StatusCode::OK);
    let profile: Value = profile.json().await.expect("json");
    assert_eq!(profile["session"]["session_id"], body["session_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_transport_login_returns_the_token_and_sets_no_cookie_at_all() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "bearertransport").await;

    let response = login_with(&app, &name, Some(json!("bearer"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(set_cookies(&response).is_empty(), "a bearer login set {:?}", set_cookies(&response));
    let device = header(&response, DEVICE_HEADER).expect("the device token header").to_owned();
    assert!(!device.is_empty());
    let body: Value = response.json().await.expect("json");
    let token = token_of(&body);
    assert!(body["session_id"].is_string() && body["expires_at"].is_string() && body["idle_expires_at"].is_string());
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_without_a_transport_answers_both_ways() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "bothtransport").await;

    let response = login_with(&app, &name, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = the_cookie(&response, "sid");
    let device = the_cookie(&response, "sessiond_device");
    assert_eq!(header(&response, DEVICE_HEADER), Some(device.value.as_str()), "device header and cookie differ");
    let body: Value = response.json().await.expect("json");
    assert_eq!(token_of(&body), session.value);
    assert_eq!(profile_with_cookie(&app, &format!("sid={}", session.value)).await, StatusCode::OK);
}

/// Log in with each of `values` as the transport: every one must be a 422 naming `transport`
/// that sets no cookie and creates no session.
async fn assert_transports_refused(values: &[Value]) {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "badtransport").await;
    let mut wrong = Vec::new();
    for transport in values {
        let response = login_with(&app, &name, Some(transport.clone())).await;
        let status = response.status();
        let cookies = set_cookies(&response);
        let device = header(&response, DEVICE_HEADER).is_some();
        let content_type = header(&response, "content-type").map(str::to_owned);
        let body: Value = response.json().await.expect("json body");
        let named = body["detail"].as_str().unwrap_or_default().contains("transport");
        if status != StatusCode::UNPROCESSABLE_ENTITY
            || content_type.as_deref() != Some("application/problem+json")
            || !named
            || !cookies.is_empty()
            || device
        {
            wrong.push(format!("{transport} -> {status} {body} (Set-Cookie {cookies:?}, device header {device})"));
        }
    }
    assert!(wrong.is_empty(), "not a 422 naming `transport` that sets nothing:\n{}", wrong.join("\n"));
    // Nothing was logged in: the next login is the user's only session.
    let token = token_of(&app.login(&name).await);
    assert_eq!(app.session_ids(&token).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_transport_is_a_422_naming_transport_that_sets_nothing() {
    let values = ["smoke", "Cookie", "BEARER", "both", "", "cookie,bearer", " cookie"];
    assert_transports_refused(&values.map(Value::from)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_is_not_a_string_is_a_422_naming_transport_too() {
    assert_transports_refused(&[json!(7), json!(true), json!(["cookie"]), json!({ "cookie": null })]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_by_cookie_answers_with_a_new_cookie_and_no_token_and_the_old_cookie_dies() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "cookierefresh").await;
    let login = login_with(&app, &name, Some(json!("cookie"))).await;
    let old = the_cookie(&login, "sid").value;
    let login: Value = login.json().await.expect("json");

    let response = app
        .client
        .post(app.url("/v1/auth/refresh"))
        .header("cookie", format!("sid={old}"))
        .send()
        .await
        .expect("refresh");
    assert_eq!(response.status(), StatusCode::OK);
    let new = the_cookie(&response, "sid");
    new.assert_attributes(&["httponly", "samesite=Lax", "path=/"]);
    assert_ne!(new.value, old);
    let text = response.text().await.expect("body");
    assert!(!text.contains(&new.value), "the new token is in the body: {text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert!(body.get("token").is_none(), "{body}");
    assert_eq!(body["session_id"], login["session_id"]);

    assert_eq!(profile_with_cookie(&app, &format!("sid={old}")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(profile_with_cookie(&app, &format!("sid={}", new.value)).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_by_bearer_or_x_session_id_answers_with_a_token_and_no_cookie() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "headerrefresh").await;
    let mut current = token_of(&app.login(&name).await);
    for channel in ["bearer", "x-session-id"] {
        let request = app.client.post(app.url("/v1/auth/refresh"));
        let request = match channel {
            "bearer" => request.bearer_auth(&current),
            _ => request.header("x-session-id", &current),
        };
        let response = request.send().await.expect("refresh");
        assert_eq!(response.status(), StatusCode::OK, "{channel}");
        assert!(set_cookies(&response).is_empty(), "{channel}: {:?}", set_cookies(&response));
        let new = token_of(&response.json().await.expect("json"));
        assert_ne!(new, current);
        assert_eq!(app.profile_status(&current).await, StatusCode::UNAUTHORIZED, "{channel}: old token");
        assert_eq!(app.profile_status(&new).await, StatusCode::OK, "{channel}: new token");
        current = new;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_answers_in_the_transport_its_credential_came_in() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "passwordtransport").await;
    let token = token_of(&app.login(&name).await);

    let second = "a second passphrase here";
    let body = json!({ "current_password": PASSWORD, "new_password": second });
    let response = app
        .client
        .post(app.url("/v1/account/password"))
        .header("cookie", format!("sid={token}"))
        .json(&body)
        .send()
        .await
        .expect("change");
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = the_cookie(&response, "sid").value;
    let body: Value = response.json().await.expect("json");
    assert!(body.get("token").is_none(), "{body}");
    assert_eq!(profile_with_cookie(&app, &format!("sid={cookie}")).await, StatusCode::OK);

    let response = app.change_password(&cookie, second, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(set_cookies(&response).is_empty(), "{:?}", set_cookies(&response));
    let token = token_of(&response.json().await.expect("json"));
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Duplicate session cookies.

/// The body of a 401 to a request without any credential.
async fn plain_401(app: &TestApp) -> String {
    let response = app.client.get(app.url("/v1/profile")).send().await.expect("profile");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    response.text().await.expect("body")
}

/// `method path` with raw `Cookie` header lines on a fresh socket.
async fn raw_with_cookies(app: &TestApp, method: &str, path: &str, cookies: &[String]) -> RawResponse {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n", app.addr);
    for cookie in cookies {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream, &mut buf))
        .await
        .expect("a response within 10 s")
        .expect("response")
}

/// Every way `token` can be sent twice (or alongside another session cookie), as the lines of
/// `Cookie` headers.
fn duplicates(token: &str) -> Vec<Vec<String>> {
    let bogus = "B".repeat(43);
    vec![
        vec![format!("sid={token}; sid={bogus}")],
        vec![format!("sid={bogus}; sid={token}")],
        vec![format!("sid={token}; sid={token}")],
        vec![format!("theme=dark; sid={token}; lang=en; sid={token}")],
        vec![format!("sid={token}; __Host-sid={token}")],
        vec![format!("__Host-sid={bogus}; sid={token}")],
        vec![format!("__Host-sid={token}; __Host-sid={token}")],
        vec![format!("sid={token}"), format!("sid={token}")],
        vec![format!("sid={token}"), format!("theme=dark; sid={bogus}")],
        vec![format!("__Host-sid={token}"), format!("sid={token}")],
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_sent_twice_is_an_ordinary_401_and_touches_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("dupcookie");
    let token = token_of(&app.signup_login(&name).await);
    let other = token_of(&app.login(&name).await);
    let reference = plain_401(&app).await;

    for cookies in duplicates(&token) {
        for (method, path) in [("GET", "/v1/profile"), ("POST", "/v1/auth/logout"), ("POST", "/v1/auth/refresh")] {
            let response = raw_with_cookies(&app, method, path, &cookies).await;
            assert_eq!(response.status, 401, "{method} {path} with {cookies:?}: {}", response.text());
            assert_eq!(response.header("content-type"), Some("application/problem+json"));
            assert_eq!(response.text(), reference, "{method} {path} with {cookies:?}");
            assert!(response.header("set-cookie").is_none(), "{method} {path} with {cookies:?} set a cookie");
        }
        let response = raw_with_cookies(&app, "DELETE", "/v1/sessions", &cookies).await;
        assert_eq!(response.status, 401, "DELETE /v1/sessions with {cookies:?}");
    }
    // Not a duplicate: other cookies whose names merely contain the session cookie's.
    assert_eq!(profile_with_cookie(&app, &format!("xsid=junk; sid_old=junk; sid={token}")).await, StatusCode::OK);
    // Nothing was logged out, rotated or revoked.
    assert_eq!(profile_with_cookie(&app, &format!("sid={token}")).await, StatusCode::OK);
    assert_eq!(app.profile_status(&other).await, StatusCode::OK);
    assert_eq!(app.session_ids(&token).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_secure_mode_too_a_duplicated_or_mixed_session_cookie_is_an_ordinary_401() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.cookie_secure = true).await;
    let token = token_of(&app.signup_login(&unique("dupsecure")).await);
    let reference = plain_401(&app).await;

    for cookies in duplicates(&token) {
        for (method, path) in [("GET", "/v1/profile"), ("POST", "/v1/auth/logout")] {
            let response = raw_with_cookies(&app, method, path, &cookies).await;
            assert_eq!(response.status, 401, "{method} {path} with {cookies:?}: {}", response.text());
            assert_eq!(response.text(), reference, "{method} {path} with {cookies:?}");
        }
    }
    assert_eq!(profile_with_cookie(&app, &format!("__Host-sid={token}")).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_carrying_a_duplicated_session_cookie_logs_in_and_revokes_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("duplogin");
    let live = token_of(&app.signup_login(&name).await);
    let creds = json!({ "username": name, "password": PASSWORD });

    for cookie in [format!("sid={live}; sid={live}"), format!("sid={live}; __Host-sid={live}")] {
        let response = app
            .client
            .post(app.url("/v1/auth/login"))
            .header("cookie", &cookie)
            .json(&creds)
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), StatusCode::OK, "{cookie}");
        let new = token_of(&response.json().await.expect("json"));
        assert_ne!(new, live);
        assert_eq!(app.profile_status(&new).await, StatusCode::OK);
        assert_eq!(app.profile_status(&live).await, StatusCode::OK, "a login carrying {cookie} revoked the session");
    }
    assert_eq!(app.session_ids(&live).await.len(), 3);

    // The same login carrying the cookie once replaces that session.
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("cookie", format!("sid={live}"))
        .json(&creds)
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.profile_status(&live).await, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// Cross-site request refusal.

/// A state-changing route a browser's cookie could be abused on.
#[derive(Clone, Copy, Debug)]
enum Route {
    Logout,
    Refresh,
    RevokeAll,
}

const ROUTES: [Route; 3] = [Route::Logout, Route::Refresh, Route::RevokeAll];

/// How the credential travels.
#[derive(Clone, Copy, Debug)]
enum Via {
    Cookie,
    Bearer,
    SessionHeader,
    /// The cookie and an `Authorization` header (which takes precedence).
    CookieAndBearer,
}

impl Route {
    fn request(self, app: &TestApp) -> RequestBuilder {
        match self {
            Route::Logout => app.client.post(app.url("/v1/auth/logout")),
            Route::Refresh => app.client.post(app.url("/v1/auth/refresh")),
            Route::RevokeAll => app.client.delete(app.url("/v1/sessions")),
        }
    }

    fn success(self) -> StatusCode {
        match self {
            Route::Logout | Route::RevokeAll => StatusCode::NO_CONTENT,
            Route::Refresh => StatusCode::OK,
        }
    }
}

/// Two sessions of a fresh user: `caller` makes the request, `other` is a bystander.
struct Sessions {
    caller: String,
    other: String,
}

async fn two_sessions(app: &TestApp) -> Sessions {
    let name = unique("csrf");
    let caller = token_of(&app.signup_login(&name).await);
    let other = token_of(&app.login(&name).await);
    Sessions { caller, other }
}

async fn send(
    app: &TestApp,
    route: Route,
    via: Via,
    cookie: &str,
    token: &str,
    headers: &[(&'static str, String)],
) -> Response {
    let mut request = route.request(app);
    request = match via {
        Via::Cookie => request.header("cookie", format!("{cookie}={token}")),
        Via::Bearer => request.bearer_auth(token),
        Via::SessionHeader => request.header("x-session-id", token),
        Via::CookieAndBearer => request.header("cookie", format!("{cookie}={token}")).bearer_auth(token),
    };
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("request")
}

/// The request was carried out: its status and its effect on the two sessions.
async fn assert_carried_out(app: &TestApp, route: Route, cookie: &str, s: &Sessions, response: Response, what: &str) {
    assert_eq!(response.status(), route.success(), "{what}");
    match route {
        Route::Logout => {
            assert_eq!(app.profile_status(&s.caller).await, StatusCode::UNAUTHORIZED, "{what}: still logged in");
            assert_eq!(app.profile_status(&s.other).await, StatusCode::OK, "{what}: bystander");
        }
        Route::Refresh => {
            let new = match set_cookies(&response).iter().map(|raw| SetCookie::parse(raw)).find(|c| c.name == cookie) {
                Some(set) => set.value,
                None => token_of(&response.json().await.expect("json")),
            };
            assert_ne!(new, s.caller, "{what}");
            assert_eq!(app.profile_status(&s.caller).await, StatusCode::UNAUTHORIZED, "{what}: old token alive");
            assert_eq!(app.profile_status(&new).await, StatusCode::OK, "{what}: new token");
        }
        Route::RevokeAll => {
            assert_eq!(app.profile_status(&s.caller).await, StatusCode::UNAUTHORIZED, "{what}: caller");
            assert_eq!(app.profile_status(&s.other).await, StatusCode::UNAUTHORIZED, "{what}: other session");
        }
    }
}

/// The request was refused as cross-site and changed nothing.
async fn assert_refused(app: &TestApp, s: &Sessions, response: Response, what: &str) {
    assert!(set_cookies(&response).is_empty(), "{what}: a refusal set {:?}", set_cookies(&response));
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
    let problem = assert_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["type"], CROSS_SITE, "{what}: {problem}");
    assert_eq!(app.profile_status(&s.caller).await, StatusCode::OK, "{what}: the caller's session changed");
    assert_eq!(app.profile_status(&s.other).await, StatusCode::OK, "{what}: the other session changed");
    assert_eq!(app.session_ids(&s.caller).await.len(), 2, "{what}");
}

fn own_origin(app: &TestApp, scheme: &str) -> String {
    format!("{scheme}://{}", app.addr)
}

/// Extra request headers.
type Headers = Vec<(&'static str, String)>;

/// The cases refused on an instance with no allowed origins: (label, headers, reason counted).
fn refused_cases(app: &TestApp) -> Vec<(&'static str, Headers, &'static str)> {
    let own = own_origin(app, "http");
    vec![
        ("Sec-Fetch-Site: cross-site", vec![("sec-fetch-site", "cross-site".into())], "sec_fetch_site"),
        ("Sec-Fetch-Site: same-site", vec![("sec-fetch-site", "same-site".into())], "sec_fetch_site"),
        (
            "Sec-Fetch-Site: cross-site with a foreign Origin",
            vec![("sec-fetch-site", "cross-site".into()), ("origin", "https://evil.example".into())],
            "sec_fetch_site",
        ),
        (
            "Sec-Fetch-Site: cross-site with the own Origin",
            vec![("sec-fetch-site", "cross-site".into()), ("origin", own)],
            "sec_fetch_site",
        ),
        ("Origin: https://evil.example", vec![("origin", "https://evil.example".into())], "origin"),
        ("Origin: null", vec![("origin", "null".into())], "origin"),
    ]
}

/// The cases allowed on any instance.
fn allowed_cases(app: &TestApp) -> Vec<(&'static str, Headers)> {
    let own = own_origin(app, "http");
    vec![
        ("no header", vec![]),
        ("Sec-Fetch-Site: same-origin", vec![("sec-fetch-site", "same-origin".into())]),
        ("Sec-Fetch-Site: none", vec![("sec-fetch-site", "none".into())]),
        ("Origin: own", vec![("origin", own.clone())]),
        (
            "Sec-Fetch-Site: same-origin with the own Origin",
            vec![("sec-fetch-site", "same-origin".into()), ("origin", own)],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_request_another_site_started_is_refused_and_changes_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    for route in ROUTES {
        for (label, headers, _) in refused_cases(&app) {
            let s = two_sessions(&app).await;
            let response = send(&app, route, Via::Cookie, "sid", &s.caller, &headers).await;
            assert_refused(&app, &s, response, &format!("{route:?} with {label}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_request_from_the_same_origin_or_without_fetch_metadata_is_carried_out() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    for route in ROUTES {
        for (label, headers) in allowed_cases(&app) {
            let s = two_sessions(&app).await;
            let response = send(&app, route, Via::Cookie, "sid", &s.caller, &headers).await;
            assert_carried_out(&app, route, "sid", &s, response, &format!("{route:?} with {label}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fetch_metadata_the_own_origin_is_the_requests_host_under_either_scheme() {
    // Behind a TLS-terminating proxy the service cannot tell its scheme: the host decides, and a
    // page on the other scheme of the same host is no longer same-origin to the browser, which
    // says so in Sec-Fetch-Site (next test).
    let redis = RedisServer::start();
    for secure in [false, true] {
        let app = spawn_app_with(Some(&redis), |c| c.cookie_secure = secure).await;
        let cookie = session_cookie(secure);
        for route in ROUTES {
            for scheme in ["http", "https"] {
                let s = two_sessions(&app).await;
                let origin = own_origin(&app, scheme);
                let what = format!("{route:?} with Origin {origin}");
                let response = send(&app, route, Via::Cookie, cookie, &s.caller, &[("origin", origin)]).await;
                assert_carried_out(&app, route, cookie, &s, response, &what).await;
            }
            let s = two_sessions(&app).await;
            let other_port = format!("http://127.0.0.1:{}", app.addr.port().wrapping_add(1));
            let what = format!("{route:?} with Origin {other_port}");
            let response = send(&app, route, Via::Cookie, cookie, &s.caller, &[("origin", other_port)]).await;
            assert_refused(&app, &s, response, &what).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_fetch_site_decides_when_present_even_against_origin() {
    // With Referrer-Policy: no-referrer, a browser's same-origin form post carries Origin: null:
    // the browser's own Sec-Fetch-Site is what decides.
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    for route in ROUTES {
        let s = two_sessions(&app).await;
        let headers = [("sec-fetch-site", "same-origin".to_owned()), ("origin", "null".to_owned())];
        let response = send(&app, route, Via::Cookie, "sid", &s.caller, &headers).await;
        assert_carried_out(&app, route, "sid", &s, response, &format!("{route:?} with {headers:?}")).await;
        let s = two_sessions(&app).await;
        let headers = [("sec-fetch-site", "same-site".to_owned()), ("origin", own_origin(&app, "http"))];
        let response = send(&app, route, Via::Cookie, "sid", &s.caller, &headers).await;
        assert_refused(&app, &s, response, &format!("{route:?} with {headers:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origin_is_allowed_even_from_a_cross_site_fetch() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| {
        c.allowed_origins = vec!["https://app.example".into()];
        c.cors_origins = vec!["https://cors.example".into()];
    })
    .await;
    for route in ROUTES {
        for origin in ["https://app.example", "https://cors.example"] {
            let s = two_sessions(&app).await;
            let headers = [("origin", origin.to_owned()), ("sec-fetch-site", "cross-site".to_owned())];
            let response = send(&app, route, Via::Cookie, "sid", &s.caller, &headers).await;
            assert_carried_out(&app, route, "sid", &s, response, &format!("{route:?} from {origin}")).await;
        }
        // The list is not a wildcard.
        for origin in ["https://evil.example", "https://app.example.evil.example", "http://app.example"] {
            let s = two_sessions(&app).await;
            let headers = [("origin", origin.to_owned()), ("sec-fetch-site", "cross-site".to_owned())];
            let response = send(&app, route, Via::Cookie, "sid", &s.caller, &headers).await;
            assert_refused(&app, &s, response, &format!("{route:?} from {origin}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_authenticated_by_a_header_are_never_checked() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    for route in ROUTES {
        for via in [Via::Bearer, Via::SessionHeader, Via::CookieAndBearer] {
            for (label, headers, _) in refused_cases(&app) {
                let s = two_sessions(&app).await;
                let response = send(&app, route, via, "sid", &s.caller, &headers).await;
                assert_carried_out(&app, route, "sid", &s, response, &format!("{route:?} by {via:?} with {label}"))
                    .await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_never_checked() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let s = two_sessions(&app).await;
    for (label, headers, _) in refused_cases(&app) {
        for path in ["/v1/profile", "/v1/sessions"] {
            let mut request = app.client.get(app.url(path)).header("cookie", format!("sid={}", s.caller));
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.expect("get");
            assert_eq!(response.status(), StatusCode::OK, "GET {path} with {label}");
        }
    }
}

/// The refusals counted for `reason` on `app`'s admin listener.
async fn rejections(app: &TestApp, reason: &str) -> f64 {
    metric_value(&app.metrics_text().await, "sessiond_csrf_rejections_total", &[("reason", reason)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_is_counted_once_under_its_reason() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.allowed_origins = vec!["https://app.example".into()]).await;
    let before = (rejections(&app, "sec_fetch_site").await, rejections(&app, "origin").await);

    let mut expected = (0.0, 0.0);
    for (i, (label, headers, reason)) in refused_cases(&app).into_iter().enumerate() {
        let route = ROUTES[i % ROUTES.len()];
        let s = two_sessions(&app).await;
        let response = send(&app, route, Via::Cookie, "sid", &s.caller, &headers).await;
        assert_refused(&app, &s, response, &format!("{route:?} with {label}")).await;
        match reason {
            "sec_fetch_site" => expected.0 += 1.0,
            _ => expected.1 += 1.0,
        }
    }
    // What is allowed is not counted.
    for (i, (label, headers)) in allowed_cases(&app).into_iter().enumerate() {
        let route = ROUTES[i % ROUTES.len()];
        let s = two_sessions(&app).await;
        let response = send(&app, route, Via::Cookie, "sid", &s.caller, &headers).await;
        assert_carried_out(&app, route, "sid", &s, response, &format!("{route:?} with {label}")).await;
    }
    let s = two_sessions(&app).await;
    let listed = [("origin", "https://app.example".to_owned()), ("sec-fetch-site", "cross-site".to_owned())];
    let response = send(&app, Route::Logout, Via::Cookie, "sid", &s.caller, &listed).await;
    assert_carried_out(&app, Route::Logout, "sid", &s, response, "a listed origin").await;
    let s = two_sessions(&app).await;
    let response = send(&app, Route::Logout, Via::Bearer, "sid", &s.caller, &refused_cases(&app)[0].1).await;
    assert_carried_out(&app, Route::Logout, "sid", &s, response, "a bearer logout").await;

    assert!(expected.0 >= 1.0 && expected.1 >= 1.0);
    let want = (before.0 + expected.0, before.1 + expected.1);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = (rejections(&app, "sec_fetch_site").await, rejections(&app, "origin").await);
        assert!(got.0 <= want.0 && got.1 <= want.1, "counted {got:?}, more than the {want:?} refusals");
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "counted {got:?}, not {want:?} (sec_fetch_site, origin)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST path` as a form with `fields`, plus `headers` and an optional raw `Cookie`.
async fn post_form(
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Response {
    let mut request = app.client.post(app.url(path)).form(fields);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("form post")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_forms_refuse_posts_another_site_started_even_without_a_cookie() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "formcsrf").await;
    let creds = [("username", name.as_str()), ("password", PASSWORD)];
    let hostile: [&[(&str, &str)]; 3] = [
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "https://evil.example")],
    ];

    // Login CSRF: signing the victim's browser into the attacker's account.
    for headers in hostile {
        let response = post_form(&app, "/login", &creds, None, headers).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "POST /login with {headers:?}");
        assert!(set_cookies(&response).iter().all(|c| !c.starts_with("sid=")), "{:?}", set_cookies(&response));
    }
    let response = post_form(&app, "/login", &creds, None, &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/account");
    let token = the_cookie(&response, "sid").value;

    // A registration another site started creates nothing.
    let newcomer = unique("formcsrfnew");
    let fields = [("username", newcomer.as_str()), ("password", PASSWORD)];
    let response = post_form(&app, "/register", &fields, None, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.login_response(&newcomer, PASSWORD).await.status(), StatusCode::UNAUTHORIZED);

    // Nor does a logout end the session.
    let cookie = format!("sid={token}");
    let response = post_form(&app, "/logout", &[], Some(&cookie), &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    let response = post_form(&app, "/logout", &[], Some(&cookie), &[("origin", "null")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    let response = post_form(&app, "/logout", &[], Some(&cookie), &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// Security headers.

fn get_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ascii header"))
}

fn assert_headers(headers: &HeaderMap, secure: bool, what: &str) {
    assert_eq!(get_header(headers, "x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(get_header(headers, "referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(get_header(headers, "cache-control"), Some("no-store"), "{what}");
    let hsts = get_header(headers, "strict-transport-security");
    if secure {
        let hsts = hsts.unwrap_or_else(|| panic!("{what}: no Strict-Transport-Security in secure mode"));
        let max_age = hsts.split(';').map(str::trim).find_map(|d| d.strip_prefix("max-age="));
        assert_eq!(max_age, Some("31536000"), "{what}: {hsts}");
    } else {
        assert!(hsts.is_none(), "{what}: Strict-Transport-Security over plain HTTP: {hsts:?}");
    }
    let is_html = get_header(headers, "content-type").is_some_and(|t| t.starts_with("text/html"));
    if is_html {
        let csp = get_header(headers, "content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
        let directives: Vec<String> = csp
            .split(';')
            .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|d| !d.is_empty())
            .collect();
        for want in ["default-src 'self'", "frame-ancestors 'none'", "form-action 'self'"] {
            assert!(directives.iter().any(|d| d == want), "{what}: CSP lacks {want}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
        assert_eq!(get_header(headers, "x-frame-options"), Some("DENY"), "{what}");
    }
}

async fn check_every_kind_of_response(secure: bool) {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.cookie_secure = secure).await;
    let cookie = session_cookie(secure);
    let name = registered(&app, "headers").await;
    let get = |path: &str| app.client.get(app.url(path)).send();

    let login = login_with(&app, &name, None).await;
    assert_eq!(login.status(), StatusCode::OK);
    assert_headers(login.headers(), secure, "an API login");
    let token = token_of(&login.json().await.expect("json"));
    let profile = app.get("/v1/profile", &token).await;
    assert_eq!(profile.status(), StatusCode::OK);
    assert_headers(profile.headers(), secure, "GET /v1/profile");
    let problem = get("/v1/profile").await.expect("profile");
    assert_eq!(problem.status(), StatusCode::UNAUTHORIZED);
    assert_headers(problem.headers(), secure, "a 401 problem");

    for path in ["/", "/register"] {
        let page = get(path).await.expect("page");
        assert_eq!(page.status(), StatusCode::OK, "GET {path}");
        assert_eq!(header(&page, "content-type"), Some("text/html; charset=utf-8"), "GET {path}");
        assert_headers(page.headers(), secure, &format!("GET {path}"));
    }
    let redirect = get("/account").await.expect("account");
    assert_eq!(redirect.status(), StatusCode::SEE_OTHER);
    assert_headers(redirect.headers(), secure, "the /account redirect");
    let account = app
        .client
        .get(app.url("/account"))
        .header("cookie", format!("{cookie}={token}"))
        .send()
        .await
        .expect("account");
    assert_eq!(account.status(), StatusCode::OK);
    assert!(header(&account, "content-type").is_some_and(|t| t.starts_with("text/html")));
    assert_headers(account.headers(), secure, "GET /account");
    let failed = post_form(&app, "/login", &[("username", &name), ("password", "wrong password!")], None, &[]).await;
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&failed, "content-type").is_some_and(|t| t.starts_with("text/html")));
    assert_headers(failed.headers(), secure, "the failed sign-in page");

    let css = get("/static/app.css").await.expect("css");
    assert_eq!(css.status(), StatusCode::OK);
    assert!(header(&css, "content-type").is_some_and(|t| t.starts_with("text/css")), "{:?}", css.headers());
    assert_headers(css.headers(), secure, "GET /static/app.css");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_plain_http_every_response_carries_the_security_headers_but_no_hsts() {
    check_every_kind_of_response(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_secure_mode_every_response_also_carries_hsts() {
    check_every_kind_of_response(true).await;
}

// ---------------------------------------------------------------------------------------------
// The web pages' routes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_form_login_is_a_401_page_that_does_not_tell_an_unknown_user_from_a_wrong_password() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let victim = registered(&app, "formvictim").await;
    let stranger = unique("formnobody");
    let wrong = "not the password at all";

    let mut bodies = Vec::new();
    for user in [&victim, &stranger] {
        let response = post_form(&app, "/login", &[("username", user), ("password", wrong)], None, &[]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{user}");
        assert!(header(&response, "content-type").is_some_and(|t| t.starts_with("text/html")), "{user}");
        assert!(set_cookies(&response).iter().all(|c| !c.starts_with("sid=")), "{user}: {:?}", set_cookies(&response));
        let body = response.text().await.expect("body");
        assert!(body.contains("The username or password is incorrect."), "{user}: {body}");
        assert!(!body.contains(wrong), "{user}: the page echoes the password");
        // The form may be filled in again with the name typed; nothing else may differ.
        bodies.push(body.replace(user.as_str(), "USERNAME"));
    }
    assert_eq!(bodies[0], bodies[1], "the pages for a wrong password and an unknown user differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_without_a_valid_session_redirects_to_the_sign_in_page() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let revoked = token_of(&app.signup_login(&unique("formrevoked")).await);
    assert_eq!(app.post("/v1/auth/logout", &revoked).await.status(), StatusCode::NO_CONTENT);

    let cookies =
        [None, Some(format!("sid={revoked}")), Some(format!("sid={}", "A".repeat(43))), Some("sid=junk".into())];
    for cookie in cookies {
        let mut request = app.client.get(app.url("/account"));
        if let Some(cookie) = &cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("account");
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{cookie:?}");
        assert_eq!(location(&response), "/", "{cookie:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_registration_redirects_to_the_sign_in_page_with_the_registered_flag() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let page = app.client.get(app.url("/register")).send().await.expect("register page");
    assert_eq!(page.status(), StatusCode::OK);

    let name = unique("formnew");
    let fields = [("username", name.as_str()), ("password", PASSWORD)];
    let response = post_form(&app, "/register", &fields, None, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/?registered=1");
    assert!(set_cookies(&response).iter().all(|c| !c.starts_with("sid=")), "registering does not sign in");
    assert_eq!(app.login_response(&name, PASSWORD).await.status(), StatusCode::OK, "the account exists");

    let notice = app.client.get(app.url("/?registered=1")).send().await.expect("sign-in page");
    assert_eq!(notice.status(), StatusCode::OK);

    let again = post_form(&app, "/register", &fields, None, &[]).await;
    assert!(again.status().is_client_error(), "registering a taken name: {}", again.status());
    assert!(header(&again, "content-type").is_some_and(|t| t.starts_with("text/html")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_login_redirects_to_the_account_page_which_never_shows_the_token() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "formuser").await;

    let response = post_form(&app, "/login", &[("username", &name), ("password", PASSWORD)], None, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/account");
    assert!(header(&response, DEVICE_HEADER).is_none(), "the device token went into a header");
    let session = the_cookie(&response, "sid");
    session.assert_attributes(&["httponly", "samesite=Lax", "path=/"]);
    let device = the_cookie(&response, "sessiond_device").value;
    let token = session.value;
    let body = response.text().await.expect("body");
    assert!(!body.contains(&token), "the token is in the redirect's body");
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);

    let cookie = format!("sid={token}");
    let account = app.client.get(app.url("/account")).header("cookie", &cookie).send().await.expect("account");
    assert_eq!(account.status(), StatusCode::OK);
    assert!(header(&account, "content-type").is_some_and(|t| t.starts_with("text/html")));
    let html = account.text().await.expect("html");
    assert!(html.contains(&name), "the account page does not show the username");
    assert!(!html.contains(&token), "the account page shows the session token");
    assert!(!html.contains(&device), "the account page shows the device token");

    // Signed in already, the sign-in page sends the browser on.
    let home = app.client.get(app.url("/")).header("cookie", &cookie).send().await.expect("home");
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&home), "/account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_logout_ends_the_session_clears_the_cookie_and_the_cache() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = registered(&app, "formleaver").await;
    let response = post_form(&app, "/login", &[("username", &name), ("password", PASSWORD)], None, &[]).await;
    let token = the_cookie(&response, "sid").value;

    let response = post_form(&app, "/logout", &[], Some(&format!("sid={token}")), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/");
    let cleared = the_cookie(&response, "sid");
    assert_eq!(cleared.value, "");
    cleared.assert_attributes(&["max-age=0", "httponly", "samesite=Lax", "path=/"]);
    assert_eq!(header(&response, "clear-site-data"), Some("\"cache\""));
    assert_eq!(app.profile_status(&token).await, StatusCode::UNAUTHORIZED);

    let response = post_form(&app, "/logout", &[], None, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "a logout without a session");
    assert_eq!(location(&response), "/");
}
