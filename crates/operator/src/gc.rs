//! Garbage collection, a controller on Backups. Each Backup is looked at when it expires
//! (and again at most `--garbage-collection-frequency` later while it is kept): an expired
//! one gets a DeleteBackupRequest (never the newest Completed backup of a schedule), unless
//! its location is ReadOnly or Unavailable, which is said on the Backup with a label and
//! retried. Processed DeleteBackupRequests are removed by the deletion controller.

use std::{sync::Arc, time::Duration};

use arca_api::{AccessMode, Backup, BackupStorageLocation, LocationPhase, labels};
use arca_policy::gc::{Expiring, expired};
use jiff::Timestamp;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{Controller, controller::Action, reflector::Store, watcher},
};

use crate::{context::Context, deletion::request_deletion};

/// This controller's name in logs and `arca_reconcile_failures_total`.
const CONTROLLER: &str = "gc";

#[derive(Debug, thiserror::Error)]
#[error("reading the location of backup {backup}: {source}")]
pub struct Error {
    backup: String,
    #[source]
    source: kube::Error,
}

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let backups: Api<Backup> = ctx.settings.watched(&ctx.client);
    let controller = Controller::new(backups, watcher::Config::default());
    let all = controller.store();
    let collect_with_siblings = move |backup: Arc<Backup>, ctx: Arc<Context>| {
        let all = all.clone();
        async move { collect(&ctx, &backup, &all).await }
    };
    ctx.drive(CONTROLLER, controller, shutdown, collect_with_siblings)
        .await;
}

/// How long until `backup` expires, at most `frequency` (a changed clock or expiration is
/// seen by then); None once it has expired. A backup without an expiration (running, or
/// kept forever) is looked at again after `frequency`. Pure.
fn until_expiry(backup: &Backup, now: Timestamp, frequency: Duration) -> Option<Duration> {
    let frequency = frequency.max(Duration::from_secs(1));
    let expiration = backup
        .status
        .as_ref()
        .and_then(|s| s.expiration.as_ref())
        .map(|t| t.0);
    match expiration {
        Some(at) if at <= now => None,
        Some(at) => Some(
            now.duration_until(at)
                .unsigned_abs()
                .clamp(Duration::from_secs(1), frequency),
        ),
        None => Some(frequency),
    }
}

/// What garbage collection does with an expired Backup.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Kept: it is not finished, it is the newest Completed backup of its schedule, or
    /// Velero made it.
    Keep,
    /// Request its deletion.
    Delete,
    /// Its location does not allow deleting: say why on the Backup.
    Blocked(&'static str),
}

/// Decides for an expired `backup`, among `siblings` (every backup in the cache, for the
/// schedule rule), with its location. Pure.
fn verdict(
    backup: &Backup,
    siblings: &[Arc<Backup>],
    location: Option<&BackupStorageLocation>,
    now: Timestamp,
) -> Verdict {
    // Velero's data: Velero expires it, Arca never deletes it (the sync removes the object
    // once Velero deleted the folder).
    if backup.is_made_by_velero() {
        return Verdict::Keep;
    }
    let namespace = backup.namespace();
    let candidates: Vec<Expiring> = siblings
        .iter()
        .filter(|b| b.namespace() == namespace)
        .map(|b| expiring(b))
        .collect();
    if !expired(&candidates, now).contains(&key_of(backup)) {
        return Verdict::Keep;
    }
    match location {
        Some(l) if l.spec.access_mode == AccessMode::ReadOnly => {
            Verdict::Blocked("location-read-only")
        }
        Some(l) if l.status.as_ref().and_then(|s| s.phase) == Some(LocationPhase::Unavailable) => {
            Verdict::Blocked("location-unavailable")
        }
        _ => Verdict::Delete,
    }
}

fn key_of(backup: &Backup) -> String {
    format!(
        "{}/{}",
        backup.namespace().unwrap_or_default(),
        backup.name_any()
    )
}

fn expiring(backup: &Backup) -> Expiring {
    let status = backup.status.clone().unwrap_or_default();
    Expiring {
        name: key_of(backup),
        schedule: backup
            .labels()
            .get(labels::SCHEDULE_NAME)
            .map(|s| format!("{}/{s}", backup.namespace().unwrap_or_default())),
        phase: status.phase.unwrap_or_default(),
        started: status.start_timestamp.map(|t| t.0),
        expiration: status.expiration.map(|t| t.0),
    }
}

async fn collect(ctx: &Context, backup: &Backup, all: &Store<Backup>) -> Result<Action, Error> {
    let frequency = ctx.settings.gc_frequency.max(Duration::from_secs(1));
    let now = ctx.clock.now();
    if let Some(wait) = until_expiry(backup, now, frequency) {
        return Ok(Action::requeue(wait));
    }
    let namespace = backup.namespace().unwrap_or_default();
    let location = match backup.location_name() {
        Some(name) => Api::<BackupStorageLocation>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&name)
            .await
            .map_err(|source| Error {
                backup: key_of(backup),
                source,
            })?,
        None => None,
    };
    match verdict(backup, &all.state(), location.as_ref(), now) {
        Verdict::Keep => {}
        Verdict::Blocked(reason) => label_gc_failure(ctx, backup, reason).await,
        Verdict::Delete => request_deletion(ctx, backup, "garbage collection (expired)").await,
    }
    // A request filed changes nothing on the Backup: looked at again in case it failed.
    Ok(Action::requeue(frequency))
}

