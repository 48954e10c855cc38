//! `/v1/account/*`: the caller's own account — change the password, delete the account. Both
//! validate the session against the store itself ([`FreshSession`]) and ask for the password.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;

use super::auth::{issued_response, session_cleared};
use super::extract::{AppJson, CredentialSource, FreshSession};
use super::AppState;
use crate::error::Error;
use crate::service::ClientMeta;

/// Body of `POST /v1/account/password`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Body of `DELETE /v1/account`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    password: String,
}

/// `POST /v1/account/password` → 200 with the rotated session, like a login.
pub async fn change_password(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    source: CredentialSource,
    FreshSession(auth): FreshSession,
    AppJson(body): AppJson<PasswordChange>,
) -> Result<Response, Error> {
    let issued = state.users.change_password(&auth, body.current_password, body.new_password, &meta).await?;
    Ok(issued_response(&state, &issued, source.into()))
}

/// `DELETE /v1/account` → 204 and a cleared cookie.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    FreshSession(auth): FreshSession,
    AppJson(body): AppJson<Confirmation>,
) -> Result<Response, Error> {
    state.users.delete_account(&auth, body.password, &meta).await?;
    Ok(session_cleared(&state, StatusCode::NO_CONTENT.into_response()))
}
