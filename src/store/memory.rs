//! The in-memory store: the embedded default for a first `cargo run`, and the reference model
//! the Redis scripts are checked against (same contract suite).
//!
//! One mutex guards everything; each method is one critical section, which gives the same
//! atomicity as one Lua script. Expiry is checked on every read (a session past its deadline
//! is as good as gone) and expired entries are removed by [`Store::prune_expired`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    GuardBucket, GuardEvent, GuardRule, Lookup, NewPassword, PasswordChange, SessionRecord, Slide, Store, StoreError,
    UserRecord,
};
use crate::session::{SessionId, Timestamp, TokenHash};
use crate::users::UserKey;

/// Sessions and users in process memory. Not shared between instances, lost on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<UserKey, UserRecord>,
    sessions: HashMap<TokenHash, SessionRecord>,
    /// Per-user index: session id → token hash.
    by_user: HashMap<UserKey, HashMap<SessionId, TokenHash>>,
    /// Failed-login guard: theoretical arrival time (ms) per account and allowance (`None`:
    /// clients without a device token).
    guards: HashMap<UserKey, HashMap<Option<String>, i64>>,
    /// Owners of backend sessions, by id, until a deadline.
    owners: HashMap<SessionId, (UserKey, Timestamp)>,
}

impl State {
    fn remove(&mut self, hash: &TokenHash) -> Option<SessionRecord> {
        let session = self.sessions.remove(hash)?;
        if let Some(index) = self.by_user.get_mut(&session.user_key) {
            index.remove(&session.session_id);
            if index.is_empty() {
                self.by_user.remove(&session.user_key);
            }
        }
        Some(session)
    }

    fn live(&mut self, hash: &TokenHash, now: Timestamp) -> Result<&mut SessionRecord, Gone> {
        match self.sessions.get(hash) {
            None => return Err(Gone::Missing),
            Some(session) if session.deadline() <= now => {
                self.remove(hash);
                return Err(Gone::Expired);
            }
            Some(_) => {}
        }
        self.sessions.get_mut(hash).ok_or(Gone::Missing)
    }

    fn roles(&self, user: &UserKey) -> Vec<String> {
        self.users.get(user).map(|u| u.roles.clone()).unwrap_or_default()
    }

    /// End the user's sessions except `keep`; how many were live.
    fn revoke_user(&mut self, user: &UserKey, keep: Option<&SessionId>, now: Timestamp) -> u64 {
        let doomed: Vec<TokenHash> = self
            .by_user
            .get(user)
            .into_iter()
            .flat_map(|index| index.iter())
            .filter(|(id, _)| Some(*id) != keep)
            .map(|(_, hash)| *hash)
            .collect();
        let mut revoked = 0;
        for hash in doomed {
            if self.remove(&hash).is_some_and(|s| s.deadline() > now) {
                revoked += 1;
            }
        }
        revoked
    }

    fn user_sessions(&self, user: &UserKey, now: Timestamp) -> Vec<(TokenHash, SessionRecord)> {
        self.by_user
            .get(user)
            .into_iter()
            .flat_map(|index| index.values())
            .filter_map(|hash| self.sessions.get(hash).map(|s| (*hash, s.clone())))
            .filter(|(_, s)| s.deadline() > now)
            .collect()
    }
}

/// Why a session cannot be used.
enum Gone {
    Missing,
    Expired,
}

impl From<Gone> for Lookup {
    fn from(gone: Gone) -> Self {
        match gone {
            Gone::Missing => Self::Missing,
            Gone::Expired => Self::Expired,
        }
    }
}

