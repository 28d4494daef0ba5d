//! Step 3 of a backup: the status it ended with, written once, counted in the metrics and
//! told in an Event.

use arca_api::{Backup, BackupPhase, BackupStatus, labels};
use kube::ResourceExt;

use super::{Error, patch};
use arca_runtime::status::seconds_since;

use crate::{
    context::Context,
    metrics::{OutcomeLabels, ScheduleLabels},
};

/// Writes the final `status` of `backup`, finished at `finished`; counts and tells it.
pub(super) async fn report(
    backup: &Backup,
    ctx: &Context,
    status: &mut BackupStatus,
    finished: jiff::Timestamp,
) -> Result<(), Error> {
    let name = backup.name_any();
    patch(backup, ctx, status).await?;
    let phase = status.phase.unwrap_or_default();
    let seconds = seconds_since(status.start_timestamp.as_ref(), finished);
    ctx.metrics.backup_duration.observe(seconds);
    ctx.metrics
        .backups
        .get_or_create(&OutcomeLabels {
            outcome: format!("{phase:?}"),
        })
        .inc();
    if phase == BackupPhase::Completed {
        let schedule = backup
            .labels()
            .get(labels::SCHEDULE_NAME)
            .cloned()
            .unwrap_or_default();
        ctx.metrics
            .backup_last_success
            .get_or_create(&ScheduleLabels { schedule })
            .set(finished.as_second());
    }
    let (warning, note) = event_of(status, &name, seconds);
    ctx.event(backup, warning, &format!("Backup{phase:?}"), note)
        .await;
    Ok(())
}

/// Whether the Event of a finished backup is a warning, and its note. Pure.
fn event_of(status: &BackupStatus, name: &str, seconds: f64) -> (bool, String) {
    let phase = status.phase.unwrap_or_default();
    match phase {
        BackupPhase::Completed => (
            false,
            format!(
                "{} items in {seconds:.1}s",
                status
                    .progress
                    .as_ref()
                    .map(|p| p.items_backed_up)
                    .unwrap_or_default()
            ),
        ),
        BackupPhase::PartiallyFailed => (
            true,
            format!(
                "{} errors, {} warnings: see `arca backup describe {name}`",
                status.errors, status.warnings
            ),
        ),
        _ => (
            true,
            status
                .failure_reason
                .clone()
                .unwrap_or_else(|| status.validation_errors.join("; ")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_says_what_to_look_at() {
        let mut status = BackupStatus {
            phase: Some(BackupPhase::Completed),
            progress: Some(arca_api::BackupProgress {
                total_items: 12,
                items_backed_up: 12,
                ..Default::default()
            }),
            ..BackupStatus::default()
        };
        assert_eq!(
            event_of(&status, "b1", 1.25),
            (false, "12 items in 1.2s".into())
        );
        status.phase = Some(BackupPhase::PartiallyFailed);
        status.errors = 2;
        status.warnings = 1;
        let (warning, note) = event_of(&status, "b1", 1.0);
        assert!(warning);
        assert!(note.contains("arca backup describe b1"), "{note}");
        status.phase = Some(BackupPhase::Failed);
        status.failure_reason = Some("writing backup.json: denied".into());
        assert_eq!(
            event_of(&status, "b1", 1.0),
            (true, "writing backup.json: denied".into())
        );
    }
}
