//! The nfs volume driver: volumes are NFS shares mounted under the root,
//! shared by every container that uses them and counted by mount ID.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use docker_plugin_sdk::DriverError;
use docker_plugin_sdk::volume::{
    Capabilities, CreateRequest, GetRequest, MountRequest, PathRequest, RemoveRequest, Scope,
    UnmountRequest, Volume, VolumeDriver,
};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::mounter::Mounter;
use crate::options::{Defaults, VolumeOptions};
use crate::state::{self, Record, State};

/// Longest volume name accepted, in bytes.
const MAX_NAME: usize = 4096;

/// Extra time a blocking step gets beyond its own limit before the call
/// answers without it (a filesystem call stuck on a dead server).
const GRACE: Duration = Duration::from_secs(10);

/// How the driver runs.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Directory holding `state.json` and the mount points.
    pub(crate) root: PathBuf,
    /// Limit for one mount, subdirectory creation included.
    pub(crate) mount_timeout: Duration,
    /// Limit for one plain unmount before falling back to a lazy one.
    pub(crate) unmount_timeout: Duration,
    pub(crate) defaults: Defaults,
}

impl Config {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            mount_timeout: Duration::from_secs(60),
            unmount_timeout: Duration::from_secs(15),
            defaults: Defaults::default(),
        }
    }
}

/// Mounts shares under `<root>/mounts/<key>`, one mount per distinct
/// (share, mount options) pair, and keeps the table in `<root>/state.json`.
#[derive(Clone)]
pub(crate) struct Nfs {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    mounter: Arc<dyn Mounter>,
    state: Mutex<State>,
    /// One lock per mount point: a slow server holds up only the volumes
    /// that share its mount.
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    /// Held for the life of the driver so that two plugin processes never
    /// share one root.
    _lock: File,
}

