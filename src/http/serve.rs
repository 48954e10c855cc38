//! The serving loop.
//!
//! axum's `serve` has no header-read timeout, so a client that trickles its headers could pin
//! a connection forever and hold up graceful shutdown. This loop drives hyper's HTTP/1.1
//! server directly: a connection must send its first bytes, and then each request's headers,
//! within the header-read timeout; the peer address is attached for the extractors; on
//! shutdown the loop stops accepting, lets in-flight requests finish within a deadline, and
//! returns. (HTTP/1.1 only: protocol sniffing for cleartext HTTP/2 would read before any timer
//! runs, and load balancers speak HTTP/1.1 to their backends.)

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::Service as _;

/// Serve `router` on `listener` until `shutdown` resolves, then drain for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout).keep_alive(true);
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let mut router = router.clone();
            router.call(request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection closed with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("listener closed; waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "shutdown deadline passed; closing remaining connections"),
    }
}
