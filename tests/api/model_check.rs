//! Model-checked stores: random sequences of store operations run against the in-memory store
//! and a real `redis-server`, each step compared with a plain model (a few maps).
//!
//! # Time
//!
//! Every operation is handed a virtual `now` on a grid of ticks (`MODEL_CHECK_TICK_MS`, 10 ms
//! by default); a clock advance moves `now` by whole ticks and then sleeps until the wall clock
//! has caught up, so `now` is never ahead of real time. Redis enforces deadlines with its own
//! clock (key TTLs) and the memory store reads the wall clock when it counts revoked
//! sessions, so the virtual and the real clock must agree on every deadline a call could see.
//! The timeouts are whole ticks plus half a tick, so every deadline falls halfway between two
//! operation instants, and each store call is timed: it must have completed before every
//! deadline the model takes as still ahead, and started after every key the model takes as
//! expired was due to leave Redis (its deadline plus how late the call that set its TTL ran).
//! A case in which a call crossed such a moment (a stalled, overloaded machine) proves nothing
//! and is run again on a doubled tick (up to 16 times the first, 8 attempts in all); the
//! report counts these re-runs.
//!
//! # Runs
//!
//! Cases run on parallel lanes (one Redis database and one memory store each), since most of
//! a case is spent waiting for the clock. A failing case is shrunk with proptest's value tree
//! to a minimal sequence, which the panic prints with the seed that reproduces it.
//!
//! | variable | default | |
//! |---|---|---|
//! | `PROPTEST_CASES` | 1000 | sequences |
//! | `MODEL_CHECK_MAX_OPS` | 24 | longest sequence |
//! | `MODEL_CHECK_LANES` | 8 | cases run at once (at most 15) |
//! | `MODEL_CHECK_TICK_MS` | 10 | the clock grid (even, at least 6) |
//! | `MODEL_CHECK_SEED` | random | reproduce a run |

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Write as _};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use sessiond::session::{SessionId, SessionToken, Slide, Timestamp, TokenHash};
use sessiond::store::memory::MemoryStore;
use sessiond::store::redis::{RedisSettings, RedisStore};
use sessiond::store::{Lookup, SessionRecord, Store, StoreError, UserRecord};
use sessiond::users::{UserKey, Username};

use crate::helpers::{read_resp, RedisServer};

/// Users a sequence works with: mixed case, so the stored spelling differs from the key.
const USERS: [&str; 3] = ["Alice", "bob", "Carol.X"];
/// Live sessions per user before the oldest is evicted.
const CAP: u32 = 2;
/// Users registered before every sequence (the others only by a step).
const REGISTERED: usize = 2;
const PASSWORD_HASH: &str = "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
/// Runs of a case whose timing did not hold, on a tick doubled up to 16 times the first.
const MAX_ATTEMPTS: u32 = 8;
/// Shrinking stops after this many runs of candidate sequences.
const MAX_SHRINK_RUNS: u32 = 1_000;

#[derive(Clone, Debug)]
enum Op {
    /// `insert_user`.
    Register(usize),
    /// `create_session` with the per-user cap: a login, evicting the oldest beyond the cap.
    Login(usize),
    /// `touch_session` with the sliding rule (the token: an index into every token issued so
    /// far, live or not).
    Validate(usize),
    /// `rotate_session` to a fresh token.
    Refresh(usize),
    /// `revoke_session` by token.
    Logout(usize),
    /// `revoke_session_by_id`: the owner ends one session by its id.
    RevokeOne(usize),
    /// `revoke_user_sessions`, keeping the session of the given token when it is the user's.
    RevokeAll(usize, Option<usize>),
    /// `list_sessions`.
    List(usize),
    /// `count_active`: thousands of commands in Redis (one per active-session set), too slow
    /// for the clock grid, and independent of it (it counts by the given `now`): only as the
    /// last step of every case.
    Count,
    /// `set_disabled`.
    Disable(usize, bool),
    /// `delete_user`.
    Delete(usize),
    /// Move the clock by whole ticks (idle and absolute expiry).
    Advance(u8),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Most steps concern the first user, so that the cap is reached.
    let user = prop_oneof![3 => Just(0), 1 => Just(1), 1 => Just(2)];
    let token = 0..12usize;
    prop_oneof![
        1 => user.clone().prop_map(Op::Register),
        6 => user.clone().prop_map(Op::Login),
        5 => token.clone().prop_map(Op::Validate),
        3 => token.clone().prop_map(Op::Refresh),
        2 => token.clone().prop_map(Op::Logout),
        2 => token.clone().prop_map(Op::RevokeOne),
        1 => (user.clone(), proptest::option::of(token)).prop_map(|(u, keep)| Op::RevokeAll(u, keep)),
        2 => user.clone().prop_map(Op::List),
        1 => (user.clone(), any::<bool>()).prop_map(|(u, d)| Op::Disable(u, d)),
        1 => user.prop_map(Op::Delete),
        3 => (1u8..=4).prop_map(Op::Advance),
    ]
}

