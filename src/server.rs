//! Serving a [`Plugin`] over HTTP/1.1 the way the daemon's client expects.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::error::{Error, ErrorKind};
use crate::handshake::MEDIA_TYPE;
use crate::plugin::{BoxFuture, ErrorBody, Plugin, Reply};

/// A listening socket the server can accept connections from.
///
/// Implemented for Tokio's Unix and TCP listeners.
pub trait Listener: Send + 'static {
    /// One accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&self) -> io::Result<Self::Io> {
        UnixListener::accept(self).await.map(|(io, _)| io)
    }
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<Self::Io> {
        let (io, _) = TcpListener::accept(self).await?;
        // Replies are small and written at once: waiting to coalesce them
        // only adds latency.
        io.set_nodelay(true)?;
        Ok(io)
    }
}

impl Plugin {
    /// Serves this plugin on `listener` until `shutdown` completes.
    ///
    /// Each connection is served on its own task and each request's driver
    /// call on its own task, so a slow call never delays another one. When
    /// `shutdown` completes the server stops accepting, closes idle
    /// keep-alive connections, and waits up to the
    /// [shutdown grace](Plugin::shutdown_grace) for requests in flight.
    ///
    /// The caller owns the listener and, for a Unix socket, its file: see
    /// [`Plugin::run`] for the variant that binds and cleans up.
    ///
    /// # Errors
    ///
    /// Fails only if accepting connections fails persistently in a way that
    /// is not about one connection (e.g. the listener was closed).
    pub async fn serve<L, F>(self, listener: L, shutdown: F) -> Result<(), Error>
    where
        L: Listener,
        F: Future<Output = ()> + Send,
    {
        let graceful = GracefulShutdown::new();
        let grace = self.shutdown_grace;
        // One copy shared by every connection and request.
        let shared = Arc::new(self);
        // Each connection holds a permit: at the cap the server stops
        // accepting, so leaked or hostile connections cannot exhaust file
        // descriptors or memory.
        let permits = Arc::new(Semaphore::new(shared.max_connections.max(1)));
        tokio::pin!(shutdown);

        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let io = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(io) => io,
                    Err(err) if is_per_connection(&err) => {
                        tracing::debug!(error = %err, "accept failed for one connection");
                        continue;
                    }
                    Err(err) if is_resource_exhaustion(&err) => {
                        // Out of file descriptors: back off instead of
                        // spinning, connections will free some.
                        tracing::warn!(error = %err, "accept failed; retrying shortly");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(err) => return Err(Error::Serve(err)),
                },
            };
            spawn_connection(&shared, io, &graceful, permit);
        }

        drop(listener);
        tracing::debug!("shutting down; waiting for requests in flight");
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "requests still running after the shutdown grace period"
            );
        }
        Ok(())
    }

    /// Answers one HTTP request.
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let endpoint = req.uri().path().trim_start_matches('/').to_owned();
        let span = tracing::debug_span!("request", endpoint = %endpoint);
        let started = Instant::now();
        let response = self.dispatch(&endpoint, req).instrument(span.clone()).await;
        span.in_scope(|| {
            tracing::debug!(
                status = response.status().as_u16(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "handled"
            );
        });
        response
    }

    async fn dispatch(&self, endpoint: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(route) = self.route(endpoint) else {
            return error_response(
                ErrorBody::Err,
                StatusCode::NOT_FOUND,
                &format!("{endpoint}: this plugin does not implement this endpoint"),
            );
        };
        // The daemon only ever POSTs; a GET from a curious human gets a clear
        // answer rather than a driver call.
        let shape = route.error_body;
        if req.method() != Method::POST {
            return error_response(
                shape,
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{endpoint}: use POST, not {}", req.method()),
            );
        }

        let too_large = |declared: Option<u64>| {
            let msg = format!(
                "{endpoint}: request body{} is larger than the limit of {} bytes",
                declared
                    .map(|n| format!(" of {n} bytes"))
                    .unwrap_or_default(),
                self.body_limit
            );
            error_response(shape, StatusCode::PAYLOAD_TOO_LARGE, &msg)
        };
        // Refused before reading a byte when the length is announced.
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.body_limit as u64) {
            return too_large(declared);
        }

        let collect = Limited::new(req.into_body(), self.body_limit).collect();
        let Ok(collected) = tokio::time::timeout(self.read_timeout, collect).await else {
            let msg = format!(
                "{endpoint}: the request body did not arrive within {:?}",
                self.read_timeout
            );
            return error_response(shape, StatusCode::REQUEST_TIMEOUT, &msg);
        };
        let body = match collected {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
                return too_large(None);
            }
            Err(err) => {
                let msg = format!("{endpoint}: reading the request body failed: {err}");
                return error_response(shape, StatusCode::BAD_REQUEST, &msg);
            }
        };

        match DriverCall::new((route.call)(body)).await {
            Ok(Reply::Ok(json)) => json_response(StatusCode::OK, json),
            Ok(Reply::BadRequest(msg)) => {
                tracing::debug!(error = %msg, "rejected request");
                error_response(shape, StatusCode::BAD_REQUEST, &msg)
            }
            Ok(Reply::Failed(err)) => {
                match err.kind() {
                    // The daemon asks Get before every Create: a missing
                    // volume is routine, not something an operator must see.
                    ErrorKind::NotFound => tracing::debug!(endpoint, error = %err, "driver error"),
                    _ => tracing::warn!(endpoint, error = %err, "driver error"),
                }
                error_response(shape, StatusCode::INTERNAL_SERVER_ERROR, &err.to_string())
            }
            Err(msg) => {
                tracing::error!(endpoint, panic = %msg, "driver panicked");
                error_response(
                    shape,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("{endpoint}: the plugin failed unexpectedly: {msg}"),
                )
            }
        }
    }
}

