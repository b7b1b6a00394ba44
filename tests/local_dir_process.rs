//! The local-dir binary as operators run it: signals, kill -9 at any moment,
//! and a second instance started by mistake.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::{PluginProcess, local_dir_binary};
use docker_plugin_sdk::client::Client;

#[test]
fn help_describes_the_flags() {
    let out = Command::new(local_dir_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--name", "--socket", "--root", "--group"] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

#[tokio::test]
async fn sigterm_stops_serving_and_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ld.sock");
    let mut plugin = PluginProcess::start(&socket, &dir.path().join("root"), &[]);
    Client::new(&socket)
        .volume()
        .create("v", None)
        .await
        .unwrap();

    plugin.signal("-TERM");
    let status = plugin.wait(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "socket file left behind");
}

#[tokio::test]
async fn a_second_instance_reports_already_running_and_leaves_the_first_alone() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ld.sock");
    let _first = PluginProcess::start(&socket, &dir.path().join("root1"), &[]);

    let second = PluginProcess::spawn(&socket, &dir.path().join("root2"), &[]);
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");

    let implements = Client::new(&socket).activate().await.unwrap();
    assert_eq!(implements, ["VolumeDriver"]);
}

#[tokio::test]
async fn the_same_root_cannot_be_served_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let _first = PluginProcess::start(&dir.path().join("a.sock"), &root, &[]);
    let second = PluginProcess::spawn(&dir.path().join("b.sock"), &root, &[]);
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
}

/// Creates, mounts and removes volumes from several clients while the
/// plugin is killed with SIGKILL at varying moments; after every restart,
/// each acknowledged change must be there and nothing else may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_moment_loses_no_acknowledged_volume() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ld.sock");
    let root = dir.path().join("root");
    let acknowledged = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let mounted = Arc::new(Mutex::new(BTreeSet::<String>::new()));

    for round in 0..6u64 {
        let plugin = PluginProcess::start(&socket, &root, &[]);

        // Everything acknowledged before this start must be back.
        let listed: BTreeSet<String> = Client::new(&socket)
            .volume()
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        let expected = acknowledged.lock().unwrap().clone();
        assert!(
            expected.is_subset(&listed),
            "round {round}: lost {:?}",
            expected.difference(&listed).collect::<Vec<_>>()
        );
        let still_mounted = mounted.lock().unwrap().clone();
        for name in &still_mounted {
            let v = Client::new(&socket).volume().get(name).await.unwrap();
            assert_eq!(
                v.status.unwrap()["mounts"],
                1,
                "round {round}: {name} lost its mount"
            );
        }

        let mut writers = Vec::new();
        for writer in 0..4 {
            let socket = socket.clone();
            let acknowledged = Arc::clone(&acknowledged);
            let mounted = Arc::clone(&mounted);
            writers.push(tokio::spawn(async move {
                let client = Client::new(&socket);
                for i in 0.. {
                    let name = format!("r{round}-w{writer}-{i}");
                    if client.volume().create(&name, None).await.is_err() {
                        return;
                    }
                    acknowledged.lock().unwrap().insert(name.clone());
                    if i % 3 == 0 {
                        if client.volume().mount(&name, "m").await.is_err() {
                            return;
                        }
                        mounted.lock().unwrap().insert(name);
                    }
                }
            }));
        }

        // Vary the moment of death between rounds.
        tokio::time::sleep(Duration::from_millis(40 + round * 37)).await;
        plugin.signal("-KILL");
        for w in writers {
            w.await.unwrap();
        }
        drop(plugin);
        assert!(
            socket.exists(),
            "kill -9 leaves the stale socket that the next start replaces"
        );
    }
    assert!(
        acknowledged.lock().unwrap().len() > 10,
        "the test created too little to mean much"
    );
}

#[tokio::test]
async fn forget_mounts_frees_a_volume_whose_unmount_never_came() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ld.sock");
    let root = dir.path().join("root");
    let mut plugin = PluginProcess::start(&socket, &root, &[]);
    let client = Client::new(&socket);
    client.volume().create("stuck", None).await.unwrap();
    client
        .volume()
        .mount("stuck", "gone-container")
        .await
        .unwrap();
    plugin.signal("-TERM");
    plugin.wait(Duration::from_secs(15));

    let out = Command::new(local_dir_binary())
        .arg("--root")
        .arg(&root)
        .args(["forget-mounts", "stuck"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("forgot 1 mounts"));

    let _plugin = PluginProcess::start(&socket, &root, &[]);
    Client::new(&socket).volume().remove("stuck").await.unwrap();
}
