//! Access tokens (`POST /v1/auth/token`) and their key set (`GET /.well-known/jwks.json`),
//! against the real binary and a real `redis-server`, judged by an independent verifier:
//! `tests/jwt/verify_tokens.py` checks every token with PyJWT against the key set it fetches
//! over HTTP.
//!
//! 1. a minted token verifies and names its session (`sub`, `name`, `roles`, `sid`, `iss`,
//!    `aud`; `exp - iat` is `expires_in`, the configured lifetime), whichever way the session
//!    was presented;
//! 2. a tampered, forged, expired or foreign token is rejected;
//! 3. a token never outlives its session;
//! 4. an ended, unknown or missing session mints nothing, and neither does a cookie request
//!    another site started;
//! 5. the key set is public and cacheable for a minute;
//! 6. keys rotate without downtime: while both are published, tokens of either verify; once
//!    the old key is gone, its tokens no longer do;
//! 7. `sessiond admin jwt-keygen` writes a private key file and needs no store, and an unusable
//!    key directory stops the server at start-up.
//!
//! Tools: `python3` with PyJWT and cryptography (`pip install pyjwt cryptography`, or `./test`,
//! which installs them). A missing one fails the test with that hint; nothing is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const VERIFIER: &str = "tests/jwt/verify_tokens.py";
const PYJWT_INSTALL: &str = "pip install pyjwt cryptography";
const UNAUTHENTICATED: &str = "urn:sessiond:problem:unauthenticated";
const CROSS_SITE: &str = "urn:sessiond:problem:cross-site-request";
/// The default lifetime of a token (`SESSIOND_JWT_TTL`).
const DEFAULT_TTL: u64 = 300;
/// How often the server reads its key directory by itself.
const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// All test traffic comes from one address: no rate limit, no failed-login guard.
const NO_LIMITS: [(&str, &str); 5] = [
    ("SESSIOND_RATE_LIMIT_IP", "0"),
    ("SESSIOND_RATE_LIMIT_LOGIN_IP", "0"),
    ("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "0"),
    ("SESSIOND_RATE_LIMIT_REGISTER_IP", "0"),
    ("SESSIOND_LOGIN_FAILURES", "0"),
];

// ---------------------------------------------------------------------------------------------
// The verifier.

/// Fails unless `python3` can import PyJWT with its cryptography backend, naming how to
/// install them.
fn require_pyjwt() {
    let probe = "import jwt, cryptography\nfrom jwt.algorithms import has_crypto\nassert has_crypto";
    let status = std::process::Command::new("python3")
        .args(["-c", probe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                panic!("python3 not found on PATH: install it (`apt-get install -y python3`), then `{PYJWT_INSTALL}`")
            }
            _ => panic!("cannot run python3: {e}"),
        });
    assert!(
        status.success(),
        "the Python modules jwt (PyJWT) and cryptography are missing: install them with `{PYJWT_INSTALL}` \
         (or run ./test, which installs them)"
    );
}

/// One check for the verifier: `token` is expected to be `expect` (`valid`, `rejected` or a
/// PyJWT exception class) for audience and issuer `sessiond`.
fn check(name: &str, token: &str, expect: &str) -> Value {
    json!({ "name": name, "token": token, "expect": expect })
}

/// The same for another audience and issuer.
fn check_for(name: &str, token: &str, expect: &str, audience: &str, issuer: &str) -> Value {
    json!({ "name": name, "token": token, "expect": expect, "audience": audience, "issuer": issuer })
}

