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
    /// Mount IDs of the current users.
    pub(crate) mounts: BTreeSet<String>,
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
            let id = |what: &str| {
                value.parse::<u32>().map_err(|_| {
                    format!("option {what}={value:?} is not a number from 0 to 4294967295")
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
    if digits.is_empty() || digits.len() > 4 {
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
        Ok(state)
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
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert_eq!(parse_mode("700"), Ok(0o700));
        assert_eq!(parse_mode("1777"), Ok(0o1777));
        for bad in ["", "9", "0x1ff", "77777", "-1", "rwx"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
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
                mounts: ["m1".to_owned()].into(),
            },
        );
        state.save(&path).unwrap();
        let back = State::load(&path, &dir.path().join("volumes")).unwrap();
        assert_eq!(back.volumes.len(), 1);
        assert!(back.volumes.contains_key("a/../b \u{1F600}"));
        assert!(!temp_path(&path).exists());
    }
}
