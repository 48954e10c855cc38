//! The trusted-backend use cases: sessions for subjects that a backend authenticated itself
//! (SSO, OAuth, its own user table), created and ended without a password.
//!
//! A subject is stored as a user of its own namespace (see [`Subject`]): a user record with no
//! password, whose roles are the ones the backend last stated. So every rule of password
//! sessions applies unchanged — caps, idle and absolute timeouts, rotation, revocation, the
//! active gauge, the metrics — and the store needs no second kind of session.

use std::sync::Arc;
use std::time::Duration;

use super::sessions::{ClientMeta, Issued, RevokeReason, SessionService};
use crate::error::Error;
use crate::session::{device, SessionData, SessionId, SessionPolicy, SessionToken, Timestamp};
use crate::store::{SessionRecord, Store, UserRecord};
use crate::telemetry::audit;
use crate::telemetry::metrics::Metrics;
use crate::users::{Role, Subject, UserKey};

/// A session a backend asks for.
#[derive(Debug)]
pub struct NewBackendSession {
    /// Whose.
    pub subject: Subject,
    /// The subject's roles from now on (`None`: `user`).
    pub roles: Option<Vec<Role>>,
    /// Stored with the session, handed back by every validation.
    pub data: Option<SessionData>,
    /// A shorter absolute lifetime than the configured one.
    pub ttl: Option<Duration>,
}

/// Backend operations.
#[derive(Clone)]
pub struct BackendService {
    store: Arc<dyn Store>,
    policy: SessionPolicy,
    metrics: Arc<Metrics>,
    sessions: SessionService,
}

