//! systemd socket activation, tested the way systemd does it:
//! `systemd-socket-activate` binds the socket, sets `LISTEN_FDS` and
//! `LISTEN_PID`, and execs the plugin with the socket as descriptor 3.
//!
//! Needs `systemd-socket-activate` (Debian package `systemd`); without it
//! these tests are skipped with a message, unless
//! `DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1` (CI), which makes that a failure.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::local_dir_binary;
use docker_plugin_sdk::client::Client;
use docker_plugin_sdk::{ActivatedSocket, Plugin, shutdown_signal};

const ACTIVATE: &str = "systemd-socket-activate";

/// Whether the tool is installed; says so loudly when it is not.
fn have_activator() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(ACTIVATE).is_file()));
    if !found {
        let msg = format!("{ACTIVATE} is missing: install Debian's systemd package");
        assert!(
            std::env::var("DOCKER_PLUGIN_SDK_REQUIRE_DAEMON").as_deref() != Ok("1"),
            "{msg}"
        );
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {msg} ***\n");
    }
    found
}

/// Not a test: the plugin process the tests start. It reports what it
/// found in its environment, then serves until SIGTERM.
#[test]
#[ignore = "run by the other tests in a process of its own"]
fn activation_helper() {
    if std::env::var_os("SDK_ACTIVATION_HELPER").is_none() {
        return;
    }
    let taken = ActivatedSocket::from_env().unwrap_or_else(|err| panic!("{err}"));
    println!(
        "HELPER taken={} unix={} listen_fds={} listen_pid={}",
        taken.is_some(),
        taken.as_ref().is_some_and(ActivatedSocket::is_unix),
        std::env::var_os("LISTEN_FDS").is_some(),
        std::env::var_os("LISTEN_PID").is_some(),
    );
    let Some(socket) = taken else { return };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(async {
            let signals = shutdown_signal().unwrap();
            Plugin::new().serve_activated(socket, signals).await
        })
        .expect("serve");
}

/// The helper's command line: this test binary, running only the helper.
fn helper(cmd: &mut Command) -> &mut Command {
    let exe = std::env::current_exe().unwrap();
    cmd.arg(exe)
        .args(["activation_helper", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
}

/// A child process killed (by its PID) if the test ends while it runs.
struct Killed(Child);

impl Killed {
    fn terminate(&mut self) -> std::process::ExitStatus {
        let kill = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the plugin did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `systemd-socket-activate -l LISTEN` with `program`, and waits
/// until the socket is bound (the program itself starts on the first
/// connection, as under systemd).
fn activate(listen: &str, ready: impl Fn() -> bool, program: impl FnOnce(&mut Command)) -> Killed {
    let mut cmd = Command::new(ACTIVATE);
    cmd.args([
        "-l",
        listen,
        "-E",
        "SDK_ACTIVATION_HELPER=1",
        "-E",
        "RUST_LOG=warn",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    program(&mut cmd);
    let mut child = Killed(cmd.spawn().expect("start systemd-socket-activate"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(child.0.try_wait().unwrap().is_none(), "{ACTIVATE} exited");
        assert!(
            Instant::now() < deadline,
            "{ACTIVATE} did not bind {listen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The helper's report line, read on a thread so a silent child cannot
/// hang the test.
fn report(stdout: ChildStdout) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness prints `test activation_helper ... ` first, on
            // the same line.
            // Reading goes on to the end: a closed pipe would fail the
            // helper's last words.
            if let Some(at) = line.find("HELPER ") {
                let _ = tx.send(line[at..].to_owned());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the helper reported")
}

#[tokio::test]
async fn a_unix_socket_passed_as_fd_3_is_served_and_left_to_systemd() {
    if !have_activator() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("act.sock");
    let mut plugin = activate(
        socket.to_str().unwrap(),
        || socket.exists(),
        |cmd| {
            helper(cmd);
        },
    );

    // The first connection makes the activator exec the plugin.
    let implements = Client::new(&socket).activate().await.unwrap();
    assert!(implements.is_empty(), "{implements:?}");
    let line = report(plugin.0.stdout.take().unwrap());
    assert_eq!(
        line,
        "HELPER taken=true unix=true listen_fds=false listen_pid=false"
    );

    let status = plugin.terminate();
    assert!(status.success(), "{status}");
    assert!(socket.exists(), "the socket belongs to systemd's unit");
}

#[tokio::test]
async fn a_tcp_socket_passed_as_fd_3_is_served() {
    if !have_activator() {
        return;
    }
    let addr: SocketAddr = {
        let probe = StdTcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut plugin = activate(
        &addr.to_string(),
        || std::net::TcpStream::connect(addr).is_ok(),
        |cmd| {
            helper(cmd);
        },
    );

    let line = report(plugin.0.stdout.take().unwrap());
    assert_eq!(
        line,
        "HELPER taken=true unix=false listen_fds=false listen_pid=false"
    );
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with(r#"{"Implements":[]}"#), "{answer}");

    let status = plugin.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn more_than_one_passed_socket_is_refused() {
    if !have_activator() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let mut cmd = Command::new(ACTIVATE);
    cmd.arg("-l").arg(&a).arg("-l").arg(&b);
    cmd.args(["-E", "SDK_ACTIVATION_HELPER=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Killed(helper(&mut cmd).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&a).is_err() {
        assert!(Instant::now() < deadline, "{ACTIVATE} did not bind");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stderr = String::new();
    let mut pipe = child.0.stderr.take().unwrap();
    pipe.read_to_string(&mut stderr).unwrap();
    assert!(!child.0.wait().unwrap().success());
    assert!(
        stderr.contains("socket activation: 2 sockets were passed"),
        "{stderr}"
    );
}

#[test]
fn variables_meant_for_another_process_are_ignored_and_cleared() {
    let out = helper(&mut Command::new("env"))
        .env("SDK_ACTIVATION_HELPER", "1")
        .env("LISTEN_FDS", "1")
        // PID 1 is never this test's helper.
        .env("LISTEN_PID", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("HELPER taken=false unix=false listen_fds=false listen_pid=false"),
        "{stdout}"
    );
}

#[tokio::test]
async fn local_dir_serves_the_passed_socket_instead_of_binding_its_own() {
    if !have_activator() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("act.sock");
    let own = dir.path().join("own.sock");
    let root = dir.path().join("root");
    let mut plugin = activate(
        socket.to_str().unwrap(),
        || socket.exists(),
        |cmd| {
            cmd.arg(local_dir_binary())
                .arg("--socket")
                .arg(&own)
                .arg("--root")
                .arg(&root);
        },
    );

    let client = Client::new(&socket);
    client.volume().create("act", None).await.unwrap();
    let mountpoint = client.volume().mount("act", "id-1").await.unwrap();
    assert!(mountpoint.starts_with(&root), "{}", mountpoint.display());
    client.volume().unmount("act", "id-1").await.unwrap();
    assert!(!Path::new(&own).exists(), "local-dir bound its own socket");

    let status = plugin.terminate();
    assert!(status.success(), "{status}");
}
