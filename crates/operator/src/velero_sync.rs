//! Velero's backups in an Arca location: the storage sync finds the folders of `backups/`
//! that Velero wrote (`velero-backup.json`) and makes a Backup object for each, labelled
//! `arca.dev/made-by: velero` and `arca.dev/synced-from-storage` (never run), with Velero's
//! phase, times, expiration and filters. Read-only forever: nothing here, nor anywhere else in
//! Arca, writes, changes or deletes anything in a Velero folder (the reader only has read
//! operations, `arca_velero::ReadOnlyStore`). A folder that cannot be read is skipped with a
//! warning and an Event naming it; the sync goes on.
//!
//! Only finished Velero backups are synced (Completed, PartiallyFailed, Failed,
//! FailedValidation): one Velero is still writing, or deleting, is looked at again at the
//! next sync. As with Arca's own backups, a Backup object deleted by a user comes back at the
//! next sync while its folder is there, and goes away once Velero deleted the folder.

use std::{collections::BTreeSet, sync::Arc};

use arca_api::{Backup, BackupPhase, BackupProgress, BackupSpec, BackupStatus, labels};
use arca_runtime::status::time;
use arca_store::ObjectStore;
use arca_velero::{BackupPhase as VeleroPhase, FolderLayout, VeleroBackup, VeleroLocation};
use kube::{Api, ResourceExt, api::ListParams};

use crate::context::Context;

/// Arca's phase for a Velero backup in `phase`; None while Velero is still working on it
/// (or deleting it, or the phase is unknown): such a backup is not synced yet. Pure.
pub(crate) fn arca_phase(phase: &VeleroPhase) -> Option<BackupPhase> {
    match phase {
        VeleroPhase::Completed => Some(BackupPhase::Completed),
        VeleroPhase::PartiallyFailed => Some(BackupPhase::PartiallyFailed),
        VeleroPhase::Failed => Some(BackupPhase::Failed),
        VeleroPhase::FailedValidation => Some(BackupPhase::FailedValidation),
        VeleroPhase::New
        | VeleroPhase::Queued
        | VeleroPhase::ReadyToStart
        | VeleroPhase::InProgress
        | VeleroPhase::WaitingForPluginOperations
        | VeleroPhase::WaitingForPluginOperationsPartiallyFailed
        | VeleroPhase::Finalizing
        | VeleroPhase::FinalizingPartiallyFailed
        | VeleroPhase::Deleting
        | VeleroPhase::Other(_) => None,
    }
}

/// The Backup object (without status) and its status for Velero backup `velero`, found in
/// location `location` and synced into `namespace`; None when it is not finished. Pure.
pub(crate) fn backup_of(
    velero: &VeleroBackup,
    location: &str,
    namespace: &str,
) -> Option<(Backup, BackupStatus)> {
    let phase = arca_phase(&velero.phase)?;
    let mut spec = BackupSpec {
        included_namespaces: velero.included_namespaces.clone(),
        excluded_namespaces: velero.excluded_namespaces.clone(),
        included_resources: velero.included_resources.clone(),
        excluded_resources: velero.excluded_resources.clone(),
        include_cluster_resources: velero.include_cluster_resources,
        included_cluster_scoped_resources: velero.scoped_resources.included_cluster_scoped.clone(),
        excluded_cluster_scoped_resources: velero.scoped_resources.excluded_cluster_scoped.clone(),
        included_namespace_scoped_resources: velero
            .scoped_resources
            .included_namespace_scoped
            .clone(),
        excluded_namespace_scoped_resources: velero
            .scoped_resources
            .excluded_namespace_scoped
            .clone(),
        // A TTL Arca cannot read is left out: Arca never expires Velero's backups anyway.
        ttl: velero.ttl.as_deref().and_then(|t| t.parse().ok()),
        storage_location: Some(location.to_string()),
        default_volumes_to_fs_backup: velero.default_volumes_to_fs_backup,
        ..BackupSpec::default()
    };
    if spec.uses_old_resource_filters() && spec.uses_scoped_resource_filters() {
        // Velero refused such a backup (FailedValidation) and so does the CRD: the first
        // filters are kept, so the object can be made.
        spec.included_cluster_scoped_resources.clear();
        spec.excluded_cluster_scoped_resources.clear();
        spec.included_namespace_scoped_resources.clear();
        spec.excluded_namespace_scoped_resources.clear();
    }
    let mut backup = Backup::new(&velero.name, spec);
    backup.metadata.namespace = Some(namespace.to_string());
    let mut object_labels = std::collections::BTreeMap::new();
    object_labels.insert(labels::STORAGE_LOCATION.to_string(), location.to_string());
    object_labels.insert(labels::SYNCED_FROM_STORAGE.to_string(), "true".to_string());
    object_labels.insert(
        labels::MADE_BY.to_string(),
        labels::MADE_BY_VELERO.to_string(),
    );
    backup.metadata.labels = Some(object_labels);
    let progress = velero.total_items.map(|total| BackupProgress {
        total_items: total,
        items_backed_up: velero.items_backed_up.unwrap_or_default(),
        ..BackupProgress::default()
    });
    let status = BackupStatus {
        phase: Some(phase),
        format_version: velero
            .format_version
            .as_ref()
            .map(|v| format!("velero/{v}")),
        start_timestamp: velero.start_timestamp.map(time),
        completion_timestamp: velero.completion_timestamp.map(time),
        expiration: velero.expiration.map(time),
        progress,
        warnings: u32::try_from(velero.warnings).unwrap_or(u32::MAX),
        errors: u32::try_from(velero.errors).unwrap_or(u32::MAX),
        failure_reason: velero.failure_reason.clone(),
        ..BackupStatus::default()
    };
    Some((backup, status))
}

