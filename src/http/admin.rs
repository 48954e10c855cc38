//! `/v1/admin/*`: operations on other users, for the `admin` role only. Every route validates
//! the caller's session against the store itself ([`FreshSession`]), so a session that lost
//! the role is refused at its very next call, on every instance.

use std::sync::Arc;

use axum::extract::{MatchedPath, Path, State};
use axum::http::Method;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::FreshSession;
use super::AppState;
use crate::error::{Error, Problem};
use crate::service::{AdminService, ClientMeta, UserView};
use crate::session::Timestamp;

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    /// As given in the path.
    #[schema(example = "alice")]
    username: String,
    /// Sessions ended.
    #[schema(example = 2)]
    revoked: u64,
}

/// A user as `GET /v1/admin/users/{username}` shows it.
#[derive(Serialize, ToSchema)]
pub struct User {
    #[schema(example = "0b9c3a52-4c3e-4d57-9f3e-2a6f1f0c5d11")]
    user_id: String,
    #[schema(example = "alice")]
    username: String,
    #[schema(example = json!(["user"]))]
    roles: Vec<String>,
    disabled: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// Live sessions now.
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
#[utoipa::path(get, path = "/v1/admin/users/{username}", tag = "admin", operation_id = "get_user",
    summary = "Look a user up",
    description = "For the `admin` role; the session is validated against the store itself, never a cache.",
    params(("username" = String, Path, description = "The user, case-insensitively (a name no account can have is a 404)", pattern = "^[A-Za-z0-9._@-]{3,64}$", example = "alice")),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 403, description = "The caller lacks the `admin` role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
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
#[utoipa::path(post, path = "/v1/admin/users/{username}/disable", tag = "admin", operation_id = "disable_user",
    summary = "Disable a user",
    description = "Ends every session of the user and refuses their logins until enabled again (`POST …/enable`).",
    params(("username" = String, Path, description = "The user, case-insensitively (a name no account can have is a 404)", pattern = "^[A-Za-z0-9._@-]{3,64}$", example = "alice")),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 200, description = "Disabled: every session ended, login refused until enabled", body = User),
        (status = 403, description = "The caller lacks the `admin` role, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An administrator cannot disable their own account", body = Problem, content_type = "application/problem+json"),
    ))]
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
#[utoipa::path(put, path = "/v1/admin/users/{username}/roles/{role}", tag = "admin", operation_id = "grant_role",
    summary = "Grant a role",
    description = "Every session of the user carries the new roles from its next request on, on every instance. `DELETE` on the same path revokes the role.",
    params(("username" = String, Path, description = "The user, case-insensitively (a name no account can have is a 404)", pattern = "^[A-Za-z0-9._@-]{3,64}$", example = "alice"), ("role" = String, Path, description = "1–32 characters of a-z 0-9 _ . -", pattern = "^[a-z0-9_.-]{1,32}$", example = "admin")),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 200, description = "The user with the roles as they are now", body = User),
        (status = 422, description = "Not a valid role name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the `admin` role, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
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
#[utoipa::path(delete, path = "/v1/admin/users/{username}/sessions", tag = "admin", operation_id = "revoke_user_sessions",
    summary = "End every session of a user",
    description = "The user can log in again at once; disable the user to prevent that.",
    params(("username" = String, Path, description = "The user, case-insensitively (a name no account can have is a 404)", pattern = "^[A-Za-z0-9._@-]{3,64}$", example = "alice")),
    security(("bearer" = []), ("cookie" = []), ("session_header" = [])),
    responses(
        (status = 200, description = "Every session of the user is ended", body = Revoked),
        (status = 403, description = "The caller lacks the `admin` role, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
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
