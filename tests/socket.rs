//! Socket ownership: ../shared/cases/socket-lifecycle.md and its kind.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use docker_plugin_sdk::{Error, SocketOptions};

#[tokio::test]
async fn a_dead_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sock");
    // Bound then dropped: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let bound = SocketOptions::at(&path)
        .bind()
        .expect("stale socket replaced");
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    drop(bound);
    assert!(!path.exists(), "dropping the bound socket removes its file");
}

#[tokio::test]
async fn a_live_socket_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sock");
    let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let inode = fs::metadata(&path).unwrap().ino();

    let err = SocketOptions::at(&path).bind().unwrap_err();
    assert!(matches!(err, Error::AlreadyRunning { .. }), "{err:?}");
    assert!(err.to_string().contains("already running"), "{err}");
    assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
    // The other process still gets its connections.
    std::os::unix::net::UnixStream::connect(&path).unwrap();
    drop(live);
}

#[tokio::test]
async fn files_and_directories_at_the_path_are_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.sock");
    fs::write(&file, b"important").unwrap();
    let err = SocketOptions::at(&file).bind().unwrap_err();
    assert!(matches!(err, Error::NotASocket { .. }), "{err:?}");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"important");

    let sub = dir.path().join("dir.sock");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("inside"), b"x").unwrap();
    let err = SocketOptions::at(&sub).bind().unwrap_err();
    assert!(matches!(err, Error::NotASocket { .. }), "{err:?}");
    assert!(sub.join("inside").exists());

    let target = dir.path().join("target");
    fs::write(&target, b"t").unwrap();
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(matches!(
        SocketOptions::at(&link).bind().unwrap_err(),
        Error::NotASocket { .. }
    ));
    assert!(link.exists() && target.exists());
}

#[tokio::test]
async fn mode_defaults_to_0660_and_group_and_parent_directory_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/p.sock");
    let gid = 4242;
    let bound = SocketOptions::at(&path)
        .group(gid.to_string())
        .bind()
        .unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);
    drop(bound);

    let bound = SocketOptions::at(&path)
        .mode(0o600)
        .group("root")
        .bind()
        .unwrap();
    let meta = fs::metadata(bound.path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.gid(), 0);
}

#[tokio::test]
async fn an_unknown_group_fails_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sock");
    let err = SocketOptions::at(&path)
        .group("no-such-group-anywhere")
        .bind()
        .unwrap_err();
    assert!(matches!(err, Error::UnknownGroup { .. }), "{err:?}");
    assert!(!path.exists());
}

#[tokio::test]
async fn a_replaced_socket_is_not_removed_by_the_old_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sock");
    let old = SocketOptions::at(&path).bind().unwrap();
    // Someone else took the path over (e.g. after deciding ours was stale).
    fs::remove_file(&path).unwrap();
    let _new = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(old);
    assert!(path.exists(), "the new owner's socket must survive");
}

#[tokio::test]
async fn a_live_listener_that_never_accepts_counts_as_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frozen.sock");
    let frozen = std::os::unix::net::UnixListener::bind(&path).unwrap();

    // Fill its backlog so that one more connect would block.
    let mut queued = Vec::new();
    for _ in 0..100_000 {
        match tokio::net::UnixStream::connect(&path).await {
            Ok(stream) => queued.push(stream),
            Err(_) => break,
        }
    }

    let started = std::time::Instant::now();
    let err = SocketOptions::at(&path).bind().unwrap_err();
    assert!(matches!(err, Error::AlreadyRunning { .. }), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(path.exists());
    drop(frozen);
}
