//! The nfs example driver, served in-process and driven the way the daemon
//! drives it, over a recording mounter: the nfs-* and volume-* cases, bounded
//! time, reference counts per mount ID, restarts and data safety.

mod common;

#[path = "../examples/nfs/driver.rs"]
#[allow(dead_code)]
mod driver;
#[path = "../examples/nfs/mounter.rs"]
#[allow(dead_code)]
mod mounter;
#[path = "../examples/nfs/options.rs"]
#[allow(dead_code)]
mod options;
#[path = "../examples/nfs/state.rs"]
#[allow(dead_code)]
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Served;
use docker_plugin_sdk::Plugin;
use docker_plugin_sdk::client::{Client, ClientError};
use docker_plugin_sdk::volume::Scope;
use driver::{Config, Nfs};
use mounter::{Mounter, SystemMounter};
use options::Defaults;

/// One call that reached the seam.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Mount {
        share: String,
        options: String,
        target: PathBuf,
    },
    Unmount {
        target: PathBuf,
        lazy: bool,
    },
}

/// How the fake server behind a share behaves.
#[derive(Debug, Clone)]
enum Server {
    /// Mount fails with this message.
    Refuses(String),
    /// Never answers: the helper runs until killed at its limit.
    Silent,
    /// Stuck in the kernel for this long, ignoring the limit.
    Stuck(Duration),
    /// The helper exits 0 without mounting anything.
    Lies,
}

/// A mount table in memory, and every call made to it.
#[derive(Default)]
struct Recorder {
    table: Mutex<BTreeSet<PathBuf>>,
    calls: Mutex<Vec<Call>>,
    servers: Mutex<HashMap<String, Server>>,
    /// Mount points whose plain unmount fails as busy.
    busy: Mutex<BTreeSet<PathBuf>>,
    /// Mount points whose server is gone: a plain unmount never finishes.
    dead: Mutex<BTreeSet<PathBuf>>,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn mounts(&self) -> Vec<&'static str> {
        self.calls()
            .iter()
            .map(|c| match c {
                Call::Mount { .. } => "mount",
                Call::Unmount { lazy: false, .. } => "umount",
                Call::Unmount { lazy: true, .. } => "umount -l",
            })
            .collect()
    }

    fn server(&self, share: &str, behaviour: Server) {
        self.servers
            .lock()
            .unwrap()
            .insert(share.to_owned(), behaviour);
    }

    fn mounted(&self) -> BTreeSet<PathBuf> {
        self.table.lock().unwrap().clone()
    }
}

impl Mounter for Recorder {
    fn mount(
        &self,
        share: &str,
        options: &str,
        target: &Path,
        limit: Duration,
    ) -> Result<(), String> {
        self.calls.lock().unwrap().push(Call::Mount {
            share: share.into(),
            options: options.into(),
            target: target.into(),
        });
        let behaviour = self.servers.lock().unwrap().get(share).cloned();
        match behaviour {
            Some(Server::Refuses(why)) => return Err(why),
            Some(Server::Silent) => {
                std::thread::sleep(limit);
                return Err(format!("mount did not finish within {limit:?}; killed it"));
            }
            Some(Server::Stuck(time)) => {
                std::thread::sleep(time);
                return Err("mount.nfs: Connection timed out".into());
            }
            Some(Server::Lies) => return Ok(()),
            None => {}
        }
        assert!(target.is_dir(), "mount point {} exists", target.display());
        assert!(
            self.table.lock().unwrap().insert(target.into()),
            "mounted twice on {}",
            target.display()
        );
        Ok(())
    }

    fn unmount(&self, target: &Path, lazy: bool, limit: Duration) -> Result<(), String> {
        self.calls.lock().unwrap().push(Call::Unmount {
            target: target.into(),
            lazy,
        });
        if !lazy && self.busy.lock().unwrap().contains(target) {
            return Err(format!("umount: {}: target is busy.", target.display()));
        }
        if !lazy && self.dead.lock().unwrap().contains(target) {
            std::thread::sleep(limit);
            return Err(format!("umount did not finish within {limit:?}; killed it"));
        }
        if self.table.lock().unwrap().remove(target) {
            Ok(())
        } else {
            Err(format!("umount: {}: not mounted.", target.display()))
        }
    }

