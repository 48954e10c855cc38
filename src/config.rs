//! One typed configuration, read once in `main` from flags and `SESSIOND_*` variables.
//!
//! Every option is both a flag and an environment variable so that the same binary runs from
//! a shell, a unit file or a container without a config file. A bad value stops the process
//! with a single line naming the variable: an operator reading a crash loop should not have
//! to guess which of twenty variables is wrong.

use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::limits::{Cidr, QuotaSpec};

/// The service's configuration. Field docs double as `--help` text.
#[derive(Clone, Parser)]
#[command(name = "sessiond", version, about = "A session service for API consumers, backed by Redis")]
pub struct Config {
    /// Address of the public API listener.
    #[arg(long, env = "SESSIOND_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`): never rate-limited,
    /// never part of the public router. Keep it off the public network.
    #[arg(long, env = "SESSIOND_ADMIN_LISTEN", default_value = "127.0.0.1:9464")]
    pub admin_listen: SocketAddr,

    /// How often the exact active-session count and the store's health are refreshed.
    #[arg(long, env = "SESSIOND_ACTIVE_SESSIONS_REFRESH", default_value = "5s", value_parser = parse_duration)]
    pub active_sessions_refresh: Duration,

    /// Redis URL: `redis://host:port[/db]` (one node; `rediss://` for TLS),
    /// `redis-cluster://host:port?node=host2:port2&node=…` (Cluster seed nodes), or
    /// `redis-sentinel://sentinel:26379?sentinelServiceName=mymaster&node=sentinel2:26379`
    /// (Sentinel; `rediss-…` variants for TLS). Unset: an in-memory store that is neither
    /// shared between instances nor persisted.
    #[arg(long, env = "SESSIOND_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis ACL user (overrides the URL's; for every mode).
    #[arg(long, env = "SESSIOND_REDIS_USERNAME")]
    pub redis_username: Option<String>,

    /// Redis password (overrides the URL's; for every mode). Prefer this to a password in the
    /// URL: it is never printed.
    #[arg(long, env = "SESSIOND_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Revocations and token rotations are acknowledged only after this many replicas have
    /// them (`WAIT`), so a failover cannot bring a logged-out session back. 0: no wait.
    /// Default: 1 with a `redis-sentinel://` URL (a Sentinel deployment exists to fail over),
    /// else 0.
    #[arg(long, env = "SESSIOND_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u8>,

    /// How long a revocation waits for replicas before answering 503.
    #[arg(long, env = "SESSIOND_REDIS_WAIT_TIMEOUT", default_value = "100ms", value_parser = parse_duration)]
    pub redis_wait_timeout: Duration,

    /// Per-command Redis timeout; a request whose store call exceeds it answers 503.
    #[arg(long, env = "SESSIOND_REDIS_TIMEOUT", default_value = "250ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Number of multiplexed Redis connections for logins, writes and scripts.
    #[arg(long, env = "SESSIOND_REDIS_POOL_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub redis_pool_size: u16,

    /// Multiplexed Redis connections (per node) that validations read with, apart from the
    /// pool above so that no script queues ahead of a validation. Few is better: concurrent
    /// validations sharing a connection reach Redis in batches, which costs Redis less than
    /// the same reads spread one by one over many connections (`docs/performance.md`).
    #[arg(long, env = "SESSIOND_REDIS_VALIDATION_POOL_SIZE", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub redis_validation_pool_size: u16,

    /// How long a validated session may be answered from this instance's memory after it was
    /// read from Redis. Redis client tracking evicts it as soon as it changes anywhere, so this
    /// is only a backstop; `0` turns the cache off (every validation reads Redis).
    #[arg(long, env = "SESSIOND_VALIDATION_CACHE_TTL", default_value = "10s", value_parser = parse_duration_or_zero)]
    pub validation_cache_ttl: Duration,

