//! Running the docker CLI against a daemon, and making the test image on a
//! machine that reaches no registry.

#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `cli --host host ARGS`.
pub fn docker(cli: &str, host: &str, args: &[&str]) -> Output {
    Command::new(cli)
        .arg("--host")
        .arg(host)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cli} {args:?}: {e}"))
}

/// The applets most tests need.
const APPLETS: [&str; 8] = ["sh", "cat", "echo", "ls", "sleep", "touch", "true", "id"];

/// Imports a one-binary image made from the static `/bin/busybox` as
/// `image`, unless the daemon already has it.
pub fn import_busybox(cli: &str, host: &str, image: &str) {
    import_busybox_with(cli, host, image, &APPLETS);
}

/// Like [`import_busybox`], with `applets` linked into `/bin`.
pub fn import_busybox_with(cli: &str, host: &str, image: &str, applets: &[&str]) {
    if docker(cli, host, &["image", "inspect", image])
        .status
        .success()
    {
        return;
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install Debian's busybox-static to make the test image"
    );
    let rootfs = tempfile::tempdir().expect("temp dir");
    let bin = rootfs.path().join("bin");
    fs::create_dir_all(&bin).expect("rootfs/bin");
    fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    for applet in applets {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
    }
    let tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs.path())
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(tar.status.success(), "tar of the busybox rootfs failed");
    let mut import = Command::new(cli)
        .arg("--host")
        .arg(host)
        .args(["import", "-", image])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker import");
    import
        .stdin
        .take()
        .expect("stdin")
        .write_all(&tar.stdout)
        .expect("feed docker import");
    let out = import.wait_with_output().expect("docker import");
    assert!(
        out.status.success(),
        "docker import of busybox failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
