//! Arca's object storage: where backups live, and in what format.
//!
//! - [`ObjectStore`]: the one interface every backend implements ([`S3Store`] for any
//!   S3-compatible service, [`FsStore`] for a directory). Keys are relative to the location's
//!   prefix; the backend adds it.
//! - [`Layout`]: the only place object keys are spelled.
//! - [`archive`]: the storage format (version [`archive::FORMAT_VERSION`]), see
//!   `docs/reference/storage-format.md`.

pub mod archive;
mod backups;
mod credentials;
mod discard;
mod error;
mod fs;
mod layout;
mod lock;
pub mod protect;
mod refuse_writes;
mod s3;

use std::{fmt::Debug, ops::Range, pin::Pin};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncRead;

pub use backups::BackupStore;
pub use credentials::{CredentialsError, SharedCredentials, parse_shared_credentials};
pub use discard::DiscardStore;
pub use error::StoreError;
pub use fs::FsStore;
pub use layout::Layout;
pub use lock::{LockMode, ObjectRetention, ServerSideEncryption};
pub use protect::{EncryptedStore, Key, KeyId, KeyRing};
pub use refuse_writes::WriteRefusingStore;
pub use s3::{S3Config, S3Store};

/// A stream of an object's bytes.
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// The most a metadata object (`backup.json`) may hold when read back: far above any real
/// one (the Backup object and a few counters), far below what would hurt the operator.
pub const METADATA_LIMIT: u64 = 8 * 1024 * 1024;

/// An object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// An object store rooted at a location's prefix. Every method is safe to call concurrently.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Writes a small object whole (metadata, results). Replaces any object at `key`.
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError>;

    /// Starts a streaming write of a large object. Nothing is visible at `key` until
    /// [`ObjectWriter::finish`] succeeds; an unfinished writer leaves nothing behind.
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError>;

    /// Reads a small object whole. [`StoreError::NotFound`] when there is none.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Streams an object, or the byte `range` of it.
    async fn reader(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ObjectReader, StoreError>;

    /// Every object under `prefix` (recursively), in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;

    /// The names of the immediate "folders" under `prefix` (which ends with `/`).
    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Size of the object at `key`, or None when there is none.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError>;

    /// A human description of where this store writes (`s3://bucket/prefix`, a path).
    fn describe(&self) -> String;

    /// Reads an object whole, refusing one larger than `limit` bytes ([`StoreError::TooLarge`])
    /// without holding more than `limit + 1` bytes of it: for anything read back from storage,
    /// which whoever can write to the bucket controls.
    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes, StoreError> {
        use tokio::io::AsyncReadExt;
        let reader = self.reader(key, None).await?;
        let mut bytes = Vec::new();
        reader
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| StoreError::Service {
                operation: "reading",
                key: key.into(),
                detail: e.to_string(),
            })?;
        if bytes.len() as u64 > limit {
            return Err(StoreError::TooLarge {
                key: key.into(),
                limit,
            });
        }
        Ok(Bytes::from(bytes))
    }

    /// A URL that reads the object at `key` with a plain GET until `valid_for` has passed;
    /// None when the store has no such URLs (a directory).
    async fn presign_get(
        &self,
        _key: &str,
        _valid_for: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Whether the bucket has S3 Object Lock enabled; None when the store has no such thing
    /// (a directory). A store wrapping another must forward this.
    async fn object_lock_enabled(&self) -> Result<Option<bool>, StoreError> {
        Ok(None)
    }

    /// The object lock retention the object at `key` carries, if any (None for a store
    /// without object lock, or no object). A store wrapping another must forward this.
    async fn retention(&self, _key: &str) -> Result<Option<ObjectRetention>, StoreError> {
        Ok(None)
    }
}

/// A streaming upload in progress.
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes. Backends upload as they go, holding a bounded amount in memory.
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;
    /// Makes the object visible; returns its size.
    async fn finish(self: Box<Self>) -> Result<u64, StoreError>;
    /// Gives up: nothing is left at the key (multipart uploads are aborted).
    async fn abort(self: Box<Self>);
}

/// Deletes every object under `prefix`; returns how many.
pub async fn delete_prefix(store: &dyn ObjectStore, prefix: &str) -> Result<usize, StoreError> {
    let objects = store.list(prefix).await?;
    for object in &objects {
        store.delete(&object.key).await?;
    }
    Ok(objects.len())
}
