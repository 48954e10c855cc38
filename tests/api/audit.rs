//! The audit log, on the real binary (the tracing subscriber is process-global): every
//! security-relevant action writes one JSON line with target `audit`, its event name and the
//! fields that say who did what to whom from where; whatever `SESSIOND_LOG_FORMAT` says, the
//! lines are JSON; and no line ever holds a token, a password, a device token, a cookie value
//! or a password hash.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const NEW_PASSWORD: &str = "audited new passphrase";
const WRONG: &str = "audited wrong guess";
const CLIENT_IP: &str = "127.0.0.1";

/// A thin client for one binary; remembers every secret it saw.
struct Client {
    http: reqwest::Client,
    base: String,
    secrets: Vec<String>,
}

impl Client {
    fn new(server: &ServerProcess) -> Self {
        let secrets = [PASSWORD, NEW_PASSWORD, WRONG].map(str::to_owned).into();
        Self { http: reqwest::Client::new(), base: server.base.clone(), secrets }
    }

    async fn send(&mut self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        self.remember(&response);
        response
    }

    /// Keep every credential the server handed out: the device token header and the values
    /// of every cookie set.
    fn remember(&mut self, response: &Response) {
        if let Some(device) = response.headers().get("sessiond-device-token") {
            self.secrets.push(device.to_str().expect("ascii").to_owned());
        }
        for cookie in set_cookies(response) {
            let value = cookie.split(';').next().and_then(|pair| pair.split_once('=')).map(|(_, v)| v.to_owned());
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                self.secrets.push(value);
            }
        }
    }

    async fn register(&mut self, username: &str) -> String {
        let body = json!({ "username": username, "password": PASSWORD });
        let response = self.send(Method::POST, "/v1/auth/register", None, Some(body)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "register {username}");
        let body: Value = response.json().await.expect("json");
        body["user_id"].as_str().expect("user_id").to_owned()
    }

    /// A login; on 200 returns the token, session id and device token.
    async fn login_with(&mut self, username: &str, password: &str, device: Option<&str>) -> Response {
        let mut request = self
            .http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({ "username": username, "password": password }));
        if let Some(device) = device {
            request = request.header("sessiond-device-token", device);
        }
        let response = request.send().await.expect("login");
        self.remember(&response);
        response
    }

    async fn login(&mut self, username: &str, password: &str, device: Option<&str>) -> Session {
        let response = self.login_with(username, password, device).await;
        assert_eq!(response.status(), StatusCode::OK, "login {username}");
        self.session(response).await
    }

    async fn session(&mut self, response: Response) -> Session {
        let device = response.headers().get("sessiond-device-token").map(|v| v.to_str().expect("ascii").to_owned());
        let body: Value = response.json().await.expect("json");
        let session =
            Session { token: token_of(&body), id: body["session_id"].as_str().expect("session_id").to_owned(), device };
        self.secrets.push(session.token.clone());
        session
    }
}

struct Session {
    token: String,
    id: String,
    device: Option<String>,
}

/// The audit file, parsed: every line must be a JSON object with the common fields.
fn parse_audit(text: &str) -> Vec<Value> {
    assert!(!text.is_empty(), "the audit log is empty");
    text.lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("an audit line is not JSON ({e}): {line}"));
            assert!(value.is_object(), "{line}");
            assert_eq!(value["target"], "audit", "{line}");
            for field in ["timestamp", "level", "event"] {
                assert!(value[field].is_string(), "no {field}: {line}");
            }
            value
        })
        .collect()
}

/// The one line of `event` whose fields include `matching`; fails listing what there is.
fn find<'a>(lines: &'a [Value], event: &str, matching: &[(&str, Value)]) -> &'a Value {
    let found: Vec<&Value> =
        lines.iter().filter(|l| l["event"] == event && matching.iter().all(|(k, v)| l.get(*k) == Some(v))).collect();
    let same_event: Vec<&Value> = lines.iter().filter(|l| l["event"] == event).collect();
    assert_eq!(found.len(), 1, "{event} with {matching:?}: {} found among {same_event:#?}", found.len());
    found[0]
}

/// `line` has every field of `want` with exactly that value, and every field of `present`
/// (with any value).
fn check(line: &Value, want: &[(&str, Value)], present: &[&str]) {
    for (key, value) in want {
        assert_eq!(line.get(*key), Some(value), "{}: `{key}` in {line}", line["event"]);
    }
    for key in present {
        assert!(line.get(*key).is_some_and(|v| !v.is_null()), "{} lacks `{key}`: {line}", line["event"]);
    }
}

fn assert_no_secret(text: &str, secrets: &[String]) {
    for (n, line) in text.lines().enumerate() {
        for secret in secrets {
            assert!(!line.contains(secret.as_str()), "audit line {n} holds a secret ({} chars): {line}", secret.len());
        }
        assert!(!line.contains("$argon2"), "audit line {n} holds a password hash: {line}");
    }
}

