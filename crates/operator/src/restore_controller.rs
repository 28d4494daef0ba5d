//! The Restore controller: New -> (FailedValidation | InProgress -> Completed |
//! PartiallyFailed | Failed).

use std::{sync::Arc, time::Duration};

use arca_api::{
    AccessMode, Backup, BackupPhase, Restore, RestorePhase, RestoreProgress, RestoreStatus, labels,
};
use arca_engine::{
    pod_volumes::VolumeJob,
    progress::Progress,
    restore::{self, RestoreError, RestoreRequest},
    runlog::RunLog,
};
use arca_store::{DiscardStore, Layout, ObjectStore, archive::BackupMetadata};
use futures::StreamExt;
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
    Controller::new(restores, watcher::Config::default())
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(
            |object, ctx| ctx.tracked(CONTROLLER, object, reconcile),
            |object, error, ctx| ctx.reconcile_failed(CONTROLLER, object.as_ref(), error),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("restore reconcile: {e}");
            }
        })
        .await;
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
            run_restore(&restore, ctx).await?;
            Ok(Action::await_change())
        }
        RestorePhase::InProgress => match ctx.ownership(&uid) {
            Ownership::Running => Ok(Action::await_change()),
            Ownership::Finished => Ok(Action::requeue(Duration::from_secs(2))),
            Ownership::Unknown => {
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

/// The Backup to restore: named, or the newest Completed one of the schedule.
async fn find_backup(ctx: &Context, restore: &Restore) -> Result<Backup, String> {
    let namespace = restore.namespace().unwrap_or_default();
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let backup = match (&restore.spec.backup_name, &restore.spec.schedule_name) {
        (Some(name), _) if !name.is_empty() => backups
            .get_opt(name)
            .await
            .map_err(|e| format!("reading Backup {name}: {e}"))?
            .ok_or_else(|| format!("no Backup {name:?} in namespace {namespace} (see `arca backup get -n {namespace}`)"))?,
        (_, Some(schedule)) => {
            let params = ListParams::default().labels(&format!("{}={schedule}", labels::SCHEDULE_NAME));
            let mut found: Vec<Backup> = backups
                .list(&params)
                .await
                .map_err(|e| format!("listing backups of schedule {schedule}: {e}"))?
                .items
                .into_iter()
                .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Completed))
                .collect();
            found.sort_by_key(|b| b.status.as_ref().and_then(|s| s.start_timestamp.clone()).map(|t| t.0));
            found.pop().ok_or_else(|| format!("schedule {schedule:?} has no Completed backup in namespace {namespace}"))?
        }
        _ => return Err("set exactly one of backupName and scheduleName".into()),
    };
    let phase = backup
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    if !matches!(phase, BackupPhase::Completed | BackupPhase::PartiallyFailed) {
        return Err(format!(
            "backup {} is {phase:?}: only Completed or PartiallyFailed backups can be restored",
            backup.name_any()
        ));
    }
    Ok(backup)
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
    let mut problems = restore::validate(&restore.spec, tenant.as_deref());
    let mut ready = None;
    if problems.is_empty() {
        let client = ctx
            .run_client(&namespace, restore.spec.service_account_name.as_deref())
            .await
            .map_err(|e| e.to_string());
        match (client, prepare(ctx, restore).await) {
            (Ok(client), Ok(found)) => ready = Some((client, found)),
            (client, found) => problems.extend(client.err().into_iter().chain(found.err())),
        }
    }
    let Some((client, (written, backup, metadata, store, output, volumes))) = ready else {
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
    };
    status.backup_name = Some(backup.name_any());
    if !claim(restore, ctx, &mut status).await? {
        return Ok(());
    }
    if let Some(location) = &written {
        crate::backup_controller::label_location(restore, ctx, location).await;
    }
    ctx.start(&uid);
    let result = execute(
        restore,
        ctx,
        &mut status,
        &metadata,
        store.as_ref(),
        output.as_ref(),
        client,
        tenant,
        volumes,
    )
    .await;
    ctx.finish(&uid);
    result
}

type Prepared = (
    // The location written to: None when it is ReadOnly.
    Option<String>,
    Backup,
    BackupMetadata,
    Arc<dyn ObjectStore>,
    Arc<dyn ObjectStore>,
    Result<VolumeJob, String>,
);

