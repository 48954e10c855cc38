//! Wiring: configuration → telemetry → store → services → routers → listeners.
//!
//! [`Application::build`] binds its own ports (port 0 in tests) so callers can learn the real
//! addresses before serving; [`Application::run_until`] serves until a future resolves, which
//! is how tests stop an instance and how `main` ties it to SIGTERM/SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::http::{self, AppState, BackendAccess, CookieSettings, CsrfPolicy, HttpSettings, RateLimitState};
use crate::limits::{Limiters, TrustedProxies};
use crate::service::{AdminService, BackendService, LoginGuard, LoginProtection, SessionService, UserService};
use crate::session::{SessionPolicy, Timestamp};
use crate::store::cached::Cached;
use crate::store::instrumented::Instrumented;
use crate::store::memory::MemoryStore;
use crate::store::near_cache::NearCacheSettings;
use crate::store::redis::{RedisSettings, RedisStore};
use crate::store::Store;
use crate::telemetry::http::Observe;
use crate::telemetry::metrics::Metrics;
use crate::tokens::{AccessTokens, TokenSettings};
use crate::users::{BackendKeys, DeviceTokens, Passwords};

/// How often expired sessions' bookkeeping is trimmed.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// A built, bound, not yet serving instance.
pub struct Application {
    listener: TcpListener,
    admin_listener: TcpListener,
    router: axum::Router,
    admin_router: axum::Router,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    limiters: Limiters,
    tokens: Arc<AccessTokens>,
    /// Installed at build, so a `SIGHUP` sent while the instance starts reloads keys rather
    /// than ending the process.
    hangup: Option<Hangup>,
    ready: Arc<AtomicBool>,
    config: Config,
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

impl Application {
    /// Connect the store, build the services and bind both listeners.
    ///
    /// # Errors
    /// When a listener cannot be bound or the configuration is unusable.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        if !config.cookie_secure {
            tracing::warn!(
                "SESSIOND_COOKIE_SECURE=false: the session cookie is sent over plain HTTP and has no __Host- prefix; \
                 for local development only"
            );
        }
        let store = build_store(&config, &metrics)?;
        let passwords = Arc::new(Passwords::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            config.effective_hash_concurrency(),
            usize::from(config.hash_queue),
            config.hash_flood_share,
            metrics.clone(),
        )?);
        let limiters = Limiters::new(
            config.rate_limit_ip,
            config.rate_limit_login_ip,
            config.rate_limit_login_account,
            config.rate_limit_register_ip,
        );
        let devices = match &config.device_token_key {
            Some(key) => DeviceTokens::new(key.as_bytes(), config.device_token_ttl),
            None => {
                if config.redis_url.is_some() {
                    tracing::warn!(
                        "SESSIOND_DEVICE_TOKEN_KEY is not set: device tokens hold on this instance only; \
                         set the same key on every instance"
                    );
                }
                DeviceTokens::random(config.device_token_ttl).context("drawing the device-token key")?
            }
        };
        let protection = LoginProtection {
            store: store.clone(),
            passwords: passwords.clone(),
            metrics: metrics.clone(),
            account: limiters.login_account.clone(),
            guard: LoginGuard::new(config.login_failures, config.login_failure_window),
            devices: Arc::new(devices),
        };
        let policy = SessionPolicy {
            idle_timeout: config.idle_timeout,
            absolute_timeout: config.absolute_timeout,
            max_sessions_per_user: config.max_sessions_per_user,
        };
        if config.jwt_keys_dir.is_none() {
            tracing::warn!(
                "SESSIOND_JWT_KEYS_DIR is not set: access tokens are signed with a key drawn at start-up; \
                 they die with the process and other instances cannot verify them through their own JWKS"
            );
        }
        let tokens = Arc::new(
            AccessTokens::new(TokenSettings {
                issuer: config.jwt_issuer.clone(),
                audience: config.jwt_audience.clone(),
                ttl: config.jwt_ttl,
                keys_dir: config.jwt_keys_dir.clone(),
            })
            .map_err(anyhow::Error::msg)
            .context("SESSIOND_JWT_KEYS_DIR")?,
        );
        let ready = Arc::new(AtomicBool::new(true));
        let sessions = SessionService::new(store.clone(), policy, metrics.clone(), protection.clone());
        let state = Arc::new(AppState {
            backend_sessions: BackendService::new(store.clone(), policy, metrics.clone(), sessions.clone()),
            sessions,
            users: UserService::new(
                store.clone(),
                passwords,
                usize::from(config.password_min_length),
                metrics.clone(),
                protection,
                policy,
            ),
            admin: AdminService::new(store.clone(), metrics.clone()),
            tokens: tokens.clone(),
            backend: BackendAccess {
                keys: BackendKeys::new(config.backend_keys.clone()),
                limiter: Arc::new(crate::limits::KeyedLimiter::new("backend_key", config.rate_limit_backend)),
                metrics: metrics.clone(),
            },
            cookie: Arc::new(CookieSettings::new(
                &config.cookie_name,
                config.cookie_secure,
                config.cookie_samesite,
                config.device_token_ttl,
            )),
            csrf: CsrfPolicy::new(
                config.allowed_origins.iter().chain(&config.cors_origins).cloned().collect(),
                metrics.clone(),
            ),
            ready: ready.clone(),
        });
        let settings = HttpSettings {
            request_timeout: config.request_timeout,
            cors_origins: config.cors_origins.clone(),
            observe: Observe { metrics: metrics.clone(), tracing_enabled: crate::telemetry::tracing_enabled() },
            rate_limit: RateLimitState {
                limiters: limiters.clone(),
                proxies: Arc::new(TrustedProxies::new(config.trusted_proxies.clone())),
                metrics: metrics.clone(),
            },
        };
        let admin_router = http::admin_router(state.clone(), metrics.clone());
        let router = http::router(state, &settings);
        let listener =
            listen(config.listen).with_context(|| format!("cannot listen on {} (SESSIOND_LISTEN)", config.listen))?;
        let admin_listener = listen(config.admin_listen)
            .with_context(|| format!("cannot listen on {} (SESSIOND_ADMIN_LISTEN)", config.admin_listen))?;
        #[cfg(unix)]
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        #[cfg(not(unix))]
        let hangup = None;
        Ok(Self {
            listener,
            admin_listener,
            router,
            admin_router,
            store,
            metrics,
            limiters,
            tokens,
            hangup,
            ready,
            config,
        })
    }

    /// The bound public address (the real port when configured with port 0).
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound admin address (`/metrics`, `/healthz`, `/readyz`).
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serve until SIGTERM or SIGINT, then shut down gracefully.
    ///
    /// # Errors
    /// When the listeners have no local address.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serve until `stop` resolves: `/readyz` turns 503, serving continues for the drain
    /// delay with `Connection: close` on every response (so proxies retire their pooled
    /// connections), the connections already queued are accepted, both listeners close, and
    /// in-flight requests get the shutdown timeout to finish (see [`http::serve`]).
    ///
    /// # Errors
    /// When the listeners have no local address.
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            listener,
            admin_listener,
            router,
            admin_router,
            store,
            metrics,
            limiters,
            tokens,
            hangup,
            ready,
            config,
        } = self;
        // Connections that arrive meanwhile wait in the listen backlog: the port is bound, so
        // nobody is refused, and nobody is served a 503 for a store that is a moment away.
        if !store_answers_within(&*store, STORE_WAIT_AT_START).await {
            tracing::warn!(
                waited = ?STORE_WAIT_AT_START,
                "the store does not answer yet; serving anyway: requests that need it get 503 until it does"
            );
        }
        tracing::info!(
            listen = %listener.local_addr()?,
            admin = %admin_listener.local_addr()?,
            store = if config.redis_url.is_some() { "redis" } else { "memory" },
            "sessiond serving"
        );
        let monitor = tokio::spawn(monitor_store(store, metrics, config.active_sessions_refresh));
        let pruner = tokio::spawn(prune_limiters(limiters));
        let keys = tokio::spawn(reload_keys(tokens, hangup));
        let drain = config.shutdown_drain_delay;
        let (closing, closed) = watch::channel(false);
        let serving = ready.clone();
        tokio::spawn(async move {
            stop.await;
            ready.store(false, Ordering::Release);
            tracing::info!(?drain, "shutdown requested; readiness withdrawn");
            tokio::time::sleep(drain).await;
            let _ = closing.send(true);
        });
        let settings = http::ServeSettings {
            header_read_timeout: config.header_read_timeout,
            keepalive_timeout: config.keepalive_timeout,
            grace: config.shutdown_timeout,
        };
        tokio::join!(
            http::serve(listener, router, settings, serving.clone(), until_closed(closed.clone())),
            http::serve(admin_listener, admin_router, settings, serving, until_closed(closed)),
        );
        monitor.abort();
        pruner.abort();
        keys.abort();
        tracing::info!("sessiond stopped");
        Ok(())
    }
}