impl Nfs {
    /// Opens (or initialises) the root and loads the volume table. Call
    /// [`Nfs::reconcile`] next to bring the mounts in line with it.
    ///
    /// Fails with a message for the operator if the root is in use by
    /// another process, its table cannot be trusted or a limit is too long.
    pub(crate) fn open(mut config: Config, mounter: Arc<dyn Mounter>) -> Result<Self, String> {
        // The daemon gives up on a Mount after 2 minutes.
        if config.mount_timeout + GRACE > Duration::from_secs(100)
            || config.unmount_timeout * 2 + GRACE > Duration::from_secs(55)
        {
            return Err(
                "mount timeout is limited to 90 s and unmount timeout to 20 s, \
                        to answer inside the daemon's limits"
                    .into(),
            );
        }
        config.defaults.check()?;
        let root = config.root.clone();
        let ctx = |what: &'static str| {
            let root = root.display().to_string();
            move |err: io::Error| format!("{what} {root}: {err}")
        };
        fs::create_dir_all(&root).map_err(ctx("creating"))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).map_err(ctx("securing"))?;
        // Mount points are compared with the kernel's table, which holds
        // resolved paths.
        config.root = fs::canonicalize(&root).map_err(ctx("resolving"))?;
        let mounts = config.root.join("mounts");
        match fs::symlink_metadata(&mounts) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a plain directory", mounts.display())),
            Err(_) => fs::create_dir(&mounts).map_err(ctx("creating mounts in"))?,
        }

        let lock = File::create(config.root.join("lock")).map_err(ctx("opening the lock in"))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "{} is in use by another nfs plugin",
                root.display()
            ));
        }
        let table = config.root.join("state.json");
        let mut state = State::load(&table, &mounts)?;
        let dropped = state.forget_mounts_from_before(&state::boot_id());
        if dropped > 0 {
            tracing::info!(
                dropped,
                "the host rebooted since mounts were recorded; forgot them"
            );
        }
        state.save(&table).map_err(ctx("writing the state of"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                mounter,
                state: Mutex::new(state),
                locks: Mutex::default(),
                _lock: lock,
            }),
        })
    }

    /// Brings the kernel's mounts in line with the table after a restart:
    /// re-adopts mounts still in use, mounts again what the table says is
    /// in use but is not mounted, and unmounts what nobody uses. Returns
    /// the problems met, which are also logged.
    pub(crate) async fn reconcile(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut keys: Vec<(String, Option<VolumeOptions>)> = {
            let state = self.inner.lock();
            let mut used: HashMap<String, VolumeOptions> = HashMap::new();
            for record in state.volumes.values().filter(|r| r.users() > 0) {
                used.insert(mount_key(&record.options), record.options.clone());
            }
            used.into_iter().map(|(k, o)| (k, Some(o))).collect()
        };
        let mounts = self.inner.config.root.join("mounts");
        if let Ok(entries) = fs::read_dir(&mounts) {
            for entry in entries.flatten() {
                let key = entry.file_name().to_string_lossy().into_owned();
                if !keys.iter().any(|(k, _)| *k == key) {
                    keys.push((key, None));
                }
            }
        }

        for (key, used) in keys {
            let guard = self.inner.key_lock(&key).lock_owned().await;
            let inner = Arc::clone(&self.inner);
            let limit = inner.config.mount_timeout + inner.config.unmount_timeout * 2;
            let key2 = key.clone();
            let done = bounded(limit, move || {
                let _guard = guard;
                match used {
                    Some(options) => {
                        let limit = inner.config.mount_timeout;
                        inner
                            .ensure_mounted(&options, &key2, None, limit)
                            .map(|_| ())
                    }
                    None => inner.release_mount(&key2),
                }
            })
            .await;
            if let Err(err) = done {
                tracing::warn!(mount = key, error = %err, "reconciling a mount");
                problems.push(err.to_string());
            }
        }
        problems
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Inner) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        let inner = Arc::clone(&self.inner);
        bounded(GRACE, move || op(&inner)).await
    }

    /// The options and mount key of `name`.
    async fn lookup(&self, name: &str) -> Result<Option<(VolumeOptions, String)>, DriverError> {
        let name = name.to_owned();
        self.blocking(move |inner| {
            Ok(inner.lock().volumes.get(&name).map(|r| {
                let key = mount_key(&r.options);
                (r.options.clone(), key)
            }))
        })
        .await
    }

    /// Takes the lock of mount point `key`, waiting at most `limit`.
    async fn lock_key(
        &self,
        key: &str,
        limit: Duration,
        name: &str,
    ) -> Result<OwnedMutexGuard<()>, DriverError> {
        let lock = self.inner.key_lock(key);
        tokio::time::timeout(limit, lock.lock_owned())
            .await
            .map_err(|_| {
                DriverError::other(format!(
                    "volume {name:?}: another mount or unmount of its share has been running \
                     for over {limit:?}; try again later"
                ))
            })
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Saves are atomic, so a panic while holding the lock cannot have
        // left the file half updated: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key_lock(&self, key: &str) -> Arc<AsyncMutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(key.to_owned()).or_default())
    }

    fn save(&self, state: &State) -> io::Result<()> {
        state.save(&self.config.root.join("state.json"))
    }

    fn target(&self, key: &str) -> PathBuf {
        self.config.root.join("mounts").join(key)
    }

    fn volume_path(&self, options: &VolumeOptions) -> PathBuf {
        let target = self.target(&mount_key(options));
        match &options.subdir {
            Some(subdir) => target.join(subdir),
            None => target,
        }
    }

    /// How many mounts all volumes on mount point `key` hold.
    fn users_of(state: &State, key: &str) -> u64 {
        state
            .volumes
            .values()
            .filter(|r| mount_key(&r.options) == key)
            .map(Record::users)
            .sum()
    }

    fn describe(&self, name: &str, record: &Record) -> Volume {
        let key = mount_key(&record.options);
        let mut status = record.options.to_map();
        status.insert("mounts".into(), record.users().into());
        let mounted = self.mounter.is_mounted(&self.target(&key));
        status.insert("mounted".into(), mounted.into());
        Volume {
            name: name.to_owned(),
            mountpoint: Some(self.volume_path(&record.options)),
            created_at: Some(record.created_at),
            status: Some(status),
        }
    }

    /// Mounts `options.share` on the mount point `key` unless it already
    /// is; true if this call mounted it. A helper that claims success
    /// without mounting is caught by reading the mount table.
    fn ensure_mounted(
        &self,
        options: &VolumeOptions,
        key: &str,
        name: Option<&str>,
        limit: Duration,
    ) -> Result<bool, DriverError> {
        let target = self.target(key);
        let share = &options.share;
        let fail = |why: String| {
            let volume = name
                .map(|n| format!(" for volume {n:?}"))
                .unwrap_or_default();
            DriverError::other(format!("mounting {share}{volume}: {why}"))
        };
        if self.mounter.is_mounted(&target) {
            return Ok(false);
        }
        match fs::create_dir(&target) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(fail(format!("creating {}: {err}", target.display()))),
        }
        if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(fail(format!(
                "{} is not a plain directory",
                target.display()
            )));
        }

        let result = self.mounter.mount(share, &options.o, &target, limit);
        let mounted = self.mounter.is_mounted(&target);
        match (result, mounted) {
            (Ok(()), true) => {
                tracing::info!(share = %share, target = %target.display(), "mounted");
                Ok(true)
            }
            (Ok(()), false) => {
                remove_empty_dir(&target);
                Err(fail(
                    "the mount helper reported success but nothing is mounted there".into(),
                ))
            }
            (Err(why), still_mounted) => {
                // A helper killed at its deadline may have mounted anyway.
                if still_mounted {
                    let _ = self
                        .mounter
                        .unmount(&target, true, self.config.unmount_timeout);
                }
                remove_empty_dir(&target);
                Err(fail(why))
            }
        }
    }

    /// Creates `subdir` inside the mounted `target` and returns its path,
    /// refusing one that a symlink on the server leads out of the share.
    fn prepare_subdir(&self, target: &Path, subdir: &str) -> Result<PathBuf, DriverError> {
        let path = target.join(subdir);
        let fail = |why: String| {
            DriverError::other(format!("preparing subdir {subdir:?} of the share: {why}"))
        };
        fs::create_dir_all(&path).map_err(|err| fail(err.to_string()))?;
        let real = fs::canonicalize(&path).map_err(|err| fail(err.to_string()))?;
        if !real.starts_with(target) || !real.is_dir() {
            return Err(fail(format!(
                "it resolves to {}, outside the share",
                real.display()
            )));
        }
        Ok(path)
    }

    /// Unmounts mount point `key` (lazily if a plain unmount overruns) and
    /// removes its directory if empty. The caller holds the key's lock.
    fn release_mount(&self, key: &str) -> Result<(), DriverError> {
        let target = self.target(key);
        let limit = self.config.unmount_timeout;
        if self.mounter.is_mounted(&target) {
            if let Err(why) = self.mounter.unmount(&target, false, limit) {
                if !why.contains("did not finish") {
                    // Busy, most likely: leave it mounted and deleting nothing.
                    return Err(DriverError::other(format!(
                        "unmounting {}: {why}; it stays mounted until its next last user \
                         leaves or the plugin restarts",
                        target.display()
                    )));
                }
                tracing::warn!(target = %target.display(), error = %why,
                    "unmount overran; detaching lazily");
                self.mounter.unmount(&target, true, limit).map_err(|why| {
                    DriverError::other(format!("lazily unmounting {}: {why}", target.display()))
                })?;
            }
            if self.mounter.is_mounted(&target) {
                return Err(DriverError::other(format!(
                    "{} is still mounted after umount",
                    target.display()
                )));
            }
            tracing::info!(target = %target.display(), "unmounted");
        }
        remove_empty_dir(&target);
        Ok(())
    }

    /// The whole of a Mount, run on the blocking pool with the key's lock
    /// held, the mount helper limited to `limit`. `abandoned` is set when
    /// the daemon was already answered.
    fn mount(
        &self,
        name: &str,
        id: &str,
        (options, key): (&VolumeOptions, &str),
        limit: Duration,
        abandoned: &AtomicBool,
    ) -> Result<PathBuf, DriverError> {
        let mounted_now = self.ensure_mounted(options, key, Some(name), limit)?;
        let undo = |err: DriverError| {
            if mounted_now && Self::users_of(&self.lock(), key) == 0 {
                let _ = self.release_mount(key);
            }
            err
        };
        let path = match &options.subdir {
            Some(subdir) => self
                .prepare_subdir(&self.target(key), subdir)
                .map_err(undo)?,
            None => self.target(key),
        };

        let mut state = self.lock();
        if abandoned.load(Ordering::SeqCst) {
            drop(state);
            return Err(undo(DriverError::other("the mount ran out of time")));
        }
        let Some(record) = state
            .volumes
            .get_mut(name)
            .filter(|r| r.options == *options)
        else {
            drop(state);
            return Err(undo(not_found(name)));
        };
        *record.mounts.entry(id.to_owned()).or_default() += 1;
        if let Err(save_err) = self.save(&state) {
            if let Some(record) = state.volumes.get_mut(name) {
                record.release(id);
            }
            drop(state);
            let err = DriverError::other(format!("recording the mount of {name:?}"));
            return Err(undo(err.with_source(save_err)));
        }
        tracing::debug!(volume = name, mount_id = id, "mounted");
        Ok(path)
    }

    /// The whole of an Unmount, with the key's lock held.
    fn unmount(&self, name: &str, id: &str, key: &str) -> Result<(), DriverError> {
        let mut state = self.lock();
        let released = state
            .volumes
            .get_mut(name)
            .is_some_and(|record| record.release(id));
        if !released {
            return Ok(());
        }
        if let Err(err) = self.save(&state) {
            tracing::warn!(volume = name, mount_id = id, error = %err,
                "saving the table after an unmount; it will be saved with the next change");
        }
        let users = Self::users_of(&state, key);
        drop(state);
        tracing::debug!(volume = name, mount_id = id, users, "unmounted");
        if users > 0 {
            return Ok(());
        }
        self.release_mount(key)
            .map_err(|err| DriverError::other(format!("volume {name:?}: {err}")))
    }
}