/// Run `checks` through PyJWT against the key set `base` publishes now; every outcome must be
/// the expected one. Returns the reports by check name.
async fn pyjwt(base: &str, checks: &[Value]) -> BTreeMap<String, Value> {
    require_pyjwt();
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    serde_json::to_writer(&mut file, &json!({ "checks": checks })).expect("write checks");
    let mut command = tokio::process::Command::new("python3");
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg(VERIFIER)
        .args(["--base", base, "run"])
        .arg(file.path())
        // The key set is on 127.0.0.1: never through a proxy.
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("{VERIFIER} still running after 60 s"))
        .unwrap_or_else(|e| panic!("cannot run python3 {VERIFIER}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "PyJWT disagreed ({}):\n{stdout}\n{stderr}", output.status);
    let reports: BTreeMap<String, Value> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .map(|report| (report["name"].as_str().expect("name").to_owned(), report))
        .collect();
    assert_eq!(reports.len(), checks.len(), "one report per check:\n{stdout}\n{stderr}");
    reports
}

// ---------------------------------------------------------------------------------------------
// The service.

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// The binary on `redis` with `vars` (over plain-HTTP cookies, cheap argon2 and no limits),
/// ready.
async fn serve(client: &reqwest::Client, redis: &RedisServer, vars: &[(&str, &str)]) -> ServerProcess {
    let mut all = NO_LIMITS.to_vec();
    all.extend_from_slice(vars);
    let mut server = ServerProcess::start(&redis.url(), &all);
    server.wait_ready(client).await;
    server
}

/// A signed-in user, as the service describes them.
struct Login {
    token: String,
    user_id: String,
    username: String,
    session_id: String,
    roles: Value,
}

async fn sign_in(client: &reqwest::Client, server: &ServerProcess, prefix: &str) -> Login {
    let username = unique(prefix);
    let credentials = json!({ "username": username, "password": PASSWORD });
    let r = client.post(server.url("/v1/auth/register")).json(&credentials).send().await.expect("register");
    assert_eq!(r.status(), StatusCode::CREATED, "register {username}");
    let r = client.post(server.url("/v1/auth/login")).json(&credentials).send().await.expect("login");
    assert_eq!(r.status(), StatusCode::OK, "login {username}");
    let token = token_of(&r.json().await.expect("login json"));
    let r = client.get(server.url("/v1/profile")).bearer_auth(&token).send().await.expect("profile");
    assert_eq!(r.status(), StatusCode::OK, "profile");
    let profile: Value = r.json().await.expect("profile json");
    Login {
        token,
        user_id: profile["user_id"].as_str().expect("user_id").to_owned(),
        session_id: profile["session"]["session_id"].as_str().expect("session_id").to_owned(),
        roles: profile["roles"].clone(),
        username,
    }
}

/// How the session is presented to `POST /v1/auth/token`.
#[derive(Clone, Copy, Debug)]
enum Via {
    Bearer,
    /// The session cookie, `sid` over plain HTTP.
    Cookie,
    SessionHeader,
}

fn mint_request(client: &reqwest::Client, server: &ServerProcess, via: Via, session: &str) -> RequestBuilder {
    let request = client.post(server.url("/v1/auth/token"));
    match via {
        Via::Bearer => request.bearer_auth(session),
        Via::Cookie => request.header("cookie", format!("sid={session}")),
        Via::SessionHeader => request.header("x-session-id", session),
    }
}

/// A minted token and its `expires_in`.
struct Minted {
    token: String,
    expires_in: u64,
}

/// `POST /v1/auth/token`; it must succeed.
async fn mint(client: &reqwest::Client, server: &ServerProcess, via: Via, session: &str) -> Minted {
    let response = mint_request(client, server, via, session).send().await.expect("mint");
    minted(response, &format!("minting by {via:?}")).await
}

async fn minted(response: Response, what: &str) -> Minted {
    let status = response.status();
    let cache_control = header_of(&response, "cache-control");
    let content_type = header_of(&response, "content-type");
    let body = response.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{what}: {body}");
    assert_eq!(cache_control.as_deref(), Some("no-store"), "{what}: a token response is never cached");
    assert_eq!(content_type.as_deref(), Some("application/json"), "{what}");
    let body: Value = serde_json::from_str(&body).expect("token json");
    assert_eq!(body["token_type"], "Bearer", "{what}: {body}");
    let fields: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(fields, ["access_token", "expires_in", "token_type"], "{what}: {body}");
    Minted {
        token: body["access_token"].as_str().expect("access_token").to_owned(),
        expires_in: body["expires_in"].as_u64().expect("expires_in"),
    }
}

fn header_of(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().expect("ascii header").to_owned())
}

/// The published keys.
async fn jwks(client: &reqwest::Client, server: &ServerProcess) -> Vec<Value> {
    let response = client.get(server.url("/.well-known/jwks.json")).send().await.expect("jwks");
    assert_eq!(response.status(), StatusCode::OK, "jwks");
    let body: Value = response.json().await.expect("jwks json");
    body["keys"].as_array().unwrap_or_else(|| panic!("no keys array: {body}")).clone()
}

