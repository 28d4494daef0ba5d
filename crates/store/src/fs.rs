//! A directory as an object store: `<path>/<bucket>/<prefix>/<key>`, the same layout as S3.

use std::{
    ops::Range,
    path::{Component, Path, PathBuf},
};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::{ObjectInfo, ObjectReader, ObjectStore, ObjectWriter, StoreError};

/// Objects as files under a root directory. Writes land in a temporary file and are renamed
/// into place, so a reader never sees half an object.
#[derive(Clone, Debug)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// A store rooted at `path/bucket/prefix`; the folder is created if missing.
    pub fn new(path: &Path, bucket: &str, prefix: &str) -> Result<Self, StoreError> {
        if !path.is_absolute() {
            return Err(StoreError::Config(format!(
                "config.path {path:?} must be an absolute directory"
            )));
        }
        let mut root = path.join(bucket);
        for part in prefix.split('/').filter(|p| !p.is_empty()) {
            root.push(part);
        }
        std::fs::create_dir_all(&root).map_err(|source| StoreError::Io {
            operation: "creating",
            path: root.display().to_string(),
            source,
        })?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        let safe = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !safe || key.is_empty() {
            return Err(StoreError::Config(format!("refusing object key {key:?}")));
        }
        Ok(self.root.join(relative))
    }

    fn key_of(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.root).ok()?;
        Some(relative.to_string_lossy().replace('\\', "/"))
    }
}

fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Io {
        operation,
        path,
        source,
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{:08x}", rand::random::<u32>()))
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let mut writer = self.writer(key).await?;
        writer.write(body).await?;
        writer.finish().await.map(|_| ())
    }

    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io("creating", parent))?;
        }
        let temp = temp_path(&path);
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(io("creating", &temp))?;
        Ok(Box::new(FsWriter {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            temp,
            path,
            written: 0,
        }))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound { key: key.into() })
            }
            Err(e) => Err(io("reading", &path)(e)),
        }
    }

    async fn reader(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ObjectReader, StoreError> {
        let path = self.path(key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { key: key.into() });
            }
            Err(e) => return Err(io("opening", &path)(e)),
        };
        match range {
            None => Ok(Box::pin(file)),
            Some(range) => {
                file.seek(std::io::SeekFrom::Start(range.start))
                    .await
                    .map_err(io("seeking in", &path))?;
                Ok(Box::pin(file.take(range.end.saturating_sub(range.start))))
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let store = self.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || store.list_blocking(&prefix))
            .await
            .map_err(|e| StoreError::Config(format!("listing task failed: {e}")))?
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("listing", &dir)(e)),
        };
        let mut folders = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(io("listing", &dir))? {
            if entry.file_type().await.map(|t| t.is_dir()).unwrap_or(false) {
                folders.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        folders.sort();
        Ok(folders)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("deleting", &path)(e)),
        }
        // Remove folders left empty, up to the root, so listings stay clean.
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.root || tokio::fs::remove_dir(&d).await.is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path)(e)),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

impl FsStore {
    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        let start = self.root.join(prefix.trim_end_matches('/'));
        let mut stack = vec![start.clone()];
        if start.is_file() {
            stack.clear();
            if let (Some(key), Ok(m)) = (self.key_of(&start), start.metadata()) {
                out.push(ObjectInfo { key, size: m.len() });
            }
        }
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("listing", &dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io("listing", &dir))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(io("listing", &path))?;
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() && !hidden {
                    let size = entry.metadata().map_err(io("reading", &path))?.len();
                    if let Some(key) = self.key_of(&path) {
                        out.push(ObjectInfo { key, size });
                    }
                }
            }
        }
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

struct FsWriter {
    file: Option<BufWriter<tokio::fs::File>>,
    temp: PathBuf,
    path: PathBuf,
    written: u64,
}

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| StoreError::Config("write after finish".into()))?;
        file.write_all(&chunk)
            .await
            .map_err(io("writing", &self.temp))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        let Some(mut file) = self.file.take() else {
            return Err(StoreError::Config("finish called twice".into()));
        };
        file.flush().await.map_err(io("writing", &self.temp))?;
        file.get_mut()
            .sync_all()
            .await
            .map_err(io("syncing", &self.temp))?;
        tokio::fs::rename(&self.temp, &self.path)
            .await
            .map_err(io("renaming", &self.temp))?;
        Ok(self.written)
    }

    async fn abort(mut self: Box<Self>) {
        self.file.take();
        let _ = tokio::fs::remove_file(&self.temp).await;
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_reads_lists_and_deletes() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "bucket", "team/a")?;
        store
            .put("backups/b1/backup.json", Bytes::from_static(b"{}"))
            .await?;
        let mut w = store.writer("backups/b1/resources.tar.zst").await?;
        w.write(Bytes::from_static(b"0123")).await?;
        w.write(Bytes::from_static(b"456789")).await?;
        assert_eq!(
            store.size("backups/b1/resources.tar.zst").await?,
            None,
            "invisible until finished"
        );
        assert_eq!(w.finish().await?, 10);
        let mut part = String::new();
        store
            .reader("backups/b1/resources.tar.zst", Some(2..5))
            .await?
            .read_to_string(&mut part)
            .await
            .map_err(|e| StoreError::Config(e.to_string()))?;
        assert_eq!(part, "234");
        let keys: Vec<_> = store
            .list("backups/")
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(
            keys,
            ["backups/b1/backup.json", "backups/b1/resources.tar.zst"]
        );
        assert_eq!(store.list_folders("backups/").await?, ["b1"]);
        crate::delete_prefix(&store, "backups/b1/").await?;
        assert!(
            store.list_folders("backups/").await?.is_empty(),
            "empty folders removed"
        );
        assert!(
            store
                .get("backups/b1/backup.json")
                .await
                .err()
                .is_some_and(|e| e.is_not_found())
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_aborted_writer_leaves_nothing() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "bucket", "")?;
        let mut w = store.writer("x/y").await?;
        w.write(Bytes::from_static(b"partial")).await?;
        w.abort().await;
        assert!(store.list("").await?.is_empty());
        Ok(())
    }

    #[test]
    fn refuses_keys_that_escape_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsStore::new(dir.path(), "bucket", "").expect("store");
        assert!(store.path("../../etc/passwd").is_err());
        assert!(store.path("/etc/passwd").is_err());
    }
}

#[cfg(test)]
mod bounded {
    use super::*;
    use crate::ObjectStore;

    #[tokio::test]
    async fn a_bounded_read_refuses_what_is_too_large() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        store.put("small", Bytes::from_static(b"12345")).await?;
        assert_eq!(&store.get_bounded("small", 5).await?[..], b"12345");
        let err = store.get_bounded("small", 4).await.expect_err("too large");
        assert!(
            matches!(err, StoreError::TooLarge { limit: 4, .. }),
            "{err}"
        );
        assert!(store.get_bounded("missing", 4).await.is_err());
        Ok(())
    }
}
