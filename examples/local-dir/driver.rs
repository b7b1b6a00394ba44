//! The local-dir volume driver: each volume is a directory under the root.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use docker_plugin_sdk::DriverError;
use docker_plugin_sdk::volume::{
    CreateRequest, GetRequest, MountRequest, PathRequest, RemoveRequest, UnmountRequest, Volume,
    VolumeDriver,
};

use crate::state::{self, Record, State, VolumeOptions, dir_name};

/// Keeps volumes in `<root>/volumes/<dir>` and their table in
/// `<root>/state.json`.
#[derive(Clone)]
pub(crate) struct LocalDir {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    state: Mutex<State>,
    /// Held for the life of the driver so that two plugin processes never
    /// share one root.
    _lock: File,
}

impl LocalDir {
    /// Opens (or initialises) the root and loads the volume table.
    ///
    /// Fails with a message for the operator if the root is in use by
    /// another process or its table cannot be trusted.
    pub(crate) fn open(root: &Path) -> Result<Self, String> {
        let ctx = |what: &str| {
            let root = root.display().to_string();
            let what = what.to_owned();
            move |err: io::Error| format!("{what} {root}: {err}")
        };
        fs::create_dir_all(root).map_err(ctx("creating"))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(ctx("securing"))?;
        // Volumes are deleted inside these: a symlink planted in place of
        // either would point the deletions elsewhere.
        for sub in ["volumes", "trash"] {
            let path = root.join(sub);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(format!(
                        "{} is not a plain directory; refusing to use it",
                        path.display()
                    ));
                }
                Err(_) => fs::create_dir(&path).map_err(ctx("creating a directory in"))?,
            }
        }

        let lock = File::create(root.join("lock")).map_err(ctx("opening the lock in"))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "{} is in use by another local-dir process",
                root.display()
            ));
        }

        let table = root.join("state.json");
        state::remove_stale_temps(&table);
        let mut state = State::load(&table, &root.join("volumes"))?;
        let dropped = state.forget_mounts_from_before(&boot_id());
        if dropped > 0 {
            tracing::info!(
                dropped,
                "the host rebooted since mounts were recorded; forgot them"
            );
        }
        let driver = Self {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                state: Mutex::new(state),
                _lock: lock,
            }),
        };
        // Persist at once so that the next start can tell a fresh root from
        // a root whose table went missing.
        driver
            .inner
            .save(&driver.inner.lock())
            .map_err(ctx("writing the state of"))?;
        driver.inner.empty_trash();
        driver.inner.report_strays();
        Ok(driver)
    }

    /// See [`Inner::forget_mounts`].
    pub(crate) fn forget_mounts(&self, name: &str) -> Result<u64, String> {
        self.inner.forget_mounts(name)
    }

    /// Runs `op` on a blocking thread: every operation does file I/O and
    /// fsync, which must not stall the async workers.
    async fn blocking<T, F>(&self, op: F) -> Result<T, DriverError>
    where
        F: FnOnce(&Inner) -> Result<T, DriverError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || op(&inner))
            .await
            .map_err(|err| {
                DriverError::other("volume operation did not complete").with_source(err)
            })?
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the table half
        // updated on disk (saves are atomic), so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, state: &State) -> io::Result<()> {
        state.save(&self.root.join("state.json"))
    }

    fn volume_path(&self, record: &Record) -> PathBuf {
        self.root.join("volumes").join(&record.dir)
    }

    /// The record of `name`, if its directory still exists; a directory
    /// deleted behind the plugin's back means the volume is gone.
    fn live<'a>(&self, state: &'a State, name: &str) -> Option<&'a Record> {
        state
            .volumes
            .get(name)
            .filter(|record| self.volume_path(record).is_dir())
    }

    fn describe(&self, name: &str, record: &Record) -> Volume {
        let mut status = serde_json::Map::new();
        status.insert("options".into(), record.options.to_map().into());
        status.insert("mounts".into(), record.users().into());
        Volume {
            name: name.to_owned(),
            mountpoint: Some(self.volume_path(record)),
            created_at: Some(record.created_at),
            status: Some(status),
        }
    }

    fn create(&self, name: &str, options: VolumeOptions) -> Result<(), DriverError> {
        let mut state = self.lock();
        if let Some(existing) = self.live(&state, name) {
            return if existing.options == options {
                Ok(())
            } else {
                Err(DriverError::invalid_input(format!(
                    "volume {name:?} already exists with options {:?}; this request asked for {:?}",
                    existing.options.to_map(),
                    options.to_map()
                )))
            };
        }

        // A record whose directory vanished is forgotten, so that creating
        // the name again really creates it.
        state.volumes.remove(name);
        let (dir, path) = loop {
            let dir = dir_name(name, state.next_id);
            state.next_id += 1;
            let path = self.root.join("volumes").join(&dir);
            match fs::create_dir(&path) {
                Ok(()) => break (dir, path),
                // Left by a crash before its record was saved: skip it.
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(
                        DriverError::other(format!("creating the directory of {name:?}"))
                            .with_source(err),
                    );
                }
            }
        };

        let prepared = prepare_dir(&path, options);
        let record = Record {
            dir,
            options,
            created_at: SystemTime::now(),
            mounts: Default::default(),
        };
        state.volumes.insert(name.to_owned(), record);
        let saved = prepared.and_then(|()| self.save(&state));
        if let Err(err) = saved {
            state.volumes.remove(name);
            let _ = fs::remove_dir(&path);
            return Err(DriverError::other(format!("creating volume {name:?}")).with_source(err));
        }
        tracing::info!(volume = name, path = %path.display(), "created");
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), DriverError> {
        let mut state = self.lock();
        let Some(record) = state.volumes.get(name) else {
            // Already gone: the daemon may retry a Remove whose answer it
            // lost, and that retry must not fail.
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

        // The data goes first: a record whose directory is gone already
        // counts as removed, so this order is crash-safe, and it lets a
        // Remove free space even when the disk is too full to save the
        // table. Moving it aside is instant; deleting a large tree happens
        // after the lock is released.
        let trash = self.root.join("trash").join(&record.dir);
        match fs::rename(self.volume_path(record), &trash) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(
                    DriverError::other(format!("removing volume {name:?}")).with_source(err)
                );
            }
        }
        state.volumes.remove(name);
        if let Err(err) = self.save(&state) {
            tracing::warn!(volume = name, error = %err, "saving the table after a removal; \
                the volume stays removed");
        }
        drop(state);

        if let Err(err) = fs::remove_dir_all(&trash)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(volume = name, error = %err, "deleting the data of a removed volume");
        }
        tracing::info!(volume = name, "removed");
        Ok(())
    }

    fn mount(&self, name: &str, id: &str) -> Result<PathBuf, DriverError> {
        if id.is_empty() {
            return Err(DriverError::invalid_input(format!(
                "mount of {name:?} without a mount ID; the daemon always sends one"
            )));
        }
        let mut state = self.lock();
        let Some(path) = self.live(&state, name).map(|r| self.volume_path(r)) else {
            return Err(not_found(name));
        };
        self.add_mount(&mut state, name, id)?;
        tracing::debug!(volume = name, mount_id = id, "mounted");
        Ok(path)
    }

    /// Always succeeds for the daemon, which never repeats an Unmount: a
    /// table that cannot be saved now (a full disk) is saved by the next
    /// change, and until then holds one mount too many, which only delays a
    /// removal.
    fn unmount(&self, name: &str, id: &str) -> Result<(), DriverError> {
        let mut state = self.lock();
        let released = state
            .volumes
            .get_mut(name)
            .is_some_and(|record| release(record, id));
        if released && let Err(err) = self.save(&state) {
            tracing::warn!(volume = name, mount_id = id, error = %err,
                "saving the table after an unmount; it will be saved with the next change");
        }
        tracing::debug!(volume = name, mount_id = id, released, "unmounted");
        Ok(())
    }

    /// Drops every recorded mount of `name`, for an operator who knows no
    /// container uses it (after the Docker daemon crashed, for instance).
    pub(crate) fn forget_mounts(&self, name: &str) -> Result<u64, String> {
        let mut state = self.lock();
        let Some(record) = state.volumes.get_mut(name) else {
            return Err(format!("no such volume {name:?}"));
        };
        let dropped = record.users();
        record.mounts.clear();
        self.save(&state)
            .map_err(|err| format!("saving the table: {err}"))?;
        Ok(dropped)
    }

    /// Counts one more mount of `name` under `id` and saves the table; on a
    /// failed save the count is taken back and the mount fails, so no use is
    /// recorded that the daemon will not end.
    fn add_mount(&self, state: &mut State, name: &str, id: &str) -> Result<(), DriverError> {
        let Some(record) = state.volumes.get_mut(name) else {
            return Err(not_found(name));
        };
        *record.mounts.entry(id.to_owned()).or_default() += 1;
        let Err(err) = self.save(state) else {
            return Ok(());
        };
        if let Some(record) = state.volumes.get_mut(name) {
            release(record, id);
        }
        Err(DriverError::other(format!("mounting volume {name:?}")).with_source(err))
    }

    /// Logs volume directories no record owns (left by a crash between
    /// creating one and saving its record). They are kept: they may hold
    /// data someone wants.
    fn report_strays(&self) {
        let state = self.lock();
        let owned: std::collections::BTreeSet<&str> =
            state.volumes.values().map(|r| r.dir.as_str()).collect();
        let Ok(entries) = fs::read_dir(self.root.join("volumes")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !owned.contains(name.to_string_lossy().as_ref()) {
                tracing::warn!(path = %entry.path().display(), "directory belongs to no volume");
            }
        }
    }

    /// Empties the trash left by removals that a crash interrupted.
    fn empty_trash(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("trash")) else {
            return;
        };
        for entry in entries.flatten() {
            if let Err(err) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %err, "emptying the trash");
            }
        }
    }
}

