//! The Redis backend (fred).
//!
//! # Key schema
//!
//! Every key of one user lives under the user's shard hash tag `{xyz}` (three hex digits, see
//! [`Shard`]), so each operation below is one Lua script on one Cluster slot:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `sessiond:{xyz}:user:<username>` | hash | `id`, `name`, `phc` (argon2id), `roles` (comma list), `created` | never |
//! | `sessiond:{xyz}:sess:<sha256(token)[..16], base64url>` | hash | `s`ession id, `u`ser, `c`reated (ms since the epoch); `l`ast seen, `i`dle deadline, `e`xpiry (ms after `c`); `ip` (IPv4 as a 32-bit integer); `d`evice label | at the earlier deadline (PEXPIRE) |
//! | `sessiond:{xyz}:user-sessions:<username>` | hash | session id → token digest | after the longest session |
//! | `sessiond:{xyz}:active:<0-3>` | sorted set | session id scored by its deadline (set chosen by the id's first byte) | members trimmed by `prune_expired` |
//!
//! `<username>` is the lower-cased username. The token never appears: only the first 128 bits
//! of its SHA-256 ([`TokenHash`]).
//! The active-session count is `ZCOUNT (now +inf` summed over the 4096 active sets (4 per
//! shard, so that each stays in Redis's compact encoding) — exact, with no hot key and no
//! keyspace scan.
//!
//! # Failure behaviour
//!
//! Commands time out after `SESSIOND_REDIS_TIMEOUT`; a command on a disconnected client fails
//! at once instead of queueing. The client follows Cluster `MOVED`/`ASK` redirections and may
//! re-send a command whose connection dropped, so every script is safe to run twice: a
//! create, rotation or user insert that finds its own earlier result reports success (the
//! failed-login guard may count one failure twice). The client reconnects with capped
//! exponential backoff, detects hung connections, and the process starts even when Redis is
//! down.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::ExclusivePool;
use fred::prelude::*;
use fred::types::config::{ReconnectError, UnresponsiveConfig};
use fred::types::Value;

use super::near_cache::{NearCache, NearCacheSettings};
use super::{GuardEvent, GuardRule, Lookup, SessionRecord, Slide, Store, StoreError, UserRecord};
use crate::session::{SessionId, Shard, Timestamp, TokenHash};

mod tracking;
use crate::users::UserKey;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// Sorted sets per shard counting live sessions (`ACTIVE_SETS` in `lua/prelude.lua`; a test
/// checks that both agree).
const ACTIVE_SETS: u8 = 4;

/// A Lua script with its SHA-1, loaded on first use (and again after a `SCRIPT FLUSH` or a
/// failover to a node that never saw it).
struct Script {
    lua: String,
    sha: String,
}

impl Script {
    fn new(body: &str, with_prelude: bool) -> Self {
        let lua = if with_prelude { format!("{PRELUDE}\n{body}") } else { body.to_owned() };
        let sha = fred::util::sha1_hash(&lua);
        Self { lua, sha }
    }
}

struct Scripts {
    create: Script,
    touch: Script,
    rotate: Script,
    revoke: Script,
    revoke_by_id: Script,
    revoke_all: Script,
    list: Script,
    insert_user: Script,
    set_role: Script,
    login_guard: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            create: Script::new(include_str!("lua/create.lua"), true),
            touch: Script::new(include_str!("lua/touch.lua"), true),
            rotate: Script::new(include_str!("lua/rotate.lua"), true),
            revoke: Script::new(include_str!("lua/revoke.lua"), true),
            revoke_by_id: Script::new(include_str!("lua/revoke_by_id.lua"), true),
            revoke_all: Script::new(include_str!("lua/revoke_all.lua"), true),
            list: Script::new(include_str!("lua/list.lua"), true),
            insert_user: Script::new(include_str!("lua/insert_user.lua"), false),
            set_role: Script::new(include_str!("lua/set_role.lua"), false),
            login_guard: Script::new(include_str!("lua/login_guard.lua"), false),
        }
    }
}

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
            .field("wait_replicas", &self.wait_replicas)
            .finish_non_exhaustive()
    }
}

