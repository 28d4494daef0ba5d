//! The backups of one store (a location's root, or a tenant's folder in it), kept by their
//! one rule: a backup exists exactly when its `backup.json` does. It is written last, when
//! everything else of the backup is in place, and deleted first, before anything else goes.
//! Every read, write and delete of `backup.json` goes through here.

use bytes::Bytes;

use crate::{Layout, METADATA_LIMIT, ObjectStore, StoreError, archive::BackupMetadata};

/// The backups of `store`.
#[derive(Clone, Copy)]
pub struct BackupStore<'a> {
    store: &'a dyn ObjectStore,
}

impl std::fmt::Debug for BackupStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupStore")
            .field("store", &self.store.describe())
            .finish()
    }
}

impl<'a> BackupStore<'a> {
    pub fn new(store: &'a dyn ObjectStore) -> Self {
        Self { store }
    }

    /// The folders under `backups/`: finished backups, and others being written or deleted.
    pub async fn names(&self) -> Result<Vec<String>, StoreError> {
        self.store.list_folders(Layout::BACKUPS).await
    }

    /// Whether backup `name` exists (its `backup.json` is there), asked of the store now.
    pub async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .size(&Layout::backup_metadata(name))
            .await?
            .is_some())
    }

    /// `backup.json` of `name`, read with the metadata cap; None when the backup does not
    /// exist. An oversized or unparsable one is an error naming its key.
    pub async fn metadata(&self, name: &str) -> Result<Option<BackupMetadata>, StoreError> {
        let key = Layout::backup_metadata(name);
        let raw = match self.store.get_bounded(&key, METADATA_LIMIT).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key,
                detail: e.to_string(),
            })
    }

    /// Writes `backup.json`: from this moment backup `name` exists. Call it last.
    pub async fn complete(&self, name: &str, metadata: &BackupMetadata) -> Result<(), StoreError> {
        let key = Layout::backup_metadata(name);
        let json = serde_json::to_vec_pretty(metadata).map_err(|e| StoreError::Corrupt {
            key: key.clone(),
            detail: e.to_string(),
        })?;
        self.store.put(&key, Bytes::from(json)).await
    }

    /// Deletes `backup.json`: from this moment backup `name` no longer exists, whatever of
    /// its folder is left. Call it first when deleting.
    pub async fn retract(&self, name: &str) -> Result<(), StoreError> {
        self.store.delete(&Layout::backup_metadata(name)).await
    }

    /// Deletes the rest of the backup's folder (after [`Self::retract`]); returns how many
    /// objects went.
    pub async fn delete_files(&self, name: &str) -> Result<usize, StoreError> {
        crate::delete_prefix(self.store, &Layout::backup_dir(name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FsStore;

    /// A filesystem store in a folder removed with the returned guard.
    fn store() -> Result<(tempfile::TempDir, FsStore), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt {
            key: "tempdir".into(),
            detail: e.to_string(),
        })?;
        let fs = FsStore::new(dir.path(), "bucket", "p")?;
        Ok((dir, fs))
    }

    fn metadata() -> BackupMetadata {
        BackupMetadata {
            format_version: "1".into(),
            backup: serde_json::json!({"kind": "Backup"}),
            stats: Default::default(),
            cluster_version: None,
        }
    }

    #[tokio::test]
    async fn a_backup_exists_from_its_metadata_until_it_is_retracted() -> Result<(), StoreError> {
        let (_dir, fs) = store()?;
        let backups = BackupStore::new(&fs);
        fs.put(&Layout::backup_index("b"), Bytes::from_static(b"x"))
            .await?;
        assert!(!backups.exists("b").await?, "files without backup.json");
        assert_eq!(backups.metadata("b").await?, None);
        backups.complete("b", &metadata()).await?;
        assert!(backups.exists("b").await?);
        assert_eq!(backups.metadata("b").await?, Some(metadata()));
        assert_eq!(backups.names().await?, ["b"]);
        backups.retract("b").await?;
        assert!(!backups.exists("b").await?);
        assert_eq!(backups.delete_files("b").await?, 1);
        assert!(backups.names().await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn an_oversized_or_unreadable_metadata_is_refused_by_key() -> Result<(), StoreError> {
        let (_dir, fs) = store()?;
        let backups = BackupStore::new(&fs);
        fs.put(&Layout::backup_metadata("junk"), Bytes::from_static(b"{"))
            .await?;
        let e = backups.metadata("junk").await.expect_err("unparsable");
        assert!(e.to_string().contains("backups/junk/backup.json"), "{e}");
        let big = vec![b' '; (METADATA_LIMIT + 1) as usize];
        fs.put(&Layout::backup_metadata("big"), Bytes::from(big))
            .await?;
        let e = backups.metadata("big").await.expect_err("too large");
        assert!(matches!(e, StoreError::TooLarge { .. }), "{e}");
        Ok(())
    }
}
