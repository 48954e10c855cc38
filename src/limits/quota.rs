//! Quota syntax: `<count>/<s|m|h> [burst <n>]`, or `0`/`off` to disable.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// A configured quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaSpec {
    /// No limit.
    Off,
    /// `count` per `per`, with bursts of up to `burst`.
    Limit { count: NonZeroU32, per: Duration, burst: NonZeroU32 },
}

impl QuotaSpec {
    /// The governor quota, or `None` when disabled.
    #[must_use]
    pub fn quota(self) -> Option<governor::Quota> {
        match self {
            Self::Off => None,
            Self::Limit { count, per, burst } => {
                governor::Quota::with_period(per / count.get()).map(|quota| quota.allow_burst(burst))
            }
        }
    }

    /// `RateLimit-Policy` parameters: quota units and window in whole seconds (at least 1).
    #[must_use]
    pub fn policy(self) -> Option<(u32, u64)> {
        match self {
            Self::Off => None,
            Self::Limit { count, per, burst } => {
                let window = per.as_secs_f64() * f64::from(burst.get()) / f64::from(count.get());
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some((burst.get(), (window.ceil() as u64).max(1)))
            }
        }
    }
}

impl FromStr for QuotaSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        if text == "0" || text == "off" {
            return Ok(Self::Off);
        }
        let usage = || format!("expected a quota such as `20/s burst 40`, `5/m` or `0` to disable, not {text:?}");
        let mut words = text.split_whitespace();
        let rate = words.next().ok_or_else(usage)?;
        let (count, unit) = rate.split_once('/').ok_or_else(usage)?;
        let count: NonZeroU32 = count.parse().map_err(|_| usage())?;
        let per = match unit {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(usage()),
        };
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => count,
            (Some("burst"), Some(n), None) => n.parse().map_err(|_| usage())?,
            _ => return Err(usage()),
        };
        if per / count.get() == Duration::ZERO {
            return Err(usage());
        }
        Ok(Self::Limit { count, per, burst })
    }
}

impl fmt::Display for QuotaSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("0"),
            Self::Limit { count, per, burst } => {
                let unit = match per.as_secs() {
                    1 => "s",
                    60 => "m",
                    _ => "h",
                };
                write!(f, "{count}/{unit} burst {burst}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let q: QuotaSpec = "20/s burst 40".parse().expect("valid");
        assert_eq!(q.to_string(), "20/s burst 40");
        assert_eq!(q.policy(), Some((40, 2)));
        let q: QuotaSpec = "5/m".parse().expect("valid");
        assert_eq!(q.policy(), Some((5, 60)));
        assert_eq!("0".parse::<QuotaSpec>(), Ok(QuotaSpec::Off));
        assert_eq!("OFF".parse::<QuotaSpec>(), Ok(QuotaSpec::Off));
        for bad in ["", "20", "20/x", "0/s", "20/s burst", "20/s burst 0", "20/s bust 4", "a/s"] {
            assert!(bad.parse::<QuotaSpec>().is_err(), "{bad}");
        }
    }
}
