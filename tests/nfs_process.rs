//! The nfs binary as operators run it: flags, defaults from the
//! environment, refused settings, and its production mounter behind a
//! mount helper that lies. No daemon, no NFS.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use docker_plugin_sdk::client::Client;

fn binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/nfs");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo test`",
        bin.display()
    );
    bin
}

fn command(dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg("--socket")
        .arg(dir.join("nfs.sock"))
        .arg("--root")
        .arg(dir.join("root"))
        .args(args)
        .env_remove("NFS_SHARE")
        .env_remove("NFS_OPTIONS")
        .env_remove("NFS_SUBDIR")
        .env_remove("NFS_MOUNT_TIMEOUT")
        .envs(envs.iter().copied())
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the plugin until it listens; killed by its PID when dropped.
struct Running(Child);

impl Running {
    fn start(dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Self {
        let child = command(dir, envs, args).spawn().expect("start nfs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(dir.join("nfs.sock")).is_err() {
            assert!(Instant::now() < deadline, "nfs did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn refused(dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> String {
    let out: Output = command(dir, envs, args).output().unwrap();
    assert!(
        !out.status.success(),
        "nfs {args:?} {envs:?} should refuse to start"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_describes_the_flags_and_their_variables() {
    let out = Command::new(binary()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--share",
        "--options",
        "--subdir",
        "--mount-timeout",
        "--root",
        "NFS_SHARE",
        "NFS_MOUNT_TIMEOUT",
    ] {
        assert!(text.contains(word), "{word} missing from --help:\n{text}");
    }
}

#[test]
fn bad_defaults_and_limits_stop_the_plugin_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(dir.path(), &[("NFS_SHARE", "h:/e -o exec")], &[]);
    assert!(err.contains("default share"), "{err}");
    let err = refused(dir.path(), &[], &["--options", "ro;reboot"]);
    assert!(err.contains("default mount options"), "{err}");
    let err = refused(dir.path(), &[("NFS_MOUNT_TIMEOUT", "soon")], &[]);
    assert!(err.contains("NFS_MOUNT_TIMEOUT"), "{err}");
    let err = refused(dir.path(), &[], &["--mount-timeout", "5m"]);
    assert!(err.contains("90 s"), "{err}");
}

#[tokio::test]
async fn defaults_come_from_the_environment_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let envs = [("NFS_SHARE", "10.0.0.5:/export"), ("NFS_OPTIONS", "soft")];
    let _plugin = Running::start(dir.path(), &envs, &["--options", "hard,timeo=50"]);
    let c = Client::new(dir.path().join("nfs.sock"));
    c.volume().create("v", None).await.unwrap();
    let status = c.volume().get("v").await.unwrap().status.unwrap();
    assert_eq!(status["share"], "10.0.0.5:/export");
    assert_eq!(status["o"], "hard,timeo=50");
}

/// The production mounter with `true` as the mount helper: it exits 0 and
/// mounts nothing, which the mount table check catches.
#[tokio::test]
async fn a_helper_that_mounts_nothing_is_caught_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let _plugin = Running::start(dir.path(), &[], &["--mount-program", "true"]);
    let c = Client::new(dir.path().join("nfs.sock"));
    let opts = [("share".to_owned(), "127.0.0.1:/e".to_owned())].into();
    c.volume().create("v", Some(opts)).await.unwrap();
    let err = c.volume().mount("v", "a").await.unwrap_err();
    let msg = err.plugin_message().unwrap_or_default().to_owned();
    assert!(msg.contains("nothing is mounted"), "{err}");
    let status = c.volume().get("v").await.unwrap().status.unwrap();
    assert_eq!(status["mounts"], 0);
}
