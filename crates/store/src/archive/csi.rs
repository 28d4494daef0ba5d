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
