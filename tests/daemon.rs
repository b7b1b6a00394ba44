//! End to end: the local-dir plugin serving a real Docker daemon.
//!
//! These tests need a daemon that this test run may use freely, given by
//! `DOCKER_PLUGIN_SDK_DOCKER_HOST` (e.g. `unix:///tmp/d/docker.sock`; see
//! `.ci/run`, which starts private daemons). Without it they are skipped
//! with a message, unless `DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1`, which turns
//! a missing or unreachable daemon into a failure (CI sets it).
//!
//! The plugin sockets go under `/run/docker/plugins`, where the daemon looks
//! for them, with names unique to this process; each is removed when its
//! test ends, pass or fail.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::docker::{docker, import_busybox_with};
use common::process::PluginProcess;

/// The daemon under test, or `None` when these tests are skipped.
fn daemon() -> Option<&'static Daemon> {
    static DAEMON: OnceLock<Option<Daemon>> = OnceLock::new();
    DAEMON.get_or_init(Daemon::from_env).as_ref()
}

macro_rules! require_daemon {
    () => {
        match daemon() {
            Some(d) => d,
            None => return,
        }
    };
}

/// Writes past the test harness's output capture, so that a skip is seen
/// even when every test passes.
fn loud(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** {msg} ***\n");
}

struct Daemon {
    host: String,
    cli: String,
    image: String,
}

impl Daemon {
    fn from_env() -> Option<Self> {
        let required = std::env::var("DOCKER_PLUGIN_SDK_REQUIRE_DAEMON").as_deref() == Ok("1");
        let Ok(host) = std::env::var("DOCKER_PLUGIN_SDK_DOCKER_HOST") else {
            assert!(
                !required,
                "DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1 but DOCKER_PLUGIN_SDK_DOCKER_HOST is not set"
            );
            loud(
                "SKIPPED: the real-daemon tests need DOCKER_PLUGIN_SDK_DOCKER_HOST \
                 (a private dockerd; .ci/run starts one)",
            );
            return None;
        };
        let daemon = Self {
            host,
            cli: std::env::var("DOCKER_PLUGIN_SDK_DOCKER_CLI").unwrap_or_else(|_| "docker".into()),
            image: "sdk-test-busybox:latest".into(),
        };
        let version = daemon.docker(&["version", "--format", "{{.Server.Version}}"]);
        if !version.status.success() {
            let msg = format!(
                "daemon at {} is not reachable: {}",
                daemon.host,
                String::from_utf8_lossy(&version.stderr)
            );
            assert!(!required, "{msg}");
            loud(&format!("SKIPPED: {msg}"));
            return None;
        }
        loud(&format!(
            "real-daemon tests against dockerd {} at {}",
            String::from_utf8_lossy(&version.stdout).trim(),
            daemon.host
        ));
        daemon.ensure_image();
        Some(daemon)
    }

    fn docker(&self, args: &[&str]) -> Output {
        docker(&self.cli, &self.host, args)
    }

    /// Runs docker and returns its stdout, failing the test on an error.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs docker expecting failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "docker {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// No registry is reachable, so the test image is made from the static
    /// busybox on this machine.
    fn ensure_image(&self) {
        let applets = [
            "sh", "cat", "echo", "ls", "sleep", "touch", "stat", "id", "test",
        ];
        import_busybox_with(&self.cli, &self.host, &self.image, &applets);
    }

    fn inspect(&self, volume: &str) -> serde_json::Value {
        let text = self.ok(&["volume", "inspect", volume]);
        let mut all: serde_json::Value = serde_json::from_str(&text).unwrap();
        all[0].take()
    }
}

/// A local-dir process under a unique plugin name, with its own root.
struct Fixture {
    name: String,
    root: tempfile::TempDir,
    plugin: Option<PluginProcess>,
}

