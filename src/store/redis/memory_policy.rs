//! A start-up check of Redis's eviction policy.
//!
//! Sessions and accounts must leave Redis only when they expire or are revoked. With
//! `maxmemory-policy noeviction`, a full Redis refuses writes (logins and registrations answer
//! 503, existing sessions keep validating) until memory is freed or raised. Any other policy
//! lets Redis delete keys to make room: `volatile-*` evicts sessions (which carry a TTL) —
//! users are logged out at random — and `allkeys-*` evicts accounts too. So a policy other
//! than `noeviction` is logged as a warning. Reading the policy may be refused (managed Redis
//! services often disable `CONFIG`): that is logged and is not fatal.

use std::time::Duration;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Value};

/// How long the check waits for the first connection before giving up quietly.
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(10);

/// Read `maxmemory-policy` once the pool is connected and warn unless it is `noeviction`.
pub(super) async fn check(pool: Pool, timeout: Duration) {
    if tokio::time::timeout(WAIT_FOR_CONNECTION, pool.wait_for_connect()).await.is_err() {
        return;
    }
    let command = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
    let reply = tokio::time::timeout(
        timeout,
        pool.next_connected().custom::<Value, &str>(command, vec!["GET", "maxmemory-policy"]),
    )
    .await;
    match reply {
        Ok(Ok(value)) => match policy_of(&value) {
            Some(policy) if policy == "noeviction" => {
                tracing::debug!(policy = policy.as_str(), "Redis maxmemory-policy");
            }
            Some(policy) => tracing::warn!(
                policy = policy.as_str(),
                "Redis maxmemory-policy is not noeviction: when Redis is full it evicts keys, and \
                 sessions (and, with an allkeys policy, accounts) can disappear before they expire; \
                 set maxmemory-policy noeviction"
            ),
            None => tracing::info!("could not read Redis maxmemory-policy (unexpected reply); not checked"),
        },
        Ok(Err(error)) => {
            tracing::info!(error = error.details(), "could not read Redis maxmemory-policy; not checked");
        }
        Err(_) => tracing::info!("could not read Redis maxmemory-policy (timed out); not checked"),
    }
}

/// The policy in a `CONFIG GET` reply: `[name, value]` (RESP2) or `{name: value}` (RESP3).
fn policy_of(reply: &Value) -> Option<String> {
    match reply {
        Value::Array(parts) => parts.get(1).and_then(Value::as_string),
        Value::Map(map) => map.clone().inner().into_iter().next().and_then(|(_, value)| value.as_string()),
        _ => None,
    }
    .map(|policy| policy.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_read_from_either_reply_shape() {
        let array = Value::Array(vec![Value::from("maxmemory-policy"), Value::from("allkeys-lru")]);
        assert_eq!(policy_of(&array).as_deref(), Some("allkeys-lru"));
        assert_eq!(policy_of(&Value::Array(Vec::new())), None);
        assert_eq!(policy_of(&Value::Null), None);
    }
}
