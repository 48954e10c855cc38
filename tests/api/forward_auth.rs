//! Forward authentication through a real nginx: the shipped `deploy/nginx/` configuration
//! (`sessiond-auth.conf` with only its `listen` port changed, `upstreams.conf` with the
//! addresses of this test's processes), in front of an upstream that records every request
//! it receives, with sessiond instances on a real Redis behind it.
//!
//! nginx runs as the current user from a temporary directory (configuration, pid file, logs
//! and temporary files all inside it) on a free port; it is stopped on drop. The tests need
//! the `nginx` binary (Debian: `apt-get install -y nginx-light`, which has `auth_request`);
//! without it they fail and say so.
//!
//! The Traefik and Envoy recipes (`deploy/traefik/`, `deploy/envoy/`) have no binary here:
//! they are read with PyYAML and their essentials checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sessiond::limits::QuotaSpec;
use tokio::task::JoinHandle;

use crate::helpers::*;
use crate::nginx::{nginx_bin, substitute_upstreams, wrapper_config, Nginx};

/// What browsers send when they navigate.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// `SESSIOND_REDIS_TIMEOUT` in the outage cases.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// The cache's staleness bound while a connection fails (500 ms), one heartbeat (100 ms), a
/// command timeout, and slack for a loaded machine: the longest a cached session may still
/// be answered 200 after Redis went away.
const STALENESS: Duration = Duration::from_millis(500 + 100 + 250 + 250);

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read_repo_file(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The recording upstream.

/// One request the upstream received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    /// Every value of header `name`.
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The one value of header `name`: fails when it came more than once.
    fn header(&self, name: &str) -> Option<&str> {
        let values = self.values(name);
        assert!(values.len() <= 1, "{name} reached the upstream {} times: {values:?}", values.len());
        values.first().copied()
    }
}

