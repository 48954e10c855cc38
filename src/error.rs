//! The one error type at the HTTP edge, rendered as RFC 9457 `application/problem+json`.
//!
//! Handlers and extractors return [`Error`]; nothing else decides a status code. Messages are
//! written here, once, so that no handler can leak a token, a password or a store detail into
//! a response body, and so that every 401 looks exactly like every other 401.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// Every way a request can fail, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON, or not parseable.
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// The JSON is well-formed but a field is missing, unknown or invalid.
    #[error("invalid field `{field}`: {detail}")]
    InvalidField { field: String, detail: String },
    /// No credential, or one that is invalid, expired or revoked (deliberately indistinguishable).
    #[error("unauthenticated")]
    Unauthorized,
    /// A backend route without a valid API key.
    #[error("backend unauthenticated")]
    BackendUnauthorized,
    /// Username or password wrong (deliberately indistinguishable).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Authenticated, but the role is missing.
    #[error("forbidden")]
    Forbidden,
    /// A cookie-authenticated request that another site started (CSRF).
    #[error("cross-site request")]
    CrossSiteRequest,
    /// The password given to confirm a sensitive operation is wrong.
    #[error("re-authentication failed")]
    ReauthenticationFailed,
    /// The request contradicts the resource's state (the sentence says how).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The resource does not exist, or is not the caller's.
    #[error("not found")]
    NotFound(&'static str),
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The instance is shutting down or its store does not answer.
    #[error("not ready: {0}")]
    NotReady(&'static str),
    /// The username is taken.
    #[error("conflict")]
    UsernameTaken,
    /// The body is larger than the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// `Content-Type` is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The request took longer than the request timeout.
    #[error("request timeout")]
    RequestTimeout,
    /// A rate limit or the failed-login guard refused the request.
    #[error("rate limited by {}", .0.limiter)]
    RateLimited(crate::limits::Decision),
    /// Too many password hashes are already waiting: shed load instead of queueing.
    #[error("overloaded")]
    Overloaded,
    /// The store did not answer in time or is unreachable.
    #[error("store unavailable: {0}")]
    Unavailable(#[from] StoreError),
    /// Something that should not happen; details go to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::users::HashError> for Error {
    fn from(error: crate::users::HashError) -> Self {
        match error {
            crate::users::HashError::Overloaded => Self::Overloaded,
            crate::users::HashError::Failed(detail) => Self::Internal(detail),
        }
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:sessiond:problem:<slug>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:sessiond:problem:unauthenticated", format = "uri")]
    pub kind: String,
    #[schema(value_type = String, example = "Unauthenticated")]
    pub title: &'static str,
    /// The HTTP status, again.
    #[schema(example = 401, minimum = 100, maximum = 599)]
    pub status: u16,
    #[schema(
        example = "A valid session is required: send it as `Authorization: Bearer <token>` or the session cookie."
    )]
    pub detail: String,
}

impl Error {
    /// The status code this error answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized | Self::InvalidCredentials | Self::BackendUnauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::ReauthenticationFailed | Self::CrossSiteRequest => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UsernameTaken => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document sent to the client.
    #[must_use]
    pub fn problem(&self) -> Problem {
        let (slug, title, detail) = match self {
            Self::BadRequest(detail) => ("malformed-request", "Malformed request", detail.clone()),
            Self::InvalidField { field, detail } => ("invalid-field", "Invalid field", format!("`{field}`: {detail}")),
            Self::Unauthorized => (
                "unauthenticated",
                "Unauthenticated",
                "A valid session is required: send it as `Authorization: Bearer <token>` or the session cookie."
                    .to_owned(),
            ),
            Self::BackendUnauthorized => (
                "backend-unauthenticated",
                "Unauthenticated",
                "A backend API key is required: send it as `Authorization: ApiKey <key>` or `X-Api-Key`.".to_owned(),
            ),
            Self::InvalidCredentials => {
                ("invalid-credentials", "Invalid credentials", "The username or password is incorrect.".to_owned())
            }
            Self::Forbidden => {
                ("forbidden", "Forbidden", "This operation needs a role the caller does not have.".to_owned())
            }
            Self::CrossSiteRequest => (
                "cross-site-request",
                "Cross-site request",
                "A request authenticated by the session cookie must come from this site's own pages.".to_owned(),
            ),
            Self::ReauthenticationFailed => (
                "reauthentication-failed",
                "Re-authentication failed",
                "The password given to confirm this operation is incorrect.".to_owned(),
            ),
            Self::Conflict(why) => ("conflict", "Conflict", (*why).to_owned()),
            Self::NotFound(what) => ("not-found", "Not found", format!("No such {what}.")),
            Self::MethodNotAllowed => {
                ("method-not-allowed", "Method not allowed", "This route does not accept that method.".to_owned())
            }
            Self::NotReady(why) => ("not-ready", "Not ready", format!("This instance is not ready: {why}.")),
            Self::UsernameTaken => {
                ("username-taken", "Username taken", "That username is already registered.".to_owned())
            }
            Self::PayloadTooLarge => {
                ("payload-too-large", "Payload too large", "The request body exceeds 16 KiB.".to_owned())
            }
            Self::UnsupportedMediaType => (
                "unsupported-media-type",
                "Unsupported media type",
                "The request body must be sent as `Content-Type: application/json`.".to_owned(),
            ),
            Self::RequestTimeout => ("request-timeout", "Request timeout", "The request took too long.".to_owned()),
            Self::RateLimited(decision) => {
                ("rate-limited", "Too many requests", format!("Too many requests; retry in {} s.", decision.reset_secs))
            }
            Self::Overloaded => {
                ("overloaded", "Service overloaded", "Too many logins are being processed; retry shortly.".to_owned())
            }
            Self::Unavailable(_) => {
                ("unavailable", "Service unavailable", "The session store is unavailable; retry shortly.".to_owned())
            }
            Self::Internal(_) => ("internal", "Internal error", "An unexpected error occurred.".to_owned()),
        };
        Problem { kind: format!("urn:sessiond:problem:{slug}"), title, status: self.status().as_u16(), detail }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            // Each within a per-second budget; the metrics count every one.
            Self::Unavailable(error) => {
                if let Some(suppressed) = crate::telemetry::log_budget::STORE_UNAVAILABLE.take() {
                    tracing::warn!(%error, suppressed, "store unavailable");
                }
            }
            Self::Internal(error) => {
                if let Some(suppressed) = crate::telemetry::log_budget::INTERNAL_ERRORS.take() {
                    tracing::error!(%error, suppressed, "internal error");
                }
            }
            _ => {}
        }
        let status = self.status();
        let body = match serde_json::to_vec(&self.problem()) {
            Ok(body) => body,
            Err(_) => b"{\"type\":\"urn:sessiond:problem:internal\",\"title\":\"Internal error\",\"status\":500,\"detail\":\"\"}".to_vec(),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if matches!(self, Self::BackendUnauthorized) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("ApiKey"));
        } else if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // The request body may be unread: tell keep-alive clients this connection ends here,
        // rather than letting their next request fail on it.
        if matches!(self, Self::PayloadTooLarge | Self::UnsupportedMediaType | Self::RequestTimeout) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::RateLimited(decision) = &self {
            crate::limits::headers::insert_headers(headers, &[*decision]);
            if let Ok(value) = HeaderValue::from_str(&decision.reset_secs.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
