//! `velero-backup.json`: Velero's Backup object (velero.io/v1), the fields Arca uses.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;

use crate::{KNOWN_FORMATS, VeleroError};

/// Velero's label naming the Schedule a backup was made by.
const SCHEDULE_LABEL: &str = "velero.io/schedule-name";

/// A Velero Backup's phase (`status.phase`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupPhase {
    /// `New`.
    New,
    /// `Queued`.
    Queued,
    /// `ReadyToStart`.
    ReadyToStart,
    /// `FailedValidation`.
    FailedValidation,
    /// `InProgress`.
    InProgress,
    /// `WaitingForPluginOperations`.
    WaitingForPluginOperations,
    /// `WaitingForPluginOperationsPartiallyFailed`.
    WaitingForPluginOperationsPartiallyFailed,
    /// `Finalizing`.
    Finalizing,
    /// `FinalizingPartiallyFailed`.
    FinalizingPartiallyFailed,
    /// `Completed`.
    Completed,
    /// `PartiallyFailed`.
    PartiallyFailed,
    /// `Failed`.
    Failed,
    /// `Deleting`.
    Deleting,
    /// Anything else (empty when there is no phase), as written.
    Other(String),
}

impl BackupPhase {
    /// The phase named `s` (Velero's spelling).
    pub fn parse(s: &str) -> Self {
        match s {
            "New" => Self::New,
            "Queued" => Self::Queued,
            "ReadyToStart" => Self::ReadyToStart,
            "FailedValidation" => Self::FailedValidation,
            "InProgress" => Self::InProgress,
            "WaitingForPluginOperations" => Self::WaitingForPluginOperations,
            "WaitingForPluginOperationsPartiallyFailed" => {
                Self::WaitingForPluginOperationsPartiallyFailed
            }
            "Finalizing" => Self::Finalizing,
            "FinalizingPartiallyFailed" => Self::FinalizingPartiallyFailed,
            "Completed" => Self::Completed,
            "PartiallyFailed" => Self::PartiallyFailed,
            "Failed" => Self::Failed,
            "Deleting" => Self::Deleting,
            other => Self::Other(other.to_string()),
        }
    }

    /// Velero's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::New => "New",
            Self::Queued => "Queued",
            Self::ReadyToStart => "ReadyToStart",
            Self::FailedValidation => "FailedValidation",
            Self::InProgress => "InProgress",
            Self::WaitingForPluginOperations => "WaitingForPluginOperations",
            Self::WaitingForPluginOperationsPartiallyFailed => {
                "WaitingForPluginOperationsPartiallyFailed"
            }
            Self::Finalizing => "Finalizing",
            Self::FinalizingPartiallyFailed => "FinalizingPartiallyFailed",
            Self::Completed => "Completed",
            Self::PartiallyFailed => "PartiallyFailed",
            Self::Failed => "Failed",
            Self::Deleting => "Deleting",
            Self::Other(s) => s,
        }
    }

    /// Whether Velero itself restores from a backup in this phase (Completed or
    /// PartiallyFailed).
    pub fn is_restorable(&self) -> bool {
        matches!(self, Self::Completed | Self::PartiallyFailed)
    }
}