/// The Velero folders of `store` (a location's root) that have no Backup object in
/// `namespace` get one. Every folder that cannot be synced is named in a warning and an
/// Event on the location; none stops the others.
pub(crate) async fn sync_velero_folders(
    ctx: &Context,
    store: Arc<dyn ObjectStore>,
    location: &arca_api::BackupStorageLocation,
    namespace: &str,
) -> Result<(), String> {
    let velero = VeleroLocation::new(store);
    let folders = velero.list_backups().await.map_err(|e| e.to_string())?;
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), namespace);
    let local: BTreeSet<String> = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .iter()
        .map(|b| b.name_any())
        .collect();
    for folder in folders {
        if local.contains(&folder.name) {
            continue;
        }
        let outcome = match &folder.layout {
            FolderLayout::Velero { .. } => adopt(ctx, &velero, &api, location, namespace, &folder.name).await,
            FolderLayout::Both => Err("it holds both velero-backup.json and Arca's backup.json: two tools wrote one folder, so neither is trusted; remove the one that does not belong".to_string()),
            FolderLayout::Arca | FolderLayout::Unrecognized | FolderLayout::InvalidName { .. } => continue,
        };
        match outcome {
            Ok(true) => {
                tracing::info!(location = %location.name_any(), namespace, backup = %folder.name, "synced a Velero backup from storage");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(location = %location.name_any(), namespace, backup = %folder.name, "skipping Velero backup folder backups/{}/: {e}", folder.name);
                ctx.event(
                    location,
                    true,
                    "VeleroBackupNotSynced",
                    format!(
                        "Velero backup folder backups/{}/ is not synced: {e}",
                        folder.name
                    ),
                )
                .await;
            }
        }
    }
    Ok(())
}

/// Creates the Backup object of Velero backup `name`; false when it is not finished or an
/// object of that name appeared meanwhile.
async fn adopt(
    ctx: &Context,
    velero: &VeleroLocation,
    api: &Api<Backup>,
    location: &arca_api::BackupStorageLocation,
    namespace: &str,
    name: &str,
) -> Result<bool, String> {
    let found = velero.backup(name).await.map_err(|e| e.to_string())?;
    let Some((backup, status)) = backup_of(&found, &location.name_any(), namespace) else {
        tracing::debug!(
            backup = name,
            phase = found.phase.as_str(),
            "Velero backup not finished: not synced yet"
        );
        return Ok(false);
    };
    let found = format!(
        "Velero backup found in location {} ({}); Arca only reads it",
        location.name_any(),
        velero.store().describe()
    );
    crate::sync::create_synced(ctx, api, &backup, status, "VeleroBackupSynced", found).await
}

