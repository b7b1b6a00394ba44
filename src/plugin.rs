//! The [`Plugin`] builder: which drivers one socket serves, and how a request
//! body becomes a driver call.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DriverError;
use crate::handshake::{ACTIVATE, ActivateResponse};

/// Default limit on a request body: authorization requests carry API bodies
/// of up to 4 MiB, which base64 turns into about 5.6 MB of JSON.
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Default cap on open connections; the daemon itself uses at most a few.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Default time a client gets to send a request's headers, and then its
/// body, before the connection is closed.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time in-flight requests get to finish once shutdown starts.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The outcome of one endpoint call, before it is turned into HTTP.
pub(crate) enum Reply {
    /// 200 with this JSON body.
    Ok(Bytes),
    /// The request body did not decode: 400.
    BadRequest(String),
    /// The driver failed: 500.
    Failed(DriverError),
}

pub(crate) type Handler = Arc<dyn Fn(Bytes) -> BoxFuture<Reply> + Send + Sync>;

/// The keys a failure answer carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ErrorBody {
    /// `{"Err": msg}`: what the daemon reads from every non-200 answer.
    #[default]
    Err,
    /// `{"Err": msg, "Error": msg}`: IPAM answers are judged by `Error`
    /// when they come with a 200, so a failure carries both keys and stays
    /// a failure for any reader of either.
    ErrAndError,
}

/// One endpoint: its handler and the shape of its failure answers.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) call: Handler,
    pub(crate) error_body: ErrorBody,
}

/// Builds the endpoint table of one plugin kind; each kind module has one.
pub(crate) struct Routes<'a> {
    table: &'a mut HashMap<String, Route>,
    error_body: ErrorBody,
}

impl Routes<'_> {
    /// Sets the failure shape of the endpoints added after this call.
    pub(crate) fn error_body(&mut self, shape: ErrorBody) {
        self.error_body = shape;
    }

    /// Adds an endpoint whose body decodes into `Req` and whose success
    /// encodes from `Res`. An empty body decodes as `{}`.
    pub(crate) fn add<D, Req, Res, F, Fut>(&mut self, endpoint: &str, driver: &Arc<D>, call: F)
    where
        D: Send + Sync + 'static + ?Sized,
        Req: DeserializeOwned + Send + 'static,
        Res: Serialize + Send + 'static,
        F: Fn(Arc<D>, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, DriverError>> + Send + 'static,
    {
        let driver = Arc::clone(driver);
        let name = endpoint.to_owned();
        let handler: Handler = Arc::new(move |body: Bytes| {
            let req = match decode::<Req>(&body) {
                Ok(req) => req,
                Err(err) => {
                    let msg = format!("{name}: invalid request body: {err}");
                    return Box::pin(async move { Reply::BadRequest(msg) }) as BoxFuture<Reply>;
                }
            };
            let fut = call(Arc::clone(&driver), req);
            Box::pin(async move {
                match fut.await {
                    Ok(res) => match serde_json::to_vec(&res) {
                        Ok(bytes) => Reply::Ok(Bytes::from(bytes)),
                        Err(err) => Reply::Failed(
                            DriverError::other("encoding the response").with_source(err),
                        ),
                    },
                    Err(err) => Reply::Failed(err),
                }
            })
        });
        let route = Route {
            call: handler,
            error_body: self.error_body,
        };
        self.table.insert(endpoint.to_owned(), route);
    }
}

/// Decodes a request body the way the daemon's requests need: an empty (or
/// all-whitespace) body is a call without arguments, i.e. `{}`.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice(b"{}")
    } else {
        serde_json::from_slice(body)
    }
}

/// A plugin kind that can be registered on a [`Plugin`].
pub(crate) trait Kind {
    /// The name the handshake lists in `Implements`, e.g. `VolumeDriver`.
    const IMPLEMENTS: &'static str;
}

