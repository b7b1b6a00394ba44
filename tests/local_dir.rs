//! The local-dir example driver, served in-process and driven the way the
//! daemon drives it: the volume cases from real bug reports, the captured
//! daemon requests, names, options and concurrency.

mod common;

#[path = "../examples/local-dir/driver.rs"]
#[allow(dead_code)]
mod driver;
#[path = "../examples/local-dir/state.rs"]
#[allow(dead_code)]
mod state;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{FIXTURES, Served, captured, exchange};
use docker_plugin_sdk::Plugin;
use docker_plugin_sdk::client::Client;
use driver::LocalDir;
use tokio::net::UnixStream;

fn serve(root: &Path) -> Served {
    let driver = LocalDir::open(root).expect("open root");
    Served::start(Plugin::new().volume(driver))
}

fn opts(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn err_of(result: Result<impl std::fmt::Debug, docker_plugin_sdk::client::ClientError>) -> String {
    result
        .expect_err("call should fail")
        .plugin_message()
        .expect("the plugin answered with Err")
        .to_owned()
}

// ../shared/cases/volume-created-at.md
#[tokio::test]
async fn created_at_is_rfc3339_in_get_and_list() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let c = s.client();
    c.volume().create("v1", opts(&[])).await.unwrap();

    for endpoint in ["VolumeDriver.Get", "VolumeDriver.List"] {
        let raw = c
            .call_raw(endpoint, &b"{\"Name\":\"v1\"}\n"[..])
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
        let volume = json
            .get("Volume")
            .cloned()
            .unwrap_or_else(|| json["Volumes"][0].clone());
        let created = volume["CreatedAt"].as_str().expect("CreatedAt is a string");
        assert!(created.len() >= 20 && created.ends_with('Z'), "{created}");
        assert!(humantime::parse_rfc3339_weak(created).is_ok(), "{created}");
        assert!(volume["Status"].is_object());
    }
}

// ../shared/cases/volume-missing.md
#[tokio::test]
async fn missing_volumes_are_reported_as_missing() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let c = s.client();

    let raw = c.call_raw("VolumeDriver.List", &b"{}\n"[..]).await.unwrap();
    assert_eq!(raw.status, 200);
    assert_eq!(&raw.body[..], br#"{"Volumes":[]}"#);

    let err = err_of(c.volume().get("nope").await);
    assert!(err.contains("no such volume"), "{err}");

    c.volume().create("v1", opts(&[])).await.unwrap();
    assert!(c.volume().path("v1").await.unwrap().is_some());

    // Deleted behind the plugin's back: Get says so, and create makes it
    // again for real.
    let mountpoint = c.volume().get("v1").await.unwrap().mountpoint.unwrap();
    fs::remove_dir(&mountpoint).unwrap();
    assert!(err_of(c.volume().get("v1").await).contains("no such volume"));
    assert!(c.volume().list().await.unwrap().is_empty());
    c.volume().create("v1", opts(&[])).await.unwrap();
    let again = c.volume().get("v1").await.unwrap().mountpoint.unwrap();
    assert!(again.is_dir());

    // Removing an unknown name succeeds: a retried Remove must not fail.
    c.volume().remove("never-existed").await.unwrap();
}

// ../shared/cases/volume-null-opts.md
#[tokio::test]
async fn null_missing_and_empty_options_all_create() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let c = s.client();
    for body in [
        r#"{"Name":"v1","Opts":null}"#,
        r#"{"Name":"v2"}"#,
        r#"{"Name":"v3","Opts":{}}"#,
    ] {
        let raw = c
            .call_raw("VolumeDriver.Create", body.to_owned())
            .await
            .unwrap();
        assert_eq!(
            (raw.status.as_u16(), &raw.body[..]),
            (200, &b"{}"[..]),
            "{body}"
        );
    }
    assert_eq!(c.volume().list().await.unwrap().len(), 3);

    let err = err_of(c.volume().create("v4", opts(&[("bogus", "1")])).await);
    assert_eq!(
        err,
        "unknown option \"bogus\"; valid options are: gid, mode, uid"
    );
    assert_eq!(c.activate().await.unwrap(), ["VolumeDriver"]);

    let err = err_of(c.volume().mount("never-created", "a").await);
    assert!(err.contains("no such volume"), "{err}");
}

