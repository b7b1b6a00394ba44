//! bridge-net: a Docker network plugin with its own IPAM driver, serving
//! both on one socket. Each network is a Linux bridge, each container's
//! endpoint a veth pair on it; pools come from `--pool-range` and survive
//! restarts.
//!
//! Run it as root next to a Docker daemon:
//!
//! ```text
//! cargo run --release --example bridge-net -- --pool-range 10.199.0.0/16
//! docker network create -d bridge-net --ipam-driver bridge-net -o mtu=1400 lan
//! docker run --rm --network lan busybox ip addr
//! ```

mod driver;
mod ipam;
mod netlink;
mod network;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use docker_plugin_sdk::ipnet::Ipv4Net;
use docker_plugin_sdk::{Plugin, SocketOptions};

use crate::driver::{BridgeNet, PoolRange};
use crate::netlink::Links;

/// A Docker network and IPAM plugin: a Linux bridge per network.
///
/// Network options (`docker network create -o`): mtu (68 to 65535) and
/// host-access (true, the default, puts the gateway address on the bridge
/// so containers reach the host; false makes an isolated segment).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Plugin name: the daemon finds the plugin as /run/docker/plugins/NAME.sock
    /// and users pass it to `docker network create -d NAME --ipam-driver NAME`.
    #[arg(long, default_value = "bridge-net")]
    name: String,

    /// Listen on this socket path instead of the one derived from --name.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Directory holding the state file (pools, networks, endpoints).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/docker-bridge-net")]
    state: PathBuf,

    /// IPv4 range that pools are cut from when the user gives no --subnet.
    #[arg(long, value_name = "CIDR", default_value = "10.199.0.0/16")]
    pool_range: Ipv4Net,

    /// Prefix length of the pools cut from --pool-range.
    #[arg(long, value_name = "BITS", default_value_t = 24)]
    pool_prefix: u8,

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
            eprintln!("bridge-net: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let prefix = args.pool_prefix;
    if prefix < args.pool_range.prefix_len() || prefix > 30 {
        return Err(format!(
            "--pool-prefix {prefix} must be between the range's /{} and /30",
            args.pool_range.prefix_len()
        )
        .into());
    }
    let pools = PoolRange {
        range: args.pool_range.trunc(),
        prefix,
    };
    let socket = match args.socket {
        Some(path) => SocketOptions::at(path),
        None => SocketOptions::for_plugin(&args.name)?,
    };
    let socket = match args.group {
        Some(group) => socket.group(group),
        None => socket,
    };

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let links = Links::connect()?;
        let driver = Arc::new(BridgeNet::open(&args.state, pools, links)?);
        driver.restore_bridges().await;
        let plugin = Plugin::new()
            .network_shared(Arc::clone(&driver))
            .ipam_shared(driver);
        plugin.run(socket).await?;
        Ok(())
    })
}
