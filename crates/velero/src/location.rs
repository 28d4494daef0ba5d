//! A Velero backup storage location, read-only: its backup folders and each backup's parts.

use std::{collections::BTreeMap, io::Read, ops::ControlFlow, sync::Arc};

use arca_store::{ObjectStore, StoreError};
use flate2::read::MultiGzDecoder;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::io::SyncIoBridge;

use crate::{
    Entry, Limits, PodVolumeData, ReadOnlyStore, ResourceList, TarballSummary, VeleroBackup,
    VeleroError, VolumeInfo, names::backup_name_problem, read_tarball, resource_list, volume_info,
    volumes,
};

/// Entries queued between the tarball's reading thread and the consumer: what the reader
/// holds beyond the entry it reads (each at most [`Limits::item_bytes`]).
const QUEUED_ENTRIES: usize = 8;

/// Where Velero keeps each part of a backup, relative to the location's prefix.
#[derive(Clone, Copy, Debug, Default)]
pub struct VeleroLayout;

impl VeleroLayout {
    /// The folder of every backup.
    pub const BACKUPS: &'static str = "backups/";
    /// The Backup object's file name in a backup's folder.
    pub const METADATA_FILE: &'static str = "velero-backup.json";
    /// Arca's own metadata file, which marks a folder as Arca's.
    pub const ARCA_METADATA_FILE: &'static str = "backup.json";

    /// `backups/<name>/`.
    pub fn backup_dir(name: &str) -> String {
        format!("backups/{name}/")
    }
    /// `backups/<name>/velero-backup.json`.
    pub fn metadata(name: &str) -> String {
        format!("backups/{name}/velero-backup.json")
    }
    /// `backups/<name>/<name>.tar.gz`.
    pub fn tarball(name: &str) -> String {
        format!("backups/{name}/{name}.tar.gz")
    }
    /// `backups/<name>/<name>-podvolumebackups.json.gz`.
    pub fn pod_volume_backups(name: &str) -> String {
        format!("backups/{name}/{name}-podvolumebackups.json.gz")
    }
    /// `backups/<name>/<name>-resource-list.json.gz`.
    pub fn resource_list(name: &str) -> String {
        format!("backups/{name}/{name}-resource-list.json.gz")
    }
    /// `backups/<name>/<name>-volumeinfo.json.gz` (Velero 1.13 and later).
    pub fn volume_info(name: &str) -> String {
        format!("backups/{name}/{name}-volumeinfo.json.gz")
    }
}

/// What a backup folder holds, judged from its object names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderLayout {
    /// Velero's: `velero-backup.json` is there.
    Velero {
        /// The tarball's size; None when there is no tarball (Velero still writing it, or a
        /// backup that failed before it).
        tarball_bytes: Option<u64>,
        /// Whether `-podvolumebackups.json.gz` is there.
        pod_volume_backups: bool,
        /// Whether `-resource-list.json.gz` is there.
        resource_list: bool,
    },
    /// Arca's own (`backup.json`): read with `arca_store`, not here.
    Arca,
    /// Both `velero-backup.json` and `backup.json`: two tools wrote one folder. Neither is
    /// trusted; a reader refuses it.
    Both,
    /// Neither metadata file: not a backup (yet).
    Unrecognized,
    /// The folder's name cannot be a backup's (a bucket writer's; never read).
    InvalidName {
        /// What is wrong with it.
        reason: String,
    },
}

/// One folder of `backups/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupFolder {
    /// The folder's name (the backup's name).
    pub name: String,
    /// What it holds.
    pub layout: FolderLayout,
    /// How many objects it holds.
    pub objects: usize,
}

/// A backup storage location Velero wrote, read-only.
#[derive(Clone, Debug)]
pub struct VeleroLocation {
    store: ReadOnlyStore,
    limits: Limits,
}