async fn published_kids(client: &reqwest::Client, server: &ServerProcess) -> Vec<String> {
    jwks(client, server).await.iter().map(|key| key["kid"].as_str().expect("kid").to_owned()).collect()
}

/// Poll the key set until it lists exactly `want` (in that order); fails after `within`.
async fn until_published(client: &reqwest::Client, server: &ServerProcess, want: &[&str], within: Duration) {
    let started = Instant::now();
    loop {
        let kids = published_kids(client, server).await;
        if kids == want {
            return;
        }
        assert!(started.elapsed() < within, "the key set is still {kids:?}, not {want:?}, after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hang_up(server: &ServerProcess) {
    let pid = server.pid().to_string();
    let ok = std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success();
    assert!(ok, "kill -HUP {pid} failed");
}

// ---------------------------------------------------------------------------------------------
// Tokens taken apart (no verification: that is PyJWT's job).

fn segments(token: &str) -> [String; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS has three segments: {token}");
    [parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned()]
}

fn decode_segment(segment: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD.decode(segment).expect("base64url segment");
    serde_json::from_slice(&bytes).expect("JSON segment")
}

fn encode_segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

fn unverified_header(token: &str) -> Value {
    decode_segment(&segments(token)[0])
}

fn unverified_claims(token: &str) -> Value {
    decode_segment(&segments(token)[1])
}

/// The token with one character of its payload replaced by another base64url character.
fn with_flipped_payload_char(token: &str) -> String {
    let [header, payload, signature] = segments(token);
    let mut chars: Vec<char> = payload.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    format!("{header}.{}.{signature}", chars.into_iter().collect::<String>())
}

/// The token with a rewritten payload and its original signature.
fn with_claims(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let [header, payload, signature] = segments(token);
    let mut claims = decode_segment(&payload);
    change(&mut claims);
    format!("{header}.{}.{signature}", encode_segment(&claims))
}

/// The token with the last byte of its signature changed.
fn with_flipped_signature(token: &str) -> String {
    let [header, payload, signature] = segments(token);
    let mut bytes = URL_SAFE_NO_PAD.decode(&signature).expect("signature");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The token's claims under an unsigned header (`alg: none`) that names the same key.
fn unsigned(token: &str) -> String {
    let [_, payload, _] = segments(token);
    let kid = unverified_header(token)["kid"].clone();
    format!("{}.{payload}.", encode_segment(&json!({ "alg": "none", "typ": "JWT", "kid": kid })))
}

fn unix_now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("seconds")
}

/// Assert that a verified token names `login`'s session, lives `expires_in` seconds, was issued
/// about now and is signed by a key of `kids`.
fn assert_names_session(report: &Value, login: &Login, expires_in: u64, kids: &[String], what: &str) {
    assert_eq!(report["outcome"], "valid", "{what}: {report}");
    let header = &report["header"];
    assert_eq!(header["alg"], "EdDSA", "{what}: {header}");
    let kid = header["kid"].as_str().unwrap_or_else(|| panic!("{what}: no kid in {header}"));
    assert!(kids.iter().any(|k| k == kid), "{what}: kid {kid} is not among the published {kids:?}");
    let claims = &report["claims"];
    assert_eq!(claims["sub"], login.user_id.as_str(), "{what}: sub is the user's id");
    assert_eq!(claims["name"], login.username.as_str(), "{what}: name is the username");
    assert_eq!(claims["roles"], login.roles, "{what}: roles");
    assert_eq!(claims["sid"], login.session_id.as_str(), "{what}: sid is the session's id");
    assert_eq!(claims["iss"], "sessiond", "{what}: iss");
    assert_eq!(claims["aud"], "sessiond", "{what}: aud");
    let (iat, nbf, exp) = (claims["iat"].as_i64(), claims["nbf"].as_i64(), claims["exp"].as_i64());
    let (Some(iat), Some(nbf), Some(exp)) = (iat, nbf, exp) else { panic!("{what}: numeric iat/nbf/exp in {claims}") };
    assert_eq!(u64::try_from(exp - iat).ok(), Some(expires_in), "{what}: exp - iat is expires_in ({claims})");
    assert!(expires_in <= DEFAULT_TTL, "{what}: expires_in {expires_in}");
    assert_eq!(nbf, iat, "{what}: valid from its issue");
    assert!((iat - unix_now()).abs() <= 5, "{what}: iat {iat} is about now ({})", unix_now());
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()), "{what}: jti in {claims}");
}