/// Runs `op` on the blocking pool and answers after at most `limit` plus
/// [`GRACE`], even if `op` is stuck in a filesystem call.
async fn bounded<T: Send + 'static>(
    limit: Duration,
    op: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    let task = tokio::task::spawn_blocking(op);
    match tokio::time::timeout(limit + GRACE, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(err)) => Err(DriverError::other("volume operation failed").with_source(err)),
        Err(_) => Err(DriverError::other(format!(
            "gave up after {:?}: the NFS server does not answer",
            limit + GRACE
        ))),
    }
}

/// Removes `dir` if it is empty: a plain rmdir, never a recursive delete,
/// so a directory still holding a mount or files is left alone.
fn remove_empty_dir(dir: &Path) {
    if let Err(err) = fs::remove_dir(dir)
        && err.kind() != io::ErrorKind::NotFound
    {
        tracing::debug!(path = %dir.display(), error = %err, "mount point left in place");
    }
}

/// The directory name of the mount of `options`: the host for people, a
/// hash of share and mount options for uniqueness. Stable across versions.
pub(crate) fn mount_key(options: &VolumeOptions) -> String {
    // FNV-1a: tiny, and unlike std's hasher fixed forever.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in options.share.bytes().chain([0]).chain(options.o.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let host: String = options
        .share
        .rsplit_once(':')
        .map_or("", |(h, _)| h)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(40)
        .collect();
    let host = host.trim_start_matches(['.', '-']);
    format!(
        "{}{hash:016x}",
        if host.is_empty() {
            String::new()
        } else {
            format!("{host}-")
        }
    )
}