/// Sessions and users in Redis.
pub struct RedisStore {
    pool: Pool,
    /// A connection of its own for the periodic bulk pipelines (the exact count, pruning:
    /// thousands of commands each), so that they never queue ahead of a request's command —
    /// least of all while a Cluster node is failing over and commands back up.
    background: Client,
    /// Connections of their own for writes that must reach replicas before they are
    /// acknowledged. `WAIT` counts the writes of the connection it is sent on and blocks that
    /// connection meanwhile, so each revocation takes a connection exclusively (or answers 503
    /// before sending anything) and validations never share one.
    durable: Option<ExclusivePool>,
    wait_replicas: u8,
    wait_timeout: Duration,
    timeout: Duration,
    scripts: Scripts,
    /// With the validation cache: the connections that validations use, with Redis client
    /// tracking on, and the cache they keep coherent.
    validations: Option<Validations>,
}

/// Validations get connections of their own when the cache is on: Redis then tracks only the
/// sessions that were validated (what the cache may hold). Tracking every connection would
/// also record every key any other command declares — each new session, index and shard
/// set — and the tracking table would grow with every login.
struct Validations {
    pool: Pool,
    cache: Arc<NearCache>,
    _tracking: tracking::Tracking,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// Key names (see the module docs).
mod keys {
    use super::{Shard, TokenHash, UserKey};

    pub fn prefix(shard: Shard) -> String {
        format!("sessiond:{{{:03x}}}:", shard.index())
    }
    pub fn user(user: &UserKey) -> String {
        format!("{}user:{}", prefix(user.shard()), user.as_str())
    }
    pub fn user_sessions(user: &UserKey) -> String {
        format!("{}user-sessions:{}", prefix(user.shard()), user.as_str())
    }
    pub fn session(hash: &TokenHash) -> String {
        format!("{}sess:{}", prefix(hash.shard()), hash.encoded())
    }
    /// The base name of the shard's active-session sets; the sets are `<base>:0` …
    /// (`ACTIVE_SETS` in `lua/prelude.lua`), chosen by the session id's first byte.
    pub fn active(shard: Shard) -> String {
        format!("{}active", prefix(shard))
    }
    /// Every active-session set of the shard.
    pub fn active_sets(shard: Shard) -> impl Iterator<Item = String> {
        let base = active(shard);
        (0..super::ACTIVE_SETS).map(move |n| format!("{base}:{n}"))
    }
    /// The guard is keyed by a digest, so attacker-chosen usernames are never stored verbatim.
    pub fn login_guard(user: &UserKey) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(user.as_str().as_bytes());
        let short = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
        format!("{}login-guard:{short}", prefix(user.shard()))
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
        let validations = match settings.near_cache {
            Some(cache_settings) => {
                // Invalidation pushes share the connection with replies only in RESP3.
                config.version = fred::types::RespVersion::RESP3;
                let tracked =
                    configured(Builder::from_config(config), timeout).build_pool(settings.pool_size.max(1))?;
                let cache = Arc::new(NearCache::new(cache_settings, tracked.size()));
                let tracking = tracking::Tracking::start(&tracked, &cache, timeout);
                drop(tracked.connect_pool());
                Some(Validations { pool: tracked, cache, _tracking: tracking })
            }
            None => None,
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
        Ok(Self {
            pool,
            background,
            durable,
            wait_replicas: settings.wait_replicas,
            wait_timeout: settings.wait_timeout,
            timeout,
            scripts: Scripts::new(),
            validations,
        })
    }

    /// The validation cache, when enabled: put [`Cached`](crate::store::cached::Cached) in
    /// front of this store with it.
    #[must_use]
    pub fn near_cache(&self) -> Option<Arc<NearCache>> {
        self.validations.as_ref().map(|v| Arc::clone(&v.cache))
    }

    /// Wait until at least one connection is up (for tools and tests), bounded by `within`.
    ///
    /// # Errors
    /// When Redis is not reachable in time.
    pub async fn wait_connected(&self, within: Duration) -> Result<(), StoreError> {
        let both = async {
            self.pool.wait_for_connect().await?;
            self.background.wait_for_connect().await?;
            match &self.validations {
                Some(validations) => validations.pool.wait_for_connect().await,
                None => Ok(()),
            }
        };
        match tokio::time::timeout(within, both).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(classify("connect", &error)),
            Err(_) => Err(StoreError::Timeout { op: "connect" }),
        }
    }

