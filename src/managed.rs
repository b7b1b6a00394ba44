//! Managed (v2) plugins: the `config.json` the daemon reads, checked for the
//! mistakes it does not report, and the plugin directory that
//! `docker plugin create` takes.
//!
//! ```
//! use docker_plugin_sdk::managed::{Config, Mount};
//!
//! let config = Config::builder("local-dir.sock", "/local-dir")
//!     .description("volumes in directories of a host directory")
//!     .volume_driver()
//!     .propagated_mount("/mnt/volumes")
//!     .mount(Mount::bind("root", "/var/lib/docker-local-dir", "/data").settable_source())
//!     .build();
//! assert!(config.check().is_empty(), "{:?}", config.check());
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::socket::MAX_SOCKET_PATH;

/// A managed plugin's `config.json`, with the daemon's key names.
///
/// Build one with [`Config::builder`]; [`Config::check`] lists the settings
/// that would make the plugin fail without a clear error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Config {
    /// One line shown by `docker plugin ls`.
    pub description: String,
    /// A URL or text pointing to the plugin's documentation.
    pub documentation: String,
    /// The plugin kinds and the socket.
    pub interface: Interface,
    /// The command, as an absolute path in the rootfs and its arguments.
    pub entrypoint: Vec<String>,
    /// The working directory; `/` when empty.
    pub work_dir: String,
    /// `{"Type": "host"}` shares the host's network namespace.
    pub network: Network,
    /// Capabilities and devices.
    pub linux: Linux,
    /// Where the plugin mounts volumes so that the mounts reach the host.
    pub propagated_mount: String,
    /// Shares the host's IPC namespace.
    pub ipc_host: bool,
    /// Shares the host's PID namespace.
    pub pid_host: bool,
    /// Mounts made into the plugin's container.
    pub mounts: Vec<Mount>,
    /// Environment variables, some settable with `docker plugin set`.
    pub env: Vec<Env>,
    /// Arguments appended to the entrypoint.
    pub args: Args,
}

/// `Interface`: which plugin kinds the socket serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Interface {
    /// Lower-case types such as `docker.volumedriver/1.0`.
    pub types: Vec<String>,
    /// The socket file name under `/run/docker/plugins` in the plugin.
    pub socket: String,
}

/// `Network`: the plugin's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Network {
    /// `host`, `none`, or empty for the default.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// `Linux`: capabilities and devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Linux {
    /// Capabilities such as `CAP_SYS_ADMIN`.
    pub capabilities: Vec<String>,
    /// Gives the plugin every device of the host.
    pub allow_all_devices: bool,
    /// Devices given to the plugin.
    pub devices: Vec<Device>,
}

/// One device in `Linux.Devices`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Device {
    /// Name for `docker plugin set NAME.path=...`.
    pub name: String,
    /// What the device is for.
    pub description: String,
    /// `["path"]` if users may change it.
    pub settable: Vec<String>,
    /// The device path.
    pub path: Option<String>,
}

/// One entry of `Mounts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mount {
    /// Name for `docker plugin set NAME.source=...`.
    pub name: String,
    /// What the mount is for.
    pub description: String,
    /// `["source"]` if users may change the source.
    pub settable: Vec<String>,
    /// The host path (for binds).
    pub source: Option<String>,
    /// Where it appears in the plugin.
    pub destination: String,
    /// `bind`, `tmpfs`...
    #[serde(rename = "Type")]
    pub kind: String,
    /// Mount options such as `rbind`, `rw`.
    pub options: Vec<String>,
}

impl Mount {
    /// A read-write recursive bind of host `source` at `destination`.
    pub fn bind(name: &str, source: &str, destination: &str) -> Self {
        Self {
            name: name.to_owned(),
            source: Some(source.to_owned()),
            destination: destination.to_owned(),
            kind: "bind".to_owned(),
            options: vec!["rbind".to_owned(), "rw".to_owned()],
            ..Self::default()
        }
    }

