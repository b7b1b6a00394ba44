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

use crate::state::{Record, State, VolumeOptions, dir_name};

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
        fs::create_dir_all(root.join("volumes")).map_err(ctx("creating"))?;
        fs::create_dir_all(root.join("trash")).map_err(ctx("creating"))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(ctx("securing"))?;

        let lock = File::create(root.join("lock")).map_err(ctx("opening the lock in"))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "{} is in use by another local-dir process",
                root.display()
            ));
        }

        let state = State::load(&root.join("state.json"), &root.join("volumes"))?;
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
        Ok(driver)
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
        status.insert("mounts".into(), record.mounts.len().into());
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
        if !record.mounts.is_empty() {
            return Err(DriverError::in_use(format!(
                "volume {name:?} is still mounted ({} users: {}); stop the containers using it first",
                record.mounts.len(),
                record.mounts.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }

        let record = record.clone();
        state.volumes.remove(name);
        if let Err(err) = self.save(&state) {
            state.volumes.insert(name.to_owned(), record);
            return Err(DriverError::other(format!("removing volume {name:?}")).with_source(err));
        }
        drop(state);

        // Moved aside first so that the name's directory disappears at once
        // even if deleting a large tree takes long or is interrupted; the
        // trash is emptied again at start-up.
        let trash = self.root.join("trash").join(&record.dir);
        match fs::rename(self.volume_path(&record), &trash) {
            Ok(()) => {
                if let Err(err) = fs::remove_dir_all(&trash) {
                    tracing::warn!(volume = name, error = %err, "deleting the data of a removed volume");
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(volume = name, error = %err, "moving a removed volume to the trash")
            }
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
        self.change_mounts(&mut state, name, id, true)?;
        tracing::debug!(volume = name, mount_id = id, "mounted");
        Ok(path)
    }

    fn unmount(&self, name: &str, id: &str) -> Result<(), DriverError> {
        let mut state = self.lock();
        self.change_mounts(&mut state, name, id, false)?;
        tracing::debug!(volume = name, mount_id = id, "unmounted");
        Ok(())
    }

    /// Adds or removes mount `id` of `name` and saves the table; the change
    /// is undone if it cannot be saved, so memory never runs ahead of disk.
    fn change_mounts(
        &self,
        state: &mut State,
        name: &str,
        id: &str,
        add: bool,
    ) -> Result<(), DriverError> {
        let Some(record) = state.volumes.get_mut(name) else {
            return Ok(());
        };
        let changed = if add {
            record.mounts.insert(id.to_owned())
        } else {
            record.mounts.remove(id)
        };
        if !changed {
            return Ok(());
        }
        let Err(err) = self.save(state) else {
            return Ok(());
        };
        if let Some(record) = state.volumes.get_mut(name) {
            if add {
                record.mounts.remove(id);
            } else {
                record.mounts.insert(id.to_owned());
            }
        }
        let verb = if add { "mounting" } else { "unmounting" };
        Err(DriverError::other(format!("{verb} volume {name:?}")).with_source(err))
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

fn not_found(name: &str) -> DriverError {
    DriverError::not_found(format!("no such volume {name:?}"))
}

#[docker_plugin_sdk::async_trait]
impl VolumeDriver for LocalDir {
    async fn create(&self, req: CreateRequest) -> Result<(), DriverError> {
        if req.name.is_empty() {
            return Err(DriverError::invalid_input("the volume name is empty"));
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