fn sequence_strategy(max_ops: usize) -> BoxedStrategy<Vec<Op>> {
    proptest::collection::vec(op_strategy(), 1..=max_ops).boxed()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

fn key(user: usize) -> UserKey {
    Username::parse(USERS[user]).expect("valid username").key()
}

/// The timeouts on a grid of `tick` ms: deadlines fall halfway between operation instants.
#[derive(Clone, Copy, Debug)]
struct Timing {
    tick: i64,
    idle_ms: i64,
    absolute_ms: i64,
}

impl Timing {
    fn new(tick: i64) -> Self {
        Self { tick, idle_ms: 2 * tick + tick / 2, absolute_ms: 6 * tick + tick / 2 }
    }

    /// The service's sliding rule for validations: slide when a tenth of the idle window passed.
    fn slide(self) -> Slide {
        Slide { idle_ms: self.idle_ms, min_interval_ms: self.idle_ms / 10 }
    }

    /// The rule for an explicit refresh: always slide.
    fn slide_now(self) -> Slide {
        Slide { idle_ms: self.idle_ms, min_interval_ms: 0 }
    }
}

/// Virtual time, never ahead of the wall clock.
struct Clock {
    base: i64,
    offset: i64,
    timing: Timing,
    latest_lateness: i64,
}

impl Clock {
    fn start(timing: Timing) -> Self {
        Self { base: Timestamp::now().millis(), offset: 0, timing, latest_lateness: 0 }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.base + self.offset)
    }

    async fn advance(&mut self, ticks: u8) {
        self.offset += i64::from(ticks) * self.timing.tick;
        loop {
            let ahead = self.now().millis() - Timestamp::now().millis();
            if ahead < 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(u64::try_from(ahead).unwrap_or(0) + 1)).await;
        }
    }

    /// A store call ran from `started` to `done` (wall clock): did every session's deadline lie
    /// on the side of it that the model assumes? `deadlines`: each session's deadline and the
    /// latest moment Redis may still hold its key (the deadline plus how late the call that set
    /// the key's TTL ran).
    fn check(&mut self, started: i64, done: i64, deadlines: &[(i64, i64)]) -> Result<(), Failure> {
        let now = self.now().millis();
        self.latest_lateness = self.latest_lateness.max(done - now);
        // 2 ms: Redis's millisecond TTLs, and the offset between this clock and Redis's.
        let unclear =
            deadlines.iter().find(
                |&&(deadline, key_gone_by)| {
                    if deadline > now {
                        done >= deadline - 2
                    } else {
                        started <= key_gone_by + 2
                    }
                },
            );
        match unclear {
            None => Ok(()),
            Some(&(deadline, key_gone_by)) => Err(Failure::Late {
                detail: format!(
                    "a call at +{} ms ran from +{} to +{} ms, across the deadline +{} ms (key gone by +{} ms) on a {} ms \
                     tick",
                    self.offset,
                    started - self.base,
                    done - self.base,
                    deadline - self.base,
                    key_gone_by - self.base,
                    self.timing.tick
                ),
            }),
        }
    }
}

#[derive(Debug)]
enum Failure {
    /// A store answered differently from the model: a real finding.
    Diverged(String),
    /// A store call failed.
    Store(String),
    /// The machine was too slow for the tick: the case proves nothing.
    Late { detail: String },
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Store(error.to_string())
    }
}

/// What the model knows of a user.
struct ModelUser {
    record: UserRecord,
}

/// The model: users, and every session not explicitly ended (some may be past their deadline:
/// those count as gone).
#[derive(Default)]
struct Model {
    users: HashMap<usize, ModelUser>,
    sessions: HashMap<TokenHash, SessionRecord>,
}

impl Model {
    fn live(&self, now: Timestamp) -> impl Iterator<Item = (&TokenHash, &SessionRecord)> {
        self.sessions.iter().filter(move |(_, s)| s.deadline() > now)
    }

    fn live_of(&self, user: &UserKey, now: Timestamp) -> Vec<SessionRecord> {
        let mut out: Vec<SessionRecord> =
            self.live(now).filter(|(_, s)| &s.user_key == user).map(|(_, s)| s.clone()).collect();
        out.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        out
    }

    /// End the user's sessions except `keep`; how many were live.
    fn end_user_sessions(&mut self, user: &UserKey, keep: Option<&SessionId>, now: Timestamp) -> u64 {
        let mut live = 0;
        self.sessions.retain(|_, s| {
            let doomed = &s.user_key == user && Some(&s.session_id) != keep;
            if doomed && s.deadline() > now {
                live += 1;
            }
            !doomed
        });
        live
    }