/// Whether Velero backup `name`'s folder is still there (its `velero-backup.json`), asked
/// of the store now.
pub(crate) async fn velero_folder_exists(
    store: &dyn ObjectStore,
    name: &str,
) -> Result<bool, String> {
    store
        .size(&arca_velero::VeleroLayout::metadata(name))
        .await
        .map(|s| s.is_some())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn velero_json(phase: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "velero.io/v1",
            "kind": "Backup",
            "metadata": {"name": "nightly", "namespace": "velero", "uid": "u1"},
            "spec": {
                "includedNamespaces": ["shop"], "ttl": "720h0m0s", "storageLocation": "default",
                "includedClusterScopedResources": ["storageclasses"],
                "excludedNamespaceScopedResources": ["secrets"]
            },
            "status": {
                "phase": phase,
                "formatVersion": "1.1.0",
                "startTimestamp": "2026-11-01T10:00:00Z",
                "completionTimestamp": "2026-11-01T10:01:00Z",
                "expiration": "2026-12-01T10:00:00Z",
                "progress": {"totalItems": 12, "itemsBackedUp": 12},
                "warnings": 2
            }
        }))
        .expect("json")
    }

    fn parsed(phase: &str) -> VeleroBackup {
        VeleroBackup::parse(
            &velero_json(phase),
            "nightly",
            "backups/nightly/velero-backup.json",
        )
        .expect("parsed")
    }

    #[test]
    fn finished_phases_map_and_running_ones_wait() {
        let cases = [
            ("Completed", Some(BackupPhase::Completed)),
            ("PartiallyFailed", Some(BackupPhase::PartiallyFailed)),
            ("Failed", Some(BackupPhase::Failed)),
            ("FailedValidation", Some(BackupPhase::FailedValidation)),
            ("InProgress", None),
            ("WaitingForPluginOperations", None),
            ("Finalizing", None),
            ("Deleting", None),
            ("New", None),
            ("", None),
            ("Something", None),
        ];
        for (velero, arca) in cases {
            assert_eq!(arca_phase(&VeleroPhase::parse(velero)), arca, "{velero}");
        }
    }

    #[test]
    fn a_velero_backup_becomes_a_labelled_backup_with_its_times() {
        let (backup, status) =
            backup_of(&parsed("Completed"), "velero-bucket", "arca-system").expect("finished");
        assert!(backup.is_made_by_velero());
        let object_labels = backup.metadata.labels.clone().unwrap_or_default();
        assert_eq!(object_labels[labels::SYNCED_FROM_STORAGE], "true");
        assert_eq!(object_labels[labels::STORAGE_LOCATION], "velero-bucket");
        assert_eq!(backup.metadata.namespace.as_deref(), Some("arca-system"));
        assert_eq!(backup.spec.included_namespaces, ["shop"]);
        // Velero's scoped filters are carried over, as `describe` shows them.
        assert_eq!(
            backup.spec.included_cluster_scoped_resources,
            ["storageclasses"]
        );
        assert_eq!(backup.spec.excluded_namespace_scoped_resources, ["secrets"]);
        assert!(backup.spec.uses_scoped_resource_filters());
        assert_eq!(
            backup.spec.storage_location.as_deref(),
            Some("velero-bucket")
        );
        assert_eq!(
            backup.spec.ttl.map(|d| d.as_std()),
            Some(std::time::Duration::from_secs(720 * 3600))
        );
        assert_eq!(status.phase, Some(BackupPhase::Completed));
        assert_eq!(status.format_version.as_deref(), Some("velero/1.1.0"));
        assert_eq!(
            status.start_timestamp.map(|t| t.0.to_string()).as_deref(),
            Some("2026-11-01T10:00:00Z")
        );
        assert_eq!(
            status.expiration.map(|t| t.0.to_string()).as_deref(),
            Some("2026-12-01T10:00:00Z")
        );
        assert_eq!(status.warnings, 2);
        assert_eq!(status.progress.map(|p| p.total_items), Some(12));
    }

    #[test]
    fn a_velero_backup_mixing_both_kinds_of_filters_keeps_the_first_ones() {
        let mut velero = parsed("FailedValidation");
        velero.included_resources = vec!["configmaps".into()];
        let (backup, _) = backup_of(&velero, "velero-bucket", "arca-system").expect("finished");
        assert_eq!(backup.spec.included_resources, ["configmaps"]);
        assert!(
            !backup.spec.uses_scoped_resource_filters(),
            "{:?}",
            backup.spec
        );
    }

    #[test]
    fn a_running_velero_backup_is_not_synced_yet() {
        assert!(backup_of(&parsed("InProgress"), "l", "n").is_none());
    }

    /// The sync decides from the store now whether a Velero-made Backup's folder is gone.
    #[tokio::test]
    async fn a_velero_folder_is_there_while_its_velero_backup_json_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = arca_store::FsStore::new(dir.path(), "bucket", "p").expect("store");
        assert!(
            !velero_folder_exists(&store, "nightly")
                .await
                .expect("asked")
        );
        store
            .put(
                "backups/nightly/velero-backup.json",
                bytes::Bytes::from(velero_json("Completed")),
            )
            .await
            .expect("put");
        assert!(
            velero_folder_exists(&store, "nightly")
                .await
                .expect("asked")
        );
    }
}
