//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow (~20 ms and 19 MiB at OWASP's minimum), so it runs on a fixed
//! set of `concurrency` hashing threads, never on the async workers that validate sessions.
//! A fixed set, rather than tokio's blocking pool, because each hash allocates its 19 MiB on
//! the thread that runs it: short-lived pool threads each leave such a block in a malloc arena
//! of their own, and resident memory grows with every new thread. At most `queue` hashes wait
//! for a thread; past that a login is refused at once (503) instead of queueing until its
//! client gives up. The hashing threads run under `SCHED_IDLE`, so a login flood takes only
//! the CPU that validations leave over.
//!
//! That is not enough on a small or shared host: a CPU kept busy, even at idle priority,
//! roughly doubles the tail latency of everything else on a two-CPU virtual machine (measured
//! in `docs/performance.md`). So a password-guessing flood gets less: while the pool is refusing
//! logins *and* most recent verifications failed, each hashing thread rests between hashes so
//! that it hashes at most `flood_share` of the time, and the queue shrinks in proportion so
//! that waiting logins are not held longer. A surge of real logins (mostly correct passwords)
//! keeps the full rate. A job whose client has already gone is dropped unhashed. Unknown
//! usernames are verified against a dummy hash with the same parameters, so the response time
//! does not reveal whether an account exists.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use tokio::sync::oneshot;
use tracing::Instrument as _;

use crate::session::time::monotonic_millis;
use crate::telemetry::metrics::Metrics;

/// Why the hashing pool could not answer (the HTTP edge maps these to 503 and 500).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing thread is busy and the queue is full: shed load instead of queueing.
    #[error("overloaded")]
    Overloaded,
    /// Hashing failed or the threads are gone.
    #[error("{0}")]
    Failed(String),
}

