//! The Redis backend (fred).
//!
//! # Key schema
//!
//! Every key of one user lives under the user's shard hash tag `{xyz}` (three hex digits, see
//! [`Shard`](crate::session::Shard)), so each operation below is one Lua script on one Cluster
//! slot:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `sessiond:{xyz}:user:<username>` | hash | `id`, `name`, `phc` (argon2id), `roles` (comma list), `created`, `disabled` (`1`, only while disabled) | never |
//! | `sessiond:{xyz}:sess:<sha256(token)[..16], base64url>` | string | the session and its owner's id, spelling and roles, one value (see [`record`]) | at the earlier deadline (PX) |
//! | `sessiond:{xyz}:user-sessions:<username>` | hash | session id → token digest | after the longest session |
//! | `sessiond:{xyz}:active:<0-3>` | sorted set | session id scored by its deadline (set chosen by the id's first byte) | members trimmed by `prune_expired` |
//! | `sessiond:{xyz}:login-guards:<sha256(username)[..16], base64url>` | hash | `*` (clients without a device token), `d:<device id>`: each a GCRA arrival time | when the latest has decayed |
//! | `sessiond:flush-canary:<instance>` | string | proves to the validation cache that the database was not flushed (see `tracking`) | 60 s after the instance stops |
//!
//! `<username>` is the lower-cased username. The token never appears: only the first 128 bits
//! of its SHA-256 ([`TokenHash`]).
//! The active-session count is `ZCOUNT (now +inf` summed over the 4096 active sets (4 per
//! shard, so that each stays in Redis's compact encoding) — exact, with no hot key and no
//! keyspace scan.
//!
//! # The read path
//!
//! A validation is one `GET` of the session key: no script, no second key. Only when a slide
//! is due (a tenth of the idle window since the last recorded use) does it run `lua/slide.lua`,
//! which decides again on what Redis holds, so a slide never recreates a session that a
//! logout deleted after the read. Everything else is a script (`lua/`), one atomic step each.
//!
//! # Failure behaviour
//!
//! Commands time out after `SESSIOND_REDIS_TIMEOUT`; a command on a disconnected client fails
//! at once instead of queueing (except in the first moments after start, when a request waits
//! for the first connection within that timeout). The client follows Cluster `MOVED`/`ASK`
//! redirections and may re-send a command whose connection dropped, so every script is safe
//! to run twice: a create, rotation or user insert that finds its own earlier result reports
//! success (the failed-login guard may count one failure twice). The client reconnects with
//! capped exponential backoff, detects hung connections, and the process starts even when
//! Redis is down.

mod clock;
mod connection;
mod keys;
mod memory_policy;
pub mod record;
mod scripts;
mod tracking;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::ExclusivePool;
use fred::prelude::*;
use fred::types::Value;

pub use connection::RedisSettings;

use super::near_cache::NearCache;
use super::{
    GuardBucket, GuardEvent, GuardRule, Lookup, NewPassword, PasswordChange, SessionRecord, Slide, Store, StoreError,
    UserRecord,
};
use crate::session::{SessionId, Shard, Timestamp, TokenHash};
use crate::users::UserKey;

/// Sessions and users in Redis.
pub struct RedisStore {
    pool: Pool,
    /// A connection of its own for the periodic bulk pipelines (the exact count, pruning:
    /// thousands of commands each), so that they never queue ahead of a request's command —
    /// least of all while a Cluster node is failing over and commands back up.
    background: Client,
    /// Connections of their own for writes that must reach replicas before they are
    /// acknowledged. `WAIT` counts the writes of the connection it is sent on and blocks that
    /// connection meanwhile, so each revocation takes a connection exclusively (or answers 503
    /// before sending anything) and validations never share one.
    durable: Option<ExclusivePool>,
    wait_replicas: u8,
    wait_timeout: Duration,
    timeout: Duration,
    scripts: scripts::Scripts,
    /// The connections that validations read with; with the validation cache, Redis client
    /// tracking is on for them and they keep the cache coherent.
    validations: Validations,
    /// Set until the first connections are up (or the start-up grace ran out): only then does
    /// a request wait for a connection instead of failing fast.
    starting: Arc<AtomicBool>,
    /// Keeps this process's clock on Redis's (see [`clock`]).
    _clock: clock::Follower,
}

