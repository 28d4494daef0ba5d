//! Protected data: backups that a thief cannot read and no one can change unnoticed.
//!
//! - [`keys`]: 32-byte keys from Secrets, named in storage by id only; key rings.
//! - [`seal`]: the HMAC that authenticates `backup.json` (and through it the archive, the
//!   index and `volumes.json`), under a key the bucket does not hold.
//! - [`EncryptedStore`]: a store that encrypts, in the stream, the objects of a backup or a
//!   restore that [`Layout::is_encrypted`] names (everything but `backup.json`,
//!   `volumes.json` and the volume repositories, which encrypt themselves).

mod cipher;
pub mod keys;
pub mod seal;

use std::{collections::HashMap, ops::Range, sync::Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

pub use cipher::{DecryptingSink, HEADER, MAGIC, SEGMENT};
pub use keys::{Key, KeyError, KeyId, KeyRing};
pub use seal::{Seal, SealError};

use crate::{Layout, ObjectInfo, ObjectReader, ObjectStore, ObjectWriter, StoreError};
use std::sync::Arc;

/// Headers remembered for range reads (a restore reads one archive by many ranges).
const HEADER_CACHE: usize = 256;

/// `inner`, with the objects [`Layout::is_encrypted`] names encrypted under the ring's current
/// key and decrypted with whichever key of the ring their header names.
pub struct EncryptedStore {
    inner: Arc<dyn ObjectStore>,
    ring: KeyRing,
    headers: Mutex<HashMap<String, Vec<u8>>>,
}

impl std::fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("inner", &self.inner.describe())
            .field("key", self.ring.current().id())
            .finish()
    }
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, ring: KeyRing) -> Self {
        Self {
            inner,
            ring,
            headers: Mutex::new(HashMap::new()),
        }
    }

    /// The header of the object at `key`, from the cache or the store.
    async fn header(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        if let Some(header) = self.headers.lock().ok().and_then(|h| h.get(key).cloned()) {
            return Ok(header);
        }
        let mut header = Vec::with_capacity(HEADER);
        self.inner
            .reader(key, Some(0..HEADER as u64))
            .await?
            .take(HEADER as u64)
            .read_to_end(&mut header)
            .await
            .map_err(|e| read_error(key, e))?;
        if let Ok(mut headers) = self.headers.lock() {
            if headers.len() >= HEADER_CACHE {
                headers.clear();
            }
            headers.insert(key.to_string(), header.clone());
        }
        Ok(header)
    }
}

fn read_error(key: &str, e: std::io::Error) -> StoreError {
    match e.downcast::<StoreError>() {
        Ok(store) => store,
        Err(e) => StoreError::Service {
            operation: "reading",
            key: key.into(),
            detail: e.to_string(),
        },
    }
}

#[async_trait]
impl ObjectStore for EncryptedStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        if !Layout::is_encrypted(key) {
            return self.inner.put(key, body).await;
        }
        let sealed = cipher::encrypt_whole(self.ring.current(), key, &body)?;
        self.inner.put(key, sealed).await
    }

    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let inner = self.inner.writer(key).await?;
        if !Layout::is_encrypted(key) {
            return Ok(inner);
        }
        Ok(Box::new(
            cipher::EncryptingWriter::start(inner, self.ring.current(), key).await?,
        ))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        if !Layout::is_encrypted(key) {
            return self.inner.get(key).await;
        }
        let mut plain = Vec::new();
        self.reader(key, None)
            .await?
            .read_to_end(&mut plain)
            .await
            .map_err(|e| read_error(key, e))?;
        Ok(Bytes::from(plain))
    }

    async fn reader(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ObjectReader, StoreError> {
        if !Layout::is_encrypted(key) {
            return self.inner.reader(key, range).await;
        }
        match range {
            None => {
                let mut inner = self.inner.reader(key, None).await?;
                let mut header = Vec::with_capacity(HEADER);
                (&mut inner)
                    .take(HEADER as u64)
                    .read_to_end(&mut header)
                    .await
                    .map_err(|e| read_error(key, e))?;
                let cipher = cipher::open_header(&self.ring, key, &header)?;
                Ok(cipher::decrypting(inner, cipher, key.into(), 0, true))
            }
            Some(range) => {
                let header = self.header(key).await?;
                let cipher = cipher::open_header(&self.ring, key, &header)?;
                let (cipher_range, first) = cipher::cipher_range(&range);
                let inner = self.inner.reader(key, Some(cipher_range)).await?;
                let mut plain = cipher::decrypting(inner, cipher, key.into(), first, false);
                let skip = range.start - first * SEGMENT as u64;
                tokio::io::copy(&mut (&mut plain).take(skip), &mut tokio::io::sink())
                    .await
                    .map_err(|e| read_error(key, e))?;
                Ok(Box::pin(plain.take(range.end.saturating_sub(range.start))))
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_folders(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        if let Ok(mut headers) = self.headers.lock() {
            headers.remove(key);
        }
        self.inner.delete(key).await
    }

    /// The stored (encrypted) size.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.size(key).await
    }

    fn describe(&self) -> String {
        format!(
            "{} (encrypted with key {})",
            self.inner.describe(),
            self.ring.current().id()
        )
    }

    /// A URL to the stored bytes: encrypted ones stay encrypted (`arca` decrypts them with
    /// the key from the Secret).
    async fn presign_get(
        &self,
        key: &str,
        valid_for: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        self.inner.presign_get(key, valid_for).await
    }
}

#[cfg(test)]
mod tests;