    fn slide(session: &mut SessionRecord, now: Timestamp, slide: Slide) {
        if now.millis_since(session.last_seen_at) >= slide.min_interval_ms {
            session.last_seen_at = now;
            session.idle_expires_at = Timestamp::from_millis(now.millis() + slide.idle_ms).min(session.expires_at);
        }
    }
}

/// A token the sequence was issued: its digest, the session's id and owner.
#[derive(Clone)]
struct Issued {
    hash: TokenHash,
    id: SessionId,
    user: usize,
}

/// One answer, normalised so that both stores and the model compare with `==`.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Skipped,
    Flag(bool),
    Created(Option<Vec<SessionId>>),
    Found(Box<SessionRecord>, Vec<String>),
    Expired,
    Missing,
    Revoked(Option<SessionId>),
    Count(u64),
    Ended(Option<u64>),
    Sessions(Vec<SessionRecord>),
}

impl From<Lookup> for Answer {
    fn from(lookup: Lookup) -> Self {
        match lookup {
            Lookup::Found(found) => Self::Found(Box::new(found.session.clone()), found.roles.clone()),
            Lookup::Expired => Self::Expired,
            Lookup::Missing => Self::Missing,
        }
    }
}

/// What the model expects; `or_expired`: a session past its deadline may be reported as
/// `Expired` (found and deleted by this read) or `Missing` (already removed by its TTL).
#[derive(Clone)]
struct Expected {
    answer: Answer,
    or_expired: bool,
}

impl Expected {
    fn exactly(answer: Answer) -> Self {
        Self { answer, or_expired: false }
    }

    fn accepts(&self, actual: &Answer) -> bool {
        *actual == self.answer || (self.or_expired && *actual == Answer::Expired)
    }
}

/// What a lane counts, for the report.
#[derive(Default, Clone)]
struct Stats {
    cases: u64,
    ops: u64,
    found: u64,
    expired: u64,
    evicted: u64,
    refused: u64,
    late_retries: u64,
    max_lateness_ms: i64,
    per_op: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn add(&mut self, other: &Self) {
        self.cases += other.cases;
        self.ops += other.ops;
        self.found += other.found;
        self.expired += other.expired;
        self.evicted += other.evicted;
        self.refused += other.refused;
        self.late_retries += other.late_retries;
        self.max_lateness_ms = self.max_lateness_ms.max(other.max_lateness_ms);
        for (name, n) in &other.per_op {
            *self.per_op.entry(name).or_default() += n;
        }
    }
}

/// One Redis database and a memory store: runs cases one after the other.
struct Lane {
    port: u16,
    db: u8,
    redis: RedisStore,
    tokens: std::sync::Arc<Tokens>,
}

/// Token digests per user, as many as a sequence may need.
struct Tokens([Vec<TokenHash>; USERS.len()]);

impl Tokens {
    fn draw(per_user: usize) -> Self {
        Self(std::array::from_fn(|user| {
            (0..per_user).map(|_| SessionToken::generate_in(key(user).shard()).expect("rng").1).collect()
        }))
    }
}

impl Lane {
    async fn connect(server: &RedisServer, db: u8, tokens: std::sync::Arc<Tokens>) -> Self {
        let redis = RedisStore::connect(&RedisSettings {
            timeout: Duration::from_secs(2),
            pool_size: 1,
            validation_pool_size: 1,
            ..RedisSettings::new(format!("{}/{db}", server.url()))
        })
        .expect("connect");
        redis.wait_connected(Duration::from_secs(5)).await.expect("redis reachable");
        Self { port: server.port, db, redis, tokens }
    }

