//! Access tokens: `POST /v1/auth/token` mints one from the caller's session, and
//! `GET /.well-known/jwks.json` publishes the keys that verify them (see [`crate::tokens`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::FreshSession;
use super::AppState;
use crate::error::{Error, Problem};
use crate::session::Timestamp;
use crate::tokens::{MintError, JWKS_MAX_AGE};

/// `POST /v1/auth/token`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Minted {
    /// A compact JWS (EdDSA): `iss`, `aud`, `sub`, `name`, `roles`, `sid`, `iat`, `nbf`, `exp`, `jti`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until `exp`.
    #[schema(example = 300)]
    expires_in: u64,
}

/// `POST /v1/auth/token` → 200 with a short-lived access token for the caller's session. The
/// session is read from the store itself, so an ended one cannot mint.
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth",
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 200, description = "A signed access token; it stays valid until its `exp` even if the session ends", body = Minted),
        (status = 403, description = "A cookie-authenticated request another site started", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn mint(State(state): State<Arc<AppState>>, FreshSession(auth): FreshSession) -> Result<Json<Minted>, Error> {
    match state.tokens.mint(&auth, Timestamp::now()) {
        Ok(token) => Ok(Json(Minted { access_token: token.token, token_type: "Bearer", expires_in: token.expires_in })),
        // A session that ends within the second is as good as ended.
        Err(MintError::SessionEnding) => Err(Error::Unauthorized),
        Err(MintError::Signing(detail)) => Err(Error::Internal(detail)),
    }
}

/// `GET /.well-known/jwks.json` → the public keys (RFC 7517), cacheable for a minute.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The key set that verifies access tokens (newest first)", body = Object)))]
pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let max_age = format!("public, max-age={}", JWKS_MAX_AGE.as_secs());
    let mut response = Json(state.tokens.jwks()).into_response();
    if let Ok(value) = HeaderValue::from_str(&max_age) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}
