//! The storage contract: what the session rules need from a backend, and nothing about HTTP.
//!
//! Each method is one atomic step (a single Lua script in Redis, one critical section in
//! memory), so concurrent logins, logouts and validations cannot leave a half-written session,
//! and no write can recreate a session that a concurrent logout deleted: every write after
//! creation is conditional on the session still existing.
//!
//! Every method is also safe to repeat with the same arguments, because a Redis client may
//! re-send a command whose connection dropped: an insert, create or rotation that finds its
//! own earlier result reports the same success.
//!
//! Backends: [`redis::RedisStore`] (fred) for production, [`memory::MemoryStore`] as the
//! embedded default and reference model. Both pass the same contract suite
//! (`tests/api/store_contract.rs`). [`instrumented::Instrumented`] wraps either, so every store
//! call goes through one place where it is timed and traced.

pub mod cached;
pub mod instrumented;
pub mod memory;
pub mod near_cache;
pub mod redis;

use async_trait::async_trait;

use crate::session::{SessionId, Timestamp, TokenHash};
use crate::users::UserKey;

pub use crate::session::Slide;

/// A stored account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// Random public id (UUID v4).
    pub user_id: String,
    /// The username as the user spelled it.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role names; `user` by default.
    pub roles: Vec<String>,
    /// When the account was created.
    pub created_at: Timestamp,
    /// Set by an administrator: no login, no new session, until enabled again.
    pub disabled: bool,
}

/// A stored session, as the store keeps it (the token itself is never here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// Public handle.
    pub session_id: SessionId,
    /// Owner's user id.
    pub user_id: String,
    /// Owner's username as spelled (for the profile without a second lookup).
    pub username: String,
    /// Owner's normalised username: locates the user's index and shard.
    pub user_key: UserKey,
    /// Login time; never moves, even across refreshes.
    pub created_at: Timestamp,
    /// Last recorded use (updated at most once per slide interval).
    pub last_seen_at: Timestamp,
    /// Expiry if unused from now on.
    pub idle_expires_at: Timestamp,
    /// Absolute expiry; never moves.
    pub expires_at: Timestamp,
    /// Client address at login.
    pub ip: Option<std::net::IpAddr>,
    /// The device the session was opened from, as a person reads it ("Chrome 131 on Windows"),
    /// derived from the `User-Agent` at login.
    pub device: Option<String>,
    /// What a trusted backend stored with a session it created (a JSON object as compact
    /// text, at most [`SessionData::MAX_BYTES`](crate::session::SessionData::MAX_BYTES)), handed
    /// back by every validation; `None` for password sessions. Shared, not copied: the
    /// validation cache hands the same text to every hit.
    pub data: Option<std::sync::Arc<str>>,
}

impl SessionRecord {
    /// The earlier of the two deadlines: when the session stops working.
    #[must_use]
    pub fn deadline(&self) -> Timestamp {
        self.idle_expires_at.min(self.expires_at)
    }
}

/// The failed-login guard as a GCRA: each failure costs `interval_ms`; attempts are refused
/// while more than `tolerance_ms` of cost is outstanding. With N failures per window W:
/// `interval = W / N`, `tolerance = W - interval`, so N quick failures block the account for
/// `interval`, and it regains one attempt per `interval` after that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardRule {
    /// Cost of one failure, in milliseconds.
    pub interval_ms: i64,
    /// Outstanding cost allowed before refusing, in milliseconds.
    pub tolerance_ms: i64,
}

/// Whose allowance a login attempt spends in the failed-login guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardBucket<'a> {
    /// Every client that cannot prove it logged in as this user before: they share one
    /// allowance, so guessing from anywhere is throttled.
    Untrusted,
    /// A client holding this user's device token (its id): an allowance of its own, which
    /// guessing from elsewhere cannot spend.
    Device(&'a str),
}

