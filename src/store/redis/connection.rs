//! Connections and topology: one URL decides standalone, Sentinel or Cluster; every pool shares
//! the same timeouts, reconnect policy and hung-socket detection, so a Redis outage is a fast
//! 503 and recovery needs no restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{ReconnectError, UnresponsiveConfig};

use super::{tracking, RedisStore, Validations};
use crate::store::near_cache::{NearCache, NearCacheSettings};
use crate::store::StoreError;

/// How long after start a request that finds no connection yet waits for the first one
/// (within its command timeout) instead of failing at once: the service takes requests as
/// soon as its port is bound, and the first connections take a few milliseconds. After this,
/// or once connected, a missing connection is an outage and fails fast.
const STARTUP_GRACE: Duration = Duration::from_secs(2);

/// Connection settings taken from the configuration.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://`/`rediss://` (one node), `redis-cluster://` (seed nodes as `?node=host:port`),
    /// or `redis-sentinel://` (sentinels, `?sentinelServiceName=…`).
    pub url: String,
    /// ACL user, overriding the URL's.
    pub username: Option<String>,
    /// Password, overriding the URL's.
    pub password: Option<String>,
    /// Per-command timeout.
    pub timeout: Duration,
    /// Connections in the pool (per node in a Cluster).
    pub pool_size: usize,
    /// Connections validations read with (per node), apart from the pool.
    pub validation_pool_size: usize,
    /// Revocations and rotations wait until this many replicas acknowledged them (0: no wait).
    pub wait_replicas: u8,
    /// How long they wait for that acknowledgement.
    pub wait_timeout: Duration,
    /// Keep recently validated sessions in process, coherent through Redis client tracking
    /// (`None`: every validation reads Redis).
    pub near_cache: Option<NearCacheSettings>,
}

impl RedisSettings {
    /// Defaults for everything but the URL.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password: None,
            timeout: Duration::from_millis(250),
            pool_size: 4,
            validation_pool_size: 1,
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(100),
            near_cache: None,
        }
    }
}

/// The URL and password may carry secrets: never print them.
impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .field("validation_pool_size", &self.validation_pool_size)
            .field("wait_replicas", &self.wait_replicas)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Build the client pool and start connecting in the background. Returns at once: the
    /// service starts (and answers 503) while Redis is unreachable.
    ///
    /// # Errors
    /// When the URL cannot be parsed.
    pub fn connect(settings: &RedisSettings) -> anyhow::Result<Self> {
        let mut config = Config::from_url(&settings.url)?;
        // Apply the reconnect policy to the first connection too, so a missing Redis at start
        // is an outage to recover from, not a crash.
        config.fail_fast = false;
        if settings.username.is_some() {
            config.username.clone_from(&settings.username);
        }
        if settings.password.is_some() {
            config.password.clone_from(&settings.password);
        }
        let timeout = settings.timeout;
        let mut builder = configured(Builder::from_config(config.clone()), timeout);
        let pool = builder.build_pool(settings.pool_size.max(1))?;
        drop(pool.connect_pool());
        let background = builder.build()?;
        drop(background.connect());
        let validation_pool_size = settings.validation_pool_size.max(1);
        let validations = match settings.near_cache {
            Some(cache_settings) => {
                // Invalidation pushes share the connection with replies only in RESP3.
                config.version = fred::types::RespVersion::RESP3;
                let tracked = configured(Builder::from_config(config), timeout).build_pool(validation_pool_size)?;
                let cache = Arc::new(NearCache::new(cache_settings, tracked.size()));
                let tracking = tracking::Tracking::start(&tracked, &cache, timeout);
                drop(tracked.connect_pool());
                Validations { pool: tracked, cache: Some(cache), _tracking: Some(tracking) }
            }
            None => {
                let reads = builder.build_pool(validation_pool_size)?;
                drop(reads.connect_pool());
                Validations { pool: reads, cache: None, _tracking: None }
            }
        };
        let durable = if settings.wait_replicas > 0 {
            // WAIT's own timeout comes on top of the command timeout.
            builder.with_performance_config(|p| p.default_command_timeout = timeout + settings.wait_timeout);
            let pool = builder.build_exclusive_pool(settings.pool_size.max(1))?;
            let connecting = pool.clone();
            tokio::spawn(async move { drop(connecting.connect_pool().await) });
            Some(pool)
        } else {
            None
        };
        let starting = Arc::new(AtomicBool::new(true));
        tokio::spawn(end_of_startup(pool.clone(), validations.pool.clone(), starting.clone()));
        tokio::spawn(super::memory_policy::check(pool.clone(), timeout));
        let clock = super::clock::follow(pool.clone(), timeout);
        Ok(Self {
            pool,
            background,
            durable,
            wait_replicas: settings.wait_replicas,
            wait_timeout: settings.wait_timeout,
            timeout,
            scripts: super::scripts::Scripts::new(),
            validations,
            starting,
            _clock: clock,
        })
    }

    /// Wait until at least one connection is up (for tools and tests), bounded by `within`.
    ///
    /// # Errors
    /// When Redis is not reachable in time.
    pub async fn wait_connected(&self, within: Duration) -> Result<(), StoreError> {
        let both = async {
            self.pool.wait_for_connect().await?;
            self.background.wait_for_connect().await?;
            self.validations.pool.wait_for_connect().await
        };
        match tokio::time::timeout(within, both).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(classify("connect", &error)),
            Err(_) => Err(StoreError::Timeout { op: "connect" }),
        }
    }

    /// A connected client of the main pool, or a fast error: a command must not wait in a
    /// queue for a reconnect while the caller holds an HTTP request open.
    pub(super) async fn client(&self, op: &'static str) -> Result<&Client, StoreError> {
        self.connected(&self.pool, op).await
    }

    /// The client validations read with (tracked when the cache is on).
    pub(super) async fn validation_client(&self, op: &'static str) -> Result<&Client, StoreError> {
        self.connected(&self.validations.pool, op).await
    }

    pub(super) fn background_client(&self, op: &'static str) -> Result<&Client, StoreError> {
        ready(&self.background, op)
    }

    /// A connected client of `pool`. Only while the instance is starting does a request wait
    /// (within the command timeout) for the first connection; otherwise no connection is an
    /// outage and the answer is an immediate error.
    async fn connected<'a>(&self, pool: &'a Pool, op: &'static str) -> Result<&'a Client, StoreError> {
        let client = pool.next_connected();
        if client.is_connected() || !self.starting.load(Ordering::Acquire) {
            return ready(client, op);
        }
        let _ = tokio::time::timeout(self.timeout, pool.wait_for_connect()).await;
        ready(pool.next_connected(), op)
    }

    /// Run one command future under the timeout (fred's own timeout is the primary one; this
    /// outer bound also covers anything fred might wait on before sending).
    pub(super) async fn bounded<T>(
        &self,
        op: &'static str,
        future: impl std::future::Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout + Duration::from_millis(50), future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(op, &error)),
            Err(_) => Err(StoreError::Timeout { op }),
        }
    }
}

