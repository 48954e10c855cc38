//! A process-local copy of recently validated sessions, kept coherent with Redis.
//!
//! Why: a validation is ~90 % of the traffic and, without this, each one costs a Redis round
//! trip — on a small machine the round trip (client and server CPU) is most of a validation's
//! cost. With Redis *client-side caching* (`CLIENT TRACKING`, RESP3) Redis remembers which keys
//! each connection read and pushes an invalidation on that connection when one of them changes
//! or expires. This module is the cache those pushes keep honest; the Redis side
//! (`store::redis::tracking`) feeds it.
//!
//! The rules that keep a cached answer as good as Redis's own:
//! - **Fill only what Redis will invalidate.** A miss first parks a *pending* slot, then reads;
//!   the answer is kept only if the slot is still there. An invalidation (or a local eviction)
//!   that arrives between the read and the answer removes the slot, so a stale answer is never
//!   stored, whatever order the reply and the push are processed in.
//! - **Evictions that cannot name the digest still stop the fills they race.** Evicting a
//!   user's sessions (a role change, logout everywhere, a disable) or one session by its public
//!   id cannot find a read in flight by its digest, so each bumps the generation of the user's
//!   shard, and a read that began before the bump does not fill.
//! - **Serve only while invalidations are known to flow.** Every tracked connection proves its
//!   link with a heartbeat; a `PING` answered means every push sent before it has arrived (one
//!   connection, one order). An entry is served only while every link's last proof is younger
//!   than the staleness bound, so a cut or hung connection stops the cache within that bound,
//!   and requests go to Redis (and get a 503 if it is really gone).
//! - **Forget everything when a link restarts.** A reconnect loses the server's tracking
//!   state, so the whole cache is cleared and fills from before the reset are refused (epoch).
//! - **Never outlive the entry's own limits.** A hit also needs the session's deadline ahead
//!   and its last-seen mark younger than the slide interval (otherwise Redis must record the
//!   use), and the entry younger than `max_age` (a backstop for an invalidation that never
//!   arrives; a `FLUSHALL` or `FLUSHDB`, whose push names no key, clears everything: see
//!   `store::redis::tracking`).
//! - **Same-instance revocations evict synchronously** (see `store::cached`), so a logout is
//!   refused on this instance by the very next request, before any push arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Lookup, Slide, Validated};
use crate::session::{SessionId, Shard, Timestamp, TokenHash};
use crate::users::UserKey;

/// Lock stripes: validations on two cores rarely meet on one.
const STRIPES: usize = 16;

/// Cache settings.
#[derive(Clone, Copy, Debug)]
pub struct NearCacheSettings {
    /// Longest time an entry is served after it was read from Redis.
    pub max_age: Duration,
    /// Most entries kept (pending fills included).
    pub capacity: usize,
    /// How old a link's last heartbeat may be while entries are still served.
    pub staleness: Duration,
}

struct Entry {
    validated: Arc<Validated>,
    fetched: Instant,
}

enum Slot {
    /// A read is in flight; its answer may be stored if this slot survives.
    Pending(u64),
    Ready(Arc<Entry>),
}

/// A read in flight that may fill the cache; see [`NearCache::begin`]. Dropped without
/// [`NearCache::complete`] (the request was cancelled), it takes its pending slot with it, so
/// the next miss can fill.
#[must_use = "complete the ticket with the read's answer"]
pub struct Ticket<'a> {
    cache: &'a NearCache,
    hash: TokenHash,
    id: u64,
    epoch: u64,
    generation: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut stripe = self.cache.stripe(&self.hash);
        if matches!(stripe.get(&self.hash), Some(Slot::Pending(id)) if *id == self.id) {
            stripe.remove(&self.hash);
        }
    }
}

