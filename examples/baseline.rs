//! A bare axum server to compare sessiond's validation path against.
//!
//! `GET /v1/profile` answers a profile-shaped JSON document (the same fields as sessiond's
//! profile) straight from memory: no Redis, no session lookup, no middleware beyond what
//! axum does for any route. It reads the bearer token so that the request work (header
//! parsing, one allocation per field, JSON serialisation) is comparable, and answers 401
//! without one. Same axum and tokio versions and the same multi-threaded runtime as sessiond,
//! so the difference between the two is what sessiond adds: its middleware and one Redis
//! round trip per validation.
//!
//! Any method on `/v1/auth/verify` is the same for forward authentication
//! (`scripts/bench/forward-auth.sh`, `CHECKED_BY=baseline`): 200 with fixed identity headers
//! and an empty body when a bearer token is present, 401 without one; the floor of a check
//! answered by this stack.
//!
//! ```sh
//! cargo build --release --example baseline
//! BASELINE_LISTEN=127.0.0.1:8090 ./target/release/examples/baseline
//! curl -s -H 'authorization: Bearer x' http://127.0.0.1:8090/v1/profile
//! ```

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;

/// The bearer token's length, when the request carries one.
fn bearer_len(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
        .map(|(_, token)| token.len())
}

async fn verify(headers: HeaderMap) -> Response {
    if bearer_len(&headers).is_none() {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response();
    }
    (
        StatusCode::OK,
        [
            ("x-session-user", "baseline"),
            ("x-session-user-id", "0b6f3b0e-5f43-4c4e-9f5e-0d6a4a3f2c11"),
            ("x-session-roles", "user"),
            ("x-session-id", "baseline-session"),
        ],
    )
        .into_response()
}

async fn profile(headers: HeaderMap) -> Response {
    let Some(token_len) = bearer_len(&headers) else {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response();
    };
    let now: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Json(json!({
        "user_id": "0b6f3b0e-5f43-4c4e-9f5e-0d6a4a3f2c11",
        "username": "baseline",
        "roles": ["user"],
        "session": {
            "session_id": format!("baseline-{token_len}"),
            "created_at": now,
            "last_seen_at": now,
            "expires_at": now + 12 * 3_600_000,
            "idle_expires_at": now + 30 * 60_000,
        }
    }))
    .into_response()
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(error) => {
                eprintln!("baseline: cannot listen for SIGTERM: {error}");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::var("BASELINE_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8090".to_owned())
        .parse()
        .map_err(|e| format!("BASELINE_LISTEN: {e}"))?;
    let app = Router::new()
        .route("/v1/profile", get(profile))
        .route("/v1/auth/verify", any(verify))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("baseline listening on {}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(())
}
