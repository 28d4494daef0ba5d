//! Storage is the source of truth: every location's `backupSyncPeriod`, the backups in its
//! `backups/` that have a `backup.json` but no Backup object here get one (rewritten to this
//! namespace and location), and Completed or PartiallyFailed Backups of the location whose
//! data is gone are removed. Works on ReadOnly locations: this is how another cluster sees
//! the backups to restore (migration). The operator's own locations also hold tenants'
//! folders (`tenants/<namespace>/`): each is synced into its namespace the same way, so a
//! tenant's Backups come back after their objects are lost, here or in another cluster.

use std::{collections::BTreeSet, sync::Arc};

use arca_api::{
    Backup, BackupPhase, BackupStatus, BackupStorageLocation, BackupStorageLocationStatus, labels,
};
use arca_store::{Layout, ObjectStore};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};

use arca_runtime::status::time;

use crate::context::Context;
use arca_runtime::{locations, status::apply_status};

const MANAGER: &str = "arca-sync";
/// This controller's name in logs and `arca_reconcile_failures_total`.
const CONTROLLER: &str = "sync";

#[derive(Debug, thiserror::Error)]
#[error("syncing location {location}: {problem}")]
pub struct Error {
    location: String,
    problem: String,
}

/// A controller on locations that syncs each when its period is due and requeues itself for
/// the next: on the watched namespaces' locations, and always on the operator's own (its
/// locations hold the tenants' folders too).
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let mut apis: Vec<Api<BackupStorageLocation>> = vec![ctx.settings.watched(&ctx.client)];
    if ctx
        .settings
        .watch_namespace
        .as_ref()
        .is_some_and(|ns| *ns != ctx.settings.namespace)
    {
        apis.push(Api::namespaced(ctx.client.clone(), &ctx.settings.namespace));
    }
    let controllers = apis.into_iter().map(|api| {
        let controller = Controller::new(api, watcher::Config::default());
        ctx.clone()
            .drive(CONTROLLER, controller, shutdown.clone(), sync_when_due)
    });
    futures::future::join_all(controllers).await;
}

/// Syncs the location if its `backupSyncPeriod` has passed since the last sync; asks to be
/// called again when the next one is due.
async fn sync_when_due(
    location: Arc<BackupStorageLocation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let period = location
        .spec
        .backup_sync_period
        .map(|d| d.as_std())
        .unwrap_or(ctx.settings.backup_sync_period);
    if period.is_zero() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let since = location
        .status
        .as_ref()
        .and_then(|s| s.last_synced_time.as_ref())
        .map(|last| now.duration_since(last.0).unsigned_abs());
    if let Some(since) = since
        && since < period
    {
        return Ok(Action::requeue(period - since));
    }
    sync(&ctx, &location).await.map_err(|problem| Error {
        location: location.name_any(),
        problem,
    })?;
    let status = BackupStorageLocationStatus {
        last_synced_time: Some(time(now)),
        ..Default::default()
    };
    let namespace = location.namespace().unwrap_or_default();
    let api: Api<BackupStorageLocation> = Api::namespaced(ctx.client.clone(), &namespace);
    apply_status(&api, &location.name_any(), MANAGER, &status)
        .await
        .map_err(|e| Error {
            location: location.name_any(),
            problem: format!("recording the sync time: {e}"),
        })?;
    Ok(Action::requeue(period))
}

/// Syncs the location's backups into its namespace and, for a location of the operator's
/// namespace, each tenant's folder `tenants/<namespace>/` into that namespace.
async fn sync(ctx: &Context, location: &BackupStorageLocation) -> Result<(), String> {
    let namespace = location.namespace().unwrap_or_default();
    let store = locations::open_store(&ctx.client, location, ctx.settings.storage_policy(), None)
        .await
        .map_err(|e| e.to_string())?;
    sync_folder(ctx, store.as_ref(), location, &namespace).await?;
    // Velero's folders only at the location's root: Velero never writes a tenant's folder.
    if let Err(e) =
        crate::velero_sync::sync_velero_folders(ctx, store.clone(), location, &namespace).await
    {
        tracing::warn!(location = %location.name_any(), "syncing Velero's backups: {e}");
    }
    if namespace != ctx.settings.namespace {
        return Ok(());
    }
    let tenants = store
        .list_folders(Layout::TENANTS)
        .await
        .map_err(|e| e.to_string())?;
    for tenant in tenants {
        if let Err(e) = sync_tenant(ctx, location, &tenant).await {
            tracing::warn!(location = %location.name_any(), tenant = %tenant, "sync: {e}");
        }
    }
    Ok(())
}

