//! Arca's own writer of restic-format snapshots: the backup's write path, without rustic's
//! archiver (restore and forget still use rustic).
//!
//! What it adds over rustic's archiver, for the same repository format:
//! - the chunker's rolling-hash tables are built once per backup, not once per file;
//! - a blob is stored uncompressed when compression does not pay (random data);
//! - no second decryption and decompression of every blob after writing it;
//! - two pack uploads in flight.
//!
//! The pipeline (threads, bounded queues; [`pipeline`]):
//!
//! ```text
//! walk ─ files to read ─> file workers (chunk, hash) ─ new chunks ─> sealers (zstd, AES)
//!   │                            │ chunk ids                              │
//!   └─ events ─> assembler (trees, in walk order) ─ new trees ────────────┤
//!                                                                         v
//!                index files <─ uploaders (2 packs in flight) <─ packer (data / tree packs)
//! ```
//!
//! The index files are written once their packs are stored, the snapshot file last: a
//! backup that stops half way leaves only packs that no index names (a prune removes them).

mod assemble;
mod blob;
mod chunker;
pub(crate) mod crypto;
mod files;
pub(crate) mod index;
mod pack;
mod parent;
mod pipeline;
mod snapshot;
pub(crate) mod store;
mod walk;

use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use sha2::{Digest, Sha256};

pub(crate) use snapshot::{supports, write_snapshot};

use crate::{BytesProgress, ProgressFn};

/// How often a stage waiting on a queue checks whether the backup stopped.
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// A SHA-256: the name of every blob, pack and repository file.
pub(crate) type Hash = [u8; 32];

/// The SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// Why writing a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriterError {
    /// The store refused a read or write.
    #[error("{0}. Check the store, then run the backup again")]
    Store(String),
    /// zstd failed.
    #[error("compression failed: {0}")]
    Compression(std::io::Error),
    /// Encryption or decryption failed.
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    /// Something read from the repository is not what its id says.
    #[error("{0}: run `restic check` on the repository")]
    Corrupt(String),
    /// A blob or pack past restic's 4 GiB limits.
    #[error("a blob or pack is too large for the repository format")]
    BlobTooLarge,
    /// A bug in the writer.
    #[error("internal error: {0}; please report it")]
    Internal(&'static str),
    /// Another part of the backup failed first (that failure is the one reported).
    #[error("the backup stopped")]
    Stopped,
}

impl WriterError {
    /// A store failure, with rustic's one-line report of it.
    pub(crate) fn store(err: &rustic_core::RusticError) -> Self {
        Self::Store(err.display_log().trim_start_matches("Error: ").to_string())
    }
}

/// Byte progress of file contents, forwarded to the caller.
pub(crate) struct Progress {
    callback: ProgressFn,
    done: AtomicU64,
    total: AtomicU64,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("done", &self.done)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Progress {
    pub(crate) fn new(callback: ProgressFn) -> Self {
        Self {
            callback,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    fn report(&self) {
        (self.callback)(BytesProgress {
            done: self.done.load(Relaxed),
            total: self.total.load(Relaxed),
        });
    }

    /// `n` more bytes read.
    pub(crate) fn add(&self, n: u64) {
        self.done.fetch_add(n, Relaxed);
        self.report();
    }

    /// The bytes expected in all.
    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total, Relaxed);
        self.report();
    }
}

/// Counts for the snapshot's summary.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    files: AtomicU64,
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    bytes: AtomicU64,
    dirs: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unmodified: AtomicU64,
    dirsize: AtomicU64,
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    data_added_files: AtomicU64,
    data_added_trees: AtomicU64,
    packed_files: AtomicU64,
    packed_trees: AtomicU64,
}

/// What every stage of one backup shares.
#[derive(Debug)]
pub(crate) struct Shared<'a> {
    pub(crate) known: &'a index::KnownBlobs,
    pub(crate) progress: &'a Progress,
    pub(crate) stats: Stats,
    stop: AtomicBool,
    failure: Mutex<Option<WriterError>>,
    /// The caller's flag: set, every stage stops as after a failure.
    cancel: &'a crate::Cancel,
}

impl<'a> Shared<'a> {
    pub(crate) fn new(
        known: &'a index::KnownBlobs,
        progress: &'a Progress,
        cancel: &'a crate::Cancel,
    ) -> Self {
        Self {
            known,
            progress,
            stats: Stats::default(),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            cancel,
        }
    }

    /// `Err(Stopped)` once some stage failed or the caller canceled the backup.
    pub(crate) fn check(&self) -> Result<(), WriterError> {
        if self.stop.load(Relaxed) || self.cancel.is_canceled() {
            Err(WriterError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Records a stage's failure and stops the others; the first real failure is kept.
    pub(crate) fn fail(&self, err: WriterError) {
        self.stop.store(true, Relaxed);
        if let Ok(mut first) = self.failure.lock()
            && (first.is_none() || matches!(*first, Some(WriterError::Stopped)))
        {
            *first = Some(err);
        }
    }

    /// Sends `value`, waiting while `to` is full, but not past a failure elsewhere: a stage
    /// blocked on a full queue would otherwise keep the backup from ending.
    pub(crate) fn send<T>(&self, to: &Sender<T>, mut value: T) -> Result<(), WriterError> {
        loop {
            match to.send_timeout(value, POLL) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(back)) => {
                    self.check()?;
                    value = back;
                }
                Err(SendTimeoutError::Disconnected(_)) => return Err(WriterError::Stopped),
            }
        }
    }

    /// The next message of `from`, waiting for it, but not past a failure elsewhere.
    pub(crate) fn recv<T>(&self, from: &Receiver<T>) -> Result<T, WriterError> {
        loop {
            match from.recv_timeout(POLL) {
                Ok(value) => return Ok(value),
                Err(RecvTimeoutError::Timeout) => self.check()?,
                Err(RecvTimeoutError::Disconnected) => return Err(WriterError::Stopped),
            }
        }
    }

    /// The failure that stopped the backup, if any.
    pub(crate) fn take_failure(&self) -> Option<WriterError> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }
}

impl Stats {
    /// Sets the counts of a snapshot's summary.
    pub(crate) fn fill(&self, summary: &mut rustic_core::repofile::SnapshotSummary) {
        let get = |c: &AtomicU64| c.load(Relaxed);
        summary.files_new = get(&self.files_new);
        summary.files_changed = get(&self.files_changed);
        summary.files_unmodified = get(&self.files_unmodified);
        summary.total_files_processed = get(&self.files);
        summary.total_bytes_processed = get(&self.bytes);
        summary.dirs_new = get(&self.dirs_new);
        summary.dirs_changed = get(&self.dirs_changed);
        summary.dirs_unmodified = get(&self.dirs_unmodified);
        summary.total_dirs_processed = get(&self.dirs);
        summary.total_dirsize_processed = get(&self.dirsize);
        summary.data_blobs = get(&self.data_blobs);
        summary.tree_blobs = get(&self.tree_blobs);
        summary.data_added_files = get(&self.data_added_files);
        summary.data_added_trees = get(&self.data_added_trees);
        summary.data_added = summary.data_added_files + summary.data_added_trees;
        summary.data_added_files_packed = get(&self.packed_files);
        summary.data_added_trees_packed = get(&self.packed_trees);
        summary.data_added_packed =
            summary.data_added_files_packed + summary.data_added_trees_packed;
    }
}
