//! `volumes.json`: the pod volume snapshots a backup took, in the namespaces' restic-format
//! repositories (`volumes/<namespace>/`). Written once the volumes are done, before
//! `backup.json`.

use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::{Layout, ObjectStore, StoreError};

/// The content of `volumes.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshots {
    /// One entry per pod volume whose data is in the backup.
    pub snapshots: Vec<VolumeSnapshot>,
}

/// One pod volume's data: a snapshot in a repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshot {
    /// The pod's namespace at backup time (the claim's, for a claim no pod mounted).
    pub namespace: String,
    /// The pod the data was read from; empty (absent in the file) for a claim no pod of the
    /// backup mounted, whose CSI snapshot was moved: see [`VolumeSnapshot::is_claim_only`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The volume's name in the pod spec; empty (absent) with `pod`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume: String,
    /// The claim the volume mounts, when it is a PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// The repository, relative to the location's prefix (`volumes/<namespace>/`).
    pub repository: String,
    /// The snapshot id (64 hex characters), as `restic snapshots` shows it.
    pub snapshot_id: String,
    /// The path recorded in the snapshot.
    pub snapshot_path: String,
    /// Bytes of the volume's files.
    pub total_bytes: u64,
    /// Bytes uploaded for this snapshot (new data after deduplication and compression).
    pub bytes_uploaded: u64,
}

impl VolumeSnapshot {
    /// A claim's data with no pod: a claim no pod of the backup mounted (a StatefulSet
    /// scaled to zero, say), whose CSI snapshot was moved into the bucket. A restore fills
    /// the recreated claim through a pod of its own.
    pub fn is_claim_only(&self) -> bool {
        self.pod.is_empty() && self.claim.is_some()
    }
}

impl VolumeSnapshots {
    /// The snapshots of the pod `namespace/pod`.
    pub fn of_pod<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
    ) -> impl Iterator<Item = &'a VolumeSnapshot> + 'a {
        self.snapshots
            .iter()
            .filter(move |s| !s.pod.is_empty() && s.namespace == namespace && s.pod == pod)
    }

    /// The claim-only snapshot of claim `namespace/claim`, if the backup has one.
    pub fn of_claim_only(&self, namespace: &str, claim: &str) -> Option<&VolumeSnapshot> {
        self.snapshots.iter().find(|s| {
            s.is_claim_only() && s.namespace == namespace && s.claim.as_deref() == Some(claim)
        })
    }
}

/// The most `volumes.json` may hold when read back (about 200,000 volumes).
pub const VOLUMES_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads the `volumes.json` of the backup `metadata` describes; empty when the backup has
/// none (no volume data). For a sealed backup (format 2) the file must be the one the seal
/// covers (size and sha256 in `stats`), and there must be none when the seal names none: a
/// `volumes.json` put there or changed by someone else is refused, never used.
pub async fn read_volume_snapshots(
    store: &dyn ObjectStore,
    backup: &str,
    metadata: &super::BackupMetadata,
) -> Result<VolumeSnapshots, StoreError> {
    let stats = &metadata.stats;
    let sealed = metadata
        .is_sealed()
        .then_some((stats.volumes_sha256.as_deref(), stats.volumes_bytes));
    read_sealed_json(
        store,
        &Layout::backup_volumes(backup),
        VOLUMES_LIMIT,
        sealed,
        "volume data",
    )
    .await
    .map(Option::unwrap_or_default)
}

/// Reads a JSON file of a backup that `backup.json` may seal: `sealed` is None for an
/// unsealed backup (format 1), else the sha256 and size the seal holds for it (None when the
/// seal names no such file). None when the file is absent and the seal names none.
pub(crate) async fn read_sealed_json<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &str,
    limit: u64,
    sealed: Option<(Option<&str>, Option<u64>)>,
    what: &str,
) -> Result<Option<T>, StoreError> {
    let key = key.to_string();
    let bytes = match store.get_bounded(&key, limit).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            if let Some((Some(_), _)) = sealed {
                return Err(StoreError::Unauthentic {
                    key,
                    detail: "the backup's seal names it, but it is gone".into(),
                });
            }
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if let Some(seal) = sealed {
        let sha = hex::encode(Sha256::digest(&bytes));
        match seal {
            (Some(want), Some(size)) if want == sha && size == bytes.len() as u64 => {}
            (None, _) => {
                return Err(StoreError::Unauthentic {
                    key,
                    detail: format!("the backup's seal names no {what}: someone else put it there"),
                });
            }
            _ => {
                return Err(StoreError::Unauthentic {
                    key,
                    detail:
                        "its size or sha256 is not the one the backup's seal holds: it was changed"
                            .into(),
                });
            }
        }
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            key,
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_only_entry_has_no_pod_in_the_file_and_is_found_by_its_claim_only() {
        let claim_only = VolumeSnapshot {
            namespace: "shop".into(),
            claim: Some("data-db-1".into()),
            repository: "volumes/shop/".into(),
            snapshot_id: "ab".repeat(32),
            snapshot_path: "/shop/pvc/data-db-1".into(),
            ..VolumeSnapshot::default()
        };
        let json = serde_json::to_value(&claim_only).expect("serializes");
        assert!(
            json.get("pod").is_none() && json.get("volume").is_none(),
            "{json}"
        );
        let back: VolumeSnapshot = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, claim_only);
        assert!(back.is_claim_only());
        let mounted = VolumeSnapshot {
            pod: "db-0".into(),
            volume: "data".into(),
            claim: Some("data-db-0".into()),
            ..claim_only.clone()
        };
        assert!(!mounted.is_claim_only());
        let all = VolumeSnapshots {
            snapshots: vec![mounted, claim_only],
        };
        assert_eq!(
            all.of_pod("shop", "").count(),
            0,
            "no pod is not a pod named ''"
        );
        assert_eq!(all.of_pod("shop", "db-0").count(), 1);
        assert!(all.of_claim_only("shop", "data-db-1").is_some());
        assert!(
            all.of_claim_only("shop", "data-db-0").is_none(),
            "mounted by a pod"
        );
        assert!(all.of_claim_only("other", "data-db-1").is_none());
    }
}
