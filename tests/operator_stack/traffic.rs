//! The API traffic the dashboards must see: a scripted pass over every kind of call and
//! outcome (including the limiters' 429s), and light background traffic while Prometheus
//! scrapes and evaluates.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::processes::Stack;

const PASSWORD: &str = "correct horse battery";

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
    Header(&'a str),
}

/// The public API of both instances, with a tally of every status seen.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) bases: Arc<Vec<String>>,
    pub(crate) statuses: Arc<Mutex<BTreeMap<u16, u32>>>,
}

impl Api {
    async fn call(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.bases[instance % self.bases.len()]);
        let mut request = self.http.request(method, &url).header("user-agent", "operator-stack-test");
        request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Cookie(token) => request.header("cookie", format!("sid={token}")),
            Auth::Header(token) => request.header("x-session-id", token),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        *self.statuses.lock().expect("status tally").entry(status).or_default() += 1;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A call that must answer `expected`; a 429 (the deliberately low limits) is retried.
    async fn must(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
        expected: u16,
    ) -> Value {
        for _ in 0..60 {
            let (status, value) = self.call(instance, method.clone(), path, auth, body.clone()).await;
            if status == 429 && expected != 429 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            assert_eq!(status, expected, "{method} {path} on instance {instance}: {value}");
            return value;
        }
        panic!("{method} {path} on instance {instance}: still 429 after 12 s");
    }

    async fn register(&self, instance: usize, username: &str, expected: u16) {
        let body = json!({ "username": username, "password": PASSWORD });
        self.must(instance, Method::POST, "/v1/auth/register", Auth::None, Some(body), expected).await;
    }

    /// Log in; returns (token, session id).
    async fn login(&self, instance: usize, username: &str, auth: Auth<'_>) -> (String, String) {
        let body = json!({ "username": username, "password": PASSWORD });
        let value = self.must(instance, Method::POST, "/v1/auth/login", auth, Some(body), 200).await;
        let field = |name: &str| {
            value[name].as_str().unwrap_or_else(|| panic!("login answer without {name}: {value}")).to_owned()
        };
        (field("token"), field("session_id"))
    }

    pub(crate) fn count(&self, status: u16) -> u32 {
        self.statuses.lock().expect("status tally").get(&status).copied().unwrap_or(0)
    }

    /// Send `n` requests at once; returns their statuses.
    async fn burst(
        &self,
        n: usize,
        instance: usize,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: impl Fn(usize) -> Option<Value>,
    ) -> Vec<u16> {
        let calls = (0..n).map(|i| {
            let auth = token.map_or(Auth::None, Auth::Bearer);
            let body = body(i);
            let method = method.clone();
            async move { self.call(instance, method, path, auth, body).await.0 }
        });
        futures_util::future::join_all(calls).await
    }
}