fn not_found(name: &str) -> DriverError {
    DriverError::not_found(format!("no such volume {name:?}"))
}

#[docker_plugin_sdk::async_trait]
impl VolumeDriver for Nfs {
    async fn create(&self, req: CreateRequest) -> Result<(), DriverError> {
        if req.name.is_empty() || req.name.len() > MAX_NAME {
            return Err(DriverError::invalid_input(format!(
                "volume names must have 1 to {MAX_NAME} bytes"
            )));
        }
        let options = VolumeOptions::parse(req.options(), &self.inner.config.defaults)
            .map_err(DriverError::invalid_input)?;
        self.blocking(move |inner| {
            let mut state = inner.lock();
            let name = req.name;
            if let Some(existing) = state.volumes.get(&name) {
                return if existing.options == options {
                    Ok(())
                } else {
                    Err(DriverError::invalid_input(format!(
                        "volume {name:?} already exists with options {:?}",
                        existing.options.to_map()
                    )))
                };
            }
            let record = Record {
                options,
                created_at: SystemTime::now(),
                mounts: Default::default(),
            };
            state.volumes.insert(name.clone(), record);
            if let Err(err) = inner.save(&state) {
                state.volumes.remove(&name);
                return Err(
                    DriverError::other(format!("creating volume {name:?}")).with_source(err)
                );
            }
            tracing::info!(volume = name, "created");
            Ok(())
        })
        .await
    }