/// A Velero Backup as `velero-backup.json` holds it: the fields Arca shows and uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VeleroBackup {
    /// `metadata.name` (checked to be the folder's name).
    pub name: String,
    /// `metadata.namespace`: Velero's namespace where it was made.
    pub namespace: Option<String>,
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The Schedule that made it (label `velero.io/schedule-name`).
    pub schedule: Option<String>,
    /// `status.phase`.
    pub phase: BackupPhase,
    /// `status.formatVersion` (`1.1.0` since Velero 1.4); None for older backups.
    pub format_version: Option<String>,
    /// `status.startTimestamp`.
    pub start_timestamp: Option<Timestamp>,
    /// `status.completionTimestamp`.
    pub completion_timestamp: Option<Timestamp>,
    /// `status.expiration`.
    pub expiration: Option<Timestamp>,
    /// `spec.includedNamespaces`.
    pub included_namespaces: Vec<String>,
    /// `spec.excludedNamespaces`.
    pub excluded_namespaces: Vec<String>,
    /// `spec.includedResources`.
    pub included_resources: Vec<String>,
    /// `spec.excludedResources`.
    pub excluded_resources: Vec<String>,
    /// `spec.includeClusterResources`.
    pub include_cluster_resources: Option<bool>,
    /// `spec.includedClusterScopedResources`, `excludedClusterScopedResources`,
    /// `includedNamespaceScopedResources`, `excludedNamespaceScopedResources` (Velero's
    /// scoped filters, in that order).
    pub scoped_resources: ScopedResources,
    /// `spec.storageLocation`.
    pub storage_location: Option<String>,
    /// `spec.ttl`, a Go duration (`720h0m0s`).
    pub ttl: Option<String>,
    /// `spec.defaultVolumesToFsBackup` (or the older `defaultVolumesToRestic`).
    pub default_volumes_to_fs_backup: Option<bool>,
    /// `spec.snapshotMoveData`: CSI snapshot data moved by Velero's data mover.
    pub snapshot_move_data: Option<bool>,
    /// `status.progress.totalItems`.
    pub total_items: Option<u64>,
    /// `status.progress.itemsBackedUp`.
    pub items_backed_up: Option<u64>,
    /// `status.warnings`.
    pub warnings: u64,
    /// `status.errors`.
    pub errors: u64,
    /// `status.failureReason`.
    pub failure_reason: Option<String>,
    /// `status.volumeSnapshotsAttempted`: native (cloud provider) snapshots.
    pub volume_snapshots_attempted: u64,
    /// `status.csiVolumeSnapshotsAttempted`.
    pub csi_volume_snapshots_attempted: u64,
}

/// Velero's scoped resource filters of a backup (empty lists when it set none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopedResources {
    /// `spec.includedClusterScopedResources`.
    pub included_cluster_scoped: Vec<String>,
    /// `spec.excludedClusterScopedResources`.
    pub excluded_cluster_scoped: Vec<String>,
    /// `spec.includedNamespaceScopedResources`.
    pub included_namespace_scoped: Vec<String>,
    /// `spec.excludedNamespaceScopedResources`.
    pub excluded_namespace_scoped: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    api_version: String,
    kind: String,
    metadata: RawMeta,
    #[serde(default)]
    spec: RawSpec,
    #[serde(default)]
    status: RawStatus,
}

#[derive(Deserialize)]
struct RawMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    #[serde(default)]
    included_namespaces: Option<Vec<String>>,
    #[serde(default)]
    excluded_namespaces: Option<Vec<String>>,
    #[serde(default)]
    included_resources: Option<Vec<String>>,
    #[serde(default)]
    excluded_resources: Option<Vec<String>>,
    #[serde(default)]
    include_cluster_resources: Option<bool>,
    #[serde(default)]
    included_cluster_scoped_resources: Option<Vec<String>>,
    #[serde(default)]
    excluded_cluster_scoped_resources: Option<Vec<String>>,
    #[serde(default)]
    included_namespace_scoped_resources: Option<Vec<String>>,
    #[serde(default)]
    excluded_namespace_scoped_resources: Option<Vec<String>>,
    #[serde(default)]
    storage_location: Option<String>,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    default_volumes_to_fs_backup: Option<bool>,
    #[serde(default)]
    default_volumes_to_restic: Option<bool>,
    #[serde(default)]
    snapshot_move_data: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    #[serde(default)]
    format_version: Option<String>,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    start_timestamp: Option<String>,
    #[serde(default)]
    completion_timestamp: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
    #[serde(default)]
    progress: Option<RawProgress>,
    #[serde(default)]
    warnings: Option<u64>,
    #[serde(default)]
    errors: Option<u64>,
    #[serde(default)]
    failure_reason: Option<String>,
    #[serde(default)]
    volume_snapshots_attempted: Option<u64>,
    #[serde(default, rename = "csiVolumeSnapshotsAttempted")]
    csi_volume_snapshots_attempted: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProgress {
    #[serde(default)]
    total_items: Option<u64>,
    #[serde(default)]
    items_backed_up: Option<u64>,
}