    /// Lets users change the source: `docker plugin set PLUGIN NAME.source=DIR`.
    pub fn settable_source(mut self) -> Self {
        self.settable = vec!["source".to_owned()];
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_owned();
        self
    }
}

/// One entry of `Env`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Env {
    /// The variable name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// `["value"]` if users may change it with `docker plugin set NAME=VALUE`.
    pub settable: Vec<String>,
    /// The default value.
    pub value: Option<String>,
}

/// `Args`: arguments after the entrypoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Args {
    /// Name for `docker plugin set NAME=...`.
    pub name: String,
    /// What they are for.
    pub description: String,
    /// `["value"]` if users may change them.
    pub settable: Vec<String>,
    /// The arguments.
    pub value: Vec<String>,
}

/// Builds a [`Config`].
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl Config {
    /// Starts a config for a plugin listening on `socket` (a file name under
    /// `/run/docker/plugins`) and started as `entrypoint` (an absolute path
    /// in the rootfs).
    pub fn builder(socket: &str, entrypoint: &str) -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                interface: Interface {
                    types: Vec::new(),
                    socket: socket.to_owned(),
                },
                entrypoint: vec![entrypoint.to_owned()],
                ..Config::default()
            },
        }
    }

    /// The problems that would make the daemon reject the plugin or run it
    /// without it ever answering; empty when none is found. The daemon
    /// validates almost nothing itself.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.interface.types.is_empty() {
            problems.push("Interface.Types is empty: the daemon would use it for nothing".into());
        }
        for ty in &self.interface.types {
            if let Err(problem) = check_type(ty) {
                problems.push(format!("Interface.Types {ty:?}: {problem}"));
            }
        }

        let socket = &self.interface.socket;
        // The host side is <exec-root>/plugins/<64-hex id>/<socket>, with
        // the default exec root /run/docker.
        let host_path = 20 + 64 + 1 + socket.len();
        if socket.is_empty() || socket.contains('/') || socket == "." || socket == ".." {
            problems.push(format!(
                "Interface.Socket {socket:?} must be a plain file name"
            ));
        } else if host_path > MAX_SOCKET_PATH {
            problems.push(format!(
                "Interface.Socket {socket:?} is too long: the daemon's path to it \
                 would be {host_path} bytes, over the 107 a socket address holds \
                 (keep it to {} bytes)",
                MAX_SOCKET_PATH - 85
            ));
        }

        match self.entrypoint.first() {
            Some(cmd) if cmd.starts_with('/') => {}
            Some(cmd) => problems.push(format!("Entrypoint {cmd:?} is not an absolute path")),
            None => problems.push("Entrypoint is empty".into()),
        }
        for mount in &self.mounts {
            let name = &mount.name;
            if !mount.destination.starts_with('/') {
                problems.push(format!(
                    "Mounts {name:?}: destination is not an absolute path"
                ));
            }
            let bind = mount.kind.is_empty() || mount.kind == "bind";
            let settable = mount.settable.iter().any(|s| s == "source");
            if bind && mount.source.as_deref().unwrap_or_default().is_empty() && !settable {
                problems.push(format!("Mounts {name:?}: a bind mount needs a source"));
            }
        }
        if !self.propagated_mount.is_empty() && !self.propagated_mount.starts_with('/') {
            problems.push("PropagatedMount is not an absolute path".into());
        }
        problems
    }
}

/// Checks one `Interface.Types` entry: `docker.<kind>/<version>`.
fn check_type(ty: &str) -> Result<(), String> {
    if ty.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("must be lower case, e.g. docker.volumedriver/1.0".into());
    }
    let Some((kind, version)) = ty
        .strip_prefix("docker.")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Err("must look like docker.volumedriver/1.0".into());
    };
    let known = [
        "volumedriver",
        "networkdriver",
        "ipamdriver",
        "authz",
        "logdriver",
        "metricscollector",
    ];
    if !known.contains(&kind) {
        return Err(format!("unknown kind {kind:?}"));
    }
    if version != "1.0" {
        return Err(format!("version must be 1.0, not {version:?}"));
    }
    Ok(())
}

