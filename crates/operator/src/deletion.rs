//! DeleteBackupRequest: the only way backup data leaves storage. Refused while the backup
//! runs; deletes `backup.json` first (the backup stops existing at once), then forgets its
//! pod volume snapshots and prunes their repositories, then every other object of the backup,
//! then its PodVolumeBackups and the Backup object.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use arca_api::{
    Backup, BackupPhase, DeleteBackupRequest, DeleteBackupRequestPhase, DeleteBackupRequestSpec,
    DeleteBackupRequestStatus, PodVolumeBackup, labels,
};
use arca_engine::{
    pod_volumes::repository_key,
    protocol::{RepositoryId, derive_repository_password},
};
use arca_store::archive::VolumeSnapshots;
use arca_volume::VolumeRepository;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};

use arca_runtime::{locations, status::apply_status};

use crate::{backup_controller::location_for, context::Context};

const MANAGER: &str = "arca-deletion-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {0}: {1}")]
    Status(String, #[source] kube::Error),
    #[error("removing the processed request {0}: {1}")]
    Remove(String, #[source] kube::Error),
}

/// Processed requests are removed this long after they were made.
const KEEP_PROCESSED: Duration = Duration::from_secs(24 * 3600);

/// This controller's name in logs and `arca_reconcile_failures_total`.
const CONTROLLER: &str = "deletebackuprequest";

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let requests: Api<DeleteBackupRequest> = ctx.settings.watched(&ctx.client);
    let controller = Controller::new(requests, watcher::Config::default());
    ctx.drive(CONTROLLER, controller, shutdown, reconcile).await;
}

/// Files a request to delete `backup` (once: an open request for it is enough).
pub async fn request_deletion(ctx: &Context, backup: &Backup, why: &str) {
    let namespace = backup.namespace().unwrap_or_default();
    let api: Api<DeleteBackupRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    let open = api
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            labels::DELETE_BACKUP_NAME,
            backup.name_any()
        )))
        .await
        .map(|l| {
            l.items.iter().any(|r| {
                r.status.as_ref().and_then(|s| s.phase) != Some(DeleteBackupRequestPhase::Processed)
            })
        })
        .unwrap_or(false);
    if open {
        return;
    }
    let mut request = DeleteBackupRequest::new(
        "",
        DeleteBackupRequestSpec {
            backup_name: backup.name_any(),
        },
    );
    request.metadata.name = None;
    request.metadata.generate_name = Some(format!("{}-", truncate(&backup.name_any(), 50)));
    request.metadata.labels = Some(
        [(labels::DELETE_BACKUP_NAME.to_string(), backup.name_any())]
            .into_iter()
            .collect(),
    );
    match api.create(&PostParams::default(), &request).await {
        Ok(_) => {
            tracing::info!(backup = %backup.name_any(), "deletion requested ({why})");
            ctx.event(
                backup,
                false,
                "DeletionRequested",
                format!("deletion requested by {why}"),
            )
            .await;
        }
        Err(e) => tracing::warn!(backup = %backup.name_any(), "requesting deletion ({why}): {e}"),
    }
}

/// A Processed request is kept a day (`kubectl get deletebackuprequests` shows what was
/// deleted and any errors), then removed.
async fn remove_when_old(
    api: &Api<DeleteBackupRequest>,
    request: &DeleteBackupRequest,
    now: jiff::Timestamp,
) -> Result<Action, Error> {
    let age = request
        .creation_timestamp()
        .map(|t| now.duration_since(t.0).unsigned_abs())
        .unwrap_or_default();
    if let Some(left) = KEEP_PROCESSED.checked_sub(age).filter(|d| !d.is_zero()) {
        return Ok(Action::requeue(left));
    }
    match api
        .delete(&request.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::Remove(request.name_any(), e)),
    }
}

fn truncate(name: &str, max: usize) -> &str {
    &name[..name.len().min(max)]
}

