//! `Restore`: bring a backup's resources back, in place or into mapped namespaces.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{HookStatus, RestoreHooks};

/// What to restore and how. Immutable once created.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arca.dev",
    version = "v1alpha1",
    kind = "Restore",
    namespaced,
    status = "RestoreStatus",
    shortname = "ars",
    category = "arca",
    doc = "A restore of a backup's resources into this cluster: in place, or into other namespaces with namespaceMapping; with dryRun, checked by the apiserver without writing anything.",
    printcolumn(name = "Backup", type_ = "string", json_path = ".spec.backupName"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Items", type_ = "integer", json_path = ".status.progress.itemsRestored"),
    printcolumn(name = "Total", type_ = "integer", json_path = ".status.progress.totalItems", priority = "1"),
    printcolumn(name = "Errors", type_ = "integer", json_path = ".status.errors"),
    printcolumn(name = "Warnings", type_ = "integer", json_path = ".status.warnings"),
    printcolumn(name = "Dry Run", type_ = "boolean", json_path = ".spec.dryRun", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec == oldSelf.spec").message("a Restore's spec cannot change after creation: create a new Restore instead")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.backupName) && self.backupName != '') != (has(self.scheduleName) && self.scheduleName != '')").message("set exactly one of backupName and scheduleName"))]
#[x_kube(validation = Rule::new("!has(self.labelSelector) || !has(self.orLabelSelectors) || size(self.orLabelSelectors) == 0").message("labelSelector and orLabelSelectors cannot be used together: use one of them"))]
pub struct RestoreSpec {
    /// The backup to restore. Exactly one of `backupName` and `scheduleName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// Restore the newest Completed backup made by this schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_name: Option<String>,
    /// The ServiceAccount of this namespace whose rights the run acts with: every read,
    /// write and hook exec of the run impersonates it, so the apiserver's RBAC decides what
    /// it may touch. Outside the operator's namespace it defaults to the operator's
    /// `--default-service-account` (`arca`), which must exist; in the operator's namespace,
    /// unset means the operator's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
    /// Namespaces of the backup to restore (globs allowed). Empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces of the backup never restored (globs allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resources to restore (`deploy`, `configmaps`, `certificates.cert-manager.io`). Empty
    /// or `*` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources never restored. Nodes, events, leases, endpoint slices and Arca's own
    /// resources are never restored in any case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// Whether cluster-scoped resources of the backup are restored. Unset: those the
    /// restored namespaced items need, or all when every namespace is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// Only objects whose labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects whose labels match any of these selectors. Not with `labelSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub or_label_selectors: Vec<LabelSelector>,
    /// Restore namespace `a` of the backup as namespace `b`: `{a: b}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_mapping: BTreeMap<String, String>,
    /// What to do with an object that already exists: `none` keeps it and records a
    /// warning (default); `update` brings it back to the backed-up state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_resource_policy: Option<ExistingResourcePolicy>,
    /// Resources whose `status` is restored too (it is dropped by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_status: Option<RestoreStatusSpec>,
    /// Keep the node ports of Services (by default the cluster assigns new ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_node_ports: Option<bool>,
    /// Restore volume data: pod volume data taken by the node agent into the recreated pods
    /// (the agent on each pod's node writes it), and claims from their CSI snapshots.
    /// Default true; `false` leaves the volumes empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_p_vs: Option<bool>,
    /// Hooks run in restored pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<RestoreHooks>,
    /// A ConfigMap of this namespace holding resource modifier rules (Velero's format:
    /// `version: v1`, `resourceModifierRules` with conditions and JSON, merge or strategic
    /// merge patches) applied to the items as they are restored. `kind` must be
    /// `ConfigMap`. Invalid rules fail validation; an item a rule cannot patch fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_modifier: Option<ConfigMapReference>,
    /// Restore a backup whose `backup.json` carries no seal (storage format 1, written before
    /// Arca authenticated its backups). Its contents cannot be told apart from what someone
    /// with write access to the bucket put there: set this only for a bucket you trust.
    /// Sealed backups are always checked, whatever this says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unauthenticated_backup: bool,
    /// Plan the restore and have the apiserver check every write with `dryRun=All`, but
    /// write nothing. The plan (create, update, skip, fail, per item) is in the results.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// A ConfigMap of the object's namespace holding rules (a Restore's resource modifiers, a
/// Backup's resource policies), as Velero's `TypedLocalObjectReference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapReference {
    /// Ignored (a ConfigMap is in the core group); accepted as Velero writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// `ConfigMap` (the only kind supported, as in Velero).
    pub kind: String,
    /// The ConfigMap's name, in the Restore's namespace.
    pub name: String,
}

/// What an existing object gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExistingResourcePolicy {
    /// Leave it as it is; record a warning when it differs from the backup.
    #[default]
    None,
    /// Bring it back to the backed-up state.
    Update,
}

/// Which resources get their status restored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatusSpec {
    /// Resources whose status is restored; `*` for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources whose status is never restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
}

