//! The per-address limiters, applied before any work is done.
//!
//! Every public route except the probes is limited per client address; login and register
//! have a stricter limiter of their own. Responses on limited routes carry the IETF draft
//! rate-limit headers ([`crate::limits::headers`]); a refusal is a 429 problem+json with
//! `Retry-After` in whole seconds, rounded up, never 0.
//!
//! A hand-written layer rather than `axum::middleware::from_fn`: `from_fn` clones and boxes
//! the inner route stack and boxes the future on every request, which on the validation path
//! costs more than the limit check itself.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse as _, Response};
use tower::{Layer, Service};

use crate::error::Error;
use crate::limits::{headers::insert_headers, Decision, Limiters, TrustedProxies};
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

/// Resolves the client address, then applies the limiters for the matched route.
#[derive(Clone, Debug)]
pub struct RateLimitLayer(Arc<RateLimitState>);

impl RateLimitLayer {
    /// Limit with these limiters.
    #[must_use]
    pub fn new(state: RateLimitState) -> Self {
        Self(Arc::new(state))
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited { inner, state: Arc::clone(&self.0) }
    }
}

/// See [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimited<S> {
    inner: S,
    state: Arc<RateLimitState>,
}

/// The decisions that applied to one request: at most the per-address limiter and the one
/// of its route (no allocation per request).
#[derive(Clone, Copy, Default)]
struct Applied([Option<Decision>; 2]);

impl Applied {
    fn all(&self) -> impl Iterator<Item = Decision> + '_ {
        self.0.iter().flatten().copied()
    }

    fn write(&self, response: &mut Response) {
        if self.0.iter().any(Option::is_some) {
            let decisions: Vec<Decision> = self.all().collect();
            insert_headers(response.headers_mut(), &decisions);
        }
    }
}

impl<S> Service<Request> for RateLimited<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Limited<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let state = &self.state;
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        let client = state.proxies.client_ip(peer, request.headers());
        request.extensions_mut().insert(client);

        let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
        // Probes are never limited; backend routes are limited per API key instead (their
        // callers are a few servers, each behind one address).
        if matches!(route, "/healthz" | "/readyz" | "/v1/introspect") {
            return Limited::Passed { inner: self.inner.call(request), applied: Applied::default() };
        }
        // The sign-in and registration forms of the web app count like the API routes.
        let is_login = request.method() == Method::POST && matches!(route, "/v1/auth/login" | "/login");
        let is_register = request.method() == Method::POST && matches!(route, "/v1/auth/register" | "/register");
        let key = client.limit_key();
        let route_limiter = if is_login {
            Some(&state.limiters.login_ip)
        } else if is_register {
            Some(&state.limiters.register_ip)
        } else {
            None
        };
        let applied = Applied([state.limiters.ip.check(key), route_limiter.and_then(|limiter| limiter.check(key))]);

        if let Some(refused) = applied.all().filter(|d| !d.allowed).max_by_key(|d| d.reset_secs) {
            state.metrics.rate_limited(refused.limiter);
            if is_login {
                state.metrics.login("rate_limited");
            } else if is_register {
                state.metrics.registration("rate_limited");
            }
            let mut response = Error::RateLimited(refused).into_response();
            applied.write(&mut response);
            return Limited::Refused { response: Some(response) };
        }
        Limited::Passed { inner: self.inner.call(request), applied }
    }
}

pin_project_lite::pin_project! {
    /// The route's future with the headers to add, or the refusal.
    #[project = LimitedProj]
    pub enum Limited<F> {
        Passed { #[pin] inner: F, applied: Applied },
        Refused { response: Option<Response> },
    }
}

impl<F, E> Future for Limited<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitedProj::Passed { inner, applied } => {
                let mut response = ready!(inner.poll(cx))?;
                applied.write(&mut response);
                Poll::Ready(Ok(response))
            }
            LimitedProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| Error::Internal("polled twice".into()).into_response()))),
        }
    }
}
