//! Administrators' operations on other users: look one up, disable and enable, grant and
//! revoke roles, end their sessions. The same code serves the admin API (an actor with the
//! `admin` role) and the operator command line (`sessiond admin …`), and every change is in
//! the audit trail with its actor and target.

use std::sync::Arc;

use super::sessions::RevokeReason;
use crate::error::Error;
use crate::session::Timestamp;
use crate::store::Store;
use crate::telemetry::audit::{self, Actor};
use crate::telemetry::metrics::Metrics;
use crate::users::{Role, UserKey, Username};

/// A user as an administrator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserView {
    /// Public id.
    pub user_id: String,
    /// The username as spelled.
    pub username: String,
    /// Current roles.
    pub roles: Vec<String>,
    /// Whether login is refused.
    pub disabled: bool,
    /// When the account was created.
    pub created_at: Timestamp,
    /// Live sessions now.
    pub sessions: u64,
}

/// Admin operations. Callers check the actor's right first (see [`AdminService::authorize`]).
#[derive(Clone)]
pub struct AdminService {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

/// A user named in a path or on the command line: an invalid name is no such user.
fn target(username: &str) -> Result<UserKey, Error> {
    Username::parse(username).map(|name| name.key()).map_err(|_| Error::NotFound("user"))
}

impl AdminService {
    /// Wire the service.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }

    /// Whether the caller may use the admin API; a refusal is in the audit trail.
    ///
    /// # Errors
    /// 403 without the `admin` role.
    pub fn authorize(auth: &super::Authenticated, meta: &super::ClientMeta) -> Result<(), Error> {
        if auth.has_role(Role::ADMIN) {
            Ok(())
        } else {
            audit::access_denied(auth.actor(meta), Role::ADMIN);
            Err(Error::Forbidden)
        }
    }

    /// The user's account and live-session count.
    ///
    /// # Errors
    /// 404 for an unknown user, 503 when the store is unavailable.
    pub async fn view(&self, username: &str) -> Result<UserView, Error> {
        let key = target(username)?;
        let user = self.store.find_user(&key).await?.ok_or(Error::NotFound("user"))?;
        let sessions = self.store.list_sessions(&key, Timestamp::now()).await?.len() as u64;
        Ok(UserView {
            user_id: user.user_id,
            username: user.username,
            roles: user.roles,
            disabled: user.disabled,
            created_at: user.created_at,
            sessions,
        })
    }

    /// Disable (every session ends in the same step) or enable the user. Returns how many
    /// sessions ended.
    ///
    /// # Errors
    /// 404 for an unknown user, 409 for an actor disabling their own account, 503 when the
    /// store is unavailable.
    pub async fn set_disabled(&self, actor: Actor<'_>, username: &str, disabled: bool) -> Result<u64, Error> {
        let key = target(username)?;
        if disabled && actor.user_id.is_some() && actor.name.eq_ignore_ascii_case(key.as_str()) {
            return Err(Error::Conflict("An administrator cannot disable their own account."));
        }
        let revoked = self.store.set_disabled(&key, disabled).await?.ok_or(Error::NotFound("user"))?;
        if disabled {
            self.metrics.sessions_revoked(RevokeReason::Disabled.label(), revoked);
            tracing::info!(revoked, "user disabled");
            audit::admin("admin.disable", actor, key.as_str(), None, Some(revoked));
        } else {
            tracing::info!("user enabled");
            audit::admin("admin.enable", actor, key.as_str(), None, None);
        }
        Ok(revoked)
    }

    /// Grant or revoke `role`. Every session of the user carries the new roles from the next
    /// request on, on every instance.
    ///
    /// # Errors
    /// 422 for an invalid role name, 404 for an unknown user, 503 when the store is unavailable.
    pub async fn set_role(&self, actor: Actor<'_>, username: &str, role: &str, granted: bool) -> Result<(), Error> {
        let key = target(username)?;
        let role = Role::parse(role).map_err(|detail| Error::InvalidField { field: "role".into(), detail })?;
        if !self.store.set_role(&key, role.as_str(), granted).await? {
            return Err(Error::NotFound("user"));
        }
        let event = if granted { "admin.role_grant" } else { "admin.role_revoke" };
        tracing::info!(role = role.as_str(), granted, "role changed");
        audit::admin(event, actor, key.as_str(), Some(role.as_str()), None);
        Ok(())
    }

    /// End every session of the user.
    ///
    /// # Errors
    /// 404 for an unknown user, 503 when the store is unavailable.
    pub async fn revoke_sessions(&self, actor: Actor<'_>, username: &str) -> Result<u64, Error> {
        let key = target(username)?;
        if self.store.find_user(&key).await?.is_none() {
            return Err(Error::NotFound("user"));
        }
        let revoked = self.store.revoke_user_sessions(&key, None).await?;
        self.metrics.sessions_revoked(RevokeReason::Admin.label(), revoked);
        tracing::info!(revoked, "admin revoked a user's sessions");
        audit::admin("admin.sessions_revoke", actor, key.as_str(), None, Some(revoked));
        Ok(revoked)
    }
}
