//! Extractors: turn raw requests into typed inputs, or into our problem+json errors.
//!
//! * [`AppJson`] — JSON object bodies; wrong content type → 415, too large → 413, not JSON →
//!   400, not an object or a missing/unknown/mistyped field → 422 naming the field (never echoing a value: a
//!   mistyped password must not come back in an error body).
//! * [`AuthSession`] — the caller's validated session, from `Authorization: Bearer`, else the
//!   session cookie, else `x-session-id`.
//! * [`FreshSession`] — the same, validated against the store itself and never the validation
//!   cache: for the privileged routes (admin, password change, account deletion).
//! * [`PresentedToken`] — the same credential, unvalidated and optional (login rotation).
//! * [`ClientMeta`] — address and `User-Agent` recorded with a new session, and the device
//!   token (header `sessiond-device-token`, else cookie `sessiond_device`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::cookie::{CookieSettings, Presented};
use super::AppState;
use crate::error::Error;
use crate::limits::ClientIp;
use crate::service::{Authenticated, ClientMeta};
use crate::session::SessionToken;
use crate::users::DeviceToken;

/// A JSON body, or our error shape.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        if !is_json(request.headers()) {
            return Err(Error::UnsupportedMediaType);
        }
        // Refuse a declared oversize body before reading any of it.
        let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > super::MAX_BODY_BYTES as u64) {
            return Err(Error::PayloadTooLarge);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge
            } else {
                Error::BadRequest("the request body could not be read".to_owned())
            }
        })?;
        // Every body of this API is an object. serde's derived structs would also accept an
        // array of their fields in order; refuse anything but an object up front.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                Ok(_) => Error::InvalidField { field: "body".to_owned(), detail: "must be a JSON object".to_owned() },
                Err(_) => Error::BadRequest("the body is not valid JSON".to_owned()),
            });
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
        deserializer.end().map_err(|_| Error::BadRequest("trailing characters after the JSON body".to_owned()))?;
        Ok(Self(value))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> Error {
    use serde_json::error::Category;
    let path = error.path().to_string();
    let inner = error.into_inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            Error::BadRequest(format!("the body is not valid JSON (line {}, column {})", inner.line(), inner.column()))
        }
        Category::Data => {
            let message = inner.to_string();
            let named = message.split('`').nth(1).map(|name| name.chars().take(64).collect::<String>());
            let (field, detail) = if message.starts_with("missing field") {
                (named.unwrap_or_else(|| path.clone()), "is required")
            } else if message.starts_with("unknown field") {
                (named.unwrap_or_else(|| path.clone()), "is not allowed")
            } else if message.starts_with("duplicate field") {
                (named.unwrap_or_else(|| path.clone()), "appears more than once")
            } else {
                (if path == "." { "body".to_owned() } else { path }, "has the wrong type")
            };
            Error::InvalidField { field, detail: detail.to_owned() }
        }
    }
}

/// Where a session credential came from: the cookie is ambient (a browser attaches it to
/// requests other sites start), the headers are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `Authorization: Bearer` or `x-session-id`.
    Header,
    /// The session cookie.
    Cookie,
}

/// The request's credential, in order of precedence: `Authorization`, the session cookie,
/// `x-session-id`. A malformed one, or the cookie more than once, is a 401.
fn credential(parts: &Parts, cookies: &CookieSettings) -> Option<Result<(SessionToken, Source), Error>> {
    let parse = |text: &str, source| SessionToken::parse(text.trim()).map(|t| (t, source)).ok_or(Error::Unauthorized);
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        return Some(match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => parse(token, Source::Header),
            _ => Err(Error::Unauthorized),
        });
    }
    match cookies.session_in(&parts.headers) {
        Presented::One(token) => return Some(parse(token, Source::Cookie)),
        Presented::Several => return Some(Err(Error::Unauthorized)),
        Presented::None => {}
    }
    if let Some(value) = parts.headers.get("x-session-id") {
        return Some(value.to_str().map_err(|_| Error::Unauthorized).and_then(|text| parse(text, Source::Header)));
    }
    None
}

/// The request's session token, whatever carried it (see [`credential`]).
pub(super) fn credential_token(parts: &Parts, cookies: &CookieSettings) -> Option<Result<SessionToken, Error>> {
    credential(parts, cookies).map(|found| found.map(|(token, _)| token))
}

/// The caller's live session. Rejects with 401 (missing, malformed, unknown, expired or
/// revoked alike) or 503 (store unavailable — never treated as valid).
pub struct AuthSession(pub Authenticated);

impl FromRequestParts<Arc<AppState>> for AuthSession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        validated(parts, state, false).await.map(Self)
    }
}

/// The presented credential, validated (`fresh`: against the store itself). A state-changing
/// request authenticated by the cookie must pass the cross-site check first, before the store
/// is asked anything.
async fn validated(parts: &Parts, state: &AppState, fresh: bool) -> Result<Authenticated, Error> {
    let token = match credential(parts, &state.cookie) {
        Some(Ok((token, source))) => {
            if source == Source::Cookie {
                state.csrf.check(parts)?;
            }
            token
        }
        Some(Err(error)) => {
            state.sessions.malformed_credential();
            return Err(error);
        }
        None => return Err(Error::Unauthorized),
    };
    if fresh {
        state.sessions.authenticate_fresh(&token).await
    } else {
        state.sessions.authenticate(&token).await
    }
}

/// The caller's live session as the store answers it now (see the module docs).
pub struct FreshSession(pub Authenticated);

impl FromRequestParts<Arc<AppState>> for FreshSession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        validated(parts, state, true).await.map(Self)
    }
}

/// A credential the request carried, if any (not validated).
pub struct PresentedToken(pub Option<SessionToken>);

impl FromRequestParts<Arc<AppState>> for PresentedToken {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        Ok(Self(credential(parts, &state.cookie).and_then(Result::ok).map(|(token, _)| token)))
    }
}

/// Where the request's credential came from, for answering in the same transport (a refresh
/// by cookie sets a cookie; one by header returns the token). `None`: no credential.
pub struct CredentialSource(pub Option<Source>);

impl FromRequestParts<Arc<AppState>> for CredentialSource {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        Ok(Self(credential(parts, &state.cookie).and_then(Result::ok).map(|(_, source)| source)))
    }
}

impl FromRequestParts<Arc<AppState>> for ClientMeta {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        let ip = match parts.extensions.get::<ClientIp>() {
            Some(client) => Some(client.0),
            None => parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip()),
        };
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .filter(|ua| !ua.is_empty())
            .map(str::to_owned);
        Ok(Self { ip, user_agent, device_token: device_token(&parts.headers, &state.cookie) })
    }
}

/// The device token a request carries: the header, else the cookie.
fn device_token(headers: &HeaderMap, cookies: &CookieSettings) -> Option<DeviceToken> {
    if let Some(value) = headers.get(super::cookie::DEVICE_HEADER) {
        return value.to_str().ok().and_then(DeviceToken::presented);
    }
    cookies.device_in(headers).and_then(DeviceToken::presented)
}
