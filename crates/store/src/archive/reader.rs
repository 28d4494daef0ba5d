//! Reading a backup back: checksums first, then the index, then frames by byte range.

use sha2::{Digest, Sha256};
use tokio::{io::AsyncReadExt, sync::mpsc};

use super::{ArchivedItem, FrameRef, IndexEntry, decode_frame, read_jsonl};
use crate::{Layout, ObjectStore, StoreError};

/// Streams the object at `key` and checks its size and sha256 against what `backup.json`
/// recorded. Holds one buffer in memory.
pub async fn verify_object(
    store: &dyn ObjectStore,
    key: &str,
    expected_size: u64,
    expected_sha256: &str,
) -> Result<(), StoreError> {
    read_checked(store, key, expected_size, expected_sha256, |_| {}).await
}

/// Streams the object at `key`, handing each block read to `each`, and checks its size
/// and sha256 against what `backup.json` recorded (a mismatch is [`StoreError::Corrupt`]
/// saying both). The one loop every checksum check of a backup goes through.
pub(crate) async fn read_checked(
    store: &dyn ObjectStore,
    key: &str,
    expected_size: u64,
    expected_sha256: &str,
    mut each: impl FnMut(&[u8]),
) -> Result<(), StoreError> {
    let mut reader = store.reader(key, None).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| StoreError::Service {
                operation: "reading",
                key: key.into(),
                detail: e.to_string(),
            })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        each(&buf[..n]);
        size += n as u64;
    }
    let sha = hex::encode(hasher.finalize());
    if size != expected_size || sha != expected_sha256 {
        return Err(StoreError::Corrupt {
            key: key.into(),
            detail: format!(
                "checksum mismatch: backup.json recorded {expected_size} bytes with sha256 {expected_sha256}, the store holds {size} bytes with sha256 {sha}"
            ),
        });
    }
    Ok(())
}

/// Streams the index of backup `name`.
pub async fn read_index(
    store: &dyn ObjectStore,
    name: &str,
) -> Result<mpsc::Receiver<Result<IndexEntry, StoreError>>, StoreError> {
    read_jsonl(store, &Layout::backup_index(name), 1024).await
}

/// Fetches and decodes one frame of backup `name`'s archive.
pub async fn read_frame(
    store: &dyn ObjectStore,
    name: &str,
    frame: FrameRef,
) -> Result<Vec<ArchivedItem>, StoreError> {
    let key = Layout::backup_archive(name);
    // The frame's size comes from the index, which the bucket holds: checked first.
    if frame.1 > super::frame::FRAME_LIMIT {
        return Err(StoreError::Corrupt {
            key,
            detail: format!(
                "the index gives a frame of {} bytes at {}, more than Arca ever writes: refused",
                frame.1, frame.0
            ),
        });
    }
    let mut reader = store.reader(&key, Some(frame.range())).await?;
    let mut bytes = Vec::with_capacity(frame.1 as usize);
    reader
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| StoreError::Service {
            operation: "reading",
            key: key.clone(),
            detail: e.to_string(),
        })?;
    if bytes.len() as u64 != frame.1 {
        return Err(StoreError::Corrupt {
            key,
            detail: format!(
                "frame at {} should be {} bytes, got {}",
                frame.0,
                frame.1,
                bytes.len()
            ),
        });
    }
    tokio::task::spawn_blocking(move || decode_frame(&bytes, &key))
        .await
        .map_err(|e| StoreError::Config(format!("decoding task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{
        FsStore,
        archive::{ArchiveWriter, Item, encode_frames},
    };

    fn item(ns: &str, name: &str) -> Item {
        Item {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            resource: "configmaps".into(),
            namespace: Some(ns.into()),
            name: name.into(),
            json: Bytes::from(format!("{{\"metadata\":{{\"name\":\"{name}\"}}}}")),
        }
    }

    #[tokio::test]
    async fn written_archives_read_back_by_frame() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "p")?;
        let mut writer = ArchiveWriter::create(&store, "b1").await?;
        for ns in ["a", "b", "c"] {
            for frame in encode_frames(&[item(ns, "x"), item(ns, "y")], 0)? {
                writer.append(frame).await?;
            }
        }
        let stats = writer.finish().await?;
        assert_eq!(stats.items, 6);
        verify_object(
            &store,
            &Layout::backup_archive("b1"),
            stats.archive_bytes,
            &stats.archive_sha256,
        )
        .await?;
        verify_object(
            &store,
            &Layout::backup_index("b1"),
            stats.index_bytes,
            &stats.index_sha256,
        )
        .await?;

        let mut index = read_index(&store, "b1").await?;
        let mut entries = Vec::new();
        while let Some(entry) = index.recv().await {
            entries.push(entry?);
        }
        assert_eq!(entries.len(), 6);
        let second = entries[2].frame;
        let items = read_frame(&store, "b1", second).await?;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].path, "resources/configmaps/namespaces/b/x.json");
        Ok(())
    }

    #[tokio::test]
    async fn tampering_is_detected() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        let mut writer = ArchiveWriter::create(&store, "b1").await?;
        for frame in encode_frames(&[item("a", "x")], 0)? {
            writer.append(frame).await?;
        }
        let stats = writer.finish().await?;
        let key = Layout::backup_archive("b1");
        let mut data = store.get(&key).await?.to_vec();
        data[5] ^= 1;
        store.put(&key, Bytes::from(data)).await?;
        let err = verify_object(&store, &key, stats.archive_bytes, &stats.archive_sha256)
            .await
            .expect_err("tampered archive");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        Ok(())
    }
}
