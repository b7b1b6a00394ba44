//! Binding the plugin's Unix socket safely, and serving on it until a signal.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixListener;

use crate::activation::ActivatedSocket;
use crate::error::Error;
use crate::handshake::PLUGIN_SOCKET_DIR;
use crate::plugin::Plugin;

/// Where and how to create a plugin's Unix socket.
///
/// ```
/// use docker_plugin_sdk::SocketOptions;
///
/// let opts = SocketOptions::for_plugin("local-dir")?.group("docker");
/// assert_eq!(opts.path().to_str(), Some("/run/docker/plugins/local-dir.sock"));
/// # Ok::<(), docker_plugin_sdk::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SocketOptions {
    path: PathBuf,
    mode: u32,
    group: Option<String>,
}

impl SocketOptions {
    /// The socket the daemon finds for plugin `name`:
    /// `/run/docker/plugins/NAME.sock`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] if `name` is empty, contains `/` or a NUL
    /// byte, starts with `.`, or makes the path longer than a socket address
    /// allows.
    pub fn for_plugin(name: &str) -> Result<Self, Error> {
        check_name(name)?;
        let path = Path::new(PLUGIN_SOCKET_DIR).join(format!("{name}.sock"));
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::InvalidName {
                name: name.to_owned(),
                reason: "the socket path would exceed 107 bytes",
            });
        }
        Ok(Self::at(path))
    }

    /// A socket at an explicit path (for tests, spec files or managed
    /// plugins).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            mode: 0o660,
            group: None,
        }
    }

    /// Permission bits of the socket file; 0o660 by default, so that only
    /// root and the [group](Self::group) can talk to the plugin.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Group owning the socket file: a name from `/etc/group` or a numeric
    /// gid. Groups known only to NSS services (LDAP...) must be given by
    /// gid.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the parent directory, clears a stale socket, binds, and sets
    /// the mode and group.
    ///
    /// A socket file nobody listens on (left by a crash) is replaced. A
    /// socket someone listens on is left alone and reported as
    /// [`Error::AlreadyRunning`]. Anything else at the path is reported as
    /// [`Error::NotASocket`] and never deleted.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// The cases above, [`Error::UnknownGroup`], and [`Error::Io`] for
    /// failures to create the directory, bind, or change ownership.
    pub fn bind(&self) -> Result<BoundSocket, Error> {
        let path = &self.path;
        let io_err = |context: &'static str| {
            move |source| Error::Io {
                context,
                path: path.clone(),
                source,
            }
        };
        let gid = self.group.as_deref().map(resolve_group).transpose()?;

        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err("creating the directory of"))?;
        }
        clear_stale(path)?;

        let listener = UnixListener::bind(path).map_err(|err| {
            if err.kind() == io::ErrorKind::AddrInUse {
                // Another process bound it between our check and our bind.
                Error::AlreadyRunning { path: path.clone() }
            } else {
                Error::Io {
                    context: "binding",
                    path: path.clone(),
                    source: err,
                }
            }
        })?;
        let bound = BoundSocket {
            identity: identity(path).map_err(io_err("inspecting"))?,
            listener: Some(listener),
            path: path.clone(),
        };

        fs::set_permissions(path, fs::Permissions::from_mode(self.mode))
            .map_err(io_err("setting the mode of"))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(io_err("changing the group of"))?;
        }
        tracing::debug!(path = %path.display(), mode = format_args!("{:o}", self.mode), "bound");
        Ok(bound)
    }
}

/// `sun_path` holds 108 bytes including the terminating NUL.
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// Refuses plugin names that cannot be one file name in a plugin directory.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(invalid("it contains '/' or a NUL byte"));
    }
    if name.starts_with('.') {
        return Err(invalid("it starts with '.'"));
    }
    Ok(())
}

/// A bound plugin socket whose file is removed when this value is dropped,
/// unless another process has replaced it since.
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    identity: (u64, u64),
}

impl BoundSocket {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the listener out to serve it; the file is still removed when
    /// this value drops.
    ///
    /// # Panics
    ///
    /// If called twice.
    pub fn take_listener(&mut self) -> UnixListener {
        self.listener.take().expect("listener already taken")
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        // Only remove the file we created: a second instance may have
        // replaced a socket it believed stale.
        if identity(&self.path).ok() == Some(self.identity) {
            match fs::remove_file(&self.path) {
                Ok(()) => tracing::debug!(path = %self.path.display(), "removed socket"),
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), error = %err, "removing socket")
                }
            }
        }
    }
}

