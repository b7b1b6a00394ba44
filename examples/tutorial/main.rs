//! snapdir: the volume plugin that `docs/tutorial.md` builds step by step.
//! Each volume is a directory, optionally seeded from a template directory
//! chosen with `--opt from=TEMPLATE`; the volume table survives restarts.
//!
//! ```text
//! cargo build --example tutorial
//! sudo target/debug/examples/tutorial --root /var/lib/snapdir
//! docker volume create -d snapdir --opt from=site web
//! ```

#[cfg(test)]
mod doc_sync;
mod driver;
mod state;
#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use docker_plugin_sdk::managed::{Config, Mount, PluginDir};
use docker_plugin_sdk::{Plugin, SocketOptions};
use tracing_subscriber::EnvFilter;

use crate::driver::Snapdir;

const USAGE: &str = "usage: snapdir [--name NAME] [--root DIR]
       snapdir --write-plugin-dir DIR";

#[tokio::main]
async fn main() -> ExitCode {
    // The SDK reports through `tracing`: show it on stderr, at `info`
    // unless RUST_LOG says otherwise (e.g. RUST_LOG=debug), in colour only
    // on a terminal so that log files stay plain text.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // Errors are for a person: print their message, not the Debug form
    // that returning them from `main` would print.
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("snapdir: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut name = "snapdir".to_owned();
    let mut root = PathBuf::from("/var/lib/snapdir");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--name" => name = value,
            "--root" => root = value.into(),
            "--write-plugin-dir" => return write_plugin_dir(value.into()),
            _ => return Err(USAGE.into()),
        }
    }

    // Load the state before binding the socket: a plugin that cannot
    // read its table must not answer the daemon at all.
    let driver = Snapdir::open(&root)?;
    let socket = SocketOptions::for_plugin(&name)?;
    Plugin::new().volume(driver).run(socket).await?;
    Ok(())
}

/// Writes a managed plugin directory for `docker plugin create`. Inside
/// the plugin, the host directory users choose is bound at `/data/root`,
/// under the propagated mount `/data`, so the daemon sees the volumes.
fn write_plugin_dir(dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let root = Mount::bind("root", "/var/lib/snapdir", "/data/root").settable_source();
    let config = Config::builder("snapdir.sock", "/snapdir")
        .description("snapdir: volumes seeded from template directories")
        .arg("--root")
        .arg("/data/root")
        .volume_driver()
        .propagated_mount("/data")
        .mount(root)
        .build();
    let exe = std::env::current_exe()?;
    let written = PluginDir::create(&dir, &config, &exe)?;
    println!("wrote {}", written.path().display());
    Ok(())
}