// ../shared/cases/volume-shared-mount.md
#[tokio::test]
async fn a_shared_volume_stays_in_use_until_its_last_user_leaves() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let v = s.client();
    let v = v.volume();
    v.create("v1", opts(&[])).await.unwrap();

    let first = v.mount("v1", "c1").await.unwrap();
    let second = v.mount("v1", "cp1").await.unwrap();
    assert_eq!(first, second);
    assert_eq!(v.get("v1").await.unwrap().status.unwrap()["mounts"], 2);

    v.unmount("v1", "cp1").await.unwrap();
    assert_eq!(v.get("v1").await.unwrap().status.unwrap()["mounts"], 1);
    let err = err_of(v.remove("v1").await);
    assert!(err.contains("still mounted") && err.contains("c1"), "{err}");
    fs::write(first.join("still-here"), b"x").unwrap();

    v.unmount("v1", "c1").await.unwrap();
    assert_eq!(v.get("v1").await.unwrap().status.unwrap()["mounts"], 0);

    // An Unmount without an ID is harmless.
    let raw = s
        .client()
        .call_raw("VolumeDriver.Unmount", &br#"{"Name":"v1"}"#[..])
        .await
        .unwrap();
    assert_eq!(raw.status, 200);
    v.unmount("v1", "").await.unwrap();

    v.remove("v1").await.unwrap();
    assert!(!first.exists(), "Remove deletes the directory");
}

// ../shared/cases/volume-refcount-drift.md
#[tokio::test]
async fn failed_mounts_and_unknown_ids_do_not_move_the_count() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let c = s.client();
    let v = c.volume();
    v.create("v1", opts(&[])).await.unwrap();
    v.create("v2", opts(&[])).await.unwrap();

    v.mount("v1", "a").await.unwrap();
    v.mount("v1", "b").await.unwrap();
    assert_eq!(v.get("v1").await.unwrap().status.unwrap()["mounts"], 2);

    // v2's backing directory is gone: Mount fails and records nobody.
    let v2_dir = v.get("v2").await.unwrap().mountpoint.unwrap();
    fs::remove_dir(&v2_dir).unwrap();
    assert!(v.mount("v2", "a").await.is_err());
    v.unmount("v2", "a").await.unwrap();
    v.unmount("v1", "never-mounted").await.unwrap();
    assert_eq!(v.get("v1").await.unwrap().status.unwrap()["mounts"], 2);

    v.unmount("v1", "a").await.unwrap();
    v.unmount("v1", "b").await.unwrap();
    // More unmounts than mounts never go below zero.
    v.unmount("v1", "b").await.unwrap();
    assert_eq!(v.get("v1").await.unwrap().status.unwrap()["mounts"], 0);
    v.remove("v1").await.unwrap();
    assert!(c.volume().list().await.unwrap().is_empty());
}

/// `docker cp` into a running container mounts the volume again under the
/// container's own mount ID and unmounts once when done (seen with dockerd
/// 20.10 and 26.1): the container's use must survive that.
#[tokio::test]
async fn docker_cp_reusing_the_container_mount_id_keeps_the_volume_in_use() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let c = s.client();
    let v = c.volume();
    v.create("v1", None).await.unwrap();
    v.mount("v1", "container").await.unwrap();
    v.mount("v1", "container").await.unwrap();
    v.unmount("v1", "container").await.unwrap();

    assert_eq!(v.get("v1").await.unwrap().status.unwrap()["mounts"], 1);
    let err = err_of(v.remove("v1").await);
    assert!(err.contains("still mounted"), "{err}");
    v.unmount("v1", "container").await.unwrap();
    v.remove("v1").await.unwrap();
}

// ../shared/cases/volume-state-after-restart.md
#[tokio::test]
async fn the_table_survives_a_restart_and_refuses_corruption() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let v1_path;
    {
        let c = s.client();
        c.volume()
            .create("v1", opts(&[("uid", "1000"), ("mode", "0750")]))
            .await
            .unwrap();
        c.volume().mount("v1", "before").await.unwrap();
        v1_path = c.volume().get("v1").await.unwrap().mountpoint.unwrap();
    }
    s.stop().await.unwrap();

    let s = serve(root.path());
    let c = s.client();
    let listed = c.volume().list().await.unwrap();
    assert_eq!(listed.len(), 1);
    let v1 = c.volume().get("v1").await.unwrap();
    assert_eq!(v1.mountpoint.as_deref(), Some(v1_path.as_path()));
    let status = v1.status.unwrap();
    assert_eq!(
        status["options"],
        serde_json::json!({"uid": "1000", "mode": "0750"})
    );
    assert_eq!(status["mounts"], 1);
    assert_eq!(c.volume().mount("v1", "a").await.unwrap(), v1_path);
    s.stop().await.unwrap();

    let state_file = root.path().join("state.json");
    for broken in [
        &b""[..],
        &br#"{"format":1,"next_id":2,"volumes":{"v1":{"di"#[..],
    ] {
        fs::write(&state_file, broken).unwrap();
        let err = LocalDir::open(root.path()).err().expect("refuses to start");
        assert!(err.contains("corrupt"), "{err}");
    }

    fs::remove_file(&state_file).unwrap();
    let err = LocalDir::open(root.path()).err().expect("refuses to start");
    assert!(err.contains("refusing"), "{err}");
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_root() {
    let root = tempfile::tempdir().unwrap();
    let _first = LocalDir::open(root.path()).unwrap();
    let err = LocalDir::open(root.path())
        .err()
        .expect("second open fails");
    assert!(err.contains("in use"), "{err}");
}

