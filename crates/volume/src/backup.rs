//! Backing up a pod volume's folder into a snapshot.

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use rustic_core::{
    BackupOptions, Excludes, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions,
    ReadBackend, SnapshotOptions, StringList,
};

use crate::{
    VolumeRepository,
    error::{Result, VolumeError},
    progress::{ForwardBars, ProgressFn},
    source::{RootedSource, Skipped},
};

/// What a snapshot records besides the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The stable path recorded in the snapshot (`/<namespace>/<pod-or-pvc>/<volume>`),
    /// whatever folder the data was read from: the latest snapshot with the same path and
    /// `hostname` is the parent, so unchanged files are not read again after a pod restart.
    /// Absolute, without `.` or `..`.
    pub as_path: String,
    /// The host name recorded (part of the parent match).
    pub hostname: String,
    /// Tags recorded (not part of the parent match).
    pub tags: Vec<String>,
}

/// Whether a backup compresses file data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Each data blob is compressed (zstd, the repository's level) when that saves at least
    /// 3%; large chunks are judged on two samples first.
    #[default]
    Auto,
    /// Data blobs are stored as they are, without trying. Trees (folder listings) are
    /// still compressed: they are small and shrink well.
    Off,
}

/// Which code writes a backup's snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackupWriter {
    /// Arca's own writer (the crate's `writer` module): the default.
    #[default]
    Arca,
    /// rustic's archiver, as before Arca had its own: kept to compare with, and used for
    /// repositories whose chunker Arca's writer does not support.
    Rustic,
}

/// What a backup did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The snapshot's full id (64 hex digits).
    pub id: String,
    /// The parent snapshot used, if any.
    pub parent: Option<String>,
    /// Bytes of file contents in the snapshot.
    pub total_bytes: u64,
    /// Entries other than folders (files, symlinks, …) in the snapshot.
    pub files: u64,
    /// Bytes actually put to the store by this backup (packs, index, snapshot: compressed
    /// and encrypted).
    pub bytes_uploaded: u64,
    /// Bytes of new data (before compression) this snapshot added to the repository.
    pub data_added: u64,
    /// Entries that could not be read and are missing from the snapshot.
    pub skipped: u64,
    /// The first few skipped entries, with the reason.
    pub skipped_sample: Vec<String>,
}

impl SnapshotRequest {
    fn validate(&self) -> Result<()> {
        let path = Path::new(&self.as_path);
        let clean = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !path.is_absolute() || !clean {
            return Err(VolumeError::InvalidRequest(format!(
                "the snapshot path {:?} must be absolute, without `.` or `..`",
                self.as_path
            )));
        }
        if self.hostname.is_empty() {
            return Err(VolumeError::InvalidRequest(
                "the snapshot's host name is empty".into(),
            ));
        }
        Ok(())
    }
}

impl VolumeRepository {
    /// Backs up the contents of the folder `source` into a new snapshot whose root is the
    /// folder itself (restoring it yields the folder's contents), with the latest snapshot of
    /// the same `hostname` and `as_path` as parent. `progress` receives bytes read.
    ///
    /// Entries that cannot be read are skipped and counted in
    /// [`SnapshotSummary::skipped`]; the snapshot is still written. The folder's own
    /// metadata (its mode and times) is not recorded.
    ///
    /// A prune running at the same time (a deletion) may replace index files between the
    /// moment they are listed and read; the backup then starts again, up to
    /// [`crate::RACE_RETRIES`] times, on the new index.
    pub async fn backup(
        &self,
        source: &Path,
        request: &SnapshotRequest,
        progress: ProgressFn,
    ) -> Result<SnapshotSummary> {
        self.backup_with(source, request, progress, BackupWriter::Arca)
            .await
    }

    /// [`Self::backup`], with the snapshot written by `writer`.
    pub async fn backup_with(
        &self,
        source: &Path,
        request: &SnapshotRequest,
        progress: ProgressFn,
        writer: BackupWriter,
    ) -> Result<SnapshotSummary> {
        let mut attempt = 0;
        loop {
            match self
                .backup_once(source, request, progress.clone(), writer)
                .await
            {
                Err(e) if e.is_index_replaced() && attempt < crate::RACE_RETRIES => {
                    attempt += 1;
                    tracing::info!("{e}; starting again on the new index");
                }
                other => return other,
            }
        }
    }

    async fn backup_once(
        &self,
        source: &Path,
        request: &SnapshotRequest,
        progress: ProgressFn,
        writer: BackupWriter,
    ) -> Result<SnapshotSummary> {
        request.validate()?;
        let source = tokio::fs::canonicalize(source)
            .await
            .map_err(|e| VolumeError::Path {
                path: source.display().to_string(),
                detail: format!(
                    "cannot back up this folder ({e}): check that the volume is mounted into the data mover"
                ),
            })?;
        if !source.is_dir() {
            return Err(VolumeError::Path {
                path: source.display().to_string(),
                detail: "is not a folder: only a volume's folder can be backed up".into(),
            });
        }
        let this = self.clone();
        let request = request.clone();
        let operation = format!("backing up {}", source.display());
        self.run(&operation.clone(), move |be| {
            let location = be.location();
            let counters = be.counters();
            let failed = |e: Box<rustic_core::RusticError>| {
                VolumeError::rustic(operation.clone(), &location, &e)
            };
            let mut tags = StringList::default();
            for tag in &request.tags {
                tags.add(tag.clone());
            }
            let mut options = SnapshotOptions::default();
            options.host = Some(request.hostname.clone());
            options.command = Some("arca pod volume backup".into());
            options.tags = vec![tags];
            let snap = options.to_snapshot().map_err(failed)?;
            let skipped = Arc::new(Skipped::default());
            let local = LocalSource::new(
                LocalSourceSaveOptions::default(),
                &Excludes::default(),
                &LocalSourceFilterOptions::default(),
                &[&source],
            )
            .map_err(failed)?;
            let src = RootedSource::new(local, source.clone(), skipped.clone());
            let own = writer == BackupWriter::Arca;
            let snap = match this.open(be.clone(), ForwardBars::new(progress.clone()))? {
                repo if own && crate::writer::supports(repo.config()) => {
                    crate::writer::write_snapshot(
                        &repo,
                        be,
                        &src,
                        snap,
                        (&request.as_path, this.compression()),
                        progress,
                        &operation,
                    )?
                }
                repo => {
                    let repo = repo.to_indexed_ids().map_err(failed)?;
                    repo.archive(
                        &BackupOptions::default(),
                        &src,
                        snap,
                        &[PathBuf::from(&request.as_path)],
                    )
                    .map_err(failed)?
                }
            };
            let (total_bytes, files, data_added) = snap.summary.as_ref().map_or((0, 0, 0), |s| {
                (
                    s.total_bytes_processed,
                    s.total_files_processed,
                    s.data_added,
                )
            });
            let summary = SnapshotSummary {
                id: snap.id.to_hex().as_str().to_string(),
                parent: snap.parent.map(|p| p.to_hex().as_str().to_string()),
                total_bytes,
                files,
                bytes_uploaded: counters.written(),
                data_added,
                skipped: skipped.count(),
                skipped_sample: skipped.sample(),
            };
            tracing::info!(
                snapshot = %summary.id,
                files,
                total_bytes,
                bytes_uploaded = summary.bytes_uploaded,
                skipped = summary.skipped,
                "pod volume backed up"
            );
            Ok(summary)
        })
        .await
    }
}