/// Says on the Backup why garbage collection left it (`arca.dev/gc-failure`).
async fn label_gc_failure(ctx: &Context, backup: &Backup, reason: &str) {
    if backup.labels().get(labels::GC_FAILURE).map(String::as_str) == Some(reason) {
        return;
    }
    let api: Api<Backup> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"labels": {labels::GC_FAILURE: reason}}});
    if let Err(e) = api
        .patch(
            &backup.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(backup = %backup.name_any(), "labelling gc failure: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arca_api::{
        BackupPhase, BackupSpec, BackupStatus, BackupStorageLocationSpec,
        BackupStorageLocationStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn backup(name: &str, schedule: Option<&str>, started: &str, expires: &str) -> Arc<Backup> {
        let mut b = Backup::new(name, BackupSpec::default());
        b.metadata.namespace = Some("arca-system".into());
        if let Some(s) = schedule {
            b.metadata.labels = Some([(labels::SCHEDULE_NAME.to_string(), s.to_string())].into());
        }
        b.status = Some(BackupStatus {
            phase: Some(BackupPhase::Completed),
            start_timestamp: Some(Time(t(started))),
            expiration: Some(Time(t(expires))),
            ..BackupStatus::default()
        });
        Arc::new(b)
    }

    fn location(mode: AccessMode, phase: Option<LocationPhase>) -> BackupStorageLocation {
        let mut l = BackupStorageLocation::new("default", BackupStorageLocationSpec::default());
        l.spec.access_mode = mode;
        l.status = Some(BackupStorageLocationStatus {
            phase,
            ..BackupStorageLocationStatus::default()
        });
        l
    }

    #[test]
    fn a_backup_is_looked_at_again_when_it_expires_or_after_the_frequency() {
        let now = t("2026-01-01T00:00:00Z");
        let soon = backup("a", None, "2025-12-31T00:00:00Z", "2026-01-01T00:10:00Z");
        assert_eq!(
            until_expiry(&soon, now, HOUR),
            Some(Duration::from_secs(600))
        );
        let later = backup("b", None, "2025-12-31T00:00:00Z", "2026-02-01T00:00:00Z");
        assert_eq!(until_expiry(&later, now, HOUR), Some(HOUR));
        let mut running = (*later).clone();
        running.status = None;
        assert_eq!(until_expiry(&running, now, HOUR), Some(HOUR));
        let old = backup("c", None, "2025-12-01T00:00:00Z", "2025-12-31T00:00:00Z");
        assert_eq!(until_expiry(&old, now, HOUR), None);
    }

    #[test]
    fn an_expired_backup_is_deleted_unless_its_location_forbids_it() {
        let now = t("2026-01-01T00:00:00Z");
        let old = backup("a", None, "2025-12-01T00:00:00Z", "2025-12-31T00:00:00Z");
        let all = [old.clone()];
        assert_eq!(verdict(&old, &all, None, now), Verdict::Delete);
        let available = location(AccessMode::ReadWrite, Some(LocationPhase::Available));
        assert_eq!(verdict(&old, &all, Some(&available), now), Verdict::Delete);
        let read_only = location(AccessMode::ReadOnly, Some(LocationPhase::Available));
        assert_eq!(
            verdict(&old, &all, Some(&read_only), now),
            Verdict::Blocked("location-read-only")
        );
        let gone = location(AccessMode::ReadWrite, Some(LocationPhase::Unavailable));
        assert_eq!(
            verdict(&old, &all, Some(&gone), now),
            Verdict::Blocked("location-unavailable")
        );
    }

    #[test]
    fn an_expired_velero_backup_is_never_collected() {
        let now = t("2026-01-01T00:00:00Z");
        let mut old = (*backup("v", None, "2025-12-01T00:00:00Z", "2025-12-31T00:00:00Z")).clone();
        old.metadata.labels = Some(
            [(
                labels::MADE_BY.to_string(),
                labels::MADE_BY_VELERO.to_string(),
            )]
            .into(),
        );
        let old = Arc::new(old);
        let all = [old.clone()];
        let available = location(AccessMode::ReadWrite, Some(LocationPhase::Available));
        assert_eq!(verdict(&old, &all, Some(&available), now), Verdict::Keep);
    }

    #[test]
    fn the_newest_completed_backup_of_a_schedule_is_kept_past_its_expiry() {
        let now = t("2026-01-01T00:00:00Z");
        let older = backup(
            "s-1",
            Some("s"),
            "2025-12-01T00:00:00Z",
            "2025-12-02T00:00:00Z",
        );
        let newest = backup(
            "s-2",
            Some("s"),
            "2025-12-02T00:00:00Z",
            "2025-12-03T00:00:00Z",
        );
        let mut elsewhere = (*newest).clone();
        elsewhere.metadata.namespace = Some("shop".into());
        let all = [older.clone(), newest.clone(), Arc::new(elsewhere)];
        assert_eq!(verdict(&older, &all, None, now), Verdict::Delete);
        assert_eq!(verdict(&newest, &all, None, now), Verdict::Keep);
    }
}