/// Connections the kernel may hold completed for a listener before it is accepted (capped by
/// `net.core.somaxconn`): room for a burst of reconnects, such as every client of a restarted
/// proxy at once, where the usual 1024 would drop some.
const LISTEN_BACKLOG: u32 = 4096;

/// Bind `addr` (`SO_REUSEADDR`, as `TcpListener::bind`) with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How long start-up waits for the store to answer before serving anyway.
const STORE_WAIT_AT_START: Duration = Duration::from_secs(2);

/// Whether the store answers a ping within `within` (polled every 10 ms).
async fn store_answers_within(store: &dyn Store, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if store.ping().await.is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn until_closed(mut closed: watch::Receiver<bool>) {
    let _ = closed.wait_for(|closed| *closed).await;
}

/// How long after a connection last proved (by heartbeat) that invalidations reach this
/// instance the validation cache may still answer: the bound on how late a revocation made on
/// another instance can be seen here when a connection is cut or hung.
const CACHE_STALENESS: Duration = Duration::from_millis(500);

/// The configured store, instrumented (and, on Redis, behind the validation cache).
///
/// # Errors
/// When the Redis URL cannot be used.
pub fn build_store(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.redis_url {
        Some(url) => {
            let settings = RedisSettings {
                url: url.clone(),
                username: config.redis_username.clone(),
                password: config.redis_password.clone(),
                timeout: config.redis_timeout,
                pool_size: usize::from(config.redis_pool_size),
                validation_pool_size: usize::from(config.redis_validation_pool_size),
                wait_replicas: config.effective_wait_replicas(),
                wait_timeout: config.redis_wait_timeout,
                near_cache: (!config.validation_cache_ttl.is_zero() && config.validation_cache_size > 0).then_some(
                    NearCacheSettings {
                        max_age: config.validation_cache_ttl,
                        capacity: config.validation_cache_size,
                        staleness: CACHE_STALENESS,
                    },
                ),
            };
            let redis = RedisStore::connect(&settings).context("SESSIOND_REDIS_URL")?;
            let cache = redis.near_cache();
            let store = instrumented(Arc::new(redis), "redis", metrics);
            match cache {
                Some(cache) => Arc::new(Cached::new(store, cache).with_metrics(metrics.clone())),
                None => store,
            }
        }
        None => {
            tracing::warn!(
                "SESSIOND_REDIS_URL is not set: using the in-memory store; sessions are neither shared \
                 between instances nor kept across restarts"
            );
            instrumented(Arc::new(MemoryStore::new()), "memory", metrics)
        }
    })
}

