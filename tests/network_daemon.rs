//! End to end: the bridge-net plugin giving real containers networking
//! through a real Docker daemon.
//!
//! Like `tests/daemon.rs`, these need a daemon this run may use freely,
//! given by `DOCKER_PLUGIN_SDK_DOCKER_HOST`; without one they are skipped
//! with a message, unless `DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1` (CI) turns
//! that into a failure. They also need root, to make bridges and veths.
//!
//! Every test has its own plugin name, network names and `--pool-range`,
//! and removes its containers, networks and socket when it ends, pass or
//! fail. Traffic stays on the test's own bridge: containers ping each other.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::bridge_net::{BridgeNet, link_exists, may_make_links};
use common::docker::{docker, import_busybox_with};

/// The image the containers run: the static busybox with the applets these
/// tests use. No registry is reachable, so it is imported from this machine.
const IMAGE: &str = "sdk-test-busybox-net:latest";
const APPLETS: [&str; 6] = ["sh", "sleep", "ping", "ip", "cat", "true"];

fn daemon() -> Option<&'static Daemon> {
    static DAEMON: OnceLock<Option<Daemon>> = OnceLock::new();
    DAEMON.get_or_init(Daemon::from_env).as_ref()
}

macro_rules! require_daemon {
    () => {
        match daemon() {
            Some(d) => d,
            None => return,
        }
    };
}

/// Writes past the harness's output capture, so that a skip is seen.
fn loud(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** {msg} ***\n");
}

struct Daemon {
    host: String,
    cli: String,
}

impl Daemon {
    fn from_env() -> Option<Self> {
        let required = std::env::var("DOCKER_PLUGIN_SDK_REQUIRE_DAEMON").as_deref() == Ok("1");
        let Ok(host) = std::env::var("DOCKER_PLUGIN_SDK_DOCKER_HOST") else {
            assert!(!required, "DOCKER_PLUGIN_SDK_DOCKER_HOST is not set");
            loud("SKIPPED: the network real-daemon tests need DOCKER_PLUGIN_SDK_DOCKER_HOST");
            return None;
        };
        if !may_make_links() {
            assert!(!required, "the network real-daemon tests need root");
            loud("SKIPPED: the network real-daemon tests need root to make links");
            return None;
        }
        let daemon = Self {
            host,
            cli: std::env::var("DOCKER_PLUGIN_SDK_DOCKER_CLI").unwrap_or_else(|_| "docker".into()),
        };
        let version = daemon.docker(&["version", "--format", "{{.Server.Version}}"]);
        if !version.status.success() {
            let msg = format!("daemon at {} is not reachable", daemon.host);
            assert!(!required, "{msg}");
            loud(&format!("SKIPPED: {msg}"));
            return None;
        }
        loud(&format!(
            "network real-daemon tests against dockerd {}",
            String::from_utf8_lossy(&version.stdout).trim()
        ));
        daemon.ensure_image();
        Some(daemon)
    }

    fn docker(&self, args: &[&str]) -> Output {
        docker(&self.cli, &self.host, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(!out.status.success(), "docker {args:?} should have failed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn ensure_image(&self) {
        import_busybox_with(&self.cli, &self.host, IMAGE, &APPLETS);
    }

    /// The IPv4 address of `container` on `network`.
    fn ip_of(&self, container: &str, network: &str) -> String {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        self.ok(&["inspect", "--format", &format, container])
    }

    /// The endpoint ID of `container` on `network`.
    fn endpoint_of(&self, container: &str, network: &str) -> String {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").EndpointID}}}}");
        self.ok(&["inspect", "--format", &format, container])
    }

    /// Whether `from` can ping `to` on the test's own bridge.
    fn pings(&self, from: &str, to: &str) -> bool {
        let out = self.docker(&["exec", from, "ping", "-c", "2", "-W", "5", to]);
        out.status.success()
    }
}

/// A bridge-net plugin under a unique name, with the containers and
/// networks a test made; all removed when dropped, pass or fail.
struct Fixture {
    name: String,
    state: tempfile::TempDir,
    plugin: Option<BridgeNet>,
    pool_range: String,
    containers: Vec<String>,
    networks: Vec<String>,
    /// Links the test expects to be gone by the end.
    links: Vec<String>,
}

impl Fixture {
    fn start(pool_range: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mut fixture = Self {
            name: format!("sdk-net-{}-{n}", std::process::id()),
            state: tempfile::tempdir().expect("state dir"),
            plugin: None,
            pool_range: pool_range.to_owned(),
            containers: Vec::new(),
            networks: Vec::new(),
            links: Vec::new(),
        };
        fixture.restart();
        fixture
    }

