// The VolumeDriver: each volume a directory, seeded from a template.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use docker_plugin_sdk::volume::*;
use docker_plugin_sdk::{DriverError, async_trait};

use crate::state::{Record, Table, current_boot_id};

/// The plugin: cheap to share, so each call can take it to a thread.
pub(crate) struct Snapdir {
    store: Arc<Store>,
}

/// The directories and the table, behind one lock.
struct Store {
    templates: PathBuf,
    volumes: PathBuf,
    table_file: PathBuf,
    table: Mutex<Table>,
    /// Numbers the directories that templates are copied into.
    copies: AtomicU64,
}

impl Snapdir {
    /// Opens (or starts) the plugin's state under `root`: templates in
    /// `root/templates`, volumes in `root/volumes`, the table in
    /// `root/state.json`.
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        let templates = root.join("templates");
        let volumes = root.join("volumes");
        fs::create_dir_all(&templates)?;
        fs::create_dir_all(&volumes)?;
        // Half-made copies from a crash start with a dot; no volume does.
        for entry in fs::read_dir(&volumes)? {
            let name = entry?.file_name();
            if name.as_encoded_bytes().starts_with(b".") {
                fs::remove_dir_all(volumes.join(name))?;
            }
        }
        let table_file = root.join("state.json");
        let mut table = Table::load(&table_file, &volumes)?;
        table.boot_id = current_boot_id();
        table.save(&table_file)?;

        let store = Store {
            templates,
            volumes,
            table_file,
            table: Mutex::new(table),
            copies: AtomicU64::new(0),
        };
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// Runs `work` on a thread where blocking file calls are fine.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|err| DriverError::other("driver task failed").with_source(err))?
    }
}

#[async_trait]
impl VolumeDriver for Snapdir {
    async fn create(&self, req: CreateRequest) -> Result<(), DriverError> {
        check_name("volume", &req.name)?;
        let from = template_option(&req)?;
        self.blocking(move |store| store.create(&req.name, from))
            .await
    }

    async fn remove(&self, req: RemoveRequest) -> Result<(), DriverError> {
        self.blocking(move |store| store.remove(&req.name)).await
    }

    async fn mount(&self, req: MountRequest) -> Result<PathBuf, DriverError> {
        self.blocking(move |store| store.mount(&req.name, &req.id))
            .await
    }

    async fn unmount(&self, req: UnmountRequest) -> Result<(), DriverError> {
        self.blocking(move |store| store.unmount(&req.name, &req.id))
            .await
    }

    async fn path(&self, req: PathRequest) -> Result<Option<PathBuf>, DriverError> {
        let table = self.store.lock();
        let known = table.volumes.contains_key(&req.name);
        Ok(known.then(|| self.store.volumes.join(&req.name)))
    }

    async fn get(&self, req: GetRequest) -> Result<Volume, DriverError> {
        let table = self.store.lock();
        let found = table.volumes.get(&req.name);
        let record = found.ok_or_else(|| no_such(&req.name))?;
        Ok(self.store.describe(&req.name, record))
    }

    async fn list(&self) -> Result<Vec<Volume>, DriverError> {
        let table = self.store.lock();
        let mut volumes = Vec::new();
        for (name, record) in &table.volumes {
            volumes.push(self.store.describe(name, record));
        }
        Ok(volumes)
    }
}

impl Store {
    /// A panic while the lock was held poisons it; the table in memory
    /// is still whole, because every change is saved before it is kept.
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn describe(&self, name: &str, record: &Record) -> Volume {
        let mut status = serde_json::Map::new();
        let from = record.from.as_deref().unwrap_or("");
        status.insert("from".into(), from.into());
        let mounts: u32 = record.mounts.values().sum();
        status.insert("mounts".into(), mounts.into());
        Volume {
            mountpoint: Some(self.volumes.join(name)),
            created_at: Some(record.created_at),
            status: Some(status),
            ..Volume::new(name)
        }
    }

    fn create(&self, name: &str, from: Option<String>) -> Result<(), DriverError> {
        if let Some(record) = self.lock().volumes.get(name) {
            return same_template(name, record, &from);
        }

        // Copy without holding the lock, so that Get and List answer at
        // once however big the template, into a directory no volume can
        // be named after: a crash never leaves half a copy as a volume.
        let n = self.copies.fetch_add(1, Ordering::Relaxed);
        let building = self.volumes.join(format!(".new-{n}"));
        let copied = match &from {
            Some(template) => self.seed(name, template, &building),
            None => fs::create_dir(&building).map_err(DriverError::from),
        };
        if let Err(err) = copied {
            let _ = fs::remove_dir_all(&building);
            return Err(err);
        }

        // Another Create of this name may have won meanwhile.
        let mut table = self.lock();
        if let Some(record) = table.volumes.get(name) {
            let _ = fs::remove_dir_all(&building);
            return same_template(name, record, &from);
        }
        let dir = self.volumes.join(name);
        let _ = fs::remove_dir_all(&dir); // left by an interrupted Remove
        fs::rename(&building, &dir)?;
        let record = Record {
            from,
            created_at: SystemTime::now(),
            mounts: Default::default(),
        };
        table.volumes.insert(name.to_owned(), record);
        self.save_or_undo(&mut table, |t| {
            t.volumes.remove(name);
        })
    }