    fn is_mounted(&self, target: &Path) -> bool {
        self.table.lock().unwrap().contains(target)
    }
}

struct Rig {
    root: tempfile::TempDir,
    recorder: Arc<Recorder>,
    config: Config,
}

impl Rig {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut config = Config::new(root.path().join("nfs"));
        config.mount_timeout = Duration::from_secs(2);
        config.unmount_timeout = Duration::from_secs(1);
        Self {
            root,
            recorder: Arc::default(),
            config,
        }
    }

    fn open(&self) -> Nfs {
        Nfs::open(self.config.clone(), self.recorder.clone()).expect("open root")
    }

    fn serve(&self) -> (Served, Nfs) {
        let driver = self.open();
        (Served::start(Plugin::new().volume(driver.clone())), driver)
    }
}

fn opts(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn err_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    result
        .expect_err("call should fail")
        .plugin_message()
        .expect("the plugin answered with Err")
        .to_owned()
}

async fn status(c: &Client, name: &str) -> serde_json::Map<String, serde_json::Value> {
    c.volume().get(name).await.unwrap().status.unwrap()
}

// ../shared/cases/volume-shared-mount.md
#[tokio::test]
async fn a_volume_used_twice_stays_mounted_until_its_last_user_leaves() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let c = s.client();
    c.volume()
        .create("v1", opts(&[("share", "srv:/export")]))
        .await
        .unwrap();

    let p1 = c.volume().mount("v1", "c1").await.unwrap();
    let p2 = c.volume().mount("v1", "cp1").await.unwrap();
    assert_eq!(p1, p2);
    assert_eq!(rig.recorder.mounts(), ["mount"]);
    assert_eq!(c.volume().path("v1").await.unwrap(), Some(p1.clone()));

    c.volume().unmount("v1", "cp1").await.unwrap();
    assert_eq!(rig.recorder.mounts(), ["mount"]);
    assert!(rig.recorder.mounted().contains(&p1));
    assert_eq!(status(&c, "v1").await["mounted"], true);

    c.volume().unmount("v1", "c1").await.unwrap();
    assert_eq!(rig.recorder.mounts(), ["mount", "umount"]);
    assert!(rig.recorder.mounted().is_empty());
    assert!(!p1.exists(), "the empty mount point is removed");
    assert_eq!(c.volume().path("v1").await.unwrap(), None);

    // An Unmount without an ID is harmless.
    let raw = c
        .call_raw("VolumeDriver.Unmount", &br#"{"Name":"v1"}"#[..])
        .await
        .unwrap();
    assert_eq!(raw.status, 200);
    c.volume().unmount("v1", "").await.unwrap();
    assert_eq!(c.activate().await.unwrap(), ["VolumeDriver"]);
}

// docker cp mounts again under the running container's own ID.
#[tokio::test]
async fn a_repeated_mount_id_is_counted_not_collapsed() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let c = s.client();
    c.volume()
        .create("v1", opts(&[("share", "srv:/export")]))
        .await
        .unwrap();
    c.volume().mount("v1", "c1").await.unwrap();
    c.volume().mount("v1", "c1").await.unwrap();
    c.volume().unmount("v1", "c1").await.unwrap();
    assert_eq!(
        rig.recorder.mounts(),
        ["mount"],
        "cp's unmount ends only its own use"
    );
    assert_eq!(status(&c, "v1").await["mounts"], 1);
    c.volume().unmount("v1", "c1").await.unwrap();
    assert_eq!(rig.recorder.mounts(), ["mount", "umount"]);
}