    /// Most sessions held in the validation cache (each costs well under 1 KiB).
    #[arg(long, env = "SESSIOND_VALIDATION_CACHE_SIZE", default_value_t = 10_000)]
    pub validation_cache_size: usize,

    /// Idle timeout: a session unused for this long expires (slides on use).
    #[arg(long, env = "SESSIOND_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Absolute timeout: a session expires this long after login, however busy it is.
    #[arg(long, env = "SESSIOND_ABSOLUTE_TIMEOUT", default_value = "12h", value_parser = parse_duration)]
    pub absolute_timeout: Duration,

    /// At most this many live sessions per user; the oldest is revoked past the cap (0: no cap).
    #[arg(long, env = "SESSIOND_MAX_SESSIONS_PER_USER", default_value_t = 50)]
    pub max_sessions_per_user: u32,

    /// Mark the session cookie `Secure` (only sent over HTTPS). Disable only for local HTTP.
    #[arg(long, env = "SESSIOND_COOKIE_SECURE", default_value_t = true, action = ArgAction::Set)]
    pub cookie_secure: bool,

    /// Name of the session cookie. With `SESSIOND_COOKIE_SECURE=true` it gets the `__Host-`
    /// prefix (`__Host-sid`), which browsers accept only from HTTPS, with `Path=/` and no
    /// `Domain`: a sibling subdomain cannot set or overwrite it.
    #[arg(long, env = "SESSIOND_COOKIE_NAME", default_value = "sid", value_parser = parse_cookie_name)]
    pub cookie_name: String,

    /// `SameSite` of the session cookie: `lax` (sent on top-level navigations from other
    /// sites, so links into the app keep the user signed in) or `strict`.
    #[arg(long, env = "SESSIOND_COOKIE_SAMESITE", value_enum, default_value_t = SameSite::Lax)]
    pub cookie_samesite: SameSite,

    /// Comma-separated origins (besides the service's own) whose cookie-authenticated
    /// state-changing requests are accepted; the CORS origins count too.
    #[arg(long, env = "SESSIOND_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub allowed_origins: Vec<String>,

    /// Comma-separated origins allowed to call the API from a browser with credentials.
    #[arg(long, env = "SESSIOND_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Minimum password length in characters (the maximum is 1024 bytes).
    #[arg(long, env = "SESSIOND_PASSWORD_MIN_LENGTH", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub password_min_length: u16,

    /// argon2id memory cost in KiB (OWASP minimum: 19456).
    #[arg(long, env = "SESSIOND_ARGON2_MEMORY_KIB", default_value_t = 19_456, value_parser = clap::value_parser!(u32).range(8..))]
    pub argon2_memory_kib: u32,

    /// argon2id iterations (OWASP minimum with 19 MiB: 2).
    #[arg(long, env = "SESSIOND_ARGON2_ITERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub argon2_iterations: u32,

    /// argon2id lanes.
    #[arg(long, env = "SESSIOND_ARGON2_PARALLELISM", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub argon2_parallelism: u32,

    /// Password hashes computed at once; the rest wait, so a login flood cannot take every
    /// thread from session validation. Default: one less than the number of CPUs (at least
    /// one), so that hashing never takes the last core from validations.
    #[arg(long, env = "SESSIOND_HASH_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub hash_concurrency: Option<u16>,

    /// A request (including reading its body) that takes longer is answered 408.
    #[arg(long, env = "SESSIOND_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// A client that has not sent its request headers within this time is disconnected: timed
    /// from accept, and from the first byte of each further request on a connection.
    #[arg(long, env = "SESSIOND_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A keep-alive connection idle this long between requests is closed. Keep it longer than
    /// the idle timeout of the proxy in front (nginx's upstream `keepalive_timeout`: 60s), so
    /// the proxy closes idle connections, never sessiond.
    #[arg(long, env = "SESSIOND_KEEPALIVE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,