/// An HTTP server that answers every request 200 and records it.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |request: Request| {
            let record = Arc::clone(&record);
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.map(|b| b.to_vec()).unwrap_or_default();
                let headers = parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect();
                let seen = Seen { method: parts.method.to_string(), uri: parts.uri.to_string(), headers, body };
                record.lock().expect("lock").push(seen);
                "upstream"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, seen, task }
    }

    /// How many requests reached it.
    fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// The last request that reached it.
    fn last(&self) -> Seen {
        self.seen.lock().expect("lock").last().cloned().expect("the upstream was never reached")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions.

/// A signed-in user: what the upstream should be told about them.
struct User {
    name: String,
    user_id: String,
    token: String,
    session_id: String,
}

/// Register `prefix<n>` on `app` and log in with a bearer token.
async fn sign_up(app: &TestApp, prefix: &str) -> User {
    let name = unique(prefix);
    let response = app.register(&name, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED, "register {name}");
    let registered: Value = response.json().await.expect("register json");
    let mut user = User {
        user_id: registered["user_id"].as_str().expect("user_id").to_owned(),
        name,
        token: String::new(),
        session_id: String::new(),
    };
    log_in(app, &mut user).await;
    user
}

/// A new session for `user` (replacing the one it had in `user`).
async fn log_in(app: &TestApp, user: &mut User) {
    let login = app.login(&user.name).await;
    user.token = token_of(&login);
    user.session_id = login["session_id"].as_str().expect("session_id").to_owned();
}

/// The identity headers of the last request that reached `upstream` are `user`'s.
fn assert_identity(upstream: &Upstream, user: &User, roles: &str) {
    let seen = upstream.last();
    assert_eq!(seen.header("x-session-user"), Some(user.name.as_str()), "{seen:?}");
    assert_eq!(seen.header("x-session-user-id"), Some(user.user_id.as_str()), "{seen:?}");
    assert_eq!(seen.header("x-session-roles"), Some(roles), "{seen:?}");
    assert_eq!(seen.header("x-session-id"), Some(user.session_id.as_str()), "{seen:?}");
}

/// Requests to `/v1/auth/verify` an instance answered with `status`.
async fn verify_answers(app: &TestApp, status: &str) -> f64 {
    let text = app.metrics_text().await;
    metric_value(&text, "sessiond_http_requests_total", &[("route", "/v1/auth/verify"), ("status", status)])
}

// ---------------------------------------------------------------------------------------------
// The shipped files.

#[test]
fn the_shipped_nginx_config_passes_nginx_t() {
    let bin = nginx_bin();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("temp")).expect("temp/");
    let site = repo_file("deploy/nginx/sessiond-auth.conf");
    // The compose host names do not resolve here (nginx resolves upstream servers when it
    // reads its configuration): the same groups on local addresses.
    let local = "127.0.0.1:9".parse().expect("addr");
    let upstreams = dir.path().join("upstreams.conf");
    let substituted = substitute_upstreams(
        &read_repo_file("deploy/nginx/upstreams.conf"),
        &[("sessiond", vec![local, local]), ("protected_app", vec![local])],
    );
    std::fs::write(&upstreams, substituted).expect("write upstreams");
    let conf = dir.path().join("nginx.conf");
    // The site itself, unchanged.
    std::fs::write(&conf, wrapper_config(dir.path(), &[&upstreams, &site])).expect("write nginx.conf");
    let out = Command::new(&bin)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-t")
        .output()
        .unwrap_or_else(|e| panic!("run {bin} -t: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nginx -t failed ({}):\n{stderr}", out.status);
    assert!(stderr.contains("test is successful"), "{stderr}");
    assert!(!stderr.contains("[warn]"), "nginx -t warned:\n{stderr}");
}

/// The identity headers sessiond answers a check with, which every recipe passes on.
const IDENTITY: [&str; 5] =
    ["X-Session-User", "X-Session-User-Id", "X-Session-Roles", "X-Session-Id", "X-Session-Data"];

/// The YAML files at `paths`, as JSON (PyYAML: there is no YAML parser among our crates).
fn yaml_documents(paths: &[&str]) -> Vec<Value> {
    let script = "import json, sys, yaml\nprint(json.dumps([yaml.safe_load(open(p)) for p in sys.argv[1:]]))";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(paths.iter().map(|p| repo_file(p)))
        .output()
        .unwrap_or_else(|e| panic!("python3 not found ({e}): install it with `apt-get install -y python3`"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'yaml'"),
        "PyYAML not found: install it with `pip install pyyaml` (or run ./test, which installs it)"
    );
    assert!(out.status.success(), "reading {paths:?} failed:\n{stderr}");
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("json")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect()
}

/// No Traefik binary here: the file parses, and every router to the application strips forged
/// identity headers, then checks with sessiond, which passes on exactly the five headers.
#[test]
fn the_traefik_recipe_checks_every_route_to_the_application() {
    let traefik = yaml_documents(&["deploy/traefik/sessiond-auth.yml"]).remove(0);
    let middlewares = &traefik["http"]["middlewares"];
    let strip = middlewares["sessiond-strip"]["headers"]["customRequestHeaders"].as_object().expect("strip headers");
    let mut stripped: Vec<&str> = strip.keys().map(String::as_str).collect();
    stripped.sort_unstable();
    let mut identity = IDENTITY.to_vec();
    identity.sort_unstable();
    assert_eq!(stripped, identity);
    assert!(strip.values().all(|v| v == ""), "an empty value removes a header: {strip:?}");
    for (name, query) in [("sessiond-auth", ""), ("sessiond-auth-admin", "?role=admin")] {
        let auth = &middlewares[name]["forwardAuth"];
        assert_eq!(auth["address"], format!("http://sessiond:8080/v1/auth/verify{query}"), "{name}");
        assert_eq!(auth["trustForwardHeader"], true, "{name}");
        assert_eq!(strings(&auth["authResponseHeaders"]), IDENTITY, "{name}");
        assert_eq!(strings(&auth["authRequestHeaders"]), ["Authorization", "Cookie"], "{name}");
    }
    let routers = traefik["http"]["routers"].as_object().expect("routers");
    let mut to_app = 0;
    for (name, router) in routers {
        let middlewares = strings(&router["middlewares"]);
        assert_eq!(middlewares.first(), Some(&"sessiond-strip"), "{name}: forged headers first");
        if router["service"] == "app" {
            to_app += 1;
            assert!(middlewares.iter().any(|m| m.starts_with("sessiond-auth")), "{name} reaches the app unchecked");
        }
    }
    assert_eq!(to_app, 3);
    assert!(strings(&routers["app-admin"]["middlewares"]).contains(&"sessiond-auth-admin"));
}

/// No Envoy binary here: the file parses, ext_authz fails closed and passes on exactly the
/// five headers, forged ones are removed before it, and only sessiond's routes go unchecked.
#[test]
fn the_envoy_recipe_fails_closed_and_passes_on_the_identity() {
    let envoy = yaml_documents(&["deploy/envoy/envoy.yaml"]).remove(0);
    let manager = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = manager["http_filters"].as_array().expect("http_filters");
    let names: Vec<&str> = filters.iter().map(|f| f["name"].as_str().expect("name")).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.header_mutation",
            "envoy.filters.http.ext_authz",
            "envoy.filters.http.rbac",
            "envoy.filters.http.router"
        ]
    );
    let lower: Vec<String> = IDENTITY.iter().map(|h| h.to_ascii_lowercase()).collect();
    let removed: Vec<&str> = filters[0]["typed_config"]["mutations"]["request_mutations"]
        .as_array()
        .expect("mutations")
        .iter()
        .map(|m| m["remove"].as_str().expect("remove"))
        .collect();
    assert_eq!(removed, lower);
    let authz = &filters[1]["typed_config"];
    assert_eq!(authz["failure_mode_allow"], false);
    assert_eq!(authz["status_on_error"]["code"], "ServiceUnavailable");
    assert_eq!(authz["http_service"]["path_prefix"], "/v1/auth/verify");
    let exact = |list: &Value| -> Vec<String> {
        list["patterns"]
            .as_array()
            .expect("patterns")
            .iter()
            .map(|p| p["exact"].as_str().expect("exact").to_owned())
            .collect()
    };
    assert_eq!(exact(&authz["http_service"]["authorization_response"]["allowed_upstream_headers"]), lower);
    assert!(exact(&authz["allowed_headers"]).contains(&"cookie".to_owned()));

    let routes = manager["route_config"]["virtual_hosts"][0]["routes"].as_array().expect("routes");
    for route in routes {
        let unchecked = route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] == true;
        let cluster = route["route"]["cluster"].as_str().expect("cluster");
        assert_eq!(unchecked, cluster == "sessiond", "{route}");
    }
    let admin = routes.iter().find(|r| r["match"]["prefix"] == "/admin/").expect("/admin/ route");
    let principal = &admin["typed_per_filter_config"]["envoy.filters.http.rbac"]["rbac"]["rules"]["policies"]["admin"]
        ["principals"][0]["header"];
    assert_eq!(principal["name"], "x-session-roles");
}

