//! The caller's own sessions: profile, list, revoke one, revoke all.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::AuthSession;
use super::AppState;
use crate::error::{Error, Problem};
use crate::service::ClientMeta;
use crate::session::{SessionId, Timestamp};

/// Serialized straight from the validated session: nothing is copied per request.
#[derive(Serialize, ToSchema)]
pub struct Profile<'a> {
    user_id: &'a str,
    username: &'a str,
    #[schema(value_type = Vec<String>)]
    roles: &'a [String],
    session: ProfileSession<'a>,
    /// What a trusted backend stored with the session (backend sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"tenant": "acme"}))]
    data: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Serialize, ToSchema)]
pub struct ProfileSession<'a> {
    #[schema(value_type = String, example = "zWdMbLqwo2Jr9oL65C6iVw", pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    session_id: &'a SessionId,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    last_seen_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    idle_expires_at: Timestamp,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    sessions: Vec<ListedSession>,
}

#[derive(Serialize, ToSchema)]
pub struct ListedSession {
    #[schema(value_type = String, example = "zWdMbLqwo2Jr9oL65C6iVw", pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    session_id: SessionId,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    last_seen_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    idle_expires_at: Timestamp,
    /// Client address at login.
    #[schema(value_type = Option<String>, example = "192.0.2.7")]
    ip: Option<std::net::IpAddr>,
    /// The device, from the `User-Agent` at login.
    #[schema(example = "Chrome 131 on Windows")]
    device: Option<String>,
    /// Whether this is the calling session.
    current: bool,
}

/// `GET /v1/profile`.
#[utoipa::path(get, path = "/v1/profile", tag = "sessions", operation_id = "profile",
    summary = "Who the caller is",
    description = "The caller's user and the calling session, as the session validated.",
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses((status = 200, description = "The caller and the calling session", body = Profile)))]
pub async fn profile(AuthSession(auth): AuthSession) -> Response {
    let s = auth.session();
    let profile = Profile {
        user_id: &s.user_id,
        username: &s.username,
        roles: auth.roles(),
        session: ProfileSession {
            session_id: &s.session_id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            idle_expires_at: s.idle_expires_at,
        },
        data: super::backend::raw_data(s.data.as_deref()),
    };
    // Sized for a profile at once (axum's `Json` starts at 128 bytes and grows twice).
    let mut body = Vec::with_capacity(512);
    match serde_json::to_writer(&mut body, &profile) {
        Ok(()) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
        Err(error) => Error::Internal(format!("profile: {error}")).into_response(),
    }
}

/// `GET /v1/sessions`, newest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", operation_id = "list_sessions",
    summary = "List the caller's sessions",
    description = "Every live session of the caller's user, newest first; `current` marks the calling one.",
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses((status = 200, description = "The caller's live sessions, newest first", body = SessionList)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    AuthSession(auth): AuthSession,
) -> Result<Json<SessionList>, Error> {
    let sessions = state.sessions.list(&auth).await?;
    let sessions = sessions
        .into_iter()
        .map(|s| ListedSession {
            current: s.session_id == auth.session().session_id,
            session_id: s.session_id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            idle_expires_at: s.idle_expires_at,
            ip: s.ip,
            device: s.device,
        })
        .collect();
    Ok(Json(SessionList { sessions }))
}

/// `DELETE /v1/sessions/{session_id}` → 204, or 404 when it is not the caller's.
#[utoipa::path(delete, path = "/v1/sessions/{session_id}", tag = "sessions", operation_id = "revoke_session",
    summary = "End one of the caller's sessions",
    description = "Ends the session with this public id, if it is the caller's (the calling session included). Any other id is a 404, whoever's it is.",
    params(("session_id" = String, Path, description = "A session id from the list", pattern = "^[A-Za-z0-9_-]{21}[AQgw]$", example = "zWdMbLqwo2Jr9oL65C6iVw")),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 204, description = "The session is ended"),
        (status = 403, description = "A cookie-authenticated request another site started", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not one of the caller's live sessions", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    AuthSession(auth): AuthSession,
    Path(session_id): Path<String>,
) -> Result<StatusCode, Error> {
    state.sessions.revoke(&auth, &session_id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/sessions[?except_current=true]` → 204.
#[utoipa::path(delete, path = "/v1/sessions", tag = "sessions", operation_id = "revoke_all_sessions",
    summary = "Log out everywhere",
    description = "Ends every session of the caller's user — with `except_current=true`, all but the calling one. Any other query parameter is a 422.",
    params(("except_current" = Option<bool>, Query, description = "Keep the calling session (`true`/`false`, also `1`/`0`)")),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 204, description = "Logged out everywhere (but here, with except_current)"),
        (status = 422, description = "`except_current` is not a boolean, or another query parameter was given", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A cookie-authenticated request another site started", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_all(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    AuthSession(auth): AuthSession,
    Query(params): Query<HashMap<String, String>>,
) -> Result<StatusCode, Error> {
    let mut except_current = false;
    for (name, value) in &params {
        match (name.as_str(), value.as_str()) {
            ("except_current", "true" | "1") => except_current = true,
            ("except_current", "false" | "0") => except_current = false,
            ("except_current", _) => {
                return Err(Error::InvalidField {
                    field: "except_current".into(),
                    detail: "must be true or false".into(),
                })
            }
            (other, _) => {
                return Err(Error::InvalidField {
                    field: other.chars().take(64).collect(),
                    detail: "is not a known query parameter".into(),
                })
            }
        }
    }
    state.sessions.revoke_all(&auth, except_current, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
