// The volume table and the file that keeps it across restarts.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Everything the plugin knows; `state.json` holds exactly this.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Table {
    /// The kernel's boot ID when the mounts were recorded.
    pub(crate) boot_id: String,
    /// Keyed by the volume name exactly as the daemon sent it.
    pub(crate) volumes: BTreeMap<String, Record>,
}

/// One volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The template it was seeded from, if any.
    pub(crate) from: Option<String>,
    pub(crate) created_at: SystemTime,
    /// Mounts not yet unmounted, counted by mount ID.
    pub(crate) mounts: BTreeMap<String, u32>,
}

impl Table {
    /// Reads the table. A missing file is a first start only when no
    /// volume directory exists either; a damaged one is an error.
    pub(crate) fn load(path: &Path, volumes: &Path) -> io::Result<Self> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                if fs::read_dir(volumes).is_ok_and(|mut d| d.next().is_some()) {
                    let msg = format!("{} is missing but volumes exist", path.display());
                    return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
                return Ok(Self::default());
            }
            Err(err) => return Err(err),
        };
        let mut table: Self = serde_json::from_slice(&bytes).map_err(|err| {
            let msg = format!("{} is damaged: {err}", path.display());
            io::Error::new(io::ErrorKind::InvalidData, msg)
        })?;

        // A reboot ended every mount without an Unmount.
        let boot_id = current_boot_id();
        if table.boot_id != boot_id {
            table.volumes.values_mut().for_each(|r| r.mounts.clear());
            table.boot_id = boot_id;
        }
        Ok(table)
    }

    /// Replaces the file atomically: a crash leaves the old table or the
    /// new one, never half of one.
    pub(crate) fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self)?)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;

        // The rename itself is durable only once the directory is synced.
        let dir = path.parent().unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    }
}

/// Changes on every boot; empty where the kernel does not offer it.
pub(crate) fn current_boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}
