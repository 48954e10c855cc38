//! The serving loop.
//!
//! axum's `serve` has no header-read timeout, so a client that trickles its headers could pin
//! a connection forever and hold up graceful shutdown. This loop drives hyper's HTTP/1.1
//! server directly, with the peer address attached for the extractors, and bounds every
//! phase of a connection's life:
//!
//! | phase | bound |
//! |---|---|
//! | from accept, and from the first byte of each further request, to its complete headers | the header-read timeout |
//! | a request in progress, reading its body included | the request timeout (the route layer, [`super::timeout`]) |
//! | idle between requests (keep-alive) | the keep-alive timeout |
//!
//! The keep-alive timeout is separate from the header-read timeout so that it can be longer
//! than the idle timeout of the proxy in front: the proxy, not sessiond, then closes an idle
//! connection, and never sends a request down a connection sessiond is closing at that very
//! moment (a race a proxy cannot repair for a `POST`, which it does not retry).
//!
//! Shutdown has two steps. While draining (readiness withdrawn, the listener still open),
//! every response carries `Connection: close`, so the connections in a proxy's keep-alive pool
//! end, one response each, by the proxy's own reading of that header rather than by a close it
//! could race. Then the loop accepts what the kernel already queued (those connections would
//! otherwise be reset with their request unanswered), closes the listener (a proxy's connect
//! is refused from then on, which it retries on another instance, `POST` included), closes the
//! connections that are idle or have not sent a byte, and lets the others finish their
//! request (in flight, or with its headers partly received) within the request and
//! header-read timeouts and the shutdown deadline. (HTTP/1.1 only: protocol sniffing for
//! cleartext HTTP/2 would read before any timer runs, and load balancers speak HTTP/1.1 to
//! their backends.)

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use http::header::{HeaderValue, CONNECTION};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::Service as _;

/// The connection bounds and the shutdown deadline of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ServeSettings {
    /// From accept, and from the first byte of each further request, to its complete headers.
    pub header_read_timeout: Duration,
    /// Idle between two requests of a keep-alive connection.
    pub keepalive_timeout: Duration,
    /// After the listener closes, how long in-flight requests get to finish.
    pub grace: Duration,
}

/// Serve `router` on `listener`. While `ready` is false (the drain), every response carries
/// `Connection: close`; once `shutdown` resolves, the listener closes and in-flight requests
/// get `settings.grace` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    // Header reads are timed by `Timed` below, which tells them apart from keep-alive idling
    // (hyper's own header-read timer also runs while a connection idles).
    builder.timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true);
    // Every connection holds a receiver: `closed()` on the sender completes when the last
    // connection has ended.
    let (closing, closing_rx) = watch::channel(false);
    let open = |stream: TcpStream, peer: SocketAddr| {
        let _ = stream.set_nodelay(true);
        let phase = Arc::new(AtomicU8::new(FRESH));
        let io = Timed::new(stream, phase.clone(), settings);
        let (router, ready) = (router.clone(), ready.clone());
        let connection_phase = phase.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            phase.store(BUSY, Ordering::Release);
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let response = router.clone().call(request);
            let (phase, ready) = (phase.clone(), ready.clone());
            async move {
                let mut response = response.await;
                if let Ok(response) = &mut response {
                    if !ready.load(Ordering::Acquire) {
                        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                }
                // From here the connection idles: `Timed` starts the keep-alive deadline when
                // the response is flushed.
                phase.store(IDLE, Ordering::Release);
                response
            }
        });
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                // The connection first: a connection accepted from the queue at close reads
                // the request already waiting in it before the close is looked at.
                biased;
                result = connection.as_mut() => result,
                () = async { drop(closing.wait_for(|closing| *closing).await) } => {
                    // Idle, or not a byte received: closed now. Busy, or part of a request's
                    // headers received: left to finish (its response carries
                    // `Connection: close`) within the request or header-read timeout. (hyper's
                    // own graceful shutdown also closes a connection whose request has arrived
                    // but not been read yet.)
                    if matches!(connection_phase.load(Ordering::Acquire), FRESH | IDLE) {
                        connection.as_mut().graceful_shutdown();
                    }
                    connection.as_mut().await
                }
            };
            if let Err(error) = result {
                tracing::debug!(error = %error, "connection closed with an error");
            }
            drop(closing);
        });
    };
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        open(stream, peer);
    }

    // Connections the kernel completed before the close: served, not reset. Accepted with
    // the socket itself, until it says there are none: the runtime's accept would trust a
    // readiness flag that lags the queue. At most a backlog's worth: connections that keep
    // arriving meanwhile cannot hold the close off.
    let mut queued = 0_usize;
    if let Ok(listener) = listener.into_std() {
        while queued < 4096 {
            let Ok((stream, peer)) = listener.accept() else { break };
            if let Ok(stream) = stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) {
                open(stream, peer);
                queued += 1;
            }
        }
    }
    drop(closing_rx);
    tracing::info!(queued, "listener closed; waiting for in-flight requests");
    let _ = closing.send(true);
    let grace = settings.grace;
    tokio::select! {
        () = closing.closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "shutdown deadline passed; closing remaining connections"),
    }
}

/// Accepted, not a byte received yet (timed by the header-read timeout from accept).
const FRESH: u8 = 0;
/// Part of a request's headers received (timed by the header-read timeout).
const HEAD: u8 = 1;
/// A request in the router: bounded by the request timeout, not here.
const BUSY: u8 = 2;
/// Response produced; waiting for the next request (timed by the keep-alive timeout).
const IDLE: u8 = 3;

/// A connection whose reads are timed by phase: the header-read timeout from accept and from
/// the first byte of each further request, the keep-alive timeout while idle, no bound while a
/// request is in the router. A read past the deadline fails (`TimedOut`), which ends the
/// connection.
struct Timed {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    phase: Arc<AtomicU8>,
    /// The phase the deadline was set for.
    timed: u8,
    settings: ServeSettings,
}

impl Timed {
    fn new(stream: TcpStream, phase: Arc<AtomicU8>, settings: ServeSettings) -> Self {
        let deadline = Box::pin(tokio::time::sleep(settings.header_read_timeout));
        Self { stream, deadline, phase, timed: FRESH, settings }
    }
}

impl AsyncRead for Timed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        let phase = this.phase.load(Ordering::Acquire);
        match result {
            Poll::Ready(Ok(())) if buf.filled().len() > before && matches!(phase, FRESH | IDLE) => {
                this.phase.store(HEAD, Ordering::Release);
                this.timed = HEAD;
                if phase == IDLE {
                    // The first bytes of the next request: its headers are timed from now (the
                    // first request's, from accept).
                    this.deadline.as_mut().reset(Instant::now() + this.settings.header_read_timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if phase != BUSY => {
                if phase == IDLE && this.timed != IDLE {
                    this.timed = IDLE;
                    this.deadline.as_mut().reset(Instant::now() + this.settings.keepalive_timeout);
                }
                match this.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        if phase == IDLE { "keep-alive timeout" } else { "request headers not received in time" },
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            other => {
                if phase == BUSY {
                    this.timed = BUSY;
                }
                other
            }
        }
    }
}

impl AsyncWrite for Timed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.stream).poll_flush(cx);
        // A response has gone out: hyper reads again only when the socket wakes it, so the
        // keep-alive deadline starts here, registered with this task (no extra wake-up per
        // request).
        if flushed.is_ready() && this.timed != IDLE && this.phase.load(Ordering::Acquire) == IDLE {
            this.timed = IDLE;
            this.deadline.as_mut().reset(Instant::now() + this.settings.keepalive_timeout);
            if this.deadline.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
