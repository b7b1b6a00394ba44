//! The create options of an NFS volume: where the export is, how to mount
//! it, and which directory of it the volume uses.

use serde::{Deserialize, Serialize};

/// Option names `docker volume create --opt` accepts, sorted.
pub(crate) const OPTION_NAMES: [&str; 5] = ["o", "path", "server", "share", "subdir"];

/// What a volume mounts, parsed and checked; `state.json` holds this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VolumeOptions {
    /// `HOST:/PATH`, exactly as `mount` receives it.
    pub(crate) share: String,
    /// Mount options joined by commas, possibly empty.
    pub(crate) o: String,
    /// A relative directory inside the export, created on first mount.
    pub(crate) subdir: Option<String>,
}

/// Values used for options a volume does not set: from command-line flags
/// or the environment (managed plugins get theirs from `docker plugin set`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Defaults {
    pub(crate) share: Option<String>,
    pub(crate) o: Option<String>,
    pub(crate) subdir: Option<String>,
}

impl Defaults {
    /// Checks the defaults as if they were a volume's options, so that a bad
    /// flag stops the plugin at start-up instead of failing every create.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(share) = &self.share {
            check_share(share).map_err(|e| format!("default share: {e}"))?;
        }
        if let Some(o) = &self.o {
            check_mount_options(o).map_err(|e| format!("default mount options: {e}"))?;
        }
        if let Some(subdir) = &self.subdir {
            check_subdir(subdir).map_err(|e| format!("default subdir: {e}"))?;
        }
        Ok(())
    }
}

impl VolumeOptions {
    /// Parses `--opt` pairs over `defaults`; `Err` carries the message for
    /// the user.
    pub(crate) fn parse<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
        defaults: &Defaults,
    ) -> Result<Self, String> {
        let (mut share, mut server, mut path, mut o, mut subdir) = (None, None, None, None, None);
        for (key, value) in pairs {
            let slot = match key {
                "share" => &mut share,
                "server" => &mut server,
                "path" => &mut path,
                "o" => &mut o,
                "subdir" => &mut subdir,
                _ => {
                    return Err(format!(
                        "unknown option {key:?}; valid options are: {}",
                        OPTION_NAMES.join(", ")
                    ));
                }
            };
            *slot = Some(value.to_owned());
        }

        let share = match (share, server, path) {
            (Some(share), None, None) => share,
            (None, Some(server), Some(path)) => format!("{server}:{path}"),
            (Some(_), _, _) => {
                return Err("give either share=HOST:/PATH or server and path, not both".into());
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err("options server and path go together; give both".into());
            }
            (None, None, None) => defaults.share.clone().ok_or(
                "option share=HOST:/PATH is required (or server and path); \
                 the plugin has no default share",
            )?,
        };
        check_share(&share)?;

        let o = o.or_else(|| defaults.o.clone()).unwrap_or_default();
        check_mount_options(&o)?;
        let subdir = subdir
            .or_else(|| defaults.subdir.clone())
            .filter(|s| !s.is_empty());
        if let Some(subdir) = &subdir {
            check_subdir(subdir)?;
        }
        Ok(Self { share, o, subdir })
    }

    /// The options as `docker volume inspect` shows them.
    pub(crate) fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        map.insert("share".into(), self.share.clone().into());
        map.insert("o".into(), self.o.clone().into());
        if let Some(subdir) = &self.subdir {
            map.insert("subdir".into(), subdir.clone().into());
        }
        map
    }
}

/// `HOST:/PATH` with nothing `mount` could read as a flag or a second
/// argument: no leading `-`, no whitespace or control characters.
pub(crate) fn check_share(share: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("share {share:?} {why}; expected HOST:/PATH"));
    // An IPv6 address is written in brackets: [fd00::1]:/export.
    let (host, path) = match share.strip_prefix('[') {
        Some(rest) => match rest.split_once("]:") {
            Some((addr, path)) => (addr, path),
            None => return bad("has an unclosed IPv6 bracket"),
        },
        None => match share.split_once(':') {
            Some(parts) => parts,
            None => return bad("has no ':'"),
        },
    };
    let host_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':');
    if host.is_empty() || host.starts_with('-') || !host.bytes().all(host_ok) {
        return bad("has an invalid host");
    }
    if !path.starts_with('/') {
        return bad("has a path that is not absolute");
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace or control characters");
    }
    if path.len() > 1024 {
        return bad("is too long");
    }
    Ok(())
}

