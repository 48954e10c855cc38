//! `/v1/auth/verify`: forward authentication for reverse proxies (nginx `auth_request`,
//! Traefik ForwardAuth, Envoy `ext_authz`). The proxy asks "is this request's session valid,
//! and whose is it?" before it forwards to its upstream, and passes our answer headers on.
//!
//! It answers any method, since proxies forward the original one, and it validates exactly
//! like every protected route — the same credential rules (bearer, cookie, `x-session-id`), the
//! same validation cache, no Redis write on the fast path — but it never changes anything, so
//! the cross-site check of state-changing requests does not apply: it is the upstream's own
//! request that the proxy is asking about. A store outage is a 503, so a proxy fails closed.
//!
//! Envoy's HTTP authorization service cannot send its check to a fixed path: it appends the
//! original request's path and query to its prefix (`/v1/auth/verify/reports?year=2025`). So
//! everything below `/v1/auth/verify/` answers too, with the original path taken as
//! information only (like `X-Original-URI`) and the original query ignored: it belongs to the
//! upstream's request, and a `role` in it must neither add nor waive a requirement.

use std::sync::Arc;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};

use super::extract::credential_token;
use super::AppState;
use crate::error::Error;
use crate::users::Role;

/// The headers a proxy passes on to its upstream.
pub const USER: HeaderName = HeaderName::from_static("x-session-user");
/// The user's id.
pub const USER_ID: HeaderName = HeaderName::from_static("x-session-user-id");
/// The user's roles, comma-separated.
pub const ROLES: HeaderName = HeaderName::from_static("x-session-roles");
/// The session's public id.
pub const SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
/// What a trusted backend stored with the session: its JSON text in base64url (backend
/// sessions only).
pub const DATA: HeaderName = HeaderName::from_static("x-session-data");

/// Headers proxies send about the original request: logged (shortened), never trusted.
const ORIGINAL: [&str; 3] = ["x-original-uri", "x-forwarded-method", "x-forwarded-uri"];

/// `?role=…`, repeatable: every one is required.
fn required_roles(parts: &Parts) -> Result<Vec<Role>, Error> {
    let mut roles = Vec::new();
    for pair in parts.uri.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("role", value)) => {
                roles.push(Role::parse(value).map_err(|detail| Error::InvalidField { field: "role".into(), detail })?)
            }
            _ => {
                let name: String = pair.split('=').next().unwrap_or_default().chars().take(64).collect();
                return Err(Error::InvalidField { field: name, detail: "is not a known query parameter".into() });
            }
        }
    }
    Ok(roles)
}

/// Any method on `/v1/auth/verify` → 200 with the identity headers; 401 without a valid
/// session; 403 when a required role is missing; 503 when the store is unavailable.
#[utoipa::path(get, path = "/v1/auth/verify", tag = "auth", operation_id = "verify",
    summary = "Verify a session (forward authentication)",
    description = "For a reverse proxy's `auth_request`/`forwardAuth`: 200 with the identity in headers when the request carries a valid session (and every `role` asked for), 401 or 403 otherwise. Any method is answered alike. The cookie is not subject to the cross-site check here: the proxy decides what the verdict guards.",
    params(("role" = Option<Vec<String>>, Query, description = "A role the session must have; repeat for several (all are required). Any other query parameter is a 422.", explode = true)),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 200, description = "A valid session; the identity is in the headers (empty body)",
            headers(("x-session-user" = String, description = "The username"), ("x-session-user-id" = String, description = "The user's id"),
                    ("x-session-roles" = String, description = "The roles, comma-separated"), ("x-session-id" = String, description = "The session's public id"))),
        (status = 403, description = "A required role is missing", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A `role` is not a valid role name, or another query parameter was given", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(State(state): State<Arc<AppState>>, parts: Parts) -> Result<Response, Error> {
    let required = required_roles(&parts)?;
    check(&state, &parts, &required).await
}

/// Any method on `/v1/auth/verify/{original}` (Envoy's check of the original path): answered
/// as `/v1/auth/verify` with no role required; the query is the original request's, ignored.
#[utoipa::path(get, path = "/v1/auth/verify/{original}", tag = "auth", operation_id = "verify_original",
    summary = "Verify a session, the original path appended (Envoy ext_authz)",
    description = "The check Envoy's HTTP authorization service sends: `/v1/auth/verify` followed by the original request's path and query. Answered exactly like `GET /v1/auth/verify` without `role`; the appended path is logged at debug level only and the query string is ignored.",
    params(("original" = String, Path, description = "The original request's path (without its leading slash); any query string after it is ignored", example = "reports/2025")),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 200, description = "A valid session; the identity is in the headers (empty body)",
            headers(("x-session-user" = String, description = "The username"), ("x-session-user-id" = String, description = "The user's id"),
                    ("x-session-roles" = String, description = "The roles, comma-separated"), ("x-session-id" = String, description = "The session's public id"))),
    ))]
pub async fn verify_original(State(state): State<Arc<AppState>>, parts: Parts) -> Result<Response, Error> {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let path: String = parts.uri.path().chars().take(256).collect();
        tracing::debug!(path = %path, "forward-auth check of an appended path");
    }
    check(&state, &parts, &[]).await
}

/// The verdict on the request's credential, `required` roles included.
async fn check(state: &AppState, parts: &Parts, required: &[Role]) -> Result<Response, Error> {
    if tracing::enabled!(tracing::Level::DEBUG) {
        for name in ORIGINAL {
            if let Some(value) = parts.headers.get(name).and_then(|v| v.to_str().ok()) {
                // The path only: a query string may carry what is not ours to log.
                let path: String = value.split('?').next().unwrap_or_default().chars().take(256).collect();
                tracing::debug!(header = name, value = %path, "forward-auth request for");
            }
        }
    }
    let token = match credential_token(parts, &state.cookie) {
        Some(Ok(token)) => token,
        Some(Err(error)) => {
            state.sessions.malformed_credential();
            return Err(error);
        }
        None => return Err(Error::Unauthorized),
    };
    let auth = state.sessions.authenticate(&token).await?;
    if required.iter().any(|role| !auth.has_role(role.as_str())) {
        return Err(Error::Forbidden);
    }
    let session = auth.session();
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (USER, session.username.as_str()),
        (USER_ID, session.user_id.as_str()),
        (SESSION_ID, session.session_id.as_str()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&auth.roles().join(",")) {
        headers.insert(ROLES, value);
    }
    if let Some(data) = &session.data {
        use base64::Engine as _;
        if let Ok(value) =
            HeaderValue::from_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data.as_bytes()))
        {
            headers.insert(DATA, value);
        }
    }
    Ok(response)
}
