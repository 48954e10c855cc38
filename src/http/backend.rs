//! The trusted-backend API: sessions for subjects that a backend authenticated itself. Every
//! route needs a backend API key ([`Backend`]); the session tokens it creates are handed to the
//! backend in the body (it passes them on to its client however it likes), never as a cookie.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::SessionIssued;
use super::extract::AppJson;
use super::introspect::Backend;
use super::AppState;
use crate::error::{Error, Problem};
use crate::service::{ClientMeta, NewBackendSession};
use crate::session::{SessionData, SessionId, Timestamp};
use crate::users::{Role, Subject};

/// Body of `POST /v1/backend/sessions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// The backend's own identifier of the subject: 1–255 bytes of UTF-8 without control
    /// characters. A namespace apart from usernames: `alice` here is not the user `alice`.
    #[schema(example = "idp|8f1c2d", min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    subject: String,
    /// The subject's roles from now on (default `["user"]`); every live session of the subject
    /// carries them.
    #[serde(default)]
    #[schema(example = json!(["user", "billing"]))]
    roles: Option<Vec<String>>,
    /// A JSON object of at most 4096 bytes (compact), returned by every validation of the
    /// session: `GET /v1/profile`, `X-Session-Data` of `/v1/auth/verify`, introspection.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"tenant": "acme"}))]
    data: Option<serde_json::Value>,
    /// Absolute lifetime in seconds, at most the configured absolute timeout (default: that
    /// timeout). The idle timeout applies as to every session.
    #[serde(default)]
    #[schema(minimum = 1, example = 3600)]
    ttl: Option<u64>,
}

/// A subject's live session.
#[derive(Serialize, ToSchema)]
pub struct SubjectSession {
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
    /// What the backend stored with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    data: Option<Box<serde_json::value::RawValue>>,
}

/// The subject's live sessions, newest first.
#[derive(Serialize, ToSchema)]
pub struct SubjectSessions {
    subject: String,
    sessions: Vec<SubjectSession>,
}

/// How many sessions ended.
#[derive(Serialize, ToSchema)]
pub struct Ended {
    #[schema(example = 2)]
    revoked: u64,
}

/// `data` as stored, for a response.
pub(super) fn raw_data(data: Option<&str>) -> Option<Box<serde_json::value::RawValue>> {
    data.and_then(|text| serde_json::value::RawValue::from_string(text.to_owned()).ok())
}

fn subject(text: &str) -> Result<Subject, Error> {
    Subject::parse(text).map_err(|detail| Error::InvalidField { field: "subject".into(), detail })
}

fn request(body: NewSession, max_ttl: Duration) -> Result<NewBackendSession, Error> {
    let invalid = |field: &str, detail: String| Error::InvalidField { field: field.into(), detail };
    let roles = match body.roles {
        Some(roles) => Some(
            roles
                .iter()
                .map(|role| Role::parse(role).map_err(|detail| invalid("roles", detail)))
                .collect::<Result<_, _>>()?,
        ),
        None => None,
    };
    let data = match &body.data {
        Some(value) => Some(SessionData::parse(value).map_err(|detail| invalid("data", detail))?),
        None => None,
    };
    let ttl = match body.ttl {
        Some(0) => return Err(invalid("ttl", "must be at least 1 second".into())),
        Some(seconds) if Duration::from_secs(seconds) > max_ttl => {
            return Err(invalid("ttl", format!("must be at most {} seconds (the absolute timeout)", max_ttl.as_secs())))
        }
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => None,
    };
    Ok(NewBackendSession { subject: subject(&body.subject)?, roles, data, ttl })
}

/// `POST /v1/backend/sessions` → 201 with the session, as a login answers.
#[utoipa::path(post, path = "/v1/backend/sessions", tag = "backend", operation_id = "create_backend_session",
    summary = "Create a session for an externally authenticated subject",
    description = "For a backend that authenticated the subject itself (SSO, OAuth, its own users): no password is involved. Caps, idle and absolute timeouts, rotation (`/v1/auth/refresh`), logout, the active gauge and the metrics apply as to password sessions. The token is in the body only.",
    request_body(content = NewSession, example = json!({"subject": "idp|8f1c2d", "roles": ["user"], "data": {"tenant": "acme"}, "ttl": 3600})),
    security(("backend_key" = [])),
    responses(
        (status = 201, description = "A new session for the subject", body = SessionIssued),
        (status = 401, description = "No valid backend API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The subject's sessions were being ended at the same moment", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid (`data` over 4096 bytes, `ttl` over the absolute timeout, a bad role or subject)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Backend(caller): Backend,
    meta: ClientMeta,
    AppJson(body): AppJson<NewSession>,
) -> Result<Response, Error> {
    let request = request(body, state.backend_sessions.max_ttl())?;
    let issued = state.backend_sessions.create(&caller, request, &meta).await?;
    let session = &issued.session;
    let body = SessionIssued::new(Some(issued.token.expose()), session);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/backend/subjects/{subject}/sessions`.
#[utoipa::path(get, path = "/v1/backend/subjects/{subject}/sessions", tag = "backend", operation_id = "list_subject_sessions",
    summary = "List a subject's sessions",
    params(("subject" = String, Path, description = "The subject, percent-encoded")),
    security(("backend_key" = [])),
    responses(
        (status = 200, description = "The subject's live sessions, newest first (none for an unknown subject)", body = SubjectSessions),
        (status = 401, description = "No valid backend API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid subject", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Backend(_caller): Backend,
    Path(text): Path<String>,
) -> Result<Json<SubjectSessions>, Error> {
    let subject = subject(&text)?;
    let sessions = state.backend_sessions.list(&subject).await?;
    Ok(Json(SubjectSessions {
        subject: subject.as_str().to_owned(),
        sessions: sessions
            .into_iter()
            .map(|s| SubjectSession {
                data: raw_data(s.data.as_deref()),
                session_id: s.session_id,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.expires_at,
                idle_expires_at: s.idle_expires_at,
            })
            .collect(),
    }))
}

/// `DELETE /v1/backend/subjects/{subject}/sessions` → 200 with the count.
#[utoipa::path(delete, path = "/v1/backend/subjects/{subject}/sessions", tag = "backend", operation_id = "end_subject_sessions",
    summary = "End every session of a subject",
    description = "Ends them all and forgets the subject (its roles too): nothing of it stays in the store. An unknown subject is `revoked: 0`.",
    params(("subject" = String, Path, description = "The subject, percent-encoded")),
    security(("backend_key" = [])),
    responses(
        (status = 200, description = "How many live sessions ended", body = Ended),
        (status = 401, description = "No valid backend API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid subject", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn end_all(
    State(state): State<Arc<AppState>>,
    Backend(caller): Backend,
    Path(text): Path<String>,
) -> Result<Json<Ended>, Error> {
    let subject = subject(&text)?;
    let revoked = state.backend_sessions.end_all(&caller, &subject).await?;
    Ok(Json(Ended { revoked }))
}

/// `DELETE /v1/backend/sessions/{session_id}` → 204.
#[utoipa::path(delete, path = "/v1/backend/sessions/{session_id}", tag = "backend", operation_id = "end_backend_session",
    summary = "End one backend session",
    params(("session_id" = String, Path, description = "The session's public id")),
    security(("backend_key" = [])),
    responses(
        (status = 204, description = "The session is ended"),
        (status = 401, description = "No valid backend API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live session a backend created has this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn end_one(
    State(state): State<Arc<AppState>>,
    Backend(caller): Backend,
    Path(session_id): Path<String>,
) -> Result<StatusCode, Error> {
    state.backend_sessions.end_one(&caller, &session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
