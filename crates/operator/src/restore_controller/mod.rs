//! The Restore controller: New -> (FailedValidation | InProgress -> Completed |
//! PartiallyFailed | Failed), with the finalizer `arca.dev/restore-cleanup` held from the
//! start. A New Restore goes through the same typed steps as a Backup: [`resolve`]
//! (validate the spec, pure, then the backup, its location and `backup.json`) -> the claim
//! -> [`execute`] (the engine) -> [`report`] (final status, metrics, Event). A backup Velero
//! made is first rewritten as Arca's archive in the operator's scratch space ([`velero`]),
//! then restored by the same engine.

use std::{sync::Arc, time::Duration};

use arca_api::{AccessMode, Backup, Restore, RestorePhase, RestoreProgress, RestoreStatus, labels};
use arca_store::{Layout, ObjectStore};
use kube::{
    Api, ResourceExt,
    api::ListParams,
    runtime::{Controller, controller::Action, watcher},
};

use arca_runtime::status::{apply_status, time};

use crate::{
    backup_controller::{location_for, tenant_of},
    context::{Context, Ownership},
    metrics::OutcomeLabels,
};
use execute::execute;
use resolve::resolve;

const MANAGER: &str = "arca-restore-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {0}: {1}")]
    Status(String, #[source] kube::Error),
    #[error("restore {0} is still running: its files are removed once it ends")]
    StillRunning(String),
    #[error("removing what restore {0} left: {1}")]
    Cleanup(String, String),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

use labels::RESTORE_FINALIZER as FINALIZER;

/// This controller's name in logs and `arca_reconcile_failures_total`.
const CONTROLLER: &str = "restore";

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let restores: Api<Restore> = ctx.settings.watched(&ctx.client);
    let config = kube::runtime::controller::Config::default()
        .concurrency(ctx.settings.max_concurrent_restores);
    let controller = Controller::new(restores, watcher::Config::default()).with_config(config);
    ctx.drive(CONTROLLER, controller, shutdown, reconcile).await;
}

