//! The only door to the store: read operations, nothing else.
//!
//! Every other module of this crate reaches the store through [`ReadOnlyStore`], whose
//! wrapped store is private to this module, and this module calls only `get_bounded`,
//! `reader`, `list` and `size` on it. So no code path of the reader can write, change or
//! delete an object of a Velero location: the type does not offer it. (A unit test runs
//! every operation of the crate over a store that fails any write.)

use std::sync::Arc;

use arca_store::{ObjectInfo, ObjectReader, ObjectStore, StoreError};

/// An [`ObjectStore`] seen through read operations only.
#[derive(Clone, Debug)]
pub struct ReadOnlyStore {
    inner: Arc<dyn ObjectStore>,
}

impl ReadOnlyStore {
    /// Wraps `store` (rooted at the location's prefix). Only its read operations are ever
    /// called.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { inner: store }
    }

    /// Reads the object at `key` whole, refusing one larger than `limit` bytes
    /// ([`StoreError::TooLarge`]) after holding at most `limit + 1` bytes of it.
    pub async fn get_bounded(&self, key: &str, limit: u64) -> Result<bytes::Bytes, StoreError> {
        self.inner.get_bounded(key, limit).await
    }

    /// Streams the object at `key`.
    pub async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError> {
        self.inner.reader(key, None).await
    }

    /// Every object under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }

    /// The size of the object at `key`, or None when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.size(key).await
    }

    /// Where the store reads from (`s3://bucket/prefix`, a path), for messages.
    pub fn describe(&self) -> String {
        self.inner.describe()
    }
}
