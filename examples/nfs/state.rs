//! The volume table of the nfs plugin and its crash-safe file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::options::{self, VolumeOptions};

/// Version of the on-disk format, bumped on incompatible changes.
const FORMAT: u32 = 1;

/// What the plugin knows about its volumes; `state.json` holds exactly this.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    format: u32,
    /// The kernel's boot ID when the mounts were recorded: after a reboot
    /// nothing is mounted and no container uses anything.
    #[serde(default)]
    pub(crate) boot_id: String,
    /// Keyed by the volume name exactly as the daemon sent it.
    pub(crate) volumes: BTreeMap<String, Record>,
}

/// One volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) options: VolumeOptions,
    pub(crate) created_at: SystemTime,
    /// Mounts not yet unmounted, by mount ID. A count, not a set: `docker
    /// cp` mounts again under the running container's ID and unmounts once.
    pub(crate) mounts: BTreeMap<String, u32>,
}

impl Record {
    /// How many mounts are outstanding.
    pub(crate) fn users(&self) -> u64 {
        self.mounts.values().map(|n| u64::from(*n)).sum()
    }

    /// Ends one mount under `id`; false if there was none to end.
    pub(crate) fn release(&mut self, id: &str) -> bool {
        match self.mounts.get_mut(id) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                self.mounts.remove(id);
            }
            None => return false,
        }
        true
    }
}

impl State {
    /// Reads `path`, refusing anything it cannot fully trust. A missing file
    /// is a fresh start only while `mounts_dir` is empty: otherwise the
    /// table was lost, and starting empty would make volumes vanish.
    pub(crate) fn load(path: &Path, mounts_dir: &Path) -> Result<Self, String> {
        if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "{} is a symbolic link; refusing to use it",
                path.display()
            ));
        }
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let leftovers = fs::read_dir(mounts_dir).map(|d| d.count()).unwrap_or(0);
                if leftovers > 0 {
                    return Err(format!(
                        "{} is missing but {} holds {leftovers} mount points; refusing to start \
                         with an empty volume table (restore the file, or unmount and remove \
                         those directories to start afresh)",
                        path.display(),
                        mounts_dir.display()
                    ));
                }
                return Ok(Self {
                    format: FORMAT,
                    ..Self::default()
                });
            }
            Err(err) => return Err(format!("reading {}: {err}", path.display())),
        };
        let state: Self = serde_json::from_slice(&bytes).map_err(|err| {
            format!(
                "{} is corrupt ({err}); refusing to start rather than lose volumes. \
                 Restore it from a backup or fix it by hand",
                path.display()
            )
        })?;
        if state.format != FORMAT {
            return Err(format!(
                "{} has format {}, this plugin reads format {FORMAT}",
                path.display(),
                state.format
            ));
        }
        // The options reach `mount`: a hand-edited table gets the same
        // checks as a create request.
        for (name, record) in &state.volumes {
            let o = &record.options;
            options::check_share(&o.share)
                .and_then(|()| options::check_mount_options(&o.o))
                .and_then(|()| o.subdir.as_deref().map_or(Ok(()), options::check_subdir))
                .map_err(|why| {
                    format!(
                        "{} cannot be trusted: volume {name:?}: {why}",
                        path.display()
                    )
                })?;
        }
        Ok(state)
    }

    /// Forgets every recorded mount if the host booted since they were
    /// recorded; returns how many were dropped.
    pub(crate) fn forget_mounts_from_before(&mut self, boot_id: &str) -> u64 {
        if self.boot_id == boot_id {
            return 0;
        }
        let mut dropped = 0;
        for record in self.volumes.values_mut() {
            dropped += record.users();
            record.mounts.clear();
        }
        self.boot_id = boot_id.to_owned();
        dropped
    }

    /// Replaces `path` with the current table: temp file, fsync, rename,
    /// fsync of the directory. A crash leaves the old file or the new one.
    pub(crate) fn save(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let tmp = temp_path(path);
        let result = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// Identifies the current boot of the host; empty where the kernel does not
/// say, which disables the reboot check.
pub(crate) fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(share: &str) -> Record {
        Record {
            options: VolumeOptions {
                share: share.into(),
                o: "soft".into(),
                subdir: None,
            },
            created_at: SystemTime::now(),
            mounts: [("a".to_owned(), 2), ("b".to_owned(), 1)].into(),
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut state = State::load(&path, &dir.path().join("mounts")).unwrap();
        state.volumes.insert("v".into(), record("h:/e"));
        state.save(&path).unwrap();
        let back = State::load(&path, &dir.path().join("mounts")).unwrap();
        assert_eq!(back.volumes["v"].options, state.volumes["v"].options);
        assert_eq!(back.volumes["v"].users(), 3);
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn truncated_or_tampered_state_is_an_error_not_an_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mounts = dir.path().join("mounts");
        fs::write(&path, b"").unwrap();
        assert!(State::load(&path, &mounts).unwrap_err().contains("corrupt"));
        fs::write(&path, br#"{"format":1,"volu"#).unwrap();
        assert!(State::load(&path, &mounts).is_err());

        let mut state = State::load(&dir.path().join("fresh.json"), &mounts).unwrap();
        state.volumes.insert("v".into(), record("h:/e -o exec"));
        state.save(&path).unwrap();
        let err = State::load(&path, &mounts).unwrap_err();
        assert!(err.contains("cannot be trusted"), "{err}");
    }

    #[test]
    fn a_missing_table_beside_mount_points_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mounts = dir.path().join("mounts");
        fs::create_dir_all(mounts.join("h-0123")).unwrap();
        let err = State::load(&dir.path().join("state.json"), &mounts).unwrap_err();
        assert!(err.contains("refusing"), "{err}");
    }

    #[test]
    fn mounts_recorded_before_a_reboot_are_dropped() {
        let mut state = State {
            boot_id: "boot-1".into(),
            ..State::default()
        };
        state.volumes.insert("v".into(), record("h:/e"));
        assert_eq!(state.forget_mounts_from_before("boot-1"), 0);
        assert_eq!(state.forget_mounts_from_before("boot-2"), 3);
        assert_eq!(state.volumes["v"].users(), 0);
    }

    #[test]
    fn release_counts_down_per_id() {
        let mut r = record("h:/e");
        assert!(r.release("a"));
        assert_eq!(r.users(), 2);
        assert!(r.release("a") && !r.release("a"));
        assert!(!r.release("zzz"));
        assert_eq!(r.users(), 1);
    }
}