    /// On SIGTERM/SIGINT, keep serving (with `/readyz` at 503) this long so load balancers
    /// stop routing here before the listener closes.
    #[arg(long, env = "SESSIOND_SHUTDOWN_DRAIN_DELAY", default_value = "0s", value_parser = parse_duration_or_zero)]
    pub shutdown_drain_delay: Duration,

    /// After the listener closes, in-flight requests get this long to finish.
    #[arg(long, env = "SESSIOND_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Requests per client address on every public route (`0` disables).
    #[arg(long, env = "SESSIOND_RATE_LIMIT_IP", default_value = "20/s burst 40")]
    pub rate_limit_ip: QuotaSpec,

    /// Login attempts per client address.
    #[arg(long, env = "SESSIOND_RATE_LIMIT_LOGIN_IP", default_value = "1/s burst 10")]
    pub rate_limit_login_ip: QuotaSpec,

    /// Login attempts per account (normalised username), per instance.
    #[arg(long, env = "SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", default_value = "10/m burst 5")]
    pub rate_limit_login_account: QuotaSpec,

    /// Registrations per client address.
    #[arg(long, env = "SESSIOND_RATE_LIMIT_REGISTER_IP", default_value = "10/m burst 5")]
    pub rate_limit_register_ip: QuotaSpec,

    /// Comma-separated CIDR blocks of proxies whose `X-Forwarded-For`/`Forwarded` is honoured.
    #[arg(long, env = "SESSIOND_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,

    /// Failed logins per account, across all instances, before further attempts get 429
    /// (`0` disables the shared guard).
    #[arg(long, env = "SESSIOND_LOGIN_FAILURES", default_value_t = 10)]
    pub login_failures: u32,

    /// Window over which `SESSIOND_LOGIN_FAILURES` failures are allowed; the guard decays
    /// continuously (one attempt back every window/failures).
    #[arg(long, env = "SESSIOND_LOGIN_FAILURE_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub login_failure_window: Duration,

    /// Logins allowed to wait for a password-hash slot; beyond that they get 503 at once
    /// instead of queueing until clients time out.
    #[arg(long, env = "SESSIOND_HASH_QUEUE", default_value_t = 32)]
    pub hash_queue: u16,

    /// Share of the time (1-100 %) each hashing thread may hash during a password-guessing
    /// flood: while the hashing pool refuses logins and most verifications fail. It keeps a
    /// flood from holding a CPU busy (which slows validations even at idle priority). A
    /// hash is followed by at most a second of rest, so with ~20 ms hashes shares below 2 %
    /// act as 2 %; `100` hashes flat out whatever the traffic.
    #[arg(long, env = "SESSIOND_HASH_FLOOD_SHARE", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub hash_flood_share: u8,

    /// Secret that signs device tokens (at least 32 characters). Instances sharing a store
    /// must share it; unset, a random one is drawn at start and tokens hold on this process
    /// only.
    #[arg(long, env = "SESSIOND_DEVICE_TOKEN_KEY", hide_env_values = true)]
    pub device_token_key: Option<String>,

    /// How long a device token (proof that a client logged in as a user before, which keeps
    /// it a login allowance of its own) stays valid; renewed at every login.
    #[arg(long, env = "SESSIOND_DEVICE_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    pub device_token_ttl: Duration,

    /// Directory of Ed25519 PKCS#8 PEM keys that sign access tokens (the newest by file name
    /// signs; all are published at `/.well-known/jwks.json`; read again every 10 s and on
    /// SIGHUP). Unset: a key drawn at start-up, so tokens die with the process.
    #[arg(long, env = "SESSIOND_JWT_KEYS_DIR")]
    pub jwt_keys_dir: Option<std::path::PathBuf>,

    /// `iss` of access tokens.
    #[arg(long, env = "SESSIOND_JWT_ISSUER", default_value = "sessiond")]
    pub jwt_issuer: String,

