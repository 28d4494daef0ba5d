//! The backup's threads and the bounded queues between them (see the module's picture).
//! Memory stays bounded by the queues: at most a few chunks (8 MiB each at worst) per queue,
//! one data and one tree pack being filled, and [`PACKS_QUEUED`] + [`UPLOADERS`] finished
//! packs.

use std::{
    sync::Mutex,
    thread::ScopedJoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender, bounded};
use rustic_core::{FileType, ReadSource, TreeId, jiff::Timestamp, repofile::BlobType};

use super::{
    Shared, WriterError,
    assemble::assemble,
    blob::{Blob, BlobSealer, SealedBlob},
    chunker::Chunker,
    files::read_files,
    index::{StoredPack, index_json},
    pack::{FinishedPack, PackBuilder},
    parent::ParentTrees,
    store::RepoFiles,
    walk::walk,
};
use crate::source::RootedSource;

/// Threads chunking and hashing files.
const FILE_WORKERS: usize = 2;
/// Threads compressing and encrypting blobs.
const SEALERS: usize = 2;
/// Packs uploaded at once.
const UPLOADERS: usize = 2;
/// Finished packs waiting for an uploader.
const PACKS_QUEUED: usize = 1;
/// Blobs waiting to be sealed, and sealed blobs waiting for the packer.
const BLOBS_QUEUED: usize = 4;
/// Files the walk may hand out ahead of the file workers.
const JOBS_QUEUED: usize = 256;
/// Walk events ahead of the assembler.
const EVENTS_QUEUED: usize = 4096;
/// An index file is written once the stored packs hold this many blobs, or the oldest of
/// them waited this long (as rustic does), and at the end: a backup that stops early keeps
/// what it stored before for the next one to deduplicate against.
const INDEX_BLOBS: usize = 50_000;
const INDEX_AGE: Duration = Duration::from_secs(5 * 60);

/// What the pipeline writes with.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub(crate) files: &'a RepoFiles,
    pub(crate) chunker: &'a Chunker,
    /// zstd level for blobs (`None`: no compression).
    pub(crate) level: Option<i32>,
    /// Whether data blobs are compressed (where that pays); trees always are when `level`
    /// is set.
    pub(crate) compress_data: bool,
    /// Target sizes of data and tree packs.
    pub(crate) data_pack: usize,
    pub(crate) tree_pack: usize,
}

/// Stored packs not yet in an index file.
#[derive(Debug, Default)]
struct IndexBatch {
    packs: Vec<StoredPack>,
    blobs: usize,
    /// When the first of `packs` was stored.
    since: Option<Instant>,
}

impl IndexBatch {
    /// Adds a stored pack; returns the batch when it is due for an index file.
    fn add(&mut self, pack: StoredPack) -> Option<Self> {
        self.blobs += pack.blobs.len();
        self.packs.push(pack);
        let since = *self.since.get_or_insert_with(Instant::now);
        (self.blobs >= INDEX_BLOBS || since.elapsed() >= INDEX_AGE).then(|| std::mem::take(self))
    }
}

/// Writes an index file for `packs` (all stored).
fn write_index(files: &RepoFiles, packs: &[StoredPack]) -> Result<(), WriterError> {
    if packs.is_empty() {
        return Ok(());
    }
    let json = index_json(packs, &Timestamp::now().to_string());
    files.save_json(FileType::Index, &json).map(|_| ())
}

