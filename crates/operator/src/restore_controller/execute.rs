//! Step 2 of a restore, once claimed: run the engine with the resolved backup, stores and
//! client.

use std::sync::Arc;

use arca_api::{Restore, RestorePhase, RestoreProgress, RestoreStatus};
use arca_engine::{
    progress::{Counts, Progress},
    restore::{self, Notice, RestoreError, RestoreRequest},
    runlog::RunLog,
};
use arca_runtime::status::time;
use arca_store::{Layout, ObjectStore, archive::BackupMetadata};
use kube::ResourceExt;

use super::{
    Error, MANAGER,
    report::report,
    resolve::{Resolved, Source},
};
use crate::context::Context;

/// The status's progress from the run's counts.
fn restore_progress(counts: Counts) -> RestoreProgress {
    RestoreProgress {
        total_items: counts.total,
        items_restored: counts.done,
        total_volume_bytes: counts.volume_total,
        volume_bytes_restored: counts.volume_done,
    }
}

/// Runs a claimed restore to its end and reports it.
pub(super) async fn execute(
    restore: &Restore,
    ctx: &Context,
    status: &mut RestoreStatus,
    resolved: Resolved,
) -> Result<(), Error> {
    let Resolved {
        backup,
        source,
        output,
        volumes,
        client,
        acting_as,
        tenant,
        ..
    } = resolved;
    let name = restore.name_any();
    let backup_name = status.backup_name.clone().unwrap_or_default();
    let uid = restore.uid().unwrap_or_default();
    // A Velero backup is rewritten into scratch space first (kept until this run ends).
    let arca_backup: (Box<BackupMetadata>, Arc<dyn ObjectStore>);
    let velero_backup: super::velero::Prepared;
    let (store, metadata, notices): (&dyn ObjectStore, &BackupMetadata, Vec<Notice>) = match source
    {
        Source::Arca { metadata, store } => {
            arca_backup = (metadata, store);
            (arca_backup.1.as_ref(), &arca_backup.0, Vec::new())
        }
        Source::Velero { location } => {
            match super::velero::prepare(ctx, &location, &backup, &uid).await {
                Ok(prepared) => {
                    super::velero::publish(ctx, restore, &prepared.notices).await;
                    velero_backup = prepared;
                    (
                        &velero_backup.store,
                        &velero_backup.metadata,
                        velero_backup.notices.clone(),
                    )
                }
                Err(reason) => {
                    status.phase = Some(RestorePhase::Failed);
                    status.failure_reason = Some(reason);
                    let finished = ctx.clock.now();
                    status.completion_timestamp = Some(time(finished));
                    return report(restore, ctx, status, finished).await;
                }
            }
        }
    };
    let output = output.as_ref();
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
            move |counts| {
                let mut status = status.clone();
                status.progress = Some(restore_progress(counts));
                status
            }
        });
    let request = RestoreRequest {
        name: name.clone(),
        namespace: restore.namespace().unwrap_or_default(),
        backup_name: backup_name.clone(),
        spec: restore.spec.clone(),
        tenant,
        uid: restore.uid().unwrap_or_default(),
        volumes: volumes.map(|job| job.reporting_to(progress.clone())),
        restore_helper_image: ctx.settings.restore_helper_image.clone(),
        notices,
        operator_client: arca_engine::csi::OperatorClient(ctx.client.clone()),
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
    status.progress = Some(restore_progress(progress.counts()));
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
    report(restore, ctx, status, finished).await
}
