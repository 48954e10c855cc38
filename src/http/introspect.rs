//! `POST /v1/introspect` (RFC 7662): a trusted backend asks whether a token is active — a
//! session token, or an access token whose session is still live — and learns whose it is.
//! Only backends holding an API key may ask; everyone else is told nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::error::{Error, Problem};
use crate::session::SessionToken;
use crate::telemetry::audit;

/// A request authenticated by a backend API key (`Authorization: ApiKey <key>`, or
/// `X-Api-Key`). Anything else is a 401, counted and audited.
pub struct Backend(pub String);

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return value.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("apikey")).map(|(_, key)| key);
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

impl FromRequestParts<Arc<AppState>> for Backend {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        let client_ip = parts.extensions.get::<crate::limits::ClientIp>().map(|ip| ip.0);
        let Some(name) = presented_key(&parts.headers).and_then(|key| state.backend.keys.identify(key)) else {
            state.backend.metrics.backend_auth_failure();
            audit::backend_refused(client_ip, parts.uri.path());
            return Err(Error::BackendUnauthorized);
        };
        if let Some(decision) = state.backend.limiter.check(super::backend_limit_key(name)) {
            if !decision.allowed {
                state.backend.metrics.rate_limited(decision.limiter);
                return Err(Error::RateLimited(decision));
            }
        }
        Ok(Self(name.to_owned()))
    }
}

/// The question, as a form (`token=…`) or JSON (`{"token": …}`).
#[derive(Deserialize, ToSchema)]
pub struct Question {
    /// A session token or an access token.
    token: String,
    /// Ignored (RFC 7662 allows it): the token's shape tells.
    #[serde(default)]
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// The answer: `{"active": false}` and nothing more, unless the token is live.
#[derive(Serialize, ToSchema, Default)]
pub struct Answer {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// `session_token` or `access_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// What a trusted backend stored with the session (backend sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    data: Option<Box<serde_json::value::RawValue>>,
}

fn question(headers: &HeaderMap, body: &Bytes) -> Result<Question, Error> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let missing = || Error::InvalidField { field: "token".into(), detail: "is required".into() };
    match essence.as_str() {
        "application/x-www-form-urlencoded" => serde_urlencoded_token(body).ok_or_else(missing),
        "application/json" => serde_json::from_slice::<Question>(body).map_err(|_| missing()),
        _ => Err(Error::UnsupportedMediaType),
    }
}

/// `token=` of a form body (percent-decoded).
fn serde_urlencoded_token(body: &Bytes) -> Option<Question> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "token")
        .map(|(_, token)| Question { token, token_type_hint: None })
}

/// `POST /v1/introspect` → 200 `{"active": …}` (RFC 7662).
#[utoipa::path(post, path = "/v1/introspect", tag = "backend",
    request_body(content = Question, content_type = "application/x-www-form-urlencoded", description = "Also accepted as application/json"),
    security(("backend_key" = [])),
    responses(
        (status = 200, description = "Whether the token is active, and whose it is", body = Answer),
        (status = 401, description = "No valid backend API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn introspect(
    State(state): State<Arc<AppState>>,
    Backend(_caller): Backend,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Answer>, Error> {
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge
        } else {
            Error::BadRequest("the request body could not be read".to_owned())
        }
    })?;
    let question = question(&headers, &body)?;
    let token = question.token.trim();
    if let Some(session_token) = SessionToken::parse(token) {
        return match state.sessions.authenticate(&session_token).await {
            Ok(auth) => {
                let session = auth.session();
                Ok(Json(Answer {
                    active: true,
                    sub: Some(session.user_id.clone()),
                    username: Some(session.username.clone()),
                    roles: Some(auth.roles().to_vec()),
                    sid: Some(session.session_id.as_str().to_owned()),
                    exp: Some(session.deadline().millis() / 1000),
                    iat: Some(session.created_at.millis() / 1000),
                    token_type: Some("session_token"),
                    data: super::backend::raw_data(session.data.as_deref()),
                }))
            }
            Err(Error::Unauthorized) => Ok(Json(Answer::default())),
            Err(error) => Err(error),
        };
    }
    let Some(claims) = state.tokens.verify(token) else { return Ok(Json(Answer::default())) };
    // An access token is active only while its session is.
    match state.sessions.live_session(&claims.sub, &claims.name, &claims.sid).await? {
        Some((session, roles)) => Ok(Json(Answer {
            active: true,
            sub: Some(claims.sub),
            username: Some(claims.name),
            roles: Some(roles),
            sid: Some(claims.sid),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            token_type: Some("access_token"),
            data: super::backend::raw_data(session.data.as_deref()),
        })),
        None => Ok(Json(Answer::default())),
    }
}
