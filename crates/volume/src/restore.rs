//! Restoring a snapshot into a pod volume's folder.

use std::{
    fs::FileTimes,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::Path,
};

use rustic_core::{NoProgressBars, ReadBackend, RusticError, repofile::SnapshotId};

use crate::{
    VolumeRepository,
    error::{Result, VolumeError},
    progress::ProgressFn,
};

/// What a restore did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Entries other than folders (files, symlinks, …) of the snapshot now in the folder
    /// (written, or found identical), as [`SnapshotSummary::files`](crate::SnapshotSummary::files).
    pub files: u64,
    /// Bytes of those files' contents.
    pub bytes: u64,
}

impl VolumeRepository {
    /// Restores snapshot `snapshot_id` (its full id, or a unique prefix) into the folder
    /// `dest`, which must exist: the snapshot's root becomes `dest`'s contents. Permissions,
    /// symlinks, times and (when root) numeric owners are restored and zero-filled regions
    /// are left as holes; files already identical are kept, and files not in the snapshot are
    /// left alone. `progress` receives bytes written.
    ///
    /// Like a backup, it starts again when a concurrent prune replaced the index it listed.
    pub async fn restore(
        &self,
        snapshot_id: &str,
        dest: &Path,
        progress: ProgressFn,
    ) -> Result<RestoreSummary> {
        let mut attempt = 0;
        loop {
            match self.restore_once(snapshot_id, dest, progress.clone()).await {
                Err(e) if e.is_index_replaced() && attempt < crate::RACE_RETRIES => {
                    attempt += 1;
                    tracing::info!("{e}; starting again on the new index");
                }
                other => return other,
            }
        }
    }

    /// The volume may hold links planted by whoever used it before (a PersistentVolume's old
    /// contents), and a restore must never write through one. So
    /// the snapshot is written into a new, private staging folder inside the volume, then
    /// moved into place entry by entry: an existing link is replaced (a rename replaces the
    /// link itself, never its target), an existing real folder is merged into, and nothing is
    /// ever written through a path found in the volume. Same file system: nothing is copied.
    async fn restore_once(
        &self,
        snapshot_id: &str,
        dest: &Path,
        progress: ProgressFn,
    ) -> Result<RestoreSummary> {
        let root = tokio::fs::canonicalize(dest)
            .await
            .map_err(|e| VolumeError::Path {
                path: dest.display().to_string(),
                detail: format!(
                    "cannot restore into this folder ({e}): check that the volume is mounted into the data mover"
                ),
            })?;
        let staging = root.join(format!(".arca-restore-staging-{:016x}", rand_suffix()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| VolumeError::Path {
                path: staging.display().to_string(),
                detail: format!("cannot make the restore's staging folder: {e}"),
            })?;
        let restored = self.restore_into(snapshot_id, &staging, progress).await;
        let moved = match restored {
            Ok(summary) => {
                let (from, to) = (staging.clone(), root.clone());
                tokio::task::spawn_blocking(move || move_into_place(&from, &to))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|r| r)
                    .map(|()| summary)
                    .map_err(|e| VolumeError::Path {
                        path: root.display().to_string(),
                        detail: format!("moving the restored files into place: {e}"),
                    })
            }
            Err(e) => Err(e),
        };
        // Whatever happened, no staging folder is left (remove_dir_all does not follow links).
        if staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        moved
    }