/// Every store call passes through [`Instrumented`] (unless compiled out for benchmarks).
fn instrumented(store: Arc<dyn Store>, system: &'static str, metrics: &Arc<Metrics>) -> Arc<dyn Store> {
    if cfg!(feature = "bench-no-instrumentation") {
        store
    } else {
        Arc::new(Instrumented::new(store, system, metrics.clone()))
    }
}

/// Keep the store-wide gauges fresh: `sessiond_redis_up` from a ping and the exact
/// `sessiond_sessions_active` from the store, every `every`; trim expired bookkeeping every
/// [`PRUNE_INTERVAL`]. Every instance computes the same count from the shared store.
async fn monitor_store(store: Arc<dyn Store>, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    loop {
        tick.tick().await;
        metrics.run_upkeep();
        let up = store.ping().await.is_ok();
        metrics.set_redis_up(up);
        if !up {
            continue;
        }
        let now = Timestamp::now();
        if last_prune.elapsed() >= PRUNE_INTERVAL {
            last_prune = Instant::now();
            if let Err(error) = store.prune_expired(now).await {
                tracing::debug!(%error, "pruning expired sessions failed; will retry");
            }
        }
        match store.count_active(now).await {
            Ok(count) => metrics.set_sessions_active(count),
            Err(error) => tracing::debug!(%error, "counting active sessions failed; will retry"),
        }
    }
}

/// How often rate-limiter state of quiet keys is dropped.
const LIMITER_PRUNE_INTERVAL: Duration = Duration::from_secs(10);

/// Bound limiter memory: forget keys whose quota is whole again, then shrink the maps.
async fn prune_limiters(limiters: Limiters) {
    let mut tick = tokio::time::interval(LIMITER_PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let limiters = limiters.clone();
        // Pruning walks whole maps: keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || limiters.prune()).await;
    }
}

/// Read the access-token key directory again every [`crate::tokens::RELOAD_INTERVAL`] and on
/// `SIGHUP`, so a rotation needs no restart.
#[cfg_attr(not(unix), allow(unused_mut, unused_variables))]
async fn reload_keys(tokens: Arc<AccessTokens>, mut hangup: Option<Hangup>) {
    let mut tick = tokio::time::interval(crate::tokens::RELOAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        {
            let hung_up = async {
                match hangup.as_mut() {
                    Some(signal) => drop(signal.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => {}
                () = hung_up => tracing::info!("SIGHUP received: reloading access-token keys"),
            }
        }
        #[cfg(not(unix))]
        tick.tick().await;
        let tokens = tokens.clone();
        let _ = tokio::task::spawn_blocking(move || tokens.reload()).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
