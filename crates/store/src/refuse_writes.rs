//! A store seen through its reads only: what the node agent opens a repository of another
//! tool's layout with (Velero's restic repositories), so that no code path can write,
//! change or delete an object there, whatever the repository library attempts.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectInfo, ObjectReader, ObjectRetention, ObjectStore, ObjectWriter, StoreError};

/// Forwards reads to the wrapped store; refuses every write and delete with
/// [`StoreError::ReadOnly`], before anything reaches the store.
#[derive(Debug)]
pub struct WriteRefusingStore {
    inner: std::sync::Arc<dyn ObjectStore>,
}

impl WriteRefusingStore {
    pub fn new(inner: std::sync::Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    fn refuse(&self, what: &str, key: &str) -> StoreError {
        StoreError::ReadOnly {
            what: format!("{what} {key} in {}", self.inner.describe()),
        }
    }
}

#[async_trait]
impl ObjectStore for WriteRefusingStore {
    async fn put(&self, key: &str, _body: Bytes) -> Result<(), StoreError> {
        Err(self.refuse("writing", key))
    }
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        Err(self.refuse("writing", key))
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn reader(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ObjectReader, StoreError> {
        self.inner.reader(key, range).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_folders(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        Err(self.refuse("deleting", key))
    }
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.size(key).await
    }
    fn describe(&self) -> String {
        format!("{} (read only)", self.inner.describe())
    }
    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes, StoreError> {
        self.inner.get_bounded(key, limit).await
    }
    async fn object_lock_enabled(&self) -> Result<Option<bool>, StoreError> {
        self.inner.object_lock_enabled().await
    }
    async fn retention(&self, key: &str) -> Result<Option<ObjectRetention>, StoreError> {
        self.inner.retention(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FsStore;

    #[tokio::test]
    async fn reads_pass_and_writes_and_deletes_are_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = std::sync::Arc::new(FsStore::new(dir.path(), "b", "").expect("store"));
        inner
            .put("restic/shop/config", Bytes::from_static(b"c"))
            .await
            .expect("put");
        let store = WriteRefusingStore::new(inner.clone());
        assert_eq!(store.get("restic/shop/config").await.expect("read"), "c");
        assert_eq!(store.list("restic/").await.expect("list").len(), 1);
        for refused in [
            store
                .put("restic/shop/config", Bytes::from_static(b"x"))
                .await
                .err(),
            store.writer("restic/shop/locks/1").await.err(),
            store.delete("restic/shop/config").await.err(),
        ] {
            let e = refused.expect("refused");
            assert!(e.to_string().contains("only reads"), "{e}");
        }
        assert_eq!(inner.get("restic/shop/config").await.expect("kept"), "c");
        assert!(
            inner
                .size("restic/shop/locks/1")
                .await
                .expect("size")
                .is_none()
        );
    }
}