async fn reconcile(request: Arc<DeleteBackupRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let phase = request
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let api: Api<DeleteBackupRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    if phase == DeleteBackupRequestPhase::Processed {
        return remove_when_old(&api, &request, ctx.clock.now()).await;
    }
    let done = |errors: Vec<String>| DeleteBackupRequestStatus {
        phase: Some(DeleteBackupRequestPhase::Processed),
        errors,
    };
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let backup_name = &request.spec.backup_name;
    let backup = match backups.get_opt(backup_name).await {
        Ok(Some(backup)) => backup,
        Ok(None) => {
            let status = done(vec![format!(
                "no Backup {backup_name:?} in namespace {namespace}"
            )]);
            apply_status(&api, &name, MANAGER, &status)
                .await
                .map_err(|e| Error::Status(name.clone(), e))?;
            return Ok(Action::await_change());
        }
        Err(e) => {
            tracing::warn!("reading backup {backup_name}: {e}");
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
    };
    let backup_phase = backup
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    if matches!(backup_phase, BackupPhase::New | BackupPhase::InProgress) {
        let status = done(vec![format!(
            "backup {backup_name} is {backup_phase:?}: delete it once it has finished"
        )]);
        apply_status(&api, &name, MANAGER, &status)
            .await
            .map_err(|e| Error::Status(name.clone(), e))?;
        ctx.event(
            request.as_ref(),
            true,
            "DeletionRefused",
            status.errors.join("; "),
        )
        .await;
        return Ok(Action::await_change());
    }
    let in_progress = DeleteBackupRequestStatus {
        phase: Some(DeleteBackupRequestPhase::InProgress),
        errors: Vec::new(),
    };
    apply_status(&api, &name, MANAGER, &in_progress)
        .await
        .map_err(|e| Error::Status(name.clone(), e))?;
    let errors = delete_backup(&ctx, &backup).await;
    let status = done(errors.clone());
    apply_status(&api, &name, MANAGER, &status)
        .await
        .map_err(|e| Error::Status(name.clone(), e))?;
    if errors.is_empty() {
        ctx.event(
            request.as_ref(),
            false,
            "BackupDeleted",
            format!("backup {backup_name} and its data are deleted"),
        )
        .await;
    } else {
        ctx.event(request.as_ref(), true, "DeletionFailed", errors.join("; "))
            .await;
    }
    Ok(Action::await_change())
}

/// Deletes the backup's data, then the Backup object. Returns what failed.
async fn delete_backup(ctx: &Context, backup: &Backup) -> Vec<String> {
    let name = backup.name_any();
    let namespace = backup.namespace().unwrap_or_default();
    let mut status = backup.status.clone().unwrap_or_default();
    status.phase = Some(BackupPhase::Deleting);
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Err(e) = apply_status(&backups, &name, "arca-backup-controller", &status).await {
        return vec![format!("marking backup {name} Deleting: {e}")];
    }
    let location_name = backup.location_name();
    let store = match location_for(ctx, &namespace, location_name.as_deref()).await {
        Ok((location, store)) => match locations::ensure_writable(&location) {
            Ok(()) => Some((location, store)),
            Err(e) => {
                return vec![format!(
                    "{e}: its backups cannot be deleted; the Backup object is kept"
                )];
            }
        },
        // A location that is gone leaves nothing to delete in storage; the object goes.
        Err(locations::LocationError::NotFound { .. }) => None,
        Err(e) => {
            return vec![format!(
                "opening the location of backup {name}: {e}; nothing was deleted"
            )];
        }
    };
    if let Some((location, store)) = store {
        // volumes.json names the snapshots to forget: only one the seal vouches for is
        // followed (a forged one could name another backup's snapshots).
        let metadata = match ctx.backup_metadata(store.as_ref(), &name).await {
            Ok(metadata) => metadata,
            Err(e) => {
                return vec![format!(
                    "reading backup.json of {name}: {e}; nothing was deleted"
                )];
            }
        };
        let volumes = match metadata {
            Some(metadata) => {
                arca_store::archive::read_volume_snapshots(store.as_ref(), &name, &metadata).await
            }
            None => Ok(Default::default()),
        };
        let volumes = match volumes {
            Ok(volumes) => volumes,
            Err(e) => {
                return vec![format!(
                    "reading volumes.json of {name}: {e}; nothing was deleted"
                )];
            }
        };
        let backups = arca_store::BackupStore::new(store.as_ref());
        if let Err(e) = backups.retract(&name).await {
            return vec![format!(
                "deleting backup.json of {name}: {e}; nothing was deleted"
            )];
        }
        // The volume snapshots go before volumes.json, which names them: a failure here
        // leaves it for the next DeleteBackupRequest.
        let errors = forget_volumes(ctx, &location, &volumes).await;
        if !errors.is_empty() {
            return errors;
        }
        if let Err(e) = backups.delete_files(&name).await {
            return vec![format!(
                "backup {name} no longer exists, but some of its objects could not be deleted ({e}): create another DeleteBackupRequest to finish"
            )];
        }
    }
    let work: Api<PodVolumeBackup> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    if let Some(uid) = backup.uid() {
        let selector = format!("{}={uid}", labels::BACKUP_UID);
        match work.list(&ListParams::default().labels(&selector)).await {
            Ok(items) => {
                for item in items {
                    if let Err(e) = work
                        .delete(&item.name_any(), &DeleteParams::default())
                        .await
                    {
                        tracing::warn!(backup = %name, "deleting PodVolumeBackup {}: {e}", item.name_any());
                    }
                }
            }
            Err(e) => tracing::warn!(backup = %name, "listing its PodVolumeBackups: {e}"),
        }
    }
    match backups.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Vec::new(),
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => vec![format!("deleting the Backup object {name}: {e}")],
    }
}

