//! Arca's own restore of a restic-format snapshot, in bounded memory.
//!
//! rustic's restorer reads up to 20 pack ranges at once and queues every blob's plaintext
//! for writing without a bound (an agent peak above 800 MiB for a 2 GiB volume). This one
//! walks the snapshot's trees depth first, making each entry as it goes, and restores file
//! contents in batches:
//!
//! ```text
//! walk thread: trees (depth first) ─> folders, links, empty files made at once
//!                     └> files made at full length (holes), their blobs gathered ─┐
//!   batch full (or walk done): reads planned by pack and offset ([`plan`]) <──────┘
//!     └> 4 workers: ranged GET, decrypt, decompress, check the id, write ([`fetch`])
//!   then the batch's files and finished folders get their mode, owner and times
//! ```
//!
//! The walk runs in a thread of its own, one batch ahead of the workers: it makes the next
//! batch's entries while the current batch's contents are written.
//!
//! Memory is the index (as for a backup), the trees on the walk's path, three batches'
//! places (being written, waiting, being filled; each at most [`BATCH_BLOBS`] blobs and
//! [`BATCH_FILES`] files) and, per worker, one read and one blob. It restores into a new, private folder: nothing there can be a
//! link planted beforehand, and names from the snapshot are checked to be plain names.

mod entries;
mod fetch;
mod index;
mod plan;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rustic_core::{
    OpenStatus, ReadBackend, Repository,
    repofile::{IndexFile, Node, NodeType, SnapshotFile, Tree},
};

use self::{
    fetch::{Fetch, WorkerTime},
    index::BlobIndex,
    plan::{Needed, Place},
};
use crate::{
    ProgressFn, RestoreSummary, StoreBackend,
    error::VolumeError,
    writer::{Progress, crypto::Sealer, index::id_bytes, store::RepoFiles},
};

/// A batch restores its contents once it needs this many different blobs...
pub(crate) const BATCH_BLOBS: usize = 16 * 1024;
/// ...or holds this many files and folders waiting for their metadata.
pub(crate) const BATCH_FILES: usize = 8 * 1024;
/// The largest data blob accepted, whatever the repository's config says.
const MAX_BLOB: u32 = 64 << 20;

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReaderError {
    /// The store refused a read.
    #[error("{0}. Check the store, then restore again")]
    Store(String),
    /// Something read from the repository is not what the index or its id says.
    #[error(
        "{0}: the repository is damaged or was tampered with; run `restic check --read-data` on it"
    )]
    Corrupt(String),
    /// Writing into the volume failed.
    #[error("{path}: {detail}")]
    Io { path: String, detail: String },
    /// A bug in the reader.
    #[error("internal error: {0}; please report it")]
    Internal(&'static str),
}

impl ReaderError {
    fn io(path: &Path, err: &std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            detail: err.to_string(),
        }
    }
}

/// Files whose contents are being gathered, and what they need.
#[derive(Default)]
struct Batch {
    /// Files by number (a [`Place`]'s `file`), with their nodes for the metadata.
    files: Vec<(PathBuf, Node)>,
    /// Folders whose entries are all made, deepest first, for their metadata.
    folders: Vec<(PathBuf, Node)>,
    needed: Needed,
}

impl Batch {
    fn full(&self) -> bool {
        self.needed.len() >= BATCH_BLOBS || self.files.len() + self.folders.len() >= BATCH_FILES
    }
}

/// Restores the tree of `snap` into `dest`, a new empty folder.
pub(crate) fn restore_snapshot(
    repo: &Repository<OpenStatus>,
    be: Arc<StoreBackend>,
    snap: &SnapshotFile,
    dest: &Path,
    progress: ProgressFn,
    operation: &str,
) -> Result<RestoreSummary, VolumeError> {
    let location = be.location();
    let failed = |e: ReaderError| match e {
        ReaderError::Io { path, detail } => VolumeError::Path { path, detail },
        other => VolumeError::Repository {
            operation: operation.to_string(),
            detail: other.to_string(),
        },
    };
    let sealer = Sealer::new(&repo.key()).map_err(|e| VolumeError::Repository {
        operation: operation.to_string(),
        detail: e.to_string(),
    })?;
    let mut index = BlobIndex::default();
    let files = repo.stream_files::<IndexFile>().map_err(|e| {
        VolumeError::rustic(format!("{operation}: reading the index"), &location, &e)
    })?;
    for file in files {
        let (_, file) = file.map_err(|e| {
            VolumeError::rustic(format!("{operation}: reading the index"), &location, &e)
        })?;
        index.add(file);
    }
    let max_blob = u32::try_from(repo.config().chunk_max_size())
        .unwrap_or(MAX_BLOB)
        .min(MAX_BLOB);
    let progress = Progress::new(progress);
    if let Some(summary) = &snap.summary {
        progress.set_total(summary.total_bytes_processed);
    }
    let reader = Reader {
        files: RepoFiles {
            be,
            sealer,
            level: None,
        },
        index,
        progress,
        max_blob,
    };
    reader.restore(snap, dest).map_err(failed)
}

