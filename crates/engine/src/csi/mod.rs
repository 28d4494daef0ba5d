//! CSI snapshots of PersistentVolumeClaims (`snapshot.storage.k8s.io/v1`), as Velero's CSI
//! support takes them:
//! - [`choose`]: which claims a backup snapshots (Velero's precedence), and with which
//!   VolumeSnapshotClass; pure.
//! - [`backup`]: a VolumeSnapshot per claim, waited on until ready, its content kept
//!   (`deletionPolicy: Retain`) and recorded in `csi-snapshots.json`; the VolumeSnapshot
//!   itself removed, so the claim's namespace can go without taking the snapshot along.
//! - [`restore`]: a claim restored from its snapshot: a pre-provisioned content and a
//!   VolumeSnapshot in the target namespace, and the claim's `dataSource` pointing at it.
//! - [`expose`]: the data mover's (`snapshotMoveData`) view of a ready snapshot: a claim
//!   made from it, mounted by a pod on a node, whose files the node agent copies.
//! - [`delete`]: a deleted backup's contents, and with them the snapshots.
//!
//! The snapshot objects' types are declared here (schema-less: the external-snapshotter's
//! CRDs define them), with only the fields Arca reads or writes.

pub mod backup;
pub mod choose;
pub mod delete;
pub mod expose;
pub mod restore;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The API group of CSI snapshots.
pub const GROUP: &str = "snapshot.storage.k8s.io";

/// Labels Arca puts on the contents it keeps for a backup: they tie a content to its backup
/// (deletion and restore check them).
pub const BACKUP_NAME_LABEL: &str = "arca.dev/backup-name";
pub const BACKUP_NAMESPACE_LABEL: &str = "arca.dev/backup-namespace";
pub const BACKUP_UID_LABEL: &str = "arca.dev/backup-uid";
pub const RESTORE_NAME_LABEL: &str = "arca.dev/restore-name";

/// The operator's own client (never a tenant's impersonation): what touches cluster-scoped
/// snapshot objects.
#[derive(Clone)]
pub struct OperatorClient(pub kube::Client);

impl std::fmt::Debug for OperatorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorClient")
    }
}

/// A request for a snapshot of a claim (or a handle on a pre-provisioned content).
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshot",
    namespaced,
    status = "VolumeSnapshotStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    pub source: VolumeSnapshotSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_content_name: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    #[serde(default)]
    pub bound_volume_snapshot_content_name: Option<String>,
    #[serde(default)]
    pub ready_to_use: Option<bool>,
    #[serde(default)]
    pub restore_size: Option<Quantity>,
    #[serde(default)]
    pub error: Option<SnapshotError>,
}

/// The last error the snapshot controllers met.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotError {
    #[serde(default)]
    pub message: Option<String>,
}

/// The snapshot in the storage system (cluster-scoped).
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshotContent",
    status = "VolumeSnapshotContentStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSpec {
    /// `Delete` or `Retain`: whether deleting the content deletes the snapshot.
    pub deletion_policy: String,
    pub driver: String,
    pub source: ContentSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    pub volume_snapshot_ref: k8s_openapi::api::core::v1::ObjectReference,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentStatus {
    #[serde(default)]
    pub snapshot_handle: Option<String>,
    #[serde(default)]
    pub ready_to_use: Option<bool>,
    /// Bytes.
    #[serde(default)]
    pub restore_size: Option<i64>,
    #[serde(default)]
    pub error: Option<SnapshotError>,
}

/// The parts of a VolumeSnapshotClass Arca reads (its fields are at the top level).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotClass {
    pub metadata: kube::api::ObjectMeta,
    #[serde(default)]
    pub driver: String,
}

/// The VolumeSnapshotClass resource, for a dynamic list.
pub fn snapshot_class_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(GROUP, "v1", "VolumeSnapshotClass"),
        "volumesnapshotclasses",
    )
}

/// A VolumeSnapshotContent naming `record`'s snapshot (`deletionPolicy: Retain`: deleting it
/// leaves the snapshot), for VolumeSnapshot `namespace/name` to bind to.
pub(crate) fn pre_provisioned_content(
    name: &str,
    namespace: &str,
    record: &arca_store::archive::CsiSnapshot,
    labels: &std::collections::BTreeMap<String, String>,
) -> VolumeSnapshotContent {
    VolumeSnapshotContent {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            ..kube::api::ObjectMeta::default()
        },
        spec: VolumeSnapshotContentSpec {
            deletion_policy: "Retain".into(),
            driver: record.driver.clone(),
            source: ContentSource {
                volume_handle: None,
                snapshot_handle: Some(record.snapshot_handle.clone()),
            },
            volume_snapshot_class_name: None,
            volume_snapshot_ref: k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some(format!("{GROUP}/v1")),
                kind: Some("VolumeSnapshot".into()),
                namespace: Some(namespace.to_string()),
                name: Some(name.to_string()),
                ..Default::default()
            },
        },
        status: None,
    }
}

/// The VolumeSnapshot `name` bound to the pre-provisioned content of the same name.
pub(crate) fn bound_snapshot(
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> VolumeSnapshot {
    let mut snapshot = VolumeSnapshot::new(
        name,
        VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: None,
                volume_snapshot_content_name: Some(name.to_string()),
            },
            volume_snapshot_class_name: None,
        },
    );
    snapshot.metadata.labels = Some(labels.clone());
    snapshot
}

/// A name for an object Arca makes for `owner` and `key`: `<prefix>-<owner>-<hash of key>`,
/// at most 63 characters (a label value can then hold it too), lowercase DNS.
pub fn object_name(prefix: &str, owner: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(&Sha256::digest(key.as_bytes())[..5]);
    let room = 63 - prefix.len() - hash.len() - 2;
    let owner: String = owner.chars().take(room).collect();
    let owner = owner.trim_end_matches(['-', '.']);
    format!("{prefix}-{owner}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_short_distinct_and_stable() {
        let a = object_name("arca", "nightly", "shop/data-0");
        assert_eq!(a, object_name("arca", "nightly", "shop/data-0"));
        assert_ne!(a, object_name("arca", "nightly", "shop/data-1"));
        assert!(a.starts_with("arca-nightly-"), "{a}");
        let long = object_name("arca", &"x".repeat(300), "k");
        assert!(long.len() <= 63, "{}", long.len());
        let dashes = object_name("arca", &format!("{}-", "a".repeat(52)), "k");
        assert!(!dashes.contains("--"), "{dashes}");
    }
}
