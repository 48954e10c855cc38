//! The caller's own sessions: profile, list, revoke one, revoke all.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use serde::Serialize;

use super::extract::AuthSession;
use super::AppState;
use crate::error::Error;
use crate::service::ClientMeta;
use crate::session::{SessionId, Timestamp};

/// Serialized straight from the validated session: nothing is copied per request.
#[derive(Serialize)]
pub struct Profile<'a> {
    user_id: &'a str,
    username: &'a str,
    roles: &'a [String],
    session: ProfileSession<'a>,
}

#[derive(Serialize)]
struct ProfileSession<'a> {
    session_id: &'a SessionId,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    expires_at: Timestamp,
    idle_expires_at: Timestamp,
}

#[derive(Serialize)]
pub struct SessionList {
    sessions: Vec<ListedSession>,
}

#[derive(Serialize)]
struct ListedSession {
    session_id: SessionId,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    expires_at: Timestamp,
    idle_expires_at: Timestamp,
    ip: Option<std::net::IpAddr>,
    device: Option<String>,
    current: bool,
}

/// `GET /v1/profile`.
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
    };
    // Sized for a profile at once (axum's `Json` starts at 128 bytes and grows twice).
    let mut body = Vec::with_capacity(512);
    match serde_json::to_writer(&mut body, &profile) {
        Ok(()) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
        Err(error) => Error::Internal(format!("profile: {error}")).into_response(),
    }
}

/// `GET /v1/sessions`, newest first.
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