impl VeleroBackup {
    /// Parses `velero-backup.json` of the folder `folder` (read from `key`): a Backup of
    /// `velero.io/v1` whose name is the folder's.
    pub fn parse(bytes: &[u8], folder: &str, key: &str) -> Result<Self, VeleroError> {
        let bad = |detail: String| VeleroError::Metadata {
            key: key.into(),
            detail,
        };
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not a Velero Backup object in JSON: {e}")))?;
        if raw.api_version != "velero.io/v1" || raw.kind != "Backup" {
            return Err(bad(format!(
                "it holds a {} {}, not a velero.io/v1 Backup",
                raw.api_version, raw.kind
            )));
        }
        if raw.metadata.name != folder {
            return Err(bad(format!(
                "it names backup {:?}, but lies in folder {folder:?}: copied or moved in the bucket",
                raw.metadata.name
            )));
        }
        let time = |field: &str, value: Option<String>| -> Result<Option<Timestamp>, VeleroError> {
            value
                .map(|s| {
                    s.parse::<Timestamp>()
                        .map_err(|e| bad(format!("status.{field} {s:?} is not a time: {e}")))
                })
                .transpose()
        };
        let status = raw.status;
        let spec = raw.spec;
        let labels = raw.metadata.labels.unwrap_or_default();
        Ok(Self {
            schedule: labels.get(SCHEDULE_LABEL).cloned(),
            name: raw.metadata.name,
            namespace: raw.metadata.namespace,
            uid: raw.metadata.uid,
            labels,
            phase: BackupPhase::parse(status.phase.as_deref().unwrap_or_default()),
            format_version: status.format_version.filter(|v| !v.is_empty()),
            start_timestamp: time("startTimestamp", status.start_timestamp)?,
            completion_timestamp: time("completionTimestamp", status.completion_timestamp)?,
            expiration: time("expiration", status.expiration)?,
            included_namespaces: spec.included_namespaces.unwrap_or_default(),
            excluded_namespaces: spec.excluded_namespaces.unwrap_or_default(),
            included_resources: spec.included_resources.unwrap_or_default(),
            excluded_resources: spec.excluded_resources.unwrap_or_default(),
            include_cluster_resources: spec.include_cluster_resources,
            scoped_resources: ScopedResources {
                included_cluster_scoped: spec.included_cluster_scoped_resources.unwrap_or_default(),
                excluded_cluster_scoped: spec.excluded_cluster_scoped_resources.unwrap_or_default(),
                included_namespace_scoped: spec
                    .included_namespace_scoped_resources
                    .unwrap_or_default(),
                excluded_namespace_scoped: spec
                    .excluded_namespace_scoped_resources
                    .unwrap_or_default(),
            },
            storage_location: spec.storage_location.filter(|s| !s.is_empty()),
            ttl: spec.ttl.filter(|s| !s.is_empty()),
            default_volumes_to_fs_backup: spec
                .default_volumes_to_fs_backup
                .or(spec.default_volumes_to_restic),
            snapshot_move_data: spec.snapshot_move_data,
            total_items: status.progress.as_ref().and_then(|p| p.total_items),
            items_backed_up: status.progress.as_ref().and_then(|p| p.items_backed_up),
            warnings: status.warnings.unwrap_or(0),
            errors: status.errors.unwrap_or(0),
            failure_reason: status.failure_reason.filter(|s| !s.is_empty()),
            volume_snapshots_attempted: status.volume_snapshots_attempted.unwrap_or(0),
            csi_volume_snapshots_attempted: status.csi_volume_snapshots_attempted.unwrap_or(0),
        })
    }