    /// `aud` of access tokens.
    #[arg(long, env = "SESSIOND_JWT_AUDIENCE", default_value = "sessiond")]
    pub jwt_audience: String,

    /// Lifetime of an access token (never beyond its session's own deadline). A token outlives
    /// a logout until it expires: keep this short.
    #[arg(long, env = "SESSIOND_JWT_TTL", default_value = "300s", value_parser = parse_duration)]
    pub jwt_ttl: Duration,

    /// API keys of trusted backends (introspection, backend sessions), as `name:sha256hex` entries separated by
    /// commas: only hashes, never the keys (`sessiond admin api-key new NAME` draws one).
    #[arg(long, env = "SESSIOND_BACKEND_KEYS", value_delimiter = ',')]
    pub backend_keys: Vec<crate::users::BackendKey>,

    /// Requests per backend API key (`0` disables).
    #[arg(long, env = "SESSIOND_RATE_LIMIT_BACKEND", default_value = "1000/s burst 2000")]
    pub rate_limit_backend: QuotaSpec,

    /// File the audit trail (JSON, one event per line) is appended to; unset: standard error.
    #[arg(long, env = "SESSIOND_AUDIT_LOG")]
    pub audit_log: Option<std::path::PathBuf>,

    /// Log format.
    #[arg(long, env = "SESSIOND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The `SameSite` attribute of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SameSite {
    /// Sent with top-level navigations from other sites, never with their sub-requests.
    Lax,
    /// Never sent with a request another site started.
    Strict,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for collectors.
    Json,
}

/// Operator subcommands; without one, `sessiond` serves.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Administer users in the configured store.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print the OpenAPI 3.1 document of the API (as served at `/openapi.json`).
    Openapi,
}

/// `sessiond admin …`
#[derive(Clone, Debug, Subcommand)]
pub enum AdminCommand {
    /// Add a role to a user (idempotent).
    GrantRole { username: String, role: String },
    /// Remove a role from a user (idempotent).
    RevokeRole { username: String, role: String },
    /// Disable a user: every session ends, and login is refused until enabled.
    Disable { username: String },
    /// Enable a disabled user again.
    Enable { username: String },
    /// Write a new access-token signing key into DIR (it signs from the next reload on).
    JwtKeygen { dir: std::path::PathBuf },
    /// Backend API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
}

/// `sessiond admin api-key …`
#[derive(Clone, Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Draw a key: prints the key (once) on the first line and, on the second, the entry to
    /// add to SESSIOND_BACKEND_KEYS.
    New { name: String },
}

/// A configuration that cannot be used: print it and leave with this exit code.
#[must_use]
pub struct ConfigExit {
    pub message: String,
    code: u8,
}

impl ConfigExit {
    /// Print the message where it belongs and return the process exit code.
    pub fn report(self) -> ExitCode {
        if self.code == 0 {
            print!("{}", self.message);
        } else {
            eprintln!("{}", self.message);
        }
        ExitCode::from(self.code)
    }
}

impl Config {
    /// Parse flags and environment, then check the options against each other.
    pub fn from_env_and_args() -> Result<Self, ConfigExit> {
        Self::try_from_args(std::env::args_os())
    }

