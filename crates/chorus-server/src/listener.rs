//! The accept loop: every TCP connection from accept to close, under the
//! limits a public server needs before a request is even read.
//!
//! - **Header-read timeout.** A connection has `--header-timeout-ms` to send
//!   a request's headers, whether it is new, idle between keep-alive
//!   requests, or trickling bytes; then it is closed. (hyper's timer runs
//!   whenever a request head is awaited.)
//! - **Body timeout.** A request body (the HTTP API's POSTs) must arrive
//!   whole within `--body-timeout-ms`, or the request gets 408 and the
//!   connection is closed.
//! - **Connection limit.** At most `--max-connections` connections (HTTP and
//!   WebSocket alike) are served. Past it, up to [`RESERVE`] more are
//!   accepted only to answer health checks (`/healthz`, `/readyz`,
//!   `/metrics`) and to refuse everything else with 503
//!   `too_many_connections` (a WebSocket is refused before its upgrade);
//!   past that, new connections are closed at once, so the process never
//!   runs out of file descriptors. Every refusal counts in
//!   `chorus_connections_refused_total`.
//!
//! With TLS (`--tls-cert`), every connection starts with a TLS handshake,
//! which must also finish within the header-read timeout: a client that
//! opens a socket and sends nothing, or trickles its hello, is closed the
//! same way a plain one is.
//!
//! WebSocket connections are counted for their whole life: the count is
//! held by the socket itself, which the upgraded connection keeps.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::tls::Tls;

/// Connections accepted past `--max-connections` to answer health checks
/// and refuse the rest with a clear 503.
pub const RESERVE: usize = 64;

/// Largest request body the HTTP API reads.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What the accept loop enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown`, then lets the connections
/// in flight finish their requests (WebSocket sessions are closed by their
/// own shutdown path).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, tls: Option<Arc<Tls>>, shutdown: CancellationToken) {
    let served = Arc::new(AtomicUsize::new(0));
    let reserve = Arc::new(AtomicUsize::new(0));
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, or the peer already gone:
                    // keep serving those that are here.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small frames go out at once: Nagle's algorithm would hold a cursor
        // update back until the previous one is acknowledged.
        let _ = tcp.set_nodelay(true);
        let at_limit = served.load(Ordering::Acquire) >= limits.max_connections;
        let counter = if at_limit { &reserve } else { &served };
        if at_limit && reserve.load(Ordering::Acquire) >= RESERVE {
            metrics::counter!("chorus_connections_refused_total").increment(1);
            drop(tcp);
            continue;
        }
        let io = Counted::new(tcp, counter.clone(), !at_limit);
        let app = app.clone();
        let shutdown = shutdown.clone();
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(io, app, at_limit, limits, shutdown).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => serve_connection(tls, app, at_limit, limits, shutdown).await,
                    Ok(Err(e)) => debug!("TLS handshake failed: {e}"),
                    Err(_) => debug!("TLS handshake not finished within {:?}", limits.header_timeout),
                },
            }
        });
    }
}

/// Serves HTTP (and WebSocket upgrades) on one connection, plain or TLS.
async fn serve_connection<I>(io: I, app: Router, at_limit: bool, limits: Limits, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| handle(app.clone(), request, at_limit, limits));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(!at_limit);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    let outcome = tokio::select! {
        outcome = conn.as_mut() => outcome,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = outcome {
        debug!("connection ended: {e}");
    }
}

async fn handle(app: Router, request: Request<Incoming>, at_limit: bool, limits: Limits) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    if at_limit && !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        metrics::counter!("chorus_connections_refused_total").increment(1);
        let message = format!("this server is at its limit of {} connections; try again later", limits.max_connections);
        return Ok(refusal(StatusCode::SERVICE_UNAVAILABLE, "too_many_connections", message));
    }
    let (parts, body) = request.into_parts();
    let body = if matches!(parts.method, Method::GET | Method::HEAD) {
        Body::new(body)
    } else {
        // The whole body within the timeout, or nothing: a stalled upload
        // does not hold a connection (or a room) open.
        match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES)).await {
            Ok(Ok(bytes)) => Body::from(bytes),
            Ok(Err(e)) => {
                return Ok(refusal(StatusCode::PAYLOAD_TOO_LARGE, "message_too_large", format!("request body refused: {e} (at most {MAX_BODY_BYTES} bytes)")));
            }
            Err(_) => {
                let message = format!("the request body did not arrive within {} ms", limits.body_timeout.as_millis());
                return Ok(refusal(StatusCode::REQUEST_TIMEOUT, "timeout", message));
            }
        }
    };
    Ok(app.oneshot(Request::from_parts(parts, body)).await.unwrap_or_else(|e| match e {}))
}

/// A refusal the connection ends with.
fn refusal(status: StatusCode, code: &str, message: String) -> Response<Body> {
    let body = json!({ "code": code, "message": message }).to_string();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONNECTION, "close")
        .body(Body::from(body))
        .expect("a valid response")
}

/// A socket that counts itself among the open connections while it lives.
struct Counted<T> {
    inner: T,
    counter: Arc<AtomicUsize>,
    served: bool,
}

impl<T> Counted<T> {
    fn new(inner: T, counter: Arc<AtomicUsize>, served: bool) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        if served {
            metrics::gauge!("chorus_tcp_connections").increment(1.0);
        }
        Self { inner, counter, served }
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
        if self.served {
            metrics::gauge!("chorus_tcp_connections").decrement(1.0);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
