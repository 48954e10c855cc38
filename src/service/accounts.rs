//! A user's own account: registering, changing the password, deleting the account.
//!
//! The last two need the password again (re-authentication) even though the caller holds a
//! session: a stolen session must not be enough to take an account over or destroy it. That
//! check goes through the same limits as a login, so it cannot be used to guess passwords.

use std::sync::Arc;

use uuid::Uuid;

use super::protection::{LoginProtection, Refused, Verified};
use super::sessions::{Authenticated, ClientMeta, Issued};
use crate::error::Error;
use crate::session::{SessionPolicy, SessionToken, Timestamp};
use crate::store::{NewPassword, PasswordChange, Store, UserRecord};
use crate::telemetry::audit;
use crate::telemetry::metrics::Metrics;
use crate::users::{Password, Passwords, Role, Username};

/// Account operations.
#[derive(Clone)]
pub struct UserService {
    store: Arc<dyn Store>,
    passwords: Arc<Passwords>,
    password_min_length: usize,
    metrics: Arc<Metrics>,
    protection: LoginProtection,
    policy: SessionPolicy,
}

/// What a re-authentication confirms (the audit trail's `action`).
#[derive(Clone, Copy)]
enum Action {
    PasswordChange,
    AccountDelete,
}

impl Action {
    fn label(self) -> &'static str {
        match self {
            Self::PasswordChange => "password_change",
            Self::AccountDelete => "account_delete",
        }
    }
}