    /// Restores into `dest`, the staging folder: already canonical (a new folder of the
    /// canonical volume root).
    async fn restore_into(
        &self,
        snapshot_id: &str,
        dest: &Path,
        progress: ProgressFn,
    ) -> Result<RestoreSummary> {
        if !dest.is_dir() {
            return Err(VolumeError::Path {
                path: dest.display().to_string(),
                detail: "is not a folder: restore into the volume's mount folder".into(),
            });
        }
        let dest = dest.to_path_buf();
        let this = self.clone();
        let wanted = snapshot_id.to_ascii_lowercase();
        let operation = format!("restoring snapshot {snapshot_id} into {}", dest.display());
        self.run(&operation.clone(), move |be| {
            let location = be.location();
            let failed =
                |e: Box<RusticError>| VolumeError::rustic(operation.clone(), &location, &e);
            let repo = this.open(be.clone(), NoProgressBars)?;
            let matches: Vec<SnapshotId> = repo
                .list::<SnapshotId>()
                .map_err(failed)?
                .filter(|id| !wanted.is_empty() && id.to_hex().as_str().starts_with(&wanted))
                .collect();
            let id = match matches.as_slice() {
                [id] => *id,
                [] => {
                    return Err(VolumeError::SnapshotNotFound {
                        id: wanted,
                        location,
                    });
                }
                _ => {
                    return Err(VolumeError::InvalidRequest(format!(
                        "snapshot id {wanted:?} matches {} snapshots: give the full id",
                        matches.len()
                    )));
                }
            };
            let snap = repo
                .get_snapshots(&[id.to_hex().as_str()])
                .map_err(failed)?
                .pop()
                .ok_or_else(|| VolumeError::SnapshotNotFound {
                    id: wanted.clone(),
                    location: location.clone(),
                })?;
            if let Some(tag) = this.namespace_only() {
                let namespace = tag.split_once('=').map_or(tag, |(_, ns)| ns);
                if !snap.tags.iter().any(|t| t == tag) {
                    return Err(VolumeError::InvalidRequest(format!(
                        "snapshot {wanted} in {location} is not a snapshot of namespace {namespace}'s volumes (it is not tagged {tag}; its tags: {}): it is not restored",
                        snap.tags
                    )));
                }
            }
            let summary =
                crate::reader::restore_snapshot(&repo, be, &snap, &dest, progress, &operation)?;
            tracing::info!(
                snapshot = %id.to_hex().as_str(),
                dest = %dest.display(),
                files = summary.files,
                bytes = summary.bytes,
                "pod volume restored"
            );
            Ok(summary)
        })
        .await
    }
}

/// A random suffix for the staging folder.
fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Moves every entry of `from` (the staging folder) into `to` (the volume's root), then
/// removes `from`. The root keeps its own mode, owner and times (kubelet's, as when rustic
/// wrote into it directly); see [`move_entries`].
fn move_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    move_entries(from, to)?;
    std::fs::remove_dir(from)
}

/// Moves the entries of `from` into `to`, which the restore must not write through: a link in
/// `to` is replaced, a real folder in `to` is merged into (and then takes the snapshot's
/// mode, owner and times), anything else is replaced.
fn move_entries(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let src_is_dir = entry.file_type()?.is_dir();
        match std::fs::symlink_metadata(&dst) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::rename(&src, &dst)?,
            Err(e) => return Err(e),
            // symlink_metadata: a link is never `is_dir`, whatever it points at.
            Ok(existing) if existing.is_dir() && src_is_dir => {
                move_entries(&src, &dst)?;
                copy_folder_metadata(&src, &dst)?;
                std::fs::remove_dir(&src)?;
            }
            Ok(existing) => {
                if existing.is_dir() {
                    std::fs::remove_dir_all(&dst)?;
                } else if src_is_dir {
                    std::fs::remove_file(&dst)?;
                }
                std::fs::rename(&src, &dst)?;
            }
        }
    }
    Ok(())
}

/// Gives the real folder `to` the mode, owner and times of `from`, through a handle opened
/// without following a link (fchmod, fchown, futimens).
fn copy_folder_metadata(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    let folder = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_DIRECTORY.bits())
        .open(to)?;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::fchown(&folder, Some(meta.uid()), Some(meta.gid()))?;
    }
    folder.set_permissions(meta.permissions())?;
    folder.set_times(
        FileTimes::new()
            .set_accessed(meta.accessed()?)
            .set_modified(meta.modified()?),
    )
}
