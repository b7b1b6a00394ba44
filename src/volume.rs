//! Volume plugins: the [`VolumeDriver`] trait and the `VolumeDriver.*` wire
//! types.
//!
//! See `docs/volume.md` for when the daemon calls what.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DriverError;
use crate::plugin::{Kind, Plugin};
use crate::wire::null_as_default;

/// The name `/Plugin.Activate` lists for volume drivers.
pub const IMPLEMENTS: &str = "VolumeDriver";

/// A volume driver: what the daemon calls for `docker volume` and for
/// containers that mount a volume of this driver.
///
/// # Contract
///
/// - Every method is required except [`capabilities`](Self::capabilities),
///   which defaults to [`Scope::Local`].
/// - Calls arrive concurrently, including several for the same volume (two
///   containers starting at once, a retried `create`). Serialise what needs
///   serialising inside the driver.
/// - A call runs to completion even if the daemon hangs up: the SDK does not
///   cancel a driver future when the connection closes, so a half-done
///   `create` or `mount` never leaves the driver's state torn.
/// - The daemon gives up waiting after 2 minutes for `create` and `mount`
///   and after 1 minute for the others; keep every call well inside that.
/// - Returning `Err` answers HTTP 500 with `{"Err": "<message>"}`; the user
///   sees `VolumeDriver.<Method>: <message>`. A panic is answered the same
///   way and the server keeps serving.
/// - The daemon retries calls after transport errors, so `create` and
///   `mount` may arrive twice: make them idempotent.
#[async_trait]
pub trait VolumeDriver: Send + Sync + 'static {
    /// `VolumeDriver.Create`: make the volume exist.
    ///
    /// The daemon calls [`get`](Self::get) first and only calls `create`
    /// when that fails. Creating a name that already exists with the same
    /// options should succeed; with other options it should fail.
    async fn create(&self, req: CreateRequest) -> Result<(), DriverError>;

    /// `VolumeDriver.Remove`: delete the volume.
    ///
    /// Refuse with [`DriverError::in_use`] while it is mounted.
    async fn remove(&self, req: RemoveRequest) -> Result<(), DriverError>;

    /// `VolumeDriver.Mount`: make the volume available on the host and
    /// return its absolute path.
    ///
    /// `req.id` identifies this use; the same volume may be mounted under
    /// several IDs at once, and the daemon may repeat an ID it used before
    /// (after its own restart). Track the set of IDs, not a counter. The SDK
    /// rejects an empty or relative path before it reaches the daemon.
    async fn mount(&self, req: MountRequest) -> Result<PathBuf, DriverError>;

    /// `VolumeDriver.Unmount`: the use `req.id` has ended. Only the last
    /// user leaving should release the backing mount. An unknown ID should
    /// be harmless.
    async fn unmount(&self, req: UnmountRequest) -> Result<(), DriverError>;

    /// `VolumeDriver.Path`: where the volume is mounted, or `None` when it
    /// is not mounted. The daemon ignores errors from this call.
    async fn path(&self, req: PathRequest) -> Result<Option<PathBuf>, DriverError>;

    /// `VolumeDriver.Get`: describe one volume.
    ///
    /// An unknown name must be an error (usually
    /// [`DriverError::not_found`]); the daemon relies on it to decide
    /// whether to call `create`. Never fail for a volume that exists: the
    /// daemon forgets the labels and options of a volume whose `Get` fails.
    async fn get(&self, req: GetRequest) -> Result<Volume, DriverError>;

    /// `VolumeDriver.List`: every volume of this driver.
    async fn list(&self) -> Result<Vec<Volume>, DriverError>;

    /// `VolumeDriver.Capabilities`: whether volumes are local to this host
    /// or the same on every host of a cluster.
    async fn capabilities(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities::default())
    }
}

impl Plugin {
    /// Serves `driver` for `VolumeDriver.*` on this plugin's socket.
    pub fn volume<D: VolumeDriver>(self, driver: D) -> Self {
        self.volume_shared(Arc::new(driver))
    }

