//! The HTTP edge: router, middleware order, and the serving loop.
//!
//! Layers, outermost first — each sees what the ones inside it produce:
//! 1. observation: server span, `traceparent`, HTTP metrics (outermost, so it sees every
//!    status including 408 and 500);
//! 2. panic → 500 problem+json (a bug must not drop the connection silently);
//! 3. `Cache-Control: no-store` and `X-Content-Type-Options: nosniff` on every response
//!    (session data must never sit in a shared cache);
//! 4. CORS, only for the configured origins (credentials allowed for exactly those);
//! 5. client address and rate limits → 429 problem+json (before any work is done);
//! 6. request timeout → 408 problem+json;
//! 7. body limit (16 KiB) enforced by the extractors → 413 problem+json.
//!
//! Handlers are thin: extract, call the session or user service, shape the JSON.

mod admin;
mod auth;
mod cookie;
mod extract;
mod health;
pub mod rate_limit;
mod serve;
mod sessions;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub use cookie::CookieSettings;
pub use rate_limit::RateLimitState;
pub use serve::serve;

use crate::error::Error;
use crate::session::SessionService;
use crate::telemetry::http::{Observe, ObserveLayer};
use crate::telemetry::metrics::Metrics;
use crate::users::UserService;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Shared state of every handler, handed to the routers as `Arc<AppState>`: axum clones a
/// route's state for every request, and one reference count is cheaper than the dozen `Arc`s
/// inside the services (cloning and dropping those was ~14 % of a validation's CPU).
pub struct AppState {
    /// Session rules.
    pub sessions: SessionService,
    /// Account operations.
    pub users: UserService,
    /// How the session cookie is written.
    pub cookie: Arc<CookieSettings>,
    /// Cleared on shutdown so `/readyz` turns 503 before the listener closes.
    pub ready: Arc<AtomicBool>,
}

/// Options of the HTTP layer itself.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Whole-request deadline.
    pub request_timeout: Duration,
    /// Browser origins allowed with credentials.
    pub cors_origins: Vec<String>,
    /// Span, trace context and HTTP metrics per request.
    pub observe: Observe,
    /// Per-address limiters and the proxies trusted to name the client.
    pub rate_limit: RateLimitState,
}

/// The public router with all middleware.
pub fn router(state: Arc<AppState>, settings: &HttpSettings) -> Router {
    let api = Router::new()
        .route("/v1/auth/register", post(auth::register))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/v1/profile", get(sessions::profile))
        .route("/v1/sessions", get(sessions::list).delete(sessions::revoke_all))
        .route("/v1/sessions/{session_id}", delete(sessions::revoke))
        .route("/v1/admin/users/{username}/sessions", delete(admin::revoke_user_sessions))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(settings.request_timeout, request_timeout))
        .layer(middleware::from_fn_with_state(Arc::new(settings.rate_limit.clone()), rate_limit::rate_limit))
        .with_state(state);

    let api = match cors(&settings.cors_origins) {
        Some(cors) => api.layer(cors),
        None => api,
    };
    let api = api
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            Error::Internal("handler panicked".to_owned()).into_response()
        }));
    if cfg!(feature = "bench-no-instrumentation") {
        return api;
    }
    api.layer(ObserveLayer::new(settings.observe.clone()))
}

/// The admin router: metrics and probes, never rate-limited, never on the public listener.
pub fn admin_router(state: Arc<AppState>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics).with_state(metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz).with_state(state))
        .fallback(not_found)
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], metrics.render())
        .into_response()
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("x-session-id")])
            .max_age(Duration::from_secs(600)),
    )
}

async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Error::RequestTimeout.into_response(),
    }
}

async fn not_found() -> Error {
    Error::NotFound("route")
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}