impl VeleroLocation {
    /// The location whose store is `store` (rooted at the location's prefix, as every
    /// [`ObjectStore`] is), with the default [`Limits`]. Only read operations of `store` are
    /// ever called.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store: ReadOnlyStore::new(store),
            limits: Limits::default(),
        }
    }

    /// The same location with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The store, read-only.
    pub fn store(&self) -> &ReadOnlyStore {
        &self.store
    }

    /// Every folder of `backups/`, in name order, with its layout: one listing of the
    /// location, no object read.
    pub async fn list_backups(&self) -> Result<Vec<BackupFolder>, VeleroError> {
        let objects = self.store.list(VeleroLayout::BACKUPS).await?;
        let mut folders: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for object in objects {
            let Some(rest) = object.key.strip_prefix(VeleroLayout::BACKUPS) else {
                continue;
            };
            let Some((folder, file)) = rest.split_once('/') else {
                continue;
            };
            folders
                .entry(folder.to_string())
                .or_default()
                .insert(file.to_string(), object.size);
        }
        Ok(folders
            .into_iter()
            .map(|(name, files)| {
                let layout = match backup_name_problem(&name) {
                    Some(problem) => FolderLayout::InvalidName {
                        reason: problem.to_string(),
                    },
                    None => layout_of(&name, &files),
                };
                BackupFolder {
                    name,
                    objects: files.len(),
                    layout,
                }
            })
            .collect())
    }

    /// The Backup object of backup `name` (`velero-backup.json`), checked to be a Velero
    /// Backup of that name.
    pub async fn backup(&self, name: &str) -> Result<VeleroBackup, VeleroError> {
        check_name(name)?;
        let key = VeleroLayout::metadata(name);
        let bytes = self
            .store
            .get_bounded(&key, self.limits.metadata_bytes)
            .await
            .map_err(|e| missing(e, name, "velero-backup.json", &key))
            .map_err(|e| too_large(e, &key, "velero-backup.json"))?;
        VeleroBackup::parse(&bytes, name, &key)
    }

    /// Streams the items of backup `name` from its tarball, one at a time (see
    /// [`read_tarball`] for what is checked and refused). The tarball is read on a blocking
    /// thread as the stream is consumed; dropping the stream stops it.
    pub async fn items(&self, name: &str) -> Result<ItemStream, VeleroError> {
        check_name(name)?;
        let key = VeleroLayout::tarball(name);
        let reader = self
            .store
            .reader(&key)
            .await
            .map_err(|e| missing(e, name, "tarball", &key))?;
        let reader = SyncIoBridge::new(reader);
        let (tx, rx) = mpsc::channel(QUEUED_ENTRIES);
        let limits = self.limits;
        let backup = name.to_string();
        let task = tokio::task::spawn_blocking(move || {
            read_tarball(reader, &key, &backup, &limits, |entry| {
                match tx.blocking_send(entry) {
                    Ok(()) => ControlFlow::Continue(()),
                    // The consumer dropped the stream: stop reading.
                    Err(_) => ControlFlow::Break(()),
                }
            })
        });
        Ok(ItemStream {
            rx,
            task: Some(task),
            summary: None,
        })
    }

    /// The PodVolumeBackups of backup `name` (which pod volumes have file-level data, and
    /// whether restic or kopia wrote it); None when the backup has no such file.
    pub async fn pod_volume_backups(
        &self,
        name: &str,
    ) -> Result<Option<Vec<PodVolumeData>>, VeleroError> {
        check_name(name)?;
        let key = VeleroLayout::pod_volume_backups(name);
        match self.gunzip(&key, "the pod volume backups list").await? {
            Some(bytes) => volumes::parse(&bytes, &key).map(Some),
            None => Ok(None),
        }
    }

    /// How each persistent volume of backup `name` was backed up; None when the backup has
    /// no such file (Velero before 1.13).
    pub async fn volume_infos(&self, name: &str) -> Result<Option<Vec<VolumeInfo>>, VeleroError> {
        check_name(name)?;
        let key = VeleroLayout::volume_info(name);
        match self.gunzip(&key, "the volume information").await? {
            Some(bytes) => volume_info::parse(&bytes, &key).map(Some),
            None => Ok(None),
        }
    }

    /// The resource list of backup `name`; None when the backup has no such file.
    pub async fn resource_list(&self, name: &str) -> Result<Option<ResourceList>, VeleroError> {
        check_name(name)?;
        let key = VeleroLayout::resource_list(name);
        match self.gunzip(&key, "the resource list").await? {
            Some(bytes) => resource_list::parse(&bytes, &key).map(Some),
            None => Ok(None),
        }
    }

    /// A small gzip-compressed object, decompressed within the limits; None when missing.
    async fn gunzip(&self, key: &str, what: &str) -> Result<Option<Vec<u8>>, VeleroError> {
        let compressed = match self
            .store
            .get_bounded(key, self.limits.list_compressed_bytes)
            .await
        {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(too_large(e, key, what)),
        };
        let limit = self.limits.list_bytes;
        let key = key.to_string();
        let what = what.to_string();
        tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            MultiGzDecoder::new(&compressed[..])
                .take(limit.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| VeleroError::Corrupt {
                    key: key.clone(),
                    detail: format!("not gzip: {e}"),
                })?;
            if bytes.len() as u64 > limit {
                return Err(VeleroError::TooLarge {
                    key,
                    what: format!("{what}, decompressed,"),
                    limit,
                });
            }
            Ok(Some(bytes))
        })
        .await
        .map_err(|e| VeleroError::Internal(e.to_string()))?
    }
}

