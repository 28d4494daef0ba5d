//! Reading files: each file is chunked and its chunks hashed on a worker thread; new chunks go
//! on to be compressed and encrypted, and the file's list of chunk ids comes back to the tree
//! being assembled.

use crossbeam_channel::{Receiver, Sender};
use rustic_core::{DataId, Id, ReadSourceOpen, repofile::BlobType};

use super::{Shared, WriterError, blob::Blob, chunker::Chunker, sha256};
use crate::source::CountingOpen;

/// A file to read.
pub(crate) struct FileJob {
    pub(crate) open: CountingOpen,
    /// The size its metadata says.
    pub(crate) size: u64,
    /// Where the outcome goes: `None` when the file could not be read (the source recorded
    /// why), and it is left out of the snapshot.
    pub(crate) reply: Sender<Option<FileRead>>,
}

impl std::fmt::Debug for FileJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A file's contents as stored.
#[derive(Debug)]
pub(crate) struct FileRead {
    pub(crate) content: Vec<DataId>,
    pub(crate) bytes: u64,
}

/// Reads the files of `jobs` until there are no more, sending new chunks to `blobs`.
pub(crate) fn read_files(
    jobs: &Receiver<FileJob>,
    chunker: &Chunker,
    shared: &Shared<'_>,
    blobs: &Sender<Blob>,
) -> Result<(), WriterError> {
    for job in jobs {
        shared.check()?;
        let outcome = read_file(job.open, job.size, chunker, shared, blobs)?;
        // The assembler waits for every reply: it can only be gone when the backup stops.
        shared.send(&job.reply, outcome)?;
    }
    Ok(())
}

/// One file's chunks; `Ok(None)` when it cannot be opened or read.
fn read_file(
    open: CountingOpen,
    size: u64,
    chunker: &Chunker,
    shared: &Shared<'_>,
    blobs: &Sender<Blob>,
) -> Result<Option<FileRead>, WriterError> {
    let Ok(reader) = open.open() else {
        return Ok(None);
    };
    let mut chunks = chunker.chunks(reader, size);
    let mut content = Vec::new();
    let mut bytes = 0u64;
    loop {
        // A canceled backup stops within a chunk (at most 8 MiB read), even when none of
        // its chunks is new (nothing is written that would notice).
        shared.check()?;
        let data = match chunks.next_chunk() {
            Ok(Some(data)) => data,
            Ok(None) => break,
            Err(_) => return Ok(None),
        };
        let id = sha256(&data);
        let len = data.len() as u64;
        bytes += len;
        shared.progress.add(len);
        content.push(DataId::from(Id::new(id)));
        if shared.known.claim(BlobType::Data, id) {
            let chunk = Blob {
                tpe: BlobType::Data,
                id,
                data,
            };
            shared.send(blobs, chunk)?;
        }
    }
    Ok(Some(FileRead { content, bytes }))
}
