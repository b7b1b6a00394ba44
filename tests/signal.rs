//! SIGTERM while a request is in flight (../shared/cases/socket-lifecycle.md):
//! the request finishes and the socket file is removed. Its own test binary,
//! because it signals its own process.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use docker_plugin_sdk::client::Client;
use docker_plugin_sdk::volume::*;
use docker_plugin_sdk::{DriverError, Plugin, SocketOptions};

struct Slow;

#[docker_plugin_sdk::async_trait]
impl VolumeDriver for Slow {
    async fn create(&self, _: CreateRequest) -> Result<(), DriverError> {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok(())
    }
    async fn remove(&self, _: RemoveRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn mount(&self, _: MountRequest) -> Result<PathBuf, DriverError> {
        Ok(PathBuf::from("/srv"))
    }
    async fn unmount(&self, _: UnmountRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn path(&self, _: PathRequest) -> Result<Option<PathBuf>, DriverError> {
        Ok(None)
    }
    async fn get(&self, req: GetRequest) -> Result<Volume, DriverError> {
        Err(DriverError::not_found(req.name))
    }
    async fn list(&self) -> Result<Vec<Volume>, DriverError> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("slow.sock");
    let server = tokio::spawn(Plugin::new().volume(Slow).run(SocketOptions::at(&socket)));
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let client = Client::new(&socket);
    let in_flight = tokio::spawn(async move { client.volume().create("v", None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A hangup is not a reason to stop serving (nor, by default, to die).
    send_signal("-HUP");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        Client::new(&socket).activate().await.unwrap(),
        ["VolumeDriver"]
    );

    send_signal("-TERM");

    in_flight
        .await
        .unwrap()
        .expect("the request in flight completed");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stopped")
        .unwrap()
        .unwrap();
    assert!(!socket.exists(), "socket file removed on SIGTERM");
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_err(),
        "nothing listens any more"
    );
}

/// Signals this test process, by its PID.
fn send_signal(signal: &str) {
    let pid = std::process::id().to_string();
    let status = Command::new("kill").args([signal, &pid]).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}