    /// A connected client, or a fast error: a command must not wait in a queue for a
    /// reconnect while the caller holds an HTTP request open.
    fn client(&self, op: &'static str) -> Result<&Client, StoreError> {
        Self::connected(&self.pool, op)
    }

    fn background_client(&self, op: &'static str) -> Result<&Client, StoreError> {
        Self::ready(&self.background, op)
    }

    fn connected<'a>(pool: &'a Pool, op: &'static str) -> Result<&'a Client, StoreError> {
        Self::ready(pool.next_connected(), op)
    }

    /// `client` if it is connected, or a fast error.
    fn ready<'a>(client: &'a Client, op: &'static str) -> Result<&'a Client, StoreError> {
        if client.is_connected() {
            Ok(client)
        } else {
            Err(StoreError::Connection { op, detail: "not connected".to_owned() })
        }
    }

    /// Run one command future under the timeout (fred's own timeout is the primary one; this
    /// outer bound also covers anything fred might wait on before sending).
    async fn bounded<T>(
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

    async fn eval(
        &self,
        op: &'static str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        self.eval_on(self.client(op)?, op, script, keys, args).await
    }

    /// Run a revocation or rotation so that, with `SESSIOND_REDIS_WAIT_REPLICAS` set, it is
    /// acknowledged only once enough replicas have it: a failover then cannot bring the
    /// session back. Fewer acknowledgements in time is an error (503), never a silent success.
    async fn eval_durable(
        &self,
        op: &'static str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        let Some(durable) = &self.durable else { return self.eval(op, script, keys, args).await };
        let Ok(durable) = tokio::time::timeout(self.timeout, durable.acquire()).await else {
            return Err(StoreError::Timeout { op });
        };
        if !durable.is_connected() {
            return Err(StoreError::Connection { op, detail: "not connected".to_owned() });
        }
        let slot = keys.first().map_or(0, |key| fred::util::redis_keyslot(key.as_bytes()));
        let reply = self.eval_on(&durable, op, script, keys, args).await?;
        let options = Options { cluster_hash: Some(fred::types::ClusterHash::Custom(slot)), ..Options::default() };
        let wait_ms = i64::try_from(self.wait_timeout.as_millis()).unwrap_or(i64::MAX);
        let bound = self.timeout + self.wait_timeout;
        let acked: i64 = match tokio::time::timeout(
            bound,
            durable.with_options(&options).wait(i64::from(self.wait_replicas), wait_ms),
        )
        .await
        {
            Ok(Ok(acked)) => acked,
            Ok(Err(error)) => return Err(classify(op, &error)),
            Err(_) => return Err(StoreError::Timeout { op }),
        };
        if acked < i64::from(self.wait_replicas) {
            return Err(StoreError::other(op, format!("acknowledged by {acked} of {} replicas", self.wait_replicas)));
        }
        Ok(reply)
    }

    async fn eval_on(
        &self,
        client: &Client,
        op: &'static str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        let first: Result<Value, StoreError> =
            self.bounded(op, client.evalsha(script.sha.as_str(), keys.clone(), args.clone())).await;
        match first {
            Err(StoreError::Other { detail, .. }) if detail.starts_with("NOSCRIPT") => {
                self.bounded(op, client.script_load_cluster::<Value, _>(script.lua.as_str())).await?;
                self.bounded(op, client.evalsha(script.sha.as_str(), keys, args)).await
            }
            other => other,
        }
    }
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
                nodelay: Some(true),
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

fn classify(op: &'static str, error: &fred::error::Error) -> StoreError {
    match error.kind() {
        ErrorKind::Timeout => StoreError::Timeout { op },
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Backpressure => {
            StoreError::Connection { op, detail: error.details().to_owned() }
        }
        _ => StoreError::other(op, error.details().to_owned()),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        other => other.as_string(),
    }
}

fn millis(op: &'static str, value: Option<&Value>) -> Result<Timestamp, StoreError> {
    value
        .and_then(text)
        .and_then(|s| s.parse::<i64>().ok())
        .map(Timestamp::from_millis)
        .ok_or_else(|| StoreError::other(op, "malformed timestamp in session"))
}

/// Decode the positional row written by `row()` in `prelude.lua`.
fn session_from_row(op: &'static str, row: &Value) -> Result<SessionRecord, StoreError> {
    let Value::Array(cells) = row else {
        return Err(StoreError::other(op, "malformed session row"));
    };
    let cell = |n: usize| cells.get(n).and_then(text).filter(|s| !s.is_empty());
    let malformed = || StoreError::other(op, "malformed session row");
    Ok(SessionRecord {
        session_id: cell(0).as_deref().and_then(SessionId::parse).ok_or_else(malformed)?,
        user_id: cell(1).ok_or_else(malformed)?,
        username: cell(2).ok_or_else(malformed)?,
        user_key: cell(3).as_deref().and_then(UserKey::from_stored).ok_or_else(malformed)?,
        created_at: millis(op, cells.get(4))?,
        last_seen_at: millis(op, cells.get(5))?,
        idle_expires_at: millis(op, cells.get(6))?,
        expires_at: millis(op, cells.get(7))?,
        ip: cell(8).as_deref().and_then(ip_from_stored),
        device: cell(9),
    })
}

fn roles_from(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(text)
        .map(|roles| roles.split(',').filter(|r| !r.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Decode the `{0} | {1} | {2, row, roles}` reply of touch/rotate.
fn lookup_from(op: &'static str, reply: &Value) -> Result<Lookup, StoreError> {
    let Value::Array(parts) = reply else {
        return Err(StoreError::other(op, "unexpected reply"));
    };
    match parts.first().and_then(Value::as_i64) {
        Some(0) => Ok(Lookup::Missing),
        Some(1) => Ok(Lookup::Expired),
        Some(2) => {
            let session = session_from_row(op, parts.get(1).unwrap_or(&Value::Null))?;
            Ok(Lookup::Found { session, roles: roles_from(parts.get(2)) })
        }
        _ => Err(StoreError::other(op, "unexpected reply")),
    }
}

/// An IPv4 address as the signed 32-bit integer of its bits (4 bytes in a packed Redis hash,
/// against up to 15 as text); an IPv6 address as text.
fn ip_to_stored(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => i32::from_ne_bytes(u32::from(v4).to_ne_bytes()).to_string(),
        IpAddr::V6(v6) => v6.to_string(),
    }
}

fn ip_from_stored(stored: &str) -> Option<IpAddr> {
    match stored.parse::<i32>() {
        Ok(bits) => Some(IpAddr::V4(Ipv4Addr::from(u32::from_ne_bytes(bits.to_ne_bytes())))),
        Err(_) => stored.parse().ok(),
    }
}

/// The session hash's fields (see the key schema). Redis keeps a small hash as one packed list
/// whose allocation grows in steps of 16–32 bytes, so each field is written in its smallest
/// form: one-letter names, times after creation as 4-byte integers, an IPv4 address as one
/// 4-byte integer.
fn session_fields(session: &SessionRecord) -> Vec<String> {
    let created = session.created_at;
    let mut fields = vec![
        "s".to_owned(),
        session.session_id.as_str().to_owned(),
        "u".to_owned(),
        session.user_key.as_str().to_owned(),
        "c".to_owned(),
        created.millis().to_string(),
        "l".to_owned(),
        session.last_seen_at.millis_since(created).to_string(),
        "i".to_owned(),
        session.idle_expires_at.millis_since(created).to_string(),
        "e".to_owned(),
        session.expires_at.millis_since(created).to_string(),
    ];
    if let Some(ip) = session.ip {
        fields.extend(["ip".to_owned(), ip_to_stored(ip)]);
    }
    if let Some(device) = &session.device {
        fields.extend(["d".to_owned(), device.clone()]);
    }
    fields
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client("ping")?;
        self.bounded("ping", client.ping::<Value>(None)).await?;
        // Ready means validations can reach Redis too.
        if let Some(validations) = &self.validations {
            let client = Self::connected(&validations.pool, "ping")?;
            self.bounded("ping", client.ping::<Value>(None)).await?;
        }
        Ok(())
    }

    async fn insert_user(&self, key: &UserKey, user: &UserRecord) -> Result<bool, StoreError> {
        let args = vec![
            "id".to_owned(),
            user.user_id.clone(),
            "name".to_owned(),
            user.username.clone(),
            "phc".to_owned(),
            user.password_hash.clone(),
            "roles".to_owned(),
            user.roles.join(","),
            "created".to_owned(),
            user.created_at.millis().to_string(),
        ];
        let reply = self.eval("insert_user", &self.scripts.insert_user, vec![keys::user(key)], args).await?;
        Ok(reply.as_i64() == Some(1))
    }

    async fn find_user(&self, key: &UserKey) -> Result<Option<UserRecord>, StoreError> {
        const OP: &str = "find_user";
        let client = self.client(OP)?;
        let fields: std::collections::HashMap<String, String> =
            self.bounded(OP, client.hgetall(keys::user(key))).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |name: &str| fields.get(name).cloned().ok_or_else(|| StoreError::other(OP, "malformed user"));
        Ok(Some(UserRecord {
            user_id: get("id")?,
            username: get("name")?,
            password_hash: get("phc")?,
            roles: roles_from(fields.get("roles").map(|r| Value::from(r.as_str())).as_ref()),
            created_at: Timestamp::from_millis(get("created")?.parse().unwrap_or_default()),
        }))
    }

    async fn set_role(&self, key: &UserKey, role: &str, granted: bool) -> Result<bool, StoreError> {
        let args = vec![role.to_owned(), if granted { "1" } else { "0" }.to_owned(), keys::prefix(key.shard())];
        let keys = vec![keys::user(key), keys::user_sessions(key)];
        let reply = self.eval("set_role", &self.scripts.set_role, keys, args).await?;
        Ok(reply.as_i64() == Some(1))
    }

    async fn create_session(
        &self,
        hash: &TokenHash,
        session: &SessionRecord,
        max_per_user: u32,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        const OP: &str = "create_session";
        let shard = hash.shard();
        if shard != session.user_key.shard() {
            return Err(StoreError::other(OP, "token drawn for the wrong shard"));
        }
        let index_ttl = session.expires_at.millis_since(now).max(1);
        let mut args = vec![
            keys::prefix(shard),
            now.millis().to_string(),
            max_per_user.to_string(),
            hash.encoded(),
            index_ttl.to_string(),
        ];
        args.extend(session_fields(session));
        let keys = vec![keys::session(hash), keys::user_sessions(&session.user_key), keys::active(shard)];
        let reply = self.eval(OP, &self.scripts.create, keys, args).await?;
        let evicted = match reply {
            Value::Array(ids) => ids.iter().filter_map(text).filter_map(|id| SessionId::parse(&id)).collect(),
            _ => Vec::new(),
        };
        Ok(evicted)
    }

    async fn touch_session(&self, hash: &TokenHash, now: Timestamp, slide: Slide) -> Result<Lookup, StoreError> {
        const OP: &str = "touch_session";
        let shard = hash.shard();
        let args = vec![
            keys::prefix(shard),
            now.millis().to_string(),
            slide.min_interval_ms.to_string(),
            slide.idle_ms.to_string(),
        ];
        let keys = vec![keys::session(hash), keys::active(shard)];
        let client = match &self.validations {
            Some(validations) => Self::connected(&validations.pool, OP)?,
            None => self.client(OP)?,
        };
        let reply = self.eval_on(client, OP, &self.scripts.touch, keys, args).await?;
        lookup_from(OP, &reply)
    }

    async fn rotate_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        now: Timestamp,
        slide: Slide,
    ) -> Result<Lookup, StoreError> {
        const OP: &str = "rotate_session";
        let shard = old.shard();
        if new.shard() != shard {
            return Err(StoreError::other(OP, "token drawn for the wrong shard"));
        }
        let args = vec![keys::prefix(shard), now.millis().to_string(), slide.idle_ms.to_string(), new.encoded()];
        let keys = vec![keys::session(old), keys::session(new), keys::active(shard)];
        let reply = self.eval_durable(OP, &self.scripts.rotate, keys, args).await?;
        lookup_from(OP, &reply)
    }

    async fn revoke_session(&self, hash: &TokenHash) -> Result<Option<SessionId>, StoreError> {
        let shard = hash.shard();
        let keys = vec![keys::session(hash), keys::active(shard)];
        let reply = self.eval_durable("revoke_session", &self.scripts.revoke, keys, vec![keys::prefix(shard)]).await?;
        Ok(text(&reply).as_deref().and_then(SessionId::parse))
    }

    async fn revoke_session_by_id(&self, user: &UserKey, id: &SessionId) -> Result<bool, StoreError> {
        let shard = user.shard();
        let keys = vec![keys::user_sessions(user), keys::active(shard)];
        let args = vec![keys::prefix(shard), id.as_str().to_owned()];
        let reply = self.eval_durable("revoke_session_by_id", &self.scripts.revoke_by_id, keys, args).await?;
        Ok(reply.as_i64() == Some(1))
    }

    async fn revoke_user_sessions(&self, user: &UserKey, keep: Option<&SessionId>) -> Result<u64, StoreError> {
        let shard = user.shard();
        let keys = vec![keys::user_sessions(user), keys::active(shard)];
        let args = vec![keys::prefix(shard), keep.map(|id| id.as_str().to_owned()).unwrap_or_default()];
        let reply = self.eval_durable("revoke_user_sessions", &self.scripts.revoke_all, keys, args).await?;
        Ok(reply.as_i64().and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    async fn list_sessions(&self, user: &UserKey, now: Timestamp) -> Result<Vec<SessionRecord>, StoreError> {
        const OP: &str = "list_sessions";
        let shard = user.shard();
        let keys = vec![keys::user_sessions(user), keys::active(shard)];
        let args = vec![keys::prefix(shard), now.millis().to_string()];
        match self.eval(OP, &self.scripts.list, keys, args).await? {
            Value::Array(rows) => rows.iter().map(|row| session_from_row(OP, row)).collect(),
            Value::Null => Ok(Vec::new()),
            _ => Err(StoreError::other(OP, "unexpected reply")),
        }
    }

    async fn login_guard(
        &self,
        user: &UserKey,
        now: Timestamp,
        rule: GuardRule,
        event: GuardEvent,
    ) -> Result<u64, StoreError> {
        let event = match event {
            GuardEvent::Check => "check",
            GuardEvent::Failure => "failure",
            GuardEvent::Success => "success",
        };
        let args = vec![
            now.millis().to_string(),
            rule.interval_ms.to_string(),
            rule.tolerance_ms.to_string(),
            event.to_owned(),
        ];
        let reply = self.eval("login_guard", &self.scripts.login_guard, vec![keys::login_guard(user)], args).await?;
        Ok(text(&reply).and_then(|ms| ms.parse().ok()).unwrap_or(0))
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        const OP: &str = "count_active";
        let client = self.background_client(OP)?;
        let pipeline = client.pipeline();
        // Deadlines are whole milliseconds: "after now" is "at least now + 1".
        #[allow(clippy::cast_precision_loss)]
        let lower = (now.millis() + 1) as f64;
        for set in Shard::all().flat_map(keys::active_sets) {
            let queued: Result<(), _> = pipeline.zcount(set, lower, f64::INFINITY).await;
            queued.map_err(|e| classify(OP, &e))?;
        }
        let counts: Vec<i64> = self.bounded(OP, pipeline.all()).await?;
        Ok(counts.into_iter().map(|n| u64::try_from(n).unwrap_or(0)).sum())
    }

    async fn prune_expired(&self, now: Timestamp) -> Result<(), StoreError> {
        const OP: &str = "prune_expired";
        let client = self.background_client(OP)?;
        let pipeline = client.pipeline();
        #[allow(clippy::cast_precision_loss)]
        let upper = now.millis() as f64;
        for set in Shard::all().flat_map(keys::active_sets) {
            let queued: Result<(), _> = pipeline.zremrangebyscore(set, f64::NEG_INFINITY, upper).await;
            queued.map_err(|e| classify(OP, &e))?;
        }
        let _: Vec<i64> = self.bounded(OP, pipeline.all()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lua_scripts_and_the_counter_agree_on_the_number_of_active_sets() {
        let declared = format!("local ACTIVE_SETS = {}\n", super::ACTIVE_SETS);
        assert!(super::PRELUDE.contains(&declared), "lua/prelude.lua must declare {declared:?}");
    }

    #[test]
    fn client_addresses_survive_their_stored_form() {
        for text in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "203.0.113.195", "2001:db8::1", "::1"] {
            let ip: std::net::IpAddr = text.parse().expect("ip");
            let stored = super::ip_to_stored(ip);
            assert_eq!(super::ip_from_stored(&stored), Some(ip), "{text} stored as {stored}");
            if ip.is_ipv4() {
                assert!(stored.parse::<i32>().is_ok(), "{text} is stored as a 32-bit integer: {stored}");
            }
        }
        assert_eq!(super::ip_from_stored("not an address"), None);
    }
}