#[tokio::test]
async fn any_name_round_trips_and_stays_inside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let c = s.client();
    let long = "n".repeat(1000);
    let names = [
        "..",
        ".",
        "../../etc",
        "/etc/passwd",
        "a/b/c",
        " spaces and\ttabs ",
        "ünïcødé-😀",
        "nul\u{0}byte",
        "quote\"and\\backslash",
        "<tag>&amp;",
        long.as_str(),
    ];
    for name in names {
        c.volume().create(name, None).await.unwrap();
        let got = c.volume().get(name).await.unwrap();
        assert_eq!(got.name, name);
        let path = c.volume().mount(name, "m").await.unwrap();
        let canonical = path.canonicalize().unwrap();
        let volumes = root.path().join("volumes").canonicalize().unwrap();
        assert_eq!(
            canonical.parent(),
            Some(volumes.as_path()),
            "{name:?} -> {path:?}"
        );
    }
    let mut listed: Vec<String> = c
        .volume()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    listed.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);

    let err = err_of(c.volume().create("", None).await);
    assert!(err.contains("empty"), "{err}");
}

#[tokio::test]
async fn options_set_owner_and_mode_and_conflicts_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let v = s.client();
    let v = v.volume();
    v.create(
        "owned",
        opts(&[("uid", "1234"), ("gid", "4321"), ("mode", "0710")]),
    )
    .await
    .unwrap();
    let path = v.get("owned").await.unwrap().mountpoint.unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o710);

    // Same options, spelt differently: still the same volume.
    v.create(
        "owned",
        opts(&[("mode", "710"), ("gid", "4321"), ("uid", "1234")]),
    )
    .await
    .unwrap();
    let err = err_of(v.create("owned", opts(&[("uid", "1")])).await);
    assert!(err.contains("already exists with options"), "{err}");

    for (key, value) in [("uid", "-1"), ("gid", "x"), ("mode", "999"), ("mode", "")] {
        let err = err_of(v.create("bad", opts(&[(key, value)])).await);
        assert!(err.contains(key), "{err}");
    }
    assert!(v.get("bad").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_leave_one_volume() {
    let root = tempfile::tempdir().unwrap();
    let s = serve(root.path());
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let client = s.client();
        tasks.push(tokio::spawn(async move {
            client.volume().create("race", Some(BTreeMap::new())).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let dirs = fs::read_dir(root.path().join("volumes")).unwrap().count();
    assert_eq!(dirs, 1);
    assert_eq!(s.client().volume().list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn remove_deletes_data_but_not_what_symlinks_point_to() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("precious"), b"keep").unwrap();
    let s = serve(root.path());
    let v = s.client();
    let v = v.volume();
    v.create("v", None).await.unwrap();
    let path = v.mount("v", "m").await.unwrap();
    fs::create_dir(path.join("sub")).unwrap();
    fs::write(path.join("sub/file"), b"data").unwrap();
    std::os::unix::fs::symlink(outside.path(), path.join("link")).unwrap();
    v.unmount("v", "m").await.unwrap();
    v.remove("v").await.unwrap();
    assert!(!path.exists());
    assert_eq!(fs::read(outside.path().join("precious")).unwrap(), b"keep");
}

/// Every volume request the captured daemons sent, byte for byte, with the
/// answers the daemon needs. Volume `rv1` was created with a `size` option
/// this plugin does not have, so its Create must fail naming it, and the
/// requests that follow must report it missing rather than crash.
#[tokio::test]
async fn captured_daemon_requests_get_the_answers_the_daemon_needs() {
    for fixture in FIXTURES {
        let root = tempfile::tempdir().unwrap();
        let s = serve(root.path());
        let mut conn = UnixStream::connect(&s.socket).await.unwrap();
        let mut rv2_mountpoint = None;
        for req in captured(fixture) {
            let endpoint = req.endpoint().to_owned();
            if !(endpoint.starts_with("VolumeDriver.") || endpoint == "Plugin.Activate") {
                continue;
            }
            let answer = exchange(&mut conn, &req.bytes()).await;
            let body = req.json();
            let name = body["Name"].as_str().unwrap_or_default();
            let ctx = format!("{fixture}: {endpoint} {body}");
            assert_eq!(
                answer.header("content-type"),
                Some("application/vnd.docker.plugins.v1.2+json"),
                "{ctx}"
            );
            let json = answer.json();
            match (endpoint.as_str(), name) {
                ("Plugin.Activate", _) => assert_eq!(json["Implements"][0], "VolumeDriver"),
                ("VolumeDriver.Capabilities", _) => {
                    assert_eq!(
                        json,
                        serde_json::json!({"Capabilities": {"Scope": "local"}})
                    )
                }
                ("VolumeDriver.Create", "rv1") => {
                    assert_eq!(answer.status, 500, "{ctx}");
                    let err = answer.err().unwrap();
                    assert!(
                        err.contains("\"size\"") && err.contains("valid options"),
                        "{err}"
                    );
                }
                // Unmount and Remove of an unknown volume are harmless no-ops.
                ("VolumeDriver.Get" | "VolumeDriver.Mount" | "VolumeDriver.Path", "rv1") => {
                    assert_eq!(answer.status, 500, "{ctx}");
                    assert!(answer.err().unwrap().contains("no such volume"), "{ctx}");
                }
                ("VolumeDriver.Get", "rv2") if rv2_mountpoint.is_none() => {
                    // The daemon's first Get, before Create.
                    assert_eq!(answer.status, 500, "{ctx}");
                    rv2_mountpoint = Some(String::new());
                }
                ("VolumeDriver.Mount", "rv2") => {
                    assert_eq!(answer.status, 200, "{ctx}");
                    let mp = json["Mountpoint"].as_str().unwrap().to_owned();
                    assert!(
                        Path::new(&mp).is_absolute() && Path::new(&mp).is_dir(),
                        "{ctx}"
                    );
                    rv2_mountpoint = Some(mp);
                }
                ("VolumeDriver.List", _) => {
                    assert_eq!(answer.status, 200, "{ctx}");
                    assert!(json["Volumes"].is_array(), "{ctx}");
                }
                _ => {
                    assert_eq!(answer.status, 200, "{ctx}: {json}");
                    if endpoint == "VolumeDriver.Get" {
                        assert_eq!(json["Volume"]["Name"], name, "{ctx}");
                    }
                }
            }
        }
        let mp = rv2_mountpoint.expect("rv2 was mounted");
        assert!(
            !Path::new(&mp).exists(),
            "{fixture}: Remove deleted rv2's directory"
        );
        assert!(
            Client::new(&s.socket)
                .volume()
                .list()
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn leftovers_of_crashes_are_cleaned_and_planted_symlinks_refused() {
    let root = tempfile::tempdir().unwrap();
    drop(LocalDir::open(root.path()).unwrap());
    let stale_temp = root.path().join("state.json.tmp.999999");
    fs::write(&stale_temp, b"half a table").unwrap();
    drop(LocalDir::open(root.path()).unwrap());
    assert!(
        !stale_temp.exists(),
        "temporary files of crashed saves are removed"
    );

    // A trash directory swapped for a symlink must not aim deletions
    // elsewhere.
    let victim = tempfile::tempdir().unwrap();
    fs::write(victim.path().join("precious"), b"keep").unwrap();
    fs::remove_dir(root.path().join("trash")).unwrap();
    std::os::unix::fs::symlink(victim.path(), root.path().join("trash")).unwrap();
    let err = LocalDir::open(root.path()).err().expect("refuses to start");
    assert!(err.contains("not a plain directory"), "{err}");
    assert!(victim.path().join("precious").exists());
}

/// A full disk under the root: Mount fails cleanly, while Unmount and
/// Remove still work, so that an operator can free space through Docker.
/// Needs root to mount a small tmpfs.
#[tokio::test]
async fn a_full_disk_never_strands_a_mount_or_blocks_removal() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED a_full_disk_never_strands_a_mount_or_blocks_removal: \
             mounting a tmpfs needs root ***\n"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());

    let root = small.join("root");
    let s = serve(&root);
    let c = s.client();
    let v = c.volume();
    v.create("big", None).await.unwrap();
    v.create("other", None).await.unwrap();
    let path = v.mount("big", "m1").await.unwrap();

    // Fill the disk from inside the volume, as a container would.
    let mut filler = fs::File::create(path.join("filler")).unwrap();
    let chunk = vec![7u8; 16 * 1024];
    while std::io::Write::write_all(&mut filler, &chunk).is_ok() {}
    drop(filler);

    assert!(
        v.mount("other", "m2").await.is_err(),
        "a mount that cannot be saved fails"
    );
    v.unmount("big", "m1")
        .await
        .expect("unmount succeeds on a full disk");
    v.remove("big")
        .await
        .expect("remove succeeds on a full disk");
    assert!(!path.exists());

    // Space is back: the table catches up and nothing is left mounted.
    v.create("after", None).await.unwrap();
    s.stop().await.unwrap();
    let s = serve(&root);
    let names: Vec<String> = s
        .client()
        .volume()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["after", "other"]);
    let other = s.client().volume().get("other").await.unwrap();
    assert_eq!(other.status.unwrap()["mounts"], 0);
}
