//! Serving on TCP, found by the daemon through a `.spec` file.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::error::Error;
use crate::plugin::Plugin;
use crate::socket::{check_name, identity, shutdown_signal};

/// The first directory the daemon searches for spec files.
pub const SPEC_DIR: &str = "/etc/docker/plugins";

/// Where a TCP plugin listens and where its spec file goes.
///
/// The daemon finds plugin `NAME` through `SPEC_DIR/NAME.spec`, a file
/// holding one address such as `tcp://127.0.0.1:40123`. The daemon speaks
/// plain, unauthenticated HTTP to it: anyone who can reach the port can
/// call the plugin, so the default address is loopback and an ephemeral
/// port.
///
/// TLS (the `.json` spec form with `TLSConfig`) is not supported.
///
/// ```
/// use docker_plugin_sdk::TcpOptions;
///
/// let opts = TcpOptions::for_plugin("remote-vols")?.addr("127.0.0.1:7070".parse()?);
/// assert_eq!(opts.spec_path().to_str(), Some("/etc/docker/plugins/remote-vols.spec"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TcpOptions {
    name: String,
    addr: SocketAddr,
    spec_dir: PathBuf,
}

impl TcpOptions {
    /// Plugin `name` on `127.0.0.1` with a port the kernel picks, announced
    /// in `/etc/docker/plugins/NAME.spec`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] if `name` is empty, contains `/` or a NUL
    /// byte, or starts with `.`.
    pub fn for_plugin(name: &str) -> Result<Self, Error> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            spec_dir: PathBuf::from(SPEC_DIR),
        })
    }

    /// The address to listen on; port 0 lets the kernel pick one, which the
    /// spec file then records.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Writes the spec file into `dir` instead of [`SPEC_DIR`] (for tests,
    /// or `/usr/lib/docker/plugins`, the daemon's second place to look).
    pub fn spec_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spec_dir = dir.into();
        self
    }

    /// The spec file: `<spec dir>/<name>.spec`.
    pub fn spec_path(&self) -> PathBuf {
        self.spec_dir.join(format!("{}.spec", self.name))
    }

    /// Binds the address, then writes the spec file naming it.
    ///
    /// A spec file left by a crash (its loopback address no longer answers)
    /// is replaced. One whose address answers is reported as
    /// [`Error::AlreadyRunning`]; one naming another host or scheme as
    /// [`Error::ForeignSpec`]. The file appears atomically, so the daemon
    /// never reads half of it.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// The cases above, and [`Error::Io`] if binding, creating the spec
    /// directory or writing the file fails.
    pub fn bind(&self) -> Result<BoundTcp, Error> {
        let spec = self.spec_path();
        let io_err = |context: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io {
                context,
                path,
                source,
            }
        };
        check_existing_spec(&spec)?;

        let addr_path = PathBuf::from(self.addr.to_string());
        let std_listener =
            std::net::TcpListener::bind(self.addr).map_err(io_err("binding", &addr_path))?;
        std_listener
            .set_nonblocking(true)
            .map_err(io_err("configuring", &addr_path))?;
        let listener =
            TcpListener::from_std(std_listener).map_err(io_err("registering", &addr_path))?;
        let local = listener
            .local_addr()
            .map_err(io_err("inspecting", &addr_path))?;

        fs::create_dir_all(&self.spec_dir).map_err(io_err("creating the directory of", &spec))?;
        let content = spec_content(local);
        write_atomically(&spec, content.as_bytes()).map_err(io_err("writing", &spec))?;
        let bound = BoundTcp {
            listener: Some(listener),
            local,
            identity: identity(&spec).map_err(io_err("inspecting", &spec))?,
            spec,
        };
        tracing::debug!(addr = %local, spec = %bound.spec.display(), "bound");
        Ok(bound)
    }
}

/// A listening TCP socket and its spec file; the file is removed when this
/// value is dropped, unless another process has replaced it since.
#[derive(Debug)]
pub struct BoundTcp {
    listener: Option<TcpListener>,
    local: SocketAddr,
    spec: PathBuf,
    identity: (u64, u64),
}

impl BoundTcp {
    /// The address the socket is bound to (with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The spec file.
    pub fn spec_path(&self) -> &Path {
        &self.spec
    }

    /// Takes the listener out to serve it; the spec file is still removed
    /// when this value drops.
    ///
    /// # Panics
    ///
    /// If called twice.
    pub fn take_listener(&mut self) -> TcpListener {
        self.listener.take().expect("listener already taken")
    }
}