// ../shared/cases/volume-refcount-drift.md
#[tokio::test]
async fn a_failed_mount_records_no_user_and_counts_never_drift() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let c = s.client();
    let v = c.volume();
    v.create("v1", opts(&[("share", "good:/e")])).await.unwrap();
    v.create("v2", opts(&[("share", "bad:/e")])).await.unwrap();
    rig.recorder
        .server("bad:/e", Server::Refuses("access denied by server".into()));

    v.mount("v1", "a").await.unwrap();
    v.mount("v1", "b").await.unwrap();
    let err = err_of(v.mount("v2", "a").await);
    assert!(
        err.contains("bad:/e") && err.contains("access denied"),
        "{err}"
    );
    assert_eq!(status(&c, "v2").await["mounts"], 0);
    v.unmount("v2", "a").await.unwrap();

    v.unmount("v1", "a").await.unwrap();
    v.unmount("v1", "b").await.unwrap();
    let real: Vec<_> = rig.recorder.mounts();
    assert_eq!(real, ["mount", "mount", "umount"]);
    v.remove("v1").await.unwrap();
    v.remove("v1").await.unwrap();
}

// ../shared/cases/nfs-options.md
#[tokio::test]
async fn options_reach_mount_exactly_and_other_options_get_their_own_mount() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let v = s.client();
    let v = v.volume();
    v.create(
        "data",
        opts(&[
            ("share", "nfs.example:/export/a"),
            ("o", "nfsvers=3,port=2050,ro,soft"),
        ]),
    )
    .await
    .unwrap();
    v.create(
        "data2",
        opts(&[("share", "nfs.example:/export/a"), ("o", "nfsvers=4.2")]),
    )
    .await
    .unwrap();
    let p1 = v.mount("data", "a").await.unwrap();
    let p2 = v.mount("data2", "a").await.unwrap();
    assert_ne!(p1, p2);

    let calls = rig.recorder.calls();
    assert_eq!(
        calls[0],
        Call::Mount {
            share: "nfs.example:/export/a".into(),
            options: "nfsvers=3,port=2050,ro,soft".into(),
            target: p1,
        }
    );
    assert!(matches!(&calls[1], Call::Mount { options, .. } if options == "nfsvers=4.2"));

    for (key, bad) in [
        ("o", "ro;touch /tmp/p"),
        ("share", "h:/e -o exec"),
        ("share", "-oexec:/e"),
        ("subdir", "../../etc"),
    ] {
        let mut pairs = vec![(key, bad)];
        if key != "share" {
            pairs.push(("share", "h:/e"));
        }
        let err = err_of(v.create("evil", opts(&pairs)).await);
        assert!(err.contains(bad), "{key}={bad}: {err}");
    }
    assert_eq!(rig.recorder.calls().len(), 2);
}

// ../shared/cases/volume-null-opts.md
#[tokio::test]
async fn missing_options_use_the_defaults_or_say_what_is_required() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let c = s.client();
    for body in [
        &br#"{"Name":"v1","Opts":null}"#[..],
        br#"{"Name":"v2"}"#,
        br#"{"Name":"v3","Opts":{}}"#,
    ] {
        let raw = c.call_raw("VolumeDriver.Create", body).await.unwrap();
        assert_eq!(raw.status, 500);
        let json: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
        let err = json["Err"].as_str().unwrap_or_default();
        assert!(err.contains("option share=HOST:/PATH is required"), "{err}");
    }
    let err = err_of(c.volume().create("v4", opts(&[("bogus", "1")])).await);
    assert!(err.contains("\"bogus\"") && err.contains("o, path, server, share, subdir"));
    let err = err_of(c.volume().mount("v2", "a").await);
    assert!(err.contains("no such volume"), "{err}");
    assert_eq!(c.activate().await.unwrap(), ["VolumeDriver"]);
    drop(c);
    s.stop().await.unwrap();

    let mut rig = rig;
    rig.config.defaults = Defaults {
        share: Some("srv:/export".into()),
        o: Some("soft,timeo=50".into()),
        subdir: None,
    };
    let (s, _) = rig.serve();
    let c = s.client();
    c.volume().create("v1", None).await.unwrap();
    c.volume().mount("v1", "a").await.unwrap();
    assert!(matches!(&rig.recorder.calls()[0],
        Call::Mount { share, options, .. }
            if share == "srv:/export" && options == "soft,timeo=50"));
}

