//! Hostile and malformed input: every bad request is answered with the right 4xx as
//! problem+json, never echoes a secret, carries the security headers, and writes nothing
//! to Redis.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::helpers::*;

/// The body limit the service documents.
const LIMIT: usize = 16 * 1024;

/// Headers every response must carry, errors included.
fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(get("cache-control"), "no-store", "Cache-Control on {what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "X-Content-Type-Options on {what}");
}

/// Assert a problem+json answer with the security headers whose raw body contains none of
/// `secrets`; returns the parsed body and the raw text.
async fn problem(response: reqwest::Response, status: StatusCode, secrets: &[&str]) -> (Value, String) {
    let what = format!("{} {}", response.url().path(), response.status());
    assert_eq!(response.status(), status, "status of {what}");
    assert_security_headers(response.headers(), &what);
    let content_type =
        response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(content_type, "application/problem+json", "content type of {what}");
    let text = response.text().await.expect("problem body");
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(!text.contains(secret), "{what} echoes a secret ({} bytes) in {text}", secret.len());
    }
    let body: Value = serde_json::from_str(&text).expect("problem json");
    assert_eq!(body["status"], status.as_u16(), "{text}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem lacks {field}: {text}");
    }
    (body, text)
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().expect("detail")
}

/// Every key in Redis, sorted.
fn keys(redis: &RedisServer) -> Vec<String> {
    let mut keys = redis.keys();
    keys.sort();
    keys
}

/// A client that never reuses a connection: a server that answers before reading a whole body
/// closes the connection, and a pooled client could race that close on its next request.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build().expect("client")
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = unpooled().post(app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    request.send().await.expect("request")
}