fn audit_env(path: &str, format: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SESSIOND_AUDIT_LOG", path.to_owned()),
        ("SESSIOND_LOG_FORMAT", format.to_owned()),
        ("SESSIOND_LOGIN_FAILURES", "3".to_owned()),
        ("SESSIOND_LOGIN_FAILURE_WINDOW", "10m".to_owned()),
        // All traffic comes from one address.
        ("SESSIOND_RATE_LIMIT_IP", "0".to_owned()),
        ("SESSIOND_RATE_LIMIT_LOGIN_IP", "0".to_owned()),
        ("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "0".to_owned()),
        ("SESSIOND_RATE_LIMIT_REGISTER_IP", "0".to_owned()),
    ]
}

fn as_refs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `sessiond admin …` on the same store and audit log as the server.
async fn cli(redis: &RedisServer, audit: &str, args: &[&str]) {
    let url = redis.url();
    let mut full = vec!["admin"];
    full.extend_from_slice(args);
    let out = sessiond_cli(&[("SESSIOND_REDIS_URL", url.as_str()), ("SESSIOND_AUDIT_LOG", audit)], &full).await;
    assert!(out.status.success(), "sessiond {full:?} failed: {}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_security_event_is_one_json_line_with_its_fields_and_no_secret() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.log");
    let audit = audit.to_str().expect("utf-8 path").to_owned();
    let vars = audit_env(&audit, "json");
    let mut server = ServerProcess::start(&redis.url(), &as_refs(&vars));
    let mut c = Client::new(&server);
    server.wait_ready(&c.http).await;

    // Registration, logins (new client, then with the device token), failures of each kind.
    let alice_id = c.register("alice").await;
    let first = c.login("alice", PASSWORD, None).await;
    let device = first.device.clone().expect("a device token");
    let trusted = c.login("alice", PASSWORD, Some(&device)).await;
    assert_eq!(c.login_with("ALICE", WRONG, None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(c.login_with("nobody", PASSWORD, None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(c.login_with("x", PASSWORD, None).await.status(), StatusCode::UNAUTHORIZED);

    // Refresh, revoke one, log out, log out everywhere else.
    let response = c.send(Method::POST, "/v1/auth/refresh", Some(&trusted.token), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let current = c.session(response).await;
    assert_eq!(current.id, trusted.id);
    let doomed = c.login("alice", PASSWORD, Some(&device)).await;
    let path = format!("/v1/sessions/{}", doomed.id);
    assert_eq!(c.send(Method::DELETE, &path, Some(&current.token), None).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        c.send(Method::POST, "/v1/auth/logout", Some(&first.token), None).await.status(),
        StatusCode::NO_CONTENT
    );
    c.login("alice", PASSWORD, Some(&device)).await;
    c.login("alice", PASSWORD, Some(&device)).await;
    let response = c.send(Method::DELETE, "/v1/sessions?except_current=true", Some(&current.token), None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // Password change: a wrong current password, then the right one (one other session ends).
    c.login("alice", PASSWORD, Some(&device)).await;
    let change = |current: &str, new: &str| json!({ "current_password": current, "new_password": new });
    let response =
        c.send(Method::POST, "/v1/account/password", Some(&current.token), Some(change(WRONG, NEW_PASSWORD))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response =
        c.send(Method::POST, "/v1/account/password", Some(&current.token), Some(change(PASSWORD, NEW_PASSWORD))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let changed = c.session(response).await;
    assert_eq!(changed.id, current.id);

    // Account deletion: a wrong password, then the right one (two sessions end).
    let leaver_id = c.register("leaver").await;
    let leaver = c.login("leaver", PASSWORD, None).await;
    c.login("leaver", PASSWORD, None).await;
    let wrong = json!({ "password": WRONG });
    assert_eq!(
        c.send(Method::DELETE, "/v1/account", Some(&leaver.token), Some(wrong)).await.status(),
        StatusCode::FORBIDDEN
    );
    let right = json!({ "password": PASSWORD });
    assert_eq!(
        c.send(Method::DELETE, "/v1/account", Some(&leaver.token), Some(right)).await.status(),
        StatusCode::NO_CONTENT
    );

    // Administration, through the API and the command line.
    let boss_id = c.register("boss").await;
    cli(&redis, &audit, &["grant-role", "boss", "admin"]).await;
    let boss = c.login("boss", PASSWORD, None).await;
    c.register("bob").await;
    c.login("bob", PASSWORD, None).await;
    let admin = |rest: &str| format!("/v1/admin/users/bob{rest}");
    assert_eq!(c.send(Method::POST, &admin("/disable"), Some(&boss.token), None).await.status(), StatusCode::OK);
    assert_eq!(c.login_with("bob", PASSWORD, None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(c.send(Method::POST, &admin("/enable"), Some(&boss.token), None).await.status(), StatusCode::OK);
    assert_eq!(c.send(Method::PUT, &admin("/roles/auditor"), Some(&boss.token), None).await.status(), StatusCode::OK);
    assert_eq!(
        c.send(Method::DELETE, &admin("/roles/auditor"), Some(&boss.token), None).await.status(),
        StatusCode::OK
    );
    c.login("bob", PASSWORD, None).await;
    assert_eq!(c.send(Method::DELETE, &admin("/sessions"), Some(&boss.token), None).await.status(), StatusCode::OK);
    cli(&redis, &audit, &["disable", "bob"]).await;
    cli(&redis, &audit, &["enable", "bob"]).await;
    cli(&redis, &audit, &["revoke-role", "boss", "admin"]).await;
    // The role is gone: the next admin call is refused, and the refusal is in the trail.
    assert_eq!(c.send(Method::GET, &admin(""), Some(&boss.token), None).await.status(), StatusCode::FORBIDDEN);

    // The failed-login guard.
    c.register("locked").await;
    for _ in 0..3 {
        assert_eq!(c.login_with("locked", WRONG, None).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(c.login_with("locked", PASSWORD, None).await.status(), StatusCode::TOO_MANY_REQUESTS);

    server.terminate();
    let text = std::fs::read_to_string(&audit).expect("the audit log exists");
    assert_no_secret(&text, &c.secrets);
    let lines = parse_audit(&text);
    let ip = || ("client_ip", json!(CLIENT_IP));

    let line = find(&lines, "account.register", &[("username", json!("alice"))]);
    check(line, &[("user_id", json!(alice_id)), ("username", json!("alice")), ip()], &[]);

    let line = find(&lines, "login.success", &[("session_id", json!(first.id))]);
    check(
        line,
        &[
            ("user_id", json!(alice_id)),
            ("username", json!("alice")),
            ("session_id", json!(first.id)),
            ip(),
            ("trusted_device", json!(false)),
        ],
        &[],
    );
    let line = find(&lines, "login.success", &[("session_id", json!(trusted.id))]);
    check(line, &[("user_id", json!(alice_id)), ip(), ("trusted_device", json!(true))], &["username"]);

    let line = find(&lines, "login.failure", &[("username", json!("alice"))]);
    check(line, &[("reason", json!("wrong_password")), ip()], &[]);
    let line = find(&lines, "login.failure", &[("username", json!("nobody"))]);
    check(line, &[("reason", json!("unknown_user")), ip()], &[]);
    let invalid: Vec<&Value> =
        lines.iter().filter(|l| l["event"] == "login.failure" && l.get("username").is_none()).collect();
    assert_eq!(invalid.len(), 1, "one failure without a (valid) username: {invalid:?}");
    check(invalid[0], &[ip()], &["reason"]);
    let line = find(&lines, "login.failure", &[("username", json!("bob"))]);
    check(line, &[("reason", json!("disabled")), ip()], &[]);
    let line = find(&lines, "login.failure", &[("username", json!("locked")), ("reason", json!("rate_limited"))]);
    check(line, &[ip()], &[]);
    let reasons: Vec<&Value> = lines.iter().filter(|l| l["event"] == "login.failure").map(|l| &l["reason"]).collect();
    assert!(
        reasons.iter().all(|r| ["wrong_password", "unknown_user", "disabled", "rate_limited"].contains(&r.as_str().unwrap_or(""))),
        "{reasons:?}"
    );

    let line = find(&lines, "refresh", &[]);
    check(
        line,
        &[("user_id", json!(alice_id)), ("username", json!("alice")), ("session_id", json!(trusted.id)), ip()],
        &[],
    );
    let line = find(&lines, "session.revoke", &[]);
    check(
        line,
        &[("actor_user_id", json!(alice_id)), ("actor", json!("alice")), ("target_session_id", json!(doomed.id)), ip()],
        &[],
    );
    let line = find(&lines, "logout", &[("session_id", json!(first.id))]);
    check(
        line,
        &[("user_id", json!(alice_id)), ("username", json!("alice")), ("session_id", json!(first.id)), ip()],
        &[],
    );
    let line = find(&lines, "sessions.revoke_all", &[]);
    check(
        line,
        &[
            ("actor_user_id", json!(alice_id)),
            ("actor", json!("alice")),
            ("revoked", json!(2)),
            ("kept_current", json!(true)),
            ip(),
        ],
        &[],
    );

    let line = find(&lines, "reauth.failure", &[("action", json!("password_change"))]);
    check(line, &[("user_id", json!(alice_id)), ("username", json!("alice")), ip()], &["reason"]);
    let line = find(&lines, "password.change", &[]);
    check(
        line,
        &[
            ("user_id", json!(alice_id)),
            ("username", json!("alice")),
            ("session_id", json!(current.id)),
            ("revoked", json!(1)),
            ip(),
        ],
        &[],
    );
    let line = find(&lines, "reauth.failure", &[("action", json!("account_delete"))]);
    check(line, &[("user_id", json!(leaver_id)), ("username", json!("leaver")), ip()], &["reason"]);
    let line = find(&lines, "account.delete", &[]);
    check(line, &[("user_id", json!(leaver_id)), ("username", json!("leaver")), ("revoked", json!(2)), ip()], &[]);

    let by_boss = || [("actor_user_id", json!(boss_id)), ("actor", json!("boss")), ip()];
    let by_cli = [("actor", json!("cli"))];
    let line = find(&lines, "admin.disable", &by_boss()[..2]);
    check(line, &[by_boss().as_slice(), &[("target_user", json!("bob")), ("revoked", json!(1))]].concat(), &[]);
    let line = find(&lines, "admin.enable", &by_boss()[..2]);
    check(line, &[by_boss().as_slice(), &[("target_user", json!("bob"))]].concat(), &[]);
    let line = find(&lines, "admin.role_grant", &by_boss()[..2]);
    check(line, &[by_boss().as_slice(), &[("target_user", json!("bob")), ("role", json!("auditor"))]].concat(), &[]);
    let line = find(&lines, "admin.role_revoke", &by_boss()[..2]);
    check(line, &[by_boss().as_slice(), &[("target_user", json!("bob")), ("role", json!("auditor"))]].concat(), &[]);
    let line = find(&lines, "admin.sessions_revoke", &by_boss()[..2]);
    check(line, &[by_boss().as_slice(), &[("target_user", json!("bob")), ("revoked", json!(1))]].concat(), &[]);

    for (event, target, extra) in [
        ("admin.role_grant", "boss", Some(("role", json!("admin")))),
        ("admin.disable", "bob", Some(("revoked", json!(0)))),
        ("admin.enable", "bob", None),
        ("admin.role_revoke", "boss", Some(("role", json!("admin")))),
    ] {
        let line = find(&lines, event, &by_cli);
        let mut want = vec![by_cli[0].clone(), ("target_user", json!(target))];
        want.extend(extra);
        check(line, &want, &[]);
        assert!(line.get("actor_user_id").is_none(), "{event} from the CLI names no actor id: {line}");
        assert!(line.get("client_ip").is_none(), "{event} from the CLI has no client address: {line}");
    }
    let line = find(&lines, "access.denied", &by_boss()[..2]);
    check(line, &[by_boss().as_slice(), &[("required_role", json!("admin"))]].concat(), &[]);
}

/// One short flow, and the audit events it must leave.
async fn short_flow(server: &mut ServerProcess) -> Vec<String> {
    let mut c = Client::new(server);
    server.wait_ready(&c.http).await;
    c.register("pretty").await;
    let session = c.login("pretty", PASSWORD, None).await;
    assert_eq!(c.login_with("pretty", WRONG, None).await.status(), StatusCode::UNAUTHORIZED);
    let response = c.send(Method::POST, "/v1/auth/logout", Some(&session.token), None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    server.terminate();
    c.secrets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_are_json_when_the_log_is_pretty() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.log");
    let audit = audit.to_str().expect("utf-8 path").to_owned();
    let vars = audit_env(&audit, "pretty");
    let mut server = ServerProcess::start(&redis.url(), &as_refs(&vars));
    let secrets = short_flow(&mut server).await;

    let text = std::fs::read_to_string(&audit).expect("the audit log exists");
    assert_no_secret(&text, &secrets);
    let lines = parse_audit(&text);
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    for event in ["account.register", "login.success", "login.failure", "logout"] {
        assert!(events.contains(&event), "no {event} in {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_audit_file_the_events_go_to_standard_error_as_json() {
    let redis = RedisServer::start();
    let mut vars = audit_env("", "pretty");
    vars.retain(|(k, _)| *k != "SESSIOND_AUDIT_LOG");
    let mut server = ServerProcess::start(&redis.url(), &as_refs(&vars));
    let secrets = short_flow(&mut server).await;
    let stderr = server.stderr();
    let audit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["target"] == "audit"))
        .collect();
    assert!(!audit.is_empty(), "no JSON audit line on standard error:\n{stderr}");
    assert_no_secret(&audit.join("\n"), &secrets);
    let lines = parse_audit(&audit.join("\n"));
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    for event in ["account.register", "login.success", "login.failure", "logout"] {
        assert!(events.contains(&event), "no {event} in {events:?}; stderr:\n{stderr}");
    }
}
