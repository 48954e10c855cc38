//! The OpenAPI 3.1 contract, generated from the handlers' annotations and the request and
//! response types' derived schemas (utoipa), so that it cannot drift from the code. Served at
//! `GET /openapi.json`, printed by `sessiond openapi`, committed as `docs/openapi.json` (a
//! test fails when the two differ; `docs/openapi.md` says how it is checked and fuzzed).
//!
//! The answers every route shares are added here, once, rather than on every handler: what a
//! JSON body can be refused with (400, 413, 415, 422), what a credential can be refused with
//! (401), what every rate-limited route (429), every route that needs the store (503) and every
//! route that may take too long (408) can answer. All of them are RFC 9457 problem documents.
//!
//! So are the links between operations: register → log in with the same credentials, and from
//! the operations that issue a token (login, refresh, password change) to the ones that use it,
//! which let a client (or a fuzzer's stateful phase) follow register → log in → use the
//! session.

use serde_json::{json, Value};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HttpMethod, Ref, RefOr, Response, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;

/// A role name, as `Role::parse` accepts it.
pub const ROLE_PATTERN: &str = "^[a-z0-9_.-]{1,32}$";
/// A username, as `Username::parse` accepts it.
pub const USERNAME_PATTERN: &str = "^[A-Za-z0-9._@-]{3,64}$";
/// A session's public id: the canonical unpadded base64url of 16 bytes.
pub const SESSION_ID_PATTERN: &str = "^[A-Za-z0-9_-]{21}[AQgw]$";
/// A session token: 43 characters of unpadded base64url.
pub const TOKEN_PATTERN: &str = "^[A-Za-z0-9_-]{43}$";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessiond",
        description = "A session service for API consumers and browsers, backed by Redis.

**Sessions.** `POST /v1/auth/register` creates an account, `POST /v1/auth/login` issues a session: its token is returned in the body (`\"transport\": \"bearer\"`), set as the `HttpOnly` session cookie (`\"transport\": \"cookie\"`), or both (no `transport`). Every other `/v1` operation authenticates the session by `Authorization: Bearer <token>`, else the session cookie (`__Host-sid`; `sid` when `SESSIOND_COOKIE_SECURE=false`), else the `x-session-id` header — the first one present decides, and a malformed one is refused, never skipped. A state-changing request authenticated by the cookie must come from the service's own pages (`Sec-Fetch-Site`/`Origin`), otherwise it is refused with 403. A login that presents a live session ends that session (no session fixation); refresh, password change and logout end or rotate the token they were called with.

**Errors** are RFC 9457 problem documents (`application/problem+json`, schema `Problem`): `type` is `urn:sessiond:problem:<slug>` and names the case, `detail` says what to do. Answers carry `Cache-Control: no-store` (all but the public key set, which may be cached for a minute). 401 carries `WWW-Authenticate: Bearer`; 429 and 503 carry `Retry-After` (seconds); routes under a rate limit carry the IETF draft `RateLimit` headers.

**Outside this contract**: the server-rendered sign-in pages on the same listener (`GET /`, `POST /login`, `GET|POST /register`, `GET /account`, `POST /account/sessions/revoke`, `POST /account/logout-all`, `POST /logout`, `GET /static/app.css`) are HTML for people, not an API; `GET /openapi.json` serves this document. The admin listener (`/metrics`, `/healthz`, `/readyz`) is for operators and is described in docs/metrics.md and docs/runbook.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::auth::register,
        super::auth::login,
        super::auth::refresh,
        super::auth::logout,
        super::verify::verify,
        super::verify::verify_original,
        super::tokens::mint,
        super::tokens::jwks,
        super::introspect::introspect,
        super::backend::create,
        super::backend::list,
        super::backend::end_all,
        super::backend::end_one,
        super::sessions::profile,
        super::sessions::list,
        super::sessions::revoke,
        super::sessions::revoke_all,
        super::account::change_password,
        super::account::delete,
        super::admin::user,
        super::admin::set_disabled,
        super::admin::set_role,
        super::admin::revoke_user_sessions,
        super::health::healthz,
        super::health::readyz,
    ),
    components(schemas(Problem)),
    modifiers(&Shared),
    tags(
        (name = "auth", description = "Register, log in, refresh, log out; forward authentication for proxies"),
        (name = "sessions", description = "The caller's own sessions"),
        (name = "account", description = "The caller's own account (re-authentication required)"),
        (name = "admin", description = "Other users, for the `admin` role"),
        (name = "backend", description = "For trusted backends holding an API key"),
        (name = "probes", description = "Liveness and readiness"),
    ),
)]
struct ApiDoc;

