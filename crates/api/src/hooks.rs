//! Hooks: commands run in pods by exec around a backup, and after a restore.
//! Shapes and names follow Velero's `hooks` fields.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Hooks run during a backup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupHooks {
    /// Hooks, each applied to the pods its selectors choose. Pod annotations
    /// (`pre.hook.backup.arca.dev/command`, or Velero's `pre.hook.backup.velero.io/command`)
    /// take precedence over these for the pods that carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub resources: Vec<BackupResourceHookSpec>,
}

/// A set of backup hooks and the pods they apply to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupResourceHookSpec {
    /// A name for this hook, shown in logs and results.
    pub name: String,
    /// Namespaces (globs allowed) whose pods this hook applies to. Empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces (globs allowed) whose pods this hook never applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resources this hook applies to (hooks only ever run in pods). Empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources this hook never applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// Only pods whose labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Hooks run in a pod before its items are backed up, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub pre: Vec<BackupResourceHook>,
    /// Hooks run in a pod after its items are backed up, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub post: Vec<BackupResourceHook>,
}

/// One backup hook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupResourceHook {
    /// A command to run in a container of the pod.
    pub exec: ExecHook,
}

/// A command run in a container through the apiserver's exec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecHook {
    /// The container to run the command in. Defaults to the pod's first container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments, run without a shell (wrap in `/bin/sh -c` for one).
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// What a failure does: `Fail` leaves the pod's items out and the backup
    /// PartiallyFailed; `Continue` records a warning. Default Fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<HookErrorMode>,
    /// How long the command may run before it is cut off and counted as failed. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// What a failed hook does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HookErrorMode {
    /// Stop: the pod's items are not backed up (or the restore records an error).
    #[default]
    Fail,
    /// Record a warning and go on.
    Continue,
}

/// Hooks run during a restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreHooks {
    /// Hooks, each applied to the restored pods its selectors choose. Pod annotations
    /// (`post.hook.restore.arca.dev/command`, `init.hook.restore.arca.dev/container-image`,
    /// or Velero's `…velero.io/…`) take precedence for the pods that carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub resources: Vec<RestoreResourceHookSpec>,
}

/// A set of restore hooks and the pods they apply to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResourceHookSpec {
    /// A name for this hook, shown in logs and results.
    pub name: String,
    /// Namespaces (globs allowed; the backed-up names, before mapping) whose pods this hook
    /// applies to. Empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces (globs allowed) whose pods this hook never applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resources this hook applies to (hooks only ever apply to pods). Empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources this hook never applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// Only pods whose labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Hooks for the restored pods: init containers added before they start, and commands
    /// run once they are up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub post_hooks: Vec<RestoreResourceHook>,
}

/// One restore hook: either `init` or `exec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResourceHook {
    /// Init containers added to the restored pod, run before its own init containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitHook>,
    /// A command run in a container of the restored pod once it is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<RestoreExecHook>,
}

/// Init containers injected into a restored pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitHook {
    /// Containers (the `v1.Container` shape) added in front of the pod's init containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    #[schemars(with = "Vec<serde_json::Map<String, serde_json::Value>>")]
    pub init_containers: Vec<serde_json::Value>,
    /// How long the init containers may take. Accepted for Velero compatibility; not
    /// enforced (the kubelet runs init containers to completion, and the Restore does not
    /// wait for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// A command run in a restored pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreExecHook {
    /// The container to run the command in. Defaults to the pod's first container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments, run without a shell.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// `Fail` counts an error on the restore; `Continue` a warning. Default Continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<HookErrorMode>,
    /// How long the command may run. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_timeout: Option<Duration>,
    /// How long to wait for the container to be running (or ready). Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<Duration>,
    /// Wait for the container to be Ready, not only Running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_ready: Option<bool>,
}