/// Longest accepted password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password in transit. Not `Display`; `Debug` is redacted.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Check the length rules: at least `min` characters (Unicode scalar values, so a
    /// passphrase in any script gets the same minimum), at most 1024 bytes (what argon2 is fed).
    ///
    /// # Errors
    /// A sentence saying what is wrong (never the password).
    pub fn parse(text: String, min: usize) -> Result<Self, String> {
        if text.chars().count() < min {
            return Err(format!("must be at least {min} characters long"));
        }
        if text.len() > MAX_PASSWORD_BYTES {
            return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes long"));
        }
        Ok(Self(text))
    }

    /// Wrap without checking, for verifying a login attempt against a stored hash.
    #[must_use]
    pub fn unchecked(text: String) -> Self {
        Self(text)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The argon2id hasher with its hashing threads.
pub struct Passwords {
    argon: Argon2<'static>,
    workers: HashWorkers,
    dummy_hash: String,
    metrics: Arc<Metrics>,
    /// Hashes running or waiting, against `capacity` (threads + queue): reserved up front, so
    /// that a login the pool cannot take is refused before it costs any Redis work.
    reserved: Arc<AtomicUsize>,
    capacity: usize,
    /// The capacity while a guessing flood is detected: the queue shrunk by `flood_share`.
    flood_capacity: usize,
    /// What the pool has seen lately, shared with the hashing threads.
    flood: Arc<FloodDetector>,
}

/// Tells a password-guessing flood from a surge of real logins: the pool has refused a login
/// within the last second, and most verifications of the current and the previous second
/// failed.
struct FloodDetector {
    /// The share of time (1-100 %) a hashing thread may hash while a flood is detected.
    share: u32,
    /// When the pool last refused a reservation (`monotonic_millis`, +1 so that 0 means never).
    last_refusal: AtomicU64,
    /// The second that `verified` and `failed` count, and the counts of the second before.
    window: AtomicU64,
    verified: AtomicU64,
    failed: AtomicU64,
    previous: AtomicU64,
}

impl FloodDetector {
    fn new(share: u8) -> Self {
        Self {
            share: u32::from(share.clamp(1, 100)),
            last_refusal: AtomicU64::new(0),
            window: AtomicU64::new(0),
            verified: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            previous: AtomicU64::new(0),
        }
    }

    fn refused(&self) {
        self.refused_at(monotonic_millis());
    }

    fn refused_at(&self, now: u64) {
        self.last_refusal.store(now + 1, Ordering::Relaxed);
    }

    fn verified(&self, matched: bool) {
        self.verified_at(monotonic_millis(), matched);
    }

    /// Count one verification. `previous` packs the last second's counts (verified << 32 |
    /// failed); a race at the turn of a second may misplace a count or two, which is harmless.
    fn verified_at(&self, now: u64, matched: bool) {
        let second = now / 1000;
        let window = self.window.load(Ordering::Relaxed);
        if window != second
            && self.window.compare_exchange(window, second, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let (v, f) = (self.verified.swap(0, Ordering::Relaxed), self.failed.swap(0, Ordering::Relaxed));
            let max = u64::from(u32::MAX);
            let packed = if second == window + 1 { (v.min(max) << 32) | f.min(max) } else { 0 };
            self.previous.store(packed, Ordering::Relaxed);
        }
        self.verified.fetch_add(1, Ordering::Relaxed);
        if !matched {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether a guessing flood is going on now.
    fn active(&self) -> bool {
        self.active_at(monotonic_millis())
    }

    fn active_at(&self, now: u64) -> bool {
        if self.share >= 100 {
            return false;
        }
        let last = self.last_refusal.load(Ordering::Relaxed);
        if last == 0 || now + 1 > last + 1000 {
            return false;
        }
        let (mut verified, mut failed) = (0, 0);
        let window = self.window.load(Ordering::Relaxed);
        if window + 1 >= now / 1000 {
            let previous = if window == now / 1000 { self.previous.load(Ordering::Relaxed) } else { 0 };
            verified = self.verified.load(Ordering::Relaxed) + (previous >> 32);
            failed = self.failed.load(Ordering::Relaxed) + (previous & u64::from(u32::MAX));
        }
        verified > 0 && failed * 2 > verified
    }

    /// How long a hashing thread rests after a hash that took `took`: during a flood, long
    /// enough that hashing takes `share` of the thread's time (at most a second).
    fn rest_after(&self, took: Duration) -> Duration {
        if !self.active() {
            return Duration::ZERO;
        }
        self.rest_during_flood(took)
    }

    fn rest_during_flood(&self, took: Duration) -> Duration {
        (took.saturating_mul(100 - self.share) / self.share).min(Duration::from_secs(1))
    }
}

/// A reserved place in the hashing pool, taken by [`Passwords::reserve`] before any other
/// work on a login or registration; freed when the hash has run (or the request ended first).
#[must_use = "a reservation is only useful for a hash"]
pub struct HashSlot(Arc<AtomicUsize>);

impl Drop for HashSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A hashing thread's argon2 work area, kept between jobs: allocating it per verification
/// costs a zero-filled 19 MiB block that the allocator hands back to the system when freed,
/// so that every login page-faulted it in again (~4 900 faults, ~40 % of a login's CPU time).
/// Each thread holds one area of the configured cost (so resident memory is bounded by
/// `SESSIOND_HASH_CONCURRENCY` x the argon2 memory cost).
type Workspace = Vec<Block>;

/// How long a hashing thread keeps its work area (the argon2 memory cost, 19 MiB by default)
/// after its last hash. Longer than the rest between hashes during a guessing flood (at most
/// 1 s), so a flood does not pay a fresh allocation and its page faults per hash.
const WORK_AREA_IDLE: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce(&mut Workspace) + Send>;

/// Threads that run argon2, fed through a bounded queue. Dropping the sender (with the
/// [`Passwords`]) ends them.
struct HashWorkers {
    jobs: mpsc::SyncSender<Job>,
}

/// Run the calling (hashing) thread under `SCHED_IDLE`: it gets only CPU time that no
/// ordinary thread wants, and a waking async worker (validations, every other request)
/// preempts it at once instead of waiting out its time slice. With idle CPU, hashing still
/// runs at full speed.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(error) = thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            ThreadPriority::Min,
            idle,
        ) {
            tracing::warn!(?error, "could not lower the hashing threads' priority; logins compete with validations");
        }
    }
}