/// Validations get connections of their own. With the cache on, Redis then tracks only the
/// sessions that were validated (what the cache may hold): tracking every connection would
/// also record every key any other command declares — each new session, index and shard
/// set — and the tracking table would grow with every login. In every case no script queues
/// ahead of a validation, and the concurrent validations share few connections, which reach
/// Redis in batches (one connection answered the same reads with half the Redis CPU of four).
struct Validations {
    pool: Pool,
    cache: Option<Arc<NearCache>>,
    _tracking: Option<tracking::Tracking>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The validation cache, when enabled: put [`Cached`](crate::store::cached::Cached) in
    /// front of this store with it.
    #[must_use]
    pub fn near_cache(&self) -> Option<Arc<NearCache>> {
        self.validations.cache.clone()
    }
}

/// The bytes of a string reply (`None` for nil or anything else).
fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::String(text) => Some(text.as_bytes()),
        Value::Bytes(bytes) => Some(bytes),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        other => other.as_string(),
    }
}

/// A session value read by a script, decoded (`malformed` if it is not one: the scripts only
/// return values they parsed).
fn session_of(op: &'static str, value: &Value) -> Result<record::Decoded, StoreError> {
    bytes_of(value).and_then(record::decode).ok_or_else(|| StoreError::other(op, "malformed session value"))
}

