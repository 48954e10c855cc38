//! `/v1/admin/*`: operations on other users, for the `admin` role only. Every route validates
//! the caller's session against the store itself ([`FreshSession`]), so a session that lost
//! the role is refused at its very next call, on every instance.

use std::sync::Arc;

use axum::extract::{MatchedPath, Path, State};
use axum::http::Method;
use axum::Json;
use serde::Serialize;

use super::extract::FreshSession;
use super::AppState;
use crate::error::Error;
use crate::service::{AdminService, ClientMeta, UserView};
use crate::session::Timestamp;

#[derive(Serialize)]
pub struct Revoked {
    username: String,
    revoked: u64,
}

/// A user as `GET /v1/admin/users/{username}` shows it.
#[derive(Serialize)]
pub struct User {
    user_id: String,
    username: String,
    roles: Vec<String>,
    disabled: bool,
    created_at: Timestamp,
    sessions: u64,
}

impl From<UserView> for User {
    fn from(view: UserView) -> Self {
        Self {
            user_id: view.user_id,
            username: view.username,
            roles: view.roles,
            disabled: view.disabled,
            created_at: view.created_at,
            sessions: view.sessions,
        }
    }
}

/// `GET /v1/admin/users/{username}` → 200; 404 for an unknown user.
pub async fn user(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    FreshSession(auth): FreshSession,
    Path(username): Path<String>,
) -> Result<Json<User>, Error> {
    AdminService::authorize(&auth, &meta)?;
    Ok(Json(state.admin.view(&username).await?.into()))
}

/// `POST /v1/admin/users/{username}/disable` (every session ends) and `…/enable` → 200 with
/// the user.
pub async fn set_disabled(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    FreshSession(auth): FreshSession,
    route: MatchedPath,
    Path(username): Path<String>,
) -> Result<Json<User>, Error> {
    AdminService::authorize(&auth, &meta)?;
    let disabled = route.as_str().ends_with("/disable");
    state.admin.set_disabled(auth.actor(&meta), &username, disabled).await?;
    Ok(Json(state.admin.view(&username).await?.into()))
}

/// `PUT /v1/admin/users/{username}/roles/{role}` (grant) and `DELETE …` (revoke) → 200 with
/// the user.
pub async fn set_role(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    FreshSession(auth): FreshSession,
    method: Method,
    Path((username, role)): Path<(String, String)>,
) -> Result<Json<User>, Error> {
    AdminService::authorize(&auth, &meta)?;
    state.admin.set_role(auth.actor(&meta), &username, &role, method == Method::PUT).await?;
    Ok(Json(state.admin.view(&username).await?.into()))
}

/// `DELETE /v1/admin/users/{username}/sessions` → 200 with the number revoked; 403 without
/// the `admin` role; 404 for an unknown user.
pub async fn revoke_user_sessions(
    State(state): State<Arc<AppState>>,
    meta: ClientMeta,
    FreshSession(auth): FreshSession,
    Path(username): Path<String>,
) -> Result<Json<Revoked>, Error> {
    AdminService::authorize(&auth, &meta)?;
    let revoked = state.admin.revoke_sessions(auth.actor(&meta), &username).await?;
    Ok(Json(Revoked { username, revoked }))
}
