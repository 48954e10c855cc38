//! The OpenAPI contract: the committed document is the generated one, it is served, it names
//! every route of the API router, and Schemathesis (`st`) finds no request the real binary
//! answers outside of it (docs/openapi.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const REGENERATE: &str = "cargo run -q -- openapi > docs/openapi.json";

/// The operations a path item can hold in OpenAPI 3.1.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    serde_json::from_str(&sessiond::http::openapi::document()).expect("the document is JSON")
}

fn operations(doc: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    doc["paths"].as_object().expect("paths").iter().flat_map(|(path, item)| {
        METHODS.iter().filter_map(move |method| item.get(*method).map(|operation| (path.as_str(), *method, operation)))
    })
}

#[test]
fn committed_document_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = sessiond::http::openapi::document();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| committed.lines().count().min(generated.lines().count()) + 1, |index| index + 1);
        panic!(
            "docs/openapi.json is not the document the code generates (they differ from line {line} on). \
             Regenerate it with:\n\n    {REGENERATE}\n"
        );
    }
}

#[tokio::test]
async fn the_document_is_served_at_openapi_json() {
    let redis = RedisServer::start();
    let app = spawn_app(Some(&redis)).await;
    let response = app.client.get(app.url("/openapi.json")).send().await.expect("GET /openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.expect("body"), sessiond::http::openapi::document());
}

/// `(path, methods)` of every `.route(…)` in the body of `fn <name>(` in `source`; `any` is
/// every method.
fn routes(source: &str, function: &str) -> Vec<(String, BTreeSet<String>)> {
    let start = source.find(&format!("fn {function}(")).unwrap_or_else(|| panic!("no fn {function}"));
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
    let mut found = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find(".route(\"") {
        rest = &rest[at + ".route(\"".len()..];
        let path = rest[..rest.find('"').expect("closing quote")].to_owned();
        // The method router: what follows the path up to the `)` closing `.route(`.
        let after = &rest[path.len() + 1..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (index, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = index;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        found.push((path, method_names(&after[..end])));
    }
    assert!(!found.is_empty(), "no routes found in fn {function}");
    found
}

/// `get(a).delete(b)` → {get, delete}: the calls at the top level of a method router.
fn method_names(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let (mut depth, mut identifier) = (0usize, String::new());
    for c in expression.chars() {
        match c {
            '(' => {
                if depth == 0 && !identifier.is_empty() {
                    names.insert(std::mem::take(&mut identifier));
                }
                depth += 1;
            }
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 && (c.is_alphanumeric() || c == '_') => identifier.push(c),
            _ => identifier.clear(),
        }
    }
    if names.remove("any") {
        names.extend(METHODS.iter().map(|m| (*m).to_owned()));
    }
    for name in &names {
        assert!(METHODS.contains(&name.as_str()), "unknown method router `{name}` in `{expression}`: teach this test");
    }
    names
}

#[test]
fn every_route_of_the_api_router_is_in_the_document_and_nothing_else() {
    let doc = document();
    let router = routes(include_str!("../../src/http/mod.rs"), "router");
    let documented: BTreeSet<(String, String)> =
        operations(&doc).map(|(path, method, _)| (path.to_owned(), method.to_owned())).collect();

    let mut served = BTreeSet::new();
    let mut missing = Vec::new();
    for (path, methods) in &router {
        // The document itself is not part of the contract it describes.
        if path == "/openapi.json" {
            continue;
        }
        // A catch-all (`{*original}`) is an OpenAPI path parameter (`{original}`), and its
        // empty case (the path ending in `/`) is the same operation: OpenAPI cannot name it.
        let path = &path.replace("{*", "{");
        if path.ends_with('/')
            && router.iter().any(|(other, _)| other.starts_with(path.as_str()) && other.contains("{*"))
        {
            continue;
        }
        for method in methods {
            served.insert((path.clone(), method.clone()));
            if !documented.contains(&(path.clone(), method.clone())) {
                missing.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes of http::router() missing from the OpenAPI document (annotate the handler with \
         #[utoipa::path] and list it in ApiDoc's `paths`, then run `{REGENERATE}`): {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(stale.is_empty(), "documented operations that http::router() does not serve: {stale:?}");

    // The routes outside the contract are named in its description, and only there.
    let description = doc["info"]["description"].as_str().expect("info.description");
    let web = routes(include_str!("../../src/http/web/mod.rs"), "routes");
    for path in web.iter().map(|(path, _)| path.as_str()).chain(["/openapi.json"]) {
        assert!(doc["paths"].get(path).is_none(), "{path} is outside the contract but documented");
        assert!(description.contains(&format!("{path}`")), "info.description does not name {path}");
    }
}

#[test]
fn the_document_is_consistent() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    for scheme in ["bearer", "cookie", "session_header"] {
        assert!(schemes.contains_key(scheme), "no security scheme {scheme}");
    }

    let mut ids = BTreeMap::new();
    for (path, method, operation) in operations(&doc) {
        let label = format!("{} {path}", method.to_uppercase());
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{label}: no operationId"));
        assert!(ids.insert(id.to_owned(), operation.clone()).is_none(), "operationId {id} is used twice");
        assert!(operation["summary"].is_string(), "{label}: no summary");
        for requirement in operation["security"].as_array().into_iter().flatten() {
            for scheme in requirement.as_object().expect("requirement").keys() {
                assert!(schemes.contains_key(scheme), "{label}: unknown security scheme {scheme}");
            }
        }
        // Readers start from the examples, and so does the examples phase of Schemathesis.
        if let Some(json) = operation["requestBody"]["content"].get("application/json") {
            assert!(!json["example"].is_null(), "{label}: no request example");
        }
        let responses = operation["responses"].as_object().expect("responses");
        assert!(responses.keys().any(|status| status.starts_with('2')), "{label}: no success answer");
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem",
                    "{label} {status}: not an RFC 9457 problem document"
                );
            }
        }
    }

    // Links name operations that exist, in the spelling OpenAPI tools read.
    let mut links = 0;
    for (path, method, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().expect("responses") {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                let label = format!("{} {path} {status} → {name}", method.to_uppercase());
                let target = link["operationId"].as_str().unwrap_or_else(|| panic!("{label}: no operationId"));
                assert!(ids.contains_key(target), "{label}: no operation {target}");
                for key in link.as_object().expect("link").keys() {
                    let known = ["operationId", "parameters", "requestBody", "description"];
                    assert!(known.contains(&key.as_str()), "{label}: unknown field {key}");
                }
                for parameter in link["parameters"].as_object().into_iter().flatten().map(|(name, _)| name) {
                    let (location, _) = parameter.split_once('.').expect("location.name");
                    assert!(["path", "query", "header"].contains(&location), "{label}: parameter {parameter}");
                }
                links += 1;
            }
        }
    }
    let register = &doc["paths"]["/v1/auth/register"]["post"]["responses"]["201"]["links"]["login"];
    assert_eq!(register["requestBody"]["password"], json!("$request.body#/password"));
    assert!(links > 20, "only {links} links");
}

/// `st`, or a failure that says how to install it.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("st")).find(|candidate| candidate.is_file()).unwrap_or_else(|| {
        panic!("Schemathesis (`st`) is not on PATH: pip install schemathesis (or run ./test, which installs it)")
    })
}

