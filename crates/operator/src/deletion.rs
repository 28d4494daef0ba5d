//! DeleteBackupRequest: the only way backup data leaves storage. Refused while the backup
//! runs; deferred while its objects are under object lock (checked on every object before
//! anything is deleted; the request waits, Deferred, until the latest retain-until date);
//! deletes `backup.json` first (the backup stops existing at once), then forgets its
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

/// Why a request to delete `backup` (in `phase`) is refused without deleting anything, if it
/// is: it is running, or Velero made it (Arca never deletes Velero's data; Velero's own
/// `velero backup delete` does, and the storage sync then removes the Backup object). Pure.
fn refusal(backup: &Backup, phase: BackupPhase) -> Option<String> {
    let name = backup.name_any();
    if backup.is_made_by_velero() {
        return Some(format!(
            "backup {name} was made by Velero (label {}={}): Arca never deletes Velero's data, nothing was deleted. Delete it with `velero backup delete {name}`; the next storage sync then removes this Backup object",
            labels::MADE_BY,
            labels::MADE_BY_VELERO
        ));
    }
    matches!(phase, BackupPhase::New | BackupPhase::InProgress).then(|| {
        format!(
            "backup {name} is {phase:?}: delete it once it has finished, or stop it now by deleting the Backup object (`arca backup delete {name}` does; the run stops and what it wrote is removed)"
        )
    })
}

fn truncate(name: &str, max: usize) -> &str {
    &name[..name.len().min(max)]
}

