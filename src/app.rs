//! Wiring: configuration → store → services → router → listener.
//!
//! [`Application::build`] binds its own port (port 0 in tests) so callers can learn the real
//! address before serving; [`Application::run_until`] serves until a future resolves, which is
//! how tests stop an instance and how `main` ties it to SIGTERM/SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{self, AppState, CookieSettings, HttpSettings};
use crate::session::{SessionPolicy, SessionService, Timestamp};
use crate::store::instrumented::Instrumented;
use crate::store::memory::MemoryStore;
use crate::store::redis::{RedisSettings, RedisStore};
use crate::store::Store;
use crate::users::{Passwords, UserService};

/// How often expired sessions' bookkeeping is trimmed.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// A built, bound, not yet serving instance.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    store: Arc<dyn Store>,
    ready: Arc<AtomicBool>,
    config: Config,
}

impl Application {
    /// Connect the store, build the services and bind the listener.
    ///
    /// # Errors
    /// When the listener cannot be bound or the configuration is unusable.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = build_store(&config)?;
        let passwords = Arc::new(Passwords::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            config.effective_hash_concurrency(),
        )?);
        let policy = SessionPolicy {
            idle_timeout: config.idle_timeout,
            absolute_timeout: config.absolute_timeout,
            max_sessions_per_user: config.max_sessions_per_user,
        };
        let ready = Arc::new(AtomicBool::new(true));
        let state = AppState {
            sessions: SessionService::new(store.clone(), passwords.clone(), policy),
            users: UserService::new(
                store.clone(),
                passwords,
                usize::from(config.password_min_length),
            ),
            cookie: Arc::new(CookieSettings {
                name: config.cookie_name.clone(),
                secure: config.cookie_secure,
            }),
            ready: ready.clone(),
        };
        let settings = HttpSettings {
            request_timeout: config.request_timeout,
            cors_origins: config.cors_origins.clone(),
        };
        let router = http::router(state, &settings);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (SESSIOND_LISTEN)", config.listen))?;
        Ok(Self {
            listener,
            router,
            store,
            ready,
            config,
        })
    }

    /// The bound address (the real port when configured with port 0).
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until SIGTERM or SIGINT, then shut down gracefully.
    ///
    /// # Errors
    /// None today; the signature leaves room for start-up failures.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serve until `stop` resolves: `/readyz` turns 503, serving continues for the drain
    /// delay, the listener closes, and in-flight requests get the shutdown timeout to finish.
    ///
    /// # Errors
    /// None today; the signature leaves room for start-up failures.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            store,
            ready,
            config,
        } = self;
        tracing::info!(
            listen = %listener.local_addr()?,
            store = if config.redis_url.is_some() { "redis" } else { "memory" },
            "sessiond serving"
        );
        let pruner = tokio::spawn(prune_periodically(store));
        let drain = config.shutdown_drain_delay;
        let shutdown = async move {
            stop.await;
            ready.store(false, Ordering::Release);
            tracing::info!(?drain, "shutdown requested; readiness withdrawn");
            tokio::time::sleep(drain).await;
        };
        http::serve(
            listener,
            router,
            config.header_read_timeout,
            shutdown,
            config.shutdown_timeout,
        )
        .await;
        pruner.abort();
        tracing::info!("sessiond stopped");
        Ok(())
    }
}

/// The configured store, instrumented.
///
/// # Errors
/// When the Redis URL cannot be used.
pub fn build_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.redis_url {
        Some(url) => {
            let settings = RedisSettings {
                url: url.clone(),
                timeout: config.redis_timeout,
                pool_size: usize::from(config.redis_pool_size),
            };
            let redis = RedisStore::connect(&settings).context("SESSIOND_REDIS_URL")?;
            Arc::new(Instrumented::new(Arc::new(redis), "redis"))
        }
        None => {
            tracing::warn!(
                "SESSIOND_REDIS_URL is not set: using the in-memory store; sessions are neither shared \
                 between instances nor kept across restarts"
            );
            Arc::new(Instrumented::new(Arc::new(MemoryStore::new()), "memory"))
        }
    })
}

async fn prune_periodically(store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = store.prune_expired(Timestamp::now()).await {
            tracing::debug!(%error, "pruning expired sessions failed; will retry");
        }
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