    fn seed(&self, name: &str, template: &str, to: &Path) -> Result<(), DriverError> {
        let source = self.templates.join(template);
        if !source.is_dir() {
            let msg = format!(
                "template {template:?} not found in {}",
                self.templates.display()
            );
            return Err(DriverError::not_found(msg));
        }
        copy_tree(&source, to).map_err(|err| {
            let msg = format!("seeding volume {name:?} from template {template:?}");
            DriverError::other(msg).with_source(err)
        })
    }

    fn remove(&self, name: &str) -> Result<(), DriverError> {
        let mut table = self.lock();
        let Some(record) = table.volumes.get(name) else {
            return Ok(()); // already gone: a repeated Remove succeeds
        };
        let uses: u32 = record.mounts.values().sum();
        if uses > 0 {
            let msg = format!("volume {name:?} is in use ({uses} mounts)");
            return Err(DriverError::in_use(msg));
        }

        // Forget the volume first: a crash before the delete leaves a
        // directory that the next Create of this name clears away.
        let record = table.volumes.remove(name);
        self.save_or_undo(&mut table, |t| {
            t.volumes.extend(record.map(|r| (name.to_owned(), r)));
        })?;
        match fs::remove_dir_all(self.volumes.join(name)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                let msg = format!("deleting the data of volume {name:?}");
                Err(DriverError::other(msg).with_source(err))
            }
            _ => Ok(()),
        }
    }

    fn mount(&self, name: &str, id: &str) -> Result<PathBuf, DriverError> {
        let mut table = self.lock();
        let record = table.volumes.get_mut(name).ok_or_else(|| no_such(name))?;
        let dir = self.volumes.join(name);
        if !dir.is_dir() {
            let msg = format!("the data of volume {name:?} is gone from {}", dir.display());
            return Err(DriverError::other(msg));
        }

        // Count per ID: `docker cp` mounts again under the ID of the
        // running container and unmounts once when done.
        *record.mounts.entry(id.to_owned()).or_default() += 1;
        self.save_or_undo(&mut table, |t| {
            if let Some(r) = t.volumes.get_mut(name) {
                release(&mut r.mounts, id);
            }
        })?;
        Ok(dir)
    }

    fn unmount(&self, name: &str, id: &str) -> Result<(), DriverError> {
        let mut table = self.lock();
        let Some(record) = table.volumes.get_mut(name) else {
            return Ok(()); // nothing to release
        };
        if !release(&mut record.mounts, id) {
            return Ok(()); // an ID we never counted is harmless
        }
        self.save_or_undo(&mut table, |t| {
            if let Some(r) = t.volumes.get_mut(name) {
                *r.mounts.entry(id.to_owned()).or_default() += 1;
            }
        })
    }

    /// Saves the table; if that fails, takes the change back so memory
    /// and disk keep agreeing, and reports the failure.
    fn save_or_undo(
        &self,
        table: &mut Table,
        undo: impl FnOnce(&mut Table),
    ) -> Result<(), DriverError> {
        table.save(&self.table_file).map_err(|err| {
            undo(table);
            DriverError::other("saving the volume table").with_source(err)
        })
    }
}

/// A repeated Create is fine; the same name with another template is a
/// mistake the user should hear about.
fn same_template(name: &str, record: &Record, from: &Option<String>) -> Result<(), DriverError> {
    if record.from == *from {
        return Ok(());
    }
    let had = record.from.as_deref().unwrap_or("none");
    let msg = format!("volume {name:?} already exists with template {had:?}");
    Err(DriverError::invalid_input(msg))
}

/// Drops one use of `id`; false if it had none.
fn release(mounts: &mut std::collections::BTreeMap<String, u32>, id: &str) -> bool {
    let Some(count) = mounts.get_mut(id) else {
        return false;
    };
    *count -= 1;
    if *count == 0 {
        mounts.remove(id);
    }
    true
}

/// The `from` option, the only one this driver takes.
fn template_option(req: &CreateRequest) -> Result<Option<String>, DriverError> {
    let mut from = None;
    for (key, value) in req.options() {
        match key {
            "from" => {
                check_name("template", value)?;
                from = Some(value.to_owned());
            }
            _ => {
                let msg = format!("unknown option {key:?}; the only option is \"from\"");
                return Err(DriverError::invalid_input(msg));
            }
        }
    }
    Ok(from)
}

/// Any string can arrive as a name; only plain file names become paths.
fn check_name(what: &str, name: &str) -> Result<(), DriverError> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
    let first = name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if name.len() <= 128 && first && name.bytes().all(plain) {
        Ok(())
    } else {
        let msg = format!("invalid {what} name {name:?}");
        Err(DriverError::invalid_input(msg))
    }
}

fn no_such(name: &str) -> DriverError {
    DriverError::not_found(format!("no such volume {name:?}"))
}

/// Copies directories, files and symbolic links (as links), keeping
/// permission bits; anything else (sockets, devices) is refused.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            fs::copy(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source)?, &target)?;
        } else {
            let msg = format!("{} is not a file or directory", source.display());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
    }
    fs::set_permissions(to, fs::metadata(from)?.permissions())
}