const CREDENTIAL_ROUTES: [&str; 2] = ["/v1/auth/register", "/v1/auth/login"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_and_writes_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let bodies = [
        String::new(),
        "not json".to_owned(),
        format!(r#"{{"username":"alice","password":"{PASSWORD}""#),
        format!(r#"{{"username":"alice","password":"{PASSWORD}"}} trailing"#),
        format!(r#"{{"username":"alice","password":"{PASSWORD}"}}{{}}"#),
        format!(r#"{{"username":"alice" "password":"{PASSWORD}"}}"#),
        format!(r#"{{'username':'alice','password':'{PASSWORD}'}}"#),
        format!(r#"{{"username":"alice","password":"{PASSWORD}\q"}}"#),
    ];
    for path in CREDENTIAL_ROUTES {
        for body in &bodies {
            let response = post_raw(&app, path, Some("application/json"), body.clone()).await;
            let (problem, _) = problem(response, StatusCode::BAD_REQUEST, &[PASSWORD]).await;
            assert_eq!(problem["type"], "urn:sessiond:problem:malformed-request", "{path} {body:?}");
        }
    }
    // Invalid UTF-8 inside a string is malformed JSON too.
    let mut bytes = br#"{"username":"alice","password":""#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    bytes.extend_from_slice(br#""}"#);
    let response = post_raw(&app, "/v1/auth/register", Some("application/json"), bytes).await;
    problem(response, StatusCode::BAD_REQUEST, &[]).await;

    assert!(keys(&redis).is_empty(), "malformed bodies wrote {:?}", keys(&redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_content_type_is_415_and_writes_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let user = unique("ctype");
    let body = json!({ "username": user, "password": PASSWORD }).to_string();
    let content_types = [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        Some("json"),
        Some(""),
    ];
    for path in CREDENTIAL_ROUTES {
        for content_type in content_types {
            let response = post_raw(&app, path, content_type, body.clone()).await;
            let (problem, _) = problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, &[PASSWORD]).await;
            assert_eq!(problem["type"], "urn:sessiond:problem:unsupported-media-type", "{path} {content_type:?}");
        }
    }
    // A form body (the classic CSRF vector) is refused before it is parsed.
    let form = format!("username={user}&password={}", PASSWORD.replace(' ', "+"));
    let response = post_raw(&app, "/v1/auth/register", Some("application/x-www-form-urlencoded"), form).await;
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, &["correct+horse"]).await;
    assert!(keys(&redis).is_empty(), "415s wrote {:?}", keys(&redis));

    // The check is on the media type's essence: parameters and case do not matter.
    let response = post_raw(&app, "/v1/auth/register", Some("Application/JSON; charset=utf-8"), body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(!keys(&redis).is_empty(), "the accepted registration wrote nothing");
}

/// A JSON body of exactly `len` bytes whose password is padding.
fn body_of_len(username: &str, len: usize) -> String {
    let prefix = format!(r#"{{"username":"{username}","password":""#);
    let suffix = r#""}"#;
    let pad = len - prefix.len() - suffix.len();
    let body = format!("{prefix}{}{suffix}", "s".repeat(pad));
    assert_eq!(body.len(), len);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_16_kib_with_content_length_is_413() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let secret = "toolong-secret-marker";
    let password = format!("{secret}{}", "x".repeat(20 * 1024));
    let big = json!({ "username": "bigbody", "password": password }).to_string();
    for path in CREDENTIAL_ROUTES {
        for body in [big.clone(), body_of_len("bigbody", LIMIT + 1)] {
            let len = body.len();
            let response = post_raw(&app, path, Some("application/json"), body).await;
            let (problem, _) = problem(response, StatusCode::PAYLOAD_TOO_LARGE, &[secret]).await;
            assert_eq!(problem["type"], "urn:sessiond:problem:payload-too-large", "{path} {len}");
        }
    }
    // A declared 1 MiB body is refused as soon as more than 16 KiB of it has arrived.
    let head = format!(
        "POST /v1/auth/register HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.addr,
        1024 * 1024
    );
    let partial = format!(r#"{{"username":"bigbody","password":"{secret}{}"#, "x".repeat(LIMIT));
    let response = exchange(app.addr, [head.into_bytes(), partial.into_bytes()].concat()).await;
    assert_eq!(response.status, 413, "{}", String::from_utf8_lossy(&response.body));
    assert_eq!(response.header("content-type"), Some("application/problem+json"));
    assert!(!String::from_utf8_lossy(&response.body).contains(secret));

    assert!(keys(&redis).is_empty(), "413s wrote {:?}", keys(&redis));

    // Exactly at the limit the body is read and judged on its content (a 16 KiB password is
    // over the 1024-byte password limit).
    let response = post_raw(&app, "/v1/auth/register", Some("application/json"), body_of_len("atlimit", LIMIT)).await;
    let (problem, _) = problem(response, StatusCode::UNPROCESSABLE_ENTITY, &["ssssssss"]).await;
    assert!(detail(&problem).contains("password"), "{problem}");
    assert!(keys(&redis).is_empty(), "a rejected registration wrote {:?}", keys(&redis));
}

/// POST `body` as a chunked stream (no Content-Length) on a raw socket.
async fn post_chunked(app: &TestApp, path: &str, body: &[u8]) -> RawResponse {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        app.addr
    );
    let mut wire = head.into_bytes();
    for piece in body.chunks(1000) {
        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    exchange(app.addr, wire).await
}

/// Write `wire` on a fresh connection and read one response. The server may answer (and stop
/// reading) before everything is written, so writing runs concurrently and a write error is
/// ignored.
async fn exchange(addr: std::net::SocketAddr, wire: Vec<u8>) -> RawResponse {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let writer_task = tokio::spawn(async move {
        for piece in wire.chunks(2048) {
            if writer.write_all(piece).await.is_err() {
                return;
            }
        }
        let _ = writer.flush().await;
        // Keep the write half open until the response is read.
        tokio::time::sleep(Duration::from_secs(3)).await;
    });
    let response = tokio::time::timeout(Duration::from_secs(5), read_response(&mut reader, &mut Vec::new()))
        .await
        .expect("a response within 5 s")
        .expect("a response");
    writer_task.abort();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_16_kib_is_413() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let secret = "chunked-secret-marker";
    let password = format!("{secret}{}", "y".repeat(LIMIT));
    let body = json!({ "username": "chunky", "password": password }).to_string();
    assert!(body.len() > LIMIT);
    for path in CREDENTIAL_ROUTES {
        let response = post_chunked(&app, path, body.as_bytes()).await;
        assert_eq!(response.status, 413, "{path}: {}", String::from_utf8_lossy(&response.body));
        assert_eq!(response.header("content-type"), Some("application/problem+json"));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert!(response.header("content-length").is_some(), "a problem body has a length");
        let text = String::from_utf8_lossy(&response.body).into_owned();
        assert!(!text.contains(secret), "{text}");
        let problem: Value = serde_json::from_str(&text).expect("problem json");
        assert_eq!(problem["status"], 413);
    }
    assert!(keys(&redis).is_empty(), "chunked 413s wrote {:?}", keys(&redis));

    // A chunked body under the limit is fine: the limit is on size, not on framing.
    let user = unique("chunked");
    let small = json!({ "username": user, "password": PASSWORD }).to_string();
    let response = post_chunked(&app, "/v1/auth/register", small.as_bytes()).await;
    assert_eq!(response.status, 201, "{}", String::from_utf8_lossy(&response.body));
    assert_eq!(app.login_response(&user, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_field_is_422_naming_it() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let cases = [
        (json!({ "username": "alice", "password": PASSWORD, "role": "admin" }), "role"),
        (json!({ "username": "alice", "password": PASSWORD, "is_admin": true }), "is_admin"),
        (json!({ "user": "alice", "password": PASSWORD }), "user"),
        (json!({ "username": "alice", "passwd": PASSWORD }), "passwd"),
    ];
    for path in CREDENTIAL_ROUTES {
        for (body, field) in &cases {
            let response = app.post_json(path, body).await;
            let (problem, _) = problem(response, StatusCode::UNPROCESSABLE_ENTITY, &[PASSWORD]).await;
            assert_eq!(problem["type"], "urn:sessiond:problem:invalid-field");
            assert!(detail(&problem).contains(&format!("`{field}`")), "{path} {body}: {problem}");
        }
    }
    assert!(keys(&redis).is_empty(), "422s wrote {:?}", keys(&redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_field_is_422_naming_it() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let cases = [
        (json!({ "username": "alice" }), "password"),
        (json!({ "password": PASSWORD }), "username"),
        (json!({}), "username"),
    ];
    for path in CREDENTIAL_ROUTES {
        for (body, field) in &cases {
            let response = app.post_json(path, body).await;
            let (problem, _) = problem(response, StatusCode::UNPROCESSABLE_ENTITY, &[PASSWORD]).await;
            assert!(detail(&problem).contains(&format!("`{field}`")), "{path} {body}: {problem}");
            assert!(detail(&problem).contains("required"), "{path} {body}: {problem}");
        }
    }
    assert!(keys(&redis).is_empty(), "422s wrote {:?}", keys(&redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_fields_are_422_without_echoing_the_value() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let cases: [(Value, &str, &str); 7] = [
        (json!({ "username": "alice", "password": 987_654_321 }), "password", "987654321"),
        (json!({ "username": "alice", "password": 12_345.25 }), "password", "12345.25"),
        (
            json!({ "username": "alice", "password": { "secret": "hunter2-object-secret" } }),
            "password",
            "hunter2-object-secret",
        ),
        (json!({ "username": "alice", "password": ["hunter2-array-secret"] }), "password", "hunter2-array-secret"),
        (json!({ "username": "alice", "password": true }), "password", "true"),
        (json!({ "username": 424_242_424, "password": PASSWORD }), "username", "424242424"),
        (json!({ "username": null, "password": PASSWORD }), "username", PASSWORD),
    ];
    for path in CREDENTIAL_ROUTES {
        for (body, field, value) in &cases {
            let response = app.post_json(path, body).await;
            let (problem, text) = problem(response, StatusCode::UNPROCESSABLE_ENTITY, &[value, PASSWORD]).await;
            assert!(detail(&problem).contains(field), "{path} {body}: {text}");
        }
        // A body that is JSON but not an object is a 422 on the body itself.
        for body in [json!("hunter2-bare-string"), json!(31_415_926), json!(null)] {
            let response = app.post_json(path, &body).await;
            let (problem, _) =
                problem(response, StatusCode::UNPROCESSABLE_ENTITY, &["hunter2-bare-string", "31415926"]).await;
            assert!(detail(&problem).contains("body"), "{path} {body}: {problem}");
        }
    }
    assert!(keys(&redis).is_empty(), "422s wrote {:?}", keys(&redis));
}

/// Regression: serde's derived `Deserialize` for a struct also accepts a JSON array of its
/// fields in order, so `["name", "password"]` used to register and log in although the
/// contract is an object with exactly `username` and `password`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_array_body_is_422_not_credentials() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let user = unique("array");
    for path in CREDENTIAL_ROUTES {
        let response = app.post_json(path, &json!([user, PASSWORD])).await;
        let (problem, _) = problem(response, StatusCode::UNPROCESSABLE_ENTITY, &[PASSWORD]).await;
        assert!(detail(&problem).contains("body"), "{path}: {problem}");
    }
    assert!(keys(&redis).is_empty(), "an array body wrote {:?}", keys(&redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_usernames_are_422_naming_username() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let too_long = "a".repeat(65);
    let bad = ["", "ab", "with space", "semi;colon", "tag{x}", "colon:name", "ünï", "emoji😀x", too_long.as_str()];
    for username in bad {
        let response = app.register(username, PASSWORD).await;
        let (problem, _) = problem(response, StatusCode::UNPROCESSABLE_ENTITY, &[PASSWORD]).await;
        assert!(detail(&problem).contains("`username`"), "{username:?}: {problem}");
        assert!(!detail(&problem).contains("password"), "{username:?}: {problem}");
    }
    assert!(keys(&redis).is_empty(), "422s wrote {:?}", keys(&redis));

    // The limits themselves are accepted: 3 and 64 characters.
    for username in ["abc".to_owned(), "b".repeat(64)] {
        assert_eq!(app.register(&username, PASSWORD).await.status(), StatusCode::CREATED, "{username}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_length_limits_are_422_naming_password() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let over = format!("long-pw-{}", "z".repeat(1025 - 8));
    let over_multibyte = "é".repeat(513); // 513 characters, 1026 bytes
    let bad = ["", "short77", over.as_str(), over_multibyte.as_str()];
    for password in bad {
        let user = unique("pwlen");
        let response = app.register(&user, password).await;
        let secrets: Vec<&str> = if password.is_empty() { vec![] } else { vec![password] };
        let (problem, _) = problem(response, StatusCode::UNPROCESSABLE_ENTITY, &secrets).await;
        assert!(detail(&problem).contains("`password`"), "{} bytes: {problem}", password.len());
    }
    assert!(keys(&redis).is_empty(), "422s wrote {:?}", keys(&redis));

    // Exactly 8 and exactly 1024 bytes are accepted, and the 1024-byte one logs in.
    let longest = "w".repeat(1024);
    for password in ["eight888", longest.as_str()] {
        let user = unique("pwok");
        assert_eq!(app.register(&user, password).await.status(), StatusCode::CREATED, "{} bytes", password.len());
        assert_eq!(app.login_response(&user, password).await.status(), StatusCode::OK, "{} bytes", password.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_username_is_409_case_insensitively() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let name = unique("CaseUser");
    assert_eq!(app.register(&name, PASSWORD).await.status(), StatusCode::CREATED);
    let before = keys(&redis);
    assert_eq!(before.len(), 1, "one user key: {before:?}");
    let other_password = "a different password";
    for spelling in [name.clone(), name.to_ascii_lowercase(), name.to_ascii_uppercase()] {
        let response = app.register(&spelling, other_password).await;
        let (problem, _) = problem(response, StatusCode::CONFLICT, &[other_password, PASSWORD]).await;
        assert_eq!(problem["type"], "urn:sessiond:problem:username-taken");
    }
    assert_eq!(keys(&redis), before, "a 409 changed the keyspace");
    // The original password still works (the duplicate did not overwrite it)...
    assert_eq!(app.login_response(&name, PASSWORD).await.status(), StatusCode::OK);
    // ...and the duplicate's did not become valid.
    assert_eq!(app.login_response(&name, other_password).await.status(), StatusCode::UNAUTHORIZED);
}

/// One way of presenting a credential.
#[derive(Clone, Copy, Debug)]
enum Carrier {
    Authorization,
    Cookie,
    SessionIdHeader,
}

fn carry(carrier: Carrier, raw: &[u8]) -> (reqwest::header::HeaderName, HeaderValue) {
    let value = |bytes: Vec<u8>| HeaderValue::from_bytes(&bytes).expect("header value");
    match carrier {
        Carrier::Authorization => (AUTHORIZATION, value(raw.to_vec())),
        Carrier::Cookie => (COOKIE, value([b"sid=".as_slice(), raw].concat())),
        Carrier::SessionIdHeader => (reqwest::header::HeaderName::from_static("x-session-id"), value(raw.to_vec())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_credentials_are_401_with_identical_bodies() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let login = app.signup_login(&unique("tok")).await;
    let token = token_of(&login);
    assert_eq!(token.len(), 43);
    let before = keys(&redis);

    // The reference: no credential at all.
    let reference = app.client.get(app.url("/v1/profile")).send().await.expect("request");
    assert_eq!(reference.headers().get("www-authenticate").map(HeaderValue::as_bytes), Some(b"Bearer".as_slice()));
    let (_, reference) = problem(reference, StatusCode::UNAUTHORIZED, &[&token]).await;

    let long = "A".repeat(5000);
    let forty_four = format!("{token}A");
    let forty_two = token[..42].to_owned();
    let unknown = "A".repeat(43); // well-formed, but no such session
    let non_ascii: Vec<u8> = [token.as_bytes()[..40].to_vec(), vec![0xc3, 0xa9, 0xff]].concat();
    let bad_tokens: Vec<(&str, Vec<u8>)> = vec![
        ("5000 chars", long.into_bytes()),
        ("44 chars", forty_four.into_bytes()),
        ("42 chars", forty_two.into_bytes()),
        ("non-ASCII", non_ascii),
        ("not base64url", "*".repeat(43).into_bytes()),
        ("empty", Vec::new()),
        ("unknown", unknown.into_bytes()),
    ];

    let mut presentations: Vec<(String, reqwest::header::HeaderName, HeaderValue)> = Vec::new();
    for (what, raw) in &bad_tokens {
        let bearer = [b"Bearer ".as_slice(), raw].concat();
        let (name, value) = carry(Carrier::Authorization, &bearer);
        presentations.push((format!("Authorization: Bearer {what}"), name, value));
        for carrier in [Carrier::Cookie, Carrier::SessionIdHeader] {
            let (name, value) = carry(carrier, raw);
            presentations.push((format!("{carrier:?} {what}"), name, value));
        }
    }
    // Wrong schemes, even around a valid token, and a bare header.
    for raw in [
        format!("Basic {token}"),
        "Basic dXNlcjpwYXNz".to_owned(),
        token.clone(),
        format!("Bearer  {token} x"),
        String::new(),
    ] {
        let (name, value) = carry(Carrier::Authorization, raw.as_bytes());
        presentations.push((format!("Authorization: {raw:?}"), name, value));
    }

    let routes = [
        (Method::GET, "/v1/profile"),
        (Method::GET, "/v1/sessions"),
        (Method::POST, "/v1/auth/refresh"),
        (Method::POST, "/v1/auth/logout"),
        (Method::DELETE, "/v1/sessions"),
    ];
    for (what, name, value) in &presentations {
        for (method, path) in &routes {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .header(name.clone(), value.clone())
                .send()
                .await
                .expect("request");
            assert_eq!(
                response.headers().get("www-authenticate").map(HeaderValue::as_bytes),
                Some(b"Bearer".as_slice()),
                "{what} on {method} {path}"
            );
            let (_, text) = problem(response, StatusCode::UNAUTHORIZED, &[&token]).await;
            assert_eq!(text, reference, "{what} on {method} {path}");
        }
    }

    // None of that touched the store or the real session.
    assert_eq!(keys(&redis), before, "rejected credentials changed the keyspace");
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
    // A token that was valid and is now logged out looks exactly like garbage.
    assert_eq!(app.post("/v1/auth/logout", &token).await.status(), StatusCode::NO_CONTENT);
    let response = app.get("/v1/profile", &token).await;
    let (_, text) = problem(response, StatusCode::UNAUTHORIZED, &[&token]).await;
    assert_eq!(text, reference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_is_a_4xx_never_500() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let huge = "C".repeat(100 * 1024);
    let requests = [
        app.client.get(app.url("/v1/profile")).header(COOKIE, format!("sid={huge}")),
        app.client.get(app.url("/v1/profile")).header("x-padding", huge.clone()),
        app.client.get(app.url("/v1/profile")).header(AUTHORIZATION, format!("Bearer {huge}")),
        app.client
            .post(app.url("/v1/auth/login"))
            .header(COOKIE, format!("sid={huge}"))
            .json(&json!({"username": "nobody", "password": PASSWORD})),
    ];
    for request in requests {
        let response = request.send().await.expect("a response, not a dropped connection");
        let status = response.status();
        assert!(status.is_client_error(), "oversized header answered {status}");
        let text = response.text().await.expect("body");
        assert!(!text.contains("CCCCCCCC"), "the header came back in the body");
        assert!(!text.contains(PASSWORD));
    }
    // A header section past hyper's buffer (about 400 KiB) is refused by hyper itself.
    let head =
        format!("GET /v1/profile HTTP/1.1\r\nHost: {}\r\nCookie: sid={}\r\n\r\n", app.addr, "D".repeat(1024 * 1024));
    let response = exchange(app.addr, head.into_bytes()).await;
    assert_eq!(response.status, 431, "a 1 MiB header section");
    // The instance is still healthy and nothing was written.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.expect("healthz").status(), StatusCode::OK);
    assert!(keys(&redis).is_empty(), "oversized headers wrote {:?}", keys(&redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_404_and_wrong_method_is_405() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let token = token_of(&app.signup_login(&unique("route")).await);
    let before = keys(&redis);
    for (method, path) in [
        (Method::GET, "/index.html"),
        (Method::GET, "/v1/nope"),
        (Method::POST, "/v1/auth/nope"),
        (Method::GET, "/v2/profile"),
        (Method::DELETE, "/v1/sessions/a/b"),
        (Method::GET, "/v1/admin/users"),
        (Method::GET, "/healthz/extra"),
    ] {
        let response =
            app.client.request(method.clone(), app.url(path)).bearer_auth(&token).send().await.expect("request");
        let (problem, _) = problem(response, StatusCode::NOT_FOUND, &[&token]).await;
        assert_eq!(problem["type"], "urn:sessiond:problem:not-found", "{method} {path}");
    }
    for (method, path) in [
        (Method::GET, "/v1/auth/login"),
        (Method::PUT, "/v1/auth/register"),
        (Method::GET, "/v1/auth/logout"),
        (Method::POST, "/v1/profile"),
        (Method::PUT, "/v1/sessions"),
        (Method::PATCH, "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA"),
        (Method::GET, "/v1/admin/users/someone/sessions"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/readyz"),
    ] {
        let response =
            app.client.request(method.clone(), app.url(path)).bearer_auth(&token).send().await.expect("request");
        let (problem, _) = problem(response, StatusCode::METHOD_NOT_ALLOWED, &[&token]).await;
        assert_eq!(problem["type"], "urn:sessiond:problem:method-not-allowed", "{method} {path}");
    }
    assert_eq!(keys(&redis), before, "404s and 405s changed the keyspace");
    assert_eq!(app.profile_status(&token).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_422_and_revoke_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let user = unique("query");
    let first = token_of(&app.signup_login(&user).await);
    let second = token_of(&app.login(&user).await);
    assert_eq!(app.session_ids(&first).await.len(), 2);
    let before = keys(&redis);
    for (query, field) in [
        ("except_current=maybe", "except_current"),
        ("except_current=", "except_current"),
        ("except_current=TRUE", "except_current"),
        ("except_current=true&everything=1", "everything"),
        ("foo=bar", "foo"),
        ("force", "force"),
    ] {
        let response = app.delete(&format!("/v1/sessions?{query}"), &first).await;
        let (problem, _) = problem(response, StatusCode::UNPROCESSABLE_ENTITY, &[&first]).await;
        assert!(detail(&problem).contains(&format!("`{field}`")), "?{query}: {problem}");
    }
    assert_eq!(keys(&redis), before, "a rejected revoke-all changed the keyspace");
    assert_eq!(app.profile_status(&first).await, StatusCode::OK);
    assert_eq!(app.profile_status(&second).await, StatusCode::OK);
    assert_eq!(app.session_ids(&first).await.len(), 2);

    // The valid form still works: the other session goes, the current one stays.
    assert_eq!(app.delete("/v1/sessions?except_current=true", &first).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.profile_status(&first).await, StatusCode::OK);
    assert_eq!(app.profile_status(&second).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_foreign_session_ids_are_404() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let mine = token_of(&app.signup_login(&unique("ids")).await);
    let theirs = app.signup_login(&unique("ids")).await;
    let their_id = theirs["session_id"].as_str().expect("session id").to_owned();
    let before = keys(&redis);
    let long = "A".repeat(5000);
    for id in [
        "not-an-id",
        "AAAAAAAAAAAAAAAAAAAAAA",  // well-formed, no such session
        "AAAAAAAAAAAAAAAAAAAAAB",  // non-canonical encoding
        "AAAAAAAAAAAAAAAAAAAAAAA", // 23 chars
        "%2e%2e",
        long.as_str(),
        their_id.as_str(), // someone else's session: not the caller's, so "no such session"
    ] {
        let response = app.delete(&format!("/v1/sessions/{id}"), &mine).await;
        let (problem, _) = problem(response, StatusCode::NOT_FOUND, &[&mine]).await;
        assert_eq!(problem["type"], "urn:sessiond:problem:not-found", "{}", &id[..id.len().min(30)]);
    }
    assert_eq!(keys(&redis), before, "404s changed the keyspace");
    assert_eq!(app.profile_status(&token_of(&theirs)).await, StatusCode::OK, "the other user's session survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let user = unique("real");
    assert_eq!(app.register(&user, PASSWORD).await.status(), StatusCode::CREATED);
    let before = keys(&redis);
    let wrong = "wrong password 123";
    let attempts = [
        (unique("ghost"), PASSWORD.to_owned()),
        (user.clone(), wrong.to_owned()),
        (user.to_ascii_uppercase(), wrong.to_owned()),
        (user.clone(), String::new()),
        (user.clone(), "w".repeat(5000)),
        ("x!".to_owned(), PASSWORD.to_owned()), // not even a valid username
    ];
    let mut bodies = Vec::new();
    for (username, password) in &attempts {
        let response = app.login_response(username, password).await;
        assert_eq!(response.headers().get("www-authenticate").map(HeaderValue::as_bytes), Some(b"Bearer".as_slice()));
        assert!(response.headers().get("set-cookie").is_none(), "a failed login set a cookie");
        let secrets: Vec<&str> =
            [PASSWORD, wrong].into_iter().chain((!password.is_empty()).then_some(password.as_str())).collect();
        let (problem, text) = problem(response, StatusCode::UNAUTHORIZED, &secrets).await;
        assert_eq!(problem["type"], "urn:sessiond:problem:invalid-credentials");
        bodies.push(text);
    }
    for body in &bodies[1..] {
        assert_eq!(body, &bodies[0], "login failures must be byte-identical");
    }
    assert_eq!(keys(&redis), before, "failed logins changed the keyspace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_responses_carry_the_security_headers() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let user = unique("headers");
    let check = |response: &reqwest::Response, expected: StatusCode| {
        assert_eq!(response.status(), expected, "{}", response.url());
        assert_security_headers(response.headers(), response.url().path());
    };
    check(&app.client.get(app.url("/healthz")).send().await.expect("healthz"), StatusCode::OK);
    check(&app.client.get(app.url("/readyz")).send().await.expect("readyz"), StatusCode::OK);
    check(&app.register(&user, PASSWORD).await, StatusCode::CREATED);
    let response = app.login_response(&user, PASSWORD).await;
    check(&response, StatusCode::OK);
    let token = token_of(&response.json().await.expect("login json"));
    check(&app.get("/v1/profile", &token).await, StatusCode::OK);
    check(&app.get("/v1/sessions", &token).await, StatusCode::OK);
    let response = app.post("/v1/auth/refresh", &token).await;
    check(&response, StatusCode::OK);
    let token = token_of(&response.json().await.expect("refresh json"));
    check(&app.post("/v1/auth/logout", &token).await, StatusCode::NO_CONTENT);
}

/// A declared oversize body is refused from its head alone, and the early answer says the
/// connection closes (its body was never read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let head = format!(
        "POST /v1/auth/register HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.addr,
        1024 * 1024
    );
    let started = std::time::Instant::now();
    let response = exchange(app.addr, head.into_bytes()).await;
    assert_eq!(response.status, 413);
    assert!(started.elapsed() < Duration::from_secs(1), "answered from the head, without waiting for the body");
    assert_eq!(response.header("connection"), Some("close"));
    let unsupported = exchange(
        app.addr,
        format!(
            "POST /v1/auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
            app.addr
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(unsupported.status, 415);
    assert_eq!(unsupported.header("connection"), Some("close"));
    assert!(keys(&redis).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_field_is_422_naming_it() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    for path in CREDENTIAL_ROUTES {
        let body = r#"{"username":"dupe","password":"first-secret-value","password":"second-secret-value"}"#;
        let response = post_raw(&app, path, Some("application/json"), body.to_owned()).await;
        let (problem, _) =
            problem(response, StatusCode::UNPROCESSABLE_ENTITY, &["first-secret-value", "second-secret-value"]).await;
        assert!(detail(&problem).contains("`password`") && detail(&problem).contains("more than once"), "{problem}");
    }
    assert!(keys(&redis).is_empty());
}
