//! `/v1/auth/*`: register, login, logout, refresh.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::extract::{AppJson, AuthSession, PresentedToken};
use super::AppState;
use crate::error::Error;
use crate::service::{ClientMeta, Issued};
use crate::session::{SessionId, Timestamp};
use crate::users::Password;

/// Body of register and login.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Registered {
    user_id: String,
    username: String,
}

#[derive(Serialize)]
struct SessionIssued<'a> {
    token: &'a str,
    session_id: &'a SessionId,
    expires_at: Timestamp,
    idle_expires_at: Timestamp,
}

/// `POST /v1/auth/register` → 201.
pub async fn register(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    AppJson(body): AppJson<Credentials>,
) -> Result<Response, Error> {
    let user = state.users.register(&body.username, body.password, &meta).await?;
    Ok((StatusCode::CREATED, Json(Registered { user_id: user.user_id, username: user.username })).into_response())
}

/// `POST /v1/auth/login` → 200 with a brand-new session (token in body and cookie).
pub async fn login(
    State(state): State<Arc<AppState>>,
    PresentedToken(previous): PresentedToken,
    meta: ClientMeta,
    AppJson(body): AppJson<Credentials>,
) -> Result<Response, Error> {
    let issued = state.sessions.login(&body.username, Password::unchecked(body.password), meta, previous).await?;
    Ok(issued_response(&state, &issued))
}

/// `POST /v1/auth/refresh` → 200: a new token for the same session.
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    AuthSession(auth): AuthSession,
) -> Result<Response, Error> {
    let issued = state.sessions.refresh(&auth, &meta).await?;
    Ok(issued_response(&state, &issued))
}

/// `POST /v1/auth/logout` → 204 and a cleared cookie; 401 when the session had already ended.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    AuthSession(auth): AuthSession,
) -> Result<Response, Error> {
    state.sessions.logout(&auth, &meta).await?;
    Ok(session_cleared(&state))
}

/// 204 with a `Set-Cookie` that makes the browser forget the session.
pub(super) fn session_cleared(state: &AppState) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = state.cookie.clear() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A new session as login answers it: the token in the body and the cookie, and, after a
/// password check, the device token in a cookie and a header.
pub(super) fn issued_response(state: &AppState, issued: &Issued) -> Response {
    let body = SessionIssued {
        token: issued.token.expose(),
        session_id: &issued.session.session_id,
        expires_at: issued.session.expires_at,
        idle_expires_at: issued.session.idle_expires_at,
    };
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    if let Some(cookie) = state.cookie.issue(&issued.token) {
        headers.append(header::SET_COOKIE, cookie);
    }
    if let Some(device) = &issued.device {
        if let Some(cookie) = state.cookie.issue_device(device) {
            headers.append(header::SET_COOKIE, cookie);
        }
        if let Ok(value) = HeaderValue::from_str(device.expose()) {
            headers.insert(HeaderName::from_static(super::cookie::DEVICE_HEADER), value);
        }
    }
    response
}
