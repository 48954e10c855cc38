//! The session use cases: login, validate, refresh (rotate), logout, list, revoke.
//!
//! Handlers call these and nothing else; each method is a few store calls with the policy
//! decided by `session` (the rules) applied here.

use std::sync::Arc;

use super::protection::{account_key, LoginProtection};
use crate::error::Error;
use crate::session::{device, SessionId, SessionPolicy, SessionToken, Timestamp, TokenHash};
use crate::store::{GuardEvent, Lookup, SessionRecord, Store, StoreError, Validated};
use crate::telemetry::metrics::Metrics;
use crate::users::{Password, Passwords, Role, UserKey, Username};

/// Why a session ended (the `reason` label of `sessiond_sessions_revoked_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeReason {
    /// The client logged out.
    Logout,
    /// The client logged out everywhere.
    LogoutAll,
    /// An administrator revoked it.
    Admin,
    /// A new login or refresh replaced it.
    Rotation,
    /// The per-user cap pushed it out.
    Limit,
}

/// What we record about the client at login.
#[derive(Clone, Debug, Default)]
pub struct ClientMeta {
    /// Client address.
    pub ip: Option<std::net::IpAddr>,
    /// The `User-Agent` header; only its device label is kept.
    pub user_agent: Option<String>,
}

/// A session handed to a client: the secret (shown once) and the record.
#[derive(Debug)]
pub struct Issued {
    /// The bearer secret.
    pub token: SessionToken,
    /// The stored session.
    pub session: SessionRecord,
}

/// A validated request's session.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// Digest of the presented token.
    pub hash: TokenHash,
    /// The session (after sliding) and its owner's roles, as the store or the validation
    /// cache answered (shared, not copied).
    pub validated: Arc<Validated>,
}

impl RevokeReason {
    /// The metric label.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::Admin => "admin",
            Self::Rotation => "rotation",
            Self::Limit => "limit",
        }
    }
}

impl Authenticated {
    /// The session (after sliding).
    #[must_use]
    pub fn session(&self) -> &SessionRecord {
        &self.validated.session
    }

    /// The owner's current roles.
    #[must_use]
    pub fn roles(&self) -> &[String] {
        &self.validated.roles
    }

    /// Whether the owner holds `role`.
    #[must_use]
    pub fn has_role(&self, role: &str) -> bool {
        self.roles().iter().any(|r| r == role)
    }
}

/// Session operations.
#[derive(Clone)]
pub struct SessionService {
    store: Arc<dyn Store>,
    passwords: Arc<Passwords>,
    policy: SessionPolicy,
    metrics: Arc<Metrics>,
    protection: LoginProtection,
}