/// One tenant's folder of an operator's location, into the tenant's namespace: only a
/// watched namespace that exists, and has no location of the same name of its own (its
/// Backups naming that location are the tenant location's).
async fn sync_tenant(
    ctx: &Context,
    location: &BackupStorageLocation,
    tenant: &str,
) -> Result<(), String> {
    if !arca_api::names::is_dns_label(tenant)
        || tenant == ctx.settings.namespace
        || ctx
            .settings
            .watch_namespace
            .as_ref()
            .is_some_and(|ns| ns != tenant)
    {
        return Ok(());
    }
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
    if namespaces
        .get_opt(tenant)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Ok(());
    }
    let own: Api<BackupStorageLocation> = Api::namespaced(ctx.client.clone(), tenant);
    if own
        .get_opt(&location.name_any())
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    let store = locations::open_store(
        &ctx.client,
        location,
        ctx.settings.storage_policy(),
        Some(&Layout::tenant_root(tenant)),
    )
    .await
    .map_err(|e| e.to_string())?;
    sync_folder(ctx, store.as_ref(), location, tenant).await
}

/// The backups of `store` (a location's root, or a tenant's folder in it) against the
/// Backups of `namespace`: missing ones are created, finished ones whose data is gone are
/// removed.
async fn sync_folder(
    ctx: &Context,
    store: &dyn ObjectStore,
    location: &BackupStorageLocation,
    namespace: &str,
) -> Result<(), String> {
    let name = location.name_any();
    let in_storage: BTreeSet<String> = arca_store::BackupStore::new(store)
        .names()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), namespace);
    let local = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let local_names: BTreeSet<String> = local.iter().map(|b| b.name_any()).collect();
    for folder in in_storage.difference(&local_names) {
        match adopt(ctx, store, &api, location, namespace, folder).await {
            Ok(true) => {
                tracing::info!(location = %name, namespace, backup = %folder, "synced from storage");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(location = %name, namespace, backup = %folder, "syncing: {e}");
                ctx.event(
                    location,
                    true,
                    "BackupNotSynced",
                    format!("backup {folder} (for namespace {namespace}) is not synced: {e}"),
                )
                .await;
            }
        }
    }
    for backup in gone_from_storage(store, &local, &name).await? {
        tracing::info!(location = %name, namespace, backup = %backup.name_any(), "its data is gone from storage: removing the Backup object");
        // Only the object that was looked at: not one recreated or changed since.
        let preconditions = kube::api::Preconditions {
            uid: backup.uid(),
            resource_version: backup.resource_version(),
        };
        let params = DeleteParams {
            preconditions: Some(preconditions),
            ..DeleteParams::default()
        };
        let _ = api.delete(&backup.name_any(), &params).await;
    }
    Ok(())
}

/// The finished Backups of location `location` whose `backup.json` is not in `store`, each
/// looked up in storage at this moment. Not from the bucket's listing: that was read before
/// the cluster's, so a backup finishing in between would look gone (a Completed Backup
/// deleted under a running `arca backup create --wait`).
async fn gone_from_storage<'a>(
    store: &dyn ObjectStore,
    local: &'a [Backup],
    location: &str,
) -> Result<Vec<&'a Backup>, String> {
    let mut gone = Vec::new();
    for backup in local {
        let of_this_location = backup.location_name().as_deref() == Some(location);
        let phase = backup.status.as_ref().and_then(|s| s.phase);
        let velero = backup.is_made_by_velero();
        // A Velero-made Backup is synced in any finished phase, so it goes in any.
        let finished = if velero {
            phase.is_some_and(BackupPhase::is_terminal)
        } else {
            matches!(
                phase,
                Some(BackupPhase::Completed | BackupPhase::PartiallyFailed)
            )
        };
        if !of_this_location || !finished {
            continue;
        }
        let present = if velero {
            crate::velero_sync::velero_folder_exists(store, &backup.name_any()).await?
        } else {
            arca_store::BackupStore::new(store)
                .exists(&backup.name_any())
                .await
                .map_err(|e| e.to_string())?
        };
        if !present {
            gone.push(backup);
        }
    }
    Ok(gone)
}

/// Why a backup found in tenant `namespace`'s folder is not that tenant's, if it is not: a
/// sealed backup of tenant A copied into tenant B's folder keeps its seal (which binds its
/// name), so the namespace it was made in is checked too.
pub(crate) fn foreign_tenant(ctx: &Context, stored: &Backup, namespace: &str) -> Option<String> {
    let made_in = stored.metadata.namespace.as_deref().unwrap_or_default();
    (namespace != ctx.settings.namespace && made_in != namespace).then(|| {
        format!(
            "it was made in namespace {made_in:?}, not {namespace}: someone copied it into this tenant's folder; it is not used"
        )
    })
}

