//! A Velero backup's items rewritten as Arca's archive (frames and index,
//! `arca_store::archive`) in another store, streaming: what Arca's restore engine reads.
//! Velero's tarball is a gzip stream and cannot be read by range; the engine fetches frames by
//! byte range. The source is only read; the target is a scratch store of the caller's.
//!
//! Memory: at most one batch of items (about [`FRAME_TARGET_BYTES`], plus one item of at most
//! [`crate::Limits::item_bytes`]), the frames encoded from it, and the reader's queue.

use arca_store::{
    ObjectStore,
    archive::{ArchiveStats, ArchiveWriter, FRAME_TARGET_BYTES, Item, encode_frames},
};

use crate::{Entry, RefusedItem, TarballSummary, VeleroError, VeleroLocation};

/// Refused items kept by name; beyond this many only their count grows.
pub const REFUSED_KEPT: usize = 1000;

/// What a transcode wrote and what it could not.
#[derive(Clone, Debug)]
pub struct Transcoded {
    /// The archive and index written to the target (items, sizes, sha256s).
    pub stats: ArchiveStats,
    /// Items of the tarball refused (each with its path and why), the first
    /// [`REFUSED_KEPT`].
    pub refused: Vec<RefusedItem>,
    /// How many items were refused in all.
    pub refused_count: u64,
    /// What else the tarball held.
    pub summary: TarballSummary,
}

/// Reads Velero backup `name` of `location` item by item and writes its items as Arca's
/// archive and index of backup `name` in `target`, refusing to write more than
/// `max_archive_bytes` of archive ([`VeleroError::ScratchFull`]; the index is about a tenth
/// of that at most). On any error nothing is left in `target` (both objects are aborted)
/// and the error says what failed.
pub async fn transcode(
    location: &VeleroLocation,
    name: &str,
    target: &dyn ObjectStore,
    max_archive_bytes: u64,
) -> Result<Transcoded, VeleroError> {
    let mut items = location.items(name).await?;
    let mut writer = ArchiveWriter::create(target, name).await?;
    let mut refused = Vec::new();
    let mut refused_count = 0u64;
    let mut batch: Vec<Item> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut space = Space {
        backup: name,
        limit: max_archive_bytes,
        used: 0,
    };
    loop {
        let entry = match items.next().await {
            Ok(entry) => entry,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        match entry {
            Some(Entry::Item(item)) => {
                batch_bytes += item.json.len();
                batch.push(item.into_archive_item());
                if batch_bytes >= FRAME_TARGET_BYTES {
                    batch_bytes = 0;
                    if let Err(e) = flush(&mut writer, &mut batch, &mut space).await {
                        writer.abort().await;
                        return Err(e);
                    }
                }
            }
            Some(Entry::Refused(item)) => {
                refused_count += 1;
                if refused.len() < REFUSED_KEPT {
                    refused.push(item);
                }
            }
            None => break,
        }
    }
    if let Err(e) = flush(&mut writer, &mut batch, &mut space).await {
        writer.abort().await;
        return Err(e);
    }
    let summary = items
        .summary()
        .cloned()
        .ok_or_else(|| VeleroError::Internal("the tarball ended without a summary".into()))?;
    let stats = writer.finish().await?;
    Ok(Transcoded {
        stats,
        refused,
        refused_count,
        summary,
    })
}

/// The scratch space a transcode may still fill.
struct Space<'a> {
    backup: &'a str,
    limit: u64,
    used: u64,
}

impl Space<'_> {
    /// Takes `bytes` of it, or says it is full.
    fn take(&mut self, bytes: u64) -> Result<(), VeleroError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(VeleroError::ScratchFull {
                backup: self.backup.to_string(),
                limit: self.limit,
            });
        }
        Ok(())
    }
}

/// Encodes the batch into frames (on a blocking thread) and appends them within `space`;
/// empties it.
async fn flush(
    writer: &mut ArchiveWriter,
    batch: &mut Vec<Item>,
    space: &mut Space<'_>,
) -> Result<(), VeleroError> {
    if batch.is_empty() {
        return Ok(());
    }
    let items = std::mem::take(batch);
    let frames = tokio::task::spawn_blocking(move || encode_frames(&items, 0))
        .await
        .map_err(|e| VeleroError::Internal(e.to_string()))??;
    for frame in frames {
        space.take(frame.bytes.len() as u64)?;
        writer.append(frame).await?;
    }
    Ok(())
}
