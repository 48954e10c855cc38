//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow (~20 ms and 19 MiB at OWASP's minimum), so it runs on a fixed
//! set of `concurrency` hashing threads, never on the async workers that validate sessions.
//! A fixed set, rather than tokio's blocking pool, because each hash allocates its 19 MiB on
//! the thread that runs it: short-lived pool threads each leave such a block in a malloc arena
//! of their own, and resident memory grows with every new thread. At most `queue` hashes wait
//! for a thread; past that a login is refused at once (503) instead of queueing until its
//! client gives up. The hashing threads run under `SCHED_IDLE`, so a login flood takes only
//! the CPU that validations leave over. Unknown
//! usernames are verified against a dummy hash with the same parameters, so the response time
//! does not reveal whether an account exists.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Instant;

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use tokio::sync::oneshot;
use tracing::Instrument as _;

use crate::error::Error;
use crate::telemetry::metrics::Metrics;

/// Longest accepted password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password in transit. Not `Display`; `Debug` is redacted.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Check the length rules (in bytes): `min..=1024`.
    ///
    /// # Errors
    /// A sentence saying what is wrong (never the password).
    pub fn parse(text: String, min: usize) -> Result<Self, String> {
        if text.len() < min {
            return Err(format!("must be at least {min} bytes long"));
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
    let blocks = argon.params().block_count();
    if workspace.len() != blocks {
        workspace.clear();
        workspace.resize(blocks, Block::default());
        workspace.shrink_to_fit();
    }
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let Some(out) = buffer.get_mut(..expected.len()) else { return false };
    if argon.hash_password_into_with_memory(password, salt.as_ref(), out, workspace.as_mut_slice()).is_err() {
        return false;
    }
    Output::new(out).is_ok_and(|computed| computed == *expected)
}

impl HashWorkers {
    fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new().name(format!("sessiond-hash-{n}")).spawn(move || {
                lower_priority();
                let mut workspace = Workspace::new();
                loop {
                    let job = receiver.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = job else { return };
                    // A panicking hash answers its caller with an error (its result channel is
                    // dropped) and must not take the thread with it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut workspace)));
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
        // The channel holds every reserved job, so a send with a reservation never fails.
        let workers = HashWorkers::start(concurrency, capacity)?;
        Ok(Self { argon, workers, dummy_hash, metrics, reserved: Arc::new(AtomicUsize::new(0)), capacity })
    }

    /// Reserve a place in the hashing pool.
    ///
    /// # Errors
    /// [`Error::Overloaded`] at once when every thread is busy and the queue is full.
    pub fn reserve(&self) -> Result<HashSlot, Error> {
        let taken =
            self.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1));
        if taken.is_err() {
            self.metrics.rate_limited("hash_pool");
            return Err(Error::Overloaded);
        }
        Ok(HashSlot(Arc::clone(&self.reserved)))
    }

    /// Hash a new password into a PHC string.
    ///
    /// # Errors
    /// [`Error::Internal`] when hashing fails (it does not, short of memory exhaustion).
    pub async fn hash(&self, slot: HashSlot, password: &Password) -> Result<String, Error> {
        let argon = self.argon.clone();
        let password = password.0.clone();
        self.on_pool(slot, "hash", move |_| {
            argon.hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| Error::Internal(e.to_string()))
        })
        .await?
    }

    /// Check a password against a stored PHC string, or against the dummy hash when the user
    /// does not exist (`None`), which always answers `false` after the same amount of work.
    ///
    /// # Errors
    /// [`Error::Internal`] when the hashing threads are gone.
    pub async fn verify(&self, slot: HashSlot, password: &Password, stored: Option<&str>) -> Result<bool, Error> {
        let password = password.0.clone();
        let (phc, known) = match stored {
            Some(phc) => (phc.to_owned(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let matched =
            self.on_pool(slot, "verify", move |workspace| verify_in(workspace, password.as_bytes(), &phc)).await?;
        Ok(matched && known)
    }

    async fn on_pool<T: Send + 'static>(
        &self,
        slot: HashSlot,
        op: &'static str,
        work: impl FnOnce(&mut Workspace) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (done, finished) = oneshot::channel();
        let job: Job = Box::new(move |workspace| {
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
                return Err(Error::Overloaded);
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(Error::Internal("hashing threads stopped".into())),
        }
        let span = tracing::info_span!("password", otel.name = format!("password.{op}"), password.op = op);
        let (result, elapsed) =
            finished.instrument(span).await.map_err(|_| Error::Internal("password hashing failed".into()))?;
        self.metrics.password_hash(op, elapsed.as_secs_f64());
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