    /// Like [`Plugin::volume`], for a driver the caller keeps a handle on.
    pub fn volume_shared<D: VolumeDriver>(self, driver: Arc<D>) -> Self {
        self.register::<VolumeKind>(|r| {
            r.add("VolumeDriver.Create", &driver, |d, req| async move {
                d.create(req).await.map(|()| Empty {})
            });
            r.add("VolumeDriver.Remove", &driver, |d, req| async move {
                d.remove(req).await.map(|()| Empty {})
            });
            r.add(
                "VolumeDriver.Mount",
                &driver,
                |d, req: MountRequest| async move {
                    let name = req.name.clone();
                    let path = d.mount(req).await?;
                    check_mountpoint(&name, &path)?;
                    Ok(MountResponse { mountpoint: path })
                },
            );
            r.add("VolumeDriver.Unmount", &driver, |d, req| async move {
                d.unmount(req).await.map(|()| Empty {})
            });
            r.add(
                "VolumeDriver.Path",
                &driver,
                |d, req: PathRequest| async move {
                    let name = req.name.clone();
                    let mountpoint = d.path(req).await?;
                    if let Some(path) = &mountpoint {
                        check_mountpoint(&name, path)?;
                    }
                    Ok(PathResponse { mountpoint })
                },
            );
            r.add(
                "VolumeDriver.Get",
                &driver,
                |d, req: GetRequest| async move {
                    let name = req.name.clone();
                    let mut volume = d.get(req).await?;
                    // The daemon files the answer under the name it asked for.
                    if volume.name.is_empty() {
                        volume.name = name;
                    }
                    check_volume(&volume)?;
                    Ok(GetResponse { volume })
                },
            );
            r.add("VolumeDriver.List", &driver, |d, _: Empty| async move {
                let volumes = d.list().await?;
                for volume in &volumes {
                    if volume.name.is_empty() {
                        return Err(DriverError::other("driver listed a volume without a name"));
                    }
                    check_volume(volume)?;
                }
                Ok(ListResponse { volumes })
            });
            r.add(
                "VolumeDriver.Capabilities",
                &driver,
                |d, _: Empty| async move {
                    let capabilities = d.capabilities().await?;
                    Ok(CapabilitiesResponse { capabilities })
                },
            );
        })
    }
}

struct VolumeKind;

impl Kind for VolumeKind {
    const IMPLEMENTS: &'static str = IMPLEMENTS;
}

/// The daemon bind-mounts whatever path it gets, so a relative or empty one
/// would resolve against its own working directory.
fn check_mountpoint(name: &str, path: &std::path::Path) -> Result<(), DriverError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(DriverError::other(format!(
            "driver returned mountpoint {:?} for volume {name:?}; it must be an absolute path",
            path.display().to_string()
        )))
    }
}

fn check_volume(volume: &Volume) -> Result<(), DriverError> {
    match &volume.mountpoint {
        Some(path) => check_mountpoint(&volume.name, path),
        None => Ok(()),
    }
}

/// An empty JSON object: the argument of `List` and `Capabilities` and the
/// answer of calls that return nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `VolumeDriver.Create` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The volume name. The daemon does not validate plugin volume names:
    /// any string may arrive, including `..` and `/`.
    #[serde(rename = "Name")]
    pub name: String,
    /// The `--opt` values. `None` when the daemon sent `null` (volumes
    /// created implicitly by `docker run -v`) or left the key out; an empty
    /// map from `docker volume create` without `--opt`.
    #[serde(rename = "Opts", default)]
    pub opts: Option<BTreeMap<String, String>>,
}