/// Where a restore stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestorePhase {
    /// Created, not yet picked up.
    #[default]
    New,
    /// The spec is invalid (or names a backup that cannot be restored); see
    /// `validationErrors`. Nothing was written.
    FailedValidation,
    /// Running.
    InProgress,
    /// Done: every item restored or skipped by rule.
    Completed,
    /// Done, but some items or hooks failed; see `errors` and the results.
    PartiallyFailed,
    /// Stopped; see `failureReason`.
    Failed,
}

impl RestorePhase {
    /// True when the restore will not change any more.
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
pub struct RestoreProgress {
    /// Items the restore will handle.
    #[serde(default)]
    pub total_items: u64,
    /// Items handled so far (created, updated, unchanged, skipped or failed).
    #[serde(default)]
    pub items_restored: u64,
    /// Bytes of pod volume data to write back, summed over the restore's
    /// PodVolumeRestores.
    #[serde(default, skip_serializing_if = "crate::backup::is_zero_u64")]
    pub total_volume_bytes: u64,
    /// Of those, bytes the node agents have written so far.
    #[serde(default, skip_serializing_if = "crate::backup::is_zero_u64")]
    pub volume_bytes_restored: u64,
}

/// What happened to each item, counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemOutcomes {
    /// Created (or, in a dry run, would be).
    #[serde(default)]
    pub created: u64,
    /// Updated to the backed-up state (`existingResourcePolicy: update`).
    #[serde(default)]
    pub updated: u64,
    /// Already there and identical, or kept as it was (`existingResourcePolicy: none`).
    #[serde(default)]
    pub existing: u64,
    /// Left out by rule (a controller recreates it, or it is never restored).
    #[serde(default)]
    pub skipped: u64,
    /// Failed; the reason of each is in the results.
    #[serde(default)]
    pub failed: u64,
}

/// What happened to a restore. Written by the operator only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// New, FailedValidation, InProgress, Completed, PartiallyFailed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// Why the spec was refused, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
    /// The backup restored (resolved from `scheduleName` when that was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// When the operator started the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// When the restore ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<Time>,
    /// Items to restore and done, updated at most once a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RestoreProgress>,
    /// Outcome of each item, counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<ItemOutcomes>,
    /// Warnings recorded (details in the uploaded results).
    #[serde(default)]
    pub warnings: u32,
    /// Errors recorded (details in the uploaded results).
    #[serde(default)]
    pub errors: u32,
    /// Why the restore failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Restore hooks run and failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_status: Option<HookStatus>,
    /// Conditions, as the Kubernetes API conventions ask: `Completed` (True when the restore ended Completed; False with the phase as reason and why as message otherwise).
    /// `kubectl wait --for=condition=Completed restore/<name>` waits on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

impl crate::conditions::CompletedByPhase for RestoreStatus {
    fn conditions_mut(
        &mut self,
    ) -> &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        &mut self.conditions
    }

    fn completed(&self) -> (bool, String, String) {
        let phase = self.phase.unwrap_or_default();
        let message = match phase {
            RestorePhase::PartiallyFailed => format!(
                "{} errors, {} warnings: `arca restore describe` lists them",
                self.errors, self.warnings
            ),
            RestorePhase::Failed => self.failure_reason.clone().unwrap_or_default(),
            RestorePhase::FailedValidation => self.validation_errors.join("; "),
            _ => String::new(),
        };
        (
            phase == RestorePhase::Completed,
            format!("{phase:?}"),
            message,
        )
    }
}
