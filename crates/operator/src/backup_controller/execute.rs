//! Step 2 of a backup, once claimed: run the engine with the resolved location and client,
//! then write `backup.json` (last: a backup without it does not exist).

use std::sync::Arc;

use arca_api::{Backup, BackupPhase, BackupProgress, BackupStatus};
use arca_engine::{
    backup::{self, BackupError, BackupRequest},
    progress::{Counts, Progress},
    runlog::RunLog,
};
use arca_runtime::status::time;
use arca_store::{
    EncryptedStore, Layout, ObjectStore,
    archive::{BackupMetadata, ENCRYPTION_SCHEME, Encryption, FORMAT_VERSION},
};
use kube::ResourceExt;

use super::{Error, MANAGER, label_location, report::report, resolve::Resolved, set_completed};
use crate::context::Context;

/// The status's progress from the run's counts.
fn backup_progress(counts: Counts) -> BackupProgress {
    BackupProgress {
        total_items: counts.total,
        items_backed_up: counts.done,
        total_volume_bytes: counts.volume_total,
        volume_bytes_backed_up: counts.volume_done,
    }
}

/// Runs a claimed backup to its end and reports it: the status, metrics and an Event.
pub(super) async fn execute(
    backup: &Backup,
    ctx: &Context,
    status: &mut BackupStatus,
    resolved: Resolved,
) -> Result<(), Error> {
    let Resolved {
        location,
        store: shared_store,
        client,
        acting_as,
        tenant,
        seal_key,
        encryption,
    } = resolved;
    let location = &location;
    // The backup's own objects go through the location's encryption, when it has one; the
    // volume repositories (in `shared_store`) encrypt themselves.
    let encrypted_with = encryption.as_ref().map(|ring| Encryption {
        key_id: ring.current().id().to_string(),
        scheme: ENCRYPTION_SCHEME.into(),
    });
    let run_store: Arc<dyn ObjectStore> = match encryption {
        Some(ring) => Arc::new(EncryptedStore::new(shared_store.clone(), ring)),
        None => shared_store.clone(),
    };
    let store = run_store.as_ref();
    let name = backup.name_any();
    label_location(backup, ctx, &location.name_any()).await;
    ctx.event(
        backup,
        false,
        "BackupStarted",
        format!(
            "writing to location {} ({}){}",
            location.name_any(),
            store.describe(),
            acting_as
                .as_deref()
                .map(|user| format!(", acting as {user}"))
                .unwrap_or_default()
        ),
    )
    .await;

    let progress = Arc::new(Progress::default());
    // Deleting the Backup while it runs stops the run.
    let cancel = tokio_util::sync::CancellationToken::new();
    let deletion = super::cancel::watch_deletion(ctx, backup, cancel.clone());
    let ticker =
        arca_runtime::progress::Ticker::start(&ctx.client, backup, MANAGER, progress.clone(), {
            let status = status.clone();
            move |counts| {
                let mut status = status.clone();
                status.progress = Some(backup_progress(counts));
                status
            }
        });
    let log = RunLog::create(store, &Layout::backup_logs(&name), &name).await;
    let request = BackupRequest {
        name: name.clone(),
        namespace: backup.namespace().unwrap_or_default(),
        spec: backup.spec.clone(),
        tenant,
        acting_as,
        mtime: status
            .start_timestamp
            .as_ref()
            .map(|t| t.0.as_second().max(0) as u64)
            .unwrap_or_default(),
        uid: backup.uid().unwrap_or_default(),
        volumes: ctx
            .volume_job(
                &backup.namespace().unwrap_or_default(),
                location,
                shared_store.clone(),
            )
            .await
            .map(|job| {
                job.reporting_to(progress.clone())
                    .canceled_by(cancel.clone())
            })
            .map_err(|e| e.to_string()),
        annotations: backup.annotations().clone(),
        operator_client: arca_engine::csi::OperatorClient(ctx.client.clone()),
        helper_image: ctx.settings.restore_helper_image.clone(),
        cancel,
    };
    let outcome = match log {
        Ok((log, writer)) => {
            let outcome = backup::run(
                client,
                store,
                &request,
                ctx.settings.backup,
                progress.clone(),
                log,
            )
            .await;
            if let Err(e) = writer.finish().await {
                tracing::warn!(backup = %name, "uploading the backup log: {e}");
            }
            outcome
        }
        Err(e) => Err(BackupError::Store(e)),
    };
    ticker.stop().await;
    deletion.abort();
    let outcome = match outcome {
        Err(BackupError::Canceled(leftovers)) => {
            super::cancel::discard(ctx, backup, location, &shared_store, *leftovers).await;
            return Ok(());
        }
        other => other,
    };
    status.progress = Some(backup_progress(progress.counts()));
    let finished = ctx.clock.now();
    status.completion_timestamp = Some(time(finished));
    match outcome {
        Ok(outcome) => {
            status.errors = outcome.results.errors.count() as u32;
            status.warnings = outcome.results.warnings.count() as u32;
            status.archive_bytes = Some(outcome.stats.archive_bytes);
            if outcome.hooks.hooks_attempted > 0 {
                status.hook_status = Some(outcome.hooks.clone());
            }
            status.csi_volume_snapshots_attempted = outcome.csi_snapshots_attempted;
            status.csi_volume_snapshots_completed = outcome.csi_snapshots_completed;
            status.phase = Some(if status.errors > 0 {
                BackupPhase::PartiallyFailed
            } else {
                BackupPhase::Completed
            });
            set_completed(backup, ctx, status);
            let mut recorded = backup.clone();
            recorded.metadata.managed_fields = None;
            recorded.status = Some(status.clone());
            let metadata = BackupMetadata {
                format_version: FORMAT_VERSION.into(),
                backup: serde_json::to_value(&recorded).unwrap_or_default(),
                stats: outcome.stats.clone(),
                cluster_version: ctx
                    .client
                    .apiserver_version()
                    .await
                    .ok()
                    .map(|v| v.git_version),
                encryption: encrypted_with,
            };
            if let Err(e) = arca_store::BackupStore::new(store)
                .complete(&name, &metadata, &seal_key)
                .await
            {
                status.phase = Some(BackupPhase::Failed);
                status.failure_reason = Some(format!("writing backup.json: {e}"));
            } else {
                ctx.metrics.backup_items.inc_by(outcome.stats.items);
                ctx.metrics.backup_bytes.inc_by(outcome.stats.archive_bytes);
            }
        }
        Err(BackupError::Invalid(problems)) => {
            status.phase = Some(BackupPhase::FailedValidation);
            status.validation_errors = problems;
        }
        Err(e) => {
            status.phase = Some(BackupPhase::Failed);
            status.failure_reason = Some(e.to_string());
        }
    }
    report(backup, ctx, status, finished).await
}
