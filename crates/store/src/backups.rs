//! The backups of one store (a location's root, or a tenant's folder in it), kept by their
//! one rule: a backup exists exactly when its `backup.json` does. It is written last, when
//! everything else of the backup is in place, and deleted first, before anything else goes.
//! Every read, write and delete of `backup.json` goes through here.

use bytes::Bytes;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    Layout, METADATA_LIMIT, ObjectStore, StoreError,
    archive::{BackupMetadata, FORMAT_VERSION, FormatOne, KNOWN_FORMATS},
    protect::{Key, KeyRing, Seal, seal},
};

/// `backup.json` from format 2 on: the metadata's exact bytes, and their seal.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    format_version: String,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seal: Option<Seal>,
}

/// The bytes of a sealed `backup.json`.
fn sealed_metadata(
    name: &str,
    metadata: &BackupMetadata,
    seal_key: &Key,
) -> Result<Vec<u8>, serde_json::Error> {
    let body = serde_json::to_string_pretty(metadata)?;
    let raw = RawValue::from_string(body)?;
    let envelope = Envelope {
        format_version: FORMAT_VERSION.into(),
        seal: Some(seal::seal(seal_key, name, raw.get().as_bytes())),
        metadata: Some(&raw),
    };
    serde_json::to_vec(&envelope)
}