/// A password change as [`Store::change_password`] applies it.
#[derive(Clone, Copy, Debug)]
pub struct NewPassword<'a> {
    /// Whose password.
    pub user: &'a UserKey,
    /// The hash that was verified: the change applies only while it is still the stored one.
    pub expected: &'a str,
    /// The new argon2id PHC string.
    pub hash: &'a str,
    /// The calling session's token digest…
    pub current: &'a TokenHash,
    /// …and the one it moves to.
    pub new: &'a TokenHash,
    /// When.
    pub now: Timestamp,
    /// How the calling session's idle deadline slides.
    pub slide: Slide,
}

/// The outcome of [`Store::change_password`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordChange {
    /// Stored; the calling session now answers to the new token, and `revoked` other
    /// sessions were ended.
    Changed {
        /// The rotated session.
        session: Box<SessionRecord>,
        /// Other sessions of the user that were ended.
        revoked: u64,
    },
    /// The calling session ended meanwhile: nothing changed.
    SessionEnded,
    /// The stored hash is no longer the one that was verified (a concurrent change, or the
    /// account is gone): nothing changed.
    Conflict,
}

/// What happened to a login attempt, for the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardEvent {
    /// Before verifying: may this attempt proceed?
    Check,
    /// The password was wrong (or the account unknown).
    Failure,
    /// The login succeeded: forget past failures.
    Success,
}

/// A live session as a validation answers it: the record and its owner's current roles.
/// Shared rather than copied: the validation cache hands the same one to every hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    /// The session.
    pub session: SessionRecord,
    /// The owner's roles at the time of the read.
    pub roles: Vec<String>,
}

/// The answer to a validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Live session, with its owner's current roles.
    Found(std::sync::Arc<Validated>),
    /// The session existed but its deadline has passed (it is now deleted).
    Expired,
    /// No such session: never existed, revoked, or already removed by TTL.
    Missing,
}

impl Lookup {
    /// A live session.
    #[must_use]
    pub fn found(session: SessionRecord, roles: Vec<String>) -> Self {
        Self::Found(std::sync::Arc::new(Validated { session, roles }))
    }
}

/// Why a store call failed. Every variant means "unavailable" to the client (503): a store
/// error never turns into a valid session.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The command did not complete within the configured timeout.
    #[error("{op}: timed out")]
    Timeout { op: &'static str },
    /// Not connected, or the connection broke.
    #[error("{op}: connection: {detail}")]
    Connection { op: &'static str, detail: String },
    /// Anything else (server error, unexpected reply).
    #[error("{op}: {detail}")]
    Other { op: &'static str, detail: String },
}

impl StoreError {
    /// A label for metrics: `timeout`, `connection` or `other`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Connection { .. } => "connection",
            Self::Other { .. } => "other",
        }
    }

    pub(crate) fn other(op: &'static str, detail: impl Into<String>) -> Self {
        Self::Other { op, detail: detail.into() }
    }
}

