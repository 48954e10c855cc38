//! Traces over OTLP/HTTP and JSON logs, checked on the real binary (the tracing subscriber is
//! process-global, so each case runs its own process).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// The real `sessiond` binary on free ports, killed on drop.
struct Binary {
    child: Option<Child>,
    base: String,
}

impl Binary {
    fn start(redis: &RedisServer, extra: &[(&str, &str)], stderr: Stdio) -> Self {
        let (port, admin) = (free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SESSIOND_LISTEN", format!("127.0.0.1:{port}"))
            .env("SESSIOND_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("SESSIOND_REDIS_URL", redis.url())
            .env("SESSIOND_COOKIE_SECURE", "false")
            .env("SESSIOND_ARGON2_MEMORY_KIB", "256")
            .env("SESSIOND_ARGON2_ITERATIONS", "1")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawn sessiond");
        Self { child: Some(child), base: format!("http://127.0.0.1:{port}") }
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if client.get(format!("{}/readyz", self.base)).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("sessiond binary never became ready");
    }

    /// SIGTERM and wait for a clean exit.
    fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success();
        assert!(ok);
        let status = child.wait().expect("wait");
        assert!(status.success(), "sessiond exited with {status}");
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn flow(client: &reqwest::Client, base: &str, traceparent: Option<&str>) -> (String, String) {
    let creds = serde_json::json!({ "username": "traced", "password": PASSWORD });
    let r = client.post(format!("{base}/v1/auth/register")).json(&creds).send().await.expect("register");
    assert_eq!(r.status(), StatusCode::CREATED);
    let wrong = serde_json::json!({ "username": "traced", "password": "not the password" });
    let r = client.post(format!("{base}/v1/auth/login")).json(&wrong).send().await.expect("login");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client.post(format!("{base}/v1/auth/login")).json(&creds).send().await.expect("login");
    assert_eq!(r.status(), StatusCode::OK);
    let token = token_of(&r.json().await.expect("json"));
    let mut request = client.get(format!("{base}/v1/profile")).bearer_auth(&token);
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let r = request.send().await.expect("profile");
    assert_eq!(r.status(), StatusCode::OK);
    let returned =
        r.headers().get("traceparent").expect("traceparent on the response").to_str().expect("ascii").to_owned();
    let r = client.post(format!("{base}/v1/auth/refresh")).bearer_auth(&token).send().await.expect("refresh");
    let refreshed = token_of(&r.json().await.expect("json"));
    let r = client
        .post(format!("{base}/v1/auth/logout"))
        .header("cookie", format!("sid={refreshed}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    (format!("{token} {refreshed}"), returned)
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_as_a_tree_without_secrets() {
    // A minimal OTLP/HTTP receiver.
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = spans.clone();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("valid OTLP protobuf");
                let mut sink = sink.lock().expect("lock");
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        sink.extend(scope.spans);
                    }
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let redis = RedisServer::start();
    let mut binary = Binary::start(
        &redis,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "100"), ("RUST_LOG", "warn")],
        Stdio::null(),
    );
    let client = reqwest::Client::new();
    binary.wait_ready(&client).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let (tokens, returned) = flow(&client, &binary.base, Some(&format!("00-{trace_id}-{parent}-01"))).await;
    assert!(returned.starts_with(&format!("00-{trace_id}-")), "response traceparent {returned} continues the trace");
    binary.terminate(); // flushes the batch exporter

    let spans = spans.lock().expect("lock").clone();
    let ours: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == trace_id).collect();
    let server = ours.iter().find(|s| s.name == "GET /v1/profile").expect("server span for the profile request");
    assert_eq!(hex(&server.parent_span_id), parent, "continues the caller's span");
    assert_eq!(server.kind, 2, "SPAN_KIND_SERVER");
    let attrs = attributes(server);
    assert_eq!(attrs.get("http.request.method").map(String::as_str), Some("GET"));
    assert_eq!(attrs.get("http.route").map(String::as_str), Some("/v1/profile"));
    assert_eq!(attrs.get("http.response.status_code").map(String::as_str), Some("200"));
    assert_eq!(returned, format!("00-{trace_id}-{}-01", hex(&server.span_id)), "the response names the server span");

    let store = ours.iter().find(|s| s.name == "touch_session").expect("store span");
    assert_eq!(store.parent_span_id, server.span_id, "the store call is a child of the request");
    assert_eq!(store.kind, 3, "SPAN_KIND_CLIENT");
    let attrs = attributes(store);
    assert_eq!(attrs.get("db.system.name").map(String::as_str), Some("redis"));
    assert_eq!(attrs.get("db.operation.name").map(String::as_str), Some("touch_session"));

    assert!(spans.iter().any(|s| s.name == "password.verify"), "password hashing is traced");
    assert!(spans.iter().any(|s| s.name == "POST /v1/auth/login"));
    for span in &spans {
        for value in attributes(span).values().chain(std::iter::once(&span.name)) {
            for secret in tokens.split(' ').chain([PASSWORD, "not the password"]) {
                assert!(!value.contains(secret), "secret in span {} attribute {value}", span.name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_trace_ids_and_never_a_secret() {
    let redis = RedisServer::start();
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let mut binary = Binary::start(
        &redis,
        &[("SESSIOND_LOG_FORMAT", "json"), ("RUST_LOG", "info,sessiond=debug")],
        Stdio::from(log.reopen().expect("reopen")),
    );
    let client = reqwest::Client::new();
    binary.wait_ready(&client).await;
    let (tokens, returned) = flow(&client, &binary.base, None).await;
    binary.terminate();

    let text = std::fs::read_to_string(log.path()).expect("log");
    for secret in tokens.split(' ').chain([PASSWORD, "not the password"]) {
        assert!(!text.contains(secret), "secret in the logs");
    }
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    // Lines inside a request (background work, such as the store monitor's calls, has spans of
    // its own and no request).
    let in_requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["spans"].as_array().is_some_and(|spans| spans.iter().any(|s| s["name"] == "request")))
        .collect();
    let served: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request served").collect();
    assert!(served.len() >= 6, "one summary line per request");
    assert!(served.iter().all(|l| l["spans"][0]["trace_id"].is_string()), "summary lines carry the trace id");
    assert!(in_requests.len() >= 4, "expected log lines inside requests: {text}");
    for line in &in_requests {
        let request = &line["spans"][0];
        assert_eq!(request["name"], "request");
        assert_eq!(request["trace_id"].as_str().map(str::len), Some(32), "{line}");
        assert_eq!(request["span_id"].as_str().map(str::len), Some(16), "{line}");
    }
    assert!(lines.iter().any(|l| l["message"] == "session created"));
    // The trace id quoted to the client matches the logs of that request.
    let quoted = returned.split('-').nth(1).expect("trace id");
    assert!(in_requests.iter().any(|l| l["spans"][0]["trace_id"] == quoted), "trace id {quoted} not in the logs");
}
