//! Validations answered from the [`NearCache`] when it may, everything else passed through.
//!
//! It sits *above* the instrumented store, so a hit costs no span and no Redis latency sample:
//! `sessiond_redis_command_duration_seconds` keeps measuring Redis, and the cache reports its
//! own hits and misses. Every revocation on this instance evicts locally once Redis has
//! confirmed it, so the next request here is refused even before Redis's invalidation push
//! arrives; other instances learn it from that push.

use std::sync::Arc;

use async_trait::async_trait;

use super::near_cache::NearCache;
use super::{
    GuardBucket, GuardEvent, GuardRule, Lookup, NewPassword, PasswordChange, SessionRecord, Slide, Store, StoreError,
    UserRecord,
};
use crate::session::{SessionId, Timestamp, TokenHash};
use crate::telemetry::metrics::Metrics;
use crate::users::UserKey;

/// A store whose validations may be answered by a coherent near cache.
pub struct Cached {
    inner: Arc<dyn Store>,
    cache: Arc<NearCache>,
    metrics: Option<Arc<Metrics>>,
}

impl Cached {
    /// Put `cache` in front of `inner`. The cache must be fed by `inner`'s invalidations.
    #[must_use]
    pub fn new(inner: Arc<dyn Store>, cache: Arc<NearCache>) -> Self {
        Self { inner, cache, metrics: None }
    }

    /// Count hits and misses in `sessiond_validation_cache_lookups_total`.
    #[must_use]
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics: Some(metrics), ..self }
    }
}

#[async_trait]
impl Store for Cached {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn insert_user(&self, key: &UserKey, user: &UserRecord) -> Result<bool, StoreError> {
        self.inner.insert_user(key, user).await
    }
    async fn find_user(&self, key: &UserKey) -> Result<Option<UserRecord>, StoreError> {
        self.inner.find_user(key).await
    }
    async fn set_role(&self, key: &UserKey, role: &str, granted: bool) -> Result<bool, StoreError> {
        let result = self.inner.set_role(key, role, granted).await;
        self.cache.evict_user(key);
        result
    }
    async fn create_session(
        &self,
        hash: &TokenHash,
        session: &SessionRecord,
        max_per_user: u32,
        now: Timestamp,
    ) -> Result<Option<Vec<SessionId>>, StoreError> {
        let evicted = self.inner.create_session(hash, session, max_per_user, now).await?;
        for id in evicted.iter().flatten() {
            self.cache.evict_id(&session.user_key, id);
        }
        Ok(evicted)
    }
    async fn change_password(&self, change: &NewPassword<'_>) -> Result<PasswordChange, StoreError> {
        let result = self.inner.change_password(change).await;
        self.cache.evict(change.current);
        self.cache.evict_user(change.user);
        result
    }
    async fn delete_user(&self, user: &UserKey) -> Result<Option<u64>, StoreError> {
        let result = self.inner.delete_user(user).await;
        self.cache.evict_user(user);
        result
    }
    async fn set_disabled(&self, user: &UserKey, disabled: bool) -> Result<Option<u64>, StoreError> {
        let result = self.inner.set_disabled(user, disabled).await;
        self.cache.evict_user(user);
        result
    }
    async fn touch_session(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Result<Lookup, StoreError> {
        if let Some(hit) = self.cached_validation(hash, now, slide) {
            return Ok(hit);
        }
        if let Some(metrics) = &self.metrics {
            metrics.validation_cache(false);
        }
        self.touch_session_fresh(hash, now, slide).await
    }
    async fn touch_session_fresh(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Result<Lookup, StoreError> {
        // A fresh read still fills the cache: it is as good as any other read of Redis.
        let ticket = self.cache.begin(hash);
        let result = self.inner.touch_session(hash, now, slide).await;
        if let Some(ticket) = ticket {
            self.cache.complete(ticket, &result);
        }
        result
    }
    fn cached_validation(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Option<Lookup> {
        let hit = self.cache.get(hash, now, slide)?;
        if let Some(metrics) = &self.metrics {
            metrics.validation_cache(true);
        }
        Some(hit)
    }
    async fn rotate_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        now: Timestamp,
        slide: Slide,
    ) -> Result<Lookup, StoreError> {
        let result = self.inner.rotate_session(old, new, now, slide).await;
        self.cache.evict(old);
        result
    }
    async fn revoke_session(&self, hash: &TokenHash) -> Result<Option<SessionId>, StoreError> {
        let result = self.inner.revoke_session(hash).await;
        self.cache.evict(hash);
        result
    }
    async fn set_session_owner(
        &self,
        id: &SessionId,
        user: &UserKey,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.set_session_owner(id, user, until, now).await
    }
    async fn session_owner(&self, id: &SessionId, now: Timestamp) -> Result<Option<UserKey>, StoreError> {
        self.inner.session_owner(id, now).await
    }
    async fn revoke_session_by_id(&self, user: &UserKey, id: &SessionId) -> Result<bool, StoreError> {
        let result = self.inner.revoke_session_by_id(user, id).await;
        self.cache.evict_id(user, id);
        result
    }
    async fn revoke_user_sessions(&self, user: &UserKey, keep: Option<&SessionId>) -> Result<u64, StoreError> {
        let result = self.inner.revoke_user_sessions(user, keep).await;
        // The kept session is evicted too: it refills on its next validation.
        self.cache.evict_user(user);
        result
    }
    async fn list_sessions(&self, user: &UserKey, now: Timestamp) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.list_sessions(user, now).await
    }
    async fn login_guard(
        &self,
        user: &UserKey,
        bucket: GuardBucket<'_>,
        now: Timestamp,
        rule: GuardRule,
        event: GuardEvent,
    ) -> Result<u64, StoreError> {
        self.inner.login_guard(user, bucket, now, rule, event).await
    }
    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.count_active(now).await
    }
    async fn prune_expired(&self, now: Timestamp) -> Result<(), StoreError> {
        self.inner.prune_expired(now).await
    }
}