impl Fixture {
    fn start() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "sdk-e2e-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let root = tempfile::tempdir().unwrap();
        let mut fixture = Self {
            name,
            root,
            plugin: None,
        };
        fixture.restart();
        fixture
    }

    fn socket(&self) -> PathBuf {
        Path::new("/run/docker/plugins").join(format!("{}.sock", self.name))
    }

    fn restart(&mut self) {
        self.plugin = Some(PluginProcess::start(
            &self.socket(),
            self.root.path(),
            &["--name", &self.name],
        ));
    }

    fn kill_9(&mut self) {
        let mut plugin = self.plugin.take().expect("running");
        plugin.signal("-KILL");
        plugin.wait(Duration::from_secs(10));
    }

    fn volume(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.plugin.take();
        // kill -9 (or a failed test) can leave the socket behind; a stale
        // socket would stall the daemon's plugin scans.
        let _ = fs::remove_file(self.socket());
    }
}

#[test]
fn create_inspect_list_use_and_remove_a_volume() {
    let d = require_daemon!();
    let f = Fixture::start();
    let vol = f.volume("data");

    d.ok(&[
        "volume",
        "create",
        "-d",
        &f.name,
        "--opt",
        "uid=1000",
        "--opt",
        "mode=0750",
        &vol,
    ]);

    let info = d.inspect(&vol);
    assert_eq!(info["Driver"], f.name.as_str());
    assert_eq!(
        info["Status"]["options"],
        serde_json::json!({"uid": "1000", "mode": "0750"})
    );
    assert_eq!(info["Status"]["mounts"], 0);
    let created = info["CreatedAt"].as_str().unwrap_or_default();
    assert!(created.starts_with("20"), "CreatedAt shown: {info}");
    let mountpoint = PathBuf::from(info["Mountpoint"].as_str().unwrap());
    assert!(mountpoint.starts_with(f.root.path()), "{mountpoint:?}");

    // Filtered by driver: an unfiltered `ls` asks every plugin this daemon
    // ever used, and those of finished tests make it wait ~30 s each.
    let by_driver = format!("driver={}", f.name);
    let listed = d.ok(&[
        "volume",
        "ls",
        "--filter",
        &by_driver,
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    assert!(
        listed.lines().any(|l| l == format!("{} {vol}", f.name)),
        "{listed}"
    );

    d.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/data"),
        &d.image,
        "sh",
        "-c",
        "echo hello > /data/greeting",
    ]);
    assert_eq!(
        fs::read_to_string(mountpoint.join("greeting")).unwrap(),
        "hello\n"
    );
    let meta = fs::metadata(&mountpoint).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (1000, 0o750));
    assert_eq!(
        d.inspect(&vol)["Status"]["mounts"],
        0,
        "the container's mount was released"
    );

    d.ok(&["volume", "rm", &vol]);
    assert!(!mountpoint.exists(), "volume rm deletes the directory");
    let listed = d.ok(&["volume", "ls", "--filter", &by_driver, "-q"]);
    assert!(!listed.lines().any(|l| l == vol), "{listed}");
}

#[test]
fn two_containers_share_a_volume_and_one_leaves_early() {
    let d = require_daemon!();
    let f = Fixture::start();
    let vol = f.volume("shared");
    let long = format!("{}-long", f.name);
    d.ok(&["volume", "create", "-d", &f.name, &vol]);

    let mount = format!("{vol}:/shared");
    d.ok(&[
        "run", "-d", "--name", &long, "-v", &mount, &d.image, "sleep", "120",
    ]);
    d.ok(&[
        "run",
        "--rm",
        "-v",
        &mount,
        &d.image,
        "sh",
        "-c",
        "echo from-short > /shared/note",
    ]);

    // The short-lived container left; the long one still sees the data.
    assert_eq!(d.ok(&["exec", &long, "cat", "/shared/note"]), "from-short");
    assert_eq!(d.inspect(&vol)["Status"]["mounts"], 1);
    let err = d.fails(&["volume", "rm", &vol]);
    assert!(err.contains("in use"), "{err}");

    d.ok(&["rm", "-f", &long]);
    assert_eq!(d.inspect(&vol)["Status"]["mounts"], 0);
    d.ok(&["volume", "rm", &vol]);
}

