//! Running the built bridge-net example as a separate process, and looking
//! at the links it makes.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The bridge-net binary that `cargo test` builds next to the test binaries.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("examples").join("bridge-net");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        bin.display()
    );
    bin
}

/// Whether this process may create network links: bridge-net needs root
/// (CAP_NET_ADMIN) in the host's namespace.
pub fn may_make_links() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .map(str::to_owned);
    euid.as_deref() == Some("0")
}

/// Whether link `name` exists, asked of `ip`, independently of the plugin.
pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Every link whose name starts with `prefix`.
pub fn links_starting_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// A 64-hex ID unlike any other in this run, as the daemon would make.
pub fn unique_id() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let seed = format!("{:08x}{:04x}{:020x}", std::process::id(), n, nanos);
    format!("{seed:0<64}")
}

/// A running bridge-net, killed (by its PID) when dropped.
pub struct BridgeNet {
    child: Option<Child>,
    pub socket: PathBuf,
    pub state: PathBuf,
    args: Vec<String>,
}

impl BridgeNet {
    /// Starts bridge-net on `socket` with state in `state` and `args`, and
    /// waits until it accepts connections.
    pub fn start(socket: &Path, state: &Path, args: &[&str]) -> Self {
        let mut plugin = Self {
            child: None,
            socket: socket.to_owned(),
            state: state.to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        plugin.restart();
        plugin
    }

    /// Starts the process again after [`BridgeNet::kill_9`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        let child = Command::new(binary())
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state")
            .arg(&self.state)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bridge-net");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let child = self.child.as_mut().expect("running");
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use std::io::Read;
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!("bridge-net exited early ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "bridge-net did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL by PID, then wait for the process to be gone.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-KILL")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        let _ = child.wait();
    }
}

impl Drop for BridgeNet {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A killed plugin leaves its socket; a stale one stalls the daemon.
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Deletes the named links when dropped, so that a failing test leaves no
/// bridge or veth behind. Links already gone are fine.
pub struct LinkGuard(pub Vec<String>);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        for name in &self.0 {
            if link_exists(name) {
                let _ = Command::new("ip").args(["link", "del", name]).status();
            }
        }
    }
}
