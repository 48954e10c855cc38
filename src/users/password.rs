//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow (~20 ms and 19 MiB at OWASP's minimum), so it runs on a fixed
//! set of `concurrency` hashing threads, never on the async workers that validate sessions.
//! A fixed set, rather than tokio's blocking pool, because each hash allocates its 19 MiB on
//! the thread that runs it: short-lived pool threads each leave such a block in a malloc arena
//! of their own, and resident memory grows with every new thread. At most `queue` hashes wait
//! for a thread; past that a login is refused at once (503) instead of queueing until its
//! client gives up. Unknown
//! usernames are verified against a dummy hash with the same parameters, so the response time
//! does not reveal whether an account exists.

use std::fmt;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Instant;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
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
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run argon2, fed through a bounded queue. Dropping the sender (with the
/// [`Passwords`]) ends them.
struct HashWorkers {
    jobs: mpsc::SyncSender<Job>,
}

impl HashWorkers {
    fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new().name(format!("sessiond-hash-{n}")).spawn(move || loop {
                let job = receiver.lock().unwrap_or_else(PoisonError::into_inner).recv();
                let Ok(job) = job else { return };
                // A panicking hash answers its caller with an error (its result channel is
                // dropped) and must not take the thread with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
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
        let workers = HashWorkers::start(concurrency, queue)?;
        Ok(Self { argon, workers, dummy_hash, metrics })
    }

    /// Hash a new password into a PHC string.
    ///
    /// # Errors
    /// [`Error::Overloaded`] when too many hashes are waiting; [`Error::Internal`] when hashing
    /// fails (it does not, short of memory exhaustion).
    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let argon = self.argon.clone();
        let password = password.0.clone();
        self.on_pool("hash", move || {
            argon.hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| Error::Internal(e.to_string()))
        })
        .await?
    }

    /// Check a password against a stored PHC string, or against the dummy hash when the user
    /// does not exist (`None`), which always answers `false` after the same amount of work.
    ///
    /// # Errors
    /// [`Error::Overloaded`] when too many hashes are already running or waiting.
    pub async fn verify(&self, password: &Password, stored: Option<&str>) -> Result<bool, Error> {
        let argon = self.argon.clone();
        let password = password.0.clone();
        let (phc, known) = match stored {
            Some(phc) => (phc.to_owned(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let matched =
            self.on_pool("verify", move || argon.verify_password(password.as_bytes(), phc.as_str()).is_ok()).await?;
        Ok(matched && known)
    }

    async fn on_pool<T: Send + 'static>(
        &self,
        op: &'static str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (done, finished) = oneshot::channel();
        let job: Job = Box::new(move || {
            let started = Instant::now();
            let result = work();
            let _ = done.send((result, started.elapsed()));
        });
        match self.workers.jobs.try_send(job) {
            Ok(()) => {}
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
