//! The session use cases: login, validate, refresh (rotate), logout, list, revoke.
//!
//! Handlers call these and nothing else; each method is a few store calls with the policy
//! decided by `session` (the rules) applied here.

use std::sync::Arc;

use super::protection::LoginProtection;
use crate::error::Error;
use crate::session::{device, SessionId, SessionPolicy, SessionToken, Timestamp, TokenHash};
use crate::store::{Lookup, SessionRecord, Store, StoreError, Validated};
use crate::telemetry::audit::{self, Actor};
use crate::telemetry::metrics::Metrics;
use crate::users::{DeviceToken, Password, Subject, UserKey, Username};

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
    /// The owner changed the password (every other session ends).
    PasswordChange,
    /// The owner deleted the account.
    AccountDeleted,
    /// An administrator disabled the account.
    Disabled,
    /// A trusted backend ended it (backend API).
    Backend,
}

/// What we know about the client of a request: recorded with a new session, named in the
/// audit trail, and (the device token) weighed by the login limits.
#[derive(Clone, Debug, Default)]
pub struct ClientMeta {
    /// Client address.
    pub ip: Option<std::net::IpAddr>,
    /// The `User-Agent` header; only its device label is kept.
    pub user_agent: Option<String>,
    /// The device token the client presented, if any (not verified yet).
    pub device_token: Option<DeviceToken>,
}

/// A session handed to a client: the secret (shown once) and the record.
#[derive(Debug)]
pub struct Issued {
    /// The bearer secret.
    pub token: SessionToken,
    /// The stored session.
    pub session: SessionRecord,
    /// A device token for the client, after a password was checked.
    pub device: Option<DeviceToken>,
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
            Self::PasswordChange => "password_change",
            Self::AccountDeleted => "account_deleted",
            Self::Disabled => "disabled",
            Self::Backend => "backend",
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

    /// The owner as the audit trail names an actor.
    #[must_use]
    pub fn actor<'a>(&'a self, meta: &ClientMeta) -> Actor<'a> {
        Actor { user_id: Some(&self.session().user_id), name: &self.session().username, client_ip: meta.ip }
    }
}

/// Session operations.
#[derive(Clone)]
pub struct SessionService {
    store: Arc<dyn Store>,
    policy: SessionPolicy,
    metrics: Arc<Metrics>,
    protection: LoginProtection,
}