/// The items of one backup's tarball, as they are read.
#[derive(Debug)]
pub struct ItemStream {
    rx: mpsc::Receiver<Entry>,
    task: Option<JoinHandle<Result<TarballSummary, VeleroError>>>,
    summary: Option<TarballSummary>,
}

impl ItemStream {
    /// The next entry: an item, or an item refused (the stream goes on after it).
    /// `Ok(None)` at the end, once the whole tarball was read and checked ([`Self::summary`]
    /// then says what else it held). `Err` when the tarball cannot be read on (damaged,
    /// hostile, too large, unknown format, the store failing): nothing more comes, and what
    /// came before is all that could be read.
    pub async fn next(&mut self) -> Result<Option<Entry>, VeleroError> {
        if let Some(entry) = self.rx.recv().await {
            return Ok(Some(entry));
        }
        let Some(task) = self.task.take() else {
            return Ok(None);
        };
        let summary = task
            .await
            .map_err(|e| VeleroError::Internal(e.to_string()))??;
        self.summary = Some(summary);
        Ok(None)
    }

    /// What the tarball held besides its items; Some once [`Self::next`] returned `Ok(None)`.
    pub fn summary(&self) -> Option<&TarballSummary> {
        self.summary.as_ref()
    }
}

fn layout_of(name: &str, files: &BTreeMap<String, u64>) -> FolderLayout {
    let velero = files.contains_key(VeleroLayout::METADATA_FILE);
    let arca = files.contains_key(VeleroLayout::ARCA_METADATA_FILE);
    match (velero, arca) {
        (true, true) => FolderLayout::Both,
        (false, true) => FolderLayout::Arca,
        (false, false) => FolderLayout::Unrecognized,
        (true, false) => FolderLayout::Velero {
            tarball_bytes: files.get(&format!("{name}.tar.gz")).copied(),
            pod_volume_backups: files.contains_key(&format!("{name}-podvolumebackups.json.gz")),
            resource_list: files.contains_key(&format!("{name}-resource-list.json.gz")),
        },
    }
}

fn check_name(name: &str) -> Result<(), VeleroError> {
    match backup_name_problem(name) {
        Some(problem) => Err(VeleroError::InvalidName {
            name: name.into(),
            reason: problem.into(),
        }),
        None => Ok(()),
    }
}

/// A missing object as [`VeleroError::Missing`]; other store errors as they are.
fn missing(e: StoreError, backup: &str, what: &'static str, key: &str) -> VeleroError {
    if e.is_not_found() {
        VeleroError::Missing {
            backup: backup.into(),
            what,
            key: key.into(),
        }
    } else {
        VeleroError::Store(e)
    }
}

/// The store's size refusal as [`VeleroError::TooLarge`], naming what it was.
fn too_large(e: impl Into<VeleroError>, key: &str, what: &str) -> VeleroError {
    match e.into() {
        VeleroError::Store(StoreError::TooLarge { limit, .. }) => VeleroError::TooLarge {
            key: key.into(),
            what: what.into(),
            limit,
        },
        other => other,
    }
}