impl Drop for BoundTcp {
    fn drop(&mut self) {
        if identity(&self.spec).ok() == Some(self.identity) {
            match fs::remove_file(&self.spec) {
                Ok(()) => tracing::debug!(spec = %self.spec.display(), "removed spec file"),
                Err(err) => {
                    tracing::warn!(spec = %self.spec.display(), error = %err, "removing spec file")
                }
            }
        }
    }
}

/// What the spec file says: the address the daemon dials. An unspecified
/// address (`0.0.0.0`) is not something to dial, so its loopback stands in.
fn spec_content(local: SocketAddr) -> String {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("tcp://{}\n", SocketAddr::new(ip, local.port()))
}

/// Reads the address out of a spec file's text, if it is a `tcp://` URL
/// with an IP literal (never resolved: a name could point anywhere).
fn parse_spec(text: &str) -> Option<SocketAddr> {
    let rest = text.trim().strip_prefix("tcp://")?;
    let hostport = rest.split('/').next()?;
    hostport.parse().ok()
}

/// How long probing a spec file's address may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Allows replacing `spec` only if it is absent or names a loopback
/// address nobody listens on.
fn check_existing_spec(spec: &Path) -> Result<(), Error> {
    let mut text = String::new();
    let read = fs::File::open(spec).and_then(|f| f.take(4096).read_to_string(&mut text));
    match read {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                context: "reading",
                path: spec.to_owned(),
                source,
            });
        }
    }
    let foreign = || Error::ForeignSpec {
        path: spec.to_owned(),
        addr: text.trim().to_owned(),
    };
    let addr = parse_spec(&text).ok_or_else(foreign)?;
    if !addr.ip().is_loopback() {
        return Err(foreign());
    }
    match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(_) => Err(Error::AlreadyRunning {
            path: spec.to_owned(),
        }),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(spec = %spec.display(), "replacing stale spec file");
            Ok(())
        }
        Err(_) => Err(Error::AlreadyRunning {
            path: spec.to_owned(),
        }),
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over
/// `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = fs::File::create(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| fs::rename(&temp, path));
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    renamed
}

impl Plugin {
    /// Listens on TCP as `options` says, writes the spec file, and serves
    /// until SIGINT or SIGTERM; then lets requests in flight finish and
    /// removes the spec file.
    ///
    /// ```no_run
    /// # async fn f(plugin: docker_plugin_sdk::Plugin) -> Result<(), docker_plugin_sdk::Error> {
    /// use docker_plugin_sdk::TcpOptions;
    /// plugin.run_tcp(TcpOptions::for_plugin("my-volumes")?).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Everything [`TcpOptions::bind`] reports, and [`Error::Serve`] if
    /// signal handlers cannot be installed or accepting fails.
    pub async fn run_tcp(self, options: TcpOptions) -> Result<(), Error> {
        let signals = shutdown_signal().map_err(Error::Serve)?;
        let mut bound = options.bind()?;
        tracing::info!(
            addr = %bound.local_addr(),
            spec = %bound.spec_path().display(),
            implements = ?self.implements(),
            "serving"
        );
        let listener = bound.take_listener();
        let result = self.serve(listener, signals).await;
        drop(bound);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_the_bound_address() {
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(spec_content(addr), "tcp://127.0.0.1:4242\n");
        let addr: SocketAddr = "[::1]:4242".parse().unwrap();
        assert_eq!(spec_content(addr), "tcp://[::1]:4242\n");
    }

    #[test]
    fn unspecified_addresses_are_announced_as_loopback() {
        let addr: SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert_eq!(spec_content(addr), "tcp://127.0.0.1:80\n");
        let addr: SocketAddr = "[::]:80".parse().unwrap();
        assert_eq!(spec_content(addr), "tcp://[::1]:80\n");
    }

    #[test]
    fn spec_parsing_takes_only_tcp_ip_literals() {
        assert_eq!(
            parse_spec("tcp://127.0.0.1:9/ignored\n"),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(parse_spec("tcp://localhost:9"), None);
        assert_eq!(parse_spec("unix:///run/x.sock"), None);
        assert_eq!(parse_spec("https://127.0.0.1:9"), None);
    }

    #[test]
    fn names_are_checked_like_socket_names() {
        for name in ["", "a/b", ".x"] {
            assert!(TcpOptions::for_plugin(name).is_err(), "{name:?}");
        }
    }
}