impl SessionService {
    /// Wire the service.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        policy: SessionPolicy,
        metrics: Arc<Metrics>,
        protection: LoginProtection,
    ) -> Self {
        Self { store, policy, metrics, protection }
    }

    pub(super) fn revoked(&self, reason: RevokeReason, ids: &[&SessionId]) {
        for id in ids {
            tracing::info!(session_id = id.as_str(), reason = reason.label(), "session revoked");
        }
        self.metrics.sessions_revoked(reason.label(), ids.len() as u64);
    }

    /// Check credentials and open a brand-new session. A session the request already carried
    /// (`previous`) is revoked: a login never adopts or keeps a client-supplied session.
    ///
    /// # Errors
    /// 401 for any wrong username/password combination and for a disabled account (same
    /// body, same work), 429 when a limit refuses, 503 when the store is unavailable.
    pub async fn login(
        &self,
        username: &str,
        password: Password,
        meta: ClientMeta,
        previous: Option<SessionToken>,
    ) -> Result<Issued, Error> {
        let result = self.login_inner(username, password, &meta, previous).await;
        self.metrics.login(match &result {
            Ok(_) => "success",
            Err(Error::InvalidCredentials) => "invalid_credentials",
            Err(Error::RateLimited(_) | Error::Overloaded) => "rate_limited",
            Err(_) => "unavailable",
        });
        if let Err(Error::RateLimited(_)) = &result {
            let name = Username::parse(username).ok().map(|name| name.key());
            audit::login_failed(name.as_ref().map(UserKey::as_str), meta.ip, "rate_limited");
        }
        result
    }

    async fn login_inner(
        &self,
        username: &str,
        password: Password,
        meta: &ClientMeta,
        previous: Option<SessionToken>,
    ) -> Result<Issued, Error> {
        let checked = self.protection.check_password(username, &password, meta.device_token.as_ref()).await?;
        let verified = match checked {
            Ok(verified) => verified,
            Err(refused) => {
                let name = Username::parse(username).ok().map(|name| name.key());
                audit::login_failed(name.as_ref().map(UserKey::as_str), meta.ip, refused.reason());
                return Err(Error::InvalidCredentials);
            }
        };
        if let Some(previous) = previous {
            if let Some(id) = self.store.revoke_session(&previous.hash()).await? {
                self.revoked(RevokeReason::Rotation, &[&id]);
            }
        }
        let now = Timestamp::now();
        let (idle_expires_at, expires_at) = self.policy.deadlines_at_login(now);
        let session = SessionRecord {
            session_id: SessionId::generate().map_err(|e| Error::Internal(e.to_string()))?,
            user_id: verified.user.user_id.clone(),
            username: verified.user.username.clone(),
            user_key: verified.key.clone(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at,
            expires_at,
            ip: meta.ip,
            device: meta.user_agent.as_deref().and_then(device::label),
            data: None,
        };
        let (token, hash) =
            SessionToken::generate_in(session.user_key.shard()).map_err(|e| Error::Internal(e.to_string()))?;
        // `None`: the account was deleted or disabled after its password was checked.
        let Some(evicted) = self.store.create_session(&hash, &session, self.policy.max_sessions_per_user, now).await?
        else {
            audit::login_failed(Some(verified.key.as_str()), meta.ip, "disabled");
            return Err(Error::InvalidCredentials);
        };
        self.revoked(RevokeReason::Limit, &evicted.iter().collect::<Vec<_>>());
        self.metrics.session_created();
        tracing::info!(session_id = session.session_id.as_str(), user_id = %session.user_id, "session created");
        audit::login_succeeded(
            &session.user_id,
            &session.username,
            session.session_id.as_str(),
            meta.ip,
            verified.device.is_some(),
        );
        let device = Some(self.protection.device_token(&verified)?);
        Ok(Issued { token, session, device })
    }

    /// Validate a token, sliding its idle deadline when due.
    ///
    /// # Errors
    /// 401 when the token is unknown, expired or revoked; 503 when the store is unavailable.
    pub async fn authenticate(&self, token: &SessionToken) -> Result<Authenticated, Error> {
        self.validate(token, false).await
    }

    /// Validate a token against the store itself, never the validation cache: for the
    /// privileged routes, so that a lost role or an ended session applies to them at once on
    /// every instance.
    ///
    /// # Errors
    /// As [`authenticate`](Self::authenticate).
    pub async fn authenticate_fresh(&self, token: &SessionToken) -> Result<Authenticated, Error> {
        self.validate(token, true).await
    }

    async fn validate(&self, token: &SessionToken, fresh: bool) -> Result<Authenticated, Error> {
        let hash = token.hash();
        let (now, slide) = (Timestamp::now(), self.policy.slide());
        let lookup = match (fresh, self.store.cached_validation(&hash, now, slide)) {
            (false, Some(hit)) => Ok(hit),
            (true, _) => self.store.touch_session_fresh(&hash, now, slide).await,
            (false, None) => self.store.touch_session(&hash, now, slide).await,
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
    pub async fn refresh(&self, auth: &Authenticated, meta: &ClientMeta) -> Result<Issued, Error> {
        let (token, hash) =
            SessionToken::generate_in(auth.session().user_key.shard()).map_err(|e| Error::Internal(e.to_string()))?;
        match self.store.rotate_session(&auth.hash, &hash, Timestamp::now(), self.policy.slide_now()).await? {
            Lookup::Found(rotated) => {
                let session = rotated.session.clone();
                tracing::info!(session_id = session.session_id.as_str(), "session token rotated");
                audit::own_session(
                    "refresh",
                    &session.user_id,
                    &session.username,
                    session.session_id.as_str(),
                    meta.ip,
                );
                Ok(Issued { token, session, device: None })
            }
            Lookup::Expired | Lookup::Missing => Err(Error::Unauthorized),
        }
    }

    /// End the caller's session.
    ///
    /// # Errors
    /// 401 when the session had already ended (a validation answered from the cache may not
    /// have heard yet): the client learns the truth. 503 when the store is unavailable.
    ///
    /// The session is ended by its id, not by the presented token: a refresh racing this
    /// logout may already have moved the session to a new token, and an acknowledged logout
    /// must end the session whichever token it now answers to.
    pub async fn logout(&self, auth: &Authenticated, meta: &ClientMeta) -> Result<(), Error> {
        let session = auth.session();
        if !self.store.revoke_session_by_id(&session.user_key, &session.session_id).await? {
            return Err(Error::Unauthorized);
        }
        self.revoked(RevokeReason::Logout, &[&session.session_id]);
        audit::own_session("logout", &session.user_id, &session.username, session.session_id.as_str(), meta.ip);
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
    pub async fn revoke(&self, auth: &Authenticated, session_id: &str, meta: &ClientMeta) -> Result<(), Error> {
        let id = SessionId::parse(session_id).ok_or(Error::NotFound("session"))?;
        if self.store.revoke_session_by_id(&auth.session().user_key, &id).await? {
            self.revoked(RevokeReason::Logout, &[&id]);
            audit::session_revoked(auth.actor(meta), id.as_str());
            Ok(())
        } else {
            Err(Error::NotFound("session"))
        }
    }

    /// Log the caller out everywhere (optionally keeping the calling session).
    ///
    /// # Errors
    /// 503 when the store is unavailable.
    pub async fn revoke_all(
        &self,
        auth: &Authenticated,
        except_current: bool,
        meta: &ClientMeta,
    ) -> Result<u64, Error> {
        let keep = except_current.then_some(&auth.session().session_id);
        let revoked = self.store.revoke_user_sessions(&auth.session().user_key, keep).await?;
        tracing::info!(user_id = %auth.session().user_id, revoked, "sessions revoked (logout everywhere)");
        self.metrics.sessions_revoked(RevokeReason::LogoutAll.label(), revoked);
        audit::sessions_revoked_all(auth.actor(meta), revoked, except_current);
        Ok(revoked)
    }

    /// The session `session_id` of user `user_id` (named `name`: a username, or an external
    /// subject) with its owner's current roles, when it is live: the check an access token's
    /// introspection needs (the token names the session, not its secret).
    ///
    /// # Errors
    /// 503 when the store is unavailable.
    pub async fn live_session(
        &self,
        user_id: &str,
        name: &str,
        session_id: &str,
    ) -> Result<Option<(SessionRecord, Vec<String>)>, Error> {
        let Some(id) = SessionId::parse(session_id) else { return Ok(None) };
        // A subject may be spelled like a username: both namespaces are asked, and the session
        // must be there under the token's user id too.
        let keys = [Username::parse(name).ok().map(|n| n.key()), Subject::parse(name).ok().map(|s| s.key())];
        for key in keys.into_iter().flatten() {
            let live = self.store.list_sessions(&key, Timestamp::now()).await?;
            let Some(session) = live.into_iter().find(|s| s.session_id == id && s.user_id == user_id) else { continue };
            let roles = self.store.find_user(&key).await?.filter(|user| !user.disabled).map(|user| user.roles);
            return Ok(roles.map(|roles| (session, roles)));
        }
        Ok(None)
    }

    /// Whether the store answers (for `/readyz`).
    ///
    /// # Errors
    /// The store's error.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}
