//! local-dir: a Docker volume plugin that keeps each volume in a directory
//! under `--root`, with options for owner and mode, mount tracking, and a
//! volume table that survives crashes.
//!
//! Run it as root next to a Docker daemon:
//!
//! ```text
//! cargo run --release --example local-dir -- --root /var/lib/docker-local-dir
//! docker volume create -d local-dir --opt uid=1000 --opt mode=0750 data
//! docker run --rm -v data:/data busybox touch /data/hello
//! ```

mod driver;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use docker_plugin_sdk::{Plugin, SocketOptions};

use crate::driver::LocalDir;

/// A Docker volume plugin that keeps each volume in a directory under --root.
///
/// Create options: uid, gid (numeric owner of the volume directory) and
/// mode (octal permission bits, default 0755).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Plugin name: the daemon finds the plugin as /run/docker/plugins/NAME.sock
    /// and users pass it to `docker volume create -d NAME`.
    #[arg(long, default_value = "local-dir")]
    name: String,

    /// Listen on this socket path instead of the one derived from --name.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Directory holding the volumes and their table (state.json).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/docker-local-dir")]
    root: PathBuf,

    /// Group (name or gid) allowed to use the socket besides root.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Forget the recorded mounts of VOLUME, so that it can be removed.
    ///
    /// For when the Docker daemon died without unmounting (after a reboot
    /// this happens by itself). Stop the plugin first: it holds --root.
    ForgetMounts {
        /// The volume name, as `docker volume ls` shows it.
        volume: String,
    },
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
            eprintln!("local-dir: {err}");
            ExitCode::FAILURE
        }
    }
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
    let driver = LocalDir::open(&args.root)?;
    if let Some(Command::ForgetMounts { volume }) = args.command {
        let dropped = driver.forget_mounts(&volume)?;
        println!("forgot {dropped} mounts of volume {volume:?}");
        return Ok(());
    }
    tracing::info!(root = %args.root.display(), "volume table loaded");

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(Plugin::new().volume(driver).run(socket))?;
    Ok(())
}
