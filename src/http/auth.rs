//! `/v1/auth/*`: register, login, logout, refresh.
//!
//! A new session travels in the transport the client asks for: `cookie` (browsers: the token
//! only in the `HttpOnly` cookie, never in a body page script could read), `bearer` (API
//! clients: only in the body, no cookie), or both when the client does not say. A refresh or a
//! password change answers in the transport its credential came in.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::extract::{AppJson, AuthSession, CredentialSource, PresentedToken, Source};
use super::AppState;
use crate::error::Error;
use crate::service::{ClientMeta, Issued};
use crate::session::{SessionId, Timestamp};
use crate::users::Password;

/// Body of register.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
}

/// Body of login.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
    /// Read as text and checked by [`Transport::parse`]: serde's own enum reading calls a
    /// number there malformed JSON and takes `{"cookie": null}` for `"cookie"`.
    #[serde(default)]
    transport: Option<String>,
}

/// How a new session is handed to the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// In the `HttpOnly` cookie only: the body carries no token.
    Cookie,
    /// In the body only: no `Set-Cookie`.
    Bearer,
    /// Both (the default for a login that does not say).
    #[default]
    Both,
}

impl Transport {
    /// The login body's `transport`: `cookie`, `bearer`, or absent for both.
    ///
    /// # Errors
    /// 422 naming `transport` for anything else.
    fn parse(text: Option<&str>) -> Result<Self, Error> {
        match text {
            None => Ok(Self::Both),
            Some("cookie") => Ok(Self::Cookie),
            Some("bearer") => Ok(Self::Bearer),
            Some(_) => {
                Err(Error::InvalidField { field: "transport".into(), detail: "must be cookie or bearer".into() })
            }
        }
    }
}

impl From<CredentialSource> for Transport {
    /// Answer in the transport the credential came in.
    fn from(source: CredentialSource) -> Self {
        match source.0 {
            Some(Source::Cookie) => Self::Cookie,
            Some(Source::Header) => Self::Bearer,
            None => Self::Both,
        }
    }
}

#[derive(Serialize)]
struct Registered {
    user_id: String,
    username: String,
}

#[derive(Serialize)]
struct SessionIssued<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
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

/// `POST /v1/auth/login` → 200 with a brand-new session, in the transport asked for.
pub async fn login(
    State(state): State<Arc<AppState>>,
    PresentedToken(previous): PresentedToken,
    meta: ClientMeta,
    AppJson(body): AppJson<Login>,
) -> Result<Response, Error> {
    let transport = Transport::parse(body.transport.as_deref())?;
    let issued = state.sessions.login(&body.username, Password::unchecked(body.password), meta, previous).await?;
    Ok(issued_response(&state, &issued, transport))
}

/// `POST /v1/auth/refresh` → 200: a new token for the same session, in the transport the old
/// one came in.
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    source: CredentialSource,
    AuthSession(auth): AuthSession,
) -> Result<Response, Error> {
    let issued = state.sessions.refresh(&auth, &meta).await?;
    Ok(issued_response(&state, &issued, source.into()))
}

/// `POST /v1/auth/logout` → 204 and a cleared cookie; 401 when the session had already ended.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    AuthSession(auth): AuthSession,
) -> Result<Response, Error> {
    state.sessions.logout(&auth, &meta).await?;
    Ok(session_cleared(&state, StatusCode::NO_CONTENT.into_response()))
}

/// `response` with a `Set-Cookie` that makes the browser forget the session, and
/// `Clear-Site-Data: "cache"` so that Back shows nothing of what the session saw.
pub(super) fn session_cleared(state: &AppState, mut response: Response) -> Response {
    let headers = response.headers_mut();
    if let Some(cookie) = state.cookie.clear() {
        headers.append(header::SET_COOKIE, cookie);
    }
    headers.insert(HeaderName::from_static("clear-site-data"), HeaderValue::from_static("\"cache\""));
    response
}

/// The cookies and header that carry a new session in `transport` (the device token goes the
/// same way: a cookie for browsers, a header for API clients).
pub(super) fn session_headers(state: &AppState, issued: &Issued, transport: Transport, response: &mut Response) {
    let headers = response.headers_mut();
    if transport != Transport::Bearer {
        if let Some(cookie) = state.cookie.issue(&issued.token) {
            headers.append(header::SET_COOKIE, cookie);
        }
    }
    if let Some(device) = &issued.device {
        if transport != Transport::Bearer {
            if let Some(cookie) = state.cookie.issue_device(device) {
                headers.append(header::SET_COOKIE, cookie);
            }
        }
        if transport != Transport::Cookie {
            if let Ok(value) = HeaderValue::from_str(device.expose()) {
                headers.insert(HeaderName::from_static(super::cookie::DEVICE_HEADER), value);
            }
        }
    }
}

/// A new session as login answers it, in `transport`.
pub(super) fn issued_response(state: &AppState, issued: &Issued, transport: Transport) -> Response {
    let body = SessionIssued {
        token: (transport != Transport::Cookie).then(|| issued.token.expose()),
        session_id: &issued.session.session_id,
        expires_at: issued.session.expires_at,
        idle_expires_at: issued.session.idle_expires_at,
    };
    let mut response = Json(body).into_response();
    session_headers(state, issued, transport, &mut response);
    response
}