impl SessionService {
    /// Wire the service.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        passwords: Arc<Passwords>,
        policy: SessionPolicy,
        metrics: Arc<Metrics>,
        protection: LoginProtection,
    ) -> Self {
        Self { store, passwords, policy, metrics, protection }
    }

    fn revoked(&self, reason: RevokeReason, ids: &[&SessionId]) {
        for id in ids {
            tracing::info!(session_id = id.as_str(), reason = reason.label(), "session revoked");
        }
        self.metrics.sessions_revoked(reason.label(), ids.len() as u64);
    }

    fn revoked_many(&self, reason: RevokeReason, user_id: &str, count: u64) {
        tracing::info!(user_id, revoked = count, reason = reason.label(), "sessions revoked");
        self.metrics.sessions_revoked(reason.label(), count);
    }

    /// Check credentials and open a brand-new session. A session the request already carried
    /// (`previous`) is revoked: a login never adopts or keeps a client-supplied session.
    ///
    /// # Errors
    /// 401 for any wrong username/password combination (same body, same work), 503 when the
    /// store is unavailable.
    pub async fn login(
        &self,
        username: &str,
        password: Password,
        meta: ClientMeta,
        previous: Option<SessionToken>,
    ) -> Result<Issued, Error> {
        let result = self.login_inner(username, password, meta, previous).await;
        self.metrics.login(match &result {
            Ok(_) => "success",
            Err(Error::InvalidCredentials) => "invalid_credentials",
            Err(Error::RateLimited(_) | Error::Overloaded) => "rate_limited",
            Err(_) => "unavailable",
        });
        result
    }

    async fn login_inner(
        &self,
        username: &str,
        password: Password,
        meta: ClientMeta,
        previous: Option<SessionToken>,
    ) -> Result<Issued, Error> {
        if let Some(decision) = self.protection.account.check(account_key(username)) {
            if !decision.allowed {
                self.metrics.rate_limited(decision.limiter);
                return Err(Error::RateLimited(decision));
            }
        }
        // A place in the hashing pool before any Redis work: when the pool is full, a flood of
        // logins is refused from memory and costs validations nothing.
        let slot = self.passwords.reserve()?;
        let key = Username::parse(username).ok().map(|name| name.key());
        let guard = self.protection.guard.zip(key.clone());
        if let Some((guard, key)) = &guard {
            let wait_ms = self.store.login_guard(key, Timestamp::now(), guard.rule, GuardEvent::Check).await?;
            if wait_ms > 0 {
                self.metrics.rate_limited("login_guard");
                return Err(Error::RateLimited(guard.refusal(wait_ms)));
            }
        }
        let user = match &key {
            Some(key) => self.store.find_user(key).await?,
            None => None,
        };
        // Always verify (against a dummy hash for unknown users) so timing does not tell.
        let verified = self.passwords.verify(slot, &password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let (Some(user), Some(key), true) = (user, key, verified) else {
            // Unknown accounts are counted too: a guard only for real ones would reveal which exist.
            if let Some((guard, key)) = &guard {
                self.store.login_guard(key, Timestamp::now(), guard.rule, GuardEvent::Failure).await?;
            }
            return Err(Error::InvalidCredentials);
        };
        if let Some((guard, key)) = &guard {
            self.store.login_guard(key, Timestamp::now(), guard.rule, GuardEvent::Success).await?;
        }
        if let Some(previous) = previous {
            if let Some(id) = self.store.revoke_session(&previous.hash()).await? {
                self.revoked(RevokeReason::Rotation, &[&id]);
            }
        }
        let now = Timestamp::now();
        let (idle_expires_at, expires_at) = self.policy.deadlines_at_login(now);
        let session = SessionRecord {
            session_id: SessionId::generate().map_err(|e| Error::Internal(e.to_string()))?,
            user_id: user.user_id,
            username: user.username,
            user_key: key,
            created_at: now,
            last_seen_at: now,
            idle_expires_at,
            expires_at,
            ip: meta.ip,
            device: meta.user_agent.as_deref().and_then(device::label),
        };
        let (token, hash) =
            SessionToken::generate_in(session.user_key.shard()).map_err(|e| Error::Internal(e.to_string()))?;
        let evicted = self.store.create_session(&hash, &session, self.policy.max_sessions_per_user, now).await?;
        self.revoked(RevokeReason::Limit, &evicted.iter().collect::<Vec<_>>());
        self.metrics.session_created();
        tracing::info!(session_id = session.session_id.as_str(), user_id = %session.user_id, "session created");
        Ok(Issued { token, session })
    }

    /// Validate a token, sliding its idle deadline when due.
    ///
    /// # Errors
    /// 401 when the token is unknown, expired or revoked; 503 when the store is unavailable.
    pub async fn authenticate(&self, token: &SessionToken) -> Result<Authenticated, Error> {
        let hash = token.hash();
        let (now, slide) = (Timestamp::now(), self.policy.slide());
        let lookup = match self.store.cached_validation(&hash, now, slide) {
            Some(hit) => Ok(hit),
            None => self.store.touch_session(&hash, now, slide).await,
        };
        self.metrics.validation(match &lookup {
            Ok(Lookup::Found(_)) => "valid",
            Ok(Lookup::Missing) => "invalid",
            Ok(Lookup::Expired) => "expired",
            Err(_) => "unavailable",
        });
        match lookup? {
            Lookup::Found(validated) => Ok(Authenticated { hash, validated }),
            Lookup::Expired | Lookup::Missing => Err(Error::Unauthorized),
        }
    }

    /// Count a credential that could not even be parsed as a failed validation.
    pub fn malformed_credential(&self) {
        self.metrics.validation("invalid");
    }

    /// Issue a new token for the caller's session; the old token stops working at once.
    /// `created_at` and the absolute deadline stay; the idle deadline slides.
    ///
    /// # Errors
    /// 401 when the session ended meanwhile; 503 when the store is unavailable.
    pub async fn refresh(&self, auth: &Authenticated) -> Result<Issued, Error> {
        let (token, hash) =
            SessionToken::generate_in(auth.session().user_key.shard()).map_err(|e| Error::Internal(e.to_string()))?;
        match self.store.rotate_session(&auth.hash, &hash, Timestamp::now(), self.policy.slide_now()).await? {
            Lookup::Found(rotated) => {
                let session = rotated.session.clone();
                tracing::info!(session_id = session.session_id.as_str(), "session token rotated");
                Ok(Issued { token, session })
            }
            Lookup::Expired | Lookup::Missing => Err(Error::Unauthorized),
        }
    }

    /// End the caller's session.
    ///
    /// # Errors
    /// 503 when the store is unavailable.
    ///
    /// The session is ended by its id, not by the presented token: a refresh racing this
    /// logout may already have moved the session to a new token, and an acknowledged logout
    /// must end the session whichever token it now answers to.
    pub async fn logout(&self, auth: &Authenticated) -> Result<(), Error> {
        let id = &auth.session().session_id;
        if self.store.revoke_session_by_id(&auth.session().user_key, id).await? {
            self.revoked(RevokeReason::Logout, &[id]);
        }
        Ok(())
    }

    /// The caller's live sessions, newest first.
    ///
    /// # Errors
    /// 503 when the store is unavailable.
    pub async fn list(&self, auth: &Authenticated) -> Result<Vec<SessionRecord>, Error> {
        let mut sessions = self.store.list_sessions(&auth.session().user_key, Timestamp::now()).await?;
        sessions.sort_by(|a, b| (b.created_at, &b.session_id).cmp(&(a.created_at, &a.session_id)));
        Ok(sessions)
    }

    /// Revoke one of the caller's sessions by its public id.
    ///
    /// # Errors
    /// 404 when the id is malformed or not one of the caller's live sessions.
    pub async fn revoke(&self, auth: &Authenticated, session_id: &str) -> Result<(), Error> {
        let id = SessionId::parse(session_id).ok_or(Error::NotFound("session"))?;
        if self.store.revoke_session_by_id(&auth.session().user_key, &id).await? {
            self.revoked(RevokeReason::Logout, &[&id]);
            Ok(())
        } else {
            Err(Error::NotFound("session"))
        }
    }

    /// Log the caller out everywhere (optionally keeping the calling session).
    ///
    /// # Errors
    /// 503 when the store is unavailable.
    pub async fn revoke_all(&self, auth: &Authenticated, except_current: bool) -> Result<u64, Error> {
        let keep = except_current.then_some(&auth.session().session_id);
        let revoked = self.store.revoke_user_sessions(&auth.session().user_key, keep).await?;
        self.revoked_many(RevokeReason::LogoutAll, &auth.session().user_id, revoked);
        Ok(revoked)
    }

    /// Revoke every session of `username` (admin only).
    ///
    /// # Errors
    /// 403 without the admin role, 404 for an unknown user, 503 when the store is unavailable.
    pub async fn revoke_user(&self, auth: &Authenticated, username: &str) -> Result<u64, Error> {
        if !auth.has_role(Role::ADMIN) {
            return Err(Error::Forbidden);
        }
        let key: UserKey = Username::parse(username).map_err(|_| Error::NotFound("user"))?.key();
        if self.store.find_user(&key).await?.is_none() {
            return Err(Error::NotFound("user"));
        }
        let revoked = self.store.revoke_user_sessions(&key, None).await?;
        tracing::info!(admin_user_id = %auth.session().user_id, "admin revoked a user's sessions");
        self.revoked_many(RevokeReason::Admin, "-", revoked);
        Ok(revoked)
    }

    /// Whether the store answers (for `/readyz`).
    ///
    /// # Errors
    /// The store's error.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}
