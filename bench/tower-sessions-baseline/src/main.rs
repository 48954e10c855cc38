//! The session server a Rust user would write instead of running sessiond: axum 0.8 with
//! `tower-sessions` and its Redis store (`tower-sessions-redis-store`, fred 10), as their
//! documentation shows. `scripts/bench/miss-path.sh` puts it under the same load as sessiond
//! with sessiond's validation cache off, so both read Redis on every request.
//!
//! Routes:
//! * `POST /login` — creates a session holding a user (id, username, roles), as a login would
//!   once the password is checked (no password is checked here: the comparison is about the
//!   session path), and answers 200 with the user; the session cookie (`id`) is in `Set-Cookie`.
//!   An optional JSON body `{"username": "..."}` names the user.
//! * `GET /profile` — loads the session from Redis (one `GET` of the session key) and answers
//!   200 with the user as JSON, 401 without a valid session.
//! * `GET /healthz` — 200 `ok`.
//!
//! Sessions expire after 30 minutes of inactivity (`Expiry::OnInactivity`, sessiond's default
//! idle timeout). By default tower-sessions writes a session only when it changes, so a request
//! costs one `GET` and the key's expiry in Redis stays where the login put it; with
//! `TS_ALWAYS_SAVE=1` (`with_always_save(true)`) every request also writes the session back
//! (`SET … XX EXAT`), which is what makes the inactivity timeout slide in Redis too.
//!
//! Configuration (arguments win over the environment):
//! ```sh
//! tower-sessions-baseline --listen 127.0.0.1:8091 --redis redis://127.0.0.1:6379
//! TS_LISTEN=127.0.0.1:8091 TS_REDIS_URL=redis://127.0.0.1:6379 TS_POOL_SIZE=4 tower-sessions-baseline
//! ```
//! `TS_POOL_SIZE` (default 4, sessiond's default `SESSIOND_REDIS_POOL_SIZE`) is the number of
//! multiplexed Redis connections.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_sessions::cookie::time::Duration;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
use tower_sessions_redis_store::RedisStore;

const USER_KEY: &str = "user";

/// What the session holds: the signed-in user.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    user_id: String,
    username: String,
    roles: Vec<String>,
}

#[derive(Default, Deserialize)]
struct LoginRequest {
    username: Option<String>,
}

fn server_error(error: impl std::fmt::Display) -> Response {
    eprintln!("tower-sessions-baseline: {error}");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

async fn login(session: Session, body: Option<Json<LoginRequest>>) -> Response {
    let username = body.and_then(|Json(b)| b.username).unwrap_or_else(|| "bench-user".to_owned());
    let user = User { user_id: uuid::Uuid::new_v4().to_string(), username, roles: vec!["user".to_owned()] };
    // A new session id at login (session fixation), then the user into the session.
    if let Err(error) = session.cycle_id().await {
        return server_error(error);
    }
    if let Err(error) = session.insert(USER_KEY, &user).await {
        return server_error(error);
    }
    Json(user).into_response()
}

async fn profile(session: Session) -> Response {
    match session.get::<User>(USER_KEY).await {
        Ok(Some(user)) => Json(json!({
            "user_id": user.user_id,
            "username": user.username,
            "roles": user.roles,
            "session": { "expires_at": session.expiry_date().unix_timestamp() },
        }))
        .into_response(),
        Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
        Err(error) => server_error(error),
    }
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `--name value` from the arguments, else the environment variable, else the default.
fn setting(args: &[String], flag: &str, env: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = setting(&args, "--listen", "TS_LISTEN", "127.0.0.1:8091")
        .parse()
        .map_err(|e| format!("listen address: {e}"))?;
    let redis_url = setting(&args, "--redis", "TS_REDIS_URL", "redis://127.0.0.1:6379");
    let pool_size: usize =
        setting(&args, "--pool-size", "TS_POOL_SIZE", "4").parse().map_err(|e| format!("pool size: {e}"))?;
    let always_save = setting(&args, "--always-save", "TS_ALWAYS_SAVE", "0") == "1";

    let pool = Pool::new(Config::from_url(&redis_url)?, None, None, None, pool_size)?;
    let _connection = pool.connect();
    pool.wait_for_connect().await?;

    let sessions = SessionManagerLayer::new(RedisStore::new(pool.clone()))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(Duration::minutes(30)))
        .with_always_save(always_save);
    let app = Router::new()
        .route("/login", post(login))
        .route("/profile", get(profile))
        .layer(sessions)
        .route("/healthz", get(|| async { "ok" }));

    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "tower-sessions-baseline listening on {} (redis {redis_url}, pool {pool_size}, always_save {always_save})",
        listener.local_addr()?
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    pool.quit().await?;
    Ok(())
}
