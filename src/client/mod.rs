//! A client that talks to a plugin socket exactly as the Docker daemon does,
//! for testing plugins without Docker.
//!
//! Requests carry the daemon's headers (`Accept` with the plugin media type,
//! `User-Agent: Go-http-client/1.1`, a `Host` of `plugin.moby.localhost` by
//! default, no `Content-Type`), calls without arguments send the same bodies
//! the daemon sends (nothing for `Plugin.Activate`, `{}` for
//! `VolumeDriver.List`), and answers are judged as the daemon judges them:
//! only a 200 is success, and an `Err` in the body is a failure.
//!
//! ```no_run
//! use docker_plugin_sdk::client::Client;
//!
//! # async fn f() -> Result<(), docker_plugin_sdk::client::ClientError> {
//! let client = Client::new("/run/docker/plugins/local-dir.sock");
//! assert!(client.activate().await?.iter().any(|k| k == "VolumeDriver"));
//! client.volume().create("data", None).await?;
//! let path = client.volume().mount("data", "id-1").await?;
//! println!("mounted at {}", path.display());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, HOST, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::authz::JsonValue;
use crate::handshake::{ACTIVATE, ActivateResponse, MEDIA_TYPE};

mod authz;
mod ipam;
mod network;
mod volume;

pub use authz::AuthzClient;
pub use ipam::IpamClient;
pub use network::NetworkClient;
pub use volume::VolumeClient;

/// The largest answer body the client reads.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// The `Host` header of current daemons on Unix sockets.
pub const DAEMON_HOST: &str = "plugin.moby.localhost";

/// Why a call through [`Client`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting or exchanging HTTP failed.
    #[error("{endpoint}: {source}")]
    Transport {
        /// The endpoint called.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The plugin answered with an error, as the daemon would report it.
    #[error("{endpoint}: {message}")]
    Plugin {
        /// The endpoint called.
        endpoint: String,
        /// The HTTP status (200 when the error came in a 200 body's `Err`).
        status: u16,
        /// The plugin's `Err` text, or the raw body when it had none.
        message: String,
    },
    /// No answer within the deadline; the daemon would give up too.
    #[error("{endpoint}: no answer after {after:?}")]
    Timeout {
        /// The endpoint called.
        endpoint: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// A 200 answer the daemon would reject, such as an `Err` that is not a
    /// string.
    #[error("{endpoint}: malformed answer: {reason}")]
    Malformed {
        /// The endpoint called.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A 200 answer the daemon could not decode either.
    #[error("{endpoint}: undecodable answer: {source}")]
    Decode {
        /// The endpoint called.
        endpoint: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The plugin's error message, if the plugin answered with one.
    pub fn plugin_message(&self) -> Option<&str> {
        match self {
            Self::Plugin { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A raw answer: what came back, before any interpretation.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body bytes.
    pub body: Bytes,
}

/// Talks to one plugin socket the way the daemon does.
///
/// Connections are kept alive and reused; concurrent calls on one client
/// open more connections as needed, as the daemon does.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    host: HeaderValue,
    timeout: Option<Duration>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Client {
    /// A client for the plugin listening on the Unix socket at `path`.
    /// Nothing is connected until the first call.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            host: HeaderValue::from_static(DAEMON_HOST),
            timeout: None,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `host` as the `Host` header instead of
    /// [`DAEMON_HOST`]; Docker 20.10 sent an empty one.
    ///
    /// # Panics
    ///
    /// If `host` is not a valid header value.
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = HeaderValue::from_str(host).expect("invalid Host header value");
        self
    }

    /// Gives up on every call after `limit`, instead of the daemon's own
    /// deadlines (2 minutes for `VolumeDriver.Create` and `Mount`, 1 minute
    /// for the other volume calls, none for the rest).
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `body` to `/endpoint` byte for byte and returns the answer
    /// uninterpreted; for replaying captured daemon requests.
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] if the exchange fails,
    /// [`ClientError::Timeout`] if no answer arrives in time.
    pub async fn call_raw(
        &self,
        endpoint: &str,
        body: impl Into<Bytes>,
    ) -> Result<RawResponse, ClientError> {
        let exchange = self.exchange(endpoint, body.into());
        match self.timeout.or_else(|| daemon_deadline(endpoint)) {
            Some(limit) => {
                tokio::time::timeout(limit, exchange)
                    .await
                    .map_err(|_| ClientError::Timeout {
                        endpoint: endpoint.to_owned(),
                        after: limit,
                    })?
            }
            None => exchange.await,
        }
    }

    async fn exchange(&self, endpoint: &str, body: Bytes) -> Result<RawResponse, ClientError> {
        let transport = |source: Box<dyn std::error::Error + Send + Sync>| ClientError::Transport {
            endpoint: endpoint.to_owned(),
            source,
        };
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("/{endpoint}"))
            .header(HOST, self.host.clone())
            .header(USER_AGENT, "Go-http-client/1.1")
            .header(ACCEPT, MEDIA_TYPE)
            .body(Full::new(body))
            .map_err(|e| transport(e.into()))?;

        let mut sender = self.connection().await.map_err(transport)?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| transport(e.into()))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // No plugin answer is anywhere near this; a runaway one must not
        // take the test process's memory with it.
        let announced = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_ANSWER as u64) {
            let msg = format!(
                "answer of {} bytes exceeds {MAX_ANSWER}",
                announced.unwrap_or(0)
            );
            return Err(transport(msg.into()));
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sender);
        Ok(RawResponse {
            status,
            content_type,
            body,
        })
    }

    /// Calls `endpoint` with `req` encoded as the daemon encodes it (JSON
    /// plus a newline) and decodes the answer, failing as the daemon would.
    ///
    /// # Errors
    ///
    /// [`ClientError::Plugin`] for a non-200 answer or a non-empty `Err`
    /// in the body, [`ClientError::Decode`] for a 200 that does not decode
    /// into `Res`, and the errors of [`Client::call_raw`].
    pub async fn call<Req, Res>(&self, endpoint: &str, req: &Req) -> Result<Res, ClientError>
    where
        Req: Serialize + ?Sized,
        Res: DeserializeOwned,
    {
        self.call_judged_by(endpoint, req, "err").await
    }

    /// [`Client::call`], reading a 200 answer's error from `ok_key`.
    pub(crate) async fn call_judged_by<Req, Res>(
        &self,
        endpoint: &str,
        req: &Req,
        ok_key: &str,
    ) -> Result<Res, ClientError>
    where
        Req: Serialize + ?Sized,
        Res: DeserializeOwned,
    {
        let mut body = serde_json::to_vec(req).map_err(|source| ClientError::Decode {
            endpoint: endpoint.to_owned(),
            source,
        })?;
        body.push(b'\n');
        let raw = self.call_raw(endpoint, body).await?;
        interpret_with(endpoint, raw, ok_key)
    }

    /// `Plugin.Activate` with the daemon's empty body; returns `Implements`.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`].
    pub async fn activate(&self) -> Result<Vec<String>, ClientError> {
        let raw = self.call_raw(ACTIVATE, Bytes::new()).await?;
        let answer: ActivateResponse = interpret(ACTIVATE, raw)?;
        Ok(answer.implements)
    }

    /// Typed `AuthZPlugin.*` calls, judged as the daemon judges them: only
    /// `Allow` and `Msg` count.
    pub fn authz(&self) -> AuthzClient<'_> {
        AuthzClient::new(self)
    }

    /// Typed `VolumeDriver.*` calls.
    pub fn volume(&self) -> VolumeClient<'_> {
        VolumeClient::new(self)
    }

    /// Typed `NetworkDriver.*` calls.
    pub fn network(&self) -> NetworkClient<'_> {
        NetworkClient::new(self)
    }

    /// Typed `IpamDriver.*` calls, judged by `Error` as the daemon judges
    /// IPAM answers.
    pub fn ipam(&self) -> IpamClient<'_> {
        IpamClient::new(self)
    }

    async fn connection(
        &self,
    ) -> Result<SendRequest<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                None => break,
            }
        }
        let stream = tokio::net::UnixStream::connect(&self.path).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::trace!(error = %err, "client connection ended");
            }
        });
        Ok(sender)
    }
}