/// Comma-separated `name` or `name=value` items of plain characters: no
/// whitespace, quotes or shell punctuation, which no NFS option needs.
pub(crate) fn check_mount_options(o: &str) -> Result<(), String> {
    if o.is_empty() {
        return Ok(());
    }
    if o.len() > 1024 {
        return Err("mount options are limited to 1024 bytes".into());
    }
    for item in o.split(',') {
        let (name, value) = item.split_once('=').unwrap_or((item, ""));
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            && !name.starts_with('-');
        let value_ok = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'));
        if !name_ok || !value_ok {
            return Err(format!(
                "mount option {item:?} is not NAME or NAME=VALUE of letters, digits and . _ - : /"
            ));
        }
    }
    Ok(())
}

/// A relative path of plain components: no `..`, `.`, empty parts or
/// control characters, so it stays inside the export.
pub(crate) fn check_subdir(subdir: &str) -> Result<(), String> {
    let ok = !subdir.starts_with('/')
        && subdir.len() <= 1024
        && subdir
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && !subdir.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "subdir {subdir:?} must be a relative path inside the share, without . or .. parts"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<VolumeOptions, String> {
        VolumeOptions::parse(pairs.iter().copied(), &Defaults::default())
    }

    #[test]
    fn share_or_server_and_path_give_the_same_source() {
        let a = parse(&[("share", "nfs.example:/export/a")]).unwrap();
        let b = parse(&[("server", "nfs.example"), ("path", "/export/a")]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.share, "nfs.example:/export/a");
        assert!(parse(&[("server", "h")]).is_err());
        assert!(parse(&[("share", "h:/a"), ("server", "h"), ("path", "/a")]).is_err());
    }

    #[test]
    fn shares_that_could_be_read_as_flags_or_words_are_refused() {
        for bad in [
            "h:/e -o exec",
            "-o:/x",
            "h",
            ":/x",
            "h:relative",
            "h:/a\nb",
            "h;x:/a",
            "[::1:/a",
        ] {
            assert!(parse(&[("share", bad)]).is_err(), "{bad:?}");
        }
        for good in ["10.0.0.2:/", "[fd00::1]:/export", "nfs-1.example:/a/b_c"] {
            assert!(parse(&[("share", good)]).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn mount_options_are_plain_items() {
        let ok = parse(&[("share", "h:/e"), ("o", "nfsvers=3,port=2050,ro,soft")]).unwrap();
        assert_eq!(ok.o, "nfsvers=3,port=2050,ro,soft");
        for bad in [
            "ro;touch /tmp/p",
            "ro touch",
            "a=$(x)",
            "ro,,soft",
            "=1",
            "a='b'",
        ] {
            assert!(parse(&[("share", "h:/e"), ("o", bad)]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subdirs_stay_inside_the_share() {
        let ok = parse(&[("share", "h:/e"), ("subdir", "team/a")]).unwrap();
        assert_eq!(ok.subdir.as_deref(), Some("team/a"));
        for bad in ["..", "a/../../b", "/abs", "a//b", "./a", "a/"] {
            assert!(
                parse(&[("share", "h:/e"), ("subdir", bad)]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn defaults_fill_what_the_volume_leaves_out() {
        let defaults = Defaults {
            share: Some("h:/e".into()),
            o: Some("soft".into()),
            subdir: None,
        };
        let opts = VolumeOptions::parse(std::iter::empty(), &defaults).unwrap();
        assert_eq!((opts.share.as_str(), opts.o.as_str()), ("h:/e", "soft"));
        let opts = VolumeOptions::parse([("o", "hard")].into_iter(), &defaults).unwrap();
        assert_eq!(opts.o, "hard");
        let err = parse(&[]).unwrap_err();
        assert!(err.contains("share=HOST:/PATH is required"), "{err}");
    }

    #[test]
    fn unknown_option_lists_the_valid_ones() {
        let err = parse(&[("bogus", "1")]).unwrap_err();
        assert!(
            err.contains("\"bogus\"") && err.contains("o, path, server, share, subdir"),
            "{err}"
        );
    }
}