/// Creates the Backup object of a backup found in storage; false when the folder holds no
/// `backup.json` (unfinished, failed, or being deleted).
async fn adopt(
    ctx: &Context,
    store: &dyn ObjectStore,
    api: &Api<Backup>,
    location: &BackupStorageLocation,
    namespace: &str,
    name: &str,
) -> Result<bool, String> {
    let Some(metadata) = ctx.backup_metadata(store, name).await? else {
        return Ok(false);
    };
    let stored: Backup = serde_json::from_value(metadata.backup.clone())
        .map_err(|e| format!("the Backup in backup.json: {e}"))?;
    if let Some(problem) = foreign_tenant(ctx, &stored, namespace) {
        return Err(problem);
    }
    let mut spec = stored.spec.clone();
    spec.storage_location = Some(location.name_any());
    let mut backup = Backup::new(name, spec);
    backup.metadata.namespace = Some(namespace.to_string());
    let mut object_labels = stored.metadata.labels.clone().unwrap_or_default();
    object_labels.insert(labels::STORAGE_LOCATION.into(), location.name_any());
    object_labels.insert(labels::SYNCED_FROM_STORAGE.into(), "true".into());
    backup.metadata.labels = Some(object_labels);
    backup.metadata.annotations = stored.metadata.annotations.clone();
    let mut status: BackupStatus = stored.status.unwrap_or_default();
    // The conditions describe this object: made again from the stored phase.
    status.conditions.clear();
    let found = format!(
        "found in location {} ({})",
        location.name_any(),
        store.describe()
    );
    create_synced(ctx, api, &backup, status, "BackupSynced", found).await
}

/// Creates a synced Backup object, then its status (with its `Completed` condition), and
/// says so in an Event (`reason`, `message`). False when an object of that name appeared
/// meanwhile (nothing is changed then).
pub(crate) async fn create_synced(
    ctx: &Context,
    api: &Api<Backup>,
    backup: &Backup,
    mut status: BackupStatus,
    reason: &str,
    message: String,
) -> Result<bool, String> {
    let created = match api.create(&PostParams::default(), backup).await {
        Ok(created) => created,
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    arca_api::conditions::set_completed(
        &mut status,
        created.metadata.generation,
        time(ctx.clock.now()),
    );
    apply_status(api, &backup.name_any(), "arca-backup-controller", &status)
        .await
        .map_err(|e| format!("status: {e}"))?;
    ctx.event(backup, false, reason, message).await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(name: &str, location: &str, phase: BackupPhase) -> Backup {
        let mut b = Backup::new(name, arca_api::BackupSpec::default());
        b.metadata.labels =
            Some([(labels::STORAGE_LOCATION.to_string(), location.to_string())].into());
        b.status = Some(BackupStatus {
            phase: Some(phase),
            ..BackupStatus::default()
        });
        b
    }

    /// The interleaving that deleted a just-finished Backup: the bucket is listed (no
    /// `done`), then `done` writes its backup.json and its object turns Completed, then the
    /// cluster is listed. Deciding from storage now, `done` stays.
    #[tokio::test]
    async fn a_backup_finishing_during_the_sync_is_not_taken_for_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = arca_store::FsStore::new(dir.path(), "bucket", "p").expect("store");
        let listed_before: BTreeSet<String> = store
            .list_folders(Layout::BACKUPS)
            .await
            .expect("listed")
            .into_iter()
            .collect();
        assert!(listed_before.is_empty());
        store
            .put(
                &Layout::backup_metadata("done"),
                bytes::Bytes::from_static(b"{}"),
            )
            .await
            .expect("backup.json");
        let local = [
            backup("done", "default", BackupPhase::Completed),
            backup("lost", "default", BackupPhase::PartiallyFailed),
            backup("running", "default", BackupPhase::InProgress),
            backup("elsewhere", "other", BackupPhase::Completed),
        ];
        let gone = gone_from_storage(&store, &local, "default")
            .await
            .expect("decided");
        let names: Vec<String> = gone.iter().map(|b| b.name_any()).collect();
        assert_eq!(names, ["lost"]);
    }

    /// A Velero-made Backup goes when its `velero-backup.json` does, in any finished phase;
    /// an Arca `backup.json` of the same name does not keep it.
    #[tokio::test]
    async fn a_velero_backup_is_gone_when_velero_deleted_its_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = arca_store::FsStore::new(dir.path(), "bucket", "p").expect("store");
        let velero = |name: &str, phase| {
            let mut b = backup(name, "default", phase);
            if let Some(l) = b.metadata.labels.as_mut() {
                l.insert(labels::MADE_BY.into(), labels::MADE_BY_VELERO.into());
            }
            b
        };
        for key in [
            "backups/there/velero-backup.json".to_string(),
            Layout::backup_metadata("disguised"),
        ] {
            store
                .put(&key, bytes::Bytes::from_static(b"{}"))
                .await
                .expect("put");
        }
        let local = [
            velero("there", BackupPhase::Completed),
            velero("failed-gone", BackupPhase::Failed),
            velero("disguised", BackupPhase::Completed),
        ];
        let gone = gone_from_storage(&store, &local, "default")
            .await
            .expect("decided");
        let names: Vec<String> = gone.iter().map(|b| b.name_any()).collect();
        assert_eq!(names, ["failed-gone", "disguised"]);
    }
}
