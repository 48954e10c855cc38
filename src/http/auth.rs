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
use utoipa::ToSchema;

use super::extract::{AppJson, AuthSession, CredentialSource, PresentedToken, Source};
use super::AppState;
use crate::error::{Error, Problem};
use crate::service::{ClientMeta, Issued};
use crate::session::{SessionId, Timestamp};
use crate::users::Password;

/// Body of register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3–64 characters of `A-Z a-z 0-9 . _ @ -`, unique case-insensitively.
    #[schema(example = "alice", min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9._@-]{3,64}$")]
    username: String,
    /// At least 8 characters (`SESSIOND_PASSWORD_MIN_LENGTH`), at most 1024 bytes of UTF-8
    /// (`maxLength` counts characters: it is the whole rule for ASCII, and a longer encoding
    /// is refused with 422).
    #[schema(example = "correct horse battery", min_length = 8, max_length = 1024)]
    password: String,
}

/// Body of login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(example = "alice")]
    username: String,
    #[schema(example = "correct horse battery")]
    password: String,
    /// Read as text and checked by [`Transport::parse`]: serde's own enum reading calls a
    /// number there malformed JSON and takes `{"cookie": null}` for `"cookie"`.
    #[serde(default)]
    #[schema(schema_with = super::openapi::transport_schema)]
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

#[derive(Serialize, ToSchema)]
pub struct Registered {
    #[schema(example = "0b9c3a52-4c3e-4d57-9f3e-2a6f1f0c5d11")]
    user_id: String,
    #[schema(example = "alice")]
    username: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionIssued<'a> {
    /// The bearer token (absent with `"transport": "cookie"`). Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "T4W0s6EIET4uPe4U-pZ-2hnG9KJU-8YHwbmTQxHVNSs", pattern = "^[A-Za-z0-9_-]{43}$")]
    token: Option<&'a str>,
    /// The session's public id (never authenticates).
    #[schema(value_type = String, example = "zWdMbLqwo2Jr9oL65C6iVw", pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    session_id: &'a SessionId,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    idle_expires_at: Timestamp,
}

impl<'a> SessionIssued<'a> {
    /// The body for `session`, with `token` when the body carries it.
    pub(super) fn new(token: Option<&'a str>, session: &'a crate::store::SessionRecord) -> Self {
        Self {
            token,
            session_id: &session.session_id,
            expires_at: session.expires_at,
            idle_expires_at: session.idle_expires_at,
        }
    }
}

/// `POST /v1/auth/register` → 201.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", operation_id = "register",
    summary = "Register an account",
    description = "Creates an account with the `user` role. The password is hashed (argon2id) whether or not the name is free, so a taken name does not answer sooner. No session is issued: log in next.",
    request_body(content = Credentials, example = json!({"username": "alice", "password": "correct horse battery"})),
    responses(
        (status = 201, description = "The account exists; log in next", body = Registered),
        (status = 409, description = "The username is taken (case-insensitively)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    AppJson(body): AppJson<Credentials>,
) -> Result<Response, Error> {
    let user = state.users.register(&body.username, body.password, &meta).await?;
    Ok((StatusCode::CREATED, Json(Registered { user_id: user.user_id, username: user.username })).into_response())
}

/// `POST /v1/auth/login` → 200 with a brand-new session, in the transport asked for.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", operation_id = "login",
    summary = "Log in",
    description = "Issues a brand-new session. A live session presented with the request (by any transport) is ended first, so a login can never adopt a session someone planted. A device token comes with it: a later login of the same user that presents it draws on a failed-login allowance of its own, which guessing from elsewhere cannot exhaust.",
    request_body(content = Login, example = json!({"username": "alice", "password": "correct horse battery", "transport": "bearer"})),
    responses(
        (status = 200, description = "A brand-new session: the token in the body and/or the session cookie, as `transport` says, and a device token (cookie `sessiond_device`, header `sessiond-device-token`)", body = SessionIssued,
            headers(("set-cookie" = String, description = "The session cookie and the device-token cookie (not with transport bearer)"),
                    ("sessiond-device-token" = String, description = "The device token (not with transport cookie)"))),
        (status = 401, description = "Wrong username or password, or a disabled account (one answer for all)", body = Problem, content_type = "application/problem+json"),
    ))]
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
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", operation_id = "refresh",
    summary = "Rotate the session token",
    description = "The same session on a new token, answered in the transport the old token came in (the cookie for the cookie, the body for a header). The old token is refused from now on.",
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 200, description = "The same session on a new token; the old one is refused from now on", body = SessionIssued),
        (status = 403, description = "A cookie-authenticated request another site started", body = Problem, content_type = "application/problem+json"),
    ))]
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
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", operation_id = "logout",
    summary = "Log out",
    description = "Ends the calling session and clears the session cookie (`Clear-Site-Data: \"cache\"` too). An already ended session is a 401.",
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 204, description = "The session is ended and the cookie cleared"),
        (status = 403, description = "A cookie-authenticated request another site started", body = Problem, content_type = "application/problem+json"),
    ))]
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
    let body = SessionIssued::new((transport != Transport::Cookie).then(|| issued.token.expose()), &issued.session);
    let mut response = Json(body).into_response();
    session_headers(state, issued, transport, &mut response);
    response
}