/// Longest volume name accepted, in bytes.
const MAX_NAME: usize = 4096;

/// Applies mode and ownership to a new volume directory.
fn prepare_dir(path: &Path, options: VolumeOptions) -> io::Result<()> {
    // Set explicitly: the mode given to mkdir is filtered by the umask.
    let mode = options.mode.unwrap_or(0o755);
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    if options.uid.is_some() || options.gid.is_some() {
        std::os::unix::fs::chown(path, options.uid, options.gid)?;
    }
    Ok(())
}

/// Ends one mount under `id`; false if there was none to end.
fn release(record: &mut Record, id: &str) -> bool {
    match record.mounts.get_mut(id) {
        Some(count) if *count > 1 => {
            *count -= 1;
            true
        }
        Some(_) => {
            record.mounts.remove(id);
            true
        }
        None => false,
    }
}

/// Identifies the current boot of the host; empty where the kernel does not
/// say, which disables the reboot check.
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn not_found(name: &str) -> DriverError {
    DriverError::not_found(format!("no such volume {name:?}"))
}

#[docker_plugin_sdk::async_trait]
impl VolumeDriver for LocalDir {
    async fn create(&self, req: CreateRequest) -> Result<(), DriverError> {
        if req.name.is_empty() {
            return Err(DriverError::invalid_input("the volume name is empty"));
        }
        // Every change rewrites the whole table, so one giant name would
        // slow every later call down.
        if req.name.len() > MAX_NAME {
            return Err(DriverError::invalid_input(format!(
                "volume names are limited to {MAX_NAME} bytes; this one has {}",
                req.name.len()
            )));
        }
        let options = VolumeOptions::parse(req.options()).map_err(DriverError::invalid_input)?;
        self.blocking(move |inner| inner.create(&req.name, options))
            .await
    }