impl ConfigBuilder {
    /// Sets the description.
    pub fn description(mut self, text: &str) -> Self {
        self.config.description = text.to_owned();
        self
    }

    /// Sets the documentation link.
    pub fn documentation(mut self, text: &str) -> Self {
        self.config.documentation = text.to_owned();
        self
    }

    /// Adds an interface type such as `docker.volumedriver/1.0`.
    pub fn interface_type(mut self, ty: &str) -> Self {
        self.config.interface.types.push(ty.to_owned());
        self
    }

    /// Adds `docker.volumedriver/1.0`.
    pub fn volume_driver(self) -> Self {
        self.interface_type("docker.volumedriver/1.0")
    }

    /// Adds an argument after the entrypoint.
    pub fn arg(mut self, arg: &str) -> Self {
        self.config.entrypoint.push(arg.to_owned());
        self
    }

    /// Shares the host's network namespace.
    pub fn host_network(mut self) -> Self {
        self.config.network.kind = "host".to_owned();
        self
    }

    /// Adds a capability such as `CAP_SYS_ADMIN`.
    pub fn capability(mut self, cap: &str) -> Self {
        self.config.linux.capabilities.push(cap.to_owned());
        self
    }

    /// Sets the propagated mount: volume mount points under it reach the
    /// host.
    pub fn propagated_mount(mut self, path: &str) -> Self {
        self.config.propagated_mount = path.to_owned();
        self
    }

    /// Adds a mount.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.config.mounts.push(mount);
        self
    }

    /// Adds an environment variable; `settable` lets `docker plugin set`
    /// change it.
    pub fn env(mut self, name: &str, value: &str, settable: bool) -> Self {
        self.config.env.push(Env {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            settable: settable.then(|| "value".to_owned()).into_iter().collect(),
            ..Env::default()
        });
        self
    }

    /// The config.
    pub fn build(self) -> Config {
        self.config
    }
}

/// A plugin directory: `config.json` and `rootfs/`, ready for
/// `docker plugin create NAME DIR`.
#[derive(Debug)]
pub struct PluginDir {
    dir: PathBuf,
}

impl PluginDir {
    /// Writes `dir/config.json` and a `dir/rootfs` holding `binary` at the
    /// config's entrypoint path, the shared libraries `ldd` lists for it,
    /// and the directories the daemon mounts onto (`/run/docker/plugins`,
    /// the mount destinations, the propagated mount) plus `/etc` and
    /// `/tmp`. `dir` must not exist yet, or be empty.
    ///
    /// # Errors
    ///
    /// [`Error::PluginDir`] if the config fails [`Config::check`], `dir` is
    /// not empty, `ldd` fails, or copying fails.
    pub fn create(dir: &Path, config: &Config, binary: &Path) -> Result<Self, Error> {
        let fail = |reason: String| Error::PluginDir {
            path: dir.to_owned(),
            reason,
        };
        let problems = config.check();
        if !problems.is_empty() {
            return Err(fail(format!("config.json: {}", problems.join("; "))));
        }
        if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(fail("the directory is not empty".into()));
        }
        let io = |what: &str| {
            let what = what.to_owned();
            move |err: io::Error| fail(format!("{what}: {err}"))
        };

        let rootfs = dir.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(io("creating rootfs"))?;
        let mut dirs = vec![
            "/run/docker/plugins",
            "/etc",
            "/tmp",
            "/proc",
            "/sys",
            "/dev",
        ];
        dirs.extend(config.mounts.iter().map(|m| m.destination.as_str()));
        if !config.propagated_mount.is_empty() {
            dirs.push(&config.propagated_mount);
        }
        for inside in dirs {
            fs::create_dir_all(in_rootfs(&rootfs, inside))
                .map_err(io(&format!("creating {inside}")))?;
        }
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
            .map_err(io("making /tmp writable"))?;