    /// Ok when this crate reads the backup's format ([`KNOWN_FORMATS`]); otherwise
    /// [`VeleroError::UnknownFormat`] naming the version (`(none)` for backups older than
    /// Velero 1.4, which wrote no `formatVersion`).
    pub fn check_format(&self) -> Result<(), VeleroError> {
        match &self.format_version {
            Some(v) if KNOWN_FORMATS.contains(&v.as_str()) => Ok(()),
            other => Err(VeleroError::UnknownFormat {
                backup: self.name.clone(),
                version: other.clone().unwrap_or_else(|| "(none)".into()),
                known: KNOWN_FORMATS.join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"kind":"Backup","apiVersion":"velero.io/v1","metadata":{"name":"nightly-20250101","namespace":"velero","uid":"u-1","labels":{"velero.io/schedule-name":"nightly","velero.io/storage-location":"default"}},"spec":{"includedNamespaces":["shop"],"excludedNamespaces":["kube-system"],"ttl":"720h0m0s","storageLocation":"default","defaultVolumesToFsBackup":true,"hooks":{}},"status":{"version":1,"formatVersion":"1.1.0","expiration":"2025-01-31T00:00:00Z","phase":"Completed","startTimestamp":"2025-01-01T00:00:00Z","completionTimestamp":"2025-01-01T00:01:02Z","progress":{"totalItems":12,"itemsBackedUp":12},"warnings":2}}"#;

    #[test]
    fn velero_s_scoped_filters_are_read() -> Result<(), VeleroError> {
        let scoped = SAMPLE.replace(
            r#""ttl":"720h0m0s""#,
            r#""includedClusterScopedResources":["storageclasses"],"excludedNamespaceScopedResources":["secrets"],"ttl":"720h0m0s""#,
        );
        let b = VeleroBackup::parse(scoped.as_bytes(), "nightly-20250101", "k")?;
        assert_eq!(
            b.scoped_resources.included_cluster_scoped,
            vec!["storageclasses"]
        );
        assert_eq!(
            b.scoped_resources.excluded_namespace_scoped,
            vec!["secrets"]
        );
        assert!(b.scoped_resources.excluded_cluster_scoped.is_empty());
        let plain = VeleroBackup::parse(SAMPLE.as_bytes(), "nightly-20250101", "k")?;
        assert_eq!(plain.scoped_resources, ScopedResources::default());
        Ok(())
    }

    #[test]
    fn velero_s_backup_object() -> Result<(), VeleroError> {
        let b = VeleroBackup::parse(SAMPLE.as_bytes(), "nightly-20250101", "k")?;
        assert_eq!(b.phase, BackupPhase::Completed);
        assert!(b.phase.is_restorable());
        assert_eq!(b.schedule.as_deref(), Some("nightly"));
        assert_eq!(b.included_namespaces, vec!["shop".to_string()]);
        assert_eq!(b.excluded_namespaces, vec!["kube-system".to_string()]);
        assert_eq!(b.ttl.as_deref(), Some("720h0m0s"));
        assert_eq!(b.storage_location.as_deref(), Some("default"));
        assert_eq!(b.default_volumes_to_fs_backup, Some(true));
        assert_eq!(b.total_items, Some(12));
        assert_eq!(b.warnings, 2);
        assert_eq!(
            b.completion_timestamp.map(|t| t.to_string()),
            Some("2025-01-01T00:01:02Z".to_string())
        );
        assert_eq!(b.expiration.map(|t| t.as_second()), Some(1_738_281_600));
        b.check_format()
    }

    #[test]
    fn a_moved_or_foreign_object_is_refused() {
        let err = VeleroBackup::parse(
            SAMPLE.as_bytes(),
            "other",
            "backups/other/velero-backup.json",
        )
        .expect_err("moved");
        assert!(
            err.to_string().contains("lies in folder \"other\""),
            "{err}"
        );
        let restore = SAMPLE.replace("\"kind\":\"Backup\"", "\"kind\":\"Restore\"");
        let err = VeleroBackup::parse(restore.as_bytes(), "nightly-20250101", "k")
            .expect_err("not a backup");
        assert!(
            err.to_string().contains("not a velero.io/v1 Backup"),
            "{err}"
        );
        let err = VeleroBackup::parse(b"[1,2]", "x", "k").expect_err("not an object");
        assert!(
            err.to_string().contains("not a Velero Backup object"),
            "{err}"
        );
        let bad_time = SAMPLE.replace("2025-01-31T00:00:00Z", "soon");
        let err = VeleroBackup::parse(bad_time.as_bytes(), "nightly-20250101", "k")
            .expect_err("bad time");
        assert!(
            err.to_string().contains("status.expiration \"soon\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_formats_are_named() -> Result<(), VeleroError> {
        let old = SAMPLE.replace(",\"formatVersion\":\"1.1.0\"", "");
        let b = VeleroBackup::parse(old.as_bytes(), "nightly-20250101", "k")?;
        let err = b.check_format().expect_err("old");
        assert!(err.to_string().contains("format \"(none)\""), "{err}");
        let future = SAMPLE.replace("\"1.1.0\"", "\"2.0.0\"");
        let b = VeleroBackup::parse(future.as_bytes(), "nightly-20250101", "k")?;
        let err = b.check_format().expect_err("future");
        assert!(err.to_string().contains("format \"2.0.0\""), "{err}");
        assert!(
            err.to_string().contains("restore this backup with Velero"),
            "{err}"
        );
        Ok(())
    }
}