/// Parses and authenticates the `backup.json` of backup `name`.
fn open_metadata(
    name: &str,
    raw: &[u8],
    seal_keys: &KeyRing,
) -> Result<BackupMetadata, StoreError> {
    let key = Layout::backup_metadata(name);
    let corrupt = |detail: String| StoreError::Corrupt {
        key: key.clone(),
        detail,
    };
    let envelope: Envelope<'_> = serde_json::from_slice(raw).map_err(|e| corrupt(e.to_string()))?;
    match envelope.format_version.as_str() {
        "1" => {
            let one: FormatOne = serde_json::from_slice(raw).map_err(|e| corrupt(e.to_string()))?;
            Ok(BackupMetadata {
                format_version: "1".into(),
                backup: one.backup,
                stats: one.stats,
                cluster_version: one.cluster_version,
                encryption: None,
            })
        }
        "2" => {
            let (Some(body), Some(found)) = (envelope.metadata, envelope.seal) else {
                return Err(StoreError::Unauthentic {
                    key,
                    detail: "format 2 without its metadata or its seal".into(),
                });
            };
            seal::verify(seal_keys, name, body.get().as_bytes(), &found).map_err(|e| {
                StoreError::Unauthentic {
                    key: key.clone(),
                    detail: e.to_string(),
                }
            })?;
            let mut metadata: BackupMetadata =
                serde_json::from_str(body.get()).map_err(|e| corrupt(e.to_string()))?;
            metadata.format_version = "2".into();
            Ok(metadata)
        }
        other => Err(corrupt(format!(
            "formatVersion {other:?} is not one this Arca reads ({}): upgrade Arca",
            KNOWN_FORMATS.join(", ")
        ))),
    }
}

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

    /// `backup.json` of `name`, read with the metadata cap and its seal checked with the keys
    /// of `seal_keys`; None when the backup does not exist. An oversized, unparsable or
    /// forged one is an error naming its key. A format 1 `backup.json` has no seal: it is
    /// returned with `format_version` "1" ([`BackupMetadata::is_sealed`] false), for the
    /// caller to decide whether to trust it.
    pub async fn metadata(
        &self,
        name: &str,
        seal_keys: &KeyRing,
    ) -> Result<Option<BackupMetadata>, StoreError> {
        let key = Layout::backup_metadata(name);
        let raw = match self.store.get_bounded(&key, METADATA_LIMIT).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        open_metadata(name, &raw, seal_keys).map(Some)
    }

    /// Writes `backup.json`, sealed with `seal_key`: from this moment backup `name` exists.
    /// Call it last.
    pub async fn complete(
        &self,
        name: &str,
        metadata: &BackupMetadata,
        seal_key: &Key,
    ) -> Result<(), StoreError> {
        let key = Layout::backup_metadata(name);
        let json = sealed_metadata(name, metadata, seal_key).map_err(|e| StoreError::Corrupt {
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
            format_version: "2".into(),
            backup: serde_json::json!({"kind": "Backup"}),
            stats: Default::default(),
            cluster_version: None,
            encryption: None,
        }
    }

    fn keys() -> KeyRing {
        KeyRing::new(Key::from_bytes([9; 32]), vec![], "Secret arca/seal")
    }

    #[tokio::test]
    async fn a_backup_exists_from_its_metadata_until_it_is_retracted() -> Result<(), StoreError> {
        let (_dir, fs) = store()?;
        let backups = BackupStore::new(&fs);
        fs.put(&Layout::backup_index("b"), Bytes::from_static(b"x"))
            .await?;
        assert!(!backups.exists("b").await?, "files without backup.json");
        assert_eq!(backups.metadata("b", &keys()).await?, None);
        backups.complete("b", &metadata(), keys().current()).await?;
        assert!(backups.exists("b").await?);
        assert_eq!(backups.metadata("b", &keys()).await?, Some(metadata()));
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
        let e = backups
            .metadata("junk", &keys())
            .await
            .expect_err("unparsable");
        assert!(e.to_string().contains("backups/junk/backup.json"), "{e}");
        let big = vec![b' '; (METADATA_LIMIT + 1) as usize];
        fs.put(&Layout::backup_metadata("big"), Bytes::from(big))
            .await?;
        let e = backups
            .metadata("big", &keys())
            .await
            .expect_err("too large");
        assert!(matches!(e, StoreError::TooLarge { .. }), "{e}");
        Ok(())
    }

    #[tokio::test]
    async fn a_changed_moved_or_foreign_metadata_is_refused_and_format_one_is_read_unsealed()
    -> Result<(), StoreError> {
        let (_dir, fs) = store()?;
        let backups = BackupStore::new(&fs);
        backups.complete("b", &metadata(), keys().current()).await?;
        let sealed = fs.get(&Layout::backup_metadata("b")).await?;
        let text = String::from_utf8_lossy(&sealed).replace("Backup", "Backuq");
        fs.put(&Layout::backup_metadata("b"), Bytes::from(text))
            .await?;
        let e = backups.metadata("b", &keys()).await.expect_err("changed");
        assert!(matches!(e, StoreError::Unauthentic { .. }), "{e}");
        fs.put(&Layout::backup_metadata("c"), sealed.clone())
            .await?;
        let e = backups.metadata("c", &keys()).await.expect_err("moved");
        assert!(
            e.to_string().contains("moved it from another backup"),
            "{e}"
        );
        let other = KeyRing::new(Key::from_bytes([1; 32]), vec![], "Secret x/y");
        fs.put(&Layout::backup_metadata("b"), sealed).await?;
        let e = backups.metadata("b", &other).await.expect_err("foreign");
        assert!(e.to_string().contains("Secret x/y"), "{e}");
        let one = br#"{"formatVersion":"1","backup":{"kind":"Backup"},"stats":{"items":0,"archiveBytes":0,"archiveSha256":"","indexBytes":0,"indexSha256":""}}"#;
        fs.put(&Layout::backup_metadata("old"), Bytes::from_static(one))
            .await?;
        let old = backups.metadata("old", &keys()).await?.expect("format 1");
        assert!(!old.is_sealed());
        let unsealed = br#"{"formatVersion":"2","metadata":{"backup":{},"stats":{}}}"#;
        fs.put(&Layout::backup_metadata("u"), Bytes::from_static(unsealed))
            .await?;
        assert!(
            backups.metadata("u", &keys()).await.is_err(),
            "format 2 without a seal"
        );
        Ok(())
    }
}