#[tokio::test]
async fn get_shows_share_options_and_mount_state_and_scope_is_global() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let c = s.client();
    c.volume()
        .create(
            "v",
            opts(&[("server", "srv"), ("path", "/e"), ("o", "soft")]),
        )
        .await
        .unwrap();
    let st = status(&c, "v").await;
    assert_eq!(
        (st["share"].as_str(), st["o"].as_str()),
        (Some("srv:/e"), Some("soft"))
    );
    assert_eq!((&st["mounted"], &st["mounts"]), (&false.into(), &0.into()));
    c.volume().mount("v", "a").await.unwrap();
    assert_eq!(status(&c, "v").await["mounted"], true);
    let listed = c.volume().list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].created_at.is_some());
    assert_eq!(
        c.volume().capabilities().await.unwrap().scope,
        Scope::Global
    );
    let err = err_of(c.volume().get("nope").await);
    assert!(err.contains("no such volume"), "{err}");
}

// Many volumes in one export: one mount, counted across the volumes.
#[tokio::test]
async fn subdirs_of_one_share_share_one_mount() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let v = s.client();
    let v = v.volume();
    for (name, sub) in [("a", "team/a"), ("b", "team/b")] {
        v.create(name, opts(&[("share", "srv:/e"), ("subdir", sub)]))
            .await
            .unwrap();
    }
    let pa = v.mount("a", "1").await.unwrap();
    let pb = v.mount("b", "2").await.unwrap();
    assert!(
        pa.ends_with("team/a") && pb.ends_with("team/b"),
        "{pa:?} {pb:?}"
    );
    assert!(
        pa.is_dir() && pb.is_dir(),
        "subdirs are created on first mount"
    );
    assert_eq!(rig.recorder.mounts(), ["mount"]);

    v.unmount("a", "1").await.unwrap();
    assert_eq!(rig.recorder.mounts(), ["mount"], "b still uses the mount");
    v.unmount("b", "2").await.unwrap();
    assert_eq!(rig.recorder.mounts(), ["mount", "umount"]);
}

// ../shared/cases/nfs-cleanup-deletes-data.md
#[tokio::test]
async fn nothing_but_empty_directories_is_ever_removed() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let v = s.client();
    let v = v.volume();
    v.create("inner", opts(&[("share", "srv:/export/a/b")]))
        .await
        .unwrap();
    v.create("outer", opts(&[("share", "srv:/export/a")]))
        .await
        .unwrap();
    let inner = v.mount("inner", "c1").await.unwrap();
    let outer = v.mount("outer", "c2").await.unwrap();
    // The fake "mounts" nothing, so these files stand for the server's.
    fs::write(inner.join("keep.txt"), "data").unwrap();
    fs::write(outer.join("keep.txt"), "data").unwrap();

    v.unmount("outer", "c2").await.unwrap();
    v.remove("outer").await.unwrap();
    assert!(outer.join("keep.txt").exists());

    rig.recorder.busy.lock().unwrap().insert(inner.clone());
    let err = err_of(v.unmount("inner", "c1").await);
    assert!(
        err.contains("busy") && err.contains("stays mounted"),
        "{err}"
    );
    assert!(inner.join("keep.txt").exists());
    assert!(rig.recorder.mounted().contains(&inner));
    assert!(!rig.recorder.mounts().contains(&"umount -l"));

    // The use ended all the same; the next Mount adopts the mount.
    assert_eq!(status(&s.client(), "inner").await["mounts"], 0);
    v.mount("inner", "c3").await.unwrap();
    assert_eq!(
        rig.recorder
            .mounts()
            .iter()
            .filter(|m| **m == "mount")
            .count(),
        2
    );
}

