//! End to end: the authz-policy example guarding a real Docker daemon
//! started with `--authorization-plugin`.
//!
//! The plugin must be listening before such a daemon starts, so this test
//! starts its own private daemon (own data root, exec root and API socket,
//! under a temporary directory) with `scripts/private-dockerd`, using the
//! dockerd binary in `DOCKER_PLUGIN_SDK_DOCKERD` (default `dockerd`). Like
//! the other real-daemon tests it runs only where
//! `DOCKER_PLUGIN_SDK_DOCKER_HOST` says a daemon environment exists, is
//! skipped loudly otherwise, and fails instead when
//! `DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1`.
//!
//! The daemon is stopped (by the PID it recorded) and the plugin socket
//! removed when the test ends, pass or fail.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::docker::{docker, import_busybox};

const IMAGE: &str = "sdk-authz-busybox:latest";

fn loud(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** {msg} ***\n");
}

/// Whether this run has a daemon environment; see the module docs.
fn daemon_environment() -> bool {
    let required = std::env::var("DOCKER_PLUGIN_SDK_REQUIRE_DAEMON").as_deref() == Ok("1");
    if std::env::var_os("DOCKER_PLUGIN_SDK_DOCKER_HOST").is_some() {
        return true;
    }
    assert!(
        !required,
        "DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1 but DOCKER_PLUGIN_SDK_DOCKER_HOST is not set"
    );
    loud(
        "SKIPPED: the authz real-daemon test needs a daemon environment \
         (DOCKER_PLUGIN_SDK_DOCKER_HOST; .ci/run sets it)",
    );
    false
}

fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        bin.display()
    );
    bin
}

/// The authz-policy process; killed by PID and its socket removed on drop.
struct PolicyPlugin {
    child: Option<Child>,
    socket: PathBuf,
    rules: PathBuf,
    log: PathBuf,
}

impl PolicyPlugin {
    fn start(name: &str, rules: &Path, log: &Path) -> Self {
        let mut plugin = Self {
            child: None,
            socket: Path::new("/run/docker/plugins").join(format!("{name}.sock")),
            rules: rules.to_owned(),
            log: log.to_owned(),
        };
        plugin.restart();
        plugin
    }