        let entrypoint = &config.entrypoint[0];
        copy_into(&rootfs, binary, entrypoint).map_err(io(&format!("copying {entrypoint}")))?;
        for lib in shared_libraries(binary).map_err(&fail)? {
            let inside = lib.to_string_lossy().into_owned();
            copy_into(&rootfs, &lib, &inside).map_err(io(&format!("copying {inside}")))?;
        }

        let json = serde_json::to_vec_pretty(config).map_err(|e| fail(e.to_string()))?;
        fs::write(dir.join("config.json"), json).map_err(io("writing config.json"))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The directory, to pass to `docker plugin create`.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// `inside` (an absolute path in the plugin) under `rootfs`, with `..` and
/// the like dropped so it cannot leave it.
fn in_rootfs(rootfs: &Path, inside: &str) -> PathBuf {
    let mut path = rootfs.to_owned();
    for part in Path::new(inside).components() {
        if let Component::Normal(part) = part {
            path.push(part);
        }
    }
    path
}

/// Copies the file `from` (following symlinks) to `inside` in the rootfs,
/// keeping its permission bits.
fn copy_into(rootfs: &Path, from: &Path, inside: &str) -> io::Result<()> {
    let to = in_rootfs(rootfs, inside);
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, &to)?;
    Ok(())
}

/// The shared libraries `binary` loads, with the dynamic loader, as `ldd`
/// lists them; none for a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|err| format!("running ldd: {err}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // ldd fails on static binaries, which need nothing more.
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(format!("ldd {}: {}", binary.display(), err.trim()));
    }
    parse_ldd(&text)
}

/// Reads `ldd` output: `name => /path (0x...)`, `/path (0x...)`, or a
/// virtual library with no path.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            return Err(format!("a library is missing: {line}"));
        }
        if line.contains("statically linked") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config::builder("ld.sock", "/ld")
            .volume_driver()
            .mount(Mount::bind("root", "/var/lib/x", "/data"))
            .build()
    }

    #[test]
    fn serialises_with_the_daemons_key_names() {
        let json = serde_json::to_value(valid()).unwrap();
        assert_eq!(json["Interface"]["Types"][0], "docker.volumedriver/1.0");
        assert_eq!(json["Interface"]["Socket"], "ld.sock");
        assert_eq!(json["Mounts"][0]["Type"], "bind");
        assert_eq!(json["Mounts"][0]["Source"], "/var/lib/x");
        assert_eq!(json["Network"]["Type"], "");
        assert_eq!(json["Linux"]["AllowAllDevices"], false);
        for key in [
            "PropagatedMount",
            "IpcHost",
            "PidHost",
            "WorkDir",
            "Env",
            "Args",
        ] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
    }

    #[test]
    fn a_valid_config_has_no_problems() {
        assert_eq!(valid().check(), Vec::<String>::new());
    }

    #[test]
    fn types_must_be_lower_case_known_and_version_1_0() {
        for ty in [
            "docker.VolumeDriver/1.0",
            "VolumeDriver",
            "docker.volumedriver/1.2",
            "docker.fsdriver/1.0",
        ] {
            let mut config = valid();
            config.interface.types = vec![ty.into()];
            assert_eq!(config.check().len(), 1, "{ty}");
        }
    }

    #[test]
    fn long_socket_names_and_sourceless_binds_are_reported() {
        let mut config = valid();
        config.interface.socket = "a-rather-long-socket-name.sock".into();
        config.mounts[0].source = None;
        let problems = config.check();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("too long"));
        assert!(problems[1].contains("needs a source"));
        config.interface.socket = "x".repeat(22);
        config.mounts[0] = config.mounts[0].clone().settable_source();
        assert!(config.check().is_empty(), "{:?}", config.check());
    }

    #[test]
    fn ldd_output_gives_the_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }

    #[test]
    fn rootfs_paths_never_leave_the_rootfs() {
        let root = Path::new("/r");
        assert_eq!(in_rootfs(root, "/../../etc"), Path::new("/r/etc"));
        assert_eq!(in_rootfs(root, "/a/./b"), Path::new("/r/a/b"));
    }
}
