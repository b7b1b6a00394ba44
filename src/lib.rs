//! Write Docker engine plugins in Rust: implement one async trait per plugin
//! kind, and the SDK serves it on a Unix socket exactly as the daemon
//! expects.
//!
//! ```no_run
//! use std::collections::BTreeSet;
//! use std::path::PathBuf;
//! use tokio::sync::Mutex;
//!
//! use docker_plugin_sdk::volume::*;
//! use docker_plugin_sdk::{DriverError, Plugin, SocketOptions, async_trait};
//!
//! /// Volumes are names in a set; all of them share one host directory.
//! #[derive(Default)]
//! struct Shared {
//!     names: Mutex<BTreeSet<String>>,
//! }
//!
//! #[async_trait]
//! impl VolumeDriver for Shared {
//!     async fn create(&self, req: CreateRequest) -> Result<(), DriverError> {
//!         self.names.lock().await.insert(req.name);
//!         Ok(())
//!     }
//!     async fn remove(&self, req: RemoveRequest) -> Result<(), DriverError> {
//!         self.names.lock().await.remove(&req.name);
//!         Ok(())
//!     }
//!     async fn mount(&self, _: MountRequest) -> Result<PathBuf, DriverError> {
//!         Ok(PathBuf::from("/srv/shared"))
//!     }
//!     async fn unmount(&self, _: UnmountRequest) -> Result<(), DriverError> {
//!         Ok(())
//!     }
//!     async fn path(&self, _: PathRequest) -> Result<Option<PathBuf>, DriverError> {
//!         Ok(Some(PathBuf::from("/srv/shared")))
//!     }
//!     async fn get(&self, req: GetRequest) -> Result<Volume, DriverError> {
//!         // An unknown name must fail: that is how the daemon decides to
//!         // call `create`.
//!         match self.names.lock().await.contains(&req.name) {
//!             true => Ok(Volume::new(req.name)),
//!             false => Err(DriverError::not_found(format!("no such volume {:?}", req.name))),
//!         }
//!     }
//!     async fn list(&self) -> Result<Vec<Volume>, DriverError> {
//!         Ok(self.names.lock().await.iter().map(Volume::new).collect())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), docker_plugin_sdk::Error> {
//!     // Serves /run/docker/plugins/shared.sock until SIGINT or SIGTERM.
//!     let socket = SocketOptions::for_plugin("shared")?;
//!     Plugin::new().volume(Shared::default()).run(socket).await
//! }
//! ```
//!
//! # Layout
//!
//! - [`volume`]: the [`VolumeDriver`](volume::VolumeDriver) trait and the
//!   `VolumeDriver.*` wire types.
//! - [`network`]: the [`NetworkDriver`](network::NetworkDriver) trait and the
//!   `NetworkDriver.*` wire types, with [`MacAddress`](network::MacAddress).
//! - [`ipam`]: the [`IpamDriver`](ipam::IpamDriver) trait and the
//!   `IpamDriver.*` wire types. Prefixes and addresses with a prefix are
//!   [`ipnet::IpNet`], re-exported as [`ipnet`].
//! - [`authz`]: the [`AuthzPlugin`](authz::AuthzPlugin) trait, the typed
//!   [`ApiRequest`](authz::ApiRequest) it decides on, and the
//!   `AuthZPlugin.*` wire types.
//! - [`Plugin`]: the drivers one socket serves; [`Plugin::run`] binds
//!   and serves until SIGINT/SIGTERM, [`Plugin::serve`] serves a listener
//!   you bound until a future you choose completes.
//! - [`SocketOptions`] and [`BoundSocket`]: safe creation of the plugin
//!   socket (stale sockets replaced, live ones and other files left alone).
//! - [`TcpOptions`] and [`BoundTcp`]: serving on TCP, announced to the daemon
//!   by a `.spec` file that is removed on shutdown ([`Plugin::run_tcp`]).
//! - [`ActivatedSocket`]: the socket systemd passes under socket
//!   activation; [`Plugin::run`] serves it by itself when present.
//! - [`managed`]: managed (v2) plugins: a checked `config.json` model and
//!   the plugin directory `docker plugin create` takes.
//! - [`client`]: a client that talks to a plugin as the daemon does, for
//!   tests without Docker.
//! - [`handshake`]: `/Plugin.Activate` and shared protocol constants.
//! - [`DriverError`]: what drivers return; [`Error`]: what the SDK returns.
//! - [`guides`]: long-form guides, starting with writing a volume plugin.
//!
//! # Guides
//!
//! New to plugins? Start with [`guides::tutorial`]; [`guides`] lists them all.
//!
//! The `docs/` directory of the repository holds the guides; `docs/volume.md`
//! explains what the daemon sends to a volume plugin and when, and
//! `docs/network.md` ([`guides::network_guide`]) does the same for network
//! and IPAM drivers. `docs/deploy.md` ([`guides::deploy_guide`]) shows the
//! ways to run a plugin: Unix socket, systemd socket activation, TCP, and
//! managed plugins.
//!
//! # Feature flags
//!
//! None yet: everything is always built.

mod activation;
pub mod authz;
pub mod client;
mod error;
pub mod guides;
pub mod handshake;
pub mod ipam;
pub mod managed;
pub mod network;
mod plugin;
mod server;
mod socket;
mod tcp;
pub mod volume;
mod wire;

pub use activation::ActivatedSocket;
pub use error::{BoxError, DriverError, Error, ErrorKind};
pub use plugin::{
    DEFAULT_BODY_LIMIT, DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT, DEFAULT_SHUTDOWN_GRACE,
    Plugin,
};
pub use server::Listener;
pub use socket::{BoundSocket, SocketOptions, shutdown_signal};
pub use tcp::{BoundTcp, SPEC_DIR, TcpOptions};

/// Re-exported so that drivers can use `#[async_trait]` without adding the
/// dependency themselves.
pub use async_trait::async_trait;

/// Re-exported so that network and IPAM drivers name prefixes with the same
/// version of the crate as the SDK.
pub use ipnet;

/// Compiles the README's example with the doc tests, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
