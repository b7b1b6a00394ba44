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
//!
//! `--tcp 127.0.0.1:0` serves on TCP instead, announced by
//! `/etc/docker/plugins/NAME.spec`; started by systemd socket activation it
//! serves the socket systemd passes, and `--write-plugin-dir DIR` packs it
//! as a managed plugin for `docker plugin create`. `docs/deploy.md` shows
//! each way.

mod driver;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use docker_plugin_sdk::{Plugin, SocketOptions, TcpOptions, managed};

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

    /// Serve on this TCP address (e.g. 127.0.0.1:0 for any free port) and
    /// announce it in SPEC_DIR/NAME.spec instead of using a Unix socket.
    /// The daemon speaks plain, unauthenticated HTTP: keep it on loopback.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["socket", "group"])]
    tcp: Option<std::net::SocketAddr>,

    /// Directory for the spec file of --tcp.
    #[arg(long, value_name = "DIR", default_value = docker_plugin_sdk::SPEC_DIR, requires = "tcp")]
    spec_dir: PathBuf,

    /// Write a managed plugin directory (config.json and a rootfs holding
    /// this binary) to DIR and exit; then `docker plugin create NAME DIR`.
    #[arg(long, value_name = "DIR")]
    write_plugin_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

/// The managed plugin's config: volumes live under /data/root, a bind of
/// the host directory users choose with `docker plugin set NAME
/// root.source=DIR`. The bind sits inside the propagated mount /data, so it
/// propagates to the host and the daemon finds each mount point there.
fn managed_config() -> managed::Config {
    let root = managed::Mount::bind("root", "/var/lib/docker-local-dir", "/data/root")
        .settable_source()
        .description("host directory holding the volumes and their table");
    managed::Config::builder("local-dir.sock", "/local-dir")
        .arg("--root")
        .arg("/data/root")
        .description("local-dir: each volume a directory of a host directory")
        .documentation("https://docs.rs/docker-plugin-sdk")
        .volume_driver()
        .propagated_mount("/data")
        .mount(root)
        .build()
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
    if let Some(dir) = args.write_plugin_dir {
        let exe = std::env::current_exe()?;
        let written = managed::PluginDir::create(&dir, &managed_config(), &exe)?;
        println!("wrote {}", written.path().display());
        return Ok(());
    }
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

    let plugin = Plugin::new().volume(driver);
    let runtime = tokio::runtime::Runtime::new()?;
    match args.tcp {
        Some(addr) => {
            let tcp = TcpOptions::for_plugin(&args.name)?
                .addr(addr)
                .spec_dir(args.spec_dir);
            runtime.block_on(plugin.run_tcp(tcp))?;
        }
        // Under systemd socket activation, `run` serves the passed socket.
        None => runtime.block_on(plugin.run(socket))?,
    }
    Ok(())
}
