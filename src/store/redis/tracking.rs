//! Redis client-side caching: turns `CLIENT TRACKING` on every connection of the validation
//! pool and keeps the [`NearCache`] honest (see its module docs for the rules).
//!
//! Two tasks per tracked connection:
//! - **invalidations**: every key Redis says changed or expired is evicted; a lagging receiver
//!   (pushes possibly lost) clears the cache;
//! - **link**: (re)enables tracking whenever the connection (re)connects or the Cluster
//!   topology changes — the server forgets a connection's tracking state with the connection —
//!   and then proves the link with a heartbeat every [`HEARTBEAT`]; a reply means every push
//!   sent before it has arrived, so the cache may serve for the staleness bound after it.
//!   A failed heartbeat only lets that proof run out: the cache stops serving and requests go
//!   to Redis (503 if it is gone) until the link answers again.
//!
//! `FLUSHALL` and `FLUSHDB` invalidate every tracked key with a push that names no key, which
//! the client library drops. So the heartbeat is not a bare `PING` but an `EXISTS` of a canary
//! key of this link (one per Cluster node, since a flush is per node) that tracking set up: a
//! canary found missing means the database was flushed (or the canary was deleted), and the
//! whole cache is cleared before the link is proven again. A flush is therefore seen within one
//! heartbeat. The canaries expire a minute after their link stops renewing them (a `PEXPIRE`
//! every [`CANARY_RENEWAL`] heartbeats: the heartbeat itself writes nothing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::store::near_cache::NearCache;

/// How often each link proves itself.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(100);

/// A canary outlives its link by this long.
const CANARY_TTL_MS: i64 = 60_000;

/// Every this many heartbeats (10 s), the heartbeat renews the canaries' expiry.
const CANARY_RENEWAL: u32 = 100;

/// The background tasks of one store; aborted with it.
pub(crate) struct Tracking {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Tracking {
    /// Start tracking on every client of `pool`, feeding `cache`. `timeout` bounds each
    /// heartbeat and tracking command.
    pub(crate) fn start(pool: &Pool, cache: &Arc<NearCache>, timeout: Duration) -> Self {
        let mut tasks = Vec::new();
        // Canaries are named per link and per process, so no two links share one.
        let instance = uuid::Uuid::new_v4().simple().to_string();
        for (link, client) in pool.clients().iter().enumerate() {
            tasks.push(tokio::spawn(invalidations(client.clone(), Arc::clone(cache))));
            let name = format!("{instance}-{link}");
            tasks.push(tokio::spawn(keep_link(link, name, client.clone(), Arc::clone(cache), timeout)));
        }
        Self { tasks }
    }
}

async fn invalidations(client: Client, cache: Arc<NearCache>) {
    let mut pushes = client.invalidation_rx();
    loop {
        match pushes.recv().await {
            Ok(invalidation) => {
                // No key: the whole database was invalidated (the canary covers the case where
                // such a push is not delivered at all).
                if invalidation.keys.is_empty() {
                    cache.clear();
                }
                for key in &invalidation.keys {
                    cache.invalidate_key(key.as_bytes());
                }
            }
            Err(RecvError::Lagged(_)) => cache.clear(),
            Err(RecvError::Closed) => return,
        }
    }
}

async fn keep_link(link: usize, name: String, client: Client, cache: Arc<NearCache>, timeout: Duration) {
    loop {
        cache.link_lost(link);
        // Subscribe before enabling tracking, so that a reconnect right after it is seen.
        let mut reconnects = client.reconnect_rx();
        let mut topology = client.cluster_change_rx();
        // Set up as soon as the connection is, rather than at the next retry.
        if !client.is_connected() {
            let _ = tokio::time::timeout(HEARTBEAT, client.wait_for_connect()).await;
        }
        let canaries = Canaries::of(&client, &name);
        if !(canaries.plant(&client, timeout).await && enable(&client, timeout).await) {
            tokio::time::sleep(HEARTBEAT).await;
            continue;
        }
        cache.link_tracking(link, Instant::now());
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beats = 0u32;
        loop {
            tokio::select! {
                _ = reconnects.recv() => break,
                _ = topology.recv() => break,
                _ = tick.tick() => {
                    let sent = Instant::now();
                    beats = beats.wrapping_add(1);
                    let renew = beats % CANARY_RENEWAL == 0;
                    match canaries.heartbeat(&client, timeout, renew).await {
                        Heartbeat::Answered => cache.link_proven(link, sent),
                        Heartbeat::Flushed => {
                            tracing::info!("the Redis database was flushed; the validation cache is cleared");
                            cache.clear();
                            if canaries.plant(&client, timeout).await {
                                cache.link_proven(link, sent);
                            }
                        }
                        Heartbeat::Failed => {}
                    }
                }
            }
        }
    }
}

/// What a heartbeat found.
enum Heartbeat {
    /// Every node answered and no canary was missing.
    Answered,
    /// A canary was missing: its node's database was flushed.
    Flushed,
    /// A node did not answer in time.
    Failed,
}

/// The canary keys of one link: one per node it talks to. Each is named under a hash tag of a
/// slot its node owns (found by trying tags), so that every node holds one.
struct Canaries {
    keys: Vec<String>,
}

impl Canaries {
    fn of(client: &Client, name: &str) -> Self {
        if !client.is_clustered() {
            return Self { keys: vec![format!("sessiond:flush-canary:{name}")] };
        }
        let Some(state) = client.cached_cluster_state() else { return Self { keys: Vec::new() } };
        let mut primaries: Vec<&fred::types::config::Server> =
            state.slots().iter().map(|range| &range.primary).collect();
        primaries.sort_by_key(|server| server.to_string());
        primaries.dedup();
        let keys = primaries
            .into_iter()
            .filter_map(|primary| {
                let owned = |slot: u16| {
                    state
                        .slots()
                        .iter()
                        .any(|range| &range.primary == primary && (range.start..=range.end).contains(&slot))
                };
                (0..100_000u32)
                    .map(|n| format!("sessiond:{{fc{n}}}:flush-canary:{name}"))
                    .find(|key| owned(fred::util::redis_keyslot(key.as_bytes())))
            })
            .collect();
        Self { keys }
    }