/// What Envoy's HTTP authorization service sends (no Envoy binary here, so the requests are
/// made as it makes them): `path_prefix` + the original path and query. Answered like
/// `/v1/auth/verify`; the original query is ignored, so a `role` in it neither adds nor waives a
/// requirement, and an unknown parameter is no 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envoy_check_with_the_original_path_appended_is_answered_like_verify() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let user = sign_up(&app, "envoy").await;
    for (method, path) in [
        (Method::GET, "/v1/auth/verify/"),
        (Method::GET, "/v1/auth/verify/reports?year=2025"),
        (Method::POST, "/v1/auth/verify/orders/17/cancel?role=admin&x=%ZZ"),
        (Method::DELETE, "/v1/auth/verify/v1/auth/verify?role=not%20a%20role"),
        (Method::HEAD, "/v1/auth/verify/a%2Fb/%2e%2e/c"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&user.token)
            .header("x-original-uri", "/ignored")
            .send()
            .await
            .expect("check");
        assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(header("x-session-user").as_deref(), Some(user.name.as_str()), "{method} {path}");
        assert_eq!(header("x-session-user-id").as_deref(), Some(user.user_id.as_str()), "{method} {path}");
        assert_eq!(header("x-session-id").as_deref(), Some(user.session_id.as_str()), "{method} {path}");
        assert_eq!(header("x-session-roles").as_deref(), Some("user"), "{method} {path}");

        let refused = app.client.request(method.clone(), app.url(path)).send().await.expect("check without a session");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{method} {path} without a session");
        assert!(refused.headers().contains_key("www-authenticate"), "{method} {path}: no challenge");
        assert!(!refused.headers().contains_key("x-session-user"), "{method} {path}: identity on a refusal");
    }
    // The path proper still checks its query.
    let response =
        app.client.get(app.url("/v1/auth/verify?year=2025")).bearer_auth(&user.token).send().await.expect("check");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Its checks are counted under one route label, not one per original path.
    let text = app.metrics_text().await;
    let counted = metric_value(
        &text,
        "sessiond_http_requests_total",
        &[("route", "/v1/auth/verify/{*original}"), ("status", "200")],
    );
    assert!(counted >= 4.0, "checks below /v1/auth/verify/ counted {counted} times:\n{text}");
}

