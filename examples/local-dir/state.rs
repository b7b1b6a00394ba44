//! The volume table of the local-dir plugin and its crash-safe file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Version of the on-disk format, bumped on incompatible changes.
const FORMAT: u32 = 1;

/// What the plugin knows about its volumes; `state.json` holds exactly this.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    format: u32,
    /// The kernel's boot ID when the mounts were recorded: after a reboot
    /// no container uses anything, whatever the table says.
    #[serde(default)]
    pub(crate) boot_id: String,
    /// Suffix for the next volume directory, so that directory names never
    /// repeat even when volume names do.
    pub(crate) next_id: u64,
    /// Keyed by the volume name exactly as the daemon sent it.
    pub(crate) volumes: BTreeMap<String, Record>,
}

/// One volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Directory name under `<root>/volumes`; never derived from user input
    /// alone, so no name can point outside the root.
    pub(crate) dir: String,
    pub(crate) options: VolumeOptions,
    pub(crate) created_at: SystemTime,
    /// Mounts not yet unmounted, by mount ID. A count, not a set: `docker
    /// cp` mounts again under the running container's own ID and unmounts
    /// once when done, which must leave the container's use in place.
    pub(crate) mounts: BTreeMap<String, u32>,
}

impl Record {
    /// How many mounts are outstanding.
    pub(crate) fn users(&self) -> u64 {
        self.mounts.values().map(|n| u64::from(*n)).sum()
    }
}

/// The create options, parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VolumeOptions {
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) mode: Option<u32>,
}

/// Option names `docker volume create --opt` accepts, sorted.
pub(crate) const OPTION_NAMES: [&str; 3] = ["gid", "mode", "uid"];