/// The document as served and committed: pretty JSON and a final newline.
#[must_use]
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// The login body's `transport`: `cookie`, `bearer`, or absent (or `null`) for both.
pub(super) fn transport_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([json!("cookie"), json!("bearer"), Value::Null]))
        .description(Some(
            "How the new session is handed over: `bearer` in the body only, `cookie` in the `HttpOnly` session cookie only; absent or `null`: both.",
        ))
        .examples([json!("bearer")])
        .into()
}

/// The `?role=` of forward authentication: role names, every one required.
fn roles_schema() -> Schema {
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String).pattern(Some(ROLE_PATTERN)))
        .examples([json!(["admin"])])
        .into()
}

/// A backend's subject: 1–255 bytes without control characters (a JSON Schema counts
/// characters; a longer UTF-8 encoding is refused with 422).
pub(super) const SUBJECT_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]+$";

fn subject_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some(SUBJECT_PATTERN))
        .examples([json!("idp|8f1c2d")])
        .into()
}

/// Security schemes, mirrored operations, the shared answers and the links between operations.
struct Shared;

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
        )
        .build()
}

fn integer_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
        .description(Some(description))
        .build()
}

fn text_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new().schema(ObjectBuilder::new().schema_type(Type::String)).description(Some(description)).build()
}

