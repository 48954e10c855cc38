//! Redis's clock decides when a session ends.
//!
//! Every deadline (idle, absolute, the key's TTL, the active-session count) is computed by the
//! instance that handles a request and checked again by whichever instance handles the next
//! one. If each used its own clock, an instance whose clock runs ahead would end sessions
//! another instance created early, and one whose clock runs behind would let them live past
//! their absolute deadline. So each instance follows Redis's clock: it reads `TIME` when it
//! connects and every [`INTERVAL`] after, and [`Timestamp::now`] applies the measured offset.
//! Each measurement takes the quickest of [`SAMPLES`] readings; the error of a reading is at
//! most half its round trip (readings slower than [`MAX_ROUND_TRIP`] are dropped), and an
//! offset within that error is taken as 0. So instances agree to within a few milliseconds
//! whatever their own clocks say.

use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Value};

use crate::session::Timestamp;

/// How often the offset is measured again (clocks drift slowly; a step of the host's clock is
/// followed within this).
pub(super) const INTERVAL: Duration = Duration::from_secs(5);

/// A reading whose round trip took longer says too little about when Redis read its clock.
const MAX_ROUND_TRIP: Duration = Duration::from_millis(100);

/// Readings per measurement; the one with the shortest round trip counts.
const SAMPLES: usize = 3;

/// An offset beyond this is logged: the host's clock needs fixing even though deadlines hold.
const WARN_OFFSET_MS: i64 = 1_000;

/// The background task that keeps [`Timestamp::now`] on Redis's clock; stops with the store.
pub(super) struct Follower(tokio::task::JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follow the clock of the Redis behind `pool`.
pub(super) fn follow(pool: Pool, timeout: Duration) -> Follower {
    Follower(tokio::spawn(async move {
        let _ = pool.wait_for_connect().await;
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            tick.tick().await;
            match best_of(pool.next_connected(), timeout).await {
                Ok(offset_ms) => {
                    Timestamp::follow_store_clock(offset_ms);
                    let far = offset_ms.abs() > WARN_OFFSET_MS;
                    if far && !warned {
                        tracing::warn!(
                            offset_ms,
                            "this host's clock differs from Redis's; session deadlines follow Redis's clock"
                        );
                    }
                    warned = far;
                }
                Err(detail) => tracing::debug!(%detail, "reading Redis's clock failed; keeping the last offset"),
            }
        }
    }))
}

/// Redis's clock minus this host's, in milliseconds, from the quickest of [`SAMPLES`]
/// readings; 0 when the clocks agree within that reading's error.
async fn best_of(client: &Client, timeout: Duration) -> Result<i64, String> {
    let mut best: Option<(Duration, i64)> = None;
    let mut last_error = String::new();
    for _ in 0..SAMPLES {
        match measure(client, timeout).await {
            Ok((round_trip, offset)) if best.is_none_or(|(quickest, _)| round_trip < quickest) => {
                best = Some((round_trip, offset));
            }
            Ok(_) => {}
            Err(detail) => last_error = detail,
        }
    }
    let (round_trip, offset) = best.ok_or(last_error)?;
    let error_ms = i64::try_from(round_trip.as_millis() / 2).unwrap_or(i64::MAX).saturating_add(1);
    Ok(if offset.abs() <= error_ms { 0 } else { offset })
}

/// One `TIME`: its round trip and Redis's clock minus this host's, in milliseconds.
async fn measure(client: &Client, timeout: Duration) -> Result<(Duration, i64), String> {
    let command = CustomCommand::new_static("TIME", ClusterHash::Random, false);
    let sent = Instant::now();
    let before = Timestamp::host_now();
    let reply = tokio::time::timeout(timeout, client.custom::<Value, Value>(command, Vec::new()))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let round_trip = sent.elapsed();
    if round_trip > MAX_ROUND_TRIP {
        return Err(format!("round trip of {round_trip:?}"));
    }
    let redis_ms = redis_millis(&reply).ok_or_else(|| "unexpected TIME reply".to_owned())?;
    let half = i64::try_from(round_trip.as_millis() / 2).unwrap_or(0);
    Ok((round_trip, redis_ms - (before.millis() + half)))
}

/// `TIME`'s `[seconds, microseconds]` as Unix milliseconds.
fn redis_millis(reply: &Value) -> Option<i64> {
    let Value::Array(parts) = reply else { return None };
    let number = |n: usize| parts.get(n).and_then(Value::as_string).and_then(|s| s.parse::<i64>().ok());
    number(0)?.checked_mul(1000)?.checked_add(number(1)? / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_replies_become_milliseconds() {
        let reply = Value::Array(vec![Value::from("1733500000"), Value::from("123456")]);
        assert_eq!(redis_millis(&reply), Some(1_733_500_000_123));
        assert_eq!(redis_millis(&Value::Null), None);
        assert_eq!(redis_millis(&Value::Array(vec![Value::from("x"), Value::from("1")])), None);
    }
}