    /// Empty this lane's database.
    fn flush(&self) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let db = self.db.to_string();
        let select = format!("*2\r\n$6\r\nSELECT\r\n${}\r\n{db}\r\n*1\r\n$7\r\nFLUSHDB\r\n", db.len());
        stream.write_all(select.as_bytes()).expect("send");
        let mut reader = BufReader::new(stream);
        for _ in 0..2 {
            let reply = read_resp(&mut reader).expect("reply");
            assert_eq!(reply, crate::helpers::Resp::Simple("OK".to_owned()), "SELECT/FLUSHDB");
        }
    }

    /// Run a case, again on a doubled tick when the machine was too slow to hold the timing.
    async fn run(&self, ops: &[Op], tick: i64, count_redis: bool, stats: &mut Stats) -> Result<(), String> {
        let mut timing = Timing::new(tick);
        let mut worst = None;
        for attempt in 0..MAX_ATTEMPTS {
            match self.run_once(ops, timing, count_redis, stats).await {
                Ok(()) => {
                    stats.cases += 1;
                    return Ok(());
                }
                Err(Failure::Late { detail }) => {
                    worst = Some(detail);
                    stats.late_retries += 1;
                    if attempt < 4 {
                        timing = Timing::new(timing.tick * 2);
                    }
                }
                Err(Failure::Diverged(message)) => return Err(message),
                Err(Failure::Store(message)) => return Err(format!("store error: {message}")),
            }
        }
        Err(format!(
            "the machine is too slow to hold the clock grid: every attempt ran an operation more than half a tick \
             late (last: {}; raise MODEL_CHECK_TICK_MS)",
            worst.unwrap_or_default()
        ))
    }

    async fn run_once(&self, ops: &[Op], timing: Timing, count_redis: bool, stats: &mut Stats) -> Result<(), Failure> {
        self.flush();
        let memory = MemoryStore::new();
        let stores: [(&str, &dyn Store); 2] = [("memory", &memory), ("redis", &self.redis)];
        let mut run = Run {
            stores,
            count_redis,
            tokens: &self.tokens,
            tokens_used: [0; USERS.len()],
            model: Model::default(),
            issued: Vec::new(),
            clock: Clock::start(timing),
            registrations: 0,
            stats: Stats::default(),
            log: Vec::new(),
            step_index: 0,
            step_op: String::new(),
            deadlines: Vec::new(),
            ttl_set_late: HashMap::new(),
            redis_done: 0,
        };
        let result = run.all(ops).await;
        stats.max_lateness_ms = stats.max_lateness_ms.max(run.clock.latest_lateness);
        if result.is_ok() {
            let mut done = run.stats;
            done.cases = 0;
            stats.add(&done);
        }
        result
    }
}

/// One case in progress.
struct Run<'a> {
    stores: [(&'static str, &'a dyn Store); 2],
    /// Check Redis's `count_active` too (see [`Op::Count`]).
    count_redis: bool,
    /// Token digests drawn in advance for each user's shard (drawing one is ~1000 SHA-256
    /// computations: too slow for the clock grid in a debug build); each used once per case.
    tokens: &'a Tokens,
    tokens_used: [usize; USERS.len()],
    model: Model,
    issued: Vec<Issued>,
    clock: Clock,
    registrations: u64,
    stats: Stats,
    /// The steps so far, with the answers: the context of a divergence.
    log: Vec<String>,
    step_index: usize,
    step_op: String,
    /// Every session's deadline before this step, and when Redis drops its key at the latest.
    deadlines: Vec<(i64, i64)>,
    /// How late (ms after its instant) the call that last set a session key's TTL completed.
    ttl_set_late: HashMap<TokenHash, i64>,
    /// When the latest Redis call completed.
    redis_done: i64,
}

