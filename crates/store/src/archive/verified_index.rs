//! Reading a backup's index more than once, each time exactly as it was verified.
//!
//! A restore streams the index several times instead of holding it (once to survey it, once
//! to plan, once per tier). [`verify_index`] checks it whole against `backup.json` and keeps
//! the sha256 of each [`CHUNK`] bytes of it; [`VerifiedIndex::read`] checks every chunk
//! against that digest *before* decoding it, so no entry that differs from the verified
//! index ever reaches the restore. A difference is [`StoreError::Changed`].

use std::io::Read;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use super::{IndexEntry, jsonl::stream_lines, reader::read_checked};
use crate::{Layout, ObjectStore, StoreError};

/// Bytes of the compressed index checked at once on every read after the first.
pub const CHUNK: usize = 256 * 1024;

/// Entries decoded ahead of the consumer.
const AHEAD: usize = 1024;

/// The index of a backup as verified: its size and one sha256 per [`CHUNK`] bytes (32 bytes
/// per 256 KiB of compressed index: 4 KiB for a million items).
#[derive(Clone, Debug)]
pub struct VerifiedIndex {
    key: String,
    size: u64,
    chunks: Vec<[u8; 32]>,
}

/// Streams backup `name`'s index, checks its size and sha256 against what `backup.json`
/// recorded (the error says "checksum mismatch" as [`super::verify_object`]'s does), and
/// keeps the digest of each chunk for later reads.
pub async fn verify_index(
    store: &dyn ObjectStore,
    name: &str,
    expected_size: u64,
    expected_sha256: &str,
) -> Result<VerifiedIndex, StoreError> {
    let key = Layout::backup_index(name);
    let mut chunk = Sha256::new();
    let mut in_chunk = 0usize;
    let mut chunks = Vec::new();
    read_checked(store, &key, expected_size, expected_sha256, |mut block| {
        while !block.is_empty() {
            let take = block.len().min(CHUNK - in_chunk);
            chunk.update(&block[..take]);
            in_chunk += take;
            block = &block[take..];
            if in_chunk == CHUNK {
                chunks.push(chunk.finalize_reset().into());
                in_chunk = 0;
            }
        }
    })
    .await?;
    if in_chunk > 0 {
        chunks.push(chunk.finalize().into());
    }
    let size = expected_size;
    Ok(VerifiedIndex { key, size, chunks })
}

impl VerifiedIndex {
    /// Items' lines in the index, streamed through a bounded channel; every chunk is checked
    /// against the verified digest before it is decoded. An index that differs (changed,
    /// cut short, grown) ends the stream with [`StoreError::Changed`].
    pub async fn read(
        &self,
        store: &dyn ObjectStore,
    ) -> Result<mpsc::Receiver<Result<IndexEntry, StoreError>>, StoreError> {
        let reader = store.reader(&self.key, None).await?;
        let (tx, rx) = mpsc::channel(AHEAD);
        let checked = CheckedChunks {
            inner: SyncIoBridge::new(reader),
            expected: self.clone(),
            buffer: Vec::with_capacity(CHUNK),
            at: 0,
            next_chunk: 0,
        };
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || stream_lines(checked, &key, &tx));
        Ok(rx)
    }
}

/// Why a re-read chunk was refused; carried inside an `io::Error` through the decoder.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct ChangedChunk(pub(super) String);

/// A reader that hands out the bytes of a chunk only once the whole chunk matched.
struct CheckedChunks<R> {
    inner: R,
    expected: VerifiedIndex,
    buffer: Vec<u8>,
    /// Bytes of `buffer` handed out.
    at: usize,
    next_chunk: usize,
}

impl<R: Read> CheckedChunks<R> {
    fn changed(&self, detail: String) -> std::io::Error {
        std::io::Error::other(ChangedChunk(detail))
    }

    /// Reads and checks the next chunk into `buffer`; false at the end of the object.
    fn fill(&mut self) -> std::io::Result<bool> {
        self.buffer.clear();
        self.at = 0;
        let mut limited = (&mut self.inner).take(CHUNK as u64);
        limited.read_to_end(&mut self.buffer)?;
        let index = self.next_chunk;
        if self.buffer.is_empty() {
            if index != self.expected.chunks.len() {
                return Err(self.changed(format!(
                    "it ends after {} of its {} verified bytes",
                    index * CHUNK,
                    self.expected.size
                )));
            }
            return Ok(false);
        }
        let Some(expected) = self.expected.chunks.get(index) else {
            return Err(self.changed(format!(
                "it is longer than the {} bytes verified",
                self.expected.size
            )));
        };
        let digest: [u8; 32] = Sha256::digest(&self.buffer).into();
        if &digest != expected {
            return Err(self.changed(format!(
                "bytes {} to {} differ from the ones verified",
                index * CHUNK,
                index * CHUNK + self.buffer.len()
            )));
        }
        self.next_chunk += 1;
        Ok(true)
    }
}