/// The operations the session rules need. See the module docs for the atomicity contract.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap liveness check used by `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Insert a user unless the key is taken. Returns `false` when it was taken.
    async fn insert_user(&self, key: &UserKey, user: &UserRecord) -> Result<bool, StoreError>;

    /// Look a user up.
    async fn find_user(&self, key: &UserKey) -> Result<Option<UserRecord>, StoreError>;

    /// Add (`granted`) or remove a role. Returns `false` when the user does not exist.
    async fn set_role(&self, key: &UserKey, role: &str, granted: bool) -> Result<bool, StoreError>;

    /// Store a new session under `hash` and add it to its user's index, in the same atomic
    /// step as checking that the user still exists and is not disabled (`None`: nothing was
    /// created), so a login racing a deletion or a disable cannot leave a session behind.
    /// When the user already holds `max_per_user` live sessions (0: no cap), the oldest are
    /// revoked first; their ids are returned.
    async fn create_session(
        &self,
        hash: &TokenHash,
        session: &SessionRecord,
        max_per_user: u32,
        now: Timestamp,
    ) -> Result<Option<Vec<SessionId>>, StoreError>;

    /// Store the new password hash, end every other session of the user and move the calling
    /// session to its new token (sliding it), as one atomic step; see [`NewPassword`].
    async fn change_password(&self, change: &NewPassword<'_>) -> Result<PasswordChange, StoreError>;

    /// Remove the user with every session, the session index and the guard state. Returns
    /// the number of live sessions ended, `None` when there was no such user.
    async fn delete_user(&self, user: &UserKey) -> Result<Option<u64>, StoreError>;

    /// Disable (ending every session in the same step) or enable the user. Returns the number
    /// of live sessions ended, `None` when there is no such user.
    async fn set_disabled(&self, user: &UserKey, disabled: bool) -> Result<Option<u64>, StoreError>;

    /// Validate: return the session if it is live, sliding its idle deadline by `slide`.
    async fn touch_session(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Result<Lookup, StoreError>;

    /// A validation answered from memory, when this store keeps a validation cache and it may
    /// answer (see [`cached::Cached`]); `None` means: call [`Store::touch_session`]. Not async,
    /// so a cache hit costs no future and no allocation.
    fn cached_validation(&self, _hash: &TokenHash, _now: Timestamp, _slide: Slide) -> Option<Lookup> {
        None
    }

    /// A validation that must see the store's current answer, never a cached one: the
    /// privileged routes (admin, password change, deletion) use it, so a role or a revocation
    /// applies to them at the very next call on every instance.
    async fn touch_session_fresh(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Result<Lookup, StoreError> {
        self.touch_session(hash, now, slide).await
    }

    /// Move a live session from `old` to `new` (token rotation), sliding its idle deadline.
    /// `created_at` and `expires_at` are kept. Returns `Missing`/`Expired` when `old` is gone.
    async fn rotate_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        now: Timestamp,
        slide: Slide,
    ) -> Result<Lookup, StoreError>;

    /// Delete the session under `hash`. Returns its id if it existed.
    async fn revoke_session(&self, hash: &TokenHash) -> Result<Option<SessionId>, StoreError>;

    /// Delete one of `user`'s sessions by id. Returns `false` if the user has no such live session.
    async fn revoke_session_by_id(&self, user: &UserKey, id: &SessionId) -> Result<bool, StoreError>;

    /// Remember that session `id` belongs to `user` until `until`, so that it can be ended by
    /// its id alone (the backend API's `DELETE /v1/backend/sessions/{id}`). A pointer that
    /// outlives its session is harmless: ending by id checks the user's index.
    async fn set_session_owner(
        &self,
        id: &SessionId,
        user: &UserKey,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Whose session `id` is, when [`Store::set_session_owner`] recorded it and it has not
    /// lapsed.
    async fn session_owner(&self, id: &SessionId, now: Timestamp) -> Result<Option<UserKey>, StoreError>;

    /// Delete all of `user`'s sessions except `keep`. Returns how many were deleted.
    async fn revoke_user_sessions(&self, user: &UserKey, keep: Option<&SessionId>) -> Result<u64, StoreError>;

    /// The user's live sessions, in no particular order.
    async fn list_sessions(&self, user: &UserKey, now: Timestamp) -> Result<Vec<SessionRecord>, StoreError>;

    /// Exact number of sessions whose deadline is after `now`, across all users.
    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// The shared failed-login guard of an account's `bucket`: record `event` and return how
    /// long (milliseconds) further attempts from that bucket must wait; 0 means an attempt may
    /// proceed.
    async fn login_guard(
        &self,
        user: &UserKey,
        bucket: GuardBucket<'_>,
        now: Timestamp,
        rule: GuardRule,
        event: GuardEvent,
    ) -> Result<u64, StoreError>;

    /// Forget bookkeeping of sessions that expired by themselves (the sessions are already
    /// gone; this trims the indexes that count them).
    async fn prune_expired(&self, now: Timestamp) -> Result<(), StoreError>;
}
