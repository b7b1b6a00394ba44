//! The one seam between the driver and the kernel: mounting, unmounting
//! and reading the mount table. [`SystemMounter`] runs the system's
//! `mount` and `umount`; tests put a recording implementation here.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Mounts and unmounts NFS shares. Calls may block; the driver runs them on
/// the blocking pool and bounds each with a deadline.
pub(crate) trait Mounter: Send + Sync + 'static {
    /// Mounts `share` on `target` with `options` (possibly empty). Returning
    /// `Ok` is not trusted: the driver checks the mount table afterwards.
    fn mount(
        &self,
        share: &str,
        options: &str,
        target: &Path,
        limit: Duration,
    ) -> Result<(), String>;

    /// Unmounts `target`; `lazy` detaches it even while busy or while its
    /// server does not answer.
    fn unmount(&self, target: &Path, lazy: bool, limit: Duration) -> Result<(), String>;

    /// Whether something is mounted exactly on `target`.
    fn is_mounted(&self, target: &Path) -> bool;
}

/// The production mounter: `mount -t nfs -o OPTIONS SHARE TARGET` with
/// every value one argument (no shell), killed when it overruns its limit.
pub(crate) struct SystemMounter {
    mount: PathBuf,
    umount: PathBuf,
    mountinfo: PathBuf,
}

impl SystemMounter {
    /// Runs `mount` and `umount` as found in `PATH`, or stand-ins taking
    /// the same arguments (tests use misbehaving helpers).
    pub(crate) fn with_programs(mount: impl Into<PathBuf>, umount: impl Into<PathBuf>) -> Self {
        Self {
            mount: mount.into(),
            umount: umount.into(),
            mountinfo: "/proc/self/mountinfo".into(),
        }
    }
}

impl Mounter for SystemMounter {
    fn mount(
        &self,
        share: &str,
        options: &str,
        target: &Path,
        limit: Duration,
    ) -> Result<(), String> {
        let mut cmd = Command::new(&self.mount);
        cmd.args(["-t", "nfs"]);
        if !options.is_empty() {
            cmd.arg("-o").arg(options);
        }
        cmd.arg(share).arg(target);
        run_bounded(cmd, limit)
    }

    fn unmount(&self, target: &Path, lazy: bool, limit: Duration) -> Result<(), String> {
        let mut cmd = Command::new(&self.umount);
        if lazy {
            cmd.arg("-l");
        }
        cmd.arg(target);
        run_bounded(cmd, limit)
    }

    fn is_mounted(&self, target: &Path) -> bool {
        fs::read_to_string(&self.mountinfo)
            .map(|table| mount_points(&table).any(|p| p == target))
            .unwrap_or(false)
    }
}

/// Runs `cmd` to completion or kills it (by its PID) after `limit`; `Err`
/// carries what the program printed on stderr.
fn run_bounded(mut cmd: Command, limit: Duration) -> Result<(), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .spawn()
        .map_err(|err| format!("starting {program}: {err}"))?;

    // Read stderr on the side: a chatty helper must not block on a full pipe.
    let mut stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stderr.as_mut() {
            let _ = pipe.take(4096).read_to_string(&mut text);
        }
        let _ = tx.send(text);
    });

    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {limit:?}; killed it"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => return Err(format!("waiting for {program}: {err}")),
        }
    };
    let text = rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        let text = text.trim();
        Err(if text.is_empty() {
            format!("{program} failed ({status})")
        } else {
            format!("{program} failed ({status}): {text}")
        })
    }
}

/// The mount points listed in a `/proc/*/mountinfo` text, unescaped.
pub(crate) fn mount_points(table: &str) -> impl Iterator<Item = PathBuf> + '_ {
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
}

/// Undoes the kernel's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let table = "22 1 0:21 / /proc rw - proc proc rw\n\
                     90 22 0:50 / /var/lib/docker-nfs/mounts/a\\040b rw - nfs4 h:/e rw\n";
        let points: Vec<PathBuf> = mount_points(table).collect();
        assert_eq!(
            points,
            [
                PathBuf::from("/proc"),
                PathBuf::from("/var/lib/docker-nfs/mounts/a b")
            ]
        );
    }

    #[test]
    fn a_helper_that_overruns_is_killed() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let err = run_bounded(cmd, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_failing_helper_reports_its_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'access denied by server' >&2; exit 32"]);
        let err = run_bounded(cmd, Duration::from_secs(10)).unwrap_err();
        assert!(err.contains("access denied by server"), "{err}");
    }
}