// ---------------------------------------------------------------------------------------------
// 1. A minted token verifies and names its session.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_minted_by_bearer_cookie_or_session_header_verifies_with_pyjwt_and_names_the_session() {
    require_pyjwt();
    let (client, redis) = (http_client(), RedisServer::start());
    let server = serve(&client, &redis, &[]).await;
    let login = sign_in(&client, &server, "minter").await;

    let mut checks = Vec::new();
    let mut lifetimes = BTreeMap::new();
    for via in [Via::Bearer, Via::Cookie, Via::SessionHeader] {
        let minted = mint(&client, &server, via, &login.token).await;
        checks.push(check(&format!("{via:?}"), &minted.token, "valid"));
        lifetimes.insert(format!("{via:?}"), minted.expires_in);
    }
    let kids = published_kids(&client, &server).await;
    assert_eq!(kids.len(), 1, "without a key directory one key is drawn: {kids:?}");

    let reports = pyjwt(&server.base, &checks).await;
    let mut ids = Vec::new();
    for (name, report) in &reports {
        let expires_in = lifetimes[name];
        assert_eq!(expires_in, DEFAULT_TTL, "{name}: the default lifetime, well within the session's");
        assert_names_session(report, &login, expires_in, &kids, name);
        ids.push(report["claims"]["jti"].as_str().expect("jti").to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every token has its own jti");

    // The drawn key is announced: its tokens die with the process.
    let warned = server.stderr().lines().any(|l| l.contains("WARN") && l.contains("SESSIOND_JWT_KEYS_DIR"));
    assert!(warned, "no warning about the unset SESSIOND_JWT_KEYS_DIR:\n{}", server.stderr());
}

// ---------------------------------------------------------------------------------------------
// 2. Rejections.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_rejects_a_tampered_or_unsigned_token() {
    require_pyjwt();
    let (client, redis) = (http_client(), RedisServer::start());
    let server = serve(&client, &redis, &[]).await;
    let login = sign_in(&client, &server, "tamper").await;
    let token = mint(&client, &server, Via::Bearer, &login.token).await.token;

    let promoted = with_claims(&token, |claims| claims["roles"] = json!(["admin"]));
    assert_eq!(unverified_claims(&promoted)["roles"], json!(["admin"]));
    let checks = [
        check("untouched", &token, "valid"),
        // Undecodable or not matching the signature: either way a DecodeError.
        check("payload char flipped", &with_flipped_payload_char(&token), "DecodeError"),
        check("roles rewritten", &promoted, "InvalidSignatureError"),
        check("signature changed", &with_flipped_signature(&token), "InvalidSignatureError"),
        check("alg none", &unsigned(&token), "InvalidAlgorithmError"),
    ];
    pyjwt(&server.base, &checks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_rejects_a_token_for_another_audience_or_issuer() {
    require_pyjwt();
    let (client, redis) = (http_client(), RedisServer::start());
    let server = serve(&client, &redis, &[]).await;
    let billing = serve(
        &client,
        &redis,
        &[("SESSIOND_JWT_AUDIENCE", "billing"), ("SESSIOND_JWT_ISSUER", "https://id.example.test")],
    )
    .await;
    let ours = mint(&client, &server, Via::Bearer, &sign_in(&client, &server, "audience").await.token).await.token;
    let login = sign_in(&client, &billing, "billing").await;
    let theirs = mint(&client, &billing, Via::Bearer, &login.token).await.token;
    let claims = unverified_claims(&theirs);
    assert_eq!((&claims["aud"], &claims["iss"]), (&json!("billing"), &json!("https://id.example.test")));

    pyjwt(
        &server.base,
        &[
            check("ours", &ours, "valid"),
            check_for("ours, verified for billing", &ours, "InvalidAudienceError", "billing", "sessiond"),
            check_for("ours, verified for another issuer", &ours, "InvalidIssuerError", "sessiond", "someone-else"),
            // Each instance drew its own key: the other one's is not in this key set.
            check("theirs, against our key set", &theirs, "PyJWKClientError"),
        ],
    )
    .await;
    let reports = pyjwt(
        &billing.base,
        &[
            check_for("theirs", &theirs, "valid", "billing", "https://id.example.test"),
            check_for(
                "theirs, verified for sessiond",
                &theirs,
                "InvalidAudienceError",
                "sessiond",
                "https://id.example.test",
            ),
            check_for("theirs, verified for issuer sessiond", &theirs, "InvalidIssuerError", "billing", "sessiond"),
        ],
    )
    .await;
    assert_eq!(reports["theirs"]["claims"]["sub"], login.user_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_rejects_an_expired_token_and_the_session_mints_a_fresh_one() {
    require_pyjwt();
    let (client, redis) = (http_client(), RedisServer::start());
    let server = serve(&client, &redis, &[("SESSIOND_JWT_TTL", "1s")]).await;
    let login = sign_in(&client, &server, "expired").await;
    let minted = mint(&client, &server, Via::Bearer, &login.token).await;
    assert_eq!(minted.expires_in, 1, "SESSIOND_JWT_TTL=1s");
    let claims = unverified_claims(&minted.token);
    assert_eq!(claims["exp"].as_i64().zip(claims["iat"].as_i64()).map(|(exp, iat)| exp - iat), Some(1));

    // `exp` is at most a second away (whole seconds, rounded down): past it for sure after 1.5 s.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    pyjwt(&server.base, &[check("after its exp", &minted.token, "ExpiredSignatureError")]).await;
    // Only the token is over: the session still mints.
    let fresh = mint(&client, &server, Via::Bearer, &login.token).await;
    assert_ne!(fresh.token, minted.token);
}

// ---------------------------------------------------------------------------------------------
// 3. Never beyond the session.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_never_outlives_its_session() {
    require_pyjwt();
    let (client, redis) = (http_client(), RedisServer::start());
    let server = serve(&client, &redis, &[("SESSIOND_IDLE_TIMEOUT", "2s"), ("SESSIOND_ABSOLUTE_TIMEOUT", "1h")]).await;
    let login = sign_in(&client, &server, "shortlived").await;
    let minted = mint(&client, &server, Via::Bearer, &login.token).await;
    assert!(
        (1..=2).contains(&minted.expires_in),
        "the session idles out within 2 s, so must the token: expires_in {}",
        minted.expires_in
    );
    let claims = unverified_claims(&minted.token);
    let lifetime = claims["exp"].as_i64().zip(claims["iat"].as_i64()).map(|(exp, iat)| exp - iat);
    assert_eq!(lifetime, i64::try_from(minted.expires_in).ok(), "exp - iat is expires_in: {claims}");

    // Untouched, the session idles out, and the token is over with it.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    pyjwt(&server.base, &[check("after the session's deadline", &minted.token, "ExpiredSignatureError")]).await;
    let profile = client.get(server.url("/v1/profile")).bearer_auth(&login.token).send().await.expect("profile");
    assert_eq!(profile.status(), StatusCode::UNAUTHORIZED, "the session idled out");
    let again = mint_request(&client, &server, Via::Bearer, &login.token).send().await.expect("mint");
    assert_problem(again, StatusCode::UNAUTHORIZED).await;
}

// ---------------------------------------------------------------------------------------------
// 4. Who may not mint.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_unknown_or_missing_session_mints_nothing() {
    require_pyjwt();
    let (client, redis) = (http_client(), RedisServer::start());
    let server = serve(&client, &redis, &[]).await;
    let login = sign_in(&client, &server, "revoked").await;
    let before = mint(&client, &server, Via::Bearer, &login.token).await;

    let logout = client.post(server.url("/v1/auth/logout")).bearer_auth(&login.token).send().await.expect("logout");
    assert_eq!(logout.status(), StatusCode::NO_CONTENT, "logout");
    for via in [Via::Bearer, Via::Cookie, Via::SessionHeader] {
        let response = mint_request(&client, &server, via, &login.token).send().await.expect("mint");
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(problem["type"], UNAUTHENTICATED, "an ended session by {via:?}: {problem}");
    }

    let unknown = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let response = mint_request(&client, &server, Via::Bearer, &unknown).send().await.expect("mint");
    assert_eq!(assert_problem(response, StatusCode::UNAUTHORIZED).await["type"], UNAUTHENTICATED, "unknown");
    let response = mint_request(&client, &server, Via::Bearer, "not a session").send().await.expect("mint");
    assert_eq!(assert_problem(response, StatusCode::UNAUTHORIZED).await["type"], UNAUTHENTICATED, "malformed");
    let response = client.post(server.url("/v1/auth/token")).send().await.expect("mint");
    assert_eq!(assert_problem(response, StatusCode::UNAUTHORIZED).await["type"], UNAUTHENTICATED, "no credential");

    // The stated trade-off: a token minted before the logout stays valid until its exp.
    pyjwt(&server.base, &[check("minted before the logout", &before.token, "valid")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_mint_another_site_started_is_refused_and_header_credentials_are_not_checked() {
    let (client, redis) = (http_client(), RedisServer::start());
    let server = serve(&client, &redis, &[]).await;
    let login = sign_in(&client, &server, "csrf").await;

    let refused = [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "https://evil.example")],
    ];
    for headers in refused {
        let mut request = mint_request(&client, &server, Via::Cookie, &login.token);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let problem = assert_problem(request.send().await.expect("mint"), StatusCode::FORBIDDEN).await;
        assert_eq!(problem["type"], CROSS_SITE, "{headers:?}: {problem}");
    }
    // The refusals ended nothing; the own pages may mint by cookie.
    let own = mint_request(&client, &server, Via::Cookie, &login.token).header("sec-fetch-site", "same-origin");
    minted(own.send().await.expect("mint"), "a same-origin cookie mint").await;
    // A header credential carries no ambient authority: never checked.
    for via in [Via::Bearer, Via::SessionHeader] {
        let request = mint_request(&client, &server, via, &login.token).header("sec-fetch-site", "cross-site");
        minted(request.send().await.expect("mint"), &format!("a cross-site mint by {via:?}")).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The key set.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_set_is_public_cacheable_for_a_minute_and_holds_only_public_ed25519_keys() {
    let (client, redis) = (http_client(), RedisServer::start());
    let server = serve(&client, &redis, &[]).await;

    let response = client.get(server.url("/.well-known/jwks.json")).send().await.expect("jwks");
    assert_eq!(response.status(), StatusCode::OK, "no credential needed");
    let cache_control: Vec<&str> =
        response.headers().get_all("cache-control").iter().map(|v| v.to_str().expect("ascii")).collect();
    assert_eq!(cache_control, ["public, max-age=60"]);
    assert!(cache_control.iter().all(|v| !v.contains("no-store")), "{cache_control:?}");
    assert_eq!(header_of(&response, "content-type").as_deref(), Some("application/json"));
    assert_eq!(header_of(&response, "x-content-type-options").as_deref(), Some("nosniff"), "security headers stay");
    let body: Value = response.json().await.expect("json");
    let keys = body["keys"].as_array().unwrap_or_else(|| panic!("no keys: {body}"));
    assert_eq!(keys.len(), 1, "{body}");
    for key in keys {
        let fields: Vec<&String> = key.as_object().expect("object").keys().collect();
        assert_eq!(fields, ["alg", "crv", "kid", "kty", "use", "x"], "public members only (no `d`): {key}");
        assert_eq!((&key["kty"], &key["crv"]), (&json!("OKP"), &json!("Ed25519")), "{key}");
        assert_eq!((&key["alg"], &key["use"]), (&json!("EdDSA"), &json!("sig")), "{key}");
        let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().expect("x")).expect("x is base64url");
        assert_eq!(x.len(), 32, "an Ed25519 public key: {key}");
        assert!(key["kid"].as_str().is_some_and(|kid| !kid.is_empty()), "{key}");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Rotation.

/// `sessiond admin jwt-keygen DIR` without any store; returns the file and the kid its name
/// carries (`<UTC timestamp to the millisecond>-<kid>.pem`).
async fn keygen(dir: &Path) -> (PathBuf, String) {
    let dir = dir.to_str().expect("utf-8 path");
    let out = sessiond_cli(&[], &["admin", "jwt-keygen", dir]).await;
    assert!(out.status.success(), "jwt-keygen failed ({}): {}", out.status, out.stderr);
    let path = PathBuf::from(
        out.stdout
            .strip_prefix("wrote ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("not `wrote <path>`: {:?}", out.stdout)),
    );
    assert_eq!(path.parent(), Some(Path::new(dir)), "written into DIR");
    let name = path.file_name().and_then(|n| n.to_str()).expect("file name").to_owned();
    let stem = name.strip_suffix(".pem").unwrap_or_else(|| panic!("{name}: not a .pem"));
    let (stamp, kid) = stem.split_at_checked(19).unwrap_or_else(|| panic!("{name}: too short"));
    let stamp_shape = stamp.char_indices().all(|(i, c)| match i {
        8 => c == 'T',
        18 => c == 'Z',
        _ => c.is_ascii_digit(),
    });
    assert!(stamp_shape, "{name}: not YYYYMMDDTHHMMSSmmmZ-<kid>.pem");
    let kid = kid.strip_prefix('-').unwrap_or_else(|| panic!("{name}: no `-` after the timestamp"));
    assert!(!kid.is_empty(), "{name}: no kid");
    (path, kid.to_owned())
}

/// The current UTC time to the second, as key file names begin: `YYYYMMDDTHHMMSS`.
fn utc_stamp() -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    rfc3339.replace(['-', ':'], "").trim_end_matches('Z').to_owned()
}

/// Mints by bearer every 50 ms until told to stop; returns how many it minted and the
/// failures (status and body).
fn mint_continuously(
    client: reqwest::Client,
    url: String,
    session: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u32, Vec<String>)> {
    tokio::spawn(async move {
        let (mut minted, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match client.post(&url).bearer_auth(&session).send().await {
                Ok(r) if r.status() == StatusCode::OK => minted += 1,
                Ok(r) => failures.push(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
                Err(e) => failures.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (minted, failures)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_downtime_and_a_rotated_out_key_no_longer_verifies() {
    require_pyjwt();
    let (client, redis) = (http_client(), RedisServer::start());
    let keys = tempfile::tempdir().expect("temp dir");
    let keys_dir = keys.path().to_str().expect("utf-8 path");
    let (file_a, kid_a) = keygen(keys.path()).await;
    let server = serve(&client, &redis, &[("SESSIOND_JWT_KEYS_DIR", keys_dir)]).await;
    assert_eq!(published_kids(&client, &server).await, [kid_a.as_str()], "the kid of the file's name");
    assert!(
        !server.stderr().contains("SESSIOND_JWT_KEYS_DIR is not set"),
        "no warning with a key directory:\n{}",
        server.stderr()
    );
    let login = sign_in(&client, &server, "rotation").await;
    let stop = Arc::new(AtomicBool::new(false));
    let background = mint_continuously(client.clone(), server.url("/v1/auth/token"), login.token.clone(), stop.clone());
    let token_a = mint(&client, &server, Via::Bearer, &login.token).await.token;
    assert_eq!(unverified_header(&token_a)["kid"], kid_a.as_str());

    // Key B right after A: key files are named to the millisecond and a new one always sorts
    // after every earlier one, and the newest by name signs.
    let (file_b, kid_b) = keygen(keys.path()).await;
    assert!(file_b > file_a, "a new key sorts last: {file_b:?} after {file_a:?}");
    // SIGHUP: read at once (well before the next periodic read, as a rule).
    hang_up(&server);
    until_published(&client, &server, &[&kid_b, &kid_a], Duration::from_secs(3)).await;
    assert!(server.stderr().contains("SIGHUP"), "the signal was not noticed:\n{}", server.stderr());
    let token_b = mint(&client, &server, Via::Bearer, &login.token).await.token;
    assert_eq!(unverified_header(&token_b)["kid"], kid_b.as_str(), "the new key signs");
    let overlap = pyjwt(
        &server.base,
        &[
            check("signed by A, both published", &token_a, "valid"),
            check("signed by B, both published", &token_b, "valid"),
        ],
    )
    .await;
    let both = [kid_a.clone(), kid_b.clone()];
    assert_names_session(&overlap["signed by A, both published"], &login, DEFAULT_TTL, &both, "A");
    assert_names_session(&overlap["signed by B, both published"], &login, DEFAULT_TTL, &both, "B");

    // A retires: without a signal the periodic read notices.
    std::fs::remove_file(&file_a).expect("remove key A");
    until_published(&client, &server, &[&kid_b], RELOAD_INTERVAL + Duration::from_secs(5)).await;
    let token_b2 = mint(&client, &server, Via::Bearer, &login.token).await.token;
    assert_eq!(unverified_header(&token_b2)["kid"], kid_b.as_str());
    let after = pyjwt(
        &server.base,
        &[
            check("signed by A, retired", &token_a, "PyJWKClientError"),
            check("signed by B before", &token_b, "valid"),
            check("signed by B after", &token_b2, "valid"),
        ],
    )
    .await;
    let detail = after["signed by A, retired"]["detail"].as_str().expect("detail");
    assert!(detail.contains(&kid_a), "rejected for want of A's key: {detail}");

    // A broken file during a rotation keeps the keys in use.
    std::fs::write(keys.path().join("zz-broken.pem"), "not a key\n").expect("write broken key");
    hang_up(&server);
    let started = Instant::now();
    while !server.stderr().contains("not reloaded") {
        assert!(started.elapsed() < Duration::from_secs(3), "no warning about the broken key:\n{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(published_kids(&client, &server).await, [kid_b.as_str()], "the keys in use stay");
    let token_b3 = mint(&client, &server, Via::Bearer, &login.token).await.token;
    pyjwt(&server.base, &[check("signed by B, broken file present", &token_b3, "valid")]).await;

    stop.store(true, Ordering::Relaxed);
    let (count, failures) = background.await.expect("join");
    assert!(failures.is_empty(), "mints failed during the rotation: {failures:?}");
    assert!(count > 10, "only {count} mints during the rotation");
}

// ---------------------------------------------------------------------------------------------
// 7. Key files and start-up.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_keygen_writes_an_owner_only_key_file_and_needs_no_store() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("not").join("yet");
    let before = utc_stamp();
    // `sessiond_cli` starts from an empty environment: no SESSIOND_REDIS_URL.
    let (first, kid) = keygen(&dir).await;
    let after = utc_stamp();
    let stamp = &first.file_name().and_then(|n| n.to_str()).expect("name")[..15];
    assert!(
        before.as_str() <= stamp && stamp <= after.as_str(),
        "named after the UTC time: {stamp} in {before}..{after}"
    );
    let mode = std::fs::metadata(&first).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a private key is for its owner only: {mode:o}");
    let pem = std::fs::read_to_string(&first).expect("read key");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.trim_end().ends_with("-----END PRIVATE KEY-----"), "{pem}");

    let (second, other) = keygen(&dir).await;
    assert_ne!((&second, &other), (&first, &kid), "a new key each time");
    assert_eq!(std::fs::read_to_string(&first).expect("read key"), pem, "earlier keys stay as they were");
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_key_directory_stops_the_server_at_start_up_naming_the_setting() {
    let redis = RedisServer::start();
    let url = redis.url();
    let root = tempfile::tempdir().expect("temp dir");
    let broken = root.path().join("broken");
    keygen(&broken).await;
    std::fs::write(broken.join("zz-broken.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        .expect("write broken key");
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).expect("empty dir");
    let missing = root.path().join("missing");

    for (what, dir, named) in [
        ("a broken .pem", &broken, "zz-broken.pem"),
        ("no key", &empty, "empty"),
        ("no directory", &missing, "missing"),
    ] {
        let dir = dir.to_str().expect("utf-8 path");
        let out = sessiond_cli(&[("SESSIOND_REDIS_URL", url.as_str()), ("SESSIOND_JWT_KEYS_DIR", dir)], &[]).await;
        assert!(!out.status.success(), "{what}: sessiond started anyway ({})", out.status);
        assert!(out.stderr.contains("SESSIOND_JWT_KEYS_DIR"), "{what}: the setting is not named:\n{}", out.stderr);
        assert!(out.stderr.contains(named), "{what}: {named} is not named:\n{}", out.stderr);
    }
}
