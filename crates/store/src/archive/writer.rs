//! Writing `resources.tar.zst` and `index.jsonl.zst` side by side, streaming.

use sha2::{Digest, Sha256};

use super::{ArchiveStats, EncodedFrame, FrameRef, JsonlWriter, frame::end_frame};
use crate::{Layout, ObjectStore, ObjectWriter, StoreError};

/// Appends frames to a backup's archive and their entries to its index.
pub struct ArchiveWriter {
    archive: Box<dyn ObjectWriter>,
    index: JsonlWriter,
    offset: u64,
    hasher: Sha256,
    items: u64,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("offset", &self.offset)
            .field("items", &self.items)
            .finish()
    }
}

impl ArchiveWriter {
    /// Starts the archive and index of backup `name`.
    pub async fn create(store: &dyn ObjectStore, name: &str) -> Result<Self, StoreError> {
        let archive = store.writer(&Layout::backup_archive(name)).await?;
        let index = match JsonlWriter::create(store, &Layout::backup_index(name)).await {
            Ok(index) => index,
            Err(e) => {
                archive.abort().await;
                return Err(e);
            }
        };
        Ok(Self {
            archive,
            index,
            offset: 0,
            hasher: Sha256::new(),
            items: 0,
        })
    }

    /// Appends a frame and indexes its items.
    pub async fn append(&mut self, frame: EncodedFrame) -> Result<(), StoreError> {
        let length = frame.bytes.len() as u64;
        let at = FrameRef(self.offset, length);
        self.hasher.update(&frame.bytes);
        self.archive.write(frame.bytes).await?;
        self.offset += length;
        for mut entry in frame.entries {
            entry.frame = at;
            self.index.push(&entry).await?;
            self.items += 1;
        }
        Ok(())
    }

    /// Items appended so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Compressed bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Ends the tar stream and makes both objects visible.
    pub async fn finish(mut self) -> Result<ArchiveStats, StoreError> {
        let end = match end_frame() {
            Ok(end) => end,
            Err(e) => {
                self.abort().await;
                return Err(e);
            }
        };
        self.hasher.update(&end);
        self.offset += end.len() as u64;
        if let Err(e) = self.archive.write(end).await {
            self.index.abort().await;
            return Err(e);
        }
        let archive_bytes = match self.archive.finish().await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.index.abort().await;
                return Err(e);
            }
        };
        let (lines, index_bytes, index_sha256) = self.index.finish().await?;
        Ok(ArchiveStats {
            items: lines,
            archive_bytes,
            archive_sha256: hex::encode(self.hasher.finalize()),
            index_bytes,
            index_sha256,
            volumes_bytes: None,
            volumes_sha256: None,
            csi_snapshots_bytes: None,
            csi_snapshots_sha256: None,
        })
    }

    /// Gives up: neither object is left behind.
    pub async fn abort(self) {
        self.archive.abort().await;
        self.index.abort().await;
    }
}
