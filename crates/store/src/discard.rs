//! A store that keeps nothing: where the outputs of a restore go when its location is
//! ReadOnly (nothing may be written there). Reads find nothing.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectInfo, ObjectReader, ObjectStore, ObjectWriter, StoreError};

/// Accepts writes and drops them; every read is NotFound.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardStore;

struct DiscardWriter(u64);

#[async_trait]
impl ObjectWriter for DiscardWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.0 += chunk.len() as u64;
        Ok(())
    }
    async fn finish(self: Box<Self>) -> Result<u64, StoreError> {
        Ok(self.0)
    }
    async fn abort(self: Box<Self>) {}
}

#[async_trait]
impl ObjectStore for DiscardStore {
    async fn put(&self, _key: &str, _body: Bytes) -> Result<(), StoreError> {
        Ok(())
    }
    async fn writer(&self, _key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        Ok(Box::new(DiscardWriter(0)))
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        Err(StoreError::NotFound { key: key.into() })
    }
    async fn reader(
        &self,
        key: &str,
        _range: Option<Range<u64>>,
    ) -> Result<ObjectReader, StoreError> {
        Err(StoreError::NotFound { key: key.into() })
    }
    async fn list(&self, _prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        Ok(Vec::new())
    }
    async fn list_folders(&self, _prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn size(&self, _key: &str) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    fn describe(&self) -> String {
        "nowhere (read-only location)".into()
    }
}
