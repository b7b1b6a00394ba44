//! Managed plugin directories: what `PluginDir::create` writes, and that
//! the binary it packs runs from the rootfs alone.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::process::local_dir_binary;
use docker_plugin_sdk::Error;
use docker_plugin_sdk::managed::{Config, Mount, PluginDir};

fn config() -> Config {
    Config::builder("t.sock", "/bin/plugin")
        .volume_driver()
        .propagated_mount("/mnt/volumes")
        .mount(Mount::bind("state", "/var/lib/t", "/state"))
        .build()
}

#[test]
fn the_directory_holds_the_config_the_binary_its_libraries_and_mount_points() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plugin");
    let written = PluginDir::create(&out, &config(), &local_dir_binary()).unwrap();
    assert_eq!(written.path(), out);

    let json: Config = serde_json::from_slice(&fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(json, config());
    let rootfs = out.join("rootfs");
    let bin = fs::metadata(rootfs.join("bin/plugin")).unwrap();
    assert!(bin.permissions().mode() & 0o111 != 0, "not executable");
    for inside in ["run/docker/plugins", "etc", "tmp", "state", "mnt/volumes"] {
        assert!(rootfs.join(inside).is_dir(), "{inside} missing");
    }
    let libs = fs::read_dir(rootfs.join("lib64"))
        .map(|d| d.count())
        .unwrap_or(0)
        + fs::read_dir(rootfs.join("lib"))
            .map(|d| d.count())
            .unwrap_or(0);
    assert!(libs > 0, "no shared libraries copied");
}

#[test]
fn the_packed_binary_runs_from_the_rootfs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plugin");
    let status = Command::new(local_dir_binary())
        .arg("--write-plugin-dir")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let config: Config =
        serde_json::from_slice(&fs::read(out.join("config.json")).unwrap()).unwrap();
    assert!(config.check().is_empty(), "{:?}", config.check());
    assert_eq!(config.interface.socket, "local-dir.sock");

    // chroot needs root, as the daemon does; skip the run otherwise.
    let chroot = Command::new("chroot")
        .arg(out.join("rootfs"))
        .args(["/local-dir", "--help"])
        .output()
        .unwrap();
    if String::from_utf8_lossy(&chroot.stderr).contains("Operation not permitted") {
        eprintln!("not root: the chroot run is skipped");
        return;
    }
    assert!(
        chroot.status.success(),
        "{}",
        String::from_utf8_lossy(&chroot.stderr)
    );
    assert!(String::from_utf8_lossy(&chroot.stdout).contains("--root"));
}

#[test]
fn a_config_with_problems_or_a_used_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = config();
    bad.interface.types = vec!["docker.VolumeDriver/1.0".into()];
    let err = PluginDir::create(&dir.path().join("a"), &bad, &local_dir_binary()).unwrap_err();
    assert!(matches!(err, Error::PluginDir { .. }), "{err:?}");
    assert!(err.to_string().contains("lower case"), "{err}");
    assert!(!dir.path().join("a").exists(), "wrote a directory anyway");

    fs::write(dir.path().join("junk"), "x").unwrap();
    let err = PluginDir::create(dir.path(), &config(), &local_dir_binary()).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}
