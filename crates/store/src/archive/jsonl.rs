//! JSON Lines compressed with zstd: the index, logs and per-item restore outcomes.
//! Written in frames of about 1 MiB, so neither side holds the whole file.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::{ObjectStore, ObjectWriter, StoreError};

const FLUSH_AT: usize = 1024 * 1024;

/// Streams JSON lines into an object.
pub struct JsonlWriter {
    out: Box<dyn ObjectWriter>,
    key: String,
    buffer: Vec<u8>,
    lines: u64,
    hasher: Sha256,
    compressed: u64,
}

impl std::fmt::Debug for JsonlWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlWriter")
            .field("key", &self.key)
            .field("lines", &self.lines)
            .finish()
    }
}

impl JsonlWriter {
    pub async fn create(store: &dyn ObjectStore, key: &str) -> Result<Self, StoreError> {
        Ok(Self {
            out: store.writer(key).await?,
            key: key.into(),
            buffer: Vec::with_capacity(FLUSH_AT + 4096),
            lines: 0,
            hasher: Sha256::new(),
            compressed: 0,
        })
    }

    /// Appends one value as a line.
    pub async fn push<T: Serialize>(&mut self, value: &T) -> Result<(), StoreError> {
        serde_json::to_writer(&mut self.buffer, value).map_err(|e| StoreError::Corrupt {
            key: self.key.clone(),
            detail: format!("encoding a line: {e}"),
        })?;
        self.buffer.push(b'\n');
        self.lines += 1;
        if self.buffer.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let frame = super::frame::compress(&self.buffer).map_err(|e| StoreError::Corrupt {
            key: self.key.clone(),
            detail: format!("compressing: {e}"),
        })?;
        self.buffer.clear();
        self.hasher.update(&frame);
        self.compressed += frame.len() as u64;
        self.out.write(Bytes::from(frame)).await
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Makes the object visible; returns (lines, compressed bytes, hex sha256 of them).
    pub async fn finish(mut self) -> Result<(u64, u64, String), StoreError> {
        if let Err(e) = self.flush().await {
            self.out.abort().await;
            return Err(e);
        }
        if self.compressed == 0 {
            // An empty zstd stream is not valid: write one empty frame.
            let frame = super::frame::compress(&[]).map_err(|e| StoreError::Corrupt {
                key: self.key.clone(),
                detail: format!("compressing: {e}"),
            })?;
            self.hasher.update(&frame);
            self.compressed += frame.len() as u64;
            self.out.write(Bytes::from(frame)).await?;
        }
        self.out.finish().await?;
        Ok((
            self.lines,
            self.compressed,
            hex::encode(self.hasher.finalize()),
        ))
    }

    /// Gives up; nothing is left at the key.
    pub async fn abort(self) {
        self.out.abort().await;
    }
}

/// The longest line read back from a JSONL object (an index entry, a log line, an outcome).
pub const LINE_LIMIT: u64 = 16 * 1024 * 1024;

/// Streams the lines of a JSONL+zstd object as values, through a bounded channel: at most
/// `capacity` decoded values are held ahead of the consumer, and no line longer than
/// [`LINE_LIMIT`] is held at all.
pub async fn read_jsonl<T: DeserializeOwned + Send + 'static>(
    store: &dyn ObjectStore,
    key: &str,
    capacity: usize,
) -> Result<mpsc::Receiver<Result<T, StoreError>>, StoreError> {
    let reader = store.reader(key, None).await?;
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let key = key.to_string();
    tokio::task::spawn_blocking(move || stream_lines(SyncIoBridge::new(reader), &key, &tx));
    Ok(rx)
}

/// Decodes the zstd JSON lines read from `reader` (object `key`) into `tx`, one value a
/// line, until the end, the first error, or the receiver is gone. Blocking.
pub(super) fn stream_lines<T: DeserializeOwned, R: std::io::Read>(
    reader: R,
    key: &str,
    tx: &mpsc::Sender<Result<T, StoreError>>,
) {
    let corrupt = |detail: String| StoreError::Corrupt {
        key: key.to_string(),
        detail,
    };
    let decoder = match zstd::stream::read::Decoder::new(reader) {
        Ok(d) => d,
        Err(e) => {
            let _ = tx.blocking_send(Err(corrupt(format!("not zstd: {e}"))));
            return;
        }
    };
    let mut lines = std::io::BufReader::new(decoder);
    let mut line = Vec::new();
    for number in 1u64.. {
        line.clear();
        // At most LINE_LIMIT + 1 bytes of one line are held, whatever the bucket holds.
        let read = std::io::BufRead::read_until(
            &mut std::io::Read::take(&mut lines, LINE_LIMIT + 1),
            b'\n',
            &mut line,
        );
        let parsed = match read {
            Ok(0) => return,
            Ok(_) if line.len() as u64 > LINE_LIMIT => Err(corrupt(format!(
                "line {number} is longer than {LINE_LIMIT} bytes, more than Arca ever writes: refused"
            ))),
            Ok(_) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(_) => serde_json::from_slice::<T>(&line)
                .map_err(|e| corrupt(format!("line {number}: {e}"))),
            Err(e) => Err(
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<super::verified_index::ChangedChunk>())
                {
                    Some(changed) => StoreError::Changed {
                        key: key.to_string(),
                        detail: changed.0.clone(),
                    },
                    None => corrupt(format!("reading: {e}")),
                },
            ),
        };
        let failed = parsed.is_err();
        if tx.blocking_send(parsed).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FsStore;

    #[tokio::test]
    async fn lines_round_trip_across_frames() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        let mut writer = JsonlWriter::create(&store, "x.jsonl.zst").await?;
        for i in 0..50_000u32 {
            writer
                .push(&serde_json::json!({"n": i, "pad": "some text to pass a frame"}))
                .await?;
        }
        let (lines, bytes, sha) = writer.finish().await?;
        assert_eq!(lines, 50_000);
        assert_eq!(sha.len(), 64);
        assert_eq!(store.size("x.jsonl.zst").await?, Some(bytes));
        let mut rx = read_jsonl::<serde_json::Value>(&store, "x.jsonl.zst", 16).await?;
        let mut n = 0u64;
        while let Some(value) = rx.recv().await {
            assert_eq!(value?["n"], n);
            n += 1;
        }
        assert_eq!(n, 50_000);
        Ok(())
    }

    #[tokio::test]
    async fn an_empty_file_is_valid() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        JsonlWriter::create(&store, "e.jsonl.zst")
            .await?
            .finish()
            .await?;
        let mut rx = read_jsonl::<serde_json::Value>(&store, "e.jsonl.zst", 4).await?;
        assert!(rx.recv().await.is_none());
        Ok(())
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use crate::FsStore;

    #[tokio::test]
    async fn an_endless_line_is_refused_after_the_limit() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        let line = std::io::Read::take(std::io::repeat(b'a'), LINE_LIMIT * 2);
        let bomb =
            zstd::stream::encode_all(line, 3).map_err(|e| StoreError::Config(e.to_string()))?;
        store.put("index.jsonl.zst", Bytes::from(bomb)).await?;
        let mut rx = read_jsonl::<serde_json::Value>(&store, "index.jsonl.zst", 4).await?;
        let first = rx.recv().await.expect("one result");
        let err = first.expect_err("an endless line");
        assert!(err.to_string().contains("longer than"), "{err}");
        assert!(rx.recv().await.is_none(), "nothing after the refusal");
        Ok(())
    }
}
