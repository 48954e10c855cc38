//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow (~20 ms at OWASP's minimum), so it runs on tokio's blocking
//! pool and at most `concurrency` hashes run at once: a login flood then queues on a
//! semaphore instead of occupying every thread that session validations need. Unknown
//! usernames are verified against a dummy hash with the same parameters, so the response time
//! does not reveal whether an account exists.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;
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

/// The argon2id hasher with its concurrency cap.
pub struct Passwords {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Hashes running or waiting for a permit, and the most allowed: past it, shed load.
    admitted: AtomicUsize,
    max_admitted: usize,
    dummy_hash: String,
    metrics: Arc<Metrics>,
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
        let concurrency = concurrency.max(1);
        Ok(Self {
            argon,
            permits: Arc::new(Semaphore::new(concurrency)),
            admitted: AtomicUsize::new(0),
            max_admitted: concurrency + queue,
            dummy_hash,
            metrics,
        })
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
        let _admission = self.admit()?;
        let span = tracing::info_span!("password", otel.name = format!("password.{op}"), password.op = op);
        async {
            let _permit = self.permits.acquire().await.map_err(|e| Error::Internal(e.to_string()))?;
            let (result, elapsed) = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let result = work();
                (result, started.elapsed())
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
            self.metrics.password_hash(op, elapsed.as_secs_f64());
            Ok(result)
        }
        .instrument(span)
        .await
    }

    /// Take a place among the running and waiting hashes, or refuse at once.
    fn admit(&self) -> Result<Admission<'_>, Error> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.max_admitted {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            self.metrics.rate_limited("hash_pool");
            return Err(Error::Overloaded);
        }
        Ok(Admission(&self.admitted))
    }
}

/// A place in the hashing queue, given back on drop (also when the request is cancelled).
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