/// How long the daemon waits for each call; only volume calls have a
/// deadline.
fn daemon_deadline(endpoint: &str) -> Option<Duration> {
    match endpoint {
        "VolumeDriver.Create" | "VolumeDriver.Mount" => Some(Duration::from_secs(120)),
        e if e.starts_with("VolumeDriver.") => Some(Duration::from_secs(60)),
        _ => None,
    }
}

/// Judges an answer as the daemon does: anything but 200 is an error whose
/// text is the `Err` key (any case) or else the raw body; a 200 whose `Err`
/// is non-empty is an error too.
pub(crate) fn interpret<Res: DeserializeOwned>(
    endpoint: &str,
    raw: RawResponse,
) -> Result<Res, ClientError> {
    interpret_with(endpoint, raw, "err")
}

/// Like [`interpret`], reading the error of a 200 answer from `ok_key`
/// (matched in any case): IPAM answers carry it in `Error`, not `Err`.
pub(crate) fn interpret_with<Res: DeserializeOwned>(
    endpoint: &str,
    raw: RawResponse,
    ok_key: &str,
) -> Result<Res, ClientError> {
    // Keys are matched as the daemon's Go decoder matches them: in any
    // case, the last one winning; a `null` counts as absent.
    let parsed = JsonValue::parse(&raw.body).ok();
    let field = |key: &str| -> Result<Option<String>, ClientError> {
        match parsed.as_ref().and_then(|v| v.get(&[key])) {
            None => Ok(None),
            Some(JsonValue::String(s)) if s.is_empty() => Ok(None),
            Some(JsonValue::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ClientError::Malformed {
                endpoint: endpoint.to_owned(),
                reason: format!("its {key:?} field is not a string: {other:?}"),
            }),
        }
    };

    if raw.status != StatusCode::OK {
        let text = String::from_utf8_lossy(&raw.body).trim().to_owned();
        let message = match field("err").ok().flatten() {
            Some(message) => message,
            None if text.is_empty() => format!("HTTP {} with an empty body", raw.status),
            None => text,
        };
        return Err(ClientError::Plugin {
            endpoint: endpoint.to_owned(),
            status: raw.status.as_u16(),
            message,
        });
    }
    if let Some(message) = field(ok_key)? {
        return Err(ClientError::Plugin {
            endpoint: endpoint.to_owned(),
            status: 200,
            message,
        });
    }
    serde_json::from_slice(&raw.body).map_err(|source| ClientError::Decode {
        endpoint: endpoint.to_owned(),
        source,
    })
}