/// Backs up `source` into new packs and index files; returns the root tree's id. The first
/// failure of any stage stops all of them and is returned.
pub(crate) fn run(
    plan: &Plan<'_>,
    shared: &Shared<'_>,
    source: &RootedSource,
    mut parent: ParentTrees<'_>,
    previous_root: Option<TreeId>,
) -> Result<TreeId, WriterError> {
    let batch = Mutex::new(IndexBatch::default());
    let root = std::thread::scope(|s| {
        let (job_tx, job_rx) = bounded(JOBS_QUEUED);
        let (event_tx, event_rx) = bounded(EVENTS_QUEUED);
        let (blob_tx, blob_rx) = bounded::<Blob>(BLOBS_QUEUED);
        let (sealed_tx, sealed_rx) = bounded::<SealedBlob>(BLOBS_QUEUED);
        let (pack_tx, pack_rx) = bounded::<FinishedPack>(PACKS_QUEUED);
        let guard = |result: Result<(), WriterError>| {
            if let Err(e) = result {
                shared.fail(e);
            }
        };
        let mut workers: Vec<ScopedJoinHandle<'_, ()>> = Vec::new();
        workers.push(s.spawn(|| match source.size() {
            Ok(Some(total)) => shared.progress.set_total(total),
            Ok(None) => {}
            Err(e) => tracing::debug!("cannot size the backup: {}", e.display_log()),
        }));
        for _ in 0..FILE_WORKERS {
            let (jobs, blobs) = (job_rx.clone(), blob_tx.clone());
            workers.push(s.spawn(move || guard(read_files(&jobs, plan.chunker, shared, &blobs))));
        }
        for _ in 0..SEALERS {
            let (blobs, sealed) = (blob_rx.clone(), sealed_tx.clone());
            let sealer = BlobSealer::new(plan.files.sealer.clone(), plan.level, plan.compress_data);
            workers.push(
                s.spawn(move || guard(sealer.and_then(|b| seal(&blobs, &sealed, b, shared)))),
            );
        }
        workers.push(s.spawn(move || guard(pack(&sealed_rx, &pack_tx, plan, shared))));
        for _ in 0..UPLOADERS {
            let packs = pack_rx.clone();
            let batch = &batch;
            workers.push(s.spawn(move || guard(upload(&packs, plan.files, batch, shared))));
        }
        let assembler = s.spawn(move || {
            assemble(&event_rx, previous_root, shared, &blob_tx)
                .map_err(|e| shared.fail(e))
                .ok()
        });
        drop((job_rx, blob_rx, sealed_tx, pack_rx));
        guard(walk(source, &mut parent, shared, &job_tx, &event_tx));
        drop((job_tx, event_tx));
        let root = assembler.join();
        let mut panicked = root.is_err();
        for worker in workers {
            panicked |= worker.join().is_err();
        }
        if panicked {
            shared.fail(WriterError::Internal("a backup thread panicked"));
        }
        root.ok().flatten()
    });
    if let Some(failure) = shared.take_failure() {
        return Err(failure);
    }
    let root = root.ok_or(WriterError::Stopped)?;
    let rest = batch.into_inner().map(|b| b.packs).unwrap_or_default();
    write_index(plan.files, &rest)?;
    Ok(root)
}

/// Compresses and encrypts blobs.
fn seal(
    blobs: &Receiver<Blob>,
    sealed: &Sender<SealedBlob>,
    mut sealer: BlobSealer,
    shared: &Shared<'_>,
) -> Result<(), WriterError> {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &shared.stats;
    for blob in blobs {
        shared.check()?;
        let blob = sealer.seal(blob)?;
        let (count, added, packed) = match blob.tpe {
            BlobType::Data => (
                &stats.data_blobs,
                &stats.data_added_files,
                &stats.packed_files,
            ),
            BlobType::Tree => (
                &stats.tree_blobs,
                &stats.data_added_trees,
                &stats.packed_trees,
            ),
        };
        count.fetch_add(1, Relaxed);
        added.fetch_add(u64::from(blob.raw_len), Relaxed);
        packed.fetch_add(blob.bytes.len() as u64, Relaxed);
        shared.send(sealed, blob)?;
    }
    Ok(())
}

/// Puts sealed blobs into data and tree packs, handing out each pack once full.
fn pack(
    sealed: &Receiver<SealedBlob>,
    packs: &Sender<FinishedPack>,
    plan: &Plan<'_>,
    shared: &Shared<'_>,
) -> Result<(), WriterError> {
    let sealer = &plan.files.sealer;
    let mut data = PackBuilder::new(BlobType::Data, plan.data_pack);
    let mut trees = PackBuilder::new(BlobType::Tree, plan.tree_pack);
    let send = |pack| shared.send(packs, pack);
    for blob in sealed {
        shared.check()?;
        let builder = match blob.tpe {
            BlobType::Data => &mut data,
            BlobType::Tree => &mut trees,
        };
        builder.add(blob)?;
        if builder.is_full() {
            send(builder.finish(sealer)?)?;
        }
    }
    for builder in [&mut data, &mut trees] {
        if !builder.is_empty() {
            send(builder.finish(sealer)?)?;
        }
    }
    Ok(())
}

/// Stores packs, and writes an index file whenever enough stored packs await one.
fn upload(
    packs: &Receiver<FinishedPack>,
    files: &RepoFiles,
    batch: &Mutex<IndexBatch>,
    shared: &Shared<'_>,
) -> Result<(), WriterError> {
    for pack in packs {
        shared.check()?;
        let size = u32::try_from(pack.bytes.len()).map_err(|_| WriterError::BlobTooLarge)?;
        let id = files.put(FileType::Pack, pack.bytes, pack.tpe == BlobType::Tree)?;
        let full = {
            let mut batch = batch
                .lock()
                .map_err(|_| WriterError::Internal("the index batch lock is poisoned"))?;
            batch.add(StoredPack {
                id,
                size,
                blobs: pack.blobs,
            })
        };
        if let Some(full) = full {
            write_index(files, &full.packs)?;
        }
    }
    Ok(())
}
