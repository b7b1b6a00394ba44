//! End to end: a real Docker daemon finding local-dir through a TCP spec
//! file, and through a socket that systemd-style socket activation holds.
//!
//! Needs a daemon this run may use freely, given by
//! `DOCKER_PLUGIN_SDK_DOCKER_HOST` (see `.ci/run`); skipped with a message
//! without one, unless `DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1`, which makes a
//! missing daemon a failure. Spec files go to `/etc/docker/plugins` and
//! sockets to `/run/docker/plugins`, where every daemon looks, under names
//! unique to this process; each is removed when its test ends, pass or fail.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::docker::{docker, import_busybox};
use common::process::local_dir_binary;

const IMAGE: &str = "sdk-deploy-busybox:latest";

struct Daemon {
    host: String,
    cli: String,
}

/// The daemon under test, or `None` (with a loud message) when skipped;
/// looked up once, so the test image is imported once.
fn daemon() -> Option<&'static Daemon> {
    static DAEMON: OnceLock<Option<Daemon>> = OnceLock::new();
    DAEMON.get_or_init(find_daemon).as_ref()
}

fn find_daemon() -> Option<Daemon> {
    let required = std::env::var("DOCKER_PLUGIN_SDK_REQUIRE_DAEMON").as_deref() == Ok("1");
    let loud = |msg: &str| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {msg} ***\n");
    };
    let Ok(host) = std::env::var("DOCKER_PLUGIN_SDK_DOCKER_HOST") else {
        assert!(!required, "DOCKER_PLUGIN_SDK_DOCKER_HOST is not set");
        loud("the deployment tests need DOCKER_PLUGIN_SDK_DOCKER_HOST (a private dockerd)");
        return None;
    };
    let cli = std::env::var("DOCKER_PLUGIN_SDK_DOCKER_CLI").unwrap_or_else(|_| "docker".into());
    let version = docker(&cli, &host, &["version", "--format", "{{.Server.Version}}"]);
    if !version.status.success() {
        let msg = format!("daemon at {host} is not reachable");
        assert!(!required, "{msg}");
        loud(&msg);
        return None;
    }
    import_busybox(&cli, &host, IMAGE);
    Some(Daemon { host, cli })
}

