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
//! They form one stack, applied to the routes once (see [`router`]), and the ones written
//! here are plain tower layers, not `from_fn` closures: on the validation path the cost of
//! the layering itself (a boxed clone of the stack and a boxed future per layer and request)
//! had outweighed the work of the layers.
//!
//! Handlers are thin: extract, call a service, shape the JSON.

mod account;
mod admin;
mod auth;
mod backend;
mod cookie;
mod csrf;
mod extract;
mod health;
mod introspect;
pub mod openapi;
mod rate_limit;
mod security_headers;
mod serve;
mod sessions;
mod timeout;
mod tokens;
mod verify;
mod web;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub use cookie::{CookieSettings, Presented};
pub use csrf::CsrfPolicy;
pub use rate_limit::RateLimitState;
pub use serve::{serve, ServeSettings};

use crate::error::Error;
use crate::service::{AdminService, SessionService, UserService};
use crate::telemetry::http::{Observe, ObserveLayer};
use crate::telemetry::metrics::Metrics;

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
    /// Administrators' operations on other users.
    pub admin: AdminService,
    /// How the session cookie is written.
    pub cookie: Arc<CookieSettings>,
    /// Who may send cookie-authenticated state-changing requests.
    pub csrf: CsrfPolicy,
    /// Signs access tokens and publishes their keys.
    pub tokens: Arc<crate::tokens::AccessTokens>,
    /// Who may call the backend routes (introspection, backend sessions), and how often.
    pub backend: BackendAccess,
    /// Sessions of externally authenticated subjects (the backend API).
    pub backend_sessions: crate::service::BackendService,
    /// Cleared on shutdown so `/readyz` turns 503 before the listener closes.
    pub ready: Arc<AtomicBool>,
}

/// The trusted backends' API keys and their rate limit.
#[derive(Clone, Debug)]
pub struct BackendAccess {
    /// The configured keys (hashes).
    pub keys: crate::users::BackendKeys,
    /// Requests per key.
    pub limiter: Arc<crate::limits::KeyedLimiter>,
    /// Where refused keys are counted.
    pub metrics: Arc<Metrics>,
}

/// The per-key limiter's key: a digest of the key's name.
fn backend_limit_key(name: &str) -> u128 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new().chain_update(b"sessiond/backend/").chain_update(name.as_bytes()).finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
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
///
/// The middleware is one stack applied once: `Router::layer` wraps every route in a boxed
/// service of its own, and axum clones that box for every request, so each separate
/// `.layer()` call would cost an allocation and a clone of the stack beneath it per request.
pub fn router(state: Arc<AppState>, settings: &HttpSettings) -> Router {
    let observe = (!cfg!(feature = "bench-no-instrumentation")).then(|| ObserveLayer::new(settings.observe.clone()));
    let middleware = ServiceBuilder::new()
        .option_layer(observe)
        .layer(CatchPanicLayer::custom(panic_response as fn(Box<dyn std::any::Any + Send>) -> Response))
        .layer(security_headers::SecurityHeadersLayer { hsts: state.cookie.secure() })
        .option_layer(cors(&settings.cors_origins))
        .layer(rate_limit::RateLimitLayer::new(settings.rate_limit.clone()))
        .layer(timeout::RequestTimeoutLayer::new(settings.request_timeout))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .route("/v1/auth/register", post(auth::register))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/v1/auth/verify", any(verify::verify))
        .route("/v1/auth/verify/", any(verify::verify_original))
        .route("/v1/auth/verify/{*original}", any(verify::verify_original))
        .route("/v1/auth/token", post(tokens::mint))
        .route("/v1/introspect", post(introspect::introspect))
        .route("/v1/backend/sessions", post(backend::create))
        .route("/v1/backend/sessions/{session_id}", delete(backend::end_one))
        .route("/v1/backend/subjects/{subject}/sessions", get(backend::list).delete(backend::end_all))
        .route("/.well-known/jwks.json", get(tokens::jwks))
        .route("/v1/profile", get(sessions::profile))
        .route("/v1/sessions", get(sessions::list).delete(sessions::revoke_all))
        .route("/v1/sessions/{session_id}", delete(sessions::revoke))
        .route("/v1/account/password", post(account::change_password))
        .route("/v1/account", delete(account::delete))
        .route("/v1/admin/users/{username}", get(admin::user))
        .route("/v1/admin/users/{username}/disable", post(admin::set_disabled))
        .route("/v1/admin/users/{username}/enable", post(admin::set_disabled))
        .route("/v1/admin/users/{username}/roles/{role}", put(admin::set_role).delete(admin::set_role))
        .route("/v1/admin/users/{username}/sessions", delete(admin::revoke_user_sessions))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi_json))
        .merge(web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware)
        .with_state(state)
}

/// A bug must not drop the connection silently: 500 problem+json.
fn panic_response(_panic: Box<dyn std::any::Any + Send>) -> Response {
    Error::Internal("handler panicked".to_owned()).into_response()
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
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-session-id"),
                HeaderName::from_static(cookie::DEVICE_HEADER),
            ])
            .expose_headers([HeaderName::from_static(cookie::DEVICE_HEADER)])
            .max_age(Duration::from_secs(600)),
    )
}

/// `GET /openapi.json`: the API contract (see [`openapi`]).
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], openapi::document()).into_response()
}

async fn not_found() -> Error {
    Error::NotFound("route")
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}