    /// Like [`from_env_and_args`](Self::from_env_and_args) with explicit arguments (tests).
    pub fn try_from_args<I, T>(args: I) -> Result<Self, ConfigExit>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = Self::try_parse_from(args).map_err(one_line)?;
        config.validate().map_err(|message| ConfigExit { message, code: 2 })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.idle_timeout > self.absolute_timeout {
            return Err(format!(
                "error: SESSIOND_IDLE_TIMEOUT ({}) must not exceed SESSIOND_ABSOLUTE_TIMEOUT ({})",
                humantime::format_duration(self.idle_timeout),
                humantime::format_duration(self.absolute_timeout)
            ));
        }
        // Checked here rather than by a value parser, whose error would quote the value.
        if self.device_token_key.as_ref().is_some_and(|key| key.chars().count() < 32) {
            return Err("error: SESSIOND_DEVICE_TOKEN_KEY must be at least 32 characters".to_owned());
        }
        if let Some(url) = &self.redis_url {
            if fred::types::config::Config::from_url(url).is_err() {
                return Err("error: SESSIOND_REDIS_URL is not a valid Redis URL".to_owned());
            }
        }
        Ok(())
    }

    /// Replicas a revocation waits for: as configured, else 1 behind Sentinel and 0 otherwise.
    #[must_use]
    pub fn effective_wait_replicas(&self) -> u8 {
        self.redis_wait_replicas.unwrap_or_else(|| {
            let sentinel = self.redis_url.as_deref().is_some_and(|url| {
                let scheme = url.split("://").next().unwrap_or_default().to_ascii_lowercase();
                scheme == "redis-sentinel" || scheme == "rediss-sentinel"
            });
            u8::from(sentinel)
        })
    }

    /// Concurrent password hashes allowed.
    #[must_use]
    pub fn effective_hash_concurrency(&self) -> usize {
        self.hash_concurrency.map_or_else(
            || std::thread::available_parallelism().map_or(1, |cpus| cpus.get().saturating_sub(1).max(1)),
            usize::from,
        )
    }
}

/// The Redis URL may carry a password: never print it.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("redis_timeout", &self.redis_timeout)
            .field("redis_pool_size", &self.redis_pool_size)
            .field("redis_validation_pool_size", &self.redis_validation_pool_size)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_timeout", &self.absolute_timeout)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .field("cookie_secure", &self.cookie_secure)
            .field("cookie_name", &self.cookie_name)
            .field("cors_origins", &self.cors_origins)
            .finish_non_exhaustive()
    }
}

/// Turn clap's multi-line error into one line that names the environment variable.
fn one_line(error: clap::Error) -> ConfigExit {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            return ConfigExit { message: error.render().to_string(), code: 0 }
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return ConfigExit { message: error.render().to_string(), code: 2 }
        }
        _ => {}
    }
    let arg = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.clone()),
        _ => None,
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => Some(value.clone()),
        _ => None,
    };
    let name = arg.as_deref().map(|arg| {
        let long = arg.trim_start_matches('-').split([' ', '=']).next().unwrap_or_default();
        Config::command()
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map_or_else(|| arg.to_owned(), |env| format!("{} ({arg})", env.to_string_lossy()))
    });
    let reason = match (error.source(), error.get(ContextKind::ValidValue)) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::Strings(valid))) => format!("expected one of {}", valid.join(", ")),
        (None, _) => first_line(&error.render().to_string()),
    };
    let message = match (name, value) {
        (Some(name), Some(value)) => format!("error: {name}: invalid value {value:?}: {reason}"),
        (Some(name), None) => format!("error: {name}: {reason}"),
        _ => first_line(&error.render().to_string()),
    };
    ConfigExit { message, code: 2 }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

use std::error::Error as _;

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(text)?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|_| "expected a duration such as 250ms, 90s, 30m or 12h".to_owned())
}

fn parse_cookie_name(text: &str) -> Result<String, String> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("__host-") || lower.starts_with("__secure-") {
        return Err("give the name without a __Host- or __Secure- prefix: __Host- is added when the cookie is Secure"
            .to_owned());
    }
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(text.to_owned())
    } else {
        Err("expected 1-64 cookie-name characters (RFC 6265 token)".to_owned())
    }
}

fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim().trim_end_matches('/');
    let ok = (text.starts_with("http://") || text.starts_with("https://"))
        && !text.contains(['*', ' ', ','])
        && http::HeaderValue::from_str(text).is_ok()
        && text.split("://").nth(1).is_some_and(|host| !host.is_empty() && !host.contains('/'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err("expected an origin such as https://app.example.com (no wildcard, no path)".to_owned())
    }
}