/// Fixed, so that a failure replays: `st run … --seed` draws the same cases.
const SEED: u64 = 20_261_206;
const ADMIN: &str = "st-admin";
const ADMIN_PASSWORD: &str = "a password the fuzzer never draws";

/// `sessiond admin …` against `redis`.
async fn admin_cli(redis: &RedisServer, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SESSIOND_REDIS_URL", redis.url())
        .arg("admin")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run sessiond admin");
    assert!(output.status.success(), "sessiond admin {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Schemathesis against the real binary on a real Redis: every operation, every check
/// (`--checks all`), examples, coverage, fuzzing and stateful phases, 200 cases per operation
/// and phase. Its own session is an administrator's, fetched by logging in and fetched again
/// whenever a call it made ends it; the stateful phase follows the document's links
/// (register → log in → use the new token). See docs/openapi.md for the settings.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_failures() {
    let st = schemathesis();
    let redis = RedisServer::start();
    let key = admin_cli(&redis, &["api-key", "new", "schemathesis"]).await;
    let mut lines = key.lines();
    let (backend_key, backend_entry) = (lines.next().expect("key"), lines.next().expect("entry"));
    let mut server = ServerProcess::start(
        &redis.url(),
        &[
            ("SESSIOND_RATE_LIMIT_IP", "0"),
            ("SESSIOND_RATE_LIMIT_LOGIN_IP", "0"),
            ("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "0"),
            ("SESSIOND_RATE_LIMIT_REGISTER_IP", "0"),
            ("SESSIOND_LOGIN_FAILURES", "0"),
            // What is checked is the contract, not the latency of a loaded test machine: a
            // Redis call slowed past the 250 ms default by other tests is no answer to judge.
            ("SESSIOND_REDIS_TIMEOUT", "5s"),
            ("SESSIOND_BACKEND_KEYS", backend_entry),
        ],
    );
    let client = reqwest::Client::new();
    server.wait_ready(&client).await;
    let created = client
        .post(server.url("/v1/auth/register"))
        .json(&json!({ "username": ADMIN, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .expect("register");
    assert_eq!(created.status(), StatusCode::CREATED);
    admin_cli(&redis, &["grant-role", ADMIN, "admin"]).await;

    let work = tempfile::tempdir().expect("temp dir");
    let config = work.path().join("schemathesis.toml");
    std::fs::write(&config, schemathesis_config(backend_key)).expect("write schemathesis.toml");
    let reports = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    let junit = reports.join("junit.xml");

    let started = Instant::now();
    // At the lowest CPU priority: st keeps a core busy for a minute or more, and the tests that
    // run beside it (each with its own Redis and 250 ms store timeout) come first.
    let mut command = tokio::process::Command::new("nice");
    command
        .args(["-n", "19"])
        .arg(&st)
        .arg("--config-file")
        .arg(&config)
        .args(["--no-color", "run", &server.url("/openapi.json")])
        .args(["--checks", "all", "--seed", &SEED.to_string(), "--max-examples", "200"])
        // One worker: st's workers are threads, and under CPython 3.11 two threads in
        // Hypothesis's `ast.parse` have raised `SystemError` inside st. One takes ~1.5 min.
        .args(["--workers", "1"])
        // No operation can declare the QUERY method in OpenAPI 3.1, and /v1/auth/verify
        // answers every method (docs/openapi.md); every other undeclared method is probed.
        .args(["--exclude-method", "QUERY"])
        .args(["--generation-database", "none", "--report", "junit"])
        .arg("--report-junit-path")
        .arg(&junit)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(15 * 60), command.output())
        .await
        .expect("st did not finish within 15 minutes")
        .expect("run st");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{}\n(st ran {:.0?}; JUnit report: {})", summary(&stdout), started.elapsed(), junit.display());
    if !output.status.success() {
        // Everything st said: the failures come before the summary.
        panic!("Schemathesis failed ({}):\n{stdout}\n{stderr}\nsessiond's log:\n{}", output.status, server.stderr());
    }
}

/// What st reports per phase (cases, scenarios, links covered) and its closing summary.
fn summary(stdout: &str) -> String {
    let line_of = |needle: &str| stdout.find(needle).map(|at| stdout[..at].rfind('\n').map_or(0, |n| n + 1));
    let phases = line_of("Examples (in").map(|start| {
        let rest = &stdout[start..];
        &rest[..rest.find("\n===").unwrap_or(rest.len())]
    });
    let closing = line_of("=== SUMMARY ===").map_or(stdout, |start| &stdout[start..]);
    format!("{}\n{closing}", phases.unwrap_or_default())
}

/// st's settings besides the command line (docs/openapi.md says why each is there).
fn schemathesis_config(backend_key: &str) -> String {
    format!(
        r#"# st's own session: an administrator's, in the lowest-precedence transport, so that a
# token a link hands on (as `Authorization`) always decides; fetched again on a 401.
[auth.dynamic.openapi.session_header]
path = "/v1/auth/login"
payload = {{ username = "{ADMIN}", password = "{ADMIN_PASSWORD}", transport = "bearer" }}
extract_selector = "/token"

[auth.openapi.backend_key]
api_key = "{backend_key}"

# A new password equal to the current one is a 422: a rule between two fields, which a JSON
# Schema cannot state.
[[operations]]
include-operation-id = "change_password"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# A subject is limited to 255 bytes (a JSON Schema counts characters), `ttl` to the configured
# absolute timeout, `data` to 4096 bytes of compact JSON: limits a schema cannot state.
[[operations]]
include-operation-id = "create_backend_session"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "409", "422", "429", "5xx"]

[[operations]]
include-operation-id = "list_subject_sessions"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "422", "429", "5xx"]

[[operations]]
include-operation-id = "end_subject_sessions"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "422", "429", "5xx"]

# Long scenarios of valid calls: register → log in → use the session, and what follows.
[phases.stateful]
max-steps = 50
generation.mode = "positive"
"#
    )
}
