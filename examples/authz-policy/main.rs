//! authz-policy: a Docker authorization plugin driven by a rules file.
//!
//! It allows or denies API calls by method and path, refuses privileged
//! containers, added capabilities, host paths outside given prefixes and
//! denied images, and limits TLS users to read-only calls. Every denial
//! names the rule that matched. `kill -HUP` reloads the rules; a broken
//! file keeps the old ones.
//!
//! Start it *before* the daemon, then start the daemon with
//! `--authorization-plugin=authz-policy`:
//!
//! ```text
//! cargo run --release --example authz-policy -- --rules /etc/docker/authz-policy.toml
//! dockerd --authorization-plugin=authz-policy
//! ```
//!
//! See `docs/authz.md` for the rules file and for deploying it safely.

mod checks;
mod patterns;
mod policy;
mod rules;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use docker_plugin_sdk::{Plugin, SocketOptions};
use tokio::signal::unix::{SignalKind, signal};

use crate::policy::Policy;

/// A Docker authorization plugin that enforces the rules in --rules.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Plugin name: the daemon finds the plugin as
    /// /run/docker/plugins/NAME.sock and is started with
    /// --authorization-plugin=NAME.
    #[arg(long, default_value = "authz-policy")]
    name: String,

    /// Listen on this socket path instead of the one derived from --name.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// The rules file (TOML); SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    rules: PathBuf,

    /// Group (name or gid) allowed to use the socket besides root.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
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
            eprintln!("authz-policy: {err}");
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
    // Refuse to start on a broken file: serving some other policy than the
    // one written would be worse than not serving.
    let policy = Arc::new(Policy::load(&args.rules)?);
    tracing::info!(rules = %args.rules.display(), "rules loaded");

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut hangups = signal(SignalKind::hangup())?;
        let reloading = Arc::clone(&policy);
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                reloading.reload();
            }
        });
        Plugin::new().authz_shared(policy).run(socket).await?;
        Ok(())
    })
}