impl VolumeOptions {
    /// Parses `--opt` pairs; `Err` carries the message for the user.
    pub(crate) fn parse<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut opts = Self::default();
        for (key, value) in pairs {
            // chown(2) reads u32::MAX as "leave unchanged", so it is no ID.
            let id = |what: &str| {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n < u32::MAX && value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        format!("option {what}={value:?} is not a number from 0 to 4294967294")
                    })
            };
            match key {
                "uid" => opts.uid = Some(id("uid")?),
                "gid" => opts.gid = Some(id("gid")?),
                "mode" => opts.mode = Some(parse_mode(value)?),
                _ => {
                    return Err(format!(
                        "unknown option {key:?}; valid options are: {}",
                        OPTION_NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(opts)
    }

    /// The options as `docker volume inspect` shows them.
    pub(crate) fn to_map(self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        if let Some(uid) = self.uid {
            map.insert("uid".into(), uid.to_string().into());
        }
        if let Some(gid) = self.gid {
            map.insert("gid".into(), gid.to_string().into());
        }
        if let Some(mode) = self.mode {
            map.insert("mode".into(), format!("{mode:04o}").into());
        }
        map
    }
}

fn parse_mode(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    let bad = || format!("option mode={value:?} must be octal permission bits, e.g. 0755");
    // Leading zeros are only notation; a sign is not.
    let significant = digits.trim_start_matches('0');
    if digits.is_empty()
        || significant.len() > 4
        || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(bad());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if mode > 0o7777 { Err(bad()) } else { Ok(mode) }
}

impl State {
    /// Reads `path`, refusing anything it cannot fully trust.
    ///
    /// A missing file is a fresh start only if `volumes_dir` is empty too:
    /// otherwise the table was lost and starting empty would make every
    /// volume silently vanish.
    pub(crate) fn load(path: &Path, volumes_dir: &Path) -> Result<Self, String> {
        // Followed, a symlink could make the plugin read one file and
        // replace another.
        if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "{} is a symbolic link; refusing to use it",
                path.display()
            ));
        }
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let leftovers = fs::read_dir(volumes_dir)
                    .map(|dir| dir.count())
                    .unwrap_or(0);
                if leftovers > 0 {
                    return Err(format!(
                        "{} is missing but {} holds {leftovers} volume directories; refusing to \
                         start with an empty volume table (restore the file, or move the \
                         directories away to start afresh)",
                        path.display(),
                        volumes_dir.display()
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
        state.check().map_err(|why| {
            format!(
                "{} cannot be trusted: {why}; refusing to start",
                path.display()
            )
        })?;
        Ok(state)
    }

    /// Directory names are joined to the volumes directory and later moved
    /// and deleted: each must be one plain entry of it, owned by one volume.
    fn check(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for (name, record) in &self.volumes {
            let dir = record.dir.as_str();
            let plain = !dir.is_empty()
                && !dir.starts_with('.')
                && dir
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !plain {
                return Err(format!("volume {name:?} has directory {dir:?}"));
            }
            if !seen.insert(dir) {
                return Err(format!("directory {dir:?} belongs to two volumes"));
            }
        }
        Ok(())
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

    /// Replaces `path` with the current table so that a crash at any moment
    /// leaves either the old file or the new one, never a torn one.
    pub(crate) fn save(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let tmp = temp_path(path);
        let result = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            // The rename is durable only once the directory entry is.
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

/// Removes temporary files that a crash during [`State::save`] left next
/// to `path`.
pub(crate) fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// A readable directory name for `volume` that cannot escape its parent:
/// only `[A-Za-z0-9_.-]`, no leading dot, and a unique numeric suffix.
pub(crate) fn dir_name(volume: &str, id: u64) -> String {
    let readable: String = volume
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(48)
        .collect();
    let readable = readable.trim_start_matches('.');
    if readable.is_empty() {
        format!("volume-{id}")
    } else {
        format!("{readable}-{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_never_leave_the_parent() {
        for name in [
            "..",
            "../../etc",
            "/abs",
            "a/b",
            ".",
            "",
            "\0",
            "ünï",
            "...",
        ] {
            let dir = dir_name(name, 7);
            assert!(
                !dir.contains('/') && !dir.starts_with('.'),
                "{name:?} -> {dir}"
            );
            assert_eq!(Path::new(&dir).components().count(), 1);
        }
        assert_eq!(dir_name("data", 3), "data-3");
    }

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("00755"), Ok(0o755));
        assert_eq!(parse_mode("07777"), Ok(0o7777));
        assert!(parse_mode("+755").is_err());
        assert!(parse_mode("0o+75").is_err());
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert_eq!(parse_mode("700"), Ok(0o700));
        assert_eq!(parse_mode("1777"), Ok(0o1777));
        for bad in ["", "9", "0x1ff", "77777", "-1", "rwx"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_plain_decimal_numbers_chown_can_apply() {
        let parse = |k, v| VolumeOptions::parse([(k, v)].into_iter());
        assert_eq!(parse("uid", "4294967294").unwrap().uid, Some(4_294_967_294));
        for bad in ["4294967295", "+1", "-1", " 1", "0x10", ""] {
            assert!(parse("uid", bad).is_err(), "{bad:?}");
            assert!(parse("gid", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_table_whose_directories_escape_or_repeat_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let volumes = dir.path().join("volumes");
        let record = |d: &str| {
            format!(
                r#"{{"dir":"{d}","options":{{"uid":null,"gid":null,"mode":null}},
                "created_at":{{"secs_since_epoch":0,"nanos_since_epoch":0}},"mounts":{{}}}}"#
            )
        };
        for dirs in [
            vec!["../../victim"],
            vec![""],
            vec!["."],
            vec!["a/b"],
            vec!["x-1", "x-1"],
        ] {
            let entries: Vec<String> = dirs
                .iter()
                .enumerate()
                .map(|(i, d)| format!(r#""v{i}":{}"#, record(d)))
                .collect();
            let json = format!(
                r#"{{"format":1,"next_id":9,"volumes":{{{}}}}}"#,
                entries.join(",")
            );
            fs::write(&path, json).unwrap();
            let err = State::load(&path, &volumes).unwrap_err();
            assert!(err.contains("cannot be trusted"), "{dirs:?}: {err}");
        }
    }

    #[test]
    fn a_symlinked_table_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink("/nonexistent/elsewhere", &path).unwrap();
        let err = State::load(&path, &dir.path().join("volumes")).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn mounts_recorded_before_a_reboot_are_dropped() {
        let mut state = State {
            boot_id: "boot-1".into(),
            ..State::default()
        };
        state.volumes.insert(
            "v".into(),
            Record {
                dir: "v-0".into(),
                options: VolumeOptions::default(),
                created_at: SystemTime::now(),
                mounts: [("a".to_owned(), 2), ("b".to_owned(), 1)].into(),
            },
        );
        assert_eq!(state.forget_mounts_from_before("boot-1"), 0);
        assert_eq!(state.forget_mounts_from_before("boot-2"), 3);
        assert_eq!(state.volumes["v"].users(), 0);
    }

    #[test]
    fn unknown_option_lists_the_valid_ones() {
        let err = VolumeOptions::parse([("bogus", "1")].into_iter()).unwrap_err();
        assert!(
            err.contains("\"bogus\"") && err.contains("gid, mode, uid"),
            "{err}"
        );
    }

    #[test]
    fn truncated_state_is_an_error_not_an_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"").unwrap();
        let err = State::load(&path, &dir.path().join("volumes")).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
        fs::write(&path, br#"{"format":1,"next_id":3,"volu"#).unwrap();
        assert!(State::load(&path, &dir.path().join("volumes")).is_err());
    }

    #[test]
    fn missing_state_with_volume_directories_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = dir.path().join("volumes");
        fs::create_dir_all(volumes.join("data-1")).unwrap();
        let err = State::load(&dir.path().join("state.json"), &volumes).unwrap_err();
        assert!(err.contains("refusing"), "{err}");
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut state = State::load(&path, &dir.path().join("volumes")).unwrap();
        state.volumes.insert(
            "a/../b \u{1F600}".into(),
            Record {
                dir: "a..b-0".into(),
                options: VolumeOptions {
                    uid: Some(1),
                    gid: None,
                    mode: Some(0o700),
                },
                created_at: SystemTime::now(),
                mounts: [("m1".to_owned(), 2)].into(),
            },
        );
        state.save(&path).unwrap();
        let back = State::load(&path, &dir.path().join("volumes")).unwrap();
        assert_eq!(back.volumes.len(), 1);
        assert!(back.volumes.contains_key("a/../b \u{1F600}"));
        assert!(!temp_path(&path).exists());
    }
}
