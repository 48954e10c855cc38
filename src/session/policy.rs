//! Timeouts, sliding expiry and caps.
//!
//! A session has two deadlines: `expires_at` (login + absolute timeout, never moves) and
//! `idle_expires_at` (last recorded use + idle timeout, capped by `expires_at`). The store key
//! expires at the earlier of the two, so Redis deletes an abandoned session by itself.
//!
//! **Sliding rule.** Rewriting the idle deadline on every request would turn every read into a
//! Redis write. Instead a validation rewrites it only when at least a tenth of the idle window
//! has passed since the last rewrite. So a session is written at most ten times per idle window,
//! and the idle timeout a client experiences lies between 90 % and 100 % of the configured one.

use std::time::Duration;

use super::Timestamp;

/// The rules a deployment chose.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    /// Inactivity after which a session expires.
    pub idle_timeout: Duration,
    /// Lifetime of a session from login, regardless of use.
    pub absolute_timeout: Duration,
    /// Live sessions per user before the oldest is revoked (0: unlimited).
    pub max_sessions_per_user: u32,
}

/// What the store needs to slide an idle deadline.
#[derive(Clone, Copy, Debug)]
pub struct Slide {
    /// The idle timeout in milliseconds.
    pub idle_ms: i64,
    /// Rewrite only when the last rewrite is at least this old (milliseconds).
    pub min_interval_ms: i64,
}

impl SessionPolicy {
    /// Deadlines of a session created at `now`: `(idle_expires_at, expires_at)`.
    #[must_use]
    pub fn deadlines_at_login(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        let expires = now.plus(self.absolute_timeout);
        (now.plus(self.idle_timeout).min(expires), expires)
    }

    /// The sliding rule for validations.
    #[must_use]
    pub fn slide(&self) -> Slide {
        let idle_ms = i64::try_from(self.idle_timeout.as_millis()).unwrap_or(i64::MAX);
        Slide { idle_ms, min_interval_ms: idle_ms / 10 }
    }

    /// The sliding rule for an explicit refresh: always rewrite.
    #[must_use]
    pub fn slide_now(&self) -> Slide {
        Slide { min_interval_ms: 0, ..self.slide() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_deadline_never_passes_the_absolute_one() {
        let policy = SessionPolicy {
            idle_timeout: Duration::from_secs(3600),
            absolute_timeout: Duration::from_secs(60),
            max_sessions_per_user: 1,
        };
        let now = Timestamp::from_millis(1_000);
        assert_eq!(policy.deadlines_at_login(now), (Timestamp::from_millis(61_000), Timestamp::from_millis(61_000)));
    }

    #[test]
    fn slide_interval_is_a_tenth_of_the_idle_window() {
        let policy = SessionPolicy {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            max_sessions_per_user: 50,
        };
        assert_eq!(policy.slide().min_interval_ms, 180_000);
        assert_eq!(policy.slide_now().min_interval_ms, 0);
    }
}