    /// Create (or renew) every canary. In a Cluster whose layout is not known yet there is
    /// none, and the link is not proven (it retries).
    async fn plant(&self, client: &Client, timeout: Duration) -> bool {
        if self.keys.is_empty() || !client.is_connected() {
            return false;
        }
        let plant = async {
            for key in &self.keys {
                let expiry = Some(fred::types::Expiration::PX(CANARY_TTL_MS));
                client.set::<Value, _, _>(key.as_str(), "1", expiry, None, false).await?;
            }
            Ok::<(), fred::error::Error>(())
        };
        matches!(tokio::time::timeout(timeout, plant).await, Ok(Ok(())))
    }

    /// Check (or, with `renew`, renew the expiry of) every canary: one command per node, whose
    /// reply also proves that the node's earlier pushes have arrived.
    async fn heartbeat(&self, client: &Client, timeout: Duration, renew: bool) -> Heartbeat {
        if !client.is_connected() {
            return Heartbeat::Failed;
        }
        let check = async {
            let mut flushed = false;
            for key in &self.keys {
                let present: i64 = if renew {
                    client.pexpire(key.as_str(), CANARY_TTL_MS, None).await?
                } else {
                    client.exists(key.as_str()).await?
                };
                flushed |= present == 0;
            }
            Ok::<bool, fred::error::Error>(flushed)
        };
        match tokio::time::timeout(timeout, check).await {
            Ok(Ok(false)) if self.covers_every_node(client) => Heartbeat::Answered,
            Ok(Ok(false)) => {
                if heartbeat(client, timeout).await {
                    Heartbeat::Answered
                } else {
                    Heartbeat::Failed
                }
            }
            Ok(Ok(true)) => Heartbeat::Flushed,
            _ => Heartbeat::Failed,
        }
    }

    /// Whether the canaries reach every node this client talks to (otherwise the heartbeat
    /// pings them as well).
    fn covers_every_node(&self, client: &Client) -> bool {
        !client.is_clustered() || self.keys.len() >= client.active_connections().len()
    }
}

/// `CLIENT TRACKING on` (default mode: Redis remembers the keys this connection reads, on
/// every Cluster node).
async fn enable(client: &Client, timeout: Duration) -> bool {
    if !client.is_connected() {
        return false;
    }
    match tokio::time::timeout(timeout, client.start_tracking(Vec::<String>::new(), false, false, false, false)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(error = %error.details(), "enabling client tracking failed; will retry");
            false
        }
        Err(_) => false,
    }
}

/// One `PING` per node this client talks to; all must answer.
async fn heartbeat(client: &Client, timeout: Duration) -> bool {
    if !client.is_connected() {
        return false;
    }
    let pings = async {
        if client.is_clustered() {
            for server in client.active_connections() {
                client.with_cluster_node(server).ping::<Value>(None).await?;
            }
            Ok::<(), fred::error::Error>(())
        } else {
            client.ping::<Value>(None).await.map(drop)
        }
    };
    matches!(tokio::time::timeout(timeout, pings).await, Ok(Ok(())))
}
