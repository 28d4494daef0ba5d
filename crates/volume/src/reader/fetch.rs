//! Reading a batch's pack ranges with a few workers, each blob opened (decrypted,
//! decompressed, checked against its id) and written where it goes. Memory: each worker
//! holds one read ([`MAX_READ`](super::plan::MAX_READ)) and one blob's plaintext at a time.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Instant,
};

use rustic_core::{FileType, ReadBackend};

use super::{
    ReaderError, entries,
    index::BlobIndex,
    plan::{Read, Wanted},
};
use crate::writer::{Progress, sha256, store::RepoFiles};

/// Reads in flight: enough to keep both cores busy opening blobs while others wait on the
/// store.
pub(crate) const WORKERS: usize = 4;

/// What the workers of one batch share.
pub(crate) struct Fetch<'a> {
    pub(crate) files: &'a RepoFiles,
    pub(crate) index: &'a BlobIndex,
    /// The batch's files, by the number in each [`Place`](super::plan::Place).
    pub(crate) paths: &'a [PathBuf],
    pub(crate) progress: &'a Progress,
    /// The largest plaintext a data blob may have (the chunker's maximum).
    pub(crate) max_blob: u32,
    /// Worker time by step, summed over the workers.
    pub(crate) spent: &'a WorkerTime,
}

/// Nanoseconds the workers spent in each step, summed over workers (so up to [`WORKERS`]
/// times the wall time).
#[derive(Debug, Default)]
pub(crate) struct WorkerTime {
    /// Waiting for ranged reads from the store.
    pub(crate) fetching: AtomicU64,
    /// Decrypting, decompressing and checking blobs.
    pub(crate) opening: AtomicU64,
    /// Writing plaintext into files.
    pub(crate) writing: AtomicU64,
}

impl WorkerTime {
    fn add(counter: &AtomicU64, since: Instant) {
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, Relaxed);
    }

    /// "fetching 1.20s, opening 3.40s, writing 2.00s" (worker-seconds).
    pub(crate) fn describe(&self) -> String {
        let secs = |c: &AtomicU64| c.load(Relaxed) as f64 / 1e9;
        format!(
            "worker-seconds fetching {:.2}, opening {:.2}, writing {:.2}",
            secs(&self.fetching),
            secs(&self.opening),
            secs(&self.writing)
        )
    }
}

impl Fetch<'_> {
    /// Performs every read; the first failure stops the others and is returned.
    pub(crate) fn run(&self, reads: &[Read]) -> Result<(), ReaderError> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let failure: Mutex<Option<ReaderError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..WORKERS.min(reads.len()) {
                scope.spawn(|| {
                    let mut open: Option<(u32, File)> = None;
                    while !stop.load(Relaxed) {
                        let Some(read) = reads.get(next.fetch_add(1, Relaxed)) else {
                            break;
                        };
                        if let Err(e) = self.read(read, &mut open) {
                            stop.store(true, Relaxed);
                            if let Ok(mut first) = failure.lock() {
                                first.get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        match failure.into_inner() {
            Ok(Some(e)) => Err(e),
            Ok(None) => Ok(()),
            Err(_) => Err(ReaderError::Internal("a restore worker panicked")),
        }
    }

    /// One ranged read and the blobs in it. `open` keeps the last file written, as a
    /// large file's blobs come one after another.
    fn read(&self, read: &Read, open: &mut Option<(u32, File)>) -> Result<(), ReaderError> {
        let pack = self
            .index
            .pack(read.pack)
            .ok_or(ReaderError::Internal("a read names no pack"))?;
        let fetching = Instant::now();
        let bytes = self
            .files
            .be
            .read_partial(FileType::Pack, &pack, false, read.offset, read.length)
            .map_err(|e| {
                ReaderError::Store(e.display_log().trim_start_matches("Error: ").into())
            })?;
        WorkerTime::add(&self.spent.fetching, fetching);
        for blob in &read.blobs {
            let start = (blob.at.offset - read.offset) as usize;
            let sealed = bytes
                .get(start..start + blob.at.length as usize)
                .ok_or_else(|| {
                    ReaderError::Corrupt(format!(
                        "pack {pack} is shorter than its index says (blob {} at {}+{})",
                        hex::encode(blob.id),
                        blob.at.offset,
                        blob.at.length
                    ))
                })?;
            let opening = Instant::now();
            let plain = self.open_blob(blob, sealed)?;
            let zero = plain.iter().all(|b| *b == 0);
            WorkerTime::add(&self.spent.opening, opening);
            let writing = Instant::now();
            for place in &blob.places {
                // A blob of zeroes stays a hole: the file was made at its full length.
                if !zero {
                    let file = match open {
                        Some((n, file)) if *n == place.file => file,
                        _ => {
                            let path = self
                                .paths
                                .get(place.file as usize)
                                .ok_or(ReaderError::Internal("a place names no file"))?;
                            let file = entries::open_for_content(path)
                                .map_err(|e| ReaderError::io(path, &e))?;
                            &mut open.insert((place.file, file)).1
                        }
                    };
                    file.write_all_at(&plain, place.offset).map_err(|e| {
                        let path = self.paths.get(place.file as usize).cloned();
                        ReaderError::io(&path.unwrap_or_default(), &e)
                    })?;
                }
                self.progress.add(plain.len() as u64);
            }
            WorkerTime::add(&self.spent.writing, writing);
        }
        Ok(())
    }

    /// The plaintext of `blob` from its stored bytes: authenticated, decompressed within
    /// the chunker's maximum (an index cannot make the restore allocate more), and checked
    /// against its id.
    fn open_blob(&self, blob: &Wanted, sealed: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let name = || hex::encode(blob.id);
        let plain = self
            .files
            .sealer
            .open(sealed)
            .map_err(|e| ReaderError::Corrupt(format!("data blob {}: {e}", name())))?;
        let plain = match blob.at.uncompressed {
            Some(len) if len > self.max_blob => {
                return Err(ReaderError::Corrupt(format!(
                    "data blob {} claims {len} bytes uncompressed, more than a chunk can hold ({})",
                    name(),
                    self.max_blob
                )));
            }
            Some(len) => {
                let out = zstd::bulk::decompress(&plain, len as usize).map_err(|e| {
                    ReaderError::Corrupt(format!("data blob {} does not decompress: {e}", name()))
                })?;
                if out.len() != len as usize {
                    return Err(ReaderError::Corrupt(format!(
                        "data blob {} decompresses to {} bytes, its index says {len}",
                        name(),
                        out.len()
                    )));
                }
                out
            }
            None => plain,
        };
        if sha256(&plain) != blob.id {
            return Err(ReaderError::Corrupt(format!(
                "data blob {} does not match its id",
                name()
            )));
        }
        Ok(plain)
    }
}
