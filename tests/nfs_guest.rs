//! The nfs example against a real NFS server: a qemu guest booted from
//! Debian's kernel runs a kernel NFS server on its own loopback, the plugin
//! with its production mounter (util-linux `mount`, `mount.nfs`), and
//! `nfs-guest-check`, which drives the plugin like the daemon and reports
//! each step on the serial console. No network device: nothing leaves the
//! guest.
//!
//! Needs qemu-system-x86_64, a Debian kernel under /boot with its modules,
//! static busybox, cpio and `apt-get download` for the NFS userland (cached
//! under ~/.cache/docker-plugin-sdk). Without them the test says SKIPPED,
//! unless DOCKER_PLUGIN_SDK_REQUIRE_NFS=1 or DOCKER_PLUGIN_SDK_REQUIRE_DAEMON=1
//! makes it fail, as in CI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The steps nfs-guest-check must report as passed.
const STEPS: [&str; 9] = [
    "create",
    "two-ids-one-mount",
    "write-one-read-other",
    "unmount-one-still-mounted",
    "unmount-both-gone",
    "restart-adopts-mount",
    "restart-remounts",
    "busy-unmount",
    "server-stopped",
];

fn required() -> bool {
    [
        "DOCKER_PLUGIN_SDK_REQUIRE_NFS",
        "DOCKER_PLUGIN_SDK_REQUIRE_DAEMON",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| v == "1"))
}

/// What the guest needs from this host; `Err` names what is missing.
fn prerequisites() -> Result<(), String> {
    let mut missing = Vec::new();
    for program in [
        "qemu-system-x86_64",
        "cpio",
        "gzip",
        "apt-get",
        "dpkg",
        "ldd",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(program.to_owned());
        }
    }
    let kernel = std::fs::read_dir("/boot").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
    });
    if !kernel || !Path::new("/lib/modules").is_dir() {
        missing.push("a kernel in /boot with /lib/modules (linux-image-amd64)".into());
    }
    if !Path::new("/bin/busybox").is_file() {
        missing.push("/bin/busybox (busybox-static)".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    }
}

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo test`",
        bin.display()
    );
    bin
}

#[test]
fn real_nfs_mounts_in_a_guest() {
    if let Err(missing) = prerequisites() {
        if required() {
            panic!("the NFS guest test is required here but cannot run: missing {missing}");
        }
        eprintln!(
            "\n*** SKIPPED real_nfs_mounts_in_a_guest: missing {missing}. Install \
             qemu-system-x86 and linux-image-amd64 (see .ci/run) to run it. ***\n"
        );
        return;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME")
        .join("docker-plugin-sdk");
    std::fs::create_dir_all(&cache).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nfs-guest-run");
    let started = Instant::now();
    // The script bounds qemu (300 s by default) and cleans up after itself.
    let out = Command::new(script)
        .arg(&cache)
        .arg(example("nfs"))
        .arg(example("nfs-guest-check"))
        .output()
        .expect("run scripts/nfs-guest-run");
    let console = String::from_utf8_lossy(&out.stdout);
    let report: Vec<&str> = console
        .lines()
        .filter_map(|l| l.find("NFS").map(|i| &l[i..]))
        .filter(|l| l.starts_with("NFSCHECK") || l.starts_with("NFSGUEST"))
        .collect();
    eprintln!("guest run took {:?}:", started.elapsed());
    for line in &report {
        eprintln!("  {line}");
    }

    let context = || {
        format!(
            "console:\n{console}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    for step in STEPS {
        let prefix = format!("NFSCHECK ok {step} ");
        assert!(
            report.iter().any(|l| l.starts_with(&prefix)),
            "step {step} did not pass; {}",
            context()
        );
    }
    assert!(
        report.contains(&"NFSCHECK done failures=0"),
        "the check did not finish cleanly; {}",
        context()
    );
}
