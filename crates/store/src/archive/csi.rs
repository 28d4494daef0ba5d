//! `csi-snapshots.json`: the CSI snapshots a backup took of its claims. The snapshots stay in
//! the storage system (their VolumeSnapshotContents are kept with `deletionPolicy: Retain`
//! until the backup is deleted); this file says which content holds which claim's data, so
//! a restore can provision the claim from it. Written before `backup.json`, which seals it.

use serde::{Deserialize, Serialize};

use super::volumes::read_sealed_json;
use crate::{Layout, ObjectStore, StoreError};

/// The content of `csi-snapshots.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsiSnapshots {
    /// One entry per claim whose snapshot is ready and kept.
    pub snapshots: Vec<CsiSnapshot>,
}

/// One claim's snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsiSnapshot {
    /// The claim's namespace at backup time.
    pub namespace: String,
    /// The PersistentVolumeClaim snapshotted.
    pub claim: String,
    /// The PersistentVolume it was bound to.
    pub volume: String,
    /// The CSI driver of the volume and of the snapshot.
    pub driver: String,
    /// The VolumeSnapshotClass the snapshot was taken with.
    pub snapshot_class: String,
    /// The cluster-scoped VolumeSnapshotContent holding the snapshot (Retain).
    pub content: String,
    /// The storage system's id of the snapshot (`status.snapshotHandle` of the content).
    pub snapshot_handle: String,
    /// The smallest size a volume restored from it may have (`status.restoreSize`), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<u64>,
}

impl CsiSnapshots {
    /// The snapshot of claim `namespace/claim`, if the backup took one.
    pub fn of_claim(&self, namespace: &str, claim: &str) -> Option<&CsiSnapshot> {
        self.snapshots
            .iter()
            .find(|s| s.namespace == namespace && s.claim == claim)
    }
}

/// The most `csi-snapshots.json` may hold when read back (about 50,000 claims).
pub const CSI_SNAPSHOTS_LIMIT: u64 = 32 * 1024 * 1024;

/// Reads the `csi-snapshots.json` of the backup `metadata` describes; empty when it has none.
/// Only a sealed backup (format 2) can have one, and only the one its seal covers: a file
/// put there or changed by someone else (pointing a restore at another claim's snapshot) is
/// refused, never used.
pub async fn read_csi_snapshots(
    store: &dyn ObjectStore,
    backup: &str,
    metadata: &super::BackupMetadata,
) -> Result<CsiSnapshots, StoreError> {
    let stats = &metadata.stats;
    // Format 1 had no CSI snapshots: such a backup gets the checks of a seal naming none.
    let seal = (
        stats.csi_snapshots_sha256.as_deref(),
        stats.csi_snapshots_bytes,
    );
    read_sealed_json(
        store,
        &Layout::backup_csi_snapshots(backup),
        CSI_SNAPSHOTS_LIMIT,
        Some(seal),
        "CSI snapshots",
    )
    .await
    .map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FsStore, archive::BackupMetadata};
    use bytes::Bytes;
    use sha2::{Digest, Sha256};

    fn metadata(file: Option<&[u8]>) -> BackupMetadata {
        let mut m = BackupMetadata {
            format_version: "2".into(),
            backup: serde_json::Value::Null,
            stats: Default::default(),
            cluster_version: None,
            encryption: None,
        };
        if let Some(bytes) = file {
            m.stats.csi_snapshots_bytes = Some(bytes.len() as u64);
            m.stats.csi_snapshots_sha256 = Some(hex::encode(Sha256::digest(bytes)));
        }
        m
    }

    #[tokio::test]
    async fn only_the_file_the_seal_covers_is_read() {
        let dir = tempfile::tempdir().expect("dir");
        let store = FsStore::new(dir.path(), "bucket", "p").expect("store");
        let key = Layout::backup_csi_snapshots("b");
        let snapshots = CsiSnapshots {
            snapshots: vec![CsiSnapshot {
                namespace: "shop".into(),
                claim: "data-0".into(),
                snapshot_handle: "snap-1".into(),
                ..CsiSnapshot::default()
            }],
        };
        let bytes = serde_json::to_vec(&snapshots).expect("json");
        // None written, none sealed: empty.
        assert_eq!(
            read_csi_snapshots(&store, "b", &metadata(None))
                .await
                .expect("read"),
            CsiSnapshots::default()
        );
        // Sealed but gone: refused.
        let gone = read_csi_snapshots(&store, "b", &metadata(Some(&bytes))).await;
        assert!(gone.is_err_and(|e| e.to_string().contains("gone")));
        store
            .put(&key, Bytes::from(bytes.clone()))
            .await
            .expect("put");
        assert_eq!(
            read_csi_snapshots(&store, "b", &metadata(Some(&bytes)))
                .await
                .expect("read"),
            snapshots
        );
        // Added to a backup whose seal names none (a format 1 backup included): refused.
        let added = read_csi_snapshots(&store, "b", &metadata(None)).await;
        assert!(added.is_err_and(|e| e.to_string().contains("someone else put it there")));
        let mut unsealed = metadata(None);
        unsealed.format_version = "1".into();
        assert!(read_csi_snapshots(&store, "b", &unsealed).await.is_err());
        // Changed: refused.
        let mut forged = snapshots.clone();
        forged.snapshots[0].snapshot_handle = "snap-of-another-claim".into();
        store
            .put(
                &key,
                Bytes::from(serde_json::to_vec(&forged).expect("json")),
            )
            .await
            .expect("put");
        let changed = read_csi_snapshots(&store, "b", &metadata(Some(&bytes))).await;
        assert!(changed.is_err_and(|e| e.to_string().contains("changed")));
    }
}
