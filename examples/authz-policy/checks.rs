//! Checks on request bodies that create containers, execs and volumes.
//!
//! Every check reads the body as the daemon does ([`JsonValue`]) and looks
//! at every value the daemon could act on, so that repeated keys or odd key
//! casing cannot hide a setting.

use std::path::Path;

use docker_plugin_sdk::authz::{ApiRequest, JsonValue};

use crate::patterns::{ImageRef, glob, resolve_physical};
use crate::rules::Containers;

/// A denial: the rule that matched and what the user is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denial {
    /// The rule's name, e.g. `containers.deny_privileged`.
    pub(crate) rule: String,
    /// What was refused and why.
    pub(crate) detail: String,
}

impl Denial {
    pub(crate) fn new(rule: &str, detail: impl Into<String>) -> Self {
        Self {
            rule: rule.to_owned(),
            detail: detail.into(),
        }
    }
}

/// The API calls whose bodies these checks read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guarded {
    ContainerCreate,
    /// Before API 1.24 a start could carry a host config.
    ContainerStart,
    ExecCreate,
    VolumeCreate,
    ImagePull,
}

fn guarded(req: &ApiRequest) -> Option<Guarded> {
    if !req.is("POST") {
        return None;
    }
    let path = req.uri.path();
    match () {
        _ if path == "/containers/create" => Some(Guarded::ContainerCreate),
        _ if glob("/containers/*/start", path) => Some(Guarded::ContainerStart),
        _ if glob("/containers/*/exec", path) => Some(Guarded::ExecCreate),
        _ if path == "/volumes/create" => Some(Guarded::VolumeCreate),
        _ if path == "/images/create" => Some(Guarded::ImagePull),
        _ => None,
    }
}

/// Runs the container checks that apply to `req`.
pub(crate) fn check(c: &Containers, req: &ApiRequest) -> Result<(), Denial> {
    let Some(kind) = guarded(req) else {
        return Ok(());
    };
    if kind == Guarded::ImagePull {
        let Some(image) = req.uri.query_value("fromImage") else {
            return Ok(());
        };
        let image = match req.uri.query_value("tag").filter(|t| !t.is_empty()) {
            Some(digest) if digest.contains(':') => format!("{image}@{digest}"),
            Some(tag) => format!("{image}:{tag}"),
            None => image.to_owned(),
        };
        return check_image(c, &image);
    }
    if kind == Guarded::ContainerStart && req.body.is_absent() && !old_api(req) {
        return Ok(());
    }
    if kind == Guarded::VolumeCreate && c.bind_prefixes.is_none() {
        return Ok(());
    }

    // The daemon may act on a body this plugin never saw (sent chunked, or
    // larger than older daemons forward), so a missing body is a denial.
    let body = req.body.json().map_err(|e| {
        Denial::new(
            "containers.body",
            format!("cannot check {} {}: {e}", req.method, req.uri.path()),
        )
    })?;
    match kind {
        Guarded::ContainerCreate => {
            for image in body
                .all(&["Image"])
                .into_iter()
                .filter_map(JsonValue::as_str)
            {
                check_image(c, image)?;
            }
            check_privileged(c, &body, &["HostConfig", "Privileged"], "containers")?;
            for host in body.all(&["HostConfig"]) {
                check_host_config(c, host)?;
            }
            Ok(())
        }
        Guarded::ContainerStart => {
            check_privileged(c, &body, &["Privileged"], "containers")?;
            check_host_config(c, &body)
        }
        Guarded::ExecCreate => check_privileged(c, &body, &["Privileged"], "exec sessions"),
        Guarded::VolumeCreate => {
            for opts in body.all(&["DriverOpts"]) {
                check_device(c, opts)?;
            }
            Ok(())
        }
        Guarded::ImagePull => Ok(()),
    }
}

fn old_api(req: &ApiRequest) -> bool {
    let Some(version) = req.uri.api_version() else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) < (1, 24)
}

/// Lists (capabilities, binds, mounts) of one `HostConfig` candidate; the
/// daemon may merge candidates, so every one is checked.
fn check_host_config(c: &Containers, host: &JsonValue) -> Result<(), Denial> {
    check_caps(c, host)?;
    if c.bind_prefixes.is_some() {
        check_binds(c, host)?;
    }
    Ok(())
}