/// The cache. See the module docs for its rules.
pub struct NearCache {
    stripes: Box<[Mutex<HashMap<TokenHash, Slot>>]>,
    /// Session id → digest, to evict by id (logout and revocation by id) without a scan.
    by_id: Mutex<HashMap<SessionId, TokenHash>>,
    settings: NearCacheSettings,
    /// Bumped by every clear: tickets from before it cannot fill.
    epoch: AtomicU64,
    /// Per shard: bumped by every eviction of a user's sessions or of a session by id, so that
    /// reads of that shard in flight meanwhile cannot fill (see the module docs).
    generations: Box<[AtomicU64]>,
    next_ticket: AtomicU64,
    /// Per link (tracked connection): until when (ms after `origin`) its heartbeat proves that
    /// invalidations flow; 0 while tracking is not established.
    links: Box<[AtomicU64]>,
    origin: Instant,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a map half-updated in a way that matters
    // here (every update is a single insert or remove), so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NearCache {
    /// An empty cache for `links` tracked connections, none of them proven yet.
    #[must_use]
    pub fn new(settings: NearCacheSettings, links: usize) -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            by_id: Mutex::new(HashMap::new()),
            settings,
            epoch: AtomicU64::new(0),
            generations: (0..Shard::COUNT).map(|_| AtomicU64::new(0)).collect(),
            next_ticket: AtomicU64::new(1),
            links: (0..links.max(1)).map(|_| AtomicU64::new(0)).collect(),
            origin: Instant::now(),
        }
    }

    fn stripe(&self, hash: &TokenHash) -> MutexGuard<'_, HashMap<TokenHash, Slot>> {
        lock(&self.stripes[usize::from(hash.spread_byte()) % STRIPES])
    }

    fn generation(&self, shard: Shard) -> &AtomicU64 {
        &self.generations[usize::from(shard.index()) % self.generations.len()]
    }

    fn mono_ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether every link has proven, recently enough, that invalidations reach us: only then
    /// is anything served or filled.
    #[must_use]
    pub fn coherent(&self) -> bool {
        let now = self.mono_ms(Instant::now());
        self.links.iter().all(|until| until.load(Ordering::Acquire) > now)
    }

    /// Link `link` answered a heartbeat sent at `sent`: pushes sent before then have arrived.
    pub fn link_proven(&self, link: usize, sent: Instant) {
        if let Some(until) = self.links.get(link) {
            let proven = self.mono_ms(sent + self.settings.staleness).max(1);
            // Only move forward, and never revive a link that `link_lost` reset meanwhile:
            // a reset link stays 0 until tracking is re-established (`link_tracking`).
            let _ = until.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current != 0 && proven > current).then_some(proven)
            });
        }
    }

    /// Link `link` (re)established tracking at `at`: it may serve again.
    pub fn link_tracking(&self, link: usize, at: Instant) {
        if let Some(until) = self.links.get(link) {
            until.store(self.mono_ms(at + self.settings.staleness).max(1), Ordering::Release);
        }
    }

    /// Link `link` lost its connection (or its tracking): stop serving and forget everything,
    /// since pushes may have been lost.
    pub fn link_lost(&self, link: usize) {
        if let Some(until) = self.links.get(link) {
            until.store(0, Ordering::Release);
        }
        self.clear();
    }

    /// A cached answer for a validation, if one may be served at `now` under `slide`.
    #[must_use]
    pub fn get(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Option<Lookup> {
        let entry = {
            let stripe = self.stripe(hash);
            match stripe.get(hash) {
                Some(Slot::Ready(entry)) => Arc::clone(entry),
                _ => return None,
            }
        };
        let usable = entry.fetched.elapsed() < self.settings.max_age
            && now < entry.validated.session.deadline()
            && now.millis() - entry.validated.session.last_seen_at.millis() < slide.min_interval_ms
            && self.coherent();
        usable.then(|| Lookup::Found(Arc::clone(&entry.validated)))
    }

    /// Before reading `hash` from Redis: park a pending slot. `None` when the answer could not
    /// be kept anyway (links not proven, or the cache full) or another read of the same
    /// session is already filling it (concurrent misses must not keep displacing each other's
    /// slot, or a busy session would never be filled).
    pub fn begin(&self, hash: &TokenHash) -> Option<Ticket<'_>> {
        if !self.coherent() {
            return None;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let generation = self.generation(hash.shard()).load(Ordering::SeqCst);
        let id = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let mut stripe = self.stripe(hash);
        if stripe.len() >= self.settings.capacity.div_ceil(STRIPES) && !stripe.contains_key(hash) {
            self.purge(&mut stripe);
            if stripe.len() >= self.settings.capacity.div_ceil(STRIPES) {
                return None;
            }
        }
        if matches!(stripe.get(hash), Some(Slot::Pending(_))) {
            return None;
        }
        if let Some(Slot::Ready(old)) = stripe.insert(*hash, Slot::Pending(id)) {
            self.unindex(&old.validated.session.session_id, hash);
        }
        Some(Ticket { cache: self, hash: *hash, id, epoch, generation })
    }

    /// The read of `ticket` answered `lookup`: keep a live session if nothing invalidated it
    /// meanwhile; otherwise just drop the pending slot.
    pub fn complete(&self, ticket: Ticket<'_>, lookup: &Result<Lookup, super::StoreError>) {
        let Ok(Lookup::Found(validated)) = lookup else { return };
        let mut stripe = self.stripe(&ticket.hash);
        let ours = matches!(stripe.get(&ticket.hash), Some(Slot::Pending(id)) if *id == ticket.id);
        let unchanged = self.epoch.load(Ordering::SeqCst) == ticket.epoch
            && self.generation(ticket.hash.shard()).load(Ordering::SeqCst) == ticket.generation;
        if ours && unchanged {
            lock(&self.by_id).insert(validated.session.session_id.clone(), ticket.hash);
            let entry = Entry { validated: Arc::clone(validated), fetched: Instant::now() };
            stripe.insert(ticket.hash, Slot::Ready(Arc::new(entry)));
        }
        // Otherwise (not live, or invalidated meanwhile) the ticket's drop clears its slot.
    }

    /// Forget the session stored under `hash` (and any read of it in flight).
    pub fn evict(&self, hash: &TokenHash) {
        if let Some(Slot::Ready(old)) = self.stripe(hash).remove(hash) {
            self.unindex(&old.validated.session.session_id, hash);
        }
    }

    /// Drop `id` from the index if it still points at `hash` (after a rotation it may already
    /// point at the new token's entry).
    fn unindex(&self, id: &SessionId, hash: &TokenHash) {
        let mut by_id = lock(&self.by_id);
        if by_id.get(id) == Some(hash) {
            by_id.remove(id);
        }
    }

    /// Forget `user`'s session with public id `id` (and keep reads of the user's shard in
    /// flight from filling).
    pub fn evict_id(&self, user: &UserKey, id: &SessionId) {
        self.generation(user.shard()).fetch_add(1, Ordering::SeqCst);
        let hash = lock(&self.by_id).remove(id);
        if let Some(hash) = hash {
            self.evict(&hash);
        }
    }

    /// Forget every session of `user` (all revoked, or the roles changed), and keep reads of
    /// the user's shard in flight from filling.
    pub fn evict_user(&self, user: &UserKey) {
        self.generation(user.shard()).fetch_add(1, Ordering::SeqCst);
        for stripe in &*self.stripes {
            let mut stripe = lock(stripe);
            stripe.retain(|hash, slot| match slot {
                Slot::Ready(entry) if entry.validated.session.user_key == *user => {
                    self.unindex(&entry.validated.session.session_id, hash);
                    false
                }
                _ => true,
            });
        }
    }

    /// Drop the entries too old to be served (and pending reads: they will not fill).
    fn purge(&self, stripe: &mut HashMap<TokenHash, Slot>) {
        let max_age = self.settings.max_age;
        stripe.retain(|hash, slot| match slot {
            Slot::Ready(entry) if entry.fetched.elapsed() < max_age => true,
            Slot::Ready(entry) => {
                self.unindex(&entry.validated.session.session_id, hash);
                false
            }
            Slot::Pending(_) => false,
        });
    }

    /// Forget everything; reads in flight will not fill.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for stripe in &*self.stripes {
            lock(stripe).clear();
        }
        lock(&self.by_id).clear();
    }

    /// Redis says `key` changed or expired.
    pub fn invalidate_key(&self, key: &[u8]) {
        let Ok(key) = std::str::from_utf8(key) else { return };
        // Keys are `sessiond:{xyz}:<kind>:<rest>` (see `store::redis`).
        let Some(rest) = key.strip_prefix("sessiond:").and_then(|k| k.split_once("}:")).map(|(_, rest)| rest) else {
            return;
        };
        if let Some(encoded) = rest.strip_prefix("sess:") {
            if let Some(hash) = TokenHash::from_encoded(encoded) {
                self.evict(&hash);
            }
        } else if let Some(user) = rest.strip_prefix("user:").and_then(UserKey::from_stored) {
            self.evict_user(&user);
        }
    }

    /// Entries held (pending reads included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.stripes.iter().map(|stripe| lock(stripe).len()).sum()
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionToken, Shard};
    use crate::store::{SessionRecord, StoreError};

    const SLIDE: Slide = Slide { idle_ms: 60_000, min_interval_ms: 6_000 };

    fn cache() -> NearCache {
        let settings =
            NearCacheSettings { max_age: Duration::from_secs(10), capacity: 1_000, staleness: Duration::from_secs(5) };
        let cache = NearCache::new(settings, 1);
        cache.link_tracking(0, Instant::now());
        cache
    }

    fn live(user: &str, now: Timestamp) -> (TokenHash, Result<Lookup, StoreError>) {
        let user_key = UserKey::from_stored(user).expect("user");
        let (_, hash) = SessionToken::generate_in(user_key.shard()).expect("token");
        let session = SessionRecord {
            session_id: SessionId::generate().expect("id"),
            user_id: "u".to_owned(),
            username: user.to_owned(),
            user_key,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now.plus(Duration::from_secs(60)),
            expires_at: now.plus(Duration::from_secs(600)),
            ip: None,
            device: None,
            data: None,
        };
        (hash, Ok(Lookup::found(session, vec!["user".to_owned()])))
    }

    fn fill(cache: &NearCache, hash: &TokenHash, lookup: &Result<Lookup, StoreError>) {
        let ticket = cache.begin(hash).expect("ticket");
        cache.complete(ticket, lookup);
    }

    fn session_key(hash: &TokenHash) -> String {
        format!("sessiond:{{{:03x}}}:sess:{}", hash.shard().index(), hash.encoded())
    }

    #[test]
    fn a_completed_read_is_served_within_its_limits() {
        let cache = cache();
        let now = Timestamp::now();
        let (hash, lookup) = live("ann", now);
        assert!(cache.get(&hash, now, SLIDE).is_none());
        fill(&cache, &hash, &lookup);
        assert_eq!(cache.get(&hash, now, SLIDE).as_ref(), lookup.as_ref().ok());
        // Due for a slide: Redis must record the use.
        assert!(cache.get(&hash, now.plus(Duration::from_secs(6)), SLIDE).is_none());
        // Past the deadline, even with no slide due.
        let never = Slide { min_interval_ms: i64::MAX, ..SLIDE };
        assert!(cache.get(&hash, now.plus(Duration::from_secs(61)), never).is_none());
    }

    #[test]
    fn an_invalidation_during_the_read_keeps_the_answer_out() {
        let cache = cache();
        let now = Timestamp::now();
        let (hash, lookup) = live("bob", now);
        let ticket = cache.begin(&hash).expect("ticket");
        cache.invalidate_key(session_key(&hash).as_bytes());
        cache.complete(ticket, &lookup);
        assert!(cache.get(&hash, now, SLIDE).is_none(), "a stale answer was kept");
        fill(&cache, &hash, &lookup);
        assert!(cache.get(&hash, now, SLIDE).is_some(), "the next read fills normally");
    }

    #[test]
    fn a_reset_during_the_read_keeps_the_answer_out() {
        let cache = cache();
        let now = Timestamp::now();
        let (hash, lookup) = live("cid", now);
        let ticket = cache.begin(&hash).expect("ticket");
        cache.clear();
        let again = cache.begin(&hash).expect("a read after the reset may fill");
        cache.complete(ticket, &lookup);
        assert!(cache.get(&hash, now, SLIDE).is_none(), "a read from before the reset filled");
        cache.complete(again, &lookup);
        assert!(cache.get(&hash, now, SLIDE).is_some());
    }

    #[test]
    fn a_read_in_flight_while_its_user_or_its_id_is_evicted_does_not_fill() {
        let cache = cache();
        let now = Timestamp::now();
        let (hash, lookup) = live("gus", now);
        let Ok(Lookup::Found(found)) = &lookup else { panic!("live") };
        let session = &found.session;
        // A role change or logout-everywhere confirmed by Redis while the read was in flight.
        let ticket = cache.begin(&hash).expect("ticket");
        cache.evict_user(&session.user_key);
        cache.complete(ticket, &lookup);
        assert!(cache.get(&hash, now, SLIDE).is_none(), "a read from before the user's eviction filled");
        // A logout by id (the digest of a read in flight is not indexed yet).
        let ticket = cache.begin(&hash).expect("ticket");
        cache.evict_id(&session.user_key, &session.session_id);
        cache.complete(ticket, &lookup);
        assert!(cache.get(&hash, now, SLIDE).is_none(), "a read from before the eviction by id filled");
        // Reads that begin after the eviction fill as usual.
        fill(&cache, &hash, &lookup);
        assert!(cache.get(&hash, now, SLIDE).is_some());
    }

    #[test]
    fn concurrent_misses_leave_one_filler_and_a_cancelled_one_frees_the_slot() {
        let cache = cache();
        let now = Timestamp::now();
        let (hash, lookup) = live("dee", now);
        let first = cache.begin(&hash).expect("ticket");
        assert!(cache.begin(&hash).is_none(), "a second miss must not displace the first filler");
        drop(first);
        fill(&cache, &hash, &lookup);
        assert!(cache.get(&hash, now, SLIDE).is_some());
    }

    #[test]
    fn evictions_by_id_by_user_and_on_a_lost_link() {
        let cache = cache();
        let now = Timestamp::now();
        let (a, la) = live("eve", now);
        let (b, lb) = live("eve", now);
        let (c, lc) = live("fay", now);
        for (hash, lookup) in [(&a, &la), (&b, &lb), (&c, &lc)] {
            fill(&cache, hash, lookup);
        }
        let Ok(Lookup::Found(live)) = &la else { panic!("live") };
        cache.evict_id(&live.session.user_key, &live.session.session_id);
        assert!(cache.get(&a, now, SLIDE).is_none());
        assert!(cache.get(&b, now, SLIDE).is_some());
        cache.invalidate_key(format!("sessiond:{{{:03x}}}:user:eve", Shard::of_user("eve").index()).as_bytes());
        assert!(cache.get(&b, now, SLIDE).is_none());
        assert!(cache.get(&c, now, SLIDE).is_some());
        cache.link_lost(0);
        assert!(cache.get(&c, now, SLIDE).is_none());
        assert!(cache.begin(&c).is_none(), "nothing fills until tracking is back");
        assert!(cache.is_empty());
    }

    #[test]
    fn only_recently_proven_links_serve() {
        let settings =
            NearCacheSettings { max_age: Duration::from_secs(10), capacity: 10, staleness: Duration::from_millis(200) };
        let cache = NearCache::new(settings, 2);
        cache.link_tracking(0, Instant::now());
        assert!(!cache.coherent(), "one of two links is not tracking");
        cache.link_tracking(1, Instant::now());
        assert!(cache.coherent());
        std::thread::sleep(Duration::from_millis(250));
        assert!(!cache.coherent(), "the proof ran out");
        cache.link_proven(0, Instant::now());
        cache.link_proven(1, Instant::now());
        assert!(cache.coherent());
    }
}