/// Everything an operator's dashboards should see: accounts, good and bad logins, sessions
/// used, rotated, listed and ended in every way, invalid credentials, and the limiters at work.
/// Returns tokens of sessions left alive.
pub(crate) async fn drive_traffic(api: &Api, stack: &Stack) -> Vec<String> {
    // Registrations (alternating instances), a case-insensitive duplicate and an invalid name.
    let users = ["alice", "bob", "carol", "dave", "erin", "ops-admin"];
    for (i, user) in users.iter().enumerate() {
        api.register(i, user, 201).await;
    }
    api.register(1, "ALICE", 409).await;
    api.register(0, "x", 422).await;
    stack.grant_role("ops-admin", "admin").await;

    // Logins on both instances.
    let (alice_a, _) = api.login(0, "alice", Auth::None).await;
    let (alice_b, alice_b_id) = api.login(1, "alice", Auth::None).await;
    let (bob_a, _) = api.login(0, "bob", Auth::None).await;
    let (bob_b, _) = api.login(1, "bob", Auth::None).await;
    let (carol, _) = api.login(0, "carol", Auth::None).await;
    let (dave, _) = api.login(1, "dave", Auth::None).await;
    let (admin, _) = api.login(0, "ops-admin", Auth::None).await;

    // Authenticated calls: bearer, cookie and header, on both instances.
    for (i, token) in [&alice_a, &alice_b, &bob_a, &bob_b, &carol, &dave, &admin].into_iter().enumerate() {
        api.must(i, Method::GET, "/v1/profile", Auth::Bearer(token), None, 200).await;
        api.must(i + 1, Method::GET, "/v1/sessions", Auth::Bearer(token), None, 200).await;
    }
    api.must(0, Method::GET, "/v1/profile", Auth::Cookie(&carol), None, 200).await;
    api.must(1, Method::GET, "/v1/profile", Auth::Header(&dave), None, 200).await;

    // Refresh: a new token for the same session; the old one is dead at once.
    let refreshed = api.must(0, Method::POST, "/v1/auth/refresh", Auth::Bearer(&alice_a), None, 200).await;
    let alice_a = refreshed["token"].as_str().expect("refreshed token").to_owned();
    api.must(1, Method::GET, "/v1/profile", Auth::Bearer(&alice_a), None, 200).await;

    // Revoke one of alice's sessions by id from the other; an unknown id is a 404.
    api.must(0, Method::DELETE, &format!("/v1/sessions/{alice_b_id}"), Auth::Bearer(&alice_a), None, 204).await;
    api.must(1, Method::GET, "/v1/profile", Auth::Bearer(&alice_b), None, 401).await;
    api.must(1, Method::DELETE, "/v1/sessions/not-a-session", Auth::Bearer(&alice_a), None, 404).await;

    // Logout; the token is dead afterwards.
    api.must(1, Method::POST, "/v1/auth/logout", Auth::Bearer(&bob_b), None, 204).await;
    api.must(0, Method::GET, "/v1/profile", Auth::Bearer(&bob_b), None, 401).await;

    // A login carrying carol's session replaces it (rotation); then log out everywhere else.
    let (carol_2, _) = api.login(1, "carol", Auth::Bearer(&carol)).await;
    api.must(0, Method::GET, "/v1/profile", Auth::Bearer(&carol), None, 401).await;
    let (carol_3, _) = api.login(0, "carol", Auth::None).await;
    api.must(1, Method::DELETE, "/v1/sessions?except_current=true", Auth::Bearer(&carol_3), None, 204).await;
    api.must(0, Method::GET, "/v1/profile", Auth::Bearer(&carol_2), None, 401).await;

    // The admin API: refused to a user, allowed to an admin; dave logs in again afterwards.
    api.must(0, Method::DELETE, "/v1/admin/users/dave/sessions", Auth::Bearer(&alice_a), None, 403).await;
    let revoked = api.must(1, Method::DELETE, "/v1/admin/users/dave/sessions", Auth::Bearer(&admin), None, 200).await;
    assert_eq!(revoked["revoked"], json!(1), "admin revocation: {revoked}");
    api.must(0, Method::DELETE, "/v1/admin/users/nobody/sessions", Auth::Bearer(&admin), None, 404).await;
    let (dave, _) = api.login(0, "dave", Auth::None).await;

    // Invalid credentials: garbage, a well-formed unknown token, no credential at all.
    api.must(0, Method::GET, "/v1/profile", Auth::Bearer("garbage"), None, 401).await;
    let unknown = "A".repeat(43);
    api.must(1, Method::GET, "/v1/profile", Auth::Bearer(&unknown), None, 401).await;
    api.must(0, Method::GET, "/v1/sessions", Auth::None, None, 401).await;

    // Failed logins: an unknown user, then wrong passwords for erin until the shared guard
    // (SESSIOND_LOGIN_FAILURES=5) refuses her with 429.
    let wrong = |name: &str| json!({ "username": name, "password": "wrong password!" });
    api.must(1, Method::POST, "/v1/auth/login", Auth::None, Some(wrong("mallory")), 401).await;
    let mut erin = Vec::new();
    for i in 0..12 {
        let (status, _) = api.call(i, Method::POST, "/v1/auth/login", Auth::None, Some(wrong("erin"))).await;
        erin.push(status);
        if status == 429 && erin.iter().filter(|s| **s == 401).count() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(220)).await;
    }
    assert!(
        erin.iter().filter(|s| **s == 401).count() >= 5 && erin.last() == Some(&429),
        "wrong passwords for erin: expected 5 × 401, then 429 from the login guard; got {erin:?}"
    );

    // Bursts the limiters must refuse: logins from one address, registrations from one
    // address, and plain API calls beyond the per-address limit.
    let logins = api
        .burst(12, 0, Method::POST, "/v1/auth/login", None, |_| {
            Some(json!({ "username": "bob", "password": PASSWORD }))
        })
        .await;
    assert!(logins.contains(&200) && logins.contains(&429), "login burst: {logins:?}");
    let registrations = api
        .burst(10, 1, Method::POST, "/v1/auth/register", None, |i| {
            Some(json!({ "username": format!("burst{i}"), "password": PASSWORD }))
        })
        .await;
    assert!(registrations.contains(&201) && registrations.contains(&429), "registration burst: {registrations:?}");
    let calls = api.burst(90, 0, Method::GET, "/v1/profile", Some(alice_a.as_str()), |_| None).await;
    assert!(calls.contains(&200) && calls.contains(&429), "profile burst: {calls:?}");

    vec![alice_a, bob_a, carol_3, dave, admin]
}

/// Light traffic until `stop` is set, so that rate() over the dashboards' windows is non-zero.
pub(crate) fn background_traffic(api: Api, tokens: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i: usize = 0;
        while !stop.load(Ordering::Relaxed) {
            let token = tokens[i % tokens.len()].as_str();
            // Every kind of call goes to both instances in turn.
            let instance = i + i / 8;
            match i % 8 {
                0 | 4 => {
                    api.call(instance, Method::GET, "/v1/profile", Auth::Bearer(token), None).await;
                }
                1 => {
                    api.call(instance, Method::GET, "/v1/sessions", Auth::Bearer(token), None).await;
                }
                2 => {
                    api.call(instance, Method::GET, "/v1/profile", Auth::Bearer("not-a-token"), None).await;
                }
                3 => {
                    api.call(instance, Method::GET, "/v1/profile", Auth::Cookie(token), None).await;
                }
                5 => {
                    let body = json!({ "username": "bob", "password": PASSWORD });
                    api.call(instance, Method::POST, "/v1/auth/login", Auth::None, Some(body)).await;
                }
                6 => {
                    let body = json!({ "username": format!("ghost{i}"), "password": "wrong password!" });
                    api.call(instance, Method::POST, "/v1/auth/login", Auth::None, Some(body)).await;
                }
                _ => {
                    api.call(instance, Method::GET, "/v1/profile", Auth::Header(token), None).await;
                }
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