// ../shared/cases/nfs-unreachable.md
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_gets_a_bounded_err_and_delays_no_other_volume() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let c = s.client();
    c.volume()
        .create("dead", opts(&[("share", "silent:/e")]))
        .await
        .unwrap();
    c.volume()
        .create("ok", opts(&[("share", "srv:/e")]))
        .await
        .unwrap();
    rig.recorder.server("silent:/e", Server::Silent);

    let started = Instant::now();
    let c2 = s.client();
    let hung = tokio::spawn(async move { c2.volume().mount("dead", "a").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quick = Instant::now();
    c.activate().await.unwrap();
    c.volume().list().await.unwrap();
    c.volume().get("dead").await.unwrap();
    c.volume().mount("ok", "b").await.unwrap();
    assert!(
        quick.elapsed() < Duration::from_secs(1),
        "{:?}",
        quick.elapsed()
    );

    let err = err_of(hung.await.unwrap());
    assert!(
        err.contains("silent:/e") && err.contains("did not finish"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status(&c, "dead").await["mounts"], 0);
}

// Two containers starting at once on a silent server: the second waits
// for the first, yet both answer inside one mount budget plus a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_queued_behind_a_silent_server_share_one_budget() {
    let mut rig = Rig::new();
    rig.config.mount_timeout = Duration::from_secs(8);
    let (s, _) = rig.serve();
    let c = s.client();
    c.volume()
        .create("v", opts(&[("share", "silent:/e")]))
        .await
        .unwrap();
    rig.recorder.server("silent:/e", Server::Silent);

    let started = Instant::now();
    let calls = ["a", "b"].map(|id| {
        let c = s.client();
        tokio::spawn(async move { c.volume().mount("v", id).await })
    });
    for call in calls {
        let err = err_of(call.await.unwrap());
        assert!(
            err.contains("did not finish") || err.contains("try again"),
            "{err}"
        );
    }
    // 8 s budget, then at most the 5 s a queued mount always gets.
    let took = started.elapsed();
    assert!(took < Duration::from_millis(14_500), "{took:?}");
    assert_eq!(status(&c, "v").await["mounts"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_stuck_in_the_kernel_still_answers_and_records_nothing() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let c = s.client();
    c.volume()
        .create("v", opts(&[("share", "stuck:/e")]))
        .await
        .unwrap();
    rig.recorder
        .server("stuck:/e", Server::Stuck(Duration::from_secs(14)));
    let started = Instant::now();
    let err = err_of(c.volume().mount("v", "a").await);
    // The limit (2 s) plus the grace period (10 s).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("gave up"), "{err}");
    assert_eq!(status(&c, "v").await["mounts"], 0);
}

#[tokio::test]
async fn a_helper_that_claims_success_without_mounting_is_caught() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let c = s.client();
    c.volume()
        .create("v", opts(&[("share", "liar:/e")]))
        .await
        .unwrap();
    rig.recorder.server("liar:/e", Server::Lies);
    let err = err_of(c.volume().mount("v", "a").await);
    assert!(err.contains("nothing is mounted"), "{err}");
    assert_eq!(status(&c, "v").await["mounts"], 0);
}

#[tokio::test]
async fn unmount_from_a_dead_server_falls_back_to_a_lazy_unmount() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let v = s.client();
    let v = v.volume();
    v.create("v", opts(&[("share", "srv:/e")])).await.unwrap();
    let path = v.mount("v", "a").await.unwrap();
    rig.recorder.dead.lock().unwrap().insert(path.clone());

    let started = Instant::now();
    v.unmount("v", "a").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(rig.recorder.mounts(), ["mount", "umount", "umount -l"]);
    assert!(rig.recorder.mounted().is_empty());
}

// ../shared/cases/volume-state-after-restart.md
#[tokio::test]
async fn a_restart_keeps_volumes_and_reconciles_mounts_with_the_kernel() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let c = s.client();
    c.volume()
        .create("v1", opts(&[("share", "srv:/e"), ("o", "soft")]))
        .await
        .unwrap();
    c.volume()
        .create("v2", opts(&[("share", "other:/e")]))
        .await
        .unwrap();
    let p1 = c.volume().mount("v1", "a").await.unwrap();
    let p2 = c.volume().mount("v2", "b").await.unwrap();
    drop(c);
    s.stop().await.unwrap();

    // Still mounted: adopted without a second mount. v2's mount vanished
    // behind the plugin's back: mounted again, since its user remains.
    rig.recorder.table.lock().unwrap().remove(&p2);
    let before = rig.recorder.calls().len();
    let (s, driver) = rig.serve();
    assert!(driver.reconcile().await.is_empty());
    let calls = &rig.recorder.calls()[before..];
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(matches!(&calls[0], Call::Mount { target, .. } if *target == p2));

    let c = s.client();
    let st = status(&c, "v1").await;
    assert_eq!(
        (st["share"].as_str(), st["o"].as_str()),
        (Some("srv:/e"), Some("soft"))
    );
    assert_eq!(c.volume().mount("v1", "c").await.unwrap(), p1);
    c.volume().unmount("v1", "a").await.unwrap();
    c.volume().unmount("v1", "c").await.unwrap();
    assert!(!rig.recorder.mounted().contains(&p1));
    drop((c, driver));
    s.stop().await.unwrap();

    // A mount left behind with no user is unmounted at the next start.
    rig.recorder.table.lock().unwrap().insert(p1.clone());
    fs::create_dir_all(&p1).unwrap();
    let (s, driver) = rig.serve();
    assert!(driver.reconcile().await.is_empty());
    assert!(!rig.recorder.mounted().contains(&p1));
    assert!(rig.recorder.mounted().contains(&p2));
    drop(driver);
    s.stop().await.unwrap();

    let table = rig.config.root.join("state.json");
    fs::write(&table, b"").unwrap();
    let err = Nfs::open(rig.config.clone(), rig.recorder.clone())
        .err()
        .expect("a truncated table is refused");
    assert!(err.contains("corrupt"), "{err}");
}

