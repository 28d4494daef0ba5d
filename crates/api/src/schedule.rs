//! `Schedule`: backups made by a cron expression, kept by retention rules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::BackupSpec;

/// When to back up, what, and how many backups to keep.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arca.dev",
    version = "v1alpha1",
    kind = "Schedule",
    namespaced,
    status = "ScheduleStatus",
    shortname = "asch",
    category = "arca",
    doc = "Backups made on a cron schedule from a template, named <schedule>-YYYYMMDDhhmmss, kept by ttl and retention rules.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Paused", type_ = "boolean", json_path = ".spec.paused"),
    printcolumn(name = "Last Backup", type_ = "date", json_path = ".status.lastBackup"),
    printcolumn(
        name = "Next Run",
        type_ = "date",
        json_path = ".status.nextRun",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// When to run: 5-field cron (`0 3 * * *`: 03:00 daily), or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`, `@every 6h`.
    #[x_kube(validation = Rule::new("self != ''").message("schedule must not be empty: write a cron expression such as '0 3 * * *' or '@every 6h'"))]
    pub schedule: String,
    /// The IANA time zone the cron expression is read in (`Europe/Paris`). Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The spec of each Backup made.
    pub template: BackupSpec,
    /// Make no backups while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Do not back up right away when the schedule is created or unpaused; wait for the
    /// next time the expression names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_immediately: Option<bool>,
    /// Make the schedule the owner of its Backups (deleting the Schedule then deletes the
    /// Backup objects, never their data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_owner_references_in_backup: Option<bool>,
    /// How many backups to keep, as restic's `forget`; applied after each scheduled
    /// backup, on top of each backup's ttl. The newest Completed backup is always kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// Keep rules, as restic's `forget --keep-*`. A backup kept by any rule is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep the newest N backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_yearly: Option<u32>,
}

/// Whether the schedule runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SchedulePhase {
    /// Not yet checked.
    #[default]
    New,
    /// Valid and running (or paused).
    Enabled,
    /// The expression or time zone is invalid; see `validationErrors`.
    FailedValidation,
}

/// What the schedule has done. Written by the operator only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// New, Enabled or FailedValidation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SchedulePhase>,
    /// Why the spec was refused, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
    /// When the last backup was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<Time>,
    /// When a run was last skipped because the previous backup had not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skipped: Option<Time>,
    /// When the next backup is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Time>,
}
