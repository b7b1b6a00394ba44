//! The state both bridge-net drivers share, and how it changes: under one
//! lock, saved before the daemon hears the answer.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use docker_plugin_sdk::DriverError;
use docker_plugin_sdk::ipnet::Ipv4Net;
use tokio::sync::{Mutex, MutexGuard};

use crate::netlink::Links;
use crate::state::State;

/// Where automatic pools come from: `range` cut into `/prefix` pieces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolRange {
    pub(crate) range: Ipv4Net,
    pub(crate) prefix: u8,
}

/// The network driver and the IPAM driver in one: they share the state
/// file, so that a network and its pool are always saved together.
pub(crate) struct BridgeNet {
    pub(crate) pools: PoolRange,
    pub(crate) links: Links,
    path: PathBuf,
    state: Mutex<State>,
    /// Held for the life of the driver so that two plugin processes never
    /// share one state directory.
    _lock: File,
}

impl BridgeNet {
    /// Opens (or initialises) the state directory and loads the state.
    ///
    /// # Errors
    ///
    /// A message for the operator if the directory is in use by another
    /// process or the state cannot be trusted.
    pub(crate) fn open(dir: &Path, pools: PoolRange, links: Links) -> Result<Self, String> {
        let ctx =
            |what: &'static str| move |err: io::Error| format!("{what} {}: {err}", dir.display());
        fs::create_dir_all(dir).map_err(ctx("creating"))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(ctx("securing"))?;
        let lock = File::create(dir.join("lock")).map_err(ctx("opening the lock in"))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "{} is in use by another bridge-net process",
                dir.display()
            ));
        }

        let path = dir.join("state.json");
        let state = State::load(&path)?;
        Ok(Self {
            pools,
            links,
            path,
            state: Mutex::new(state),
            _lock: lock,
        })
    }

    /// Locks the state for one call.
    pub(crate) async fn lock(&self) -> Guard<'_> {
        Guard {
            state: self.state.lock().await,
            path: &self.path,
        }
    }

    /// Puts back what the kernel lost, e.g. after a reboot: every known
    /// network's bridge, up and holding its gateways. Running containers
    /// keep their veths through a plugin restart, so endpoints need nothing.
    pub(crate) async fn restore_bridges(&self) {
        let guard = self.lock().await;
        for (id, network) in &guard.state.networks {
            let gateways = match network.options.host_access {
                true => network.gateways.as_slice(),
                false => &[],
            };
            let restored = self
                .links
                .ensure_bridge(&network.bridge, network.options.mtu, gateways)
                .await;
            if let Err(err) = restored {
                tracing::warn!(network = %id, error = %err, "cannot restore bridge");
            }
        }
        tracing::info!(
            networks = guard.state.networks.len(),
            pools = guard.state.pools.len(),
            "state loaded"
        );
    }
}

/// The locked state of one call.
pub(crate) struct Guard<'a> {
    state: MutexGuard<'a, State>,
    path: &'a Path,
}

impl Guard<'_> {
    /// The state as last saved.
    pub(crate) fn get(&self) -> &State {
        &self.state
    }

    /// Applies `change` to a copy, saves the copy, and only then makes it
    /// current: a failed change or a failed save leaves nothing behind.
    pub(crate) fn update<T>(
        &mut self,
        change: impl FnOnce(&mut State) -> Result<T, DriverError>,
    ) -> Result<T, DriverError> {
        let mut next = self.state.clone();
        let out = change(&mut next)?;
        next.save(self.path).map_err(|err| {
            let msg = format!("saving {}", self.path.display());
            DriverError::other(msg).with_source(err)
        })?;
        *self.state = next;
        Ok(out)
    }
}
