//! Brute-force protection of password checks: a per-account limiter on this instance and a
//! failed-login guard shared by every instance through the store, each with a separate
//! allowance for clients that prove with a device token that they logged in as the user
//! before. Kept apart from the use cases so the policy (how many failures, for how long, keyed
//! by what) reads in one place, and so a login and a re-authentication (password change,
//! account deletion) are checked by the same code.

use std::sync::Arc;

use crate::error::Error;
use crate::limits::{Decision, KeyedLimiter};
use crate::session::Timestamp;
use crate::store::{GuardBucket, GuardEvent, GuardRule, Store, UserRecord};
use crate::telemetry::metrics::Metrics;
use crate::users::{DeviceId, DeviceToken, DeviceTokens, Password, Passwords, UserKey, Username};

/// Brute-force protection of logins, and the password check it guards.
#[derive(Clone)]
pub struct LoginProtection {
    /// Users and the shared guard.
    pub store: Arc<dyn Store>,
    /// The hashing pool passwords are checked on.
    pub passwords: Arc<Passwords>,
    /// Where refusals are counted.
    pub metrics: Arc<Metrics>,
    /// Attempts per account (and per device of it) on this instance (governor).
    pub account: Arc<KeyedLimiter>,
    /// The failed-login guard shared through the store, if enabled.
    pub guard: Option<LoginGuard>,
    /// Signs and checks the device tokens that earn a separate allowance.
    pub devices: Arc<DeviceTokens>,
}

/// The shared failed-login guard: `failures` per `window` per account, on every instance.
#[derive(Clone, Copy, Debug)]
pub struct LoginGuard {
    pub(super) rule: GuardRule,
    failures: u32,
    window_secs: u64,
}

impl LoginGuard {
    /// `failures` per `window`; `None` when `failures` is 0.
    #[must_use]
    pub fn new(failures: u32, window: std::time::Duration) -> Option<Self> {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let interval_ms = window_ms / i64::from(failures.max(1));
        (failures > 0 && interval_ms > 0).then_some(Self {
            rule: GuardRule { interval_ms, tolerance_ms: window_ms - interval_ms },
            failures,
            window_secs: window.as_secs().max(1),
        })
    }

    pub(super) fn refusal(self, wait_ms: u64) -> Decision {
        Decision {
            limiter: "login_guard",
            allowed: false,
            remaining: 0,
            reset_secs: wait_ms.div_ceil(1000).max(1),
            policy: (self.failures, self.window_secs),
        }
    }
}

/// Why a password check did not let the caller in (the audit trail's `reason`; the client
/// sees one and the same answer for all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    UnknownUser,
    WrongPassword,
    Disabled,
}

impl Refused {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::WrongPassword => "wrong_password",
            Self::Disabled => "disabled",
        }
    }
}

/// A password check that passed.
pub(super) struct Verified {
    pub(super) user: UserRecord,
    pub(super) key: UserKey,
    /// The device of the presented device token, when it was a valid one of this user.
    pub(super) device: Option<DeviceId>,
}

/// The allowance one attempt spends.
struct Attempt<'a> {
    key: Option<UserKey>,
    device: Option<DeviceId>,
    username: &'a str,
}

impl Attempt<'_> {
    fn bucket(&self) -> GuardBucket<'_> {
        match &self.device {
            Some(id) => GuardBucket::Device(id.as_str()),
            None => GuardBucket::Untrusted,
        }
    }

    /// The per-instance limiter's key: a digest of the normalised username (and the device),
    /// so attacker-chosen names are neither stored nor usable to grow keys beyond 16 bytes.
    fn limiter_key(&self) -> u128 {
        use sha2::Digest as _;
        let mut digest = sha2::Sha256::new()
            .chain_update(b"sessiond/login/")
            .chain_update(self.username.to_ascii_lowercase().as_bytes());
        if let Some(device) = &self.device {
            digest = digest.chain_update(b"/device/").chain_update(device.as_str().as_bytes());
        }
        let digest = digest.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        u128::from_be_bytes(bytes)
    }
}

impl LoginProtection {
    /// Check `password` for `username` under the limits: the per-instance limiter, a place in
    /// the hashing pool, the shared guard, then the hash (against a dummy one for unknown
    /// users, so that timing does not tell), and record the outcome in the guard. A disabled
    /// account counts as a failure: its password must not reset an allowance.
    ///
    /// # Errors
    /// 429 when a limit refuses, 503 when the pool is full or the store is unavailable.
    pub(super) async fn check_password(
        &self,
        username: &str,
        password: &Password,
        device_token: Option<&DeviceToken>,
    ) -> Result<Result<Verified, Refused>, Error> {
        let (store, passwords, metrics) = (&*self.store, &*self.passwords, &*self.metrics);
        let key = Username::parse(username).ok().map(|name| name.key());
        let now = Timestamp::now();
        let device = key.as_ref().zip(device_token).and_then(|(key, token)| self.devices.verify(token, key, now));
        let attempt = Attempt { key, device, username };
        if let Some(decision) = self.account.check(attempt.limiter_key()) {
            if !decision.allowed {
                metrics.rate_limited(decision.limiter);
                return Err(Error::RateLimited(decision));
            }
        }
        // A place in the hashing pool before any Redis work: when the pool is full, a flood of
        // attempts is refused from memory and costs validations nothing.
        let slot = passwords.reserve()?;
        let guard = self.guard.zip(attempt.key.as_ref());
        if let Some((guard, key)) = guard {
            let wait_ms =
                store.login_guard(key, attempt.bucket(), Timestamp::now(), guard.rule, GuardEvent::Check).await?;
            if wait_ms > 0 {
                metrics.rate_limited("login_guard");
                return Err(Error::RateLimited(guard.refusal(wait_ms)));
            }
        }
        let user = match &attempt.key {
            Some(key) => store.find_user(key).await?,
            None => None,
        };
        let verified = passwords.verify(slot, password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let outcome = match (user, attempt.key.clone(), verified) {
            (Some(user), Some(key), true) if !user.disabled => {
                Ok(Verified { user, key, device: attempt.device.clone() })
            }
            (Some(_), Some(_), true) => Err(Refused::Disabled),
            (Some(_), _, _) => Err(Refused::WrongPassword),
            (None, _, _) => Err(Refused::UnknownUser),
        };
        // Unknown accounts are counted too: a guard only for real ones would reveal which exist.
        if let Some((guard, key)) = guard {
            let event = if outcome.is_ok() { GuardEvent::Success } else { GuardEvent::Failure };
            store.login_guard(key, attempt.bucket(), Timestamp::now(), guard.rule, event).await?;
        }
        Ok(outcome)
    }

    /// A device token for the user of `verified`, renewing the device it presented.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub(super) fn device_token(&self, verified: &Verified) -> Result<DeviceToken, Error> {
        self.devices
            .issue(&verified.key, verified.device.as_ref(), Timestamp::now())
            .map_err(|e| Error::Internal(e.to_string()))
    }
}