/// A copy of the operation of `path` under `method` (the same handler answers both) at `to`
/// under `as_method`, without the answers in `drop`.
fn mirror(
    openapi: &mut utoipa::openapi::OpenApi,
    (path, method): (&str, HttpMethod),
    (to, as_method): (&str, HttpMethod),
    (operation_id, summary): (&str, &str),
    drop: &[&str],
) {
    let Some(mut operation) = openapi.paths.get_path_operation(path, method).cloned() else { return };
    operation.operation_id = Some(operation_id.to_owned());
    operation.summary = Some(summary.to_owned());
    for status in drop {
        operation.responses.responses.remove(*status);
    }
    openapi.paths.add_path_operation(to, vec![as_method], operation);
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, &mut item.get),
        (HttpMethod::Put, &mut item.put),
        (HttpMethod::Post, &mut item.post),
        (HttpMethod::Delete, &mut item.delete),
        (HttpMethod::Options, &mut item.options),
        (HttpMethod::Head, &mut item.head),
        (HttpMethod::Patch, &mut item.patch),
        (HttpMethod::Trace, &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

/// Whether the operation authenticates a session (rather than being open, like login).
fn session_authenticated(operation: &Operation) -> bool {
    let Some(requirements) = &operation.security else { return false };
    serde_json::to_value(requirements)
        .ok()
        .and_then(|value| value.as_array().cloned())
        .is_some_and(|alternatives| alternatives.iter().any(|alternative| alternative.get("session_header").is_some()))
}

/// A session-authenticated operation, as a link target.
struct Target {
    operation_id: String,
    path: String,
    has_body: bool,
}

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        security_schemes(openapi);

        // One handler, several methods or paths: the document lists each as an operation.
        mirror(
            openapi,
            ("/v1/admin/users/{username}/disable", HttpMethod::Post),
            ("/v1/admin/users/{username}/enable", HttpMethod::Post),
            ("enable_user", "Enable a user"),
            &["409"],
        );
        mirror(
            openapi,
            ("/v1/admin/users/{username}/roles/{role}", HttpMethod::Put),
            ("/v1/admin/users/{username}/roles/{role}", HttpMethod::Delete),
            ("revoke_role", "Revoke a role"),
            &[],
        );
        // Forward authentication answers whatever method the proxy forwards.
        for (method, name) in [
            (HttpMethod::Post, "post"),
            (HttpMethod::Put, "put"),
            (HttpMethod::Delete, "delete"),
            (HttpMethod::Patch, "patch"),
            (HttpMethod::Head, "head"),
            (HttpMethod::Options, "options"),
            (HttpMethod::Trace, "trace"),
        ] {
            mirror(
                openapi,
                ("/v1/auth/verify", HttpMethod::Get),
                ("/v1/auth/verify", method.clone()),
                (&format!("verify_{name}"), &format!("Verify a session ({})", name.to_ascii_uppercase())),
                &[],
            );
            mirror(
                openapi,
                ("/v1/auth/verify/{original}", HttpMethod::Get),
                ("/v1/auth/verify/{original}", method),
                (
                    &format!("verify_original_{name}"),
                    &format!("Verify a session, the original path appended ({})", name.to_ascii_uppercase()),
                ),
                &[],
            );
        }
        // A subject in a path: the body's rules (a tuple parameter cannot carry a pattern).
        if let Some(item) = openapi.paths.paths.get_mut("/v1/backend/subjects/{subject}/sessions") {
            for (_, operation) in operations(item) {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.name == "subject" {
                        parameter.schema = Some(subject_schema().into());
                    }
                }
            }
        }
        if let Some(operation) = openapi.paths.paths.get_mut("/v1/auth/verify") {
            for (_, operation) in operations(operation) {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.name == "role" {
                        parameter.schema = Some(roles_schema().into());
                    }
                }
            }
        }

        let mut targets = Vec::new();
        for (path, item) in &mut openapi.paths.paths {
            let probe = path == "/healthz" || path == "/readyz";
            for (_, operation) in operations(item) {
                let session = session_authenticated(operation);
                if session {
                    if let Some(operation_id) = &operation.operation_id {
                        targets.push(Target {
                            operation_id: operation_id.clone(),
                            path: path.clone(),
                            has_body: operation.request_body.is_some(),
                        });
                    }
                }
                if probe {
                    continue;
                }
                // The shared JSON extractor also refuses what is not JSON at all.
                let has_body = operation.request_body.is_some();
                let json_body =
                    operation.request_body.as_ref().is_some_and(|body| body.content.contains_key("application/json"));
                // Whatever authenticates or reads a body asks the store (or the hashing pool).
                let uses_store = has_body || operation.security.is_some();
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, response: Response| {
                    responses.entry(status.to_owned()).or_insert_with(|| RefOr::T(response));
                };
                if has_body {
                    add("413", problem("The body is larger than 16 KiB"));
                    add(
                        "415",
                        problem(if json_body {
                            "The body is not `application/json`"
                        } else {
                            "The body is not of a media type this operation reads"
                        }),
                    );
                    add("422", problem("A field is missing, unknown or invalid (the problem names it)"));
                }
                if json_body {
                    add("400", problem("The body is not JSON"));
                }
                if session {
                    let mut refused = problem("No valid session: missing, malformed, unknown, expired or revoked");
                    refused.headers.insert("www-authenticate".to_owned(), text_header("`Bearer`"));
                    add("401", refused);
                }
                add("408", problem("The request took longer than the request timeout"));
                let mut limited = problem("A rate limit refused the request");
                limited.headers.insert("retry-after".to_owned(), integer_header("Seconds until a retry can succeed"));
                add("429", limited);
                if uses_store {
                    let mut unavailable = problem("The session store is unavailable, or password hashing is saturated");
                    unavailable.headers.insert("retry-after".to_owned(), integer_header("Seconds until a retry"));
                    add("503", unavailable);
                }
            }
        }

        links(openapi, &targets);
    }
}

fn security_schemes(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The session token, as `Authorization: Bearer <token>`"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "__Host-sid",
            "The session cookie (named `sid`, without the prefix, when SESSIOND_COOKIE_SECURE=false)",
        ))),
    );
    components.add_security_scheme(
        "backend_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-api-key",
            "A backend API key (`SESSIOND_BACKEND_KEYS`), as `X-Api-Key: <key>` or `Authorization: ApiKey <key>`",
        ))),
    );
    components.add_security_scheme(
        "session_header",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-session-id",
            "The session token, as `x-session-id: <token>` (read when neither `Authorization` nor the cookie is present)",
        ))),
    );
}

