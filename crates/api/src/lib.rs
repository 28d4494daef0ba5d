//! Arca's custom resources, group `arca.dev`, version `v1alpha1`.
//!
//! Only types, constants and pure helpers live here: no I/O. Field names follow Velero's
//! `velero.io/v1` where the concept is the same, so a Velero manifest ports by changing its
//! `apiVersion`. Every field carries a `///` doc comment: it is what `kubectl explain` shows.

// kube-derive takes one `printcolumn(...)` per column; clippy reads their repeated `type_ = ...`
// as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

mod backup;
pub mod conditions;
mod delete_request;
mod download_request;
mod duration;
mod hooks;
pub mod labels;
mod location;
pub mod names;
mod pod_volume;
mod reference;
mod restore;
pub mod restore_helper;
mod schedule;

pub use backup::{
    Backup, BackupPhase, BackupProgress, BackupSpec, BackupStatus, HookStatus, UploaderConfig,
    VolumeCompression,
};
pub use delete_request::{
    DeleteBackupRequest, DeleteBackupRequestPhase, DeleteBackupRequestSpec,
    DeleteBackupRequestStatus,
};
pub use download_request::{
    DownloadRequest, DownloadRequestPhase, DownloadRequestSpec, DownloadRequestStatus,
    DownloadTarget, DownloadTargetKind,
};
pub use duration::{Duration, DurationError};
pub use hooks::{
    BackupHooks, BackupResourceHook, BackupResourceHookSpec, ExecHook, HookErrorMode, InitHook,
    RestoreExecHook, RestoreHooks, RestoreResourceHook, RestoreResourceHookSpec,
};
pub use location::{
    AccessMode, BackupStorageLocation, BackupStorageLocationSpec, BackupStorageLocationStatus,
    LocationEncryption, LocationPhase, ObjectLock, ObjectLockMode, ObjectStorage, Provider,
};
pub use pod_volume::{
    PodReference, PodVolumeBackup, PodVolumeBackupSpec, PodVolumeBackupStatus, PodVolumePhase,
    PodVolumeProgress, PodVolumeRestore, PodVolumeRestoreSpec, PodVolumeRestoreStatus,
};
pub use reference::render_reference;
pub use restore::{
    ConfigMapReference, ExistingResourcePolicy, ItemOutcomes, Restore, RestorePhase,
    RestoreProgress, RestoreSpec, RestoreStatus, RestoreStatusSpec,
};
pub use schedule::{Retention, Schedule, SchedulePhase, ScheduleSpec, ScheduleStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every Arca resource.
pub const GROUP: &str = "arca.dev";
/// The API version of every Arca resource.
pub const VERSION: &str = "v1alpha1";

/// Every CRD Arca defines, in the order they are installed.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        BackupStorageLocation::crd(),
        Backup::crd(),
        Restore::crd(),
        Schedule::crd(),
        DeleteBackupRequest::crd(),
        DownloadRequest::crd(),
        PodVolumeBackup::crd(),
        PodVolumeRestore::crd(),
    ]
}

/// Every CRD as `(file name, YAML)`, the form kept in `crds/` and printed by `arca crd`.
pub fn render_crds() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            serde_yaml::to_string(&crd).map(|yaml| (name, yaml))
        })
        .collect()
}
