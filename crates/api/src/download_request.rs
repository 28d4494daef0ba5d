//! `DownloadRequest`: a short-lived URL to read a backup's or restore's files, so the user's
//! machine needs no storage credentials (as Velero's).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to download.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arca.dev",
    version = "v1alpha1",
    kind = "DownloadRequest",
    namespaced,
    status = "DownloadRequestStatus",
    shortname = "adlr",
    category = "arca",
    doc = "A request for a short-lived URL to one file of a backup or restore (log, results, contents). Whoever may create these may read the backups of the namespace, Secrets included: grant it accordingly.",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.target.kind"),
    printcolumn(name = "Name", type_ = "string", json_path = ".spec.target.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DownloadRequestSpec {
    /// The file wanted.
    pub target: DownloadTarget,
}

/// A file of a backup or a restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadTarget {
    /// Which file.
    pub kind: DownloadTargetKind,
    /// The Backup or Restore (in this namespace).
    #[x_kube(validation = Rule::new("self != ''").message("name must name the Backup or Restore"))]
    pub name: String,
}

/// The files that can be downloaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DownloadTargetKind {
    /// `logs.jsonl.zst` of a backup.
    #[default]
    BackupLog,
    /// `resources.tar.zst` of a backup: every item.
    BackupContents,
    /// `results.json` of a backup.
    BackupResults,
    /// `index.jsonl.zst` of a backup: one line per item (`arca backup describe --details`).
    BackupIndex,
    /// `volumes.json` of a backup: its pod volume snapshots.
    BackupVolumes,
    /// `csi-snapshots.json` of a backup: its claims' CSI snapshots.
    BackupCsiSnapshots,
    /// `logs.jsonl.zst` of a restore.
    RestoreLog,
    /// `results.json` of a restore.
    RestoreResults,
    /// `items.jsonl.zst` of a restore: the outcome of every item.
    RestoreItems,
}

/// Where a download request stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DownloadRequestPhase {
    /// Waiting for the operator.
    #[default]
    New,
    /// Answered: `downloadURL`, or `message` saying why there is none.
    Processed,
}

/// The answer. Written by the operator only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadRequestStatus {
    /// New or Processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DownloadRequestPhase>,
    /// A URL that reads the file with a plain GET until `expiration`.
    #[serde(
        default,
        rename = "downloadURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub download_url: Option<String>,
    /// When the URL stops working (the request is deleted then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Time>,
    /// Why there is no URL, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