fn slide(session: &mut SessionRecord, now: Timestamp, slide: Slide) {
    if now.millis_since(session.last_seen_at) >= slide.min_interval_ms {
        session.last_seen_at = now;
        session.idle_expires_at =
            Timestamp::from_millis(now.millis().saturating_add(slide.idle_ms)).min(session.expires_at);
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change visible to the
        // contract (each method mutates last), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn insert_user(&self, key: &UserKey, user: &UserRecord) -> Result<bool, StoreError> {
        let mut state = self.state();
        if let Some(existing) = state.users.get(key) {
            // The same record again is a re-sent insert (see the contract): it succeeded.
            return Ok(existing.user_id == user.user_id);
        }
        state.users.insert(key.clone(), user.clone());
        Ok(true)
    }

    async fn find_user(&self, key: &UserKey) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.state().users.get(key).cloned())
    }

    async fn set_role(&self, key: &UserKey, role: &str, granted: bool) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(user) = state.users.get_mut(key) else {
            return Ok(false);
        };
        user.roles.retain(|r| r != role);
        if granted {
            user.roles.push(role.to_owned());
        }
        Ok(true)
    }

    async fn create_session(
        &self,
        hash: &TokenHash,
        session: &SessionRecord,
        max_per_user: u32,
        now: Timestamp,
    ) -> Result<Option<Vec<SessionId>>, StoreError> {
        let mut state = self.state();
        if let Some(existing) = state.sessions.get(hash) {
            if existing.session_id == session.session_id {
                return Ok(Some(Vec::new()));
            }
            return Err(StoreError::other("create_session", "token collision"));
        }
        if state.users.get(&session.user_key).is_none_or(|user| user.disabled) {
            return Ok(None);
        }
        let mut live = state.user_sessions(&session.user_key, now);
        let mut evicted = Vec::new();
        if max_per_user > 0 {
            live.sort_by(|a, b| (a.1.created_at, &a.1.session_id).cmp(&(b.1.created_at, &b.1.session_id)));
            let excess = (live.len() + 1).saturating_sub(max_per_user as usize);
            for (old_hash, old) in live.into_iter().take(excess) {
                state.remove(&old_hash);
                evicted.push(old.session_id);
            }
        }
        state.sessions.insert(*hash, session.clone());
        state.by_user.entry(session.user_key.clone()).or_default().insert(session.session_id.clone(), *hash);
        Ok(Some(evicted))
    }

    async fn change_password(&self, change: &NewPassword<'_>) -> Result<PasswordChange, StoreError> {
        let NewPassword { user, expected, hash: new_hash, current, new, now, slide: rule } = *change;
        let mut state = self.state();
        if state.live(current, now).is_err() {
            // A re-sent change finds the session under its new token and the new hash: it ran.
            let ran =
                state.sessions.contains_key(new) && state.users.get(user).is_some_and(|u| u.password_hash == new_hash);
            return Ok(match state.sessions.get(new) {
                Some(moved) if ran => PasswordChange::Changed { session: Box::new(moved.clone()), revoked: 0 },
                _ => PasswordChange::SessionEnded,
            });
        }
        match state.users.get_mut(user) {
            Some(record) if record.password_hash == expected => record.password_hash = new_hash.to_owned(),
            _ => return Ok(PasswordChange::Conflict),
        }
        if state.sessions.contains_key(new) {
            return Err(StoreError::other("change_password", "token collision"));
        }
        let Some(mut session) = state.sessions.remove(current) else { return Ok(PasswordChange::SessionEnded) };
        let revoked = state.revoke_user(user, Some(&session.session_id), now);
        slide(&mut session, now, Slide { min_interval_ms: 0, ..rule });
        state.by_user.entry(user.clone()).or_default().insert(session.session_id.clone(), *new);
        state.sessions.insert(*new, session.clone());
        Ok(PasswordChange::Changed { session: Box::new(session), revoked })
    }

    async fn delete_user(&self, user: &UserKey) -> Result<Option<u64>, StoreError> {
        let mut state = self.state();
        if !state.users.contains_key(user) {
            return Ok(None);
        }
        let revoked = state.revoke_user(user, None, Timestamp::now());
        state.by_user.remove(user);
        state.guards.remove(user);
        state.users.remove(user);
        Ok(Some(revoked))
    }

    async fn set_disabled(&self, user: &UserKey, disabled: bool) -> Result<Option<u64>, StoreError> {
        let mut state = self.state();
        let Some(record) = state.users.get_mut(user) else { return Ok(None) };
        record.disabled = disabled;
        Ok(Some(if disabled { state.revoke_user(user, None, Timestamp::now()) } else { 0 }))
    }

    async fn touch_session(&self, hash: &TokenHash, now: Timestamp, rule: Slide) -> Result<Lookup, StoreError> {
        let mut state = self.state();
        let session = match state.live(hash, now) {
            Ok(session) => {
                slide(session, now, rule);
                session.clone()
            }
            Err(gone) => return Ok(gone.into()),
        };
        let roles = state.roles(&session.user_key);
        Ok(Lookup::found(session, roles))
    }

    async fn rotate_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        now: Timestamp,
        rule: Slide,
    ) -> Result<Lookup, StoreError> {
        let mut state = self.state();
        if let Err(gone) = state.live(old, now) {
            // A re-sent rotation finds the session under its new token: it already ran.
            if let Some(moved) = state.sessions.get(new).cloned() {
                let roles = state.roles(&moved.user_key);
                return Ok(Lookup::found(moved, roles));
            }
            return Ok(gone.into());
        }
        if state.sessions.contains_key(new) {
            return Err(StoreError::other("rotate_session", "token collision"));
        }
        let Some(mut session) = state.sessions.remove(old) else {
            return Ok(Lookup::Missing);
        };
        slide(&mut session, now, rule);
        if let Some(index) = state.by_user.get_mut(&session.user_key) {
            index.insert(session.session_id.clone(), *new);
        }
        state.sessions.insert(*new, session.clone());
        let roles = state.roles(&session.user_key);
        Ok(Lookup::found(session, roles))
    }

    async fn revoke_session(&self, hash: &TokenHash) -> Result<Option<SessionId>, StoreError> {
        // A session past its deadline no longer exists (Redis has dropped its key): it is
        // removed, but not reported as revoked.
        let now = Timestamp::now();
        Ok(self.state().remove(hash).filter(|s| s.deadline() > now).map(|s| s.session_id))
    }

    async fn set_session_owner(
        &self,
        id: &SessionId,
        user: &UserKey,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if until > now {
            self.state().owners.insert(id.clone(), (user.clone(), until));
        }
        Ok(())
    }

    async fn session_owner(&self, id: &SessionId, now: Timestamp) -> Result<Option<UserKey>, StoreError> {
        let state = self.state();
        Ok(state.owners.get(id).filter(|(_, until)| *until > now).map(|(user, _)| user.clone()))
    }

    async fn revoke_session_by_id(&self, user: &UserKey, id: &SessionId) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(hash) = state.by_user.get(user).and_then(|index| index.get(id)).copied() else {
            return Ok(false);
        };
        let now = Timestamp::now();
        let live = state.sessions.get(&hash).is_some_and(|s| s.deadline() > now);
        state.remove(&hash);
        Ok(live)
    }

    async fn revoke_user_sessions(&self, user: &UserKey, keep: Option<&SessionId>) -> Result<u64, StoreError> {
        Ok(self.state().revoke_user(user, keep, Timestamp::now()))
    }

    async fn list_sessions(&self, user: &UserKey, now: Timestamp) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(self.state().user_sessions(user, now).into_iter().map(|(_, s)| s).collect())
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(self.state().sessions.values().filter(|s| s.deadline() > now).count() as u64)
    }

    async fn login_guard(
        &self,
        user: &UserKey,
        bucket: GuardBucket<'_>,
        now: Timestamp,
        rule: GuardRule,
        event: GuardEvent,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let now = now.millis();
        let field = match bucket {
            GuardBucket::Untrusted => None,
            GuardBucket::Device(id) => Some(id.to_owned()),
        };
        if event == GuardEvent::Success {
            if let Some(fields) = state.guards.get_mut(user) {
                fields.remove(&field);
            }
            return Ok(0);
        }
        let fields = state.guards.entry(user.clone()).or_default();
        let mut tat = fields.get(&field).copied().unwrap_or(now).max(now);
        if event == GuardEvent::Failure {
            tat += rule.interval_ms;
            fields.insert(field, tat);
        }
        Ok(u64::try_from(tat - now - rule.tolerance_ms).unwrap_or(0))
    }

    async fn prune_expired(&self, now: Timestamp) -> Result<(), StoreError> {
        let mut state = self.state();
        for fields in state.guards.values_mut() {
            fields.retain(|_, tat| *tat > now.millis());
        }
        state.guards.retain(|_, fields| !fields.is_empty());
        let expired: Vec<TokenHash> =
            state.sessions.iter().filter(|(_, s)| s.deadline() <= now).map(|(h, _)| *h).collect();
        for hash in expired {
            state.remove(&hash);
        }
        state.owners.retain(|_, (_, until)| *until > now);
        Ok(())
    }
}
