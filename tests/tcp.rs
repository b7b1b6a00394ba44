//! Serving on TCP with a spec file: what the file says, when it is written
//! and replaced, and that it goes away with the plugin.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::local_dir_binary;
use docker_plugin_sdk::{Error, Plugin, TcpOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// POSTs an empty body to `endpoint` as the daemon does over TCP and
/// returns the status line and body.
async fn post(addr: SocketAddr, endpoint: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /{endpoint} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Content-Length: 0\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\
         Accept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("header end");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

fn spec_addr(spec: &Path) -> SocketAddr {
    let text = fs::read_to_string(spec).expect("read spec");
    assert!(text.ends_with('\n'), "{text:?}");
    text.trim()
        .strip_prefix("tcp://")
        .unwrap_or_else(|| panic!("spec is not tcp://: {text:?}"))
        .parse()
        .expect("spec address")
}

/// A child process killed (by its PID) if the test ends while it runs.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A loopback address that nothing listens on, held by a socket that is
/// bound but not listening: connections to it are refused, and while the
/// returned socket lives no other test can be given the same port (a port
/// merely bound and closed could be handed to a parallel test's listener).
fn dead_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

#[tokio::test]
async fn the_spec_file_names_the_served_port_and_goes_away_with_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TcpOptions::for_plugin("tcp-vols")
        .unwrap()
        .spec_dir(dir.path().join("plugins"));
    let mut bound = opts.bind().unwrap();
    let spec = dir.path().join("plugins/tcp-vols.spec");
    assert_eq!(bound.spec_path(), spec);
    assert_eq!(spec_addr(&spec), bound.local_addr());
    assert!(bound.local_addr().ip().is_loopback());
    assert_ne!(bound.local_addr().port(), 0);

    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(Plugin::new().serve(bound.take_listener(), async {
        let _ = stopped.await;
    }));
    let (status, body) = post(spec_addr(&spec), "Plugin.Activate").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, r#"{"Implements":[]}"#);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(spec.exists(), "removed before the guard dropped");
    drop(bound);
    assert!(!spec.exists(), "spec file left behind");
    assert_eq!(fs::read_dir(dir.path().join("plugins")).unwrap().count(), 0);
}

#[tokio::test]
async fn a_stale_spec_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("stale.spec");
    let (_held, dead) = dead_addr();
    fs::write(&spec, format!("tcp://{dead}\n")).unwrap();

    let bound = TcpOptions::for_plugin("stale")
        .unwrap()
        .spec_dir(dir.path())
        .bind()
        .unwrap();
    assert_eq!(spec_addr(&spec), bound.local_addr());
}

#[tokio::test]
async fn a_spec_whose_address_answers_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let first = TcpOptions::for_plugin("twice")
        .unwrap()
        .spec_dir(dir.path())
        .bind()
        .unwrap();
    let before = fs::read_to_string(first.spec_path()).unwrap();

    let second = TcpOptions::for_plugin("twice")
        .unwrap()
        .spec_dir(dir.path())
        .bind();
    assert!(
        matches!(second, Err(Error::AlreadyRunning { .. })),
        "{second:?}"
    );
    assert_eq!(fs::read_to_string(first.spec_path()).unwrap(), before);
}

#[tokio::test]
async fn specs_naming_other_hosts_or_schemes_are_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("other.spec");
    // 192.0.2.0/24 is reserved for documentation: it is never probed.
    for text in [
        "tcp://192.0.2.1:80\n",
        "unix:///run/other.sock",
        "https://[::1]:1",
    ] {
        fs::write(&spec, text).unwrap();
        let err = TcpOptions::for_plugin("other")
            .unwrap()
            .spec_dir(dir.path())
            .bind()
            .unwrap_err();
        assert!(matches!(err, Error::ForeignSpec { .. }), "{err:?}");
        assert!(err.to_string().contains("remove it"), "{err}");
        assert_eq!(fs::read_to_string(&spec).unwrap(), text);
    }
}

#[tokio::test]
async fn a_spec_replaced_by_someone_else_survives_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let bound = TcpOptions::for_plugin("moved")
        .unwrap()
        .spec_dir(dir.path())
        .bind()
        .unwrap();
    let spec = bound.spec_path().to_owned();
    let replacement = dir.path().join("new.spec");
    fs::write(&replacement, "tcp://127.0.0.1:1\n").unwrap();
    fs::rename(&replacement, &spec).unwrap();

    drop(bound);
    assert_eq!(fs::read_to_string(&spec).unwrap(), "tcp://127.0.0.1:1\n");
}

#[tokio::test]
async fn local_dir_serves_tcp_and_removes_its_spec_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    let child = Command::new(local_dir_binary())
        .args(["--name", "ld-tcp", "--tcp", "127.0.0.1:0", "--spec-dir"])
        .arg(&specs)
        .arg("--root")
        .arg(dir.path().join("root"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let child = &mut child.0;
    let spec = specs.join("ld-tcp.spec");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !spec.exists() {
        assert!(child.try_wait().unwrap().is_none(), "local-dir exited");
        assert!(Instant::now() < deadline, "no spec file appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, body) = post(spec_addr(&spec), "Plugin.Activate").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, r#"{"Implements":["VolumeDriver"]}"#);
    let (status, body) = post(spec_addr(&spec), "VolumeDriver.List").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "local-dir did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert!(!spec.exists(), "spec file left behind");
}