fn spawn_connection<Io>(
    plugin: &Arc<Plugin>,
    io: Io,
    graceful: &GracefulShutdown,
    permit: OwnedSemaphorePermit,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let read_timeout = plugin.read_timeout;
    let plugin = Arc::clone(plugin);
    let quiet = Arc::new(Quiet::new());
    let watched = Arc::clone(&quiet);
    let service = hyper::service::service_fn(move |req| {
        let plugin = Arc::clone(&plugin);
        let busy = Busy::start(&quiet);
        async move {
            let response = plugin.handle(req).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .half_close(true)
        .serve_connection(TokioIo::new(io), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        tokio::select! {
            result = conn => {
                if let Err(err) = result {
                    tracing::trace!(error = %err, "connection ended with an error");
                }
            }
            () = watched.too_long(read_timeout) => {
                tracing::debug!(?read_timeout, "closing a connection that sent no request");
            }
        }
        drop(permit);
    });
}

/// How long a connection has gone without a request: since it opened or
/// since its last answer, while no request is being served.
///
/// This does the job of a header read timeout (a client must send a whole
/// request head within the limit, however it drips the bytes) and of an
/// idle timeout, with one timer per connection that wakes a few times per
/// limit instead of a timer per request, which measurably slowed serving.
struct Quiet {
    started: Instant,
    /// Milliseconds after `started` at which the connection became quiet.
    since_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Quiet {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            since_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Completes once the connection has been quiet for `limit`.
    async fn too_long(&self, limit: Duration) {
        let limit_ms = limit.as_millis() as u64;
        let tick = (limit / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let quiet_for = self
                .now_ms()
                .saturating_sub(self.since_ms.load(Ordering::Relaxed));
            if self.in_flight.load(Ordering::Acquire) == 0 && quiet_for >= limit_ms {
                return;
            }
        }
    }
}

/// Marks a request in flight on its connection; the connection is quiet
/// again from the moment this is dropped.
struct Busy(Arc<Quiet>);

impl Busy {
    fn start(quiet: &Arc<Quiet>) -> Self {
        quiet.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(quiet))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.since_ms.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Serialize)]
struct ErrBody<'a> {
    #[serde(rename = "Err")]
    err: &'a str,
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn error_response(shape: ErrorBody, status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    // A message can be empty only if a driver made it so; the daemon treats
    // an empty `Err` as no error at all, so say something.
    let msg = if msg.is_empty() { "unknown error" } else { msg };
    let error = (shape == ErrorBody::ErrAndError).then_some(msg);
    let body = serde_json::to_vec(&ErrBody { err: msg, error }).unwrap_or_default();
    json_response(status, Bytes::from(body))
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    response
}

/// A driver call, polled in the connection's own task with the two
/// guarantees a task of its own would give, without the cost of one per
/// request: a panic becomes an answer instead of tearing the connection
/// down, and a call whose client hung up (hyper then drops this future) is
/// handed to a background task and finished, never cancelled half-way.
struct DriverCall {
    call: Option<BoxFuture<Reply>>,
}

impl DriverCall {
    fn new(call: BoxFuture<Reply>) -> Self {
        Self { call: Some(call) }
    }
}

impl Future for DriverCall {
    /// The reply, or the panic message.
    type Output = Result<Reply, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(call) = self.call.as_mut() else {
            return Poll::Ready(Err("driver call polled after it finished".to_owned()));
        };
        let polled = panic::catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx)));
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(reply)) => Ok(reply),
            Err(payload) => Err(panic_message(payload.as_ref())),
        };
        // Finished (or broken by a panic): nothing is left to hand off.
        self.call = None;
        Poll::Ready(outcome)
    }
}

impl Drop for DriverCall {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::debug!("client left before the answer; finishing the call anyway");
                runtime.spawn(call.in_current_span());
            }
            Err(_) => tracing::warn!("runtime gone; a driver call was abandoned"),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}

fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

fn is_resource_exhaustion(err: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(err.raw_os_error(), Some(24 | 23 | 105 | 12))
}