/// Forgets the backup's volume snapshots and prunes each repository. Returns what failed.
async fn forget_volumes(
    ctx: &Context,
    location: &arca_api::BackupStorageLocation,
    volumes: &VolumeSnapshots,
) -> Vec<String> {
    if volumes.snapshots.is_empty() {
        return Vec::new();
    }
    let password = match ctx.repository_password().await {
        Ok(p) => p,
        Err(e) => return vec![format!("{e}; the backup's volume snapshots are kept")],
    };
    let root =
        match locations::open_store(&ctx.client, location, ctx.settings.storage_policy(), None)
            .await
        {
            Ok(store) => store,
            Err(e) => return vec![format!("opening location {}: {e}", location.name_any())],
        };
    let mut by_repository: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for snapshot in &volumes.snapshots {
        by_repository
            .entry(snapshot.repository.as_str())
            .or_default()
            .push(snapshot.snapshot_id.clone());
    }
    let mut errors = Vec::new();
    for (repository, ids) in by_repository {
        // Only Arca's repositories: volumes.json is input from the bucket.
        let id = match RepositoryId::parse(repository) {
            Ok(id) => id,
            Err(_) => {
                errors.push(format!(
                    "volumes.json names {repository:?}, which is not a volume repository (volumes/<namespace>/, or tenants/<namespace>/volumes/<namespace>/): its {} snapshots are kept",
                    ids.len()
                ));
                continue;
            }
        };
        // Its own password first; the shared one for a repository not yet re-keyed.
        let own = derive_repository_password(&password, &id);
        let repo = VolumeRepository::at_root(root.clone(), repository, own.reveal().to_string())
            .with_fallback_password(password.reveal().to_string());
        let key = repository_key(
            &location.namespace().unwrap_or_default(),
            &location.name_any(),
            repository,
        );
        let _sole = ctx.repository_locks.exclusive(&key).await;
        match repo.forget(&ids).await {
            Ok(report) => tracing::info!(repository, "forgot {} snapshots: {report:?}", ids.len()),
            Err(e) => errors.push(format!(
                "forgetting {} volume snapshots in {repository}: {e}; create another DeleteBackupRequest to finish",
                ids.len()
            )),
        }
    }
    errors
}