impl Run<'_> {
    async fn all(&mut self, ops: &[Op]) -> Result<(), Failure> {
        for user in 0..REGISTERED {
            self.step_op = format!("(before the sequence) Register({user})");
            self.note_deadlines();
            self.register(user, self.clock.now()).await?;
        }
        for (n, op) in ops.iter().enumerate() {
            self.step(n, op).await?;
        }
        // Finally the whole state: every user's sessions and the count.
        for user in 0..USERS.len() {
            self.step(ops.len() + user, &Op::List(user)).await?;
        }
        self.step(ops.len() + USERS.len(), &Op::Count).await
    }

    fn note_deadlines(&mut self) {
        self.deadlines = self
            .model
            .sessions
            .iter()
            .map(|(hash, s)| {
                let deadline = s.deadline().millis();
                (deadline, deadline + self.ttl_set_late.get(hash).copied().unwrap_or(0))
            })
            .collect();
    }

    /// The Redis call just made (re)set the TTL of the session under `hash`.
    fn ttl_set(&mut self, hash: TokenHash) {
        let late = self.redis_done - self.clock.now().millis();
        let entry = self.ttl_set_late.entry(hash).or_default();
        *entry = (*entry).max(late);
    }

    fn fresh_token(&mut self, user: usize) -> TokenHash {
        let n = self.tokens_used[user];
        self.tokens_used[user] += 1;
        self.tokens.0[user][n]
    }

    fn token(&self, index: usize) -> Option<Issued> {
        (!self.issued.is_empty()).then(|| self.issued[index % self.issued.len()].clone())
    }

    /// Apply `op` to the model and to both stores, and compare.
    async fn step(&mut self, n: usize, op: &Op) -> Result<(), Failure> {
        let now = self.clock.now();
        (self.step_index, self.step_op) = (n, format!("{op:?}"));
        self.note_deadlines();
        let name = op_name(op);
        *self.stats.per_op.entry(name).or_default() += 1;
        self.stats.ops += 1;
        let expected = match op {
            Op::Advance(ticks) => {
                self.clock.advance(*ticks).await;
                self.log.push(format!("#{n} {op:?}: now +{} ms", self.clock.offset));
                return Ok(());
            }
            Op::Register(user) => self.register(*user, now).await?,
            Op::Login(user) => self.login(*user, now).await?,
            Op::Validate(token) => match self.token(*token) {
                Some(token) => self.validate(&token, now).await?,
                None => Expected::exactly(Answer::Skipped),
            },
            Op::Refresh(token) => match self.token(*token) {
                Some(token) => self.refresh(&token, now).await?,
                None => Expected::exactly(Answer::Skipped),
            },
            Op::Logout(token) => match self.token(*token) {
                Some(token) => self.logout(&token, now).await?,
                None => Expected::exactly(Answer::Skipped),
            },
            Op::RevokeOne(token) => match self.token(*token) {
                Some(token) => self.revoke_one(&token, now).await?,
                None => Expected::exactly(Answer::Skipped),
            },
            Op::RevokeAll(user, keep) => {
                let keep = keep.and_then(|k| self.token(k)).filter(|t| t.user == *user).map(|t| t.id);
                self.revoke_all(*user, keep, now).await?
            }
            Op::List(user) => {
                let expected = Answer::Sessions(self.model.live_of(&key(*user), now));
                let user_key = key(*user);
                self.compare(Expected::exactly(expected), |store| {
                    let user_key = user_key.clone();
                    Box::pin(async move {
                        let mut sessions = store.list_sessions(&user_key, now).await?;
                        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
                        Ok(Answer::Sessions(sessions))
                    })
                })
                .await?;
                return Ok(());
            }
            Op::Count => {
                let expected = Answer::Count(self.model.live(now).count() as u64);
                self.compare(Expected::exactly(expected), |store| {
                    Box::pin(async move { Ok(Answer::Count(store.count_active(now).await?)) })
                })
                .await?;
                return Ok(());
            }
            Op::Disable(user, disabled) => self.disable(*user, *disabled, now).await?,
            Op::Delete(user) => self.delete(*user, now).await?,
        };
        // The mutating steps compared inside their helpers; record the expectation.
        self.log.push(format!("#{n} {op:?} at +{} ms -> {:?}", self.clock.offset, expected.answer));
        Ok(())
    }

    /// Run `call` on each store, check lateness, compare with `expected`.
    async fn compare<F>(&mut self, expected: Expected, call: F) -> Result<Vec<Answer>, Failure>
    where
        F: for<'s> Fn(
            &'s dyn Store,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Answer, StoreError>> + Send + 's>>,
    {
        let (n, op) = (self.step_index, self.step_op.clone());
        let mut answers = Vec::new();
        let counting = self.step_op == "Count";
        for (name, store) in self.stores {
            if counting && name == "redis" && !self.count_redis {
                continue;
            }
            let started = Timestamp::now().millis();
            let answer = call(store).await?;
            let done = Timestamp::now().millis();
            if !counting {
                self.clock.check(started, done, &self.deadlines)?;
            }
            if name == "redis" {
                self.redis_done = done;
            }
            if !expected.accepts(&answer) {
                self.log.push(format!("#{n} {op} at +{} ms", self.clock.offset));
                return Err(Failure::Diverged(format!(
                    "{name} store diverged from the model at step #{n} {op} (now = +{} ms, tick {} ms):\n  \
                     expected {:?}{}\n  got      {answer:?}\nsteps:\n  {}",
                    self.clock.offset,
                    self.clock.timing.tick,
                    expected.answer,
                    if expected.or_expired { " (or Expired)" } else { "" },
                    self.log.join("\n  "),
                )));
            }
            answers.push(answer);
        }
        Ok(answers)
    }

    async fn register(&mut self, user: usize, now: Timestamp) -> Result<Expected, Failure> {
        self.registrations += 1;
        let record = UserRecord {
            user_id: uuid::Uuid::new_v4().to_string(),
            username: USERS[user].to_owned(),
            password_hash: PASSWORD_HASH.to_owned(),
            roles: vec!["user".to_owned()],
            created_at: now,
            disabled: false,
        };
        let fresh = !self.model.users.contains_key(&user);
        let expected = Expected::exactly(Answer::Flag(fresh));
        let user_key = key(user);
        let to_insert = record.clone();
        self.compare(expected, |store| {
            let (user_key, record) = (user_key.clone(), to_insert.clone());
            Box::pin(async move { Ok(Answer::Flag(store.insert_user(&user_key, &record).await?)) })
        })
        .await?;
        if fresh {
            self.model.users.insert(user, ModelUser { record });
        }
        Ok(Expected::exactly(Answer::Flag(fresh)))
    }

    async fn login(&mut self, user: usize, now: Timestamp) -> Result<Expected, Failure> {
        let user_key = key(user);
        let hash = self.fresh_token(user);
        let id = SessionId::generate().expect("rng");
        let owner = self.model.users.get(&user).map(|u| u.record.clone());
        let n = u8::try_from(self.issued.len() % 250).unwrap_or(0);
        let session = SessionRecord {
            session_id: id.clone(),
            user_id: owner.as_ref().map_or_else(|| uuid::Uuid::new_v4().to_string(), |u| u.user_id.clone()),
            username: USERS[user].to_owned(),
            user_key: user_key.clone(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: Timestamp::from_millis(now.millis() + self.clock.timing.idle_ms),
            expires_at: Timestamp::from_millis(now.millis() + self.clock.timing.absolute_ms),
            // Both address families and devices, and none.
            ip: match n % 3 {
                0 => Some(IpAddr::from([192, 0, 2, n])),
                1 => Some(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)])),
                _ => None,
            },
            device: (n % 2 == 0).then(|| format!("Firefox {n} on Linux")),
            data: None,
        };
        let answer = match owner {
            None => None,
            Some(record) if record.disabled => None,
            Some(_) => {
                let mut live: Vec<(TokenHash, SessionRecord)> = self
                    .model
                    .live(now)
                    .filter(|(_, s)| s.user_key == user_key)
                    .map(|(h, s)| (*h, s.clone()))
                    .collect();
                live.sort_by(|a, b| (a.1.created_at, &a.1.session_id).cmp(&(b.1.created_at, &b.1.session_id)));
                let excess = (live.len() + 1).saturating_sub(CAP as usize);
                let mut evicted = Vec::new();
                for (old, record) in live.into_iter().take(excess) {
                    self.model.sessions.remove(&old);
                    evicted.push(record.session_id);
                }
                evicted.sort();
                self.model.sessions.insert(hash, session.clone());
                self.issued.push(Issued { hash, id: id.clone(), user });
                Some(evicted)
            }
        };
        match &answer {
            Some(evicted) => self.stats.evicted += evicted.len() as u64,
            None => self.stats.refused += 1,
        }
        self.compare(Expected::exactly(Answer::Created(answer.clone())), |store| {
            let session = session.clone();
            Box::pin(async move {
                let evicted = store.create_session(&hash, &session, CAP, now).await?;
                Ok(Answer::Created(evicted.map(|mut ids| {
                    ids.sort();
                    ids
                })))
            })
        })
        .await?;
        if answer.is_some() {
            self.ttl_set(hash);
        }
        Ok(Expected::exactly(Answer::Created(answer)))
    }

    /// The model's view of a token: live (`Some`), or gone; `true` when it was past its
    /// deadline (then forgotten, as a store forgets it).
    fn lookup(&mut self, hash: &TokenHash, now: Timestamp) -> Result<&mut SessionRecord, bool> {
        match self.model.sessions.get(hash) {
            None => return Err(false),
            Some(session) if session.deadline() <= now => {
                self.model.sessions.remove(hash);
                return Err(true);
            }
            Some(_) => {}
        }
        self.model.sessions.get_mut(hash).ok_or(false)
    }

    fn roles_of(&self, user: usize) -> Vec<String> {
        self.model.users.get(&user).map(|u| u.record.roles.clone()).unwrap_or_default()
    }

    async fn validate(&mut self, token: &Issued, now: Timestamp) -> Result<Expected, Failure> {
        let slide = self.clock.timing.slide();
        let roles = self.roles_of(token.user);
        let expected = match self.lookup(&token.hash, now) {
            Ok(session) => {
                Model::slide(session, now, slide);
                Expected::exactly(Answer::Found(Box::new(session.clone()), roles))
            }
            Err(expired) => Expected { answer: Answer::Missing, or_expired: expired },
        };
        match &expected.answer {
            Answer::Found(..) => self.stats.found += 1,
            _ => self.stats.expired += u64::from(expected.or_expired),
        }
        let hash = token.hash;
        self.compare(expected.clone(), |store| {
            Box::pin(async move { Ok(store.touch_session(&hash, now, slide).await?.into()) })
        })
        .await?;
        if matches!(expected.answer, Answer::Found(..)) {
            self.ttl_set(hash);
        }
        Ok(expected)
    }

    async fn refresh(&mut self, token: &Issued, now: Timestamp) -> Result<Expected, Failure> {
        let slide = self.clock.timing.slide_now();
        let roles = self.roles_of(token.user);
        let new = self.fresh_token(token.user);
        let expected = match self.lookup(&token.hash, now) {
            Ok(session) => {
                Model::slide(session, now, slide);
                let session = session.clone();
                self.model.sessions.remove(&token.hash);
                self.model.sessions.insert(new, session.clone());
                self.issued.push(Issued { hash: new, id: token.id.clone(), user: token.user });
                Expected::exactly(Answer::Found(Box::new(session), roles))
            }
            Err(expired) => Expected { answer: Answer::Missing, or_expired: expired },
        };
        let old = token.hash;
        self.compare(expected.clone(), |store| {
            Box::pin(async move { Ok(store.rotate_session(&old, &new, now, slide).await?.into()) })
        })
        .await?;
        if matches!(expected.answer, Answer::Found(..)) {
            self.ttl_set(new);
        }
        Ok(expected)
    }

    async fn logout(&mut self, token: &Issued, now: Timestamp) -> Result<Expected, Failure> {
        let ended = match self.model.sessions.remove(&token.hash) {
            Some(session) if session.deadline() > now => Some(session.session_id),
            _ => None,
        };
        let expected = Expected::exactly(Answer::Revoked(ended));
        let hash = token.hash;
        self.compare(expected.clone(), |store| {
            Box::pin(async move { Ok(Answer::Revoked(store.revoke_session(&hash).await?)) })
        })
        .await?;
        Ok(expected)
    }

    async fn revoke_one(&mut self, token: &Issued, now: Timestamp) -> Result<Expected, Failure> {
        let user_key = key(token.user);
        let found = self
            .model
            .sessions
            .iter()
            .find(|(_, s)| s.user_key == user_key && s.session_id == token.id)
            .map(|(h, s)| (*h, s.deadline() > now));
        let live = match found {
            Some((hash, live)) => {
                self.model.sessions.remove(&hash);
                live
            }
            None => false,
        };
        let expected = Expected::exactly(Answer::Flag(live));
        let id = token.id.clone();
        self.compare(expected.clone(), |store| {
            let (user_key, id) = (user_key.clone(), id.clone());
            Box::pin(async move { Ok(Answer::Flag(store.revoke_session_by_id(&user_key, &id).await?)) })
        })
        .await?;
        Ok(expected)
    }

    async fn revoke_all(&mut self, user: usize, keep: Option<SessionId>, now: Timestamp) -> Result<Expected, Failure> {
        let user_key = key(user);
        let ended = self.model.end_user_sessions(&user_key, keep.as_ref(), now);
        let expected = Expected::exactly(Answer::Count(ended));
        self.compare(expected.clone(), |store| {
            let (user_key, keep) = (user_key.clone(), keep.clone());
            Box::pin(async move { Ok(Answer::Count(store.revoke_user_sessions(&user_key, keep.as_ref()).await?)) })
        })
        .await?;
        Ok(expected)
    }

    async fn disable(&mut self, user: usize, disabled: bool, now: Timestamp) -> Result<Expected, Failure> {
        let user_key = key(user);
        let ended = match self.model.users.get_mut(&user) {
            None => None,
            Some(model_user) => {
                model_user.record.disabled = disabled;
                Some(if disabled { self.model.end_user_sessions(&user_key, None, now) } else { 0 })
            }
        };
        let expected = Expected::exactly(Answer::Ended(ended));
        self.compare(expected.clone(), |store| {
            let user_key = user_key.clone();
            Box::pin(async move { Ok(Answer::Ended(store.set_disabled(&user_key, disabled).await?)) })
        })
        .await?;
        Ok(expected)
    }

    async fn delete(&mut self, user: usize, now: Timestamp) -> Result<Expected, Failure> {
        let user_key = key(user);
        let ended = match self.model.users.remove(&user) {
            None => None,
            Some(_) => Some(self.model.end_user_sessions(&user_key, None, now)),
        };
        let expected = Expected::exactly(Answer::Ended(ended));
        self.compare(expected.clone(), |store| {
            let user_key = user_key.clone();
            Box::pin(async move { Ok(Answer::Ended(store.delete_user(&user_key).await?)) })
        })
        .await?;
        Ok(expected)
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Register(_) => "register",
        Op::Login(_) => "login",
        Op::Validate(_) => "validate",
        Op::Refresh(_) => "refresh",
        Op::Logout(_) => "logout",
        Op::RevokeOne(_) => "revoke_one",
        Op::RevokeAll(..) => "revoke_all",
        Op::List(_) => "list",
        Op::Count => "count",
        Op::Disable(..) => "disable",
        Op::Delete(_) => "delete",
        Op::Advance(_) => "advance",
    }
}

