//! A per-second budget for log lines that a flood would otherwise repeat once per request.
//!
//! A login flood shed with 503, or a Redis outage under load, fails thousands of requests a
//! second. One warning per request would turn that into a log flood: formatting and write
//! calls on the async workers, disk and the log pipeline, all on the host that is shedding load.
//! The metrics already count every such request, so the log needs only enough lines to say that
//! it is happening. A budget lets `per_second` lines through in each second and counts the rest.
//! The next line it lets through carries that count as `suppressed`, so nothing disappears
//! without a trace.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::session::time::monotonic_millis;

/// Warnings for failed requests (5xx), server-wide.
pub(crate) static FAILED_REQUESTS: LogBudget = LogBudget::new(10);
/// Warnings for an unavailable session store, server-wide.
pub(crate) static STORE_UNAVAILABLE: LogBudget = LogBudget::new(10);
/// Warnings for requests refused as cross-site, server-wide.
pub(crate) static REFUSED_REQUESTS: LogBudget = LogBudget::new(10);
/// Errors that are bugs (500): a higher budget, since every one of them is worth reading.
pub(crate) static INTERNAL_ERRORS: LogBudget = LogBudget::new(100);

/// Lines allowed per second, and the lines withheld since the last one written.
pub(crate) struct LogBudget {
    /// Lines let through in each second.
    per_second: u32,
    /// The second (of [`monotonic_millis`]) that `used` counts.
    window: AtomicU64,
    /// Lines let through in `window` so far.
    used: AtomicU32,
    /// Lines withheld since the last line let through.
    suppressed: AtomicU64,
}

impl LogBudget {
    pub(crate) const fn new(per_second: u32) -> Self {
        Self { per_second, window: AtomicU64::new(0), used: AtomicU32::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(withheld)` when a line may be written now, with the number of lines withheld
    /// since the last one; `None` when this second's budget is spent (the line is counted).
    #[must_use = "the line is counted as written or withheld"]
    pub(crate) fn take(&self) -> Option<u64> {
        self.take_at(monotonic_millis() / 1000)
    }

    fn take_at(&self, second: u64) -> Option<u64> {
        let window = self.window.load(Ordering::Relaxed);
        // One caller moves the window on and resets the count; a race with it costs at most a
        // few lines over the budget, never a lost count.
        if window != second
            && self.window.compare_exchange(window, second, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < self.per_second {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_the_budget_through_each_second_and_reports_what_it_withheld() {
        let budget = LogBudget::new(3);
        assert_eq!(budget.take_at(5), Some(0));
        assert_eq!(budget.take_at(5), Some(0));
        assert_eq!(budget.take_at(5), Some(0));
        for _ in 0..1000 {
            assert_eq!(budget.take_at(5), None);
        }
        // The next second's first line reports the 1000 withheld ones, then the count restarts.
        assert_eq!(budget.take_at(6), Some(1000));
        assert_eq!(budget.take_at(6), Some(0));
        assert_eq!(budget.take_at(6), Some(0));
        assert_eq!(budget.take_at(6), None);
        assert_eq!(budget.take_at(9), Some(1));
    }

    #[test]
    fn a_zero_budget_withholds_everything() {
        let budget = LogBudget::new(0);
        assert_eq!(budget.take_at(1), None);
        assert_eq!(budget.take_at(2), None);
    }
}