// ---------------------------------------------------------------------------------------------
// Without a session.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_the_upstream_is_never_reached() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let upstream = Upstream::start().await;
    let proxy = Nginx::start(&[app.addr], upstream.addr);

    // An API client keeps the 401 and sessiond's challenge.
    for accept in ["application/json", "application/problem+json", "*/*"] {
        let response =
            proxy.request(Method::GET, "/reports?year=2025").header("accept", accept).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "Accept: {accept}");
        assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().expect("ascii")), Some("Bearer"));
        assert!(response.headers().get("location").is_none());
    }
    // No credential, a malformed one, an unknown one, another scheme, a POST with a body.
    let unknown = "A".repeat(43);
    for (name, value) in [
        ("authorization", format!("Bearer {unknown}")),
        ("authorization", "Bearer not-a-token".to_owned()),
        ("authorization", "Basic YWxpY2U6c2VjcmV0".to_owned()),
        ("cookie", format!("sid={unknown}")),
        ("x-session-user", "alice".to_owned()),
    ] {
        let response = proxy
            .request(Method::POST, "/orders")
            .header("accept", "application/json")
            .header(name, value.as_str())
            .json(&json!({ "item": 1 }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}: {value}");
    }
    // The admin part too.
    assert_eq!(proxy.status("/admin/users", &unknown).await, StatusCode::UNAUTHORIZED);

    // A browser is sent to the sign-in page, which nginx serves from sessiond.
    let response = proxy.request(Method::GET, "/reports").header("accept", BROWSER_ACCEPT).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers().get("location").map(|v| v.to_str().expect("ascii")), Some("/"));
    let page = proxy.request(Method::GET, "/").header("accept", BROWSER_ACCEPT).send().await.expect("sign-in page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"action="/login""#), "not the sign-in page: {html}");

    // The checks are internal: no client can call them, not even with a valid session.
    let user = sign_up(&app, "fa-internal").await;
    for path in ["/_sessiond/verify", "/_sessiond/verify-admin"] {
        assert_eq!(proxy.status(path, &user.token).await, StatusCode::NOT_FOUND, "{path}");
    }

    assert_eq!(upstream.count(), 0, "a request without a valid session reached the upstream");
}