/// Decode the `{0} | {1} | {2, value}` reply of rotate.
fn lookup_from(op: &'static str, reply: &Value) -> Result<Lookup, StoreError> {
    let Value::Array(parts) = reply else {
        return Err(StoreError::other(op, "unexpected reply"));
    };
    match parts.first().and_then(Value::as_i64) {
        Some(0) => Ok(Lookup::Missing),
        Some(1) => Ok(Lookup::Expired),
        Some(2) => {
            let found = session_of(op, parts.get(1).unwrap_or(&Value::Null))?;
            Ok(Lookup::found(found.session, found.roles))
        }
        _ => Err(StoreError::other(op, "unexpected reply")),
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client("ping").await?;
        self.bounded("ping", client.ping::<Value>(None)).await?;
        // Ready means validations can reach Redis too.
        let client = self.validation_client("ping").await?;
        self.bounded("ping", client.ping::<Value>(None)).await?;
        Ok(())
    }

    async fn insert_user(&self, key: &UserKey, user: &UserRecord) -> Result<bool, StoreError> {
        let args = vec![
            "id".to_owned(),
            user.user_id.clone(),
            "name".to_owned(),
            user.username.clone(),
            "phc".to_owned(),
            user.password_hash.clone(),
            "roles".to_owned(),
            user.roles.join(","),
            "created".to_owned(),
            user.created_at.millis().to_string(),
        ];
        let reply = self.eval("insert_user", &self.scripts.insert_user, vec![keys::user(key)], args).await?;
        Ok(reply.as_i64() == Some(1))
    }

    async fn find_user(&self, key: &UserKey) -> Result<Option<UserRecord>, StoreError> {
        const OP: &str = "find_user";
        let client = self.client(OP).await?;
        let fields: std::collections::HashMap<String, String> =
            self.bounded(OP, client.hgetall(keys::user(key))).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |name: &str| fields.get(name).cloned().ok_or_else(|| StoreError::other(OP, "malformed user"));
        Ok(Some(UserRecord {
            user_id: get("id")?,
            username: get("name")?,
            password_hash: get("phc")?,
            roles: fields.get("roles").map(|r| record::roles_from(r)).unwrap_or_default(),
            created_at: Timestamp::from_millis(get("created")?.parse().unwrap_or_default()),
            disabled: fields.get("disabled").is_some_and(|d| d == "1"),
        }))
    }

    async fn set_role(&self, key: &UserKey, role: &str, granted: bool) -> Result<bool, StoreError> {
        let args = vec![role.to_owned(), if granted { "1" } else { "0" }.to_owned(), keys::prefix(key.shard())];
        let keys = vec![keys::user(key), keys::user_sessions(key)];
        let reply = self.eval_durable("set_role", &self.scripts.set_role, keys, args).await?;
        Ok(reply.as_i64() == Some(1))
    }

    async fn create_session(
        &self,
        hash: &TokenHash,
        session: &SessionRecord,
        max_per_user: u32,
        now: Timestamp,
    ) -> Result<Option<Vec<SessionId>>, StoreError> {
        const OP: &str = "create_session";
        let shard = hash.shard();
        if shard != session.user_key.shard() {
            return Err(StoreError::other(OP, "token drawn for the wrong shard"));
        }
        let index_ttl = session.expires_at.millis_since(now).max(1);
        let args = vec![
            keys::prefix(shard),
            now.millis().to_string(),
            max_per_user.to_string(),
            hash.encoded(),
            index_ttl.to_string(),
            session.session_id.as_str().to_owned(),
            session.deadline().millis().to_string(),
            record::encode_without_roles(session),
        ];
        let keys = vec![
            keys::session(hash),
            keys::user_sessions(&session.user_key),
            keys::active(shard),
            keys::user(&session.user_key),
        ];
        match self.eval(OP, &self.scripts.create, keys, args).await? {
            Value::Array(ids) => Ok(Some(ids.iter().filter_map(text).filter_map(|id| SessionId::parse(&id)).collect())),
            // An empty Lua table arrives as nil.
            Value::Null => Ok(Some(Vec::new())),
            other if text(&other).as_deref() == Some("refused") => Ok(None),
            _ => Err(StoreError::other(OP, "unexpected reply")),
        }
    }

    async fn change_password(&self, change: &NewPassword<'_>) -> Result<PasswordChange, StoreError> {
        const OP: &str = "change_password";
        let NewPassword { user, expected, hash: new_hash, current, new, now, slide } = *change;
        let shard = user.shard();
        if current.shard() != shard || new.shard() != shard {
            return Err(StoreError::other(OP, "token drawn for the wrong shard"));
        }
        let args = vec![
            keys::prefix(shard),
            now.millis().to_string(),
            slide.idle_ms.to_string(),
            new.encoded(),
            expected.to_owned(),
            new_hash.to_owned(),
        ];
        let keys = vec![
            keys::user(user),
            keys::user_sessions(user),
            keys::active(shard),
            keys::session(current),
            keys::session(new),
        ];
        let reply = self.eval_durable(OP, &self.scripts.change_password, keys, args).await?;
        let Value::Array(parts) = reply else { return Err(StoreError::other(OP, "unexpected reply")) };
        match parts.first().and_then(Value::as_i64) {
            Some(0) => Ok(PasswordChange::SessionEnded),
            Some(1) => Ok(PasswordChange::Conflict),
            Some(2) => {
                let found = session_of(OP, parts.get(1).unwrap_or(&Value::Null))?;
                let revoked = parts.get(2).and_then(Value::as_i64).and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                Ok(PasswordChange::Changed { session: Box::new(found.session), revoked })
            }
            _ => Err(StoreError::other(OP, "unexpected reply")),
        }
    }

    async fn delete_user(&self, user: &UserKey) -> Result<Option<u64>, StoreError> {
        let shard = user.shard();
        let keys = vec![keys::user(user), keys::user_sessions(user), keys::active(shard), keys::login_guard(user)];
        let reply =
            self.eval_durable("delete_user", &self.scripts.delete_user, keys, vec![keys::prefix(shard)]).await?;
        Ok(reply.as_i64().and_then(|n| u64::try_from(n).ok()))
    }

    async fn set_disabled(&self, user: &UserKey, disabled: bool) -> Result<Option<u64>, StoreError> {
        let shard = user.shard();
        let keys = vec![keys::user(user), keys::user_sessions(user), keys::active(shard)];
        let args = vec![keys::prefix(shard), if disabled { "1" } else { "0" }.to_owned()];
        let reply = self.eval_durable("set_disabled", &self.scripts.set_disabled, keys, args).await?;
        Ok(reply.as_i64().and_then(|n| u64::try_from(n).ok()))
    }

    async fn touch_session(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Result<Lookup, StoreError> {
        const OP: &str = "touch_session";
        let key = keys::session(hash);
        let client = self.validation_client(OP).await?;
        let value = match self.bounded(OP, client.get::<Value, _>(key.as_str())).await {
            Ok(value) => value,
            // A key of another type is an older build's session: no session, a 401.
            Err(StoreError::Other { detail, .. }) if detail.starts_with("WRONGTYPE") => return Ok(Lookup::Missing),
            Err(error) => return Err(error),
        };
        let Some(found) = bytes_of(&value).and_then(record::decode) else { return Ok(Lookup::Missing) };
        if now >= found.session.deadline() {
            let args = vec![keys::prefix(hash.shard()), now.millis().to_string()];
            self.eval("expire_session", &self.scripts.expire, vec![key, keys::active(hash.shard())], args).await?;
            return Ok(Lookup::Expired);
        }
        if now.millis() - found.session.last_seen_at.millis() >= slide.min_interval_ms {
            let args = vec![now.millis().to_string(), slide.min_interval_ms.to_string(), slide.idle_ms.to_string()];
            match self.eval("slide_session", &self.scripts.slide, vec![key, keys::active(hash.shard())], args).await {
                Ok(slid) => {
                    if let Some(slid) = bytes_of(&slid).and_then(record::decode) {
                        return Ok(Lookup::found(slid.session, slid.roles));
                    }
                }
                // The read stands: the session was live when read, and the next use slides.
                Err(error) => tracing::debug!(%error, "sliding a session failed; the read stands"),
            }
        }
        Ok(Lookup::found(found.session, found.roles))
    }

    async fn rotate_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        now: Timestamp,
        slide: Slide,
    ) -> Result<Lookup, StoreError> {
        const OP: &str = "rotate_session";
        let shard = old.shard();
        if new.shard() != shard {
            return Err(StoreError::other(OP, "token drawn for the wrong shard"));
        }
        let args = vec![keys::prefix(shard), now.millis().to_string(), slide.idle_ms.to_string(), new.encoded()];
        let keys = vec![keys::session(old), keys::session(new), keys::active(shard)];
        let reply = self.eval_durable(OP, &self.scripts.rotate, keys, args).await?;
        lookup_from(OP, &reply)
    }

    async fn revoke_session(&self, hash: &TokenHash) -> Result<Option<SessionId>, StoreError> {
        let shard = hash.shard();
        let keys = vec![keys::session(hash), keys::active(shard)];
        let reply = self.eval_durable("revoke_session", &self.scripts.revoke, keys, vec![keys::prefix(shard)]).await?;
        Ok(text(&reply).as_deref().and_then(SessionId::parse))
    }

    async fn set_session_owner(
        &self,
        id: &SessionId,
        user: &UserKey,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        const OP: &str = "set_session_owner";
        let ttl = until.millis_since(now).max(1);
        let client = self.client(OP).await?;
        let expiry = Some(fred::types::Expiration::PX(ttl));
        let _: Value =
            self.bounded(OP, client.set(keys::session_owner(id), user.as_str(), expiry, None, false)).await?;
        Ok(())
    }

    async fn session_owner(&self, id: &SessionId, _now: Timestamp) -> Result<Option<UserKey>, StoreError> {
        const OP: &str = "session_owner";
        let client = self.client(OP).await?;
        let owner: Option<String> = self.bounded(OP, client.get(keys::session_owner(id))).await?;
        Ok(owner.as_deref().and_then(UserKey::from_stored))
    }

    async fn revoke_session_by_id(&self, user: &UserKey, id: &SessionId) -> Result<bool, StoreError> {
        let shard = user.shard();
        let keys = vec![keys::user_sessions(user), keys::active(shard)];
        let args = vec![keys::prefix(shard), id.as_str().to_owned()];
        let reply = self.eval_durable("revoke_session_by_id", &self.scripts.revoke_by_id, keys, args).await?;
        Ok(reply.as_i64() == Some(1))
    }

    async fn revoke_user_sessions(&self, user: &UserKey, keep: Option<&SessionId>) -> Result<u64, StoreError> {
        let shard = user.shard();
        let keys = vec![keys::user_sessions(user), keys::active(shard)];
        let args = vec![keys::prefix(shard), keep.map(|id| id.as_str().to_owned()).unwrap_or_default()];
        let reply = self.eval_durable("revoke_user_sessions", &self.scripts.revoke_all, keys, args).await?;
        Ok(reply.as_i64().and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    async fn list_sessions(&self, user: &UserKey, now: Timestamp) -> Result<Vec<SessionRecord>, StoreError> {
        const OP: &str = "list_sessions";
        let shard = user.shard();
        let keys = vec![keys::user_sessions(user), keys::active(shard)];
        let args = vec![keys::prefix(shard), now.millis().to_string()];
        match self.eval(OP, &self.scripts.list, keys, args).await? {
            Value::Array(values) => values.iter().map(|value| session_of(OP, value).map(|s| s.session)).collect(),
            Value::Null => Ok(Vec::new()),
            _ => Err(StoreError::other(OP, "unexpected reply")),
        }
    }

    async fn login_guard(
        &self,
        user: &UserKey,
        bucket: GuardBucket<'_>,
        now: Timestamp,
        rule: GuardRule,
        event: GuardEvent,
    ) -> Result<u64, StoreError> {
        let event = match event {
            GuardEvent::Check => "check",
            GuardEvent::Failure => "failure",
            GuardEvent::Success => "success",
        };
        let args = vec![
            now.millis().to_string(),
            rule.interval_ms.to_string(),
            rule.tolerance_ms.to_string(),
            event.to_owned(),
            match bucket {
                GuardBucket::Untrusted => "*".to_owned(),
                GuardBucket::Device(id) => format!("d:{id}"),
            },
        ];
        let reply = self.eval("login_guard", &self.scripts.login_guard, vec![keys::login_guard(user)], args).await?;
        Ok(text(&reply).and_then(|ms| ms.parse().ok()).unwrap_or(0))
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        const OP: &str = "count_active";
        let client = self.background_client(OP)?;
        let pipeline = client.pipeline();
        // Deadlines are whole milliseconds: "after now" is "at least now + 1".
        #[allow(clippy::cast_precision_loss)]
        let lower = (now.millis() + 1) as f64;
        for set in Shard::all().flat_map(keys::active_sets) {
            let queued: Result<(), _> = pipeline.zcount(set, lower, f64::INFINITY).await;
            queued.map_err(|e| connection::classify(OP, &e))?;
        }
        let counts: Vec<i64> = self.bounded(OP, pipeline.all()).await?;
        Ok(counts.into_iter().map(|n| u64::try_from(n).unwrap_or(0)).sum())
    }

    async fn prune_expired(&self, now: Timestamp) -> Result<(), StoreError> {
        const OP: &str = "prune_expired";
        let client = self.background_client(OP)?;
        let pipeline = client.pipeline();
        #[allow(clippy::cast_precision_loss)]
        let upper = now.millis() as f64;
        for set in Shard::all().flat_map(keys::active_sets) {
            let queued: Result<(), _> = pipeline.zremrangebyscore(set, f64::NEG_INFINITY, upper).await;
            queued.map_err(|e| connection::classify(OP, &e))?;
        }
        let _: Vec<i64> = self.bounded(OP, pipeline.all()).await?;
        Ok(())
    }
}
