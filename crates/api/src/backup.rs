//! `Backup`: one backup of the selected namespaces' manifests (and, on request, volume data).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{BackupHooks, Duration};

/// What to back up and where. Immutable once created.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arca.dev",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    shortname = "abk",
    category = "arca",
    doc = "A backup of the selected namespaces' resources to a BackupStorageLocation, and of the pod volume data asked for (copied by the node agents into restic-format repositories). Data leaves storage only through a DeleteBackupRequest.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Items", type_ = "integer", json_path = ".status.progress.itemsBackedUp"),
    printcolumn(name = "Total", type_ = "integer", json_path = ".status.progress.totalItems", priority = "1"),
    printcolumn(name = "Errors", type_ = "integer", json_path = ".status.errors"),
    printcolumn(name = "Warnings", type_ = "integer", json_path = ".status.warnings"),
    printcolumn(name = "Location", type_ = "string", json_path = ".metadata.labels.arca\\.dev/storage-location"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiration", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec == oldSelf.spec").message("a Backup's spec cannot change after creation: create a new Backup instead")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.labelSelector) || !has(self.orLabelSelectors) || size(self.orLabelSelectors) == 0").message("labelSelector and orLabelSelectors cannot be used together: use one of them"))]
#[x_kube(validation = Rule::new("!(has(self.includedResources) || has(self.excludedResources) || has(self.includeClusterResources)) || !(has(self.includedClusterScopedResources) || has(self.excludedClusterScopedResources) || has(self.includedNamespaceScopedResources) || has(self.excludedNamespaceScopedResources))").message("includedResources, excludedResources and includeClusterResources cannot be used together with the scoped filters (includedClusterScopedResources, excludedClusterScopedResources, includedNamespaceScopedResources, excludedNamespaceScopedResources): use one kind"))]
pub struct BackupSpec {
    /// Namespaces to back up; `*` and globs such as `team-*` allowed. Empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces never backed up (globs allowed). Wins over `includedNamespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resources to back up, by plural, singular, kind or short name, optionally with
    /// the group (`deploy`, `deployments.apps`, `configmaps`). Empty or `*` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources never backed up, named as in `includedResources`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// Whether cluster-scoped resources are backed up. Unset: only those the namespaced
    /// items need (their PVs, CRDs, the ClusterRoleBindings of their service accounts), or all
    /// of them when the backup covers every namespace. `true`: all that the filters pass.
    /// `false`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// Cluster-scoped resources to back up (Velero's scoped filters, which replace
    /// `includedResources`, `excludedResources` and `includeClusterResources`: the two kinds
    /// cannot be mixed). `*` means all. Unset with `excludedClusterScopedResources` unset too:
    /// all of them when the backup covers every namespace and every namespaced resource,
    /// otherwise only those the namespaced items need (their PVs, CRDs, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_cluster_scoped_resources: Vec<String>,
    /// Cluster-scoped resources never backed up, not even as items the namespaced ones need;
    /// `*` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_cluster_scoped_resources: Vec<String>,
    /// Namespaced resources to back up; empty or `*` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespace_scoped_resources: Vec<String>,
    /// Namespaced resources never backed up; `*` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespace_scoped_resources: Vec<String>,
    /// Only objects whose labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects whose labels match any of these selectors. Not with `labelSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub or_label_selectors: Vec<LabelSelector>,
    /// How long the backup is kept before garbage collection deletes it (`720h`, the
    /// operator's `--default-backup-ttl`, when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// The ServiceAccount of this namespace whose rights the run acts with: every read,
    /// write and hook exec of the run impersonates it, so the apiserver's RBAC decides what
    /// it may touch. Outside the operator's namespace it defaults to the operator's
    /// `--default-service-account` (`arca`), which must exist; in the operator's namespace,
    /// unset means the operator's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
    /// The BackupStorageLocation to write to. Default: the location marked `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Commands run in pods before and after their items are backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<BackupHooks>,
    /// Back up the data of every pod volume (of supported types) unless a pod opts out with
    /// the `backup.arca.dev/backup-volumes-excludes` annotation. Default: only the volumes
    /// named in `backup.arca.dev/backup-volumes` (Velero's `backup.velero.io/...` annotations
    /// work too). hostPath, secret, configMap, projected and downwardAPI volumes are never
    /// copied. The node agent on each pod's node copies the data (`arca install
    /// --use-node-agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_fs_backup: Option<bool>,
    /// Per resource (`pods`, `pvc`, `deployments.apps`), objects written first, in this
    /// order: a comma-separated list of `namespace/name` (or `name` for cluster-scoped
    /// ones); the resource's other objects follow in list order. For `pods`, their backup
    /// hooks also run in this order, one pod after another, before the other pods' hooks.
    /// A name that does not exist is a warning; an entry of the wrong form fails validation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ordered_resources: BTreeMap<String, String>,
    /// A ConfigMap of this namespace holding resource policies (Velero's format: `version:
    /// v1`, `volumePolicies` whose conditions choose volumes by capacity, storage class,
    /// claim labels, NFS server, CSI driver or source type, and whose action is `skip`,
    /// `fs-backup` or `snapshot`). The first matching policy decides a volume's fate over
    /// the pod's annotations and `defaultVolumesToFsBackup`. Its `includeExcludePolicy`
    /// (the four scoped resource lists) joins this Backup's scoped filters, which win where
    /// they name a resource; not with `includedResources`, `excludedResources` or
    /// `includeClusterResources`. `kind` must be `ConfigMap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<crate::ConfigMapReference>,
    /// How the node agents write this backup's pod volume data (Velero's block name; Arca
    /// has its own fields in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader_config: Option<UploaderConfig>,
    /// Take a CSI snapshot (`snapshot.storage.k8s.io/v1` VolumeSnapshot) of each backed-up
    /// PersistentVolumeClaim bound to a CSI volume, unless its data is copied by the node
    /// agent (annotations, `defaultVolumesToFsBackup`) or a resource policy decides
    /// otherwise. Unset: snapshot where a VolumeSnapshotClass exists for the driver, and warn
    /// where none does; `true`: a claim that cannot be snapshotted is an error of the
    /// backup; `false`: no snapshot. The class: the claim's annotation
    /// `velero.io/csi-volumesnapshot-class` (or `backup.arca.dev/...`), then this Backup's
    /// annotation `velero.io/csi-volumesnapshot-class_<driver>`, then the driver's class
    /// labelled `velero.io/csi-volumesnapshot-class: "true"` (or `arca.dev/...`), then its
    /// default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,
    /// Copy each CSI snapshot's data into the bucket (Velero's data mover), then delete the
    /// snapshot: the backup then needs neither the storage system nor the cluster. After the
    /// post hooks, each snapshot is mounted through a temporary claim by a pod in the
    /// operator's namespace on the node of the pod that mounts the claim, the node agent there
    /// copies its files into the namespace's volume repository, recorded as a file copy of
    /// that pod volume, and everything temporary is removed. A claim no pod of the backup
    /// mounts is read on a node with a node agent and recorded as the claim's alone; a
    /// restore fills it through a short-lived Job. A claim whose copy fails keeps its
    /// snapshot (an error names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_move_data: Option<bool>,
    /// How long a CSI snapshot may take to become ready (`10m` when unset); past it the
    /// snapshot is deleted and its claim named in the backup's errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_snapshot_timeout: Option<Duration>,
    /// Velero's bound on asynchronous item operations (data movement), `4h` when unset.
    /// Accepted for compatibility; Arca has no asynchronous operation that it bounds yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_operation_timeout: Option<Duration>,
    /// Velero's VolumeSnapshotLocations, for its cloud providers' snapshot plugins. Arca
    /// takes CSI snapshots only and has no such locations: a non-empty list is a warning of
    /// the backup, and the claims are snapshotted through CSI where they can be.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub volume_snapshot_locations: Vec<String>,
}