    fn socket(&self) -> PathBuf {
        Path::new("/run/docker/plugins").join(format!("{}.sock", self.name))
    }

    fn restart(&mut self) {
        let args = ["--pool-range", self.pool_range.as_str()];
        self.plugin = Some(BridgeNet::start(&self.socket(), self.state.path(), &args));
    }

    fn kill_9(&mut self) {
        self.plugin.as_mut().expect("running").kill_9();
    }

    fn resume(&mut self) {
        self.plugin.as_mut().expect("a killed plugin").restart();
    }

    /// Creates network `suffix` with extra `args`; returns its full name.
    fn network(&mut self, d: &Daemon, suffix: &str, args: &[&str]) -> String {
        let name = format!("{}-{suffix}", self.name);
        let mut all = vec![
            "network",
            "create",
            "-d",
            &self.name,
            "--ipam-driver",
            &self.name,
        ];
        all.extend_from_slice(args);
        all.push(&name);
        self.networks.push(name.clone());
        let id = d.ok(&all);
        self.links.push(format!("bn-{}", &id[..12]));
        name
    }

    /// Starts a long-running container on `network`; returns its name.
    fn container(&mut self, d: &Daemon, suffix: &str, network: &str, args: &[&str]) -> String {
        let name = format!("{}-{suffix}", self.name);
        self.containers.push(name.clone());
        let mut all = vec!["run", "-d", "--name", &name, "--network", network];
        all.extend_from_slice(args);
        all.extend_from_slice(&[IMAGE, "sleep", "300"]);
        d.ok(&all);
        self.note_endpoint(d, &name, network);
        name
    }

    fn note_endpoint(&mut self, d: &Daemon, container: &str, network: &str) {
        let endpoint = d.endpoint_of(container, network);
        self.links.push(format!("bv-{}", &endpoint[..12]));
        self.links.push(format!("bc-{}", &endpoint[..12]));
    }

    fn state_json(&self) -> serde_json::Value {
        let text = fs::read_to_string(self.state.path().join("state.json")).expect("state");
        serde_json::from_str(&text).expect("state is JSON")
    }

