//! `DeleteBackupRequest`: the only way backup data leaves storage.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which backup to delete.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arca.dev",
    version = "v1alpha1",
    kind = "DeleteBackupRequest",
    namespaced,
    status = "DeleteBackupRequestStatus",
    shortname = "adbr",
    category = "arca",
    doc = "A request to delete a backup: its data in storage (archive, index, logs, results), then the Backup object. Refused while the backup is in progress.",
    printcolumn(name = "Backup", type_ = "string", json_path = ".spec.backupName"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DeleteBackupRequestSpec {
    /// The Backup (in this namespace) to delete.
    #[x_kube(validation = Rule::new("self != ''").message("backupName must name the Backup to delete"))]
    pub backup_name: String,
}

/// Where a deletion stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeleteBackupRequestPhase {
    /// Created, not yet picked up.
    #[default]
    New,
    /// Deleting.
    InProgress,
    /// Waiting: the backup's objects are under object lock until `retainUntil`; nothing was
    /// deleted, and the deletion runs then. Delete this request to cancel it.
    Deferred,
    /// Done; `errors` lists what could not be deleted, if anything.
    Processed,
}

/// What the deletion did. Written by the operator only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteBackupRequestStatus {
    /// New, InProgress, Deferred or Processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DeleteBackupRequestPhase>,
    /// When Deferred: the date until which the store refuses to delete the backup's objects
    /// (their object lock retention); the deletion runs then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// When Deferred: why, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What failed, one line each. Empty when everything was deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}