    /// Forgets the volume; nothing on the server is touched.
    async fn remove(&self, req: RemoveRequest) -> Result<(), DriverError> {
        let Some((_, key)) = self.lookup(&req.name).await? else {
            return Ok(());
        };
        let guard = self.lock_key(&key, GRACE, &req.name).await?;
        self.blocking(move |inner| {
            let _guard = guard;
            let mut state = inner.lock();
            let name = req.name;
            let Some(record) = state.volumes.get(&name) else {
                return Ok(());
            };
            if record.users() > 0 {
                let ids: Vec<&str> = record.mounts.keys().map(String::as_str).collect();
                return Err(DriverError::in_use(format!(
                    "volume {name:?} is still mounted ({} mounts, IDs {}); stop the containers \
                     using it first",
                    record.users(),
                    ids.join(", ")
                )));
            }
            let removed = state.volumes.remove(&name);
            if let Err(err) = inner.save(&state) {
                if let Some(record) = removed {
                    state.volumes.insert(name.clone(), record);
                }
                return Err(
                    DriverError::other(format!("removing volume {name:?}")).with_source(err)
                );
            }
            if Inner::users_of(&state, &key) == 0 && !inner.mounter.is_mounted(&inner.target(&key))
            {
                remove_empty_dir(&inner.target(&key));
            }
            tracing::info!(volume = name, "removed");
            Ok(())
        })
        .await
    }

    async fn mount(&self, req: MountRequest) -> Result<PathBuf, DriverError> {
        if req.id.is_empty() {
            return Err(DriverError::invalid_input(format!(
                "mount of {:?} without a mount ID; the daemon always sends one",
                req.name
            )));
        }
        let Some((options, key)) = self.lookup(&req.name).await? else {
            return Err(not_found(&req.name));
        };
        // Waiting behind another mount of the same share and mounting
        // share one budget, so that the answer still beats the daemon's
        // 2 minutes; a mount always gets a few seconds of its own.
        let started = std::time::Instant::now();
        let budget = self.inner.config.mount_timeout;
        let guard = self.lock_key(&key, budget, &req.name).await?;
        let limit = budget
            .saturating_sub(started.elapsed())
            .max(budget.min(Duration::from_secs(5)));
        let abandoned = Arc::new(AtomicBool::new(false));
        let inner = Arc::clone(&self.inner);
        let flag = Arc::clone(&abandoned);
        let result = bounded(limit, move || {
            let _guard = guard;
            inner.mount(&req.name, &req.id, (&options, &key), limit, &flag)
        })
        .await;
        abandoned.store(true, Ordering::SeqCst);
        result
    }

    async fn unmount(&self, req: UnmountRequest) -> Result<(), DriverError> {
        let Some((_, key)) = self.lookup(&req.name).await? else {
            return Ok(());
        };
        let limit = self.inner.config.unmount_timeout;
        let guard = self.lock_key(&key, limit, &req.name).await?;
        let inner = Arc::clone(&self.inner);
        bounded(limit * 2, move || {
            let _guard = guard;
            inner.unmount(&req.name, &req.id, &key)
        })
        .await
    }

    async fn path(&self, req: PathRequest) -> Result<Option<PathBuf>, DriverError> {
        self.blocking(move |inner| {
            let state = inner.lock();
            match state.volumes.get(&req.name) {
                Some(r) if r.users() > 0 => Ok(Some(inner.volume_path(&r.options))),
                Some(_) => Ok(None),
                None => Err(not_found(&req.name)),
            }
        })
        .await
    }

    async fn get(&self, req: GetRequest) -> Result<Volume, DriverError> {
        self.blocking(move |inner| {
            let state = inner.lock();
            match state.volumes.get(&req.name) {
                Some(record) => Ok(inner.describe(&req.name, record)),
                None => Err(not_found(&req.name)),
            }
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Volume>, DriverError> {
        self.blocking(|inner| {
            let state = inner.lock();
            Ok(state
                .volumes
                .iter()
                .map(|(name, record)| inner.describe(name, record))
                .collect())
        })
        .await
    }

    /// The same share is the same data on every host of a swarm.
    async fn capabilities(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities {
            scope: Scope::Global,
        })
    }
}