/// `client` if it is connected, or a fast error.
fn ready<'a>(client: &'a Client, op: &'static str) -> Result<&'a Client, StoreError> {
    if client.is_connected() {
        Ok(client)
    } else {
        Err(StoreError::Connection { op, detail: "not connected".to_owned() })
    }
}

/// Start-up ends when the pools first connect, or after [`STARTUP_GRACE`] if Redis is not there.
async fn end_of_startup(pool: Pool, validations: Pool, starting: Arc<AtomicBool>) {
    let connected = async {
        let _ = pool.wait_for_connect().await;
        let _ = validations.wait_for_connect().await;
    };
    let _ = tokio::time::timeout(STARTUP_GRACE, connected).await;
    starting.store(false, Ordering::Release);
}

/// Timeouts, reconnection and socket settings shared by every pool.
fn configured(mut builder: Builder, timeout: Duration) -> Builder {
    builder
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(1);
            c.internal_command_timeout = Duration::from_secs(1).max(timeout);
            // Room to follow a redirection or re-send after a dropped connection.
            c.max_command_attempts = 3;
            c.max_command_buffer_len = 10_000;
            c.unresponsive =
                UnresponsiveConfig { max_timeout: Some(Duration::from_secs(2)), interval: Duration::from_millis(500) };
            c.tcp = TcpConfig {
                nodelay: Some(false),
                keepalive: Some(fred::socket2::TcpKeepalive::new().with_time(Duration::from_secs(30))),
                ..TcpConfig::default()
            };
            c.reconnect_errors = vec![
                ReconnectError::ClusterDown,
                ReconnectError::Loading,
                ReconnectError::MasterDown,
                ReconnectError::ReadOnly,
            ];
        })
        .with_performance_config(|p| p.default_command_timeout = timeout)
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 1000, 2));
    builder
}

pub(super) fn classify(op: &'static str, error: &fred::error::Error) -> StoreError {
    match error.kind() {
        ErrorKind::Timeout => StoreError::Timeout { op },
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Backpressure => {
            StoreError::Connection { op, detail: error.details().to_owned() }
        }
        _ => StoreError::other(op, error.details().to_owned()),
    }
}