impl UserService {
    /// Wire the service.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        passwords: Arc<Passwords>,
        password_min_length: usize,
        metrics: Arc<Metrics>,
        protection: LoginProtection,
        policy: SessionPolicy,
    ) -> Self {
        Self { store, passwords, password_min_length, metrics, protection, policy }
    }

    /// Create an account with the default role.
    ///
    /// # Errors
    /// 422 for an invalid username or password, 409 when the username is taken, 503 when the
    /// store is unavailable.
    pub async fn register(&self, username: &str, password: String, meta: &ClientMeta) -> Result<UserRecord, Error> {
        let result = self.register_inner(username, password).await;
        self.metrics.registration(match &result {
            Ok(_) => "success",
            Err(Error::UsernameTaken) => "conflict",
            Err(Error::InvalidField { .. }) => "invalid",
            Err(Error::RateLimited(_) | Error::Overloaded) => "rate_limited",
            Err(_) => "unavailable",
        });
        if let Ok(user) = &result {
            tracing::info!(user_id = %user.user_id, "user registered");
            audit::registered(&user.user_id, &user.username, meta.ip);
        }
        result
    }

    async fn register_inner(&self, username: &str, password: String) -> Result<UserRecord, Error> {
        let username =
            Username::parse(username).map_err(|detail| Error::InvalidField { field: "username".into(), detail })?;
        let password = Password::parse(password, self.password_min_length)
            .map_err(|detail| Error::InvalidField { field: "password".into(), detail })?;
        // A place in the hashing pool first: a registration the pool cannot take is refused
        // before it costs Redis work.
        let slot = self.passwords.reserve()?;
        // Hashed whether or not the name is taken, so that a taken name does not answer
        // sooner than a free one; the atomic insert decides.
        let password_hash = self.passwords.hash(slot, &password).await?;
        let record = UserRecord {
            user_id: Uuid::new_v4().to_string(),
            username: username.as_str().to_owned(),
            password_hash,
            roles: vec![Role::DEFAULT.to_owned()],
            created_at: Timestamp::now(),
            disabled: false,
        };
        if self.store.insert_user(&username.key(), &record).await? {
            Ok(record)
        } else {
            Err(Error::UsernameTaken)
        }
    }

    /// Check the caller's password again before `action`.
    async fn reauthenticate(
        &self,
        auth: &Authenticated,
        password: String,
        action: Action,
        meta: &ClientMeta,
    ) -> Result<Verified, Error> {
        let session = auth.session();
        if session.user_key.is_subject() {
            return Err(Error::Conflict(
                "this session belongs to an external subject, which has no password here: its backend manages the account",
            ));
        }
        let password = Password::unchecked(password);
        let checked =
            self.protection.check_password(session.user_key.as_str(), &password, meta.device_token.as_ref()).await;
        let reason = match checked {
            Ok(Ok(verified)) if verified.user.user_id == session.user_id => return Ok(verified),
            Ok(Ok(_) | Err(Refused::UnknownUser)) => "unknown_user",
            Ok(Err(refused)) => refused.reason(),
            Err(Error::RateLimited(decision)) => {
                audit::reauthentication_failed(
                    &session.user_id,
                    &session.username,
                    action.label(),
                    "rate_limited",
                    meta.ip,
                );
                return Err(Error::RateLimited(decision));
            }
            Err(error) => return Err(error),
        };
        audit::reauthentication_failed(&session.user_id, &session.username, action.label(), reason, meta.ip);
        Err(Error::ReauthenticationFailed)
    }

    /// Change the caller's password: every other session ends and the calling one moves to
    /// a new token, in one store step; answered like a login.
    ///
    /// # Errors
    /// 403 when `current` is wrong, 422 when `new` is not an acceptable password (or is the
    /// current one), 401 when the session ended meanwhile, 409 when the password was changed
    /// concurrently, 429 when the login limits refuse, 503 when the store is unavailable.
    pub async fn change_password(
        &self,
        auth: &Authenticated,
        current: String,
        new: String,
        meta: &ClientMeta,
    ) -> Result<Issued, Error> {
        let invalid = |detail: String| Error::InvalidField { field: "new_password".into(), detail };
        if new == current {
            return Err(invalid("must differ from the current password".to_owned()));
        }
        let new = Password::parse(new, self.password_min_length).map_err(invalid)?;
        let verified = self.reauthenticate(auth, current, Action::PasswordChange, meta).await?;
        let slot = self.passwords.reserve()?;
        let new_hash = self.passwords.hash(slot, &new).await?;
        let session = auth.session();
        let (token, hash) =
            SessionToken::generate_in(session.user_key.shard()).map_err(|e| Error::Internal(e.to_string()))?;
        let change = NewPassword {
            user: &session.user_key,
            expected: &verified.user.password_hash,
            hash: &new_hash,
            current: &auth.hash,
            new: &hash,
            now: Timestamp::now(),
            slide: self.policy.slide_now(),
        };
        let changed = self.store.change_password(&change).await?;
        match changed {
            PasswordChange::Changed { session, revoked } => {
                self.metrics.sessions_revoked(super::RevokeReason::PasswordChange.label(), revoked);
                tracing::info!(user_id = %session.user_id, revoked, "password changed");
                audit::password_changed(
                    &session.user_id,
                    &session.username,
                    session.session_id.as_str(),
                    revoked,
                    meta.ip,
                );
                let device = Some(self.protection.device_token(&verified)?);
                Ok(Issued { token, session: *session, device })
            }
            PasswordChange::SessionEnded => Err(Error::Unauthorized),
            PasswordChange::Conflict => Err(Error::Conflict("The password was changed meanwhile; sign in again.")),
        }
    }

    /// Delete the caller's account with every session and all its state.
    ///
    /// # Errors
    /// 403 when the password is wrong, 429 when the login limits refuse, 503 when the store is
    /// unavailable.
    pub async fn delete_account(&self, auth: &Authenticated, password: String, meta: &ClientMeta) -> Result<(), Error> {
        let verified = self.reauthenticate(auth, password, Action::AccountDelete, meta).await?;
        // `None`: deleted meanwhile by a concurrent request; the outcome is the same.
        let revoked = self.store.delete_user(&verified.key).await?.unwrap_or(0);
        self.metrics.sessions_revoked(super::RevokeReason::AccountDeleted.label(), revoked);
        tracing::info!(user_id = %verified.user.user_id, revoked, "account deleted");
        audit::account_deleted(&verified.user.user_id, &verified.user.username, revoked, meta.ip);
        Ok(())
    }
}
