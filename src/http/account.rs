//! `/v1/account/*`: the caller's own account — change the password, delete the account. Both
//! validate the session against the store itself ([`FreshSession`]) and ask for the password.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{issued_response, session_cleared};
use super::extract::{AppJson, CredentialSource, FreshSession};
use super::AppState;
use crate::error::{Error, Problem};
use crate::service::ClientMeta;

/// Body of `POST /v1/account/password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    #[schema(example = "correct horse battery")]
    current_password: String,
    /// The new one: the registration rules apply (at least 8 characters, at most 1024 bytes
    /// of UTF-8), and it must differ from the current one.
    #[schema(example = "a longer passphrase for a new year", min_length = 8, max_length = 1024)]
    new_password: String,
}

/// Body of `DELETE /v1/account`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// The account's password, confirming the deletion.
    #[schema(example = "correct horse battery")]
    password: String,
}

/// `POST /v1/account/password` → 200 with the rotated session, like a login.
#[utoipa::path(post, path = "/v1/account/password", tag = "account", operation_id = "change_password",
    summary = "Change the password",
    description = "Re-authenticates with the current password, stores the new one, ends every other session of the user and moves the calling session to a new token — one atomic step — answered like a login, in the transport the credential came in. Wrong current passwords count towards the login limits.",
    request_body(content = PasswordChange, example = json!({"current_password": "correct horse battery", "new_password": "a longer passphrase for a new year"})),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 200, description = "The new password is stored, every other session ended, and this session moved to a new token", body = crate::http::auth::SessionIssued),
        (status = 403, description = "The current password is wrong, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The password was changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or invalid (the problem names it) — including a `new_password` equal to `current_password`, which the schema cannot express", body = Problem, content_type = "application/problem+json"),
    ))]
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
#[utoipa::path(delete, path = "/v1/account", tag = "account", operation_id = "delete_account",
    summary = "Delete the account",
    description = "Re-authenticates with the password, then deletes the account, every session and all its state, and clears the session cookie.",
    request_body(content = Confirmation, example = json!({"password": "correct horse battery"})),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 204, description = "The account, every session and all its state are gone"),
        (status = 403, description = "The password is wrong, or a cross-site request", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    FreshSession(auth): FreshSession,
    AppJson(body): AppJson<Confirmation>,
) -> Result<Response, Error> {
    state.users.delete_account(&auth, body.password, &meta).await?;
    Ok(session_cleared(&state, StatusCode::NO_CONTENT.into_response()))
}