pub(crate) fn identity(path: &Path) -> io::Result<(u64, u64)> {
    let meta = fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Removes a socket file nobody listens on; refuses everything else.
fn clear_stale(path: &Path) -> Result<(), Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                context: "inspecting",
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket {
            path: path.to_owned(),
        });
    }
    match probe(path) {
        Probe::Listening => Err(Error::AlreadyRunning {
            path: path.to_owned(),
        }),
        Probe::Refused => {
            tracing::info!(path = %path.display(), "replacing stale socket");
            fs::remove_file(path).map_err(|source| Error::Io {
                context: "removing stale socket",
                path: path.to_owned(),
                source,
            })
        }
        Probe::Failed(source) => Err(Error::Io {
            context: "probing existing socket",
            path: path.to_owned(),
            source,
        }),
    }
}

enum Probe {
    Listening,
    Refused,
    Failed(io::Error),
}

/// How long a connection attempt may take before the socket counts as
/// held by a live process that is not accepting (frozen, or flooded).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Tries to connect to `path`. A connect to a listener whose backlog is
/// full blocks, and std offers no timeout for Unix sockets, so the attempt
/// runs on a helper thread that is abandoned if it does not finish in time.
fn probe(path: &Path) -> Probe {
    let (tx, rx) = std::sync::mpsc::channel();
    let target = path.to_owned();
    let spawned = std::thread::Builder::new()
        .name("socket-probe".into())
        .spawn(move || {
            let _ = tx.send(std::os::unix::net::UnixStream::connect(&target).map(drop));
        });
    if let Err(err) = spawned {
        return Probe::Failed(err);
    }
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(Ok(())) => Probe::Listening,
        Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => Probe::Refused,
        Ok(Err(err)) => Probe::Failed(err),
        Err(_) => Probe::Listening,
    }
}

/// Looks a group up by gid or by name in `/etc/group`.
fn resolve_group(group: &str) -> Result<u32, Error> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let unknown = || Error::UnknownGroup {
        group: group.to_owned(),
    };
    let table = fs::read_to_string("/etc/group").map_err(|_| unknown())?;
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            Some((name, gid))
        })
        .find(|(name, _)| *name == group)
        .map(|(_, gid)| gid)
        .ok_or_else(unknown)
}

impl Plugin {
    /// Binds the socket described by `socket` and serves until SIGINT or
    /// SIGTERM; then lets requests in flight finish (within the
    /// [shutdown grace](Plugin::shutdown_grace)) and removes the socket file.
    ///
    /// This is what a plugin's `main` usually calls:
    ///
    /// ```no_run
    /// # async fn f(plugin: docker_plugin_sdk::Plugin) -> Result<(), docker_plugin_sdk::Error> {
    /// use docker_plugin_sdk::SocketOptions;
    /// plugin.run(SocketOptions::for_plugin("my-volumes")?).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// When systemd started the process through socket activation
    /// (`LISTEN_PID` is this process), the socket it passed is served
    /// instead and `socket` is not used: see [`ActivatedSocket`].
    ///
    /// # Errors
    ///
    /// Everything [`SocketOptions::bind`] and [`ActivatedSocket::from_env`]
    /// report, and [`Error::Serve`] if signal handlers cannot be installed
    /// or accepting fails.
    pub async fn run(self, socket: SocketOptions) -> Result<(), Error> {
        // Install the handlers before binding, so that a signal arriving
        // right after the socket appears still cleans it up.
        let signals = shutdown_signal().map_err(Error::Serve)?;
        if let Some(activated) = ActivatedSocket::from_env()? {
            return self.serve_activated(activated, signals).await;
        }
        let mut bound = socket.bind()?;
        tracing::info!(path = %bound.path().display(), implements = ?self.implements(), "serving");
        let listener = bound.take_listener();
        let result = self.serve(listener, signals).await;
        drop(bound);
        result
    }
}

/// A future that completes on the first SIGINT or SIGTERM. While it
/// exists, SIGHUP no longer terminates the process.
///
/// # Errors
///
/// If the signal handlers cannot be installed.
pub fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    // Left to its default, SIGHUP (a closed terminal, a reload request
    // meant for another process) would kill the plugin and strand its
    // socket, which stalls the daemon. Listening for it makes it harmless;
    // plugins that reload on SIGHUP listen for it themselves.
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = int.recv() => break tracing::info!("SIGINT received; shutting down"),
                _ = term.recv() => break tracing::info!("SIGTERM received; shutting down"),
                _ = hup.recv() => tracing::debug!("SIGHUP received; not a shutdown signal"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_that_escape_the_directory_are_refused() {
        for name in ["", "a/b", "../x", ".hidden", "nul\0"] {
            assert!(SocketOptions::for_plugin(name).is_err(), "{name:?}");
        }
        let long = "x".repeat(100);
        assert!(SocketOptions::for_plugin(&long).is_err());
    }

    #[test]
    fn numeric_group_needs_no_lookup() {
        assert_eq!(resolve_group("4242").unwrap(), 4242);
        assert!(matches!(
            resolve_group("no-such-group-here"),
            Err(Error::UnknownGroup { .. })
        ));
    }
}
