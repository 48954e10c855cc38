//! The JSON request bodies, through the real HTTP edge (the request types are private to the
//! handlers; the service's public entry point is the router): register, login, password change,
//! account deletion and introspection get arbitrary bytes, edits of valid bodies and
//! well-formed JSON of the wrong shape. Whatever arrives: never a 5xx; every 4xx is
//! problem+json whose `status` is the response's; every success is JSON; and no response ever
//! contains a password the request carried.

use std::sync::Mutex;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::Value;
use sessiond::limits::QuotaSpec;

use crate::common;
use crate::helpers::{spawn_app_with, TestApp, PASSWORD};

/// The backend API key the app is configured with (only its SHA-256 is configured).
const API_KEY: &str = "fuzz-backend-key-0123456789abcdef";

#[derive(Clone, Copy, Debug)]
pub enum Endpoint {
    Register,
    Login,
    PasswordChange,
    DeleteAccount,
    Introspect,
}

const ENDPOINTS: [Endpoint; 5] =
    [Endpoint::Register, Endpoint::Login, Endpoint::PasswordChange, Endpoint::DeleteAccount, Endpoint::Introspect];

impl Endpoint {
    fn route(self) -> (Method, &'static str) {
        match self {
            Self::Register => (Method::POST, "/v1/auth/register"),
            Self::Login => (Method::POST, "/v1/auth/login"),
            Self::PasswordChange => (Method::POST, "/v1/account/password"),
            Self::DeleteAccount => (Method::DELETE, "/v1/account"),
            Self::Introspect => (Method::POST, "/v1/introspect"),
        }
    }

    fn parse(path: &str) -> Option<Self> {
        ENDPOINTS.into_iter().find(|e| e.route().1 == path)
    }

    /// Valid bodies, to edit.
    fn seeds(self) -> Vec<Vec<u8>> {
        let bodies: &[&str] = match self {
            Self::Register => &[
                r#"{"username":"alice","password":"correct horse battery"}"#,
                r#"{"username":"Bob.Smith@example-1_x","password":"ünïcødé pässwörd"}"#,
            ],
            Self::Login => &[
                r#"{"username":"alice","password":"correct horse battery"}"#,
                r#"{"username":"alice","password":"correct horse battery","transport":"bearer"}"#,
                r#"{"username":"alice","password":"correct horse battery","transport":"cookie"}"#,
            ],
            Self::PasswordChange => {
                &[r#"{"current_password":"correct horse battery","new_password":"a longer passphrase for a new year"}"#]
            }
            Self::DeleteAccount => {
                &[r#"{"password":"wrong horse battery"}"#, r#"{"password":"correct horse battery"}"#]
            }
            Self::Introspect => &[
                r#"{"token":"T4W0s6EIET4uPe4U-pZ-2hnG9KJU-8YHwbmTQxHVNSs"}"#,
                r#"{"token":"eyJhbGciOiJFZERTQSJ9.e30.sig","token_type_hint":"access_token"}"#,
            ],
        };
        bodies.iter().map(|b| b.as_bytes().to_vec()).collect()
    }
}

/// One request: where, the `Content-Type` (`None`: no header), the body.
#[derive(Clone, Debug)]
pub struct Input {
    endpoint: Endpoint,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

/// The running service and a session to send the authenticated requests with.
pub struct Target {
    runtime: tokio::runtime::Runtime,
    app: TestApp,
    session: Mutex<Option<String>>,
    users: Mutex<u64>,
}

impl Target {
    pub fn start() -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let app = runtime.block_on(spawn_app_with(None, |config| {
            use sha2::Digest as _;
            let hash: String = sha2::Sha256::digest(API_KEY).iter().map(|b| format!("{b:02x}")).collect();
            config.backend_keys = vec![format!("fuzz:{hash}").parse().expect("backend key")];
            config.rate_limit_backend = QuotaSpec::Off;
        }));
        Self { runtime, app, session: Mutex::new(None), users: Mutex::new(0) }
    }

    /// A live session's token: a fresh user's when the last one ended.
    async fn session(&self) -> String {
        if let Some(token) = self.session.lock().expect("lock").clone() {
            return token;
        }
        let name = {
            let mut users = self.users.lock().expect("lock");
            *users += 1;
            format!("fuzzer{}", *users)
        };
        let token = crate::helpers::token_of(&self.app.signup_login(&name).await);
        *self.session.lock().expect("lock") = Some(token.clone());
        token
    }

    pub fn check(&self, input: &Input) -> Result<(), TestCaseError> {
        self.runtime.block_on(self.send(input))
    }

    async fn send(&self, input: &Input) -> Result<(), TestCaseError> {
        let (method, path) = input.endpoint.route();
        let mut request = self.app.client.request(method, self.app.url(path)).body(input.body.clone());
        if let Some(content_type) = input.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let authenticated = matches!(input.endpoint, Endpoint::PasswordChange | Endpoint::DeleteAccount);
        if authenticated {
            request = request.bearer_auth(self.session().await);
        }
        if matches!(input.endpoint, Endpoint::Introspect) {
            request = request.header("authorization", format!("ApiKey {API_KEY}"));
        }
        let response = request.send().await.map_err(|e| TestCaseError::fail(format!("request failed: {e}")))?;
        let status = response.status();
        let content_type =
            response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = response.text().await.map_err(|e| TestCaseError::fail(format!("body: {e}")))?;
        if authenticated && (status.is_success() || status == reqwest::StatusCode::UNAUTHORIZED) {
            // The password changed, the account is gone, or the session ended: start afresh.
            *self.session.lock().expect("lock") = None;
        }
        prop_assert!(!status.is_server_error(), "{} answered {}: {}", path, status, text);
        if status.is_client_error() {
            prop_assert!(
                content_type.starts_with("application/problem+json"),
                "{} {} as {:?}",
                path,
                status,
                content_type
            );
            let problem: Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("{path} {status}: not JSON ({e}): {text}")))?;
            prop_assert_eq!(problem["status"].as_u64(), Some(u64::from(status.as_u16())), "{}", text);
        } else if !text.is_empty() {
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{} {}: not JSON: {}", path, status, text);
        }
        for secret in passwords(&input.body) {
            prop_assert!(!text.contains(&secret), "{} {} echoed a password: {}", path, status, text);
        }
        Ok(())
    }
}

