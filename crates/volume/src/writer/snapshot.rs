//! One backup with the writer: the repository's index and the parent snapshot are read,
//! the pipeline stores the data, then the snapshot file is written.

use std::sync::Arc;

use rustic_core::{
    FileType, OpenStatus, ReadBackend, Repository, RusticError,
    jiff::{Unit, Zoned},
    repofile::{Chunker as ChunkerKind, ConfigFile, IndexFile, SnapshotFile},
};

use super::{
    Progress, Shared, WriterError,
    chunker::Chunker,
    crypto::Sealer,
    index::{KnownBlobs, TreeLocation, id_bytes},
    parent::ParentTrees,
    pipeline::{self, Plan},
    store::RepoFiles,
};
use crate::{Compression, ProgressFn, StoreBackend, error::VolumeError, source::RootedSource};

/// True when the writer can back up into a repository with this config (restic's Rabin
/// chunker; rustic's fixed-size chunker is left to rustic's archiver).
pub(crate) fn supports(config: &ConfigFile) -> bool {
    config.chunker() == ChunkerKind::Rabin
}

/// The pack size rustic would use for `tpe` with `stored` bytes of it in the repository:
/// the config's size, grown by the square root of what is stored, up to its limit.
fn pack_size(config: &ConfigFile, tpe: rustic_core::repofile::BlobType, stored: u64) -> usize {
    let (size, grow, limit) = config.packsize(tpe);
    let grown = u64::from(size) + u64::from(grow) * stored.isqrt();
    usize::try_from(grown.min(u64::from(limit))).unwrap_or(usize::MAX)
}

/// Backs up `source` into `snap` (host, tags, time set) recorded under `as_path`, compressing
/// data blobs as `compression` says: returns the snapshot as written, with its id.
pub(crate) fn write_snapshot(
    repo: &Repository<OpenStatus>,
    be: Arc<StoreBackend>,
    source: &RootedSource,
    mut snap: SnapshotFile,
    (as_path, compression): (&str, Compression),
    progress: ProgressFn,
    operation: &str,
) -> Result<SnapshotFile, VolumeError> {
    let location = be.location();
    let rustic = |what: &str, e: Box<RusticError>| {
        VolumeError::rustic(format!("{operation}: {what}"), &location, &e)
    };
    let writer = |e: WriterError| VolumeError::Repository {
        operation: operation.to_string(),
        detail: e.to_string(),
    };
    let mut summary = snap.summary.take().unwrap_or_default();
    summary.backup_start = Zoned::now();
    let config = repo.config().clone();
    let poly = config
        .poly()
        .map_err(|e| rustic("reading the chunker polynomial", e))?;
    let chunker = Chunker::new(
        poly,
        config.chunk_size(),
        config.chunk_min_size(),
        config.chunk_max_size(),
    )
    .ok_or_else(|| VolumeError::Repository {
        operation: operation.to_string(),
        detail: "the repository's chunk sizes are not restic's (a power of two between min and max): back it up with restic or rustic".into(),
    })?;
    let level = config.zstd().map_err(|e| rustic("reading the config", e))?;
    let sealer = Sealer::new(&repo.key()).map_err(|e| writer(e.into()))?;

    let mut known = KnownBlobs::default();
    let mut stored = [0u64; 2];
    let indexes = repo
        .stream_files::<IndexFile>()
        .map_err(|e| rustic("reading the index", e))?;
    for file in indexes {
        let (_, file) = file.map_err(|e| rustic("reading the index", e))?;
        for pack in file.packs {
            for blob in pack.blobs {
                let at = TreeLocation {
                    pack: *pack.id,
                    offset: blob.location.offset,
                    length: blob.location.length,
                    uncompressed: blob.location.uncompressed_length.map(|n| n.get()),
                };
                stored[usize::from(blob.tpe == rustic_core::repofile::BlobType::Tree)] +=
                    u64::from(blob.location.length);
                known.insert(blob.tpe, id_bytes(&blob.id), at);
            }
        }
    }

    let parent = repo
        .get_all_snapshots()
        .map_err(|e| rustic("listing the snapshots", e))?
        .into_iter()
        .filter(|s| {
            s.hostname == snap.hostname && s.label == snap.label && s.paths.iter().eq([as_path])
        })
        .max_by(|a, b| a.time.cmp(&b.time));
    if let Some(parent) = &parent {
        snap.parent = Some(parent.id);
        snap.parents = vec![parent.id];
    }
    let cancel = be.cancel().clone();
    let files = RepoFiles { be, sealer, level };
    let plan = Plan {
        files: &files,
        chunker: &chunker,
        level: blob_level(level),
        compress_data: compression == Compression::Auto,
        data_pack: pack_size(&config, rustic_core::repofile::BlobType::Data, stored[0]),
        tree_pack: pack_size(&config, rustic_core::repofile::BlobType::Tree, stored[1]),
    };
    let progress = Progress::new(progress);
    let shared = Shared::new(&known, &progress, &cancel);
    let previous_root = parent.as_ref().map(|p| p.tree);
    let trees = ParentTrees::new(&files, &known, previous_root);
    let root = pipeline::run(&plan, &shared, source, trees, previous_root).map_err(writer)?;

    shared.stats.fill(&mut summary);
    let end = Zoned::now();
    let seconds = |from: &Zoned| {
        end.since(from)
            .and_then(|span| span.total(Unit::Second))
            .unwrap_or_default()
    };
    summary.backup_duration = seconds(&summary.backup_start);
    summary.total_duration = seconds(&snap.time);
    summary.backup_end = end;
    snap.summary = Some(summary);
    snap.tree = root;
    snap.paths.add(as_path.to_string());
    let json = serde_json::to_vec(&snap).map_err(|e| VolumeError::Repository {
        operation: operation.to_string(),
        detail: format!("the snapshot could not be serialized ({e}); please report it"),
    })?;
    let id = files.save_json(FileType::Snapshot, &json).map_err(writer)?;
    snap.id = id.into();
    Ok(snap)
}

/// The zstd level of blobs when the repository's config leaves it to the writer (restic's
/// "default", 0): level 2. Measured on the bench's data (`docs/benchmarks.md`), level 2 is
/// 1.3-1.6x faster than zstd's default 3 at every chunk size and stores no more; on real files
/// (Python and Perl libraries, a Go binary) it stores 2-4% more than level 3 at 1.5-1.65x the
/// speed. A level set in the config is kept as it is.
pub(crate) const DEFAULT_BLOB_LEVEL: i32 = 2;

fn blob_level(config: Option<i32>) -> Option<i32> {
    config.map(|level| {
        if level == 0 {
            DEFAULT_BLOB_LEVEL
        } else {
            level
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_s_default_level_becomes_the_writer_s_and_a_set_level_is_kept() {
        assert_eq!(blob_level(Some(0)), Some(DEFAULT_BLOB_LEVEL));
        assert_eq!(blob_level(Some(3)), Some(3));
        assert_eq!(blob_level(Some(-1)), Some(-1));
        assert_eq!(blob_level(None), None, "format v1: never compressed");
    }
}
