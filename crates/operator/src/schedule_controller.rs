//! The Schedule controller: makes Backups from the template when due (never catching up),
//! skips while the previous one runs, and applies the retention rules.

use std::{sync::Arc, time::Duration};

use arca_api::{Backup, BackupPhase, Schedule, SchedulePhase, labels};
use arca_policy::{
    cadence::Cadence,
    retention::{Kept, to_forget},
    schedule::{Decision, ScheduleState, decide},
    scheduled_backup_name,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};

use arca_runtime::status::{apply_status, time};

use crate::{context::Context, deletion::request_deletion, metrics::ScheduleKey};

const MANAGER: &str = "arca-schedule-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of schedule {0}: {1}")]
    Status(String, #[source] kube::Error),
    #[error("schedule {0}: {1}")]
    Kube(String, #[source] kube::Error),
}

/// This controller's name in logs and `arca_reconcile_failures_total`.
const CONTROLLER: &str = "schedule";

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let schedules: Api<Schedule> = ctx.settings.watched(&ctx.client);
    let backups: Api<Backup> = ctx.settings.watched(&ctx.client);
    let controller = Controller::new(schedules, watcher::Config::default());
    // Deleted schedules lose their metric series within a minute.
    let known = controller.store();
    let metrics = ctx.metrics.clone();
    let pruner = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            metrics.retain_schedules(|k| {
                known
                    .get(&ObjectRef::new(&k.schedule).within(&k.namespace))
                    .is_some()
            });
        }
    });
    let controller = controller
        // A backup of a schedule changing phase re-evaluates the schedule (skips, retention).
        .watches(
            backups,
            watcher::Config::default().labels(labels::SCHEDULE_NAME),
            |backup| {
                let schedule = backup.labels().get(labels::SCHEDULE_NAME)?.clone();
                Some(ObjectRef::new(&schedule).within(&backup.namespace()?))
            },
        );
    ctx.drive(CONTROLLER, controller, shutdown, reconcile).await;
    pruner.abort();
}

async fn reconcile(schedule: Arc<Schedule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = schedule.name_any();
    let namespace = schedule.namespace().unwrap_or_default();
    let api: Api<Schedule> = Api::namespaced(ctx.client.clone(), &namespace);
    let previous = schedule.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let metric_key = ScheduleKey {
        namespace: namespace.clone(),
        schedule: name.clone(),
    };
    let cadence = match Cadence::parse(&schedule.spec.schedule, schedule.spec.time_zone.as_deref())
    {
        Ok(cadence) => cadence,
        Err(e) => {
            status.phase = Some(SchedulePhase::FailedValidation);
            status.validation_errors = vec![e.to_string()];
            status.next_run = None;
            ctx.metrics.forget_schedule(&metric_key);
            if previous != status {
                apply_status(&api, &name, MANAGER, &status)
                    .await
                    .map_err(|e| Error::Status(name.clone(), e))?;
                ctx.event(schedule.as_ref(), true, "FailedValidation", e.to_string())
                    .await;
            }
            return Ok(Action::await_change());
        }
    };
    let tenant = crate::backup_controller::tenant_of(&namespace, &ctx);
    let template_problems =
        arca_engine::backup::validate(&schedule.spec.template, tenant.as_deref());
    if !template_problems.is_empty() {
        status.phase = Some(SchedulePhase::FailedValidation);
        status.validation_errors = template_problems.clone();
        status.next_run = None;
        ctx.metrics.forget_schedule(&metric_key);
        if previous != status {
            apply_status(&api, &name, MANAGER, &status)
                .await
                .map_err(|e| Error::Status(name.clone(), e))?;
            ctx.event(
                schedule.as_ref(),
                true,
                "FailedValidation",
                template_problems.join("; "),
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    status.validation_errors.clear();

    let backups_api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let backups = backups_api
        .list(&ListParams::default().labels(&format!("{}={name}", labels::SCHEDULE_NAME)))
        .await
        .map_err(|e| Error::Kube(name.clone(), e))?
        .items;
    apply_retention(&schedule, &cadence, &backups, &ctx).await;
    if schedule.spec.paused {
        ctx.metrics.forget_schedule(&metric_key);
    } else {
        let created = schedule
            .creation_timestamp()
            .map(|t| t.0.as_second())
            .unwrap_or_default();
        ctx.metrics
            .publish_schedule(metric_key, created, last_success(&backups));
    }

    let now = ctx.clock.now();
    let state = ScheduleState {
        now,
        created: schedule.creation_timestamp().map(|t| t.0).unwrap_or(now),
        paused: schedule.spec.paused,
        skip_immediately: schedule.spec.skip_immediately.unwrap_or(false),
        last_backup: previous.last_backup.as_ref().map(|t| t.0),
        last_skipped: previous.last_skipped.as_ref().map(|t| t.0),
        resumed: previous.phase == Some(SchedulePhase::Enabled)
            && previous.next_run.is_none()
            && (previous.last_backup.is_some() || previous.last_skipped.is_some()),
        in_flight: backups.iter().any(|b| {
            matches!(
                b.status.as_ref().and_then(|s| s.phase).unwrap_or_default(),
                BackupPhase::New | BackupPhase::InProgress
            )
        }),
    };
    status.phase = Some(SchedulePhase::Enabled);
    let action = match decide(&cadence, &state) {
        Decision::Paused => {
            status.next_run = None;
            Action::await_change()
        }
        Decision::Wait { next } => {
            status.next_run = Some(time(next));
            requeue_at(now, next)
        }
        Decision::Skip { next } | Decision::Resume { next } => {
            status.last_skipped = Some(time(now));
            status.next_run = next.map(time);
            if state.in_flight {
                ctx.event(
                    schedule.as_ref(),
                    true,
                    "BackupSkipped",
                    "the previous backup of this schedule has not finished".into(),
                )
                .await;
            }
            next.map(|n| requeue_at(now, n))
                .unwrap_or_else(Action::await_change)
        }
        Decision::Run { next } => {
            let backup_name = create_backup(&schedule, &ctx, now).await?;
            status.last_backup = Some(time(now));
            status.next_run = next.map(time);
            ctx.event(
                schedule.as_ref(),
                false,
                "BackupCreated",
                format!("created Backup {backup_name}"),
            )
            .await;
            next.map(|n| requeue_at(now, n))
                .unwrap_or_else(Action::await_change)
        }
    };
    if previous != status {
        apply_status(&api, &name, MANAGER, &status)
            .await
            .map_err(|e| Error::Status(name.clone(), e))?;
    }
    Ok(action)
}

/// When the newest Completed backup of the list finished.
fn last_success(backups: &[Backup]) -> Option<i64> {
    backups
        .iter()
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            (status.phase? == BackupPhase::Completed).then(|| {
                status
                    .completion_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second())
            })?
        })
        .max()
}