/// One plugin process: the drivers it serves on a single socket.
///
/// Register one driver per plugin kind, then serve it with
/// [`Plugin::run`] (bind a socket and stop on SIGINT/SIGTERM) or
/// [`Plugin::serve`] (your listener, your shutdown signal).
///
/// `/Plugin.Activate` answers with every registered kind, so one socket may
/// serve, for example, a volume driver and a network driver together.
///
/// ```
/// use docker_plugin_sdk::Plugin;
/// # use std::path::PathBuf;
/// # use docker_plugin_sdk::volume::*;
/// # use docker_plugin_sdk::DriverError;
/// # type R<T> = Result<T, DriverError>;
/// # struct Mine;
/// # #[async_trait::async_trait]
/// # impl VolumeDriver for Mine {
/// #   async fn create(&self, _: CreateRequest) -> R<()> { Ok(()) }
/// #   async fn remove(&self, _: RemoveRequest) -> R<()> { Ok(()) }
/// #   async fn mount(&self, _: MountRequest) -> R<PathBuf> { Ok("/x".into()) }
/// #   async fn unmount(&self, _: UnmountRequest) -> R<()> { Ok(()) }
/// #   async fn path(&self, _: PathRequest) -> R<Option<PathBuf>> { Ok(None) }
/// #   async fn get(&self, r: GetRequest) -> R<Volume> { Err(DriverError::not_found(r.name)) }
/// #   async fn list(&self) -> R<Vec<Volume>> { Ok(vec![]) }
/// # }
/// let plugin = Plugin::new().volume(Mine);
/// assert_eq!(plugin.implements(), ["VolumeDriver"]);
/// ```
#[derive(Clone)]
pub struct Plugin {
    pub(crate) routes: Arc<HashMap<String, Route>>,
    implements: Vec<&'static str>,
    pub(crate) body_limit: usize,
    pub(crate) shutdown_grace: Duration,
    pub(crate) max_connections: usize,
    pub(crate) read_timeout: Duration,
}

impl Plugin {
    /// Creates a plugin that serves no driver yet.
    pub fn new() -> Self {
        let mut plugin = Self {
            routes: Arc::new(HashMap::new()),
            implements: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            read_timeout: DEFAULT_READ_TIMEOUT,
        };
        plugin.install_activate();
        plugin
    }

    /// Limits request bodies to `bytes`; larger ones get a 413 with an
    /// `Err`. The default, [`DEFAULT_BODY_LIMIT`], fits authorization
    /// requests carrying the daemon's largest (4 MiB) API bodies.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long in-flight requests may run once shutdown starts before the
    /// server stops waiting for them. Defaults to
    /// [`DEFAULT_SHUTDOWN_GRACE`], below the 10 seconds the daemon waits
    /// between SIGTERM and SIGKILL for a managed plugin.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Caps the connections served at once; further clients wait in the
    /// listen backlog until one closes. Defaults to
    /// [`DEFAULT_MAX_CONNECTIONS`]; with the body limit it bounds the memory
    /// requests can take.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// How long a client may take to send a request's headers, and then its
    /// body; slower connections are closed (headers) or answered 408
    /// (body). Defaults to [`DEFAULT_READ_TIMEOUT`], longer than the 30
    /// seconds the daemon keeps an idle connection open.
    pub fn read_timeout(mut self, limit: Duration) -> Self {
        self.read_timeout = limit;
        self
    }

    /// The kinds `/Plugin.Activate` reports, in registration order.
    pub fn implements(&self) -> &[&'static str] {
        &self.implements
    }

    /// Registers a driver of kind `K`, replacing any earlier one of that kind.
    pub(crate) fn register<K: Kind>(mut self, add: impl FnOnce(&mut Routes<'_>)) -> Self {
        let table = Arc::make_mut(&mut self.routes);
        add(&mut Routes {
            table,
            error_body: ErrorBody::default(),
        });
        if !self.implements.contains(&K::IMPLEMENTS) {
            self.implements.push(K::IMPLEMENTS);
        }
        self.install_activate();
        self
    }

    /// The handshake answer is fixed once the drivers are known, so it is
    /// encoded once here rather than on every activation.
    fn install_activate(&mut self) {
        let answer = ActivateResponse {
            implements: self.implements.iter().map(|s| (*s).to_owned()).collect(),
        };
        let body = Bytes::from(serde_json::to_vec(&answer).unwrap_or_default());
        let handler: Handler = Arc::new(move |_| {
            let body = body.clone();
            Box::pin(async move { Reply::Ok(body) })
        });
        let route = Route {
            call: handler,
            error_body: ErrorBody::default(),
        };
        Arc::make_mut(&mut self.routes).insert(ACTIVATE.to_owned(), route);
    }

    pub(crate) fn route(&self, endpoint: &str) -> Option<&Route> {
        self.routes.get(endpoint)
    }
}

impl Default for Plugin {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("implements", &self.implements)
            .field("body_limit", &self.body_limit)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_connections", &self.max_connections)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_body_decodes_as_empty_object() {
        let v: serde_json::Value = decode(b" \n").unwrap();
        assert_eq!(v, serde_json::json!({}));
    }
}