/// A bool the daemon decodes exactly as [`JsonValue::get`] reads it: the
/// last non-null value under any spelling of the keys.
fn check_privileged(
    c: &Containers,
    body: &JsonValue,
    path: &[&str],
    what: &str,
) -> Result<(), Denial> {
    if c.deny_privileged && body.get(path).and_then(JsonValue::as_bool) == Some(true) {
        return Err(Denial::new(
            "containers.deny_privileged",
            format!("privileged {what} are not allowed"),
        ));
    }
    Ok(())
}

fn check_caps(c: &Containers, host: &JsonValue) -> Result<(), Denial> {
    if !c.deny_cap_add {
        return Ok(());
    }
    let allowed: Vec<String> = c.allow_cap_add.iter().map(|s| cap_name(s)).collect();
    for list in host.all(&["CapAdd"]) {
        for cap in list.as_array().unwrap_or_default() {
            let name = cap.as_str().map(cap_name).unwrap_or_default();
            if !allowed.contains(&name) {
                return Err(Denial::new(
                    "containers.deny_cap_add",
                    format!("adding capability {name:?} is not allowed"),
                ));
            }
        }
    }
    Ok(())
}

/// The daemon accepts `net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` alike.
fn cap_name(s: &str) -> String {
    let upper = s.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned()
}

fn check_binds(c: &Containers, host: &JsonValue) -> Result<(), Denial> {
    for list in host.all(&["Binds"]) {
        for bind in list.as_array().unwrap_or_default() {
            // SOURCE:TARGET[:OPTIONS]; a source without '/' is a volume name.
            let source = bind.as_str().unwrap_or_default().split(':').next();
            if let Some(source) = source.filter(|s| s.starts_with('/')) {
                check_host_path(c, source)?;
            }
        }
    }
    for list in host.all(&["Mounts"]) {
        for mount in list.as_array().unwrap_or_default() {
            let is_bind = mount
                .all(&["Type"])
                .iter()
                .any(|t| t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bind")));
            for source in mount
                .all(&["Source"])
                .into_iter()
                .filter_map(JsonValue::as_str)
            {
                if is_bind || source.starts_with('/') {
                    check_host_path(c, source)?;
                }
            }
            for opts in mount.all(&["VolumeOptions", "DriverConfig", "Options"]) {
                check_device(c, opts)?;
            }
        }
    }
    Ok(())
}

/// The local volume driver mounts `device` (a host path with `o=bind`, or
/// a block device): it is a host path in disguise.
fn check_device(c: &Containers, opts: &JsonValue) -> Result<(), Denial> {
    if c.bind_prefixes.is_none() {
        return Ok(());
    }
    for device in opts
        .all(&["device"])
        .into_iter()
        .filter_map(JsonValue::as_str)
    {
        if device.starts_with('/') {
            check_host_path(c, device)?;
        }
    }
    Ok(())
}

fn check_host_path(c: &Containers, source: &str) -> Result<(), Denial> {
    let prefixes = c.bind_prefixes.as_deref().unwrap_or_default();
    let physical = resolve_physical(Path::new(source)).map_err(|e| {
        Denial::new(
            "containers.bind_prefixes",
            format!("cannot resolve host path {source:?}: {e}"),
        )
    })?;
    if prefixes.iter().any(|p| physical.starts_with(p)) {
        return Ok(());
    }
    Err(Denial::new(
        "containers.bind_prefixes",
        format!(
            "host path {source:?} (really {}) is outside the allowed prefixes",
            physical.display()
        ),
    ))
}

fn check_image(c: &Containers, image: &str) -> Result<(), Denial> {
    if c.deny_images.is_empty() {
        return Ok(());
    }
    if ImageRef::may_be_id(image) {
        return Err(Denial::new(
            "containers.deny_images",
            format!("image {image:?} may be an image ID, which cannot be checked; use its name"),
        ));
    }
    let reference = ImageRef::parse(image);
    match c.deny_images.iter().find(|p| reference.matches(p)) {
        Some(pattern) => Err(Denial::new(
            "containers.deny_images",
            format!("image {image:?} matches denied pattern {pattern:?}"),
        )),
        None => Ok(()),
    }
}