/// Random sequences, at least 1 000 per run: both stores must answer every step as the model
/// does; a failure is shrunk to a minimal sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_agree_with_the_model_on_random_sequences() {
    let cases: usize = env_or("PROPTEST_CASES", 1_000);
    let max_ops: usize = env_or("MODEL_CHECK_MAX_OPS", 24);
    let lanes: u8 = env_or::<u8>("MODEL_CHECK_LANES", 8).clamp(1, 15);
    let tick: i64 = env_or("MODEL_CHECK_TICK_MS", 10);
    assert!(tick >= 6 && tick % 2 == 0, "MODEL_CHECK_TICK_MS must be even and at least 6");
    let seed: u64 = env_or("MODEL_CHECK_SEED", rand_seed());
    let started = Instant::now();

    let server = RedisServer::start();
    // Each login and refresh draws one token: at most one per step.
    let tokens = std::sync::Arc::new(Tokens::draw(max_ops));
    let mut lane_stores = Vec::new();
    for db in 1..=lanes {
        lane_stores.push(Lane::connect(&server, db, tokens.clone()).await);
    }
    let config =
        Config { cases: u32::try_from(cases).unwrap_or(u32::MAX), rng_seed: RngSeed::Fixed(seed), ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = sequence_strategy(max_ops);
    let sequences: Vec<Vec<Op>> =
        (0..cases).map(|_| strategy.new_tree(&mut runner).expect("generate").current()).collect();

    let runs = lane_stores.iter().enumerate().map(|(k, lane)| {
        let sequences = &sequences;
        async move {
            let mut stats = Stats::default();
            for index in (k..sequences.len()).step_by(usize::from(lanes)) {
                if let Err(message) = lane.run(&sequences[index], tick, false, &mut stats).await {
                    return (stats, Some((index, message)));
                }
            }
            (stats, None)
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let mut total = Stats::default();
    let mut failure = None;
    for (stats, failed) in results {
        total.add(&stats);
        failure = failure.or(failed.map(|(index, message)| (index, message, false)));
    }
    // Redis's count_active, on a quiet machine: some of the sequences again, one at a time.
    let counted = (cases / 50).max(1);
    if failure.is_none() {
        for (index, sequence) in sequences.iter().enumerate().take(counted) {
            if let Err(message) = lane_stores[0].run(sequence, tick, true, &mut Stats::default()).await {
                failure = Some((index, message, true));
                break;
            }
        }
    }
    let elapsed = started.elapsed();

    if let Some((index, message, count_redis)) = failure {
        // Replay the generation to reach the failing case's value tree, then shrink it.
        let mut runner = TestRunner::new(Config { rng_seed: RngSeed::Fixed(seed), ..Config::default() });
        let mut tree = strategy.new_tree(&mut runner).expect("generate");
        for _ in 0..index {
            tree = strategy.new_tree(&mut runner).expect("generate");
        }
        let lane = &lane_stores[0];
        let (mut minimal, mut why) = (tree.current(), message);
        let mut shrink_runs = 0;
        let mut scratch = Stats::default();
        if tree.simplify() {
            while shrink_runs < MAX_SHRINK_RUNS {
                shrink_runs += 1;
                match lane.run(&tree.current(), tick, count_redis, &mut scratch).await {
                    Err(message) => {
                        (minimal, why) = (tree.current(), message);
                        if !tree.simplify() {
                            break;
                        }
                    }
                    Ok(()) => {
                        if !tree.complicate() {
                            break;
                        }
                    }
                }
            }
        }
        // proptest shrinks elements towards earlier kinds of step after it stopped deleting
        // steps: delete once more, one step at a time, whatever still fails.
        let mut at = 0;
        while at < minimal.len() && shrink_runs < MAX_SHRINK_RUNS {
            shrink_runs += 1;
            let mut shorter = minimal.clone();
            shorter.remove(at);
            match lane.run(&shorter, tick, count_redis, &mut scratch).await {
                Err(message) => (minimal, why) = (shorter, message),
                Ok(()) => at += 1,
            }
        }
        panic!(
            "model check failed (MODEL_CHECK_SEED={seed}, case {index}, {shrink_runs} shrink runs); minimal \
             sequence ({} ops):\n{minimal:?}\n{why}",
            minimal.len()
        );
    }

    eprintln!(
        "model check: {} cases, {} steps in {:.1} s (seed {seed}, {lanes} lanes, tick {tick} ms, up to {max_ops} ops; \
         {counted} cases again with Redis's count_active); \
         validations found {} live, {} past their deadline; {} evicted by the cap, {} logins refused; \
         {} cases re-run on a doubled tick; latest operation {} ms after its instant; steps per kind {:?}",
        total.cases,
        total.ops,
        elapsed.as_secs_f64(),
        total.found,
        total.expired,
        total.evicted,
        total.refused,
        total.late_retries,
        total.max_lateness_ms,
        total.per_op,
    );
    assert_eq!(total.cases, cases as u64, "every case ran");
    assert!(total.expired > 0 && total.evicted > 0 && total.found > 0, "the sequences reach expiry, eviction and use");
}

fn rand_seed() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("os rng");
    u64::from_le_bytes(bytes)
}

/// Run one fixed sequence against both stores, as the random run does.
async fn check_sequence(ops: &[Op]) {
    let server = RedisServer::start();
    let lane = Lane::connect(&server, 1, std::sync::Arc::new(Tokens::draw(ops.len()))).await;
    if let Err(message) = lane.run(ops, 10, true, &mut Stats::default()).await {
        panic!("{message}");
    }
}

/// Found by the random run: the memory store reported a logout of a session past its deadline
/// as a revocation (its id), where Redis, whose key had expired, reports none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_an_expired_session_revokes_nothing() {
    check_sequence(&[Op::Login(0), Op::Advance(3), Op::Logout(0)]).await;
}