fn requeue_at(now: jiff::Timestamp, at: jiff::Timestamp) -> Action {
    let wait = at.duration_since(now).unsigned_abs();
    Action::requeue(wait.min(Duration::from_secs(300)) + Duration::from_millis(200))
}

async fn create_backup(
    schedule: &Schedule,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<String, Error> {
    let name = scheduled_backup_name(&schedule.name_any(), now);
    let namespace = schedule.namespace().unwrap_or_default();
    let mut backup = Backup::new(&name, schedule.spec.template.clone());
    backup.metadata.namespace = Some(namespace.clone());
    backup.metadata.labels = Some(
        [
            (labels::SCHEDULE_NAME.to_string(), schedule.name_any()),
            ("velero.io/schedule-name".to_string(), schedule.name_any()),
        ]
        .into_iter()
        .collect(),
    );
    if schedule
        .spec
        .use_owner_references_in_backup
        .unwrap_or(false)
        && let Some(owner) = schedule.controller_owner_ref(&())
    {
        backup.metadata.owner_references = Some(vec![owner]);
    }
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.create(&PostParams::default(), &backup).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(name),
        Err(e) => Err(Error::Kube(schedule.name_any(), e)),
    }
}

/// Files a DeleteBackupRequest for each backup the retention rules let go.
async fn apply_retention(
    schedule: &Schedule,
    cadence: &Cadence,
    backups: &[Backup],
    ctx: &Context,
) {
    let Some(retention) = &schedule.spec.retention else {
        return;
    };
    let kept: Vec<Kept> = backups
        .iter()
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            let phase = status.phase?;
            matches!(phase, BackupPhase::Completed | BackupPhase::PartiallyFailed).then(|| Kept {
                name: b.name_any(),
                time: status
                    .start_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or_default(),
                completed: phase == BackupPhase::Completed,
            })
        })
        .collect();
    for name in to_forget(&kept, retention, cadence.zone()) {
        if let Some(backup) = backups.iter().find(|b| b.name_any() == name) {
            request_deletion(ctx, backup, "retention").await;
        }
    }
}