/// One restore's repository, index and progress.
struct Reader {
    files: RepoFiles,
    index: BlobIndex,
    progress: Progress,
    max_blob: u32,
}

/// A folder being walked: where it is restored, its remaining entries, and its own node
/// (none for the snapshot's root, which is `dest` itself).
struct Frame {
    path: PathBuf,
    entries: std::vec::IntoIter<Node>,
    node: Option<Node>,
}

impl Reader {
    /// Walks the snapshot in one thread while the batches it fills are restored in this
    /// one: the walk runs one batch ahead (it creates the next batch's files while the
    /// workers write the current one's contents), so neither half waits for the other.
    fn restore(&self, snap: &SnapshotFile, dest: &Path) -> Result<RestoreSummary, ReaderError> {
        let started = Instant::now();
        let mut times = Stages::default();
        let summary = std::thread::scope(|s| {
            let (full, batches) = crossbeam_channel::bounded::<Batch>(1);
            let walker = s.spawn(move || {
                let mut handed_over = Duration::ZERO;
                let walked = self.walk(snap, dest, &full, &mut handed_over);
                (walked, handed_over)
            });
            let mut flushed = Ok(());
            let mut waited = Instant::now();
            for batch in &batches {
                times.batches += 1;
                times.writers_waited += waited.elapsed();
                if let Err(e) = self.flush(batch, &mut times) {
                    flushed = Err(e);
                    break;
                }
                waited = Instant::now();
            }
            // A failed flush stops the walk at its next batch (its send fails).
            drop(batches);
            let (walked, handed_over) = walker
                .join()
                .map_err(|_| ReaderError::Internal("the restore's walk panicked"))?;
            times.walk_waited = handed_over;
            flushed?;
            walked
        })?;
        tracing::info!(
            files = summary.files,
            bytes = summary.bytes,
            "restored in {:.2}s: {}",
            started.elapsed().as_secs_f64(),
            times.describe()
        );
        Ok(summary)
    }

    /// Walks the snapshot's trees depth first, making each entry, and hands each full batch
    /// (and the last) to `full`.
    fn walk(
        &self,
        snap: &SnapshotFile,
        dest: &Path,
        full: &crossbeam_channel::Sender<Batch>,
        handed_over: &mut Duration,
    ) -> Result<RestoreSummary, ReaderError> {
        let mut hand_over = |batch: Batch| {
            let waiting = Instant::now();
            let sent = full
                .send(batch)
                .map_err(|_| ReaderError::Internal("the restore stopped writing batches"));
            *handed_over += waiting.elapsed();
            sent
        };
        let mut summary = RestoreSummary::default();
        let mut batch = Batch::default();
        let mut stack = vec![Frame {
            path: dest.to_path_buf(),
            entries: self.tree(&snap.tree)?.nodes.into_iter(),
            node: None,
        }];
        while let Some(frame) = stack.last_mut() {
            let Some(node) = frame.entries.next() else {
                if let Some(Frame {
                    path,
                    node: Some(node),
                    ..
                }) = stack.pop()
                {
                    batch.folders.push((path, node));
                }
                continue;
            };
            let path = entries::child(&frame.path, &node.name()).ok_or_else(|| {
                ReaderError::Corrupt(format!(
                    "the snapshot names an entry {:?} in {}, which is not a plain file name",
                    node.name(),
                    frame.path.display()
                ))
            })?;
            match node.node_type {
                NodeType::Dir => {
                    let subtree = node.subtree.ok_or_else(|| {
                        ReaderError::Corrupt(format!("folder {} has no tree", path.display()))
                    })?;
                    entries::make_folder(&path).map_err(|e| ReaderError::io(&path, &e))?;
                    let entries = self.tree(&subtree)?.nodes.into_iter();
                    stack.push(Frame {
                        path,
                        entries,
                        node: Some(node),
                    });
                }
                NodeType::File => {
                    summary.files += 1;
                    summary.bytes += node.meta.size;
                    self.gather(&mut batch, path, node)?;
                }
                _ => {
                    if entries::make_special(&path, &node)
                        .map_err(|e| ReaderError::io(&path, &e))?
                    {
                        summary.files += 1;
                        entries::finish(&path, &node).map_err(|e| ReaderError::io(&path, &e))?;
                    }
                }
            }
            if batch.full() {
                hand_over(std::mem::take(&mut batch))?;
            }
        }
        hand_over(batch)?;
        Ok(summary)
    }