async fn reconcile(request: Arc<DeleteBackupRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Read from the apiserver, not the controller's cache: right after this process wrote
    // Processed, the cache may still hold its InProgress, and acting on it would run the
    // deletion again over the finished one (finding the Backup gone, and overwriting the
    // outcome with "no Backup").
    let cached_namespace = request.namespace().unwrap_or_default();
    let fresh: Api<DeleteBackupRequest> = Api::namespaced(ctx.client.clone(), &cached_namespace);
    let request = match fresh.get_opt(&request.name_any()).await {
        Ok(Some(current)) => Arc::new(current),
        Ok(None) => return Ok(Action::await_change()),
        Err(e) => {
            tracing::warn!("reading DeleteBackupRequest {}: {e}", request.name_any());
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
    };
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
        ..DeleteBackupRequestStatus::default()
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
    let refusal = refusal(&backup, backup_phase);
    if let Some(refusal) = refusal {
        let status = done(vec![refusal]);
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
    match retention_hold(&ctx, &backup).await {
        Ok(None) => {}
        Ok(Some(hold)) => return defer(&ctx, &api, &request, backup_name, hold).await,
        Err(problem) => {
            let status = done(vec![problem]);
            apply_status(&api, &name, MANAGER, &status)
                .await
                .map_err(|e| Error::Status(name.clone(), e))?;
            ctx.event(
                request.as_ref(),
                true,
                "DeletionFailed",
                status.errors.join("; "),
            )
            .await;
            return Ok(Action::await_change());
        }
    }
    let in_progress = DeleteBackupRequestStatus {
        phase: Some(DeleteBackupRequestPhase::InProgress),
        ..DeleteBackupRequestStatus::default()
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

/// A deletion that must wait: the backup's objects are retained until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    until: jiff::Timestamp,
    mode: arca_store::LockMode,
}

/// A store's clock may run behind the operator's: a deferred deletion waits this much past
/// the retain-until date, so the store never refuses what was checked.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A deferred request is looked at again at least this often (a retention extended in the
/// store, a request deleted), and at its date.
const RECHECK: Duration = Duration::from_secs(24 * 3600);

/// The object lock retention that holds the backup's objects, read from the store for every
/// object of the backup before anything is deleted: None when the location has no
/// `objectLock` or every retention has passed. Err: the retentions could not be read (what
/// to say; nothing was deleted).
async fn retention_hold(ctx: &Context, backup: &Backup) -> Result<Option<Hold>, String> {
    let name = backup.name_any();
    let namespace = backup.namespace().unwrap_or_default();
    // A location that cannot be opened is reported by the deletion itself.
    let Ok((location, store)) =
        location_for(ctx, &namespace, backup.location_name().as_deref()).await
    else {
        return Ok(None);
    };
    if location.spec.object_lock.is_none() {
        return Ok(None);
    }
    let failed = |e: arca_store::StoreError| {
        format!(
            "reading the object lock retention of backup {name}'s objects: {e}; nothing was deleted (the credentials need s3:GetObject and s3:GetObjectRetention)"
        )
    };
    let objects = store
        .list(&arca_store::Layout::backup_dir(&name))
        .await
        .map_err(failed)?;
    let mut held = Vec::new();
    for object in &objects {
        if let Some(retention) = store.retention(&object.key).await.map_err(failed)?
            && let Ok(until) = jiff::Timestamp::try_from(retention.until)
        {
            held.push((until, retention.mode));
        }
    }
    let now = ctx.clock.now();
    let skewed = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
    Ok(
        arca_policy::lock::locked_until(held.iter().map(|h| h.0), skewed).and_then(|until| {
            held.iter()
                .find(|h| h.0 == until)
                .map(|h| Hold { until, mode: h.1 })
        }),
    )
}

/// What a Deferred request says.
fn deferred_message(backup: &str, hold: Hold) -> String {
    format!(
        "backup {backup} is under object lock ({}) until {}: the store refuses to delete its objects before then, so nothing was deleted. The deletion runs then; delete this DeleteBackupRequest to cancel it",
        hold.mode, hold.until
    )
}

/// Marks the request Deferred until the hold ends (an Event the first time), and looks at it
/// again then.
async fn defer(
    ctx: &Context,
    api: &Api<DeleteBackupRequest>,
    request: &DeleteBackupRequest,
    backup: &str,
    hold: Hold,
) -> Result<Action, Error> {
    let name = request.name_any();
    let message = deferred_message(backup, hold);
    let status = DeleteBackupRequestStatus {
        phase: Some(DeleteBackupRequestPhase::Deferred),
        retain_until: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            hold.until,
        )),
        message: Some(message.clone()),
        errors: Vec::new(),
    };
    if request.status.as_ref() != Some(&status) {
        apply_status(api, &name, MANAGER, &status)
            .await
            .map_err(|e| Error::Status(name.clone(), e))?;
        ctx.event(request, false, "DeletionDeferred", message).await;
    }
    let wait = ctx
        .clock
        .now()
        .duration_until(hold.until)
        .unsigned_abs()
        .saturating_add(CLOCK_SKEW)
        .min(RECHECK);
    Ok(Action::requeue(wait))
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
        let volumes = match &metadata {
            Some(metadata) => {
                arca_store::archive::read_volume_snapshots(store.as_ref(), &name, metadata).await
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
        let csi = match &metadata {
            Some(metadata) => {
                arca_store::archive::read_csi_snapshots(store.as_ref(), &name, metadata).await
            }
            None => Ok(Default::default()),
        };
        let csi = match csi {
            Ok(csi) => csi,
            Err(e) => {
                return vec![format!(
                    "reading csi-snapshots.json of {name}: {e}; nothing was deleted"
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
        let mut errors = forget_volumes(ctx, &location, &volumes).await;
        errors.extend(delete_csi_snapshots(ctx, backup, &csi).await);
        if !errors.is_empty() {
            return errors;
        }
        if let Err(e) = backups.delete_files(&name).await {
            return vec![format!(
                "backup {name} no longer exists, but some of its objects could not be deleted ({e}): create another DeleteBackupRequest to finish"
            )];
        }
    }
    if let Some(uid) = backup.uid() {
        delete_work_items(ctx, &name, &uid).await;
    }
    match backups.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Vec::new(),
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => vec![format!("deleting the Backup object {name}: {e}")],
    }
}

/// Deletes the PodVolumeBackups of the backup with `uid` (named `name`, for the log); an
/// agent still copying one stops when it is gone.
pub(crate) async fn delete_work_items(ctx: &Context, name: &str, uid: &str) {
    let work: Api<PodVolumeBackup> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
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

/// Deletes the CSI snapshots the backup kept (their VolumeSnapshotContents). Returns what
/// failed.
pub(crate) async fn delete_csi_snapshots(
    ctx: &Context,
    backup: &Backup,
    csi: &arca_store::archive::CsiSnapshots,
) -> Vec<String> {
    let name = backup.name_any();
    let namespace = backup.namespace().unwrap_or_default();
    let mut errors = Vec::new();
    for record in &csi.snapshots {
        match arca_engine::csi::delete::delete_snapshot(&ctx.client, &name, &namespace, record)
            .await
        {
            Ok(arca_engine::csi::delete::Deleted::Snapshot) => tracing::info!(
                backup = %name,
                "deleted the CSI snapshot of claim {}/{} (VolumeSnapshotContent {})",
                record.namespace, record.claim, record.content
            ),
            Ok(arca_engine::csi::delete::Deleted::Absent) => tracing::info!(
                backup = %name,
                "the CSI snapshot of claim {}/{} has no VolumeSnapshotContent {} in this cluster: left to the cluster that made it",
                record.namespace, record.claim, record.content
            ),
            Err(e) => errors.push(format!(
                "the CSI snapshot of claim {}/{}: {e}",
                record.namespace, record.claim
            )),
        }
    }
    errors
}

/// Forgets the backup's volume snapshots and prunes each repository. Returns what failed.
pub(crate) async fn forget_volumes(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleting_a_velero_backup_is_refused_and_says_how_to_delete_it() {
        let mut backup = Backup::new("nightly", arca_api::BackupSpec::default());
        assert_eq!(refusal(&backup, BackupPhase::Completed), None);
        assert!(refusal(&backup, BackupPhase::InProgress).is_some());
        backup.metadata.labels = Some(
            [(
                labels::MADE_BY.to_string(),
                labels::MADE_BY_VELERO.to_string(),
            )]
            .into(),
        );
        let refused = refusal(&backup, BackupPhase::Completed).expect("refused");
        assert!(refused.contains("made by Velero"), "{refused}");
        assert!(refused.contains("nothing was deleted"), "{refused}");
        assert!(
            refused.contains("velero backup delete nightly"),
            "{refused}"
        );
    }

    #[test]
    fn a_deferred_deletion_says_until_when_and_that_nothing_was_deleted() {
        let hold = Hold {
            until: "2026-12-27T10:00:00Z".parse().expect("time"),
            mode: arca_store::LockMode::Compliance,
        };
        let message = deferred_message("nightly-1", hold);
        assert!(
            message.starts_with(
                "backup nightly-1 is under object lock (COMPLIANCE) until 2026-12-27T10:00:00Z"
            ),
            "{message}"
        );
        assert!(message.contains("nothing was deleted"), "{message}");
        assert!(
            message.contains("delete this DeleteBackupRequest to cancel"),
            "{message}"
        );
    }
}
