//! nfs-guest-check: drives the nfs example against a real NFS server, the
//! way the Docker daemon would, and prints one `NFSCHECK` line per step.
//!
//! Not a plugin: tests/nfs_guest.rs copies it into a small virtual machine
//! with a kernel NFS server on its loopback and reads its report from the
//! serial console. Every step has a deadline. Run by hand as root:
//!
//! ```text
//! nfs-guest-check --plugin ./nfs --share 127.0.0.1:/export --export /export
//! ```

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use docker_plugin_sdk::client::Client;

/// Runs the real-mount scenario against the nfs plugin.
#[derive(Debug, Parser)]
struct Args {
    /// The nfs plugin binary.
    #[arg(long)]
    plugin: PathBuf,
    /// The share the plugin mounts, HOST:/PATH.
    #[arg(long)]
    share: String,
    /// The exported directory as the server sees it, to check writes.
    #[arg(long)]
    export: PathBuf,
    /// Where the plugin keeps its state and mount points.
    #[arg(long, default_value = "/var/lib/docker-nfs")]
    root: PathBuf,
}

type Outcome = Result<(), String>;

/// The plugin under test, killed with SIGKILL (by its PID) when replaced.
struct Plugin {
    child: Child,
    socket: PathBuf,
}

impl Plugin {
    fn start(args: &Args) -> Result<Self, String> {
        let socket = PathBuf::from("/run/nfs-check.sock");
        let _ = fs::remove_file(&socket);
        let child = Command::new(&args.plugin)
            .arg("--socket")
            .arg(&socket)
            .arg("--root")
            .arg(&args.root)
            .args(["--mount-timeout", "20s"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the plugin: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                return Err("the plugin did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self { child, socket })
    }

    fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// SIGKILL, as a crash or `kill -9` would end it.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many mounts sit exactly on `path` (resolved as the kernel lists it).
fn mounts_on(path: &Path) -> usize {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy().replace(' ', "\\040");
    table
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .count()
}

/// The mount point holding a volume path (the path less its subdir).
fn mount_dir(path: &Path, subdir: &str) -> PathBuf {
    let mut dir = path.to_owned();
    for _ in Path::new(subdir).components() {
        dir.pop();
    }
    dir
}

fn expect(cond: bool, what: impl Into<String>) -> Outcome {
    if cond { Ok(()) } else { Err(what.into()) }
}

async fn step<F: Future<Output = Outcome>>(name: &str, limit: u64, failures: &mut u32, f: F) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(limit), f)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {limit} s")));
    let ms = started.elapsed().as_millis();
    match outcome {
        Ok(()) => println!("NFSCHECK ok {name} {ms}ms"),
        Err(why) => {
            *failures += 1;
            println!("NFSCHECK fail {name} {ms}ms: {why}");
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let failures = runtime.block_on(scenario(&args));
    println!("NFSCHECK done failures={failures}");
    if failures == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

async fn scenario(args: &Args) -> u32 {
    let mut failures = 0;
    let mut plugin = match Plugin::start(args) {
        Ok(p) => p,
        Err(why) => {
            println!("NFSCHECK fail start: {why}");
            return 1;
        }
    };
    let share = args.share.as_str();
    let opts = |o: &str| {
        Some(
            [("share", share), ("o", o), ("subdir", "data")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
        )
    };
    let c = plugin.client();
    let mut path = PathBuf::new();

    step("create", 10, &mut failures, async {
        c.volume()
            .create("v", opts("vers=4.2,soft,timeo=50"))
            .await
            .map_err(|e| e.to_string())?;
        c.volume()
            .create("w", opts("vers=4.2,hard"))
            .await
            .map_err(|e| e.to_string())
    })
    .await;

    step("two-ids-one-mount", 60, &mut failures, async {
        let p1 = c
            .volume()
            .mount("v", "id1")
            .await
            .map_err(|e| e.to_string())?;
        let p2 = c
            .volume()
            .mount("v", "id2")
            .await
            .map_err(|e| e.to_string())?;
        expect(p1 == p2, format!("{p1:?} != {p2:?}"))?;
        path = p1;
        let n = mounts_on(&mount_dir(&path, "data"));
        expect(n == 1, format!("{n} mounts on the mount point"))
    })
    .await;

    step("write-one-read-other", 60, &mut failures, async {
        fs::write(path.join("hello"), "from v").map_err(|e| format!("write: {e}"))?;
        let pw = c
            .volume()
            .mount("w", "idw")
            .await
            .map_err(|e| e.to_string())?;
        expect(pw != path, "w has its own mount")?;
        let read = fs::read_to_string(pw.join("hello")).map_err(|e| format!("read: {e}"))?;
        expect(read == "from v", format!("read {read:?} through w"))?;
        let on_server = fs::read_to_string(args.export.join("data/hello")).unwrap_or_default();
        expect(on_server == "from v", "the file is on the server")?;
        c.volume()
            .unmount("w", "idw")
            .await
            .map_err(|e| e.to_string())
    })
    .await;

    step("unmount-one-still-mounted", 30, &mut failures, async {
        c.volume()
            .unmount("v", "id1")
            .await
            .map_err(|e| e.to_string())?;
        expect(mounts_on(&mount_dir(&path, "data")) == 1, "still mounted")?;
        expect(
            fs::read_to_string(path.join("hello")).is_ok(),
            "still readable",
        )
    })
    .await;

    step("unmount-both-gone", 30, &mut failures, async {
        c.volume()
            .unmount("v", "id2")
            .await
            .map_err(|e| e.to_string())?;
        expect(mounts_on(&mount_dir(&path, "data")) == 0, "unmounted")?;
        expect(args.export.join("data/hello").exists(), "server data kept")
    })
    .await;

    // kill -9 with a mount in use: the restarted plugin adopts it.
    step("restart-adopts-mount", 60, &mut failures, async {
        c.volume()
            .mount("v", "id3")
            .await
            .map_err(|e| e.to_string())?;
        plugin.kill9();
        plugin = Plugin::start(args)?;
        let c = plugin.client();
        let again = c
            .volume()
            .mount("v", "id4")
            .await
            .map_err(|e| e.to_string())?;
        expect(again == path, "same path after the restart")?;
        let n = mounts_on(&mount_dir(&path, "data"));
        expect(n == 1, format!("{n} mounts after the restart"))?;
        c.volume()
            .unmount("v", "id3")
            .await
            .map_err(|e| e.to_string())?;
        c.volume()
            .unmount("v", "id4")
            .await
            .map_err(|e| e.to_string())?;
        expect(mounts_on(&mount_dir(&path, "data")) == 0, "unmounted")
    })
    .await;

    // The kernel lost the mount while the plugin was down: mounted again.
    step("restart-remounts", 60, &mut failures, async {
        let c = plugin.client();
        c.volume()
            .mount("v", "id5")
            .await
            .map_err(|e| e.to_string())?;
        plugin.kill9();
        let dir = mount_dir(&path, "data");
        let status = Command::new("umount")
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?;
        expect(status.success(), "umount by hand")?;
        plugin = Plugin::start(args)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while mounts_on(&dir) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        expect(
            mounts_on(&dir) == 1,
            "mounted again by the restarted plugin",
        )?;
        plugin
            .client()
            .volume()
            .unmount("v", "id5")
            .await
            .map_err(|e| e.to_string())?;
        expect(mounts_on(&dir) == 0, "unmounted")
    })
    .await;

    step("busy-unmount", 60, &mut failures, async {
        let c = plugin.client();
        c.volume()
            .mount("v", "id6")
            .await
            .map_err(|e| e.to_string())?;
        let mut sleeper = Command::new("sleep")
            .arg("600")
            .current_dir(&path)
            .spawn()
            .map_err(|e| e.to_string())?;
        let result = c.volume().unmount("v", "id6").await;
        let still = mounts_on(&mount_dir(&path, "data"));
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        let err = result.err().map(|e| e.to_string()).unwrap_or_default();
        expect(err.contains("busy"), format!("unmount answered {err:?}"))?;
        expect(still == 1, "a busy mount stays mounted")?;
        expect(args.export.join("data/hello").exists(), "server data kept")?;
        c.volume()
            .mount("v", "id7")
            .await
            .map_err(|e| e.to_string())?;
        c.volume()
            .unmount("v", "id7")
            .await
            .map_err(|e| e.to_string())?;
        expect(
            mounts_on(&mount_dir(&path, "data")) == 0,
            "unmounted after the busy user left",
        )
    })
    .await;

    step("server-stopped", 150, &mut failures, async {
        let c = plugin.client();
        c.volume()
            .mount("v", "id8")
            .await
            .map_err(|e| e.to_string())?;
        let stop = Command::new("rpc.nfsd")
            .arg("0")
            .status()
            .map_err(|e| e.to_string())?;
        expect(stop.success(), "rpc.nfsd 0")?;
        let started = Instant::now();
        let err = c
            .volume()
            .mount("w", "id9")
            .await
            .err()
            .map(|e| e.to_string());
        let took = started.elapsed();
        expect(err.is_some(), "mount with the server stopped fails")?;
        expect(
            took < Duration::from_secs(60),
            format!("mount failed after {took:?}"),
        )?;
        println!("NFSCHECK info dead-server mount answered in {took:?}: {err:?}");
        let started = Instant::now();
        let result = c.volume().unmount("v", "id8").await;
        let took = started.elapsed();
        println!("NFSCHECK info dead-server unmount answered in {took:?}: {result:?}");
        expect(
            took < Duration::from_secs(60),
            format!("unmount took {took:?}"),
        )?;
        expect(mounts_on(&mount_dir(&path, "data")) == 0, "detached")
    })
    .await;

    plugin.kill9();
    failures
}
