//! Headers every public response carries: `Cache-Control: no-store` (session data and
//! credentials must never sit in a shared cache, nor in the browser's history: Back after a
//! logout shows nothing), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`
//! (no URL of ours leaks to another site), and, when the session cookie is `Secure` (so the
//! service is reached over HTTPS), `Strict-Transport-Security`. HTML pages add their own
//! `Content-Security-Policy` (see `web`).
//!
//! One hand-written layer for all of them rather than one `SetResponseHeaderLayer` each: each
//! layer is one more future wrapped, moved and polled on every request.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::http::{header, HeaderValue, Response};
use tower::{Layer, Service};

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
/// A year: browsers then never try plain HTTP for this host again.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// Sets the security headers on every response, overriding what a handler set (but for a
/// `Cache-Control` a handler chose).
#[derive(Clone, Copy, Debug, Default)]
pub struct SecurityHeadersLayer {
    /// Send `Strict-Transport-Security` (the service is reached over HTTPS).
    pub hsts: bool,
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders { inner, hsts: self.hsts }
    }
}

/// See [`SecurityHeadersLayer`].
#[derive(Clone, Debug)]
pub struct SecurityHeaders<S> {
    inner: S,
    hsts: bool,
}

impl<S, B> Service<Request> for SecurityHeaders<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = WithHeaders<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        WithHeaders { inner: self.inner.call(request), hsts: self.hsts }
    }
}

pin_project_lite::pin_project! {
    /// The route's future; the headers are set on its response.
    pub struct WithHeaders<F> {
        #[pin]
        inner: F,
        hsts: bool,
    }
}

impl<F, B, E> Future for WithHeaders<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let headers = response.headers_mut();
        // A response that is not about anyone (the public key set) may say how long it keeps.
        headers.entry(header::CACHE_CONTROL).or_insert(NO_STORE);
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        headers.insert(header::REFERRER_POLICY, NO_REFERRER);
        if *this.hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
        }
        Poll::Ready(Ok(response))
    }
}
