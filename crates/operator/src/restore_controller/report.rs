//! Step 3 of a restore: the status it ended with, written once, counted in the metrics and
//! told in an Event.

use arca_api::{Restore, RestorePhase, RestoreStatus};

use super::{Error, patch};
use arca_runtime::status::seconds_since;

use crate::{context::Context, metrics::OutcomeLabels};

/// Writes the final `status` of `restore`, finished at `finished`; counts and tells it.
pub(super) async fn report(
    restore: &Restore,
    ctx: &Context,
    status: &mut RestoreStatus,
    finished: jiff::Timestamp,
) -> Result<(), Error> {
    patch(restore, ctx, status).await?;
    let phase = status.phase.unwrap_or_default();
    let seconds = seconds_since(status.start_timestamp.as_ref(), finished);
    ctx.metrics.restore_duration.observe(seconds);
    ctx.metrics
        .restores
        .get_or_create(&OutcomeLabels {
            outcome: format!("{phase:?}"),
        })
        .inc();
    let note = note_of(status, seconds);
    ctx.event(
        restore,
        phase != RestorePhase::Completed,
        &format!("Restore{phase:?}"),
        note,
    )
    .await;
    Ok(())
}

/// The note of the Event of a finished restore. Pure.
fn note_of(status: &RestoreStatus, seconds: f64) -> String {
    let phase = status.phase.unwrap_or_default();
    match phase {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_counts_the_outcomes_or_gives_the_reason() {
        let mut status = RestoreStatus {
            phase: Some(RestorePhase::PartiallyFailed),
            outcomes: Some(arca_api::ItemOutcomes {
                created: 3,
                failed: 1,
                ..Default::default()
            }),
            ..RestoreStatus::default()
        };
        assert_eq!(
            note_of(&status, 2.0),
            "3 created, 0 updated, 0 existing, 0 skipped, 1 failed in 2.0s"
        );
        status.phase = Some(RestorePhase::FailedValidation);
        status.validation_errors = vec!["a".into(), "b".into()];
        assert_eq!(note_of(&status, 0.0), "a; b");
    }
}