    fn restart(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("plugin log");
        let child = Command::new(example_binary("authz-policy"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--rules")
            .arg(&self.rules)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start authz-policy");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < deadline, "authz-policy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// SIGTERM, then waits for the exit (which removes the socket).
    fn stop(&mut self) {
        self.signal("-TERM");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "authz-policy did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PolicyPlugin {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_file(&self.socket);
    }
}

/// A private dockerd; stopped by its recorded PID on drop.
struct PrivateDaemon {
    dir: PathBuf,
    host: String,
}

impl PrivateDaemon {
    fn start(dir: &Path, plugin: &str) -> Self {
        let dockerd =
            std::env::var("DOCKER_PLUGIN_SDK_DOCKERD").unwrap_or_else(|_| "dockerd".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/private-dockerd");
        // Constructed first so that a failed start is still stopped.
        let daemon = Self {
            dir: dir.to_owned(),
            host: format!("unix://{}/docker.sock", dir.display()),
        };
        let out = Command::new(script)
            .arg("start")
            .arg(dir)
            .arg(&dockerd)
            .arg(format!("--authorization-plugin={plugin}"))
            .output()
            .expect("run scripts/private-dockerd");
        assert!(
            out.status.success(),
            "private dockerd ({dockerd}) did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        daemon
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/private-dockerd");
        let _ = Command::new(script).arg("stop").arg(&self.dir).status();
    }
}

struct Cli<'a> {
    cli: String,
    daemon: &'a PrivateDaemon,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        docker(&self.cli, &self.daemon.host, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs docker expecting a denial; returns what the user sees.
    fn denied(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "docker {args:?} should have been denied: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn rules(allowed: &Path, extra: &str) -> String {
    format!(
        r#"
default = "allow"

[containers]
deny_privileged = true
deny_cap_add = true
bind_prefixes = [{allowed:?}]
deny_images = ["denied/*"]

{extra}

[[rule]]
name = "no-exec"
action = "deny"
methods = ["POST"]
paths = ["/containers/*/exec"]
message = "exec is disabled on this host"
"#
    )
}

#[test]
fn the_policy_plugin_guards_a_real_daemon() {
    if !daemon_environment() {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("sdk-authz-")
        .tempdir_in("/tmp")
        .expect("work dir");
    let allowed = work.path().join("allowed");
    fs::create_dir_all(allowed.join("data")).expect("allowed dir");
    let rules_file = work.path().join("rules.toml");
    fs::write(&rules_file, rules(&allowed, "")).expect("rules");

    // The plugin first: the daemon refuses every call while it is missing.
    let name = format!("sdk-authz-{}", std::process::id());
    let mut plugin = PolicyPlugin::start(&name, &rules_file, &work.path().join("plugin.log"));
    let daemon = PrivateDaemon::start(&work.path().join("d"), &name);
    let d = Cli {
        cli: std::env::var("DOCKER_PLUGIN_SDK_DOCKER_CLI").unwrap_or_else(|_| "docker".into()),
        daemon: &daemon,
    };
    loud(&format!(
        "authz real-daemon test against dockerd {}",
        d.ok(&["version", "--format", "{{.Server.Version}}"])
    ));
    import_busybox(&d.cli, &daemon.host, IMAGE);
    let denied_by = format!("authorization denied by plugin {name}: ");

    // Allowed calls go through.
    assert_eq!(d.ok(&["run", "--rm", IMAGE, "echo", "hi"]), "hi");
    let bind = format!("{}:/data", allowed.join("data").display());
    d.ok(&["run", "--rm", "-v", &bind, IMAGE, "touch", "/data/made"]);
    assert!(allowed.join("data/made").is_file());

    // Denied ones fail, and the user sees which rule said no.
    let err = d.denied(&["run", "--rm", "--privileged", IMAGE, "true"]);
    assert!(
        err.contains(&format!(
            "{denied_by}rule \"containers.deny_privileged\": privileged containers are not allowed"
        )),
        "{err}"
    );
    let err = d.denied(&["run", "--rm", "--cap-add", "SYS_ADMIN", IMAGE, "true"]);
    assert!(
        err.contains(&format!(
            "{denied_by}rule \"containers.deny_cap_add\": adding capability \"SYS_ADMIN\""
        )),
        "{err}"
    );
    let escape = format!("{}/../..:/host", allowed.display());
    let err = d.denied(&["run", "--rm", "-v", &escape, IMAGE, "true"]);
    assert!(
        err.contains(&format!("{denied_by}rule \"containers.bind_prefixes\"")),
        "{err}"
    );
    let err = d.denied(&["run", "--rm", "denied/tool", "true"]);
    assert!(
        err.contains(&format!("{denied_by}rule \"containers.deny_images\"")),
        "{err}"
    );

    let long = format!("{name}-long");
    d.ok(&["run", "-d", "--name", &long, IMAGE, "sleep", "120"]);
    let err = d.denied(&["exec", &long, "true"]);
    assert!(
        err.contains(&format!(
            "{denied_by}rule \"no-exec\": exec is disabled on this host"
        )),
        "{err}"
    );
    d.ok(&["rm", "-f", &long]);

    let log = plugin.log_text();
    assert!(log.contains("containers.deny_privileged"), "{log}");
    assert!(log.contains("denied"), "{log}");

    // SIGHUP reloads the rules; nothing restarts.
    let no_volumes = r#"
[[rule]]
name = "no-volume-list"
action = "deny"
methods = ["GET"]
paths = ["/volumes"]
message = "listing volumes is off"
"#;
    fs::write(&rules_file, rules(&allowed, no_volumes)).expect("rules");
    plugin.signal("-HUP");
    let err = wait_for_denial(&d, &["volume", "ls"]);
    assert!(
        err.contains(&format!(
            "{denied_by}rule \"no-volume-list\": listing volumes is off"
        )),
        "{err}"
    );

    // A broken file keeps the rules in force, and the log says why.
    fs::write(&rules_file, "default = \"sometimes\"\n").expect("rules");
    plugin.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !plugin.log_text().contains("keeping the previous rules") {
        assert!(Instant::now() < deadline, "{}", plugin.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    d.denied(&["volume", "ls"]);
    d.ok(&["ps"]);

    // With the plugin gone the daemon denies everything; back, it allows.
    plugin.stop();
    let out = d.run(&["ps"]);
    assert!(
        !out.status.success(),
        "the daemon allowed a call without its plugin"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&name), "{err}");
    fs::write(&rules_file, rules(&allowed, "")).expect("rules");
    plugin.restart();
    d.ok(&["ps"]);
}

/// The reload is asynchronous to the signal: retry briefly.
fn wait_for_denial(d: &Cli<'_>, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = d.run(args);
        if !out.status.success() {
            return String::from_utf8_lossy(&out.stderr).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "docker {args:?} was never denied"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
