//! Wall-clock instants as Unix milliseconds.
//!
//! Milliseconds are what Redis `PEXPIRE` speaks and what a Lua number holds exactly, so every
//! deadline is stored in this one unit; RFC 3339 appears only at the JSON edge.
//!
//! [`Timestamp::now`] reads the session store's clock, not this host's: with Redis, every
//! instance follows Redis's `TIME` (see `store::redis::clock`), so instances whose clocks
//! disagree still agree on every deadline.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Milliseconds on a monotonic clock that starts at the first call in this process: cheap
/// per-second windows (log budgets, the hashing pool's flood detector) that a wall-clock step
/// must not disturb.
#[must_use]
pub(crate) fn monotonic_millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds to add to this host's clock to read the session store's: every instance then
/// measures deadlines on the one clock they share (Redis `TIME`, followed by
/// `store::redis::clock`), however far its own clock is off. 0 until measured, and always 0 on
/// the in-memory store.
static STORE_CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time on the session store's clock (this host's clock corrected by the
    /// offset last measured against the store).
    #[must_use]
    pub fn now() -> Self {
        Self(Self::host_now().0.saturating_add(STORE_CLOCK_OFFSET_MS.load(Ordering::Relaxed)))
    }

    /// The current time on this host's own clock.
    #[must_use]
    pub fn host_now() -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// From now on, [`now`](Self::now) is this host's clock plus `offset_ms`.
    pub(crate) fn follow_store_clock(offset_ms: i64) {
        STORE_CLOCK_OFFSET_MS.store(offset_ms, Ordering::Relaxed);
    }

    /// From Unix milliseconds.
    #[must_use]
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Unix milliseconds.
    #[must_use]
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This instant plus a duration (saturating).
    #[must_use]
    pub fn plus(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    #[must_use]
    pub const fn millis_since(self, earlier: Self) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 with millisecond precision, UTC.
    #[must_use]
    pub fn to_rfc3339(self) -> String {
        let mut buffer = [0u8; RFC3339_LEN];
        match self.write_rfc3339(&mut buffer) {
            Some(text) => text.to_owned(),
            None => humantime::format_rfc3339_millis(self.as_system_time()).to_string(),
        }
    }

    fn as_system_time(self) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` into `out`, for the years 1970–9999 (`None` outside them).
    /// Every profile and session list carries several timestamps: formatting them with the
    /// general `fmt` machinery was a noticeable share of a cached validation.
    fn write_rfc3339(self, out: &mut [u8; RFC3339_LEN]) -> Option<&str> {
        let millis = u64::try_from(self.0).ok()?;
        let (secs, ms) = (millis / 1000, millis % 1000);
        let (days, day_secs) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(i64::try_from(days).ok()?);
        if !(1970..=9999).contains(&year) {
            return None;
        }
        let mut pair = |at: usize, value: u64| {
            let value = usize::try_from(value % 100).unwrap_or(0) * 2;
            out[at..at + 2].copy_from_slice(&DIGIT_PAIRS[value..value + 2]);
        };
        let year = u64::try_from(year).ok()?;
        pair(0, year / 100);
        pair(2, year);
        pair(5, month);
        pair(8, day);
        pair(11, day_secs / 3600);
        pair(14, day_secs / 60 % 60);
        pair(17, day_secs % 60);
        pair(20, ms / 10);
        out[22] = b'0' + u8::try_from(ms % 10).unwrap_or(0);
        for (at, byte) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')] {
            out[at] = byte;
        }
        std::str::from_utf8(out).ok()
    }
}

const RFC3339_LEN: usize = 24;

/// "00" to "99": two digits per lookup.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, u64::try_from(month).unwrap_or(1), u64::try_from(day).unwrap_or(1))
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; RFC3339_LEN];
        match self.write_rfc3339(&mut buffer) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(&humantime::format_rfc3339_millis(self.as_system_time())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn rfc3339_matches_the_general_formatter() {
        let mut millis: i64 = 0;
        // Every ~37 hours and some milliseconds from 1970 to past 2100, plus the edges.
        let mut cases = vec![0, 951_782_400_000, 4_107_542_399_999, 253_402_300_799_999];
        while millis < 4_200_000_000_000 {
            cases.push(millis);
            millis += 133_333_337;
        }
        for millis in cases {
            let at = Timestamp::from_millis(millis);
            let general = humantime::format_rfc3339_millis(at.as_system_time()).to_string();
            assert_eq!(at.to_rfc3339(), general, "{millis}");
            assert_eq!(serde_json::to_string(&at).expect("json"), format!("\"{general}\""));
        }
    }
}