/// The passwords a body carries (of 8 characters or more), if it is a JSON object.
fn passwords(body: &[u8]) -> Vec<String> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    ["password", "current_password", "new_password"]
        .iter()
        .filter_map(|name| fields.get(*name).and_then(Value::as_str))
        .filter(|p| p.chars().count() >= 8 && *p != PASSWORD)
        .map(str::to_owned)
        .collect()
}

/// JSON of the right keys and the wrong shape: other types, nesting, huge numbers, escapes.
fn shaped_json() -> BoxedStrategy<Vec<u8>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        common::text_over("abc \u{0}\u{1f}\"\\é\u{2028}", 16).prop_map(Value::String),
        Just(Value::String("correct horse battery".to_owned())),
    ];
    let value = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let key = prop_oneof![
        Just("username".to_owned()),
        Just("password".to_owned()),
        Just("transport".to_owned()),
        Just("current_password".to_owned()),
        Just("new_password".to_owned()),
        Just("token".to_owned()),
        Just("token_type_hint".to_owned()),
        "[a-z_]{1,10}",
    ];
    proptest::collection::btree_map(key, value, 0..4)
        .prop_map(|fields| serde_json::to_vec(&Value::Object(fields.into_iter().collect())).expect("json"))
        .boxed()
}

fn input() -> impl Strategy<Value = Input> {
    let content_type = prop_oneof![
        12 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(Some("application/merge-patch+json")),
        1 => Just(Some("text/plain")),
        1 => Just(Some("application/x-www-form-urlencoded")),
        1 => Just(None),
    ];
    (proptest::sample::select(ENDPOINTS.to_vec()), content_type).prop_flat_map(|(endpoint, content_type)| {
        let body = prop_oneof![
            4 => common::mutated(endpoint.seeds()),
            2 => shaped_json(),
            1 => proptest::collection::vec(any::<u8>(), 0..256),
        ];
        body.prop_map(move |body| Input { endpoint, content_type, body })
    })
}

/// A corpus file: `METHOD /path` on the first line, the body after it.
fn parse_file(bytes: &[u8]) -> Input {
    let at = bytes.iter().position(|b| *b == b'\n').unwrap_or(bytes.len());
    let first = String::from_utf8_lossy(&bytes[..at]);
    let path = first.split_whitespace().nth(1).unwrap_or_default();
    let endpoint = Endpoint::parse(path).unwrap_or_else(|| panic!("corpus file names an unknown route: {first}"));
    Input { endpoint, content_type: Some("application/json"), body: bytes.get(at + 1..).unwrap_or_default().to_vec() }
}

#[test]
fn corpus() {
    let target = Target::start();
    common::run_corpus("json", |bytes| target.check(&parse_file(bytes)));
}

#[test]
fn random() {
    let target = Target::start();
    common::run("json", common::cases(1_000), input(), |input| target.check(&input));
}
