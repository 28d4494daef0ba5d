//! `PodVolumeBackup` and `PodVolumeRestore`: the node agent's work items, one per pod volume.
//!
//! The operator creates them while it runs a Backup or a Restore; the agent on the pod's node
//! moves the data and writes the status. Users read them; they do not create them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pod whose volume is moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodReference {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID: the folder `<host-pods-dir>/<uid>/volumes/` holds its volumes.
    pub uid: String,
}

/// Where a pod volume's data move stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PodVolumePhase {
    /// Created, not yet picked up by the agent on the pod's node.
    #[default]
    New,
    /// The agent is moving the data.
    InProgress,
    /// Done.
    Completed,
    /// Not done; see `message`.
    Failed,
}

impl PodVolumePhase {
    /// True when the work will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// Bytes moved so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodVolumeProgress {
    /// Bytes to move (grows while the folder is still being scanned).
    #[serde(default)]
    pub total_bytes: u64,
    /// Bytes read (backup) or written (restore) so far.
    #[serde(default)]
    pub bytes_done: u64,
}

/// One pod volume to copy into the namespace's repository.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arca.dev",
    version = "v1alpha1",
    kind = "PodVolumeBackup",
    namespaced,
    status = "PodVolumeBackupStatus",
    shortname = "apvb",
    category = "arca",
    doc = "The data of one pod volume, copied by the node agent on the pod's node into the restic-format repository of the pod's namespace. Created by the operator for a Backup.",
    printcolumn(name = "Backup", type_ = "string", json_path = ".metadata.labels.arca\\.dev/backup-name"),
    printcolumn(name = "Pod", type_ = "string", json_path = ".spec.pod.name"),
    printcolumn(name = "Volume", type_ = "string", json_path = ".spec.volume"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Bytes", type_ = "integer", json_path = ".status.progress.bytesDone"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec == oldSelf.spec").message("a PodVolumeBackup's spec cannot change after creation")
)]
#[serde(rename_all = "camelCase")]
pub struct PodVolumeBackupSpec {
    /// The node the pod runs on: only the agent of that node takes the work.
    pub node: String,
    /// The pod whose volume is copied.
    pub pod: PodReference,
    /// The volume's name in the pod spec. The agent finds its folder under
    /// `<host-pods-dir>/<pod uid>/volumes/<plugin>/`: named after the volume, or after the
    /// PersistentVolume for a claim.
    pub volume: String,
    /// The BackupStorageLocation whose bucket holds the repository.
    pub backup_storage_location: String,
    /// The namespace of that location (the operator's, or a tenant's own).
    pub location_namespace: String,
    /// The repository: `volumes/<namespace>/` under the location's prefix.
    pub repo_identifier: String,
    /// The path recorded in the snapshot, stable across pod restarts so that the next backup
    /// of the same volume finds its parent: `/<namespace>/<pod or claim>/<volume>`.
    pub snapshot_path: String,
    /// Tags recorded on the snapshot (`backup=`, `pod=`, `volume=`, `namespace=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// How the data is copied; only `restic-format` (rustic_core) is supported.
    #[serde(default = "default_uploader")]
    pub uploader_type: String,
    /// Whether the data is compressed (the Backup's `uploaderConfig.compression`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<crate::VolumeCompression>,
}

impl PodVolumeBackup {
    /// Whether the operator asked the agent to stop this copy (annotation
    /// [`crate::labels::CANCEL`]).
    pub fn cancel_requested(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::labels::CANCEL))
            .is_some_and(|v| v == "true")
    }
}

fn default_uploader() -> String {
    "restic-format".into()
}

/// What the copy did. Written by the agent only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodVolumeBackupStatus {
    /// New, InProgress, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodVolumePhase>,
    /// The snapshot's id in the repository (what `restic snapshots` shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The folder the agent read, on its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why it failed, or a note on a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Bytes read so far, updated at most once a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<PodVolumeProgress>,
    /// Bytes actually uploaded: small when the data did not change since the last backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_uploaded: Option<u64>,
    /// When the agent started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// When the agent finished, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<Time>,
}

/// One pod volume to fill from a snapshot.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arca.dev",
    version = "v1alpha1",
    kind = "PodVolumeRestore",
    namespaced,
    status = "PodVolumeRestoreStatus",
    shortname = "apvr",
    category = "arca",
    doc = "The data of one pod volume, written by the node agent on the restored pod's node from a snapshot in a restic-format repository. Created by the operator for a Restore.",
    printcolumn(name = "Restore", type_ = "string", json_path = ".metadata.labels.arca\\.dev/restore-name"),
    printcolumn(name = "Pod", type_ = "string", json_path = ".spec.pod.name"),
    printcolumn(name = "Volume", type_ = "string", json_path = ".spec.volume"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Bytes", type_ = "integer", json_path = ".status.progress.bytesDone"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec == oldSelf.spec").message("a PodVolumeRestore's spec cannot change after creation")
)]
#[serde(rename_all = "camelCase")]
pub struct PodVolumeRestoreSpec {
    /// The restored pod: the agent of the node it is scheduled on takes the work.
    pub pod: PodReference,
    /// The volume's name in the pod spec. The agent finds its folder under
    /// `<host-pods-dir>/<pod uid>/volumes/<plugin>/`: named after the volume, or after the
    /// PersistentVolume for a claim.
    pub volume: String,
    /// The BackupStorageLocation whose bucket holds the repository.
    pub backup_storage_location: String,
    /// The namespace of that location (the operator's, or a tenant's own).
    pub location_namespace: String,
    /// The repository: `volumes/<namespace>/` under the location's prefix (the namespace
    /// the data was backed up from).
    pub repo_identifier: String,
    /// The snapshot to restore.
    pub snapshot_id: String,
    /// The namespace the pod was backed up from.
    pub source_namespace: String,
    /// How the data is copied; only `restic-format` (rustic_core) is supported.
    #[serde(default = "default_uploader")]
    pub uploader_type: String,
}

/// What the restore of a volume did. Written by the agent only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodVolumeRestoreStatus {
    /// New, InProgress, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodVolumePhase>,
    /// The node whose agent took the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The folder the agent wrote into, on its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why it failed, or a note on a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Bytes written so far, updated at most once a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<PodVolumeProgress>,
    /// When the agent started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// When the agent finished, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<Time>,
}
