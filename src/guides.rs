//! Long-form guides. Their Rust examples are compiled, and run where they
//! need no daemon, as part of the crate's doc tests. In the repository they
//! are the files of `docs/`, indexed by `docs/README.md`.
//!
//! New to Docker plugins? Start with the [`tutorial`]: it builds a volume
//! plugin from nothing to a managed plugin a real daemon uses. Then
//! [`daemon_behaviour`] says what the daemon does to any plugin, and
//! [`troubleshooting`] goes from what users see to the cause and the fix.

/// Tutorial: your first volume plugin, from an empty directory to a plugin
/// a real daemon uses, tested without Docker on the way.
#[doc = include_str!("../docs/tutorial.md")]
pub mod tutorial {}

/// What the daemon does to your plugin: when it calls what, deadlines,
/// retries, restarts of either side, and what users see on errors.
#[doc = include_str!("../docs/daemon.md")]
pub mod daemon_behaviour {}

/// Troubleshooting: symptoms users report, their causes, and what the SDK
/// prevents or reports.
#[doc = include_str!("../docs/troubleshooting.md")]
pub mod troubleshooting {}

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