impl BackendService {
    /// Wire the service.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, policy: SessionPolicy, metrics: Arc<Metrics>, sessions: SessionService) -> Self {
        Self { store, policy, metrics, sessions }
    }

    /// The longest `ttl` a backend may ask for: the configured absolute timeout.
    #[must_use]
    pub fn max_ttl(&self) -> Duration {
        self.policy.absolute_timeout
    }

    /// Open a session for `request.subject`, creating the subject on first use and setting its
    /// roles to the ones stated (existing sessions of the subject see them at once, as after
    /// any role change).
    ///
    /// # Errors
    /// 503 when the store is unavailable; 409 when the subject's sessions were being ended at
    /// the same moment twice in a row.
    pub async fn create(&self, caller: &str, request: NewBackendSession, meta: &ClientMeta) -> Result<Issued, Error> {
        let key = request.subject.key();
        let stated: Vec<String> = match &request.roles {
            Some(roles) => roles.iter().map(|role| role.as_str().to_owned()).collect(),
            None => vec![Role::DEFAULT.to_owned()],
        };
        let mut roles: Vec<String> = Vec::with_capacity(stated.len());
        for role in stated {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        let data = request.data.map(SessionData::into_shared);
        // A concurrent `DELETE …/subjects/{subject}/sessions` may remove the subject between
        // its upsert and the session's creation; once more, then give up.
        for _ in 0..2 {
            self.upsert_subject(&key, &request.subject, &roles).await?;
            let now = Timestamp::now();
            let (mut idle_expires_at, mut expires_at) = self.policy.deadlines_at_login(now);
            if let Some(ttl) = request.ttl {
                expires_at = expires_at.min(now.plus(ttl));
                idle_expires_at = idle_expires_at.min(expires_at);
            }
            let session = SessionRecord {
                session_id: SessionId::generate().map_err(|e| Error::Internal(e.to_string()))?,
                user_id: request.subject.as_str().to_owned(),
                username: request.subject.as_str().to_owned(),
                user_key: key.clone(),
                created_at: now,
                last_seen_at: now,
                idle_expires_at,
                expires_at,
                ip: meta.ip,
                device: meta.user_agent.as_deref().and_then(device::label),
                data: data.clone(),
            };
            let (token, hash) = SessionToken::generate_in(key.shard()).map_err(|e| Error::Internal(e.to_string()))?;
            // The pointer first: a crash between the two leaves a pointer to nothing, which
            // lapses by itself, never a session that cannot be ended by its id.
            self.store.set_session_owner(&session.session_id, &key, expires_at, now).await?;
            let Some(evicted) =
                self.store.create_session(&hash, &session, self.policy.max_sessions_per_user, now).await?
            else {
                continue;
            };
            self.sessions.revoked(RevokeReason::Limit, &evicted.iter().collect::<Vec<_>>());
            self.metrics.session_created();
            tracing::info!(session_id = session.session_id.as_str(), backend = caller, "backend session created");
            audit::backend_session(
                "backend.session_created",
                caller,
                request.subject.as_str(),
                Some(session.session_id.as_str()),
                None,
            );
            return Ok(Issued { token, session, device: None });
        }
        Err(Error::Conflict("the subject's sessions were being ended at the same time; try again"))
    }

    /// Create the subject's record on first use; afterwards bring its roles to `roles`.
    async fn upsert_subject(&self, key: &UserKey, subject: &Subject, roles: &[String]) -> Result<(), Error> {
        let existing = match self.store.find_user(key).await? {
            Some(user) => user,
            None => {
                let record = UserRecord {
                    user_id: subject.as_str().to_owned(),
                    username: subject.as_str().to_owned(),
                    // No password: no hash can match it, and no login can name this key.
                    password_hash: String::new(),
                    roles: roles.to_vec(),
                    created_at: Timestamp::now(),
                    disabled: false,
                };
                if self.store.insert_user(key, &record).await? {
                    return Ok(());
                }
                // Inserted concurrently by another request: bring its roles in line.
                self.store.find_user(key).await?.unwrap_or(record)
            }
        };
        for role in roles.iter().filter(|role| !existing.roles.contains(role)) {
            self.store.set_role(key, role, true).await?;
        }
        for role in existing.roles.iter().filter(|role| !roles.contains(role)) {
            self.store.set_role(key, role, false).await?;
        }
        Ok(())
    }

    /// The subject's live sessions, newest first.
    ///
    /// # Errors
    /// 503 when the store is unavailable.
    pub async fn list(&self, subject: &Subject) -> Result<Vec<SessionRecord>, Error> {
        let mut sessions = self.store.list_sessions(&subject.key(), Timestamp::now()).await?;
        sessions.sort_by(|a, b| (b.created_at, &b.session_id).cmp(&(a.created_at, &a.session_id)));
        Ok(sessions)
    }

    /// End every session of the subject and forget it (its record, index and roles): nothing
    /// of it stays in the store. Returns how many live sessions ended (0 for an unknown subject).
    ///
    /// # Errors
    /// 503 when the store is unavailable.
    pub async fn end_all(&self, caller: &str, subject: &Subject) -> Result<u64, Error> {
        let revoked = self.store.delete_user(&subject.key()).await?.unwrap_or(0);
        self.metrics.sessions_revoked(RevokeReason::Backend.label(), revoked);
        tracing::info!(backend = caller, revoked, "backend ended a subject's sessions");
        audit::backend_session("backend.sessions_ended", caller, subject.as_str(), None, Some(revoked));
        Ok(revoked)
    }

    /// End one backend session by its id.
    ///
    /// # Errors
    /// 404 when the id is malformed or names no live backend session; 503 when the store is
    /// unavailable.
    pub async fn end_one(&self, caller: &str, session_id: &str) -> Result<(), Error> {
        let id = SessionId::parse(session_id).ok_or(Error::NotFound("session"))?;
        let Some(owner) = self.store.session_owner(&id, Timestamp::now()).await? else {
            return Err(Error::NotFound("session"));
        };
        if !owner.is_subject() || !self.store.revoke_session_by_id(&owner, &id).await? {
            return Err(Error::NotFound("session"));
        }
        self.sessions.revoked(RevokeReason::Backend, &[&id]);
        audit::backend_session("backend.session_ended", caller, "", Some(id.as_str()), None);
        Ok(())
    }
}