    async fn remove(&self, req: RemoveRequest) -> Result<(), DriverError> {
        self.blocking(move |inner| inner.remove(&req.name)).await
    }

    async fn mount(&self, req: MountRequest) -> Result<PathBuf, DriverError> {
        self.blocking(move |inner| inner.mount(&req.name, &req.id))
            .await
    }

    async fn unmount(&self, req: UnmountRequest) -> Result<(), DriverError> {
        self.blocking(move |inner| inner.unmount(&req.name, &req.id))
            .await
    }

    // Reads take the same lock as writes, which is held across fsync: they
    // wait on the blocking pool too, never on an async worker.
    async fn path(&self, req: PathRequest) -> Result<Option<PathBuf>, DriverError> {
        self.blocking(move |inner| {
            let state = inner.lock();
            match inner.live(&state, &req.name) {
                Some(record) => Ok(Some(inner.volume_path(record))),
                None => Err(not_found(&req.name)),
            }
        })
        .await
    }

    async fn get(&self, req: GetRequest) -> Result<Volume, DriverError> {
        self.blocking(move |inner| {
            let state = inner.lock();
            match inner.live(&state, &req.name) {
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
                .filter(|(name, _)| inner.live(&state, name).is_some())
                .map(|(name, record)| inner.describe(name, record))
                .collect())
        })
        .await
    }
}