async fn reconcile(restore: Arc<Restore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<Restore> =
        Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    kube::runtime::finalizer::finalizer(&api, FINALIZER, restore, |event| async {
        match event {
            kube::runtime::finalizer::Event::Apply(restore) => by_phase(restore, &ctx).await,
            kube::runtime::finalizer::Event::Cleanup(restore) => cleanup(&restore, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// A Restore being deleted: its files in the location and its PodVolumeRestores go first.
/// One still running keeps its finalizer until it ends.
async fn cleanup(restore: &Restore, ctx: &Context) -> Result<Action, Error> {
    let name = restore.name_any();
    let uid = restore.uid().unwrap_or_default();
    if ctx.ownership(&uid) == Ownership::Running {
        return Err(Error::StillRunning(name));
    }
    let work: Api<arca_api::PodVolumeRestore> =
        Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    velero::remove_scratch(ctx, &uid);
    let selector = format!("{}={uid}", labels::RESTORE_UID);
    work.delete_collection(
        &kube::api::DeleteParams::background(),
        &ListParams::default().labels(&selector),
    )
    .await
    .map_err(|e| Error::Cleanup(name.clone(), format!("its PodVolumeRestores: {e}")))?;
    match output_of(ctx, restore).await {
        Some(store) => {
            arca_store::delete_prefix(store.as_ref(), &Layout::restore_dir(&name))
                .await
                .map_err(|e| Error::Cleanup(name.clone(), e.to_string()))?;
        }
        None => {
            tracing::info!(restore = %name, "no writable location holds its files: nothing to remove in storage")
        }
    }
    Ok(Action::await_change())
}

/// Where the restore wrote its results and logs: the location it is labelled with (its
/// backup's, at the time), else its backup's location if that still exists; never a ReadOnly
/// one (nothing was written there).
async fn output_of(ctx: &Context, restore: &Restore) -> Option<Arc<dyn ObjectStore>> {
    let namespace = restore.namespace().unwrap_or_default();
    if let Some(location) = restore.labels().get(labels::STORAGE_LOCATION) {
        let (location, store) = location_for(ctx, &namespace, Some(location)).await.ok()?;
        return (location.spec.access_mode != AccessMode::ReadOnly).then_some(store);
    }
    let backup_name = restore
        .status
        .as_ref()
        .and_then(|s| s.backup_name.clone())
        .or_else(|| restore.spec.backup_name.clone())?;
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let backup = backups.get_opt(&backup_name).await.ok()??;
    if backup.is_made_by_velero() {
        // Nothing was written: `restores/<name>/` there may be Velero's own restore's.
        return None;
    }
    let location_name = backup.location_name();
    let (location, store) = location_for(ctx, &namespace, location_name.as_deref())
        .await
        .ok()?;
    (location.spec.access_mode != AccessMode::ReadOnly).then_some(store)
}

/// What a Restore that is not being deleted needs, by its phase.
async fn by_phase(restore: Arc<Restore>, ctx: &Context) -> Result<Action, Error> {
    let phase = restore
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    let uid = restore.uid().unwrap_or_default();
    match phase {
        RestorePhase::New => {
            if backup_status_on_its_way(&restore, ctx).await {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            run_restore(&restore, ctx).await?;
            Ok(Action::await_change())
        }
        RestorePhase::InProgress => match ctx.ownership(&uid) {
            Ownership::Running => Ok(Action::await_change()),
            Ownership::Finished => Ok(Action::requeue(Duration::from_secs(2))),
            Ownership::Unknown => {
                velero::remove_scratch(ctx, &uid);
                let mut status = restore.status.clone().unwrap_or_default();
                status.phase = Some(RestorePhase::Failed);
                status.failure_reason = Some(
                    "the operator stopped while this restore was in progress; some items may have been restored. Check them, then create a new Restore (existing items are kept or updated per existingResourcePolicy)".into(),
                );
                status.completion_timestamp = Some(time(ctx.clock.now()));
                patch(&restore, ctx, &mut status).await?;
                ctx.metrics
                    .restores
                    .get_or_create(&OutcomeLabels {
                        outcome: "Failed".into(),
                    })
                    .inc();
                ctx.event(
                    restore.as_ref(),
                    true,
                    "RestoreFailed",
                    status.failure_reason.clone().unwrap_or_default(),
                )
                .await;
                Ok(Action::await_change())
            }
        },
        _ => Ok(Action::await_change()),
    }
}

/// True while the named Backup was just created by the storage sync and its status (written
/// right after, from `backup.json`) has not arrived: a Restore applied in that instant waits
/// for it instead of failing with "backup is New".
async fn backup_status_on_its_way(restore: &Restore, ctx: &Context) -> bool {
    let Some(name) = restore
        .spec
        .backup_name
        .as_deref()
        .filter(|n| !n.is_empty())
    else {
        return false;
    };
    let backups: Api<Backup> =
        Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    let Ok(Some(backup)) = backups.get_opt(name).await else {
        return false;
    };
    synced_without_status(&backup)
}

/// A Backup the storage sync made whose status write has not happened yet.
fn synced_without_status(backup: &Backup) -> bool {
    backup.labels().contains_key(labels::SYNCED_FROM_STORAGE)
        && backup.status.as_ref().and_then(|s| s.phase).is_none()
}

/// Sets the `Completed` condition from the phase (every status write goes through here).
fn set_completed(restore: &Restore, ctx: &Context, status: &mut RestoreStatus) {
    arca_api::conditions::set_completed(status, restore.metadata.generation, time(ctx.clock.now()));
}

/// The first status write of a run: only onto the Restore as this reconcile read it (still
/// New). False when it changed since: a stale cache entry never starts a second run.
async fn claim(
    restore: &Restore,
    ctx: &Context,
    status: &mut RestoreStatus,
) -> Result<bool, Error> {
    set_completed(restore, ctx, status);
    arca_runtime::status::claim(&ctx.client, restore, MANAGER, status)
        .await
        .map_err(|e| Error::Status(restore.name_any(), e))
}

async fn patch(restore: &Restore, ctx: &Context, status: &mut RestoreStatus) -> Result<(), Error> {
    set_completed(restore, ctx, status);
    let name = restore.name_any();
    let api: Api<Restore> =
        Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    apply_status(&api, &name, MANAGER, status)
        .await
        .map_err(|e| Error::Status(name, e))
}

async fn run_restore(restore: &Restore, ctx: &Context) -> Result<(), Error> {
    let uid = restore.uid().unwrap_or_default();
    let namespace = restore.namespace().unwrap_or_default();
    let tenant = tenant_of(&namespace, ctx);
    let mut status = RestoreStatus {
        phase: Some(RestorePhase::InProgress),
        start_timestamp: Some(time(ctx.clock.now())),
        progress: Some(RestoreProgress::default()),
        ..RestoreStatus::default()
    };
    let resolved = match resolve(restore, ctx, tenant).await {
        Ok(resolved) => resolved,
        Err(problems) => {
            status.phase = Some(RestorePhase::FailedValidation);
            status.validation_errors = problems.clone();
            status.completion_timestamp = Some(time(ctx.clock.now()));
            if !claim(restore, ctx, &mut status).await? {
                return Ok(());
            }
            ctx.metrics
                .restores
                .get_or_create(&OutcomeLabels {
                    outcome: "FailedValidation".into(),
                })
                .inc();
            ctx.event(restore, true, "FailedValidation", problems.join("; "))
                .await;
            return Ok(());
        }
    };
    status.backup_name = Some(resolved.backup.name_any());
    if !claim(restore, ctx, &mut status).await? {
        return Ok(());
    }
    if let Some(location) = &resolved.written_to {
        crate::backup_controller::label_location(restore, ctx, location).await;
    }
    ctx.start(&uid);
    let result = execute(restore, ctx, &mut status, resolved).await;
    ctx.finish(&uid);
    result
}

mod execute;
mod report;
mod resolve;
#[cfg(test)]
mod tests;
mod velero;
