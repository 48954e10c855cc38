//! `/v1/admin/*`: operations on other users' sessions, for the `admin` role only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use super::extract::AuthSession;
use super::AppState;
use crate::error::Error;

#[derive(Serialize)]
pub struct Revoked {
    username: String,
    revoked: u64,
}

/// `DELETE /v1/admin/users/{username}/sessions` → 200 with the number revoked; 403 without
/// the `admin` role; 404 for an unknown user.
pub async fn revoke_user_sessions(
    State(state): State<Arc<AppState>>,
    AuthSession(auth): AuthSession,
    Path(username): Path<String>,
) -> Result<Json<Revoked>, Error> {
    let revoked = state.sessions.revoke_user(&auth, &username).await?;
    Ok(Json(Revoked { username, revoked }))
}