/// Size `workspace` to the memory cost of `argon` (grown or shrunk only when it differs).
fn fit(workspace: &mut Workspace, argon: &Argon2<'_>) {
    let blocks = argon.params().block_count();
    if workspace.len() != blocks {
        workspace.clear();
        workspace.resize(blocks, Block::default());
        workspace.shrink_to_fit();
    }
}

/// Verify `password` against a PHC string, computing in `workspace` (grown to the hash's memory
/// cost when needed). Any malformed or unsupported PHC string is a mismatch. The final
/// comparison is constant-time (`Output`'s equality).
fn verify_in(workspace: &mut Workspace, password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else { return false };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else { return false };
    let Ok(params) = Params::try_from(&hash) else { return false };
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    fit(workspace, &argon);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let Some(out) = buffer.get_mut(..expected.len()) else { return false };
    if argon.hash_password_into_with_memory(password, salt.as_ref(), out, workspace.as_mut_slice()).is_err() {
        return false;
    }
    Output::new(out).is_ok_and(|computed| computed == *expected)
}

/// Hash a new password into a PHC string, computing in `workspace` like [`verify_in`]: the
/// library's own `hash_password` allocates (and the allocator keeps for a while) a fresh block
/// of the full memory cost for every registration, 19 MiB of resident memory on top of the
/// work area the thread already holds.
fn hash_in(workspace: &mut Workspace, argon: &Argon2<'_>, password: &[u8]) -> Result<String, HashError> {
    let internal = |e: &dyn fmt::Display| HashError::Failed(format!("argon2: {e}"));
    let mut salt = [0u8; argon2::RECOMMENDED_SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| internal(&e))?;
    fit(workspace, argon);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let length = argon.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let out = buffer.get_mut(..length).ok_or_else(|| internal(&"output length"))?;
    argon.hash_password_into_with_memory(password, &salt, out, workspace.as_mut_slice()).map_err(|e| internal(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| internal(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| internal(&e))?),
        hash: Some(Output::new(out).map_err(|e| internal(&e))?),
    };
    Ok(hash.to_string())
}

impl HashWorkers {
    fn start(
        threads: usize,
        queue: usize,
        flood: &Arc<FloodDetector>,
        metrics: &Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver = receiver.clone();
            let (flood, metrics) = (flood.clone(), metrics.clone());
            std::thread::Builder::new().name(format!("sessiond-hash-{n}")).spawn(move || {
                lower_priority();
                let mut workspace = Workspace::new();
                loop {
                    let job = {
                        let receiver = receiver.lock().unwrap_or_else(PoisonError::into_inner);
                        if workspace.is_empty() {
                            receiver.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
                        } else {
                            receiver.recv_timeout(WORK_AREA_IDLE)
                        }
                    };
                    let job = match job {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            // No login for a while: give the work area back (the allocator
                            // returns it to the system), so an instance that only validates
                            // does not keep the memory cost of argon2 resident.
                            workspace = Workspace::new();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    };
                    let started = Instant::now();
                    // A panicking hash answers its caller with an error (its result channel is
                    // dropped) and must not take the thread with it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut workspace)));
                    let rest = flood.rest_after(started.elapsed());
                    if !rest.is_zero() {
                        metrics.password_hash_flood_rest();
                        std::thread::sleep(rest);
                    }
                }
            })?;
        }
        Ok(Self { jobs })
    }
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords").field("params", self.argon.params()).finish_non_exhaustive()
    }
}

