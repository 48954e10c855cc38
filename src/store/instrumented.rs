//! The one place every store call passes through: a span per operation and its outcome.
//!
//! Wrapping the trait object (instead of sprinkling timing in each backend) guarantees that
//! no call escapes measurement, whichever backend is configured.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tracing::Instrument as _;

use super::{
    GuardBucket, GuardEvent, GuardRule, Lookup, NewPassword, PasswordChange, SessionRecord, Slide, Store, StoreError,
    UserRecord,
};
use crate::session::{SessionId, Timestamp, TokenHash};
use crate::telemetry::metrics::Metrics;
use crate::users::UserKey;

/// Observes an inner store.
pub struct Instrumented {
    inner: Arc<dyn Store>,
    system: &'static str,
    metrics: Arc<Metrics>,
}

impl Instrumented {
    /// Wrap `inner`; `system` names the backend in spans (`redis`, `memory`). Latency and
    /// error metrics (`sessiond_redis_*`) are recorded for Redis only.
    pub fn new(inner: Arc<dyn Store>, system: &'static str, metrics: Arc<Metrics>) -> Self {
        Self { inner, system, metrics }
    }

    async fn observe<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let span = tracing::info_span!(
            "store",
            otel.name = op,
            otel.kind = "client",
            db.system.name = self.system,
            db.operation.name = op,
            error.type = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        let elapsed = started.elapsed();
        if self.system == "redis" {
            self.metrics.redis_command(op, elapsed.as_secs_f64(), result.as_ref().err().map(StoreError::kind));
        }
        if let Err(error) = &result {
            span.record("error.type", error.kind());
            tracing::debug!(parent: &span, %error, elapsed_ms = elapsed.as_secs_f64() * 1e3, "store call failed");
        }
        result
    }
}

#[async_trait]
impl Store for Instrumented {
    async fn ping(&self) -> Result<(), StoreError> {
        self.observe("ping", self.inner.ping()).await
    }
    async fn insert_user(&self, key: &UserKey, user: &UserRecord) -> Result<bool, StoreError> {
        self.observe("insert_user", self.inner.insert_user(key, user)).await
    }
    async fn find_user(&self, key: &UserKey) -> Result<Option<UserRecord>, StoreError> {
        self.observe("find_user", self.inner.find_user(key)).await
    }
    async fn set_role(&self, key: &UserKey, role: &str, granted: bool) -> Result<bool, StoreError> {
        self.observe("set_role", self.inner.set_role(key, role, granted)).await
    }
    async fn create_session(
        &self,
        hash: &TokenHash,
        session: &SessionRecord,
        max_per_user: u32,
        now: Timestamp,
    ) -> Result<Option<Vec<SessionId>>, StoreError> {
        self.observe("create_session", self.inner.create_session(hash, session, max_per_user, now)).await
    }
    async fn change_password(&self, change: &NewPassword<'_>) -> Result<PasswordChange, StoreError> {
        self.observe("change_password", self.inner.change_password(change)).await
    }
    async fn delete_user(&self, user: &UserKey) -> Result<Option<u64>, StoreError> {
        self.observe("delete_user", self.inner.delete_user(user)).await
    }
    async fn set_disabled(&self, user: &UserKey, disabled: bool) -> Result<Option<u64>, StoreError> {
        self.observe("set_disabled", self.inner.set_disabled(user, disabled)).await
    }
    async fn touch_session(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Result<Lookup, StoreError> {
        self.observe("touch_session", self.inner.touch_session(hash, now, slide)).await
    }
    async fn touch_session_fresh(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Result<Lookup, StoreError> {
        self.observe("touch_session", self.inner.touch_session_fresh(hash, now, slide)).await
    }
    async fn rotate_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        now: Timestamp,
        slide: Slide,
    ) -> Result<Lookup, StoreError> {
        self.observe("rotate_session", self.inner.rotate_session(old, new, now, slide)).await
    }
    async fn revoke_session(&self, hash: &TokenHash) -> Result<Option<SessionId>, StoreError> {
        self.observe("revoke_session", self.inner.revoke_session(hash)).await
    }
    async fn set_session_owner(
        &self,
        id: &SessionId,
        user: &UserKey,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.observe("set_session_owner", self.inner.set_session_owner(id, user, until, now)).await
    }
    async fn session_owner(&self, id: &SessionId, now: Timestamp) -> Result<Option<UserKey>, StoreError> {
        self.observe("session_owner", self.inner.session_owner(id, now)).await
    }
    async fn revoke_session_by_id(&self, user: &UserKey, id: &SessionId) -> Result<bool, StoreError> {
        self.observe("revoke_session_by_id", self.inner.revoke_session_by_id(user, id)).await
    }
    async fn revoke_user_sessions(&self, user: &UserKey, keep: Option<&SessionId>) -> Result<u64, StoreError> {
        self.observe("revoke_user_sessions", self.inner.revoke_user_sessions(user, keep)).await
    }
    async fn list_sessions(&self, user: &UserKey, now: Timestamp) -> Result<Vec<SessionRecord>, StoreError> {
        self.observe("list_sessions", self.inner.list_sessions(user, now)).await
    }
    async fn login_guard(
        &self,
        user: &UserKey,
        bucket: GuardBucket<'_>,
        now: Timestamp,
        rule: GuardRule,
        event: GuardEvent,
    ) -> Result<u64, StoreError> {
        self.observe("login_guard", self.inner.login_guard(user, bucket, now, rule, event)).await
    }
    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.observe("count_active", self.inner.count_active(now)).await
    }
    async fn prune_expired(&self, now: Timestamp) -> Result<(), StoreError> {
        self.observe("prune_expired", self.inner.prune_expired(now)).await
    }
}
