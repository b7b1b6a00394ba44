//! What bridge-net remembers across restarts, and its crash-safe file.
//!
//! One file holds both drivers' state, so that a pool and the network
//! using it can never be saved out of step.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use docker_plugin_sdk::ipnet::IpNet;
use docker_plugin_sdk::network::MacAddress;
use serde::{Deserialize, Serialize};

/// Version of the on-disk format, bumped on incompatible changes.
const FORMAT: u32 = 1;

/// Everything bridge-net knows; `state.json` holds exactly this.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    format: u32,
    /// Held pools by pool ID.
    pub(crate) pools: BTreeMap<String, Pool>,
    /// Networks by network ID.
    pub(crate) networks: BTreeMap<String, Network>,
}

/// One pool handed out by the IPAM driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pool {
    pub(crate) pool: IpNet,
    /// The user's `--ip-range`: container addresses come from here.
    pub(crate) sub_pool: Option<IpNet>,
    /// Addresses handed out, gateway included.
    pub(crate) addresses: BTreeSet<IpAddr>,
}

/// One network and its bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Network {
    pub(crate) bridge: String,
    pub(crate) options: NetworkOptions,
    /// Gateways with their prefix, put on the bridge when
    /// [`NetworkOptions::host_access`] is set.
    pub(crate) gateways: Vec<IpNet>,
    pub(crate) endpoints: BTreeMap<String, Endpoint>,
}

/// One endpoint and the veth pair that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Endpoint {
    /// The end attached to the bridge.
    pub(crate) host_veth: String,
    /// The end the daemon moves into the container.
    pub(crate) peer_veth: String,
    pub(crate) mac: Option<MacAddress>,
}

/// The `docker network create -o` options, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetworkOptions {
    pub(crate) mtu: Option<u32>,
    /// Whether the bridge holds the gateway address, so that containers
    /// reach the host and get a default route.
    pub(crate) host_access: bool,
}

/// Option names `docker network create -o` accepts, sorted.
pub(crate) const OPTION_NAMES: [&str; 2] = ["host-access", "mtu"];

impl NetworkOptions {
    /// Parses `-o` pairs; `Err` carries the message for the user.
    pub(crate) fn parse<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut opts = Self {
            mtu: None,
            host_access: true,
        };
        for (key, value) in pairs {
            match key {
                "mtu" => {
                    let mtu = value
                        .parse::<u32>()
                        .ok()
                        .filter(|m| (68..=65535).contains(m));
                    let bad = || format!("option mtu={value:?} must be a number from 68 to 65535");
                    opts.mtu = Some(mtu.ok_or_else(bad)?);
                }
                "host-access" => {
                    opts.host_access = match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(format!(
                                "option host-access={value:?} must be true or false"
                            ));
                        }
                    }
                }
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
}

impl State {
    /// Reads `path`; a missing file is a fresh start, a corrupt one an
    /// error, since starting empty would hand out pools still in use.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Ok(Self {
                    format: FORMAT,
                    ..Self::default()
                });
            }
            Err(err) => return Err(format!("reading {}: {err}", path.display())),
        };
        let state: Self = serde_json::from_slice(&bytes).map_err(|err| {
            format!(
                "{} is corrupt ({err}); refusing to start rather than hand out addresses \
                 that may be in use. Restore it or fix it by hand",
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

    /// Replaces `path` so that a crash at any moment leaves either the old
    /// file or the new one, never a torn one.
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

/// A link name for an object ID, `prefix` plus 12 characters, within the
/// kernel's limit. Docker's IDs are 64 hex characters whose first 12 are
/// what `docker network ls` shows, so those are used as they are; any other
/// ID is hashed, so that a name never holds odd characters.
pub(crate) fn link_name(prefix: &str, id: &str) -> String {
    let short = if id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id[..12].to_ascii_lowercase()
    } else {
        // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("{:012x}", hash & 0xffff_ffff_ffff)
    };
    let name = format!("{prefix}{short}");
    debug_assert!(name.len() <= crate::netlink::MAX_NAME, "{name}");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_the_kernel_limit_and_follow_docker_ids() {
        let id = "246248774e0a33fe16784038973c343db77753340d6b99e33af6800122041385";
        assert_eq!(link_name("bn-", id), "bn-246248774e0a");
        for id in ["n1", "", "../x", "ÜÜÜÜÜÜÜÜÜÜÜÜÜÜ", id] {
            let name = link_name("bv-", id);
            assert!(name.len() <= crate::netlink::MAX_NAME, "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        }
        assert_ne!(link_name("bn-", "n1"), link_name("bn-", "n2"));
    }

    #[test]
    fn unknown_option_lists_the_valid_ones() {
        let err = NetworkOptions::parse([("colour", "red")].into_iter()).unwrap_err();
        assert!(
            err.contains("\"colour\"") && err.contains("host-access, mtu"),
            "{err}"
        );
        assert!(NetworkOptions::parse([("mtu", "9")].into_iter()).is_err());
        assert!(NetworkOptions::parse([("host-access", "yes")].into_iter()).is_err());
        let opts = NetworkOptions::parse([("mtu", "1400"), ("host-access", "false")].into_iter());
        assert_eq!(
            opts,
            Ok(NetworkOptions {
                mtu: Some(1400),
                host_access: false
            })
        );
    }

    #[test]
    fn corrupt_state_is_an_error_and_saves_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"{\"format\":1,\"po").unwrap();
        assert!(State::load(&path).unwrap_err().contains("corrupt"));

        let mut state = State::load(&dir.path().join("fresh.json")).unwrap();
        state.pools.insert(
            "p".into(),
            Pool {
                pool: "10.199.3.0/24".parse().unwrap(),
                sub_pool: None,
                addresses: ["10.199.3.1".parse().unwrap()].into(),
            },
        );
        state.save(&path).unwrap();
        let back = State::load(&path).unwrap();
        assert_eq!(back.pools, state.pools);
        assert!(!temp_path(&path).exists());
    }
}
