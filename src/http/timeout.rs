//! The whole-request deadline: a request still running after `SESSIOND_REQUEST_TIMEOUT` is
//! dropped (its future, and so any store call in flight) and answered 408 problem+json.
//!
//! Hand-written for the same reason as the rate-limit layer: no per-request clone and box of
//! the inner route stack.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use tower::{Layer, Service};

use crate::error::Error;

/// Bounds every request by `limit`.
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeoutLayer(Duration);

impl RequestTimeoutLayer {
    /// Answer 408 after `limit`.
    #[must_use]
    pub fn new(limit: Duration) -> Self {
        Self(limit)
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout { inner, limit: self.0 }
    }
}

/// See [`RequestTimeoutLayer`].
#[derive(Clone, Debug)]
pub struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Request> for RequestTimeout<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Bounded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Bounded { inner: self.inner.call(request), deadline: tokio::time::sleep(self.limit) }
    }
}

pin_project_lite::pin_project! {
    /// The route's future and its deadline.
    pub struct Bounded<F> {
        #[pin]
        inner: F,
        #[pin]
        deadline: tokio::time::Sleep,
    }
}

impl<F, E> Future for Bounded<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(Error::RequestTimeout.into_response())),
            Poll::Pending => Poll::Pending,
        }
    }
}
