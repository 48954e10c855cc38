//! The per-address limiters, applied before any work is done, and the standard headers.
//!
//! Every public route except the probes is limited per client address; login and register
//! have a stricter limiter of their own. Responses on limited routes carry the IETF draft
//! headers (draft-ietf-httpapi-ratelimit-headers) as structured-field lists, one item per
//! policy that applied:
//!
//! ```text
//! RateLimit-Policy: "ip";q=40;w=2, "login_ip";q=10;w=10
//! RateLimit: "ip";r=39;t=0, "login_ip";r=9;t=1
//! ```
//!
//! `q` is the burst, `w` the seconds in which a full burst replenishes, `r` what remains and
//! `t` the seconds until the quota is whole again. A refusal is a 429 problem+json with
//! `Retry-After` in whole seconds, rounded up, never 0.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::error::Error;
use crate::limits::{Decision, Limiters, TrustedProxies};
use crate::telemetry::metrics::Metrics;

/// What the middleware needs.
#[derive(Clone, Debug)]
pub struct RateLimitState {
    /// The instance's limiters.
    pub limiters: Limiters,
    /// Proxies whose forwarding headers are believed.
    pub proxies: Arc<TrustedProxies>,
    /// Where refusals are counted.
    pub metrics: Arc<Metrics>,
}

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Write `RateLimit-Policy` and `RateLimit` for the policies that applied.
pub fn insert_headers(headers: &mut HeaderMap, decisions: &[Decision]) {
    if decisions.is_empty() {
        return;
    }
    let join = |item: &dyn Fn(&Decision) -> String| decisions.iter().map(item).collect::<Vec<_>>().join(", ");
    let policy = join(&|d| format!("\"{}\";q={};w={}", d.limiter, d.policy.0, d.policy.1));
    let state = join(&|d| format!("\"{}\";r={};t={}", d.limiter, d.remaining, d.reset_secs));
    if let (Ok(policy), Ok(state)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&state)) {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, state);
    }
}

/// Resolve the client address, then apply the limiters for this route.
pub async fn rate_limit(State(state): State<Arc<RateLimitState>>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let client = state.proxies.client_ip(peer, request.headers());
    request.extensions_mut().insert(client);

    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let route = route.as_deref().unwrap_or("unmatched");
    if matches!(route, "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let is_login = request.method() == Method::POST && route == "/v1/auth/login";
    let is_register = request.method() == Method::POST && route == "/v1/auth/register";
    let key = client.limit_key();
    let mut decisions: Vec<Decision> = Vec::with_capacity(2);
    decisions.extend(state.limiters.ip.check(key));
    if is_login {
        decisions.extend(state.limiters.login_ip.check(key));
    } else if is_register {
        decisions.extend(state.limiters.register_ip.check(key));
    }

    if let Some(refused) = decisions.iter().filter(|d| !d.allowed).max_by_key(|d| d.reset_secs) {
        state.metrics.rate_limited(refused.limiter);
        if is_login {
            state.metrics.login("rate_limited");
        } else if is_register {
            state.metrics.registration("rate_limited");
        }
        let mut response = Error::RateLimited(*refused).into_response();
        insert_headers(response.headers_mut(), &decisions);
        return response;
    }
    let mut response = next.run(request).await;
    insert_headers(response.headers_mut(), &decisions);
    response
}