#[test]
fn docker_run_with_volume_driver_creates_the_volume_implicitly() {
    let d = require_daemon!();
    let f = Fixture::start();
    let vol = f.volume("implicit");
    d.ok(&[
        "run",
        "--rm",
        "--volume-driver",
        &f.name,
        "-v",
        &format!("{vol}:/data"),
        &d.image,
        "touch",
        "/data/made-here",
    ]);

    let info = d.inspect(&vol);
    assert_eq!(info["Driver"], f.name.as_str());
    let mountpoint = PathBuf::from(info["Mountpoint"].as_str().unwrap());
    assert!(mountpoint.join("made-here").is_file());
    d.ok(&["volume", "rm", &vol]);
}

#[test]
fn plugin_errors_reach_the_user() {
    let d = require_daemon!();
    let f = Fixture::start();
    let err = d.fails(&[
        "volume",
        "create",
        "-d",
        &f.name,
        "--opt",
        "bogus=1",
        &f.volume("x"),
    ]);
    assert!(
        err.contains(
            "VolumeDriver.Create: unknown option \"bogus\"; valid options are: gid, mode, uid"
        ),
        "{err}"
    );
    let err = d.fails(&[
        "volume",
        "create",
        "-d",
        &f.name,
        "--opt",
        "mode=99",
        &f.volume("y"),
    ]);
    assert!(err.contains("mode"), "{err}");
}

#[test]
fn kill_9_and_restart_while_the_daemon_uses_the_volume() {
    let d = require_daemon!();
    let mut f = Fixture::start();
    let vol = f.volume("survivor");
    let long = format!("{}-running", f.name);
    d.ok(&[
        "volume",
        "create",
        "-d",
        &f.name,
        "--opt",
        "mode=0777",
        &vol,
    ]);
    let mount = format!("{vol}:/data");
    d.ok(&[
        "run", "-d", "--name", &long, "-v", &mount, &d.image, "sleep", "120",
    ]);
    d.ok(&["exec", &long, "sh", "-c", "echo before > /data/log"]);

    f.kill_9();
    assert!(f.socket().exists(), "kill -9 leaves a stale socket");
    // The running container does not depend on the plugin process.
    d.ok(&["exec", &long, "sh", "-c", "echo during >> /data/log"]);
    f.restart();

    let info = d.inspect(&vol);
    assert_eq!(
        info["Status"]["mounts"], 1,
        "the running container's mount was kept: {info}"
    );
    assert_eq!(info["Status"]["options"]["mode"], "0777");
    d.ok(&[
        "run",
        "--rm",
        "-v",
        &mount,
        &d.image,
        "sh",
        "-c",
        "echo after >> /data/log",
    ]);
    assert_eq!(
        d.ok(&["exec", &long, "cat", "/data/log"]),
        "before\nduring\nafter"
    );

    d.ok(&["rm", "-f", &long]);
    assert_eq!(d.inspect(&vol)["Status"]["mounts"], 0);
    d.ok(&["volume", "rm", &vol]);
}

#[test]
fn docker_cp_into_a_running_container_keeps_its_volume_in_use() {
    let d = require_daemon!();
    let f = Fixture::start();
    let vol = f.volume("cp");
    let running = format!("{}-cp", f.name);
    d.ok(&["volume", "create", "-d", &f.name, &vol]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        &running,
        "-v",
        &format!("{vol}:/data"),
        &d.image,
        "sleep",
        "120",
    ]);

    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("copied"), b"by docker cp").unwrap();
    let from = src.path().join("copied");
    d.ok(&[
        "cp",
        from.to_str().unwrap(),
        &format!("{running}:/data/copied"),
    ]);
    d.ok(&[
        "cp",
        &format!("{running}:/data/copied"),
        src.path().join("back").to_str().unwrap(),
    ]);

    // cp mounted and unmounted under the container's own ID; the
    // container's mount must still be counted.
    assert_eq!(d.inspect(&vol)["Status"]["mounts"], 1);
    assert_eq!(
        d.ok(&["exec", &running, "cat", "/data/copied"]),
        "by docker cp"
    );

    d.ok(&["rm", "-f", &running]);
    assert_eq!(d.inspect(&vol)["Status"]["mounts"], 0);
    d.ok(&["volume", "rm", &vol]);
}
