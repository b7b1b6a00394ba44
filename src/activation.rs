//! systemd socket activation: serving the listening socket systemd passes
//! as file descriptor 3.

use std::fmt;
use std::os::unix::net::UnixListener as StdUnixListener;

use crate::error::Error;
use crate::plugin::Plugin;

/// A listening socket passed by systemd (or anything that follows its
/// protocol: `LISTEN_FDS`, `LISTEN_PID`, descriptors from 3 on).
///
/// Take it with [`ActivatedSocket::from_env`] and serve it with
/// [`Plugin::serve_activated`]; [`Plugin::run`] does both by itself when the
/// variables are set. The socket file belongs to systemd's `.socket` unit:
/// the plugin never creates or removes it.
pub struct ActivatedSocket {
    inner: Passed,
}

enum Passed {
    Unix(StdUnixListener),
    Tcp(std::net::TcpListener),
}

impl ActivatedSocket {
    /// Takes the socket systemd passed to this process, if any.
    ///
    /// Returns `Ok(None)` unless `LISTEN_FDS` is set and `LISTEN_PID` is
    /// this process's id (a child inheriting the variables must not serve
    /// its parent's socket). Either way `LISTEN_FDS` and `LISTEN_PID` are
    /// removed from the environment, so processes this one starts do not
    /// inherit them.
    ///
    /// Changing the environment races with other threads reading it: call
    /// this early in `main`, before starting threads, if your program reads
    /// environment variables from other threads.
    ///
    /// # Errors
    ///
    /// [`Error::Activation`] if more than one socket was passed (a plugin
    /// serves one: give the `.socket` unit a single `ListenStream=`), or if
    /// the descriptor is not a Unix or TCP stream socket.
    pub fn from_env() -> Result<Option<Self>, Error> {
        let ours = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            == Some(std::process::id());
        // Reads and clears the variables, whichever process they were for.
        let mut fds = listenfd::ListenFd::from_env();
        if !ours || fds.len() == 0 {
            if fds.len() > 0 {
                tracing::debug!("LISTEN_FDS was set for another process; ignored");
            }
            return Ok(None);
        }
        if fds.len() > 1 {
            return Err(Error::Activation(format!(
                "{} sockets were passed; a plugin serves exactly one",
                fds.len()
            )));
        }

        let unix = fds.take_unix_listener(0);
        let inner = match unix {
            Ok(Some(listener)) => Passed::Unix(listener),
            _ => match fds.take_tcp_listener(0) {
                Ok(Some(listener)) => Passed::Tcp(listener),
                _ => {
                    return Err(Error::Activation(
                        "descriptor 3 is not a Unix or TCP stream socket".to_owned(),
                    ));
                }
            },
        };
        let socket = Self { inner };
        tracing::debug!(socket = %socket, "took the socket passed by systemd");
        Ok(Some(socket))
    }

    /// Whether the socket is a Unix socket (else TCP).
    pub fn is_unix(&self) -> bool {
        matches!(self.inner, Passed::Unix(_))
    }
}

impl fmt::Display for ActivatedSocket {
    /// The socket's address: a path, or `host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Passed::Unix(listener) => match listener.local_addr() {
                Ok(addr) => match addr.as_pathname() {
                    Some(path) => write!(f, "{}", path.display()),
                    None => f.write_str("unnamed unix socket"),
                },
                Err(_) => f.write_str("unix socket"),
            },
            Passed::Tcp(listener) => match listener.local_addr() {
                Ok(addr) => write!(f, "{addr}"),
                Err(_) => f.write_str("tcp socket"),
            },
        }
    }
}

impl fmt::Debug for ActivatedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ActivatedSocket")
            .field(&self.to_string())
            .finish()
    }
}

impl Plugin {
    /// Serves the socket systemd passed until `shutdown` completes, as
    /// [`Plugin::serve`] does. The socket file is left to systemd.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Serve`] if the socket cannot be registered with the runtime
    /// or accepting fails.
    pub async fn serve_activated<F>(self, socket: ActivatedSocket, shutdown: F) -> Result<(), Error>
    where
        F: std::future::Future<Output = ()> + Send,
    {
        tracing::info!(
            socket = %socket,
            implements = ?self.implements(),
            "serving the socket passed by systemd"
        );
        match socket.inner {
            Passed::Unix(listener) => {
                listener.set_nonblocking(true).map_err(Error::Serve)?;
                let listener =
                    tokio::net::UnixListener::from_std(listener).map_err(Error::Serve)?;
                self.serve(listener, shutdown).await
            }
            Passed::Tcp(listener) => {
                listener.set_nonblocking(true).map_err(Error::Serve)?;
                let listener = tokio::net::TcpListener::from_std(listener).map_err(Error::Serve)?;
                self.serve(listener, shutdown).await
            }
        }
    }
}
