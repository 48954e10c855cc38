//! Redis client-side caching: turns `CLIENT TRACKING` on every connection of the validation
//! pool and keeps the [`NearCache`] honest (see its module docs for the rules).
//!
//! Two tasks per tracked connection:
//! - **invalidations**: every key Redis says changed or expired is evicted; a lagging receiver
//!   (pushes possibly lost) clears the cache;
//! - **link**: (re)enables tracking whenever the connection (re)connects or the Cluster
//!   topology changes — the server forgets a connection's tracking state with the connection —
//!   and then proves the link with a heartbeat `PING` every [`HEARTBEAT`]; a reply means every
//!   push sent before it has arrived, so the cache may serve for the staleness bound after it.
//!   A failed heartbeat only lets that proof run out: the cache stops serving and requests go
//!   to Redis (503 if it is gone) until the link answers again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::store::near_cache::NearCache;

/// How often each link proves itself.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(100);

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
        for (link, client) in pool.clients().iter().enumerate() {
            tasks.push(tokio::spawn(invalidations(client.clone(), Arc::clone(cache))));
            tasks.push(tokio::spawn(keep_link(link, client.clone(), Arc::clone(cache), timeout)));
        }
        Self { tasks }
    }
}

async fn invalidations(client: Client, cache: Arc<NearCache>) {
    let mut pushes = client.invalidation_rx();
    loop {
        match pushes.recv().await {
            Ok(invalidation) => {
                for key in &invalidation.keys {
                    cache.invalidate_key(key.as_bytes());
                }
            }
            Err(RecvError::Lagged(_)) => cache.clear(),
            Err(RecvError::Closed) => return,
        }
    }
}

async fn keep_link(link: usize, client: Client, cache: Arc<NearCache>, timeout: Duration) {
    loop {
        cache.link_lost(link);
        // Subscribe before enabling tracking, so that a reconnect right after it is seen.
        let mut reconnects = client.reconnect_rx();
        let mut topology = client.cluster_change_rx();
        if !enable(&client, timeout).await {
            tokio::time::sleep(HEARTBEAT).await;
            continue;
        }
        cache.link_tracking(link, Instant::now());
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = reconnects.recv() => break,
                _ = topology.recv() => break,
                _ = tick.tick() => {
                    let sent = Instant::now();
                    if heartbeat(&client, timeout).await {
                        cache.link_proven(link, sent);
                    }
                }
            }
        }
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
