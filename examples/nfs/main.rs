//! nfs: a Docker volume plugin that mounts NFS shares, so that every
//! container on every host sees the same data. Mounts are shared between
//! containers, counted by mount ID, bounded in time and survive restarts.
//!
//! Run it as root next to a Docker daemon:
//!
//! ```text
//! cargo run --release --example nfs -- --share nfs.example:/export --options nfsvers=4.2,soft
//! docker volume create -d nfs --opt subdir=app1 app1
//! docker run --rm -v app1:/data busybox touch /data/hello
//! ```

mod driver;
mod mounter;
mod options;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use docker_plugin_sdk::{Plugin, SocketOptions};

use crate::driver::{Config, Nfs};
use crate::mounter::SystemMounter;
use crate::options::Defaults;

/// A Docker volume plugin that mounts NFS shares.
///
/// Create options: share=HOST:/PATH (or server and path), o (mount
/// options, e.g. nfsvers=4.1,soft,timeo=50) and subdir (a directory inside
/// the share, created on first mount). Flags and their environment
/// variables (NFS_SHARE, NFS_OPTIONS, NFS_SUBDIR, NFS_MOUNT_TIMEOUT) give
/// the defaults.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Plugin name: the daemon finds the plugin as /run/docker/plugins/NAME.sock
    /// and users pass it to `docker volume create -d NAME`.
    #[arg(long, default_value = "nfs")]
    name: String,

    /// Listen on this socket path instead of the one derived from --name.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Directory holding the mount points and the volume table.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/docker-nfs")]
    root: PathBuf,

    /// Group (name or gid) allowed to use the socket besides root.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,

    /// Share for volumes created without one [env: NFS_SHARE].
    #[arg(long, value_name = "HOST:/PATH")]
    share: Option<String>,

    /// Mount options for volumes created without `o` [env: NFS_OPTIONS].
    #[arg(long, value_name = "OPTS")]
    options: Option<String>,

    /// Subdirectory for volumes created without one [env: NFS_SUBDIR].
    #[arg(long, value_name = "DIR")]
    subdir: Option<String>,

    /// Limit for one mount [env: NFS_MOUNT_TIMEOUT; default 60s, at most 90s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    mount_timeout: Option<Duration>,

    /// Program run as `mount -t nfs -o OPTS SHARE DIR`.
    #[arg(long, value_name = "PATH", default_value = "mount", hide = true)]
    mount_program: PathBuf,

    /// Program run as `umount [-l] DIR`.
    #[arg(long, value_name = "PATH", default_value = "umount", hide = true)]
    umount_program: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nfs: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A flag, else its environment variable (empty counts as unset).
fn flag_or_env(flag: Option<String>, var: &str) -> Option<String> {
    flag.or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let socket = match args.socket {
        Some(path) => SocketOptions::at(path),
        None => SocketOptions::for_plugin(&args.name)?,
    };
    let socket = match args.group {
        Some(group) => socket.group(group),
        None => socket,
    };

    let mut config = Config::new(&args.root);
    config.defaults = Defaults {
        share: flag_or_env(args.share, "NFS_SHARE"),
        o: flag_or_env(args.options, "NFS_OPTIONS"),
        subdir: flag_or_env(args.subdir, "NFS_SUBDIR"),
    };
    let timeout = match args.mount_timeout {
        Some(limit) => Some(limit),
        None => flag_or_env(None, "NFS_MOUNT_TIMEOUT")
            .map(|v| humantime::parse_duration(&v))
            .transpose()
            .map_err(|err| format!("NFS_MOUNT_TIMEOUT: {err}"))?,
    };
    if let Some(limit) = timeout {
        config.mount_timeout = limit;
    }
    let mounter = SystemMounter::with_programs(args.mount_program, args.umount_program);
    let driver = Nfs::open(config, Arc::new(mounter))?;
    tracing::info!(root = %args.root.display(), "volume table loaded");

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // Serve at once (managed plugins must listen within seconds); a
        // share that no longer answers only delays its own volumes.
        let reconciling = driver.clone();
        tokio::spawn(async move { reconciling.reconcile().await });
        Plugin::new().volume(driver).run(socket).await
    })?;
    Ok(())
}