#[tokio::test]
async fn a_volume_in_use_cannot_be_removed() {
    let rig = Rig::new();
    let (s, _) = rig.serve();
    let v = s.client();
    let v = v.volume();
    v.create("v", opts(&[("share", "srv:/e")])).await.unwrap();
    v.mount("v", "a").await.unwrap();
    let err = err_of(v.remove("v").await);
    assert!(err.contains("still mounted"), "{err}");
    v.unmount("v", "a").await.unwrap();
    v.remove("v").await.unwrap();
    assert!(v.list().await.unwrap().is_empty());
    let err = err_of(
        v.create("x", opts(&[("share", "srv:/e")]))
            .await
            .and(v.create("x", opts(&[("share", "srv:/f")])).await),
    );
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn two_plugins_never_share_a_root_and_bad_limits_are_refused() {
    let rig = Rig::new();
    let _first = rig.open();
    let err = Nfs::open(rig.config.clone(), rig.recorder.clone())
        .err()
        .unwrap();
    assert!(err.contains("in use"), "{err}");

    let mut config = Config::new(rig.root.path().join("other"));
    config.mount_timeout = Duration::from_secs(115);
    assert!(Nfs::open(config, rig.recorder.clone()).is_err());
}

/// The production mounter, with stand-ins for `mount`: one that exits 0
/// and mounts nothing, one that never returns.
#[tokio::test]
async fn the_system_mounter_catches_lying_and_hanging_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hang");
    fs::write(&hang, "#!/bin/sh\nexec sleep 60\n").unwrap();
    fs::set_permissions(&hang, PermissionsExt::from_mode(0o755)).unwrap();

    for (program, expected) in [
        ("true", "nothing is mounted"),
        (hang.to_str().unwrap(), "did not finish"),
    ] {
        let root = dir.path().join(format!("root-{}", expected.len()));
        let mut config = Config::new(&root);
        config.mount_timeout = Duration::from_secs(1);
        let mounter = SystemMounter::with_programs(program, "true");
        let driver = Nfs::open(config, Arc::new(mounter)).unwrap();
        let s = Served::start(Plugin::new().volume(driver));
        let v = s.client();
        v.volume()
            .create("v", opts(&[("share", "127.0.0.1:/e")]))
            .await
            .unwrap();
        let started = Instant::now();
        let err = err_of(v.volume().mount("v", "a").await);
        assert!(err.contains(expected), "{program}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            fs::read_dir(root.join("mounts")).unwrap().count(),
            0,
            "mount point left"
        );
    }
}
