//! Errors: the ones drivers return, and the ones the SDK itself raises.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A boxed error that can cross threads, for sources of any type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure a [`DriverError`] reports.
///
/// The daemon only ever sees the message, so the kind does not change the
/// HTTP answer (always 500 with `{"Err": ...}`). It decides how the SDK logs
/// the failure and lets the daemon-playing client and tests tell failures
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named object (volume, network, pool...) does not exist.
    NotFound,
    /// The request was understood but its content is not acceptable, such as
    /// an unknown option or an invalid name.
    InvalidInput,
    /// The object exists but is busy, such as a volume that is still mounted.
    InUse,
    /// Anything else: I/O failures, backend errors, broken invariants.
    Other,
}

/// The error a driver method returns; the SDK renders it for the daemon.
///
/// Build one with the constructors ([`DriverError::not_found`],
/// [`DriverError::invalid_input`], [`DriverError::in_use`],
/// [`DriverError::other`]) or let `?` convert any standard error: an
/// [`io::Error`] keeps its kind (`NotFound`, `InvalidInput`), everything else
/// becomes [`ErrorKind::Other`].
///
/// The daemon shows the user `<Endpoint>: <message>`, so the message should
/// say what went wrong with which object, in lower case and without a
/// trailing period, e.g. `volume "db" is mounted by 2 containers`.
///
/// `DriverError` deliberately does not implement [`std::error::Error`], so
/// that the blanket conversion from every error type can exist (as with
/// `anyhow::Error`).
pub struct DriverError {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl DriverError {
    /// Creates an error of `kind` with a message shown to the user.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The named object does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The request is not acceptable (bad option, bad name...).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The object is busy, e.g. still mounted.
    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InUse, message)
    }

    /// Any other failure.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// Attaches the underlying cause; its text is appended to the message
    /// the daemon sees.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without its sources.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying cause, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Display for DriverError {
    /// Writes the message followed by each source, separated by `: `, which
    /// is the text the daemon shows after the endpoint name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut next: Option<&(dyn std::error::Error + 'static)> = match &self.source {
            Some(source) => Some(source.as_ref()),
            None => None,
        };
        while let Some(err) = next {
            let text = err.to_string();
            // A source converted with `?` has no message of its own: print
            // it once rather than as "text: text".
            if !text.is_empty() && text != self.message {
                if self.message.is_empty() {
                    f.write_str(&text)?;
                } else {
                    write!(f, ": {text}")?;
                }
            }
            next = err.source();
        }
        Ok(())
    }
}

impl fmt::Debug for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl<E> From<E> for DriverError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        let kind = match (&err as &dyn std::error::Error).downcast_ref::<io::Error>() {
            Some(io) => match io.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
                _ => ErrorKind::Other,
            },
            None => ErrorKind::Other,
        };
        Self {
            kind,
            message: String::new(),
            source: Some(Box::new(err)),
        }
    }
}

/// Errors raised by the SDK itself while binding or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process is already serving on the socket path.
    #[error("a plugin is already running on {}", path.display())]
    AlreadyRunning {
        /// The socket path that is in use.
        path: PathBuf,
    },

    /// Something other than a socket sits at the socket path; the SDK never
    /// deletes it.
    #[error("{} exists and is not a socket; remove it or pick another path", path.display())]
    NotASocket {
        /// The path that holds something else.
        path: PathBuf,
    },

    /// The requested group does not exist.
    #[error("unknown group {group:?}")]
    UnknownGroup {
        /// The group name as given.
        group: String,
    },

    /// The plugin name cannot be used as a socket file name.
    #[error("invalid plugin name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// An I/O operation on the socket or its directory failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What the SDK was doing, e.g. "binding".
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// Accepting connections or installing signal handlers failed.
    #[error("serving failed: {0}")]
    Serve(#[source] io::Error),

    /// A spec file with the plugin's name already exists and names an
    /// address the SDK will not probe or replace (not on this host, or not
    /// `tcp://`).
    #[error("{} already names {addr:?}; remove it to serve the plugin here", path.display())]
    ForeignSpec {
        /// The spec file.
        path: PathBuf,
        /// Its contents, trimmed.
        addr: String,
    },

    /// A managed plugin directory could not be written.
    #[error("plugin directory {}: {reason}", path.display())]
    PluginDir {
        /// The plugin directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The sockets passed by systemd (`LISTEN_FDS`) cannot be served.
    #[error("socket activation: {0}")]
    Activation(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_not_found_keeps_its_kind() {
        let err: DriverError = io::Error::from(io::ErrorKind::NotFound).into();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn display_joins_message_and_sources() {
        let err =
            DriverError::other("creating volume \"a\"").with_source(io::Error::other("disk full"));
        assert_eq!(err.to_string(), "creating volume \"a\": disk full");
    }

    #[test]
    fn converted_error_prints_its_own_text_once() {
        let err: DriverError = io::Error::other("boom").into();
        assert_eq!(err.to_string(), "boom");
    }
}