impl<R: Read> Read for CheckedChunks<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buffer.len() && !self.fill()? {
            return Ok(0);
        }
        let n = out.len().min(self.buffer.len() - self.at);
        out[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use crate::FsStore;

    async fn read_all(
        index: &VerifiedIndex,
        store: &FsStore,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let mut rx = index.read(store).await?;
        let mut entries = Vec::new();
        while let Some(entry) = rx.recv().await {
            entries.push(entry?);
        }
        Ok(entries)
    }

    #[tokio::test]
    async fn every_read_gives_the_verified_entries() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        let stats = write_backup(&store, "b1", 0, 20_000).await?;
        assert!(stats.index_bytes > 2 * CHUNK as u64, "{stats:?}");
        let index = verify_index(&store, "b1", stats.index_bytes, &stats.index_sha256).await?;
        let first = read_all(&index, &store).await?;
        assert_eq!(first.len(), 20_000);
        assert_eq!(first[19_999].name, "cm-19999");
        assert_eq!(read_all(&index, &store).await?, first, "a second read");
        Ok(())
    }

    #[tokio::test]
    async fn a_wrong_checksum_is_refused_before_any_read() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        let stats = write_backup(&store, "b1", 0, 10).await?;
        let err = verify_index(&store, "b1", stats.index_bytes, &"0".repeat(64))
            .await
            .expect_err("wrong sha256");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        Ok(())
    }
}

#[cfg(test)]
mod hostile {
    use super::tests_support::*;
    use super::*;
    use crate::FsStore;

    /// Another backup's index put in place of the verified one between two reads: the
    /// read stops at the first chunk that differs, before decoding any of it.
    #[tokio::test]
    async fn an_index_swapped_after_verification_is_refused() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        let stats = write_backup(&store, "b1", 0, 20_000).await?;
        write_backup(&store, "other", 1, 20_000).await?;
        let index = verify_index(&store, "b1", stats.index_bytes, &stats.index_sha256).await?;
        let other = store.get(&Layout::backup_index("other")).await?;
        store.put(&Layout::backup_index("b1"), other).await?;
        let mut rx = index.read(&store).await?;
        let mut decoded = 0;
        let err = loop {
            match rx.recv().await {
                Some(Ok(_)) => decoded += 1,
                Some(Err(e)) => break e,
                None => panic!("the swapped index was read to its end"),
            }
        };
        assert_eq!(decoded, 0, "nothing of the swapped index is decoded");
        assert!(matches!(err, StoreError::Changed { .. }), "{err:?}");
        assert!(err.to_string().contains("changed in storage"), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn an_index_cut_short_or_grown_is_refused() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        let stats = write_backup(&store, "b1", 0, 20_000).await?;
        let index = verify_index(&store, "b1", stats.index_bytes, &stats.index_sha256).await?;
        let key = Layout::backup_index("b1");
        let original = store.get(&key).await?;
        for changed in [
            original.slice(..CHUNK * 2),
            bytes::Bytes::from([original.as_ref(), original.as_ref()].concat()),
        ] {
            store.put(&key, changed).await?;
            let mut rx = index.read(&store).await?;
            let mut last = None;
            while let Some(entry) = rx.recv().await {
                last = Some(entry);
            }
            let err = last.expect("a result").expect_err("a changed index");
            assert!(matches!(err, StoreError::Changed { .. }), "{err:?}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests_support {
    use bytes::Bytes;

    use crate::{
        FsStore, StoreError,
        archive::{ArchiveStats, ArchiveWriter, Item, encode_frames},
    };

    /// A backup of `items` ConfigMaps (their content seeded by `seed`), 100 a frame.
    pub async fn write_backup(
        store: &FsStore,
        name: &str,
        seed: usize,
        items: usize,
    ) -> Result<ArchiveStats, StoreError> {
        let mut writer = ArchiveWriter::create(store, name).await?;
        let all: Vec<Item> = (0..items)
            .map(|i| Item {
                group: String::new(),
                version: "v1".into(),
                kind: "ConfigMap".into(),
                resource: "configmaps".into(),
                namespace: Some(format!("ns-{}", i % 7)),
                name: format!("cm-{i}"),
                json: Bytes::from(format!("{{\"metadata\":{{\"name\":\"cm-{i}-{seed}\"}}}}")),
            })
            .collect();
        for page in all.chunks(100) {
            for frame in encode_frames(page, 0)? {
                writer.append(frame).await?;
            }
        }
        writer.finish().await
    }
}