impl CreateRequest {
    /// The options, treating `null` and absent as empty.
    pub fn options(&self) -> impl Iterator<Item = (&str, &str)> {
        self.opts
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// `VolumeDriver.Remove` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// The volume name.
    #[serde(rename = "Name")]
    pub name: String,
}

/// `VolumeDriver.Mount` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRequest {
    /// The volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// An opaque ID for this use of the volume (64 hex characters from
    /// current daemons, not a container ID). Empty if the caller sent none.
    #[serde(rename = "ID", default)]
    pub id: String,
}

/// `VolumeDriver.Unmount` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmountRequest {
    /// The volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// The ID the matching [`MountRequest`] carried. Empty if the caller
    /// sent none.
    #[serde(rename = "ID", default)]
    pub id: String,
}

/// `VolumeDriver.Path` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRequest {
    /// The volume name.
    #[serde(rename = "Name")]
    pub name: String,
}

/// `VolumeDriver.Get` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The volume name.
    #[serde(rename = "Name")]
    pub name: String,
}

/// `VolumeDriver.Mount` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountResponse {
    /// Absolute host path of the mounted volume.
    #[serde(rename = "Mountpoint")]
    pub mountpoint: PathBuf,
}

/// `VolumeDriver.Path` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathResponse {
    /// Where the volume is mounted; `None` (sent as `""`) when it is not.
    #[serde(rename = "Mountpoint", default, with = "optional_path")]
    pub mountpoint: Option<PathBuf>,
}

/// `VolumeDriver.Get` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetResponse {
    /// The volume.
    #[serde(rename = "Volume")]
    pub volume: Volume,
}

/// `VolumeDriver.List` answer. Being a `Vec<Volume>`, it can never hold the
/// `null` element that crashes the daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListResponse {
    /// Every volume.
    #[serde(rename = "Volumes", default, deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume>,
}

/// `VolumeDriver.Capabilities` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilitiesResponse {
    /// The driver's capabilities.
    #[serde(rename = "Capabilities", default)]
    pub capabilities: Capabilities,
}

/// What a volume driver can do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Whether a volume name means the same data on every host.
    #[serde(rename = "Scope", default)]
    pub scope: Scope,
}

/// The scope of a driver's volumes, spelt in lower case on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Volumes exist on this host only (the default).
    #[default]
    Local,
    /// The same name is the same volume on every host of a cluster.
    Global,
}

/// A volume as `Get` and `List` describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// The name exactly as the daemon sent it to `create`.
    #[serde(rename = "Name")]
    pub name: String,
    /// Host path when mounted; left out when `None`.
    #[serde(
        rename = "Mountpoint",
        default,
        with = "optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub mountpoint: Option<PathBuf>,
    /// Creation time, sent as RFC 3339; left out when `None`, never `""`
    /// (which would break the daemon's decoding of the whole answer).
    #[serde(
        rename = "CreatedAt",
        default,
        with = "rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<SystemTime>,
    /// Free-form details shown by `docker volume inspect`; left out when
    /// `None`.
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Volume {
    /// A volume with only its name set.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// `Mountpoint` strings where `""` and `null` both mean "no path".
mod optional_path {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(path) => path.serialize(s),
            None => s.serialize_str(""),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        de: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        let s = Option::<String>::deserialize(de)?;
        Ok(s.filter(|s| !s.is_empty()).map(PathBuf::from))
    }
}

/// RFC 3339 timestamps as the daemon's Go `time.Time` decoder reads them.
mod rfc3339 {
    use super::*;
    use serde::de::Error as _;

    pub(super) fn serialize<S: Serializer>(
        v: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.collect_str(&humantime::format_rfc3339_nanos(clamp(*t))),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        de: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(de)? {
            None => Ok(None),
            Some(s) => parse(&s).map(Some).map_err(D::Error::custom),
        }
    }

    /// RFC 3339 covers years 0000 to 9999, the formatter only from 1970:
    /// a clock set far off must not turn a volume listing into a panic.
    fn clamp(t: SystemTime) -> SystemTime {
        // 9999-12-31T23:59:59Z
        let latest = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        t.clamp(SystemTime::UNIX_EPOCH, latest)
    }

