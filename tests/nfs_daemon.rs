//! End to end: the nfs plugin serving a real Docker daemon on this machine,
//! whose kernel has no NFS client: volume create, inspect, ls and rm, and a
//! `docker run` that must fail fast with the plugin's message.
//!
//! Gated like tests/daemon.rs: `DOCKER_PLUGIN_SDK_DOCKER_HOST` names a daemon
//! this run may use; without it the tests say SKIPPED, unless
//! `DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1` (CI) makes that a failure. The only
//! share named is on loopback, where nothing serves NFS.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::docker::{docker, import_busybox};

const IMAGE: &str = "sdk-test-busybox:latest";

fn host() -> Option<String> {
    let required = std::env::var("DOCKER_PLUGIN_SDK_REQUIRE_DAEMON").as_deref() == Ok("1");
    let Ok(host) = std::env::var("DOCKER_PLUGIN_SDK_DOCKER_HOST") else {
        assert!(
            !required,
            "DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1 but no daemon host"
        );
        eprintln!(
            "\n*** SKIPPED: the nfs real-daemon tests need DOCKER_PLUGIN_SDK_DOCKER_HOST ***\n"
        );
        return None;
    };
    let version = docker(
        &cli(),
        &host,
        &["version", "--format", "{{.Server.Version}}"],
    );
    assert!(
        version.status.success() || !required,
        "daemon at {host} unreachable: {}",
        String::from_utf8_lossy(&version.stderr)
    );
    if !version.status.success() {
        eprintln!("\n*** SKIPPED: daemon at {host} unreachable ***\n");
        return None;
    }
    Some(host)
}

fn cli() -> String {
    std::env::var("DOCKER_PLUGIN_SDK_DOCKER_CLI").unwrap_or_else(|_| "docker".into())
}

fn ok(host: &str, args: &[&str]) -> String {
    let out = docker(&cli(), host, args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn failed(out: &Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The nfs plugin under a unique name; killed by its PID and its socket
/// removed when dropped.
struct NfsPlugin {
    name: String,
    socket: PathBuf,
    child: Child,
    _root: tempfile::TempDir,
}

impl NfsPlugin {
    fn start() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "sdk-nfs-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let socket = Path::new("/run/docker/plugins").join(format!("{name}.sock"));
        let root = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("examples/nfs");
        let child = Command::new(bin)
            .arg("--socket")
            .arg(&socket)
            .arg("--root")
            .arg(root.path().join("nfs"))
            .args(["--mount-timeout", "20s"])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the nfs plugin");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the nfs plugin did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            name,
            socket,
            child,
            _root: root,
        }
    }
}

impl Drop for NfsPlugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
    }
}

#[test]
fn create_inspect_list_and_remove_an_nfs_volume() {
    let Some(host) = host() else { return };
    let p = NfsPlugin::start();
    let vol = format!("{}-data", p.name);
    let share = "127.0.0.1:/export";
    ok(
        &host,
        &[
            "volume",
            "create",
            "-d",
            &p.name,
            "--opt",
            &format!("share={share}"),
            "--opt",
            "o=nfsvers=4.2,soft,timeo=50",
            "--opt",
            "subdir=app",
            &vol,
        ],
    );

    let text = ok(&host, &["volume", "inspect", &vol]);
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    let info = &info[0];
    assert_eq!(info["Driver"], p.name.as_str());
    assert_eq!(info["Scope"], "global", "{info}");
    let status = &info["Status"];
    assert_eq!(status["share"], share, "{info}");
    assert_eq!(status["o"], "nfsvers=4.2,soft,timeo=50");
    assert_eq!(status["subdir"], "app");
    assert_eq!(
        (&status["mounted"], &status["mounts"]),
        (&false.into(), &0.into())
    );
    assert!(
        info["CreatedAt"]
            .as_str()
            .unwrap_or_default()
            .starts_with("20")
    );

    let listed = ok(
        &host,
        &[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("driver={}", p.name),
        ],
    );
    assert_eq!(listed.lines().collect::<Vec<_>>(), [vol.as_str()]);

    let out = docker(
        &cli(),
        &host,
        &["volume", "create", "-d", &p.name, "--opt", "bogus=1", "x"],
    );
    let err = failed(&out, "create with an unknown option");
    assert!(
        err.contains("bogus") && err.contains("share, subdir"),
        "{err}"
    );
    let out = docker(&cli(), &host, &["volume", "create", "-d", &p.name, "y"]);
    let err = failed(&out, "create without a share");
    assert!(err.contains("share=HOST:/PATH is required"), "{err}");

    ok(&host, &["volume", "rm", &vol]);
    let listed = ok(
        &host,
        &[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("driver={}", p.name),
        ],
    );
    assert!(listed.is_empty(), "{listed}");
}

/// This kernel has no NFS client: the run fails at once with the plugin's
/// reason, and the volume is left unused.
#[test]
fn docker_run_without_an_nfs_client_fails_fast_and_clearly() {
    let Some(host) = host() else { return };
    import_busybox(&cli(), &host, IMAGE);
    let p = NfsPlugin::start();
    let vol = format!("{}-run", p.name);
    ok(
        &host,
        &[
            "volume",
            "create",
            "-d",
            &p.name,
            "--opt",
            "share=127.0.0.1:/export",
            &vol,
        ],
    );

    let started = Instant::now();
    let out = docker(
        &cli(),
        &host,
        &["run", "--rm", "-v", &format!("{vol}:/data"), IMAGE, "true"],
    );
    let took = started.elapsed();
    let err = failed(
        &out,
        "docker run with an NFS volume on a kernel without NFS",
    );
    assert!(took < Duration::from_secs(60), "took {took:?}: {err}");
    assert!(
        err.contains("VolumeDriver.Mount") && err.contains("mounting 127.0.0.1:/export"),
        "{err}"
    );
    eprintln!("docker run failed after {took:?} with: {}", err.trim());

    let text = ok(&host, &["volume", "inspect", &vol]);
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info[0]["Status"]["mounts"], 0, "{info}");
    ok(&host, &["volume", "rm", &vol]);
}
