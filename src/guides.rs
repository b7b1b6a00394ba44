//! Long-form guides. Their Rust examples are compiled, and run where they
//! need no daemon, as part of the crate's doc tests.

#[doc = include_str!("../docs/volume.md")]
pub mod volume_guide {}

/// Writing network and IPAM drivers: what the daemon sends, in which order,
/// and the rules that trip people up.
#[doc = include_str!("../docs/network.md")]
pub mod network_guide {}

/// Writing an authorization plugin: what the daemon asks in each phase,
/// the bypasses a policy must not fall for, and deploying one safely.
#[doc = include_str!("../docs/authz.md")]
pub mod authz_guide {}

/// Deploying a plugin: as a process on a Unix socket, under systemd socket
/// activation, on TCP with a spec file, or as a managed plugin, and when to
/// choose which.
#[doc = include_str!("../docs/deploy.md")]
pub mod deploy_guide {}

/// The nfs example plugin: options, shared and counted mounts, restarts,
/// bounded time, data safety, and how its real mounts are tested in a VM.
#[doc = include_str!("../docs/nfs.md")]
pub mod nfs_guide {}