async fn prepare(ctx: &Context, restore: &Restore) -> Result<Prepared, String> {
    let namespace = restore.namespace().unwrap_or_default();
    let backup = find_backup(ctx, restore).await?;
    let location_name = backup.location_name();
    let (location, store) = location_for(ctx, &namespace, location_name.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let name = backup.name_any();
    let metadata = arca_store::BackupStore::new(store.as_ref())
        .metadata(&name)
        .await
        .map_err(|e| format!("reading backup {name}: {e}"))?
        .ok_or_else(|| format!("backup {name} has no backup.json in {}: it never completed there, or its data was deleted", store.describe()))?;
    let output: Arc<dyn ObjectStore> = if location.spec.access_mode == AccessMode::ReadOnly {
        Arc::new(DiscardStore)
    } else {
        store.clone()
    };
    let volumes = ctx
        .volume_job(&namespace, &location, store.clone())
        .await
        .map_err(|e| e.to_string());
    let written = (location.spec.access_mode != AccessMode::ReadOnly).then(|| location.name_any());
    Ok((written, backup, metadata, store, output, volumes))
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    restore: &Restore,
    ctx: &Context,
    status: &mut RestoreStatus,
    metadata: &BackupMetadata,
    store: &dyn ObjectStore,
    output: &dyn ObjectStore,
    (client, acting_as): (kube::Client, Option<String>),
    tenant: Option<String>,
    volumes: Result<VolumeJob, String>,
) -> Result<(), Error> {
    let name = restore.name_any();
    let backup_name = status.backup_name.clone().unwrap_or_default();
    ctx.event(
        restore,
        false,
        "RestoreStarted",
        format!(
            "restoring backup {backup_name}{}{}",
            if restore.spec.dry_run {
                " (dry run)"
            } else {
                ""
            },
            acting_as
                .as_deref()
                .map(|user| format!(", acting as {user}"))
                .unwrap_or_default()
        ),
    )
    .await;
    let progress = Arc::new(Progress::default());
    let ticker =
        arca_runtime::progress::Ticker::start(&ctx.client, restore, MANAGER, progress.clone(), {
            let status = status.clone();
            move |(total, done)| {
                let mut status = status.clone();
                status.progress = Some(RestoreProgress {
                    total_items: total,
                    items_restored: done,
                });
                status
            }
        });
    let request = RestoreRequest {
        name: name.clone(),
        backup_name: backup_name.clone(),
        spec: restore.spec.clone(),
        tenant,
        uid: restore.uid().unwrap_or_default(),
        volumes,
        restore_helper_image: ctx.settings.restore_helper_image.clone(),
    };
    let outcome = match RunLog::create(output, &Layout::restore_logs(&name), &name).await {
        Ok((log, writer)) => {
            let outcome = restore::run(
                client,
                store,
                output,
                &request,
                metadata,
                ctx.settings.restore,
                progress.clone(),
                log,
            )
            .await;
            if let Err(e) = writer.finish().await {
                tracing::warn!(restore = %name, "uploading the restore log: {e}");
            }
            outcome
        }
        Err(e) => Err(RestoreError::Store(e)),
    };
    ticker.stop().await;
    let (total, done) = progress.get();
    status.progress = Some(RestoreProgress {
        total_items: total,
        items_restored: done,
    });
    let finished = ctx.clock.now();
    status.completion_timestamp = Some(time(finished));
    match outcome {
        Ok(outcome) => {
            status.errors = outcome.results.errors.count() as u32;
            status.warnings = outcome.results.warnings.count() as u32;
            let failed = outcome.outcomes.failed;
            ctx.metrics.restore_items.inc_by(outcome.total);
            if outcome.hooks.hooks_attempted > 0 {
                status.hook_status = Some(outcome.hooks.clone());
            }
            status.outcomes = Some(outcome.outcomes);
            status.phase = Some(if failed > 0 || status.errors > 0 {
                RestorePhase::PartiallyFailed
            } else {
                RestorePhase::Completed
            });
        }
        Err(RestoreError::Invalid(problems)) => {
            status.phase = Some(RestorePhase::FailedValidation);
            status.validation_errors = problems;
        }
        Err(e) => {
            status.phase = Some(RestorePhase::Failed);
            status.failure_reason = Some(e.to_string());
        }
    }
    patch(restore, ctx, status).await?;
    let phase = status.phase.unwrap_or_default();
    let seconds = (finished.as_millisecond()
        - status
            .start_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .unwrap_or_default()) as f64
        / 1000.0;
    ctx.metrics.restore_duration.observe(seconds);
    ctx.metrics
        .restores
        .get_or_create(&OutcomeLabels {
            outcome: format!("{phase:?}"),
        })
        .inc();
    let note = match phase {
        RestorePhase::Completed | RestorePhase::PartiallyFailed => {
            let o = status.outcomes.clone().unwrap_or_default();
            format!(
                "{} created, {} updated, {} existing, {} skipped, {} failed in {seconds:.1}s",
                o.created, o.updated, o.existing, o.skipped, o.failed
            )
        }
        _ => status
            .failure_reason
            .clone()
            .unwrap_or_else(|| status.validation_errors.join("; ")),
    };
    ctx.event(
        restore,
        phase != RestorePhase::Completed,
        &format!("Restore{phase:?}"),
        note,
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests;