/// Settings of the pod volume data copy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploaderConfig {
    /// Whether pod volume data is compressed (see [`VolumeCompression`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<VolumeCompression>,
}

/// Whether pod volume data is compressed. `Auto` (the default): each chunk is compressed
/// with zstd when that saves at least 3%, so text shrinks and random data is stored as it
/// is. `Off`: data is stored as it is, without trying: less CPU, for volumes whose data is
/// already compressed or encrypted (media, archives, compressed database pages). Folder
/// listings are compressed either way; restic and Arca read both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumeCompression {
    /// Compressed where that pays (at least 3% saved).
    #[default]
    Auto,
    /// Stored as it is.
    Off,
}

/// Where a backup stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackupPhase {
    /// Created, not yet picked up.
    #[default]
    New,
    /// The spec is invalid; see `validationErrors`. Nothing was written.
    FailedValidation,
    /// Running.
    InProgress,
    /// Done, every selected item written.
    Completed,
    /// Done, but some items or hooks failed; see `errors` and the results.
    PartiallyFailed,
    /// Not usable; see `failureReason`.
    Failed,
    /// A DeleteBackupRequest is removing it.
    Deleting,
}

impl BackupPhase {
    /// True when the backup will not change any more (bar deletion).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::PartiallyFailed | Self::Failed | Self::FailedValidation
        )
    }
}