// ---------------------------------------------------------------------------------------------
// With a session.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_sees_the_identity_and_never_a_forged_one() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let upstream = Upstream::start().await;
    let proxy = Nginx::start(&[app.addr], upstream.addr);
    let user = sign_up(&app, "fa-identity").await;

    // Bearer.
    let response = proxy.api_get("/reports/7?format=csv", &user.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "upstream");
    assert_identity(&upstream, &user, "user");
    assert_eq!(upstream.last().uri, "/reports/7?format=csv");

    // The session cookie; the request's method and body reach the upstream untouched (only
    // the check goes without them).
    let response = proxy
        .request(Method::PUT, "/orders/1")
        .header("cookie", format!("theme=dark; sid={}", user.token))
        .json(&json!({ "item": 42 }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_identity(&upstream, &user, "user");
    let seen = upstream.last();
    assert_eq!((seen.method.as_str(), seen.uri.as_str()), ("PUT", "/orders/1"));
    assert_eq!(serde_json::from_slice::<Value>(&seen.body).expect("json body"), json!({ "item": 42 }));
    assert_eq!(seen.header("cookie"), Some(format!("theme=dark; sid={}", user.token).as_str()));

    // Identity headers a client sends itself are replaced by sessiond's, whatever their case.
    let response = proxy
        .request(Method::GET, "/reports")
        .bearer_auth(&user.token)
        .header("X-Session-User", "admin")
        .header("x-session-user-id", "00000000-0000-0000-0000-000000000000")
        .header("X-SESSION-ROLES", "user,admin")
        .header("X-Session-Id", "forged")
        .header("X-Session-Data", "eyJhZG1pbiI6dHJ1ZX0")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_identity(&upstream, &user, "user");
    let headers = &upstream.last().headers;
    assert!(!headers.iter().any(|(_, v)| v == "admin" || v == "user,admin" || v == "forged"), "{headers:?}");
    assert_eq!(upstream.last().header("x-session-data"), None, "a forged X-Session-Data reached the upstream");

    // The check is answered from sessiond's validation cache: repeated proxied requests send
    // Redis nothing, writes included.
    warm_cache(&app, &user.token).await;
    let commands =
        |redis: &RedisServer| ["get", "evalsha", "set", "hset", "expire", "pexpire"].map(|c| redis.command_calls(c));
    let before = commands(&redis);
    for _ in 0..50 {
        assert_eq!(proxy.status("/reports", &user.token).await, StatusCode::OK);
    }
    assert_eq!(commands(&redis), before, "a cached forward-auth check sent a command to Redis");
}

/// A backend's session: the upstream behind nginx gets its data as `X-Session-Data`, and its
/// subject as the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_sees_a_backend_sessions_data() {
    let redis = RedisServer::start();
    let key = sessiond::users::BackendKeys::generate("portal").expect("key");
    let entry = key.entry.parse().expect("entry");
    let app = spawn_app_with(Some(&redis), |config| config.backend_keys = vec![entry]).await;
    let upstream = Upstream::start().await;
    let proxy = Nginx::start(&[app.addr], upstream.addr);
    let data = json!({ "tenant": "acme", "plan": "gold" });
    let created = app
        .client
        .post(app.url("/v1/backend/sessions"))
        .header("authorization", format!("ApiKey {}", key.key))
        .json(&json!({ "subject": "sso|1234", "roles": ["user"], "data": data }))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let token = token_of(&created);
    let response = proxy.api_get("/reports", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(seen.header("x-session-user"), Some("sso|1234"));
    assert_eq!(seen.header("x-session-id"), created["session_id"].as_str());
    use base64::Engine as _;
    let header = seen.header("x-session-data").expect("X-Session-Data");
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).expect("base64url");
    assert_eq!(serde_json::from_slice::<Value>(&decoded).expect("json"), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_through_nginx_and_reaches_the_upstream() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let upstream = Upstream::start().await;
    let proxy = Nginx::start(&[app.addr], upstream.addr);
    let user = sign_up(&app, "fa-browser").await;
    let browser = |method: Method, path: &str| {
        proxy.request(method, path).header("accept", BROWSER_ACCEPT).header("sec-fetch-site", "same-origin")
    };

    let response = browser(Method::GET, "/dashboard").send().await.expect("get");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers().get("location").map(|v| v.to_str().expect("ascii")), Some("/"));

    // The sign-in form, posted through nginx: sessiond sets the cookie.
    let response = browser(Method::POST, "/login")
        .form(&[("username", user.name.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers().get("location").map(|v| v.to_str().expect("ascii")), Some("/account"));
    let set = set_cookie(&response, "sid").expect("the session cookie");
    let cookie = set.split(';').next().expect("name=value").to_owned();
    let page = browser(Method::GET, "/account").header("cookie", &cookie).send().await.expect("account");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains(&user.name));

    // Signed in, the browser reaches the application.
    let response = browser(Method::GET, "/dashboard").header("cookie", &cookie).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(seen.uri, "/dashboard");
    assert_eq!(seen.header("x-session-user"), Some(user.name.as_str()));
    assert_eq!(seen.header("x-session-user-id"), Some(user.user_id.as_str()));
    assert_eq!(seen.header("x-session-roles"), Some("user"));
    let session_id = seen.header("x-session-id").expect("session id").to_owned();
    assert_ne!(session_id, user.session_id, "the web sign-in made a session of its own");
    let reached = upstream.count();

    // Signing out through the web app: the very next request goes back to the sign-in page.
    let response = browser(Method::POST, "/logout").header("cookie", &cookie).send().await.expect("sign out");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = browser(Method::GET, "/dashboard").header("cookie", &cookie).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::FOUND, "the ended session still reached the upstream");
    assert_eq!(upstream.count(), reached);
}