/// One link: call `operation_id` with these parameters (`header.…`, `path.…`; values are
/// runtime expressions) and, when given, these body fields.
fn link(operation_id: &str, description: &str, parameters: &[(&str, &str)], body: Option<Value>) -> Value {
    let mut link = serde_json::Map::new();
    link.insert("operationId".to_owned(), json!(operation_id));
    link.insert("description".to_owned(), json!(description));
    if !parameters.is_empty() {
        let parameters: serde_json::Map<String, Value> =
            parameters.iter().map(|(name, value)| ((*name).to_owned(), json!(value))).collect();
        link.insert("parameters".to_owned(), Value::Object(parameters));
    }
    if let Some(body) = body {
        link.insert("requestBody".to_owned(), body);
    }
    Value::Object(link)
}

/// The links: register → login with the same credentials; every operation that issues a token
/// → every operation that uses one (and, for the user just logged in, the admin operations on
/// that user); the session list and the profile → the session they name.
///
/// utoipa 5.5 writes its `Link` type's fields in snake case (`operation_id`, `request_body`),
/// which OpenAPI tools do not read, so a response's links are written as its one extension
/// field, `links`, which serializes exactly where the `links` field would.
fn links(openapi: &mut utoipa::openapi::OpenApi, targets: &[Target]) {
    let mut all: Vec<(&str, HttpMethod, &str, String, Value)> = vec![(
        "/v1/auth/register",
        HttpMethod::Post,
        "201",
        "login".to_owned(),
        link(
            "login",
            "Log in with the credentials just registered (the token in the body)",
            &[],
            Some(json!({
                "username": "$request.body#/username",
                "password": "$request.body#/password",
                "transport": "bearer",
            })),
        ),
    )];

    // Who issues a token, and whether the issuing request holds the credentials. The token is
    // handed on as `Authorization`, which the service reads before any other credential.
    let issuers = [
        ("/v1/auth/login", "Log in", true),
        ("/v1/auth/refresh", "Refresh", false),
        ("/v1/account/password", "Change the password", false),
    ];
    for (path, verb, knows_credentials) in issuers {
        for target in targets {
            let admin = target.path.starts_with("/v1/admin/");
            let mut parameters = Vec::new();
            let mut body = None;
            if admin {
                // Someone else's session for the user just logged in: an administrator's.
                if !(knows_credentials && target.path.contains("{username}")) {
                    continue;
                }
                parameters.push(("path.username", "$request.body#/username"));
            } else {
                parameters.push(("header.Authorization", "Bearer {$response.body#/token}"));
                if target.path.contains("{session_id}") {
                    parameters.push(("path.session_id", "$response.body#/session_id"));
                }
                if knows_credentials && target.has_body {
                    // The password, which change-password and delete-account ask for again.
                    let field = if target.path == "/v1/account/password" { "current_password" } else { "password" };
                    let mut fields = serde_json::Map::new();
                    fields.insert(field.to_owned(), json!("$request.body#/password"));
                    body = Some(Value::Object(fields));
                }
            }
            let description = if admin {
                format!("{verb}, then an administrator calls `{}` on the user", target.operation_id)
            } else {
                format!("{verb}, then call `{}` with the new session", target.operation_id)
            };
            all.push((
                path,
                HttpMethod::Post,
                "200",
                target.operation_id.clone(),
                link(&target.operation_id, &description, &parameters, body),
            ));
        }
    }

    let forward = ("header.Authorization", "$request.header.Authorization");
    all.push((
        "/v1/sessions",
        HttpMethod::Get,
        "200",
        "revoke_session".to_owned(),
        link(
            "revoke_session",
            "End the newest listed session",
            &[("path.session_id", "$response.body#/sessions/0/session_id"), forward],
            None,
        ),
    ));
    all.push((
        "/v1/profile",
        HttpMethod::Get,
        "200",
        "revoke_session".to_owned(),
        link(
            "revoke_session",
            "End the calling session by its id",
            &[("path.session_id", "$response.body#/session/session_id"), forward],
            None,
        ),
    ));

    for (path, method, status, name, link) in all {
        let Some(RefOr::T(response)) = openapi
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| operations(item).find(|(m, _)| *m == method).map(|(_, operation)| operation))
            .and_then(|operation| operation.responses.responses.get_mut(status))
        else {
            continue;
        };
        let extensions = response.extensions.get_or_insert_with(Default::default);
        let links = extensions.entry("links".to_owned()).or_insert_with(|| json!({}));
        if let Some(links) = links.as_object_mut() {
            links.insert(name, link);
        }
    }
}