impl Daemon {
    fn run(&self, args: &[&str]) -> Output {
        docker(&self.cli, &self.host, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates a volume on `driver`, writes a file into it from a
    /// container, reads it back from another, checks the file landed in
    /// the volume directory `host_dir` gives for the reported mount point,
    /// and removes the volume.
    fn use_volume(&self, driver: &str, host_dir: impl Fn(&str) -> PathBuf) {
        let vol = format!("{driver}-vol");
        self.ok(&["volume", "create", "-d", driver, &vol]);
        let mount = format!("{vol}:/data");
        let write = "echo hi > /data/f";
        self.ok(&["run", "--rm", "-v", &mount, IMAGE, "sh", "-c", write]);
        let read = self.ok(&["run", "--rm", "-v", &mount, IMAGE, "cat", "/data/f"]);
        assert_eq!(read, "hi");
        let mountpoint = self.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", &vol]);
        let dir = host_dir(&mountpoint);
        assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "hi\n");
        self.ok(&["volume", "rm", &vol]);
    }
}

/// A plugin process and the files the daemon finds it by; the process is
/// killed (by its PID) and the files removed when the test ends.
struct Deployed {
    child: Child,
    leftovers: Vec<PathBuf>,
}

impl Deployed {
    fn terminate(&mut self) -> std::process::ExitStatus {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the plugin did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for path in &self.leftovers {
            let _ = fs::remove_file(path);
        }
    }
}

/// `mountpoint`, checked to be under `root`.
fn under(root: &Path, mountpoint: &str) -> PathBuf {
    let path = PathBuf::from(mountpoint);
    assert!(
        path.starts_with(root),
        "{mountpoint} is not under {}",
        root.display()
    );
    path
}

fn wait_for(what: &str, child: &mut Child, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "exited before {what}");
        assert!(Instant::now() < deadline, "no {what} within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_daemon_finds_a_tcp_plugin_through_its_spec_file() {
    let Some(d) = daemon() else { return };
    let name = format!("sdk-tcp-{}", std::process::id());
    let root = tempfile::tempdir().unwrap();
    let spec = Path::new(docker_plugin_sdk::SPEC_DIR).join(format!("{name}.spec"));
    let child = Command::new(local_dir_binary())
        .args(["--name", &name, "--tcp", "127.0.0.1:0", "--root"])
        .arg(root.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut plugin = Deployed {
        child,
        leftovers: vec![spec.clone()],
    };
    wait_for("spec file", &mut plugin.child, || spec.exists());
    let text = fs::read_to_string(&spec).unwrap();
    assert!(text.starts_with("tcp://127.0.0.1:"), "{text}");

    d.use_volume(&name, |mountpoint| under(root.path(), mountpoint));

    let status = plugin.terminate();
    assert!(status.success(), "{status}");
    assert!(!spec.exists(), "spec file left behind");
}

#[test]
fn the_daemon_starts_a_socket_activated_plugin_on_first_use() {
    let Some(d) = daemon() else { return };
    let name = format!("sdk-act-{}", std::process::id());
    let root = tempfile::tempdir().unwrap();
    let socket = Path::new("/run/docker/plugins").join(format!("{name}.sock"));
    let own = root.path().join("never-bound.sock");
    // As a systemd .socket unit would: the socket exists before the plugin
    // runs, and the plugin starts when the daemon first connects.
    let child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .args(["-E", "RUST_LOG=warn"])
        .arg(local_dir_binary())
        .arg("--socket")
        .arg(&own)
        .arg("--root")
        .arg(root.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd)");
    let mut plugin = Deployed {
        child,
        leftovers: vec![socket.clone()],
    };
    wait_for("socket", &mut plugin.child, || socket.exists());

    d.use_volume(&name, |mountpoint| {
        under(&root.path().join("data"), mountpoint)
    });
    assert!(!own.exists(), "local-dir bound a socket of its own");

    let status = plugin.terminate();
    assert!(status.success(), "{status}");
}

/// A managed plugin on the daemon, force-disabled and removed when the test
/// ends, pass or fail.
struct Installed<'a> {
    daemon: &'a Daemon,
    name: String,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let _ = self.daemon.run(&["plugin", "disable", "-f", &self.name]);
        let _ = self.daemon.run(&["plugin", "rm", "-f", &self.name]);
    }
}

#[test]
fn a_managed_plugin_from_the_generated_directory_serves_volumes() {
    let Some(d) = daemon() else { return };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("plugin");
    let root = work.path().join("root");
    fs::create_dir(&root).unwrap();
    let status = Command::new(local_dir_binary())
        .arg("--write-plugin-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let name = format!("sdk-managed-{}", std::process::id());
    d.ok(&["plugin", "create", &name, dir.to_str().unwrap()]);
    let installed = Installed { daemon: d, name };
    let name = installed.name.as_str();
    let source = format!("root.source={}", root.display());
    d.ok(&["plugin", "set", name, &source]);
    // No Plugin.Activate comes: the daemon only waits for the socket.
    d.ok(&["plugin", "enable", name]);
    let id = d.ok(&["plugin", "inspect", "-f", "{{.Id}}", name]);
    let enabled = d.ok(&["plugin", "inspect", "-f", "{{.Enabled}}", name]);
    assert_eq!(enabled, "true");

    // The plugin reports /data/root/volumes/..., a bind of `root` inside
    // its propagated mount; the volume's files are in `root` on the host.
    d.use_volume(name, |mountpoint| {
        let inside = Path::new(mountpoint)
            .strip_prefix("/data/root")
            .unwrap_or_else(|_| panic!("{mountpoint} is not under /data/root"));
        root.join(inside)
    });
    assert!(root.join("state.json").is_file());

    d.ok(&["plugin", "disable", name]);
    d.ok(&["plugin", "rm", name]);
    let listed = d.ok(&["plugin", "ls", "--format", "{{.Name}}"]);
    assert!(!listed.contains(name), "{listed}");
    let data_root = d.ok(&["info", "-f", "{{.DockerRootDir}}"]);
    assert!(
        !Path::new(&data_root).join("plugins").join(&id).exists(),
        "the plugin's rootfs is left behind"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&id),
        "a mount of the plugin is left behind"
    );
}