// ---------------------------------------------------------------------------------------------
// Roles.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_that_requires_admin_refuses_other_sessions() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let upstream = Upstream::start().await;
    let proxy = Nginx::start(&[app.addr], upstream.addr);
    let user = sign_up(&app, "fa-role").await;

    assert_eq!(proxy.status("/reports", &user.token).await, StatusCode::OK);
    let reached = upstream.count();
    for accept in ["application/json", BROWSER_ACCEPT] {
        let response =
            proxy.request(Method::GET, "/admin/users").header("accept", accept).bearer_auth(&user.token).send().await;
        assert_eq!(response.expect("request").status(), StatusCode::FORBIDDEN, "Accept: {accept}");
    }
    assert_eq!(upstream.count(), reached, "a session without `admin` reached /admin/");

    // Granted by the operator tool, the role reaches the existing session.
    admin_cli(&redis, &["grant-role", &user.name, "admin"]).await;
    let started = Instant::now();
    while proxy.status("/admin/users", &user.token).await != StatusCode::OK {
        assert!(started.elapsed() < PROPAGATION, "the granted role did not reach the session");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(upstream.last().uri, "/admin/users");
    assert_identity(&upstream, &user, "user,admin");

    admin_cli(&redis, &["revoke-role", &user.name, "admin"]).await;
    let started = Instant::now();
    while proxy.status("/admin/users", &user.token).await != StatusCode::FORBIDDEN {
        assert!(started.elapsed() < PROPAGATION, "the revoked role still opened /admin/");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(proxy.status("/reports", &user.token).await, StatusCode::OK);
    assert_identity(&upstream, &user, "user");
}

// ---------------------------------------------------------------------------------------------
// Two instances: an ended session is refused by the very next check on the instance that
// ended it, and on the other one as soon as Redis's invalidation reaches its cache (with the
// cache off, by the very next check there too).

/// Two sessiond instances on one Redis, an nginx pinned to each (so a check can be sent to
/// either), and the upstream.
struct Pair {
    redis: RedisServer,
    apps: [TestApp; 2],
    proxies: [Nginx; 2],
    upstream: Upstream,
    cache: bool,
}

impl Pair {
    /// `cache`: the validation cache on (the default), or off (`SESSIOND_VALIDATION_CACHE_TTL=0`).
    async fn start(cache: bool) -> Self {
        let redis = RedisServer::start();
        let ttl = move |c: &mut sessiond::Config| {
            if !cache {
                c.validation_cache_ttl = Duration::ZERO;
            }
        };
        let apps = [spawn_app_with(Some(&redis), ttl).await, spawn_app_with(Some(&redis), ttl).await];
        let upstream = Upstream::start().await;
        let proxies = [Nginx::start(&[apps[0].addr], upstream.addr), Nginx::start(&[apps[1].addr], upstream.addr)];
        Self { redis, apps, proxies, upstream, cache }
    }

    /// Both proxies let `user` through, and with the cache on both instances answer the
    /// session from it.
    async fn warm(&self, user: &User) {
        for (app, proxy) in self.apps.iter().zip(&self.proxies) {
            if self.cache {
                warm_cache(app, &user.token).await;
            }
            assert_eq!(proxy.status("/reports", &user.token).await, StatusCode::OK);
        }
    }

    /// `user`'s session, just ended through instance `by`, is refused by the checks that
    /// follow, sent first to instance `first`: at once on `by` (and on both with the cache
    /// off); on the other instance with the cache on, once the invalidation arrived (how many
    /// checks passed before is printed). Nothing reaches the upstream after the refusal.
    async fn assert_refused(&self, user: &User, by: usize, first: usize, what: &str) {
        let reached = self.upstream.count();
        let mut passed = 0;
        for i in [first, 1 - first] {
            let started = Instant::now();
            loop {
                let status = self.proxies[i].status("/reports", &user.token).await;
                if status == StatusCode::UNAUTHORIZED {
                    break;
                }
                assert!(
                    self.cache && i != by && status == StatusCode::OK,
                    "{what}: the next check on instance {i} was {status}"
                );
                assert!(started.elapsed() < PROPAGATION, "{what}: instance {i} still let it through");
                passed += 1;
            }
            if i != by && passed > 0 {
                eprintln!("{what}: {passed} check(s) passed on instance {i}, refused after {:?}", started.elapsed());
            }
        }
        for proxy in &self.proxies {
            assert_eq!(
                proxy.status("/reports", &user.token).await,
                StatusCode::UNAUTHORIZED,
                "{what}: refused for good"
            );
        }
        assert_eq!(self.upstream.count(), reached + passed, "{what}: an ended session reached the upstream");
    }
}

/// Round `round` of six: the instance that ends the session (each in turn), and the one
/// checked first (the other one in rounds 0, 1, 4 and 5, the same one in rounds 2 and 3).
fn order(round: usize) -> (usize, usize) {
    let by = round % 2;
    let first = if (2..4).contains(&round) { by } else { 1 - by };
    (by, first)
}

/// Log out through each instance in turn, checking the other instance first and then last.
async fn logouts_are_refused(pair: &Pair) {
    for round in 0..6 {
        let (by, first) = order(round);
        let user = sign_up(&pair.apps[by], "fa-logout").await;
        pair.warm(&user).await;
        let response = pair.proxies[by]
            .request(Method::POST, "/v1/auth/logout")
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("logout");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        pair.assert_refused(&user, by, first, &format!("round {round}: logout on {by}, checked first on {first}"))
            .await;
    }
}

/// Revoke a user's sessions (one made on each instance) as an administrator through each
/// instance in turn, checking the other instance first and then last.
async fn admin_revokes_are_refused(pair: &Pair) {
    let admin = sign_up(&pair.apps[0], "fa-admin").await;
    admin_cli(&pair.redis, &["grant-role", &admin.name, "admin"]).await;
    for round in 0..6 {
        let (by, first) = order(round);
        let mut user = sign_up(&pair.apps[1 - by], "fa-revoked").await;
        let other = user.token.clone();
        log_in(&pair.apps[by], &mut user).await;
        pair.warm(&user).await;
        let response = pair.proxies[by]
            .request(Method::DELETE, &format!("/v1/admin/users/{}/sessions", user.name))
            .bearer_auth(&admin.token)
            .send()
            .await
            .expect("revoke");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["revoked"], 2, "{body}");
        let what = format!("round {round}: revoked on {by}, checked first on {first}");
        pair.assert_refused(&user, by, first, &what).await;
        for proxy in &pair.proxies {
            assert_eq!(proxy.status("/reports", &other).await, StatusCode::UNAUTHORIZED, "{what}: the other session");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_is_refused_on_either_instance() {
    logouts_are_refused(&Pair::start(true).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_revoke_is_refused_on_either_instance() {
    admin_revokes_are_refused(&Pair::start(true).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_validation_cache_off_the_very_next_check_is_refused_on_either_instance() {
    let pair = Pair::start(false).await;
    logouts_are_refused(&pair).await;
    admin_revokes_are_refused(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_instances_behind_one_upstream_group_refuse_a_logout() {
    let redis = RedisServer::start();
    let apps = [spawn_app(Some(&redis)).await, spawn_app(Some(&redis)).await];
    let upstream = Upstream::start().await;
    // The shipped layout: one group of both instances, round-robin.
    let proxy = Nginx::start(&[apps[0].addr, apps[1].addr], upstream.addr);
    let refusals = || async { [verify_answers(&apps[0], "401").await, verify_answers(&apps[1], "401").await] };
    for round in 0..4 {
        let user = sign_up(&apps[round % 2], "fa-group").await;
        for app in &apps {
            warm_cache(app, &user.token).await;
        }
        for _ in 0..2 {
            assert_eq!(proxy.status("/reports", &user.token).await, StatusCode::OK);
        }
        let before = refusals().await;
        let reached = upstream.count();
        let response =
            proxy.request(Method::POST, "/v1/auth/logout").bearer_auth(&user.token).send().await.expect("logout");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        // nginx alternates between the instances: until each has refused a check, the only
        // answers are 200 (the other instance, before the invalidation arrived) or 401.
        let started = Instant::now();
        let mut passed = 0;
        loop {
            let status = proxy.status("/reports", &user.token).await;
            let after = refusals().await;
            if status == StatusCode::OK {
                passed += 1;
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "round {round}");
            }
            if after[0] > before[0] && after[1] > before[1] {
                break;
            }
            assert!(started.elapsed() < PROPAGATION, "round {round}: not refused on both instances");
        }
        if passed > 0 {
            eprintln!("round {round}: {passed} check(s) passed after the logout, for {:?}", started.elapsed());
        }
        for _ in 0..4 {
            assert_eq!(proxy.status("/reports", &user.token).await, StatusCode::UNAUTHORIZED, "round {round}");
        }
        assert_eq!(upstream.count(), reached + passed, "round {round}: an ended session reached the upstream");
    }
}

// ---------------------------------------------------------------------------------------------
// Redis unavailable: fail closed.

/// Send `token` through `proxy` until the answer is a 5xx; every answer before it must be a
/// 200 (the staleness bound of the validation cache). How long that took.
async fn until_unavailable(proxy: &Nginx, token: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = proxy.status("/reports", token).await;
        if status.is_server_error() {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            return started.elapsed();
        }
        assert_eq!(status, StatusCode::OK, "while Redis went away");
        assert!(started.elapsed() < within, "still {status} {:?} after Redis went away", started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// While the store is unavailable, every kind of request is a 503 with `Retry-After`, and
/// nothing reaches the upstream.
async fn assert_fails_closed(proxy: &Nginx, upstream: &Upstream, token: &str) {
    let reached = upstream.count();
    for _ in 0..3 {
        let response = proxy.api_get("/reports", token).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().expect("ascii")), Some("1"));
        // A browser is not sent to sign in again: that would not help.
        let response = proxy
            .request(Method::GET, "/reports")
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", format!("sid={token}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = proxy
            .request(Method::GET, "/admin/users")
            .header("accept", BROWSER_ACCEPT)
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(upstream.count(), reached, "a request reached the upstream while the store was unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_fails_closed_and_the_same_session_works_once_it_answers() {
    let redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.redis_timeout = REDIS_TIMEOUT).await;
    let upstream = Upstream::start().await;
    let proxy = Nginx::start(&[app.addr], upstream.addr);
    let user = sign_up(&app, "fa-hung").await;
    warm_cache(&app, &user.token).await;
    assert_eq!(proxy.status("/reports", &user.token).await, StatusCode::OK);

    redis.pause();
    let took = until_unavailable(&proxy, &user.token, STALENESS).await;
    eprintln!("first 503 through nginx {took:?} after Redis hung");
    assert_fails_closed(&proxy, &upstream, &user.token).await;

    redis.resume();
    let started = Instant::now();
    while proxy.status("/reports", &user.token).await != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(3), "no 200 within 3 s of Redis answering again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("200 through nginx {:?} after Redis answered again", started.elapsed());
    assert_identity(&upstream, &user, "user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_fails_closed_and_a_new_session_works_once_it_is_back() {
    let mut redis = RedisServer::start();
    let app = spawn_app_with(Some(&redis), |c| c.redis_timeout = REDIS_TIMEOUT).await;
    let upstream = Upstream::start().await;
    let proxy = Nginx::start(&[app.addr], upstream.addr);
    let user = sign_up(&app, "fa-stopped").await;
    warm_cache(&app, &user.token).await;
    assert_eq!(proxy.status("/reports", &user.token).await, StatusCode::OK);

    redis.stop();
    let took = until_unavailable(&proxy, &user.token, STALENESS).await;
    eprintln!("first 503 through nginx {took:?} after Redis stopped");
    assert_fails_closed(&proxy, &upstream, &user.token).await;

    // Back, but empty: the old session is gone (never a stale 200), a new one works.
    redis.restart();
    let started = Instant::now();
    let status = loop {
        let status = proxy.status("/reports", &user.token).await;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "still 503 3 s after Redis came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session from before the restart");
    // Validations read over connections of their own: the pool that registrations and logins
    // use may still be reconnecting.
    let name = unique("fa-stopped");
    let started = Instant::now();
    let response = loop {
        let response = app.register(&name, PASSWORD).await;
        if response.status() != StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "registration still 503 3 s after Redis came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(response.status(), StatusCode::CREATED);
    let registered: Value = response.json().await.expect("register json");
    let user_id = registered["user_id"].as_str().expect("user_id").to_owned();
    let mut user = User { name, user_id, token: String::new(), session_id: String::new() };
    log_in(&app, &mut user).await;
    let reached = upstream.count();
    assert_eq!(proxy.status("/reports", &user.token).await, StatusCode::OK);
    assert_eq!(upstream.count(), reached + 1);
    assert_identity(&upstream, &user, "user");
}

// ---------------------------------------------------------------------------------------------
// Rate limits.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_counts_clients_when_nginx_is_a_trusted_proxy() {
    let redis = RedisServer::start();
    let quota: QuotaSpec = "1/m burst 3".parse().expect("quota");
    let trusting = spawn_app_with(Some(&redis), |c| {
        c.rate_limit_ip = quota;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    let untrusting = spawn_app_with(Some(&redis), |c| c.rate_limit_ip = quota).await;
    let upstream = Upstream::start().await;
    let user = sign_up(&trusting, "fa-limited").await; // 2 requests from 127.0.0.1

    // Trusted: each client address has its budget, whatever X-Forwarded-For it sends itself.
    let proxy = Nginx::start(&[trusting.addr], upstream.addr);
    let get = |ip: &str, forged: Option<&str>| {
        let mut request = client_from(ip).get(proxy.url("/reports")).bearer_auth(&user.token);
        if let Some(forged) = forged {
            request = request.header("x-forwarded-for", forged);
        }
        request.send()
    };
    for _ in 0..3 {
        assert_eq!(get("127.0.0.2", None).await.expect("request").status(), StatusCode::OK);
    }
    let reached = upstream.count();
    let refused = get("127.0.0.2", None).await.expect("request");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "sessiond's 429 passes through nginx");
    let retry: u64 =
        refused.headers().get("retry-after").expect("Retry-After").to_str().expect("ascii").parse().expect("seconds");
    assert!(retry >= 1, "Retry-After {retry}");
    let forged = get("127.0.0.2", Some("198.51.100.9")).await.expect("request");
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS, "a forged X-Forwarded-For chose a new budget");
    assert_eq!(upstream.count(), reached, "a rate-limited request reached the upstream");
    assert_eq!(get("127.0.0.3", None).await.expect("request").status(), StatusCode::OK, "another client");
    drop(proxy);

    // Not trusted: every client shares nginx's address, and its budget.
    let proxy = Nginx::start(&[untrusting.addr], upstream.addr);
    let get = |ip: &str| client_from(ip).get(proxy.url("/reports")).bearer_auth(&user.token).send();
    for _ in 0..3 {
        assert_eq!(get("127.0.0.4").await.expect("request").status(), StatusCode::OK);
    }
    assert_eq!(get("127.0.0.5").await.expect("request").status(), StatusCode::TOO_MANY_REQUESTS);
}
