//! Brute-force protection of logins: a per-account limiter on this instance and a failed-login
//! guard shared by every instance through the store. Kept apart from the login itself so the
//! policy (how many failures, for how long, keyed by what) reads in one place.

use std::sync::Arc;

use crate::limits::{Decision, KeyedLimiter};
use crate::store::GuardRule;

/// Brute-force protection of logins.
#[derive(Clone, Debug)]
pub struct LoginProtection {
    /// Attempts per account on this instance (governor).
    pub account: Arc<KeyedLimiter>,
    /// The failed-login guard shared through the store, if enabled.
    pub guard: Option<LoginGuard>,
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

/// The per-account limiter's key: a digest of the normalised username, so attacker-chosen
/// names are neither stored nor usable to grow keys beyond 16 bytes each.
pub(super) fn account_key(username: &str) -> u128 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(b"sessiond/login/")
        .chain_update(username.to_ascii_lowercase().as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}