    /// The tree `id`, checked against its id.
    fn tree(&self, id: &rustic_core::TreeId) -> Result<Tree, ReaderError> {
        let hash = id_bytes(id);
        let at = self.index.tree(&hash).ok_or_else(|| {
            ReaderError::Corrupt(format!("tree {id} of the snapshot is not in the index"))
        })?;
        self.files.read_tree(&hash, &at).map_err(|e| match e {
            crate::writer::WriterError::Store(s) => ReaderError::Store(s),
            other => ReaderError::Corrupt(other.to_string()),
        })
    }

    /// Makes the file `path` at its full length, and adds its blobs to the batch (an empty
    /// file gets its metadata at once).
    fn gather(&self, batch: &mut Batch, path: PathBuf, node: Node) -> Result<(), ReaderError> {
        entries::make_file(&path, node.meta.size).map_err(|e| ReaderError::io(&path, &e))?;
        let content = node.content.as_deref().unwrap_or_default();
        if content.is_empty() {
            if node.meta.size != 0 {
                return Err(ReaderError::Corrupt(format!(
                    "file {} has {} bytes and no content",
                    path.display(),
                    node.meta.size
                )));
            }
            return entries::finish(&path, &node).map_err(|e| ReaderError::io(&path, &e));
        }
        let file = u32::try_from(batch.files.len())
            .map_err(|_| ReaderError::Internal("too many files in a batch"))?;
        let mut offset = 0u64;
        for id in content {
            let hash = id_bytes(id);
            let at = self.index.data(&hash).ok_or_else(|| {
                ReaderError::Corrupt(format!(
                    "data blob {id} of {} is not in the index",
                    path.display()
                ))
            })?;
            batch.needed.add(hash, at, Place { file, offset });
            offset += u64::from(at.uncompressed.unwrap_or_else(|| {
                at.length
                    .saturating_sub(crate::writer::crypto::OVERHEAD as u32)
            }));
        }
        if offset != node.meta.size {
            return Err(ReaderError::Corrupt(format!(
                "file {} has {} bytes, its blobs hold {offset}",
                path.display(),
                node.meta.size
            )));
        }
        batch.files.push((path, node));
        Ok(())
    }

    /// Restores the batch's contents, then the metadata of its files and of the folders
    /// finished meanwhile.
    fn flush(&self, batch: Batch, times: &mut Stages) -> Result<(), ReaderError> {
        let contents = Instant::now();
        let paths: Vec<PathBuf> = batch.files.iter().map(|(p, _)| p.clone()).collect();
        let reads = batch.needed.into_reads();
        times.reads += reads.len();
        Fetch {
            files: &self.files,
            index: &self.index,
            paths: &paths,
            progress: &self.progress,
            max_blob: self.max_blob,
            spent: &times.workers,
        }
        .run(&reads)?;
        drop(reads);
        times.contents += contents.elapsed();
        let metadata = Instant::now();
        for (path, node) in batch.files.iter().chain(&batch.folders) {
            entries::finish(path, node).map_err(|e| ReaderError::io(path, &e))?;
        }
        times.metadata += metadata.elapsed();
        Ok(())
    }
}

/// Where a restore's time went, for its log line: what an operator needs to tell a slow
/// store (contents), a slow filesystem (the walk makes every entry, metadata) and the
/// pipeline's own waits apart.
#[derive(Debug, Default)]
struct Stages {
    batches: usize,
    reads: usize,
    /// The writers writing contents (ranged reads, decrypt, check, write).
    contents: Duration,
    /// Modes, owners and times of files and folders.
    metadata: Duration,
    /// The writers waiting for the walk's next batch.
    writers_waited: Duration,
    /// The walk waiting for the writers to take a batch.
    walk_waited: Duration,
    workers: WorkerTime,
}

impl Stages {
    fn describe(&self) -> String {
        format!(
            "{} batches, {} reads; contents {:.2}s ({}), metadata {:.2}s, writers waiting for the walk {:.2}s, walk waiting for the writers {:.2}s",
            self.batches,
            self.reads,
            self.contents.as_secs_f64(),
            self.workers.describe(),
            self.metadata.as_secs_f64(),
            self.writers_waited.as_secs_f64(),
            self.walk_waited.as_secs_f64()
        )
    }
}
