//! Per-request observation: the server span, the trace context, and HTTP metrics.
//!
//! One middleware does all three so they agree: the span carries the same `trace_id` and
//! `span_id` that the response returns in `traceparent` and that every log line inside the
//! request shows. An incoming W3C `traceparent` is continued. Labels use the matched route
//! template (`/v1/sessions/{session_id}`), never the raw path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt as _;
use tower::{Layer, Service};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::metrics::Metrics;

/// What the middleware needs.
#[derive(Clone, Debug)]
pub struct Observe {
    /// Where HTTP metrics go.
    pub metrics: Arc<Metrics>,
    /// Whether an OpenTelemetry pipeline is installed (else ids are generated here).
    pub tracing_enabled: bool,
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// The W3C `traceparent` of this request's server span, `00-<trace id>-<span id>-<flags>`,
/// built once in a fixed buffer: the header value, and the ids that the span and every log
/// line carry, are slices of it (no per-request formatting).
struct TraceIds([u8; 55]);

impl TraceIds {
    fn new(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        for (n, byte) in trace_id.iter().chain(span_id.iter()).enumerate() {
            // Trace id digits start at 3; the span id's, after the second dash, at 36.
            let at = if n < 16 { 3 + 2 * n } else { 36 + 2 * (n - 16) };
            out[at] = HEX[usize::from(byte >> 4)];
            out[at + 1] = HEX[usize::from(byte & 0xf)];
        }
        if sampled {
            out[54] = b'1';
        }
        Self(out)
    }

    fn traceparent(&self) -> &str {
        // Only ASCII hex digits and dashes are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    fn trace_id(&self) -> &str {
        &self.traceparent()[3..35]
    }

    fn span_id(&self) -> &str {
        &self.traceparent()[36..52]
    }
}

/// Parse `traceparent` (version 00): `(trace_id, sampled)` when valid.
fn parse_traceparent(headers: &HeaderMap) -> Option<([u8; 16], bool)> {
    let value = headers.get(&TRACEPARENT)?.to_str().ok()?;
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let valid = version == "00"
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0');
    if !valid {
        return None;
    }
    let id = u128::from_str_radix(trace_id, 16).ok()?;
    Some((id.to_be_bytes(), u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1)))
}

/// Correlation ids need to be unique, not secret: a per-thread wyrand generator seeded once
/// from the OS, instead of a system call per request.
fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            if getrandom::fill(&mut seed).is_err() {
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                seed = (nanos.as_nanos() as u64).to_le_bytes();
            }
            u64::from_le_bytes(seed)
        });
    }
    STATE.with(|state| {
        let next = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(next);
        let mixed = u128::from(next) * u128::from(next ^ 0xe703_7ed1_a0b4_28db);
        ((mixed >> 64) as u64 ^ mixed as u64) | 1
    })
}

/// Decrements the in-flight gauge even when the request future is dropped.
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn start(metrics: &Arc<Metrics>) -> Self {
        metrics.in_flight().increment(1.0);
        Self(Arc::clone(metrics))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight().decrement(1.0);
    }
}

/// The observing layer, applied to every route of the public router (after routing, so the
/// matched route template is known).
///
/// A hand-written service rather than `axum::middleware::from_fn`: `from_fn` clones and boxes
/// the whole inner route stack and boxes the request future on every call, which cost more
/// than the span, the trace context and the metrics themselves (see "Cost of instrumentation"
/// in `docs/performance.md`). Here a request costs one future that wraps the route's own.
#[derive(Clone, Debug)]
pub struct ObserveLayer(Observe);

impl ObserveLayer {
    /// Observe with these settings.
    #[must_use]
    pub fn new(observe: Observe) -> Self {
        Self(observe)
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveService { inner, observe: self.0.clone() }
    }
}

/// See [`ObserveLayer`].
#[derive(Clone, Debug)]
pub struct ObserveService<S> {
    inner: S,
    observe: Observe,
}

impl<S, B> Service<Request> for ObserveService<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = request.method().clone();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let route_str = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        let span = tracing::info_span!(
            "request",
            otel.name = tracing::field::Empty,
            otel.kind = "server",
            http.request.method = method.as_str(),
            http.route = route_str,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let ids = if self.observe.tracing_enabled {
            span.record("otel.name", format!("{method} {route_str}"));
            let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
            let _ = span.set_parent(parent);
            let context = span.context();
            let span_ref = context.span();
            let sc = span_ref.span_context();
            TraceIds::new(sc.trace_id().to_bytes(), sc.span_id().to_bytes(), sc.is_sampled())
        } else {
            let (trace_id, sampled) = parse_traceparent(request.headers())
                .unwrap_or_else(|| ((u128::from(random_u64()) << 64 | u128::from(random_u64())).to_be_bytes(), false));
            TraceIds::new(trace_id, random_u64().to_be_bytes(), sampled)
        };
        if !span.is_disabled() {
            span.record("trace_id", ids.trace_id());
            span.record("span_id", ids.span_id());
        }
        let in_flight = InFlight::start(&self.observe.metrics);
        let inner = span.in_scope(|| self.inner.call(request));
        Observed { inner, span, done: Some(Done { started, method, route, ids, in_flight }) }
    }
}

/// What the response needs from the request.
struct Done {
    started: Instant,
    method: Method,
    route: Option<MatchedPath>,
    ids: TraceIds,
    in_flight: InFlight,
}

const UNMATCHED: &str = "unmatched";

/// The W3C trace-context header, named once (a `&str` key is parsed on every lookup).
const TRACEPARENT: axum::http::HeaderName = axum::http::HeaderName::from_static("traceparent");

pin_project_lite::pin_project! {
    /// The route's future, polled inside the request span; records the response when ready.
    pub struct Observed<F> {
        #[pin]
        inner: F,
        span: Span,
        done: Option<Done>,
    }
}

impl<F, B, E> Future for Observed<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx))
        };
        Poll::Ready(match (result, this.done.take()) {
            (Ok(response), Some(done)) => Ok(finish(this.span, done, response)),
            // The routes are infallible; an error would pass through unobserved.
            (other, _) => other,
        })
    }
}

/// Record the response: the span's status, the log line, the HTTP metrics, and the
/// `traceparent` header a client can quote.
fn finish<B>(span: &Span, done: Done, mut response: Response<B>) -> Response<B> {
    let Done { started, method, route, ids, in_flight } = done;
    let status = response.status();
    let elapsed = started.elapsed();
    span.record("http.response.status_code", status.as_u16());
    span.in_scope(|| {
        let millis = elapsed.as_secs_f64() * 1e3;
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
            // Within a per-second budget: a shed flood must not become a log flood.
            if let Some(suppressed) = super::log_budget::FAILED_REQUESTS.take() {
                tracing::warn!(status = status.as_u16(), elapsed_ms = millis, suppressed, "request failed");
            }
        } else {
            tracing::debug!(status = status.as_u16(), elapsed_ms = millis, "request served");
        }
    });
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    in_flight.0.http_request(&method, route, status.as_u16(), elapsed.as_secs_f64());
    drop(in_flight);
    if let Ok(value) = HeaderValue::from_str(ids.traceparent()) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing_follows_w3c() {
        let mut headers = HeaderMap::new();
        headers
            .insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        let (id, sampled) = parse_traceparent(&headers).expect("valid");
        assert!(sampled);
        let ids = TraceIds::new(id, [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7], true);
        assert_eq!(ids.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(ids.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ids.span_id(), "00f067aa0ba902b7");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            headers.insert("traceparent", HeaderValue::from_static(bad));
            assert_eq!(parse_traceparent(&headers), None, "{bad}");
        }
    }
}
