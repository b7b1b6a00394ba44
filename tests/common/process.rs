//! Running the built local-dir example as a separate process.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The local-dir binary that `cargo test` builds next to the test binaries.
pub fn local_dir_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/local-dir
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("examples").join("local-dir");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        bin.display()
    );
    bin
}

/// A running local-dir process, killed (by its PID) when dropped.
pub struct PluginProcess {
    pub child: Child,
    pub socket: PathBuf,
}

impl PluginProcess {
    /// Starts local-dir with `args` and waits until `socket` accepts
    /// connections.
    pub fn start(socket: &Path, root: &Path, extra: &[&str]) -> Self {
        let child = Self::spawn(socket, root, extra);
        let mut process = Self {
            child,
            socket: socket.to_owned(),
        };
        process.wait_ready();
        process
    }

    pub fn spawn(socket: &Path, root: &Path, extra: &[&str]) -> Child {
        Command::new(local_dir_binary())
            .arg("--socket")
            .arg(socket)
            .arg("--root")
            .arg(root)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start local-dir")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut err = String::new();
                if let Some(mut stderr) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!("local-dir exited early ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "local-dir did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "-KILL", "-TERM") to this process by PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {}", self.pid());
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "local-dir did not exit in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
