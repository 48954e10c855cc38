//! A named governor limiter keyed by a 128-bit value (an address or a username digest).

use std::fmt;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::RateLimiter;

use super::QuotaSpec;

type Inner = RateLimiter<u128, DefaultKeyedStateStore<u128>, DefaultClock, StateInformationMiddleware>;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Which limiter decided (the metric label and the policy name in headers).
    pub limiter: &'static str,
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Requests left in the current burst.
    pub remaining: u32,
    /// Whole seconds until the limit resets (allowed) or until a retry can succeed (refused;
    /// never 0).
    pub reset_secs: u64,
    /// `RateLimit-Policy` parameters: quota units and window seconds.
    pub policy: (u32, u64),
}

/// A limiter, or nothing when its quota is `0`.
pub struct KeyedLimiter {
    name: &'static str,
    spec: QuotaSpec,
    inner: Option<Inner>,
}

impl fmt::Debug for KeyedLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter").field("name", &self.name).field("spec", &self.spec).finish_non_exhaustive()
    }
}

fn whole_seconds_up(duration: std::time::Duration) -> u64 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    secs.max(1)
}

impl KeyedLimiter {
    /// A limiter named `name` (used in metrics and headers).
    #[must_use]
    pub fn new(name: &'static str, spec: QuotaSpec) -> Self {
        let inner = spec.quota().map(|quota| RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>());
        Self { name, spec, inner }
    }

    /// The limiter's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Count one request for `key`; `None` when the limiter is disabled.
    #[must_use]
    pub fn check(&self, key: u128) -> Option<Decision> {
        let inner = self.inner.as_ref()?;
        let policy = self.spec.policy()?;
        Some(match inner.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = policy.0.saturating_sub(remaining);
                let refill = snapshot.quota().replenish_interval() * used;
                Decision { limiter: self.name, allowed: true, remaining, reset_secs: refill.as_secs(), policy }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(inner.clock().now());
                Decision {
                    limiter: self.name,
                    allowed: false,
                    remaining: 0,
                    reset_secs: whole_seconds_up(wait),
                    policy,
                }
            }
        })
    }

    /// Drop keys that are back to a full burst, then release the freed memory.
    pub fn prune(&self) {
        if let Some(inner) = &self.inner {
            inner.retain_recent();
            inner.shrink_to_fit();
        }
    }

    /// Keys currently tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, RateLimiter::len)
    }

    /// Whether no key is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_with_a_nonzero_retry() {
        let limiter = KeyedLimiter::new("t", "1/m burst 2".parse().expect("quota"));
        let first = limiter.check(7).expect("enabled");
        assert!(first.allowed);
        assert_eq!(first.remaining, 1);
        assert!(limiter.check(7).expect("enabled").allowed);
        let refused = limiter.check(7).expect("enabled");
        assert!(!refused.allowed);
        assert!((1..=60).contains(&refused.reset_secs));
        assert!(limiter.check(8).expect("enabled").allowed, "keys are independent");
        assert!(KeyedLimiter::new("off", QuotaSpec::Off).check(7).is_none());
    }
}