    /// Removes containers and networks through the daemon, then checks
    /// that no link and no allocation is left.
    fn finish(&mut self, d: &Daemon) {
        for c in self.containers.drain(..) {
            d.ok(&["rm", "-f", &c]);
        }
        for n in self.networks.drain(..) {
            d.ok(&["network", "rm", &n]);
        }
        let left: Vec<_> = self.links.iter().filter(|l| link_exists(l)).collect();
        assert!(left.is_empty(), "links left behind: {left:?}");
        let state = self.state_json();
        assert_eq!(state["pools"], serde_json::json!({}), "{state}");
        assert_eq!(state["networks"], serde_json::json!({}), "{state}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Only after a failure is anything left: clean up without asserting.
        if let Some(d) = daemon() {
            for c in &self.containers {
                let _ = d.docker(&["rm", "-f", c]);
            }
            for n in &self.networks {
                let _ = d.docker(&["network", "rm", n]);
            }
        }
        self.plugin.take();
        for link in &self.links {
            if link_exists(link) {
                let _ = Command::new("ip").args(["link", "del", link]).status();
            }
        }
    }
}

#[test]
fn two_containers_on_a_chosen_pool_ping_each_other_and_reconnect() {
    let d = require_daemon!();
    let mut f = Fixture::start("10.199.16.0/20");
    let net = f.network(d, "lan", &["-o", "mtu=1400"]);

    let ipam = d.ok(&[
        "network",
        "inspect",
        "--format",
        "{{json .IPAM.Config}}",
        &net,
    ]);
    assert_eq!(
        ipam,
        r#"[{"Subnet":"10.199.16.0/24","Gateway":"10.199.16.1"}]"#
    );
    assert!(link_exists(&f.links[0]), "bridge {} made", f.links[0]);

    let a = f.container(d, "a", &net, &[]);
    let b = f.container(d, "b", &net, &[]);
    let ip_b = d.ip_of(&b, &net);
    assert!(ip_b.starts_with("10.199.16."), "{ip_b}");
    assert!(d.pings(&a, &ip_b), "{a} reaches {ip_b}");
    let eth0 = d.ok(&["exec", &a, "ip", "link", "show", "eth0"]);
    assert!(eth0.contains("mtu 1400"), "{eth0}");

    let old_veth = format!("bv-{}", &d.endpoint_of(&b, &net)[..12]);
    d.ok(&["network", "disconnect", &net, &b]);
    assert!(!link_exists(&old_veth), "disconnect removes {old_veth}");
    d.ok(&["network", "connect", &net, &b]);
    f.note_endpoint(d, &b, &net);
    let ip_b = d.ip_of(&b, &net);
    assert!(d.pings(&a, &ip_b), "{a} reaches {ip_b} after reconnecting");

    f.finish(d);
}

#[test]
fn a_user_subnet_gateway_and_ip_are_honoured() {
    let d = require_daemon!();
    let mut f = Fixture::start("10.199.32.0/20");
    let net = f.network(
        d,
        "fixed",
        &["--subnet", "10.199.47.0/24", "--gateway", "10.199.47.254"],
    );
    let ipam = d.ok(&[
        "network",
        "inspect",
        "--format",
        "{{json .IPAM.Config}}",
        &net,
    ]);
    assert_eq!(
        ipam,
        r#"[{"Subnet":"10.199.47.0/24","Gateway":"10.199.47.254"}]"#
    );

    let a = f.container(d, "a", &net, &["--ip", "10.199.47.9"]);
    let b = f.container(d, "b", &net, &[]);
    let addr = d.ok(&["exec", &a, "ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains("10.199.47.9/24"), "{addr}");
    let route = d.ok(&["exec", &b, "ip", "route"]);
    assert!(route.contains("default via 10.199.47.254"), "{route}");
    assert!(d.pings(&b, "10.199.47.9"));

    // The same subnet again is refused while it is held.
    let name = format!("{}-again", f.name);
    let err = d.fails(&[
        "network",
        "create",
        "-d",
        &f.name,
        "--ipam-driver",
        &f.name,
        "--subnet",
        "10.199.47.0/24",
        &name,
    ]);
    assert!(err.contains("overlaps 10.199.47.0/24"), "{err}");

    f.finish(d);
}

#[test]
fn kill_9_and_restart_keep_containers_connected_and_networks_known() {
    let d = require_daemon!();
    let mut f = Fixture::start("10.199.48.0/20");
    let net = f.network(d, "lan", &[]);
    let a = f.container(d, "a", &net, &[]);
    let b = f.container(d, "b", &net, &[]);
    let ip_b = d.ip_of(&b, &net);

    f.kill_9();
    assert!(
        d.pings(&a, &ip_b),
        "traffic does not need the plugin process"
    );
    f.resume();
    assert!(d.pings(&a, &ip_b), "nor is it broken by a restart");

    // The restarted plugin still knows the network and its endpoints.
    d.ok(&["network", "disconnect", &net, &a]);
    d.ok(&["network", "connect", &net, &a]);
    f.note_endpoint(d, &a, &net);
    let c = f.container(d, "c", &net, &[]);
    let ip_a = d.ip_of(&a, &net);
    assert!(d.pings(&c, &ip_a) && d.pings(&c, &ip_b));
    assert_ne!(
        d.ip_of(&c, &net),
        ip_b,
        "addresses are not handed out twice"
    );

    f.finish(d);
}

#[test]
fn an_unknown_option_is_refused_and_leaves_nothing_behind() {
    let d = require_daemon!();
    let mut f = Fixture::start("10.199.80.0/20");
    let name = format!("{}-bad", f.name);
    let err = d.fails(&[
        "network",
        "create",
        "-d",
        &f.name,
        "--ipam-driver",
        &f.name,
        "-o",
        "colour=red",
        &name,
    ]);
    assert!(
        err.contains("unknown option \"colour\"; valid options are: host-access, mtu"),
        "{err}"
    );
    // finish() shows that the pool asked for before the refusal is free.
    f.finish(d);
}