/// Counts of items.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    /// Items selected so far (grows while resources are still being listed).
    #[serde(default)]
    pub total_items: u64,
    /// Items written to the archive.
    #[serde(default)]
    pub items_backed_up: u64,
    /// Bytes of pod volume data to copy (file copies and moved CSI snapshots), summed over
    /// the backup's PodVolumeBackups; grows while the node agents scan the volumes.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub total_volume_bytes: u64,
    /// Of those, bytes the node agents have read so far.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub volume_bytes_backed_up: u64,
}

/// Counts of hooks run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookStatus {
    /// Hooks run.
    #[serde(default)]
    pub hooks_attempted: u32,
    /// Hooks that failed (non-zero exit, timeout, or no such container).
    #[serde(default)]
    pub hooks_failed: u32,
}

/// What happened to a backup. Written by the operator only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// New, FailedValidation, InProgress, Completed, PartiallyFailed, Failed or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Why the spec was refused, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
    /// The version of the storage format the backup was written in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<String>,
    /// When the operator started the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// When the backup ended, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<Time>,
    /// When garbage collection deletes the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Time>,
    /// Items selected and written, updated at most once a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<BackupProgress>,
    /// Warnings recorded (details in the uploaded results).
    #[serde(default)]
    pub warnings: u32,
    /// Errors recorded (details in the uploaded results).
    #[serde(default)]
    pub errors: u32,
    /// Why the backup failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Hooks run and failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_status: Option<HookStatus>,
    /// Bytes of manifests written (compressed archive size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_bytes: Option<u64>,
    /// CSI VolumeSnapshots the backup created (Velero's field name).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub csi_volume_snapshots_attempted: u32,
    /// Of those, the ones that became ready and are recorded in the backup.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub csi_volume_snapshots_completed: u32,
    /// Conditions, as the Kubernetes API conventions ask: `Completed` (True when the backup ended Completed; False with the phase as reason and why as message otherwise).
    /// `kubectl wait --for=condition=Completed backup/<name>` waits on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

impl crate::conditions::CompletedByPhase for BackupStatus {
    fn conditions_mut(
        &mut self,
    ) -> &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        &mut self.conditions
    }

    fn completed(&self) -> (bool, String, String) {
        let phase = self.phase.unwrap_or_default();
        let message = match phase {
            BackupPhase::PartiallyFailed => format!(
                "{} errors, {} warnings: `arca backup describe` lists them",
                self.errors, self.warnings
            ),
            BackupPhase::Failed => self.failure_reason.clone().unwrap_or_default(),
            BackupPhase::FailedValidation => self.validation_errors.join("; "),
            _ => String::new(),
        };
        (
            phase == BackupPhase::Completed,
            format!("{phase:?}"),
            message,
        )
    }
}

impl BackupSpec {
    /// Whether the spec uses Velero's first resource filters (`includedResources`,
    /// `excludedResources`, `includeClusterResources`) rather than the scoped ones. A spec
    /// with neither uses the scoped ones (a resource policy's `includeExcludePolicy` then
    /// applies).
    pub fn uses_old_resource_filters(&self) -> bool {
        !self.included_resources.is_empty()
            || !self.excluded_resources.is_empty()
            || self.include_cluster_resources.is_some()
    }

    /// Whether the spec sets any of the scoped resource filters.
    pub fn uses_scoped_resource_filters(&self) -> bool {
        !self.included_cluster_scoped_resources.is_empty()
            || !self.excluded_cluster_scoped_resources.is_empty()
            || !self.included_namespace_scoped_resources.is_empty()
            || !self.excluded_namespace_scoped_resources.is_empty()
    }
}

impl Backup {
    /// The location the backup was written to: `spec.storageLocation`, else the
    /// `arca.dev/storage-location` label the operator puts on it when it starts.
    pub fn location_name(&self) -> Option<String> {
        self.spec.storage_location.clone().or_else(|| {
            self.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::labels::STORAGE_LOCATION).cloned())
        })
    }

    /// Whether the storage sync made this Backup from a backup Velero wrote (label
    /// `arca.dev/made-by: velero`): its data is Velero's, read-only to Arca.
    pub fn is_made_by_velero(&self) -> bool {
        self.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::labels::MADE_BY))
            .is_some_and(|v| v == crate::labels::MADE_BY_VELERO)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

pub(crate) fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