    /// Parses RFC 3339 with any UTC offset, which other plugins may send.
    pub(super) fn parse(s: &str) -> Result<SystemTime, String> {
        let bad = || format!("invalid RFC 3339 timestamp {s:?}");
        let tail = s.len().checked_sub(6).and_then(|i| Some((i, s.get(i..)?)));
        let (local, offset_secs) = match tail {
            Some((i, tail)) if tail.len() == 6 && tail.as_bytes()[3] == b':' => {
                let sign = match tail.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return Err(bad()),
                };
                let field = |r: std::ops::Range<usize>| -> Result<i64, String> {
                    tail.get(r).and_then(|f| f.parse().ok()).ok_or_else(bad)
                };
                let secs = field(1..3)? * 3600 + field(4..6)? * 60;
                (format!("{}Z", &s[..i]), sign * secs)
            }
            _ => (s.to_owned(), 0),
        };
        let t = humantime::parse_rfc3339_weak(&local).map_err(|_| bad())?;
        // A local time ahead of UTC by `offset` means UTC is `offset` earlier.
        let shifted = if offset_secs >= 0 {
            t.checked_sub(Duration::from_secs(offset_secs as u64))
        } else {
            t.checked_add(Duration::from_secs(offset_secs.unsigned_abs()))
        };
        shifted.ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_accepts_null_missing_and_empty_opts() {
        for body in [
            r#"{"Name":"v1","Opts":null}"#,
            r#"{"Name":"v2"}"#,
            r#"{"Name":"v3","Opts":{}}"#,
        ] {
            let req: CreateRequest = serde_json::from_str(body).unwrap();
            assert_eq!(req.options().count(), 0, "{body}");
        }
    }

    #[test]
    fn volume_without_created_at_or_status_leaves_them_out() {
        let v = serde_json::to_value(Volume::new("a")).unwrap();
        assert_eq!(v, json!({"Name": "a"}));
    }

    #[test]
    fn created_at_is_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045);
        let mut v = Volume::new("a");
        v.created_at = Some(t);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["CreatedAt"], "2026-01-02T03:04:05.000000000Z");
        let back: Volume = serde_json::from_value(json).unwrap();
        assert_eq!(back.created_at, Some(t));
    }

    #[test]
    fn created_at_with_offset_is_read_as_utc() {
        let t = rfc3339::parse("2026-01-02T05:04:05+02:00").unwrap();
        assert_eq!(t, rfc3339::parse("2026-01-02T03:04:05Z").unwrap());
        let t = rfc3339::parse("2026-01-02T01:04:05.5-02:00").unwrap();
        assert_eq!(t, rfc3339::parse("2026-01-02T03:04:05.5Z").unwrap());
        assert!(rfc3339::parse("").is_err());
        assert!(rfc3339::parse("yesterday").is_err());
    }

    #[test]
    fn created_at_outside_rfc3339_years_is_clamped_not_a_panic() {
        let mut v = Volume::new("a");
        v.created_at = SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(1));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["CreatedAt"], "1970-01-01T00:00:00.000000000Z");
        v.created_at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(400_000_000_000));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["CreatedAt"], "9999-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn list_reads_null_as_empty() {
        let r: ListResponse = serde_json::from_str(r#"{"Volumes":null}"#).unwrap();
        assert!(r.volumes.is_empty());
    }

    #[test]
    fn scope_is_lower_case() {
        let c = CapabilitiesResponse::default();
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            json!({"Capabilities": {"Scope": "local"}})
        );
    }

    #[test]
    fn relative_mountpoint_is_refused() {
        assert!(check_mountpoint("a", std::path::Path::new("rel")).is_err());
        assert!(check_mountpoint("a", std::path::Path::new("")).is_err());
        assert!(check_mountpoint("a", std::path::Path::new("/abs")).is_ok());
    }
}