impl Passwords {
    /// Build a hasher; computes the dummy hash once, so this takes one hash time.
    ///
    /// # Errors
    /// When the argon2 parameters are out of range.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        concurrency: usize,
        queue: usize,
        flood_share: u8,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon
            .hash_password(b"sessiond dummy password for unknown users")
            .map_err(|e| anyhow::anyhow!("argon2 self-test failed: {e}"))?
            .to_string();
        let capacity = concurrency.max(1) + queue;
        let flood = Arc::new(FloodDetector::new(flood_share));
        let flood_capacity = concurrency.max(1) + (queue * flood.share as usize).div_ceil(100);
        // The channel holds every reserved job, so a send with a reservation never fails.
        let workers = HashWorkers::start(concurrency, capacity, &flood, &metrics)?;
        Ok(Self {
            argon,
            workers,
            dummy_hash,
            metrics,
            reserved: Arc::new(AtomicUsize::new(0)),
            capacity,
            flood_capacity,
            flood,
        })
    }

    /// Reserve a place in the hashing pool.
    ///
    /// # Errors
    /// [`HashError::Overloaded`] at once when every thread is busy and the queue is full.
    pub fn reserve(&self) -> Result<HashSlot, HashError> {
        let capacity = if self.flood.active() { self.flood_capacity } else { self.capacity };
        let taken =
            self.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1));
        if taken.is_err() {
            self.flood.refused();
            self.metrics.rate_limited("hash_pool");
            return Err(HashError::Overloaded);
        }
        Ok(HashSlot(Arc::clone(&self.reserved)))
    }

    /// Hash a new password into a PHC string.
    ///
    /// # Errors
    /// [`HashError::Failed`] when hashing fails (it does not, short of memory exhaustion).
    pub async fn hash(&self, slot: HashSlot, password: &Password) -> Result<String, HashError> {
        let argon = self.argon.clone();
        let password = password.0.clone();
        self.on_pool(slot, "hash", move |workspace| hash_in(workspace, &argon, password.as_bytes())).await?
    }

    /// Check a password against a stored PHC string, or against the dummy hash when the user
    /// does not exist (`None`), which always answers `false` after the same amount of work.
    ///
    /// # Errors
    /// [`HashError::Failed`] when the hashing threads are gone.
    pub async fn verify(&self, slot: HashSlot, password: &Password, stored: Option<&str>) -> Result<bool, HashError> {
        let password = password.0.clone();
        let (phc, known) = match stored {
            Some(phc) => (phc.to_owned(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let flood = self.flood.clone();
        let matched = self
            .on_pool(slot, "verify", move |workspace| {
                let matched = verify_in(workspace, password.as_bytes(), &phc) && known;
                flood.verified(matched);
                matched
            })
            .await?;
        Ok(matched)
    }

    async fn on_pool<T: Send + 'static>(
        &self,
        slot: HashSlot,
        op: &'static str,
        work: impl FnOnce(&mut Workspace) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, finished) = oneshot::channel();
        let job: Job = Box::new(move |workspace| {
            // The request ended while this job waited (its client gave up, or the request
            // timeout answered it): hashing now would help nobody.
            if done.is_closed() {
                return;
            }
            let started = Instant::now();
            let result = work(workspace);
            let _ = done.send((result, started.elapsed()));
            drop(slot);
        });
        match self.workers.jobs.try_send(job) {
            Ok(()) => {}
            // Unreachable with a reservation (the channel holds `capacity` jobs); refuse
            // rather than block an async worker if it ever happens.
            Err(mpsc::TrySendError::Full(_)) => {
                self.metrics.rate_limited("hash_pool");
                return Err(HashError::Overloaded);
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(HashError::Failed("hashing threads stopped".into()))
            }
        }
        let span = tracing::info_span!("password", otel.name = format!("password.{op}"), password.op = op);
        let (result, elapsed) =
            finished.instrument(span).await.map_err(|_| HashError::Failed("password hashing failed".into()))?;
        self.metrics.password_hash(op, elapsed.as_secs_f64());
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_counts_characters_and_the_maximum_bytes() {
        assert!(Password::parse("éééé".to_owned(), 8).is_err(), "4 characters in 8 bytes is too short");
        assert!(Password::parse("éééééééé".to_owned(), 8).is_ok());
        assert!(Password::parse("abcdefg".to_owned(), 8).is_err());
        assert!(Password::parse("é".repeat(512), 8).is_ok(), "1024 bytes");
        assert!(Password::parse("é".repeat(513), 8).is_err(), "1026 bytes");
    }

    fn phc(password: &[u8], memory_kib: u32) -> String {
        let params = Params::new(memory_kib, 1, 1, None).expect("params");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        argon.hash_password(password).expect("hash").to_string()
    }

    #[test]
    fn verification_in_a_reused_workspace_matches_the_library() {
        let mut workspace = Workspace::new();
        let small = phc(b"correct horse", 256);
        let large = phc(b"battery staple", 1024);
        for _ in 0..2 {
            assert!(verify_in(&mut workspace, b"correct horse", &small));
            assert!(!verify_in(&mut workspace, b"correct horsf", &small));
            // A hash of another cost grows (then shrinks) the same workspace.
            assert!(verify_in(&mut workspace, b"battery staple", &large));
            assert_eq!(workspace.len(), 1024);
            assert!(!verify_in(&mut workspace, b"correct horse", &large));
        }
        for malformed in ["", "$argon2id$v=19$m=256,t=1,p=1$", "not a hash", "$scrypt$ln=1,r=8,p=1$c2FsdA$aGFzaA"] {
            assert!(!verify_in(&mut workspace, b"correct horse", malformed), "{malformed:?}");
        }
    }

    #[test]
    fn hashing_in_a_reused_workspace_gives_a_standard_phc_string() {
        use argon2::password_hash::PasswordVerifier as _;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(256, 1, 1, None).expect("params"));
        let mut workspace = Workspace::new();
        let first = hash_in(&mut workspace, &argon, b"correct horse").expect("hash");
        let second = hash_in(&mut workspace, &argon, b"correct horse").expect("hash");
        assert!(first.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{first}");
        assert_ne!(first, second, "a fresh salt every time");
        for phc in [&first, &second] {
            assert!(argon.verify_password(b"correct horse", phc.as_str()).is_ok(), "the library accepts {phc}");
            assert!(argon.verify_password(b"correct horsf", phc.as_str()).is_err());
            assert!(verify_in(&mut workspace, b"correct horse", phc));
            assert!(!verify_in(&mut workspace, b"correct horsf", phc));
        }
        assert_eq!(workspace.len(), 256);
    }

    #[test]
    fn a_flood_is_refusals_with_mostly_failed_verifications() {
        let flood = FloodDetector::new(20);
        let t = 50_000;
        for _ in 0..5 {
            flood.verified_at(t, false);
        }
        assert!(!flood.active_at(t), "failures alone, with nothing refused, are no flood");
        flood.refused_at(t);
        assert!(flood.active_at(t + 10));
        // The failures of the second before still count; a second after the last refusal, it is over.
        assert!(flood.active_at(t + 999));
        assert!(!flood.active_at(t + 1_001));
        flood.refused_at(t + 1_200);
        assert!(flood.active_at(t + 1_300), "last second's failures count");
        assert!(!flood.active_at(t + 2_100), "the failures are two seconds old");
        flood.refused_at(t + 2_500);
        assert!(!flood.active_at(t + 2_600), "verifications two seconds old do not count");
    }

    #[test]
    fn a_surge_of_correct_passwords_is_no_flood() {
        let flood = FloodDetector::new(20);
        let t = 70_000;
        for n in 0..30 {
            flood.verified_at(t + n, n % 3 == 0); // one in three correct: still a flood
        }
        flood.refused_at(t + 30);
        assert!(flood.active_at(t + 40));
        for n in 0..40 {
            flood.verified_at(t + 50 + n, n % 10 != 0); // nine in ten correct
        }
        assert!(!flood.active_at(t + 100), "mostly correct passwords: a surge, not a flood");
        assert!(!FloodDetector::new(100).active_at(0), "a share of 100 % never rests");
    }

    #[test]
    fn during_a_flood_a_thread_hashes_its_share_of_the_time() {
        let took = Duration::from_millis(19);
        assert_eq!(FloodDetector::new(20).rest_during_flood(took), Duration::from_millis(76));
        assert_eq!(FloodDetector::new(50).rest_during_flood(took), took);
        assert_eq!(FloodDetector::new(100).rest_during_flood(took), Duration::ZERO);
        assert_eq!(FloodDetector::new(1).rest_during_flood(took), Duration::from_secs(1), "capped at a second");
        assert_eq!(FloodDetector::new(20).rest_after(took), Duration::ZERO, "no flood, no rest");
    }
}
