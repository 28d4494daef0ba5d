//! The BackupStorageLocation controller: checks each location every `validationFrequency`
//! and says in its status whether it can be used, and if not, why.

use std::sync::Arc;

use arca_api::{BackupStorageLocation, BackupStorageLocationStatus, LocationPhase};
use kube::{
    Api, ResourceExt,
    runtime::{Controller, controller::Action, watcher},
};

use arca_runtime::{
    locations,
    status::{apply_status, time},
};

use crate::{context::Context, metrics::LocationLabels};

const MANAGER: &str = "arca-location-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of location {0}: {1}")]
    Status(String, #[source] kube::Error),
}

/// This controller's name in logs and `arca_reconcile_failures_total`.
const CONTROLLER: &str = "location";

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let locations: Api<BackupStorageLocation> = ctx.settings.watched(&ctx.client);
    let controller = Controller::new(locations, watcher::Config::default());
    ctx.drive(CONTROLLER, controller, shutdown, reconcile).await;
}

async fn reconcile(
    location: Arc<BackupStorageLocation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = location.name_any();
    let namespace = location.namespace().unwrap_or_default();
    let frequency = location
        .spec
        .validation_frequency
        .map(|d| d.as_std())
        .unwrap_or(ctx.settings.validation_frequency);
    let previous = location.status.clone().unwrap_or_default();
    // Each status write wakes this controller again: check only when the spec changed or
    // a check is due, otherwise wait for the next one.
    let generation = location.metadata.generation;
    if let Some(last) = &previous.last_validation_time {
        let since = ctx.clock.now().duration_since(last.0).unsigned_abs();
        let spec_unchanged = previous.observed_generation == generation;
        if spec_unchanged && frequency.is_zero() {
            return Ok(Action::await_change());
        }
        if spec_unchanged && since < frequency {
            return Ok(Action::requeue(frequency - since));
        }
    }
    let checked =
        match locations::open_store(&ctx.client, &location, ctx.settings.storage_policy(), None)
            .await
        {
            Ok(store) => locations::check(&name, store.as_ref()).await,
            Err(e) => Err(e),
        };
    let mut outcome = checked.map_err(|e| e.to_string());
    if outcome.is_ok() {
        // An encryption key that cannot be read would fail every backup: say so now.
        outcome = arca_runtime::keys::location_keys(&ctx.client, &location)
            .await
            .map(|_| ())
            .map_err(|e| format!("spec.encryption: {e}"));
    }
    let (phase, message) = match &outcome {
        Ok(()) => (LocationPhase::Available, None),
        Err(e) => (LocationPhase::Unavailable, Some(e.clone())),
    };
    let mut conditions = previous.conditions.clone();
    arca_api::conditions::set(
        &mut conditions,
        "Available",
        phase == LocationPhase::Available,
        if phase == LocationPhase::Available {
            "Checked"
        } else {
            "Unavailable"
        },
        message.as_deref().unwrap_or_default(),
        generation,
        time(ctx.clock.now()),
    );
    let status = BackupStorageLocationStatus {
        phase: Some(phase),
        message: message.clone(),
        last_validation_time: Some(time(ctx.clock.now())),
        // lastSyncedTime belongs to the sync (its own field manager).
        last_synced_time: None,
        observed_generation: generation,
        conditions,
    };
    let api: Api<BackupStorageLocation> = Api::namespaced(ctx.client.clone(), &namespace);
    apply_status(&api, &name, MANAGER, &status)
        .await
        .map_err(|e| Error::Status(name.clone(), e))?;
    ctx.metrics
        .location_available
        .get_or_create(&LocationLabels {
            namespace: namespace.clone(),
            location: name.clone(),
        })
        .set(i64::from(phase == LocationPhase::Available));
    if previous.phase != Some(phase) {
        match &message {
            None => {
                ctx.event(
                    location.as_ref(),
                    false,
                    "LocationAvailable",
                    format!("{name} can be used"),
                )
                .await
            }
            Some(why) => {
                ctx.event(location.as_ref(), true, "LocationUnavailable", why.clone())
                    .await
            }
        }
    }
    if frequency.is_zero() {
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(frequency))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arca_api::{AccessMode, BackupStorageLocationSpec, Provider};
    use http::Method;

    use super::*;
    use crate::fixtures::{Expect, OPERATOR_NS, context, event_created, events_path};

    const STATUS: &str =
        "/apis/arca.dev/v1alpha1/namespaces/arca-system/backupstoragelocations/default/status";

    fn location(
        path: &std::path::Path,
        status: Option<BackupStorageLocationStatus>,
    ) -> Arc<BackupStorageLocation> {
        let mut l = BackupStorageLocation::new(
            "default",
            BackupStorageLocationSpec {
                provider: Provider::Filesystem,
                access_mode: AccessMode::ReadWrite,
                config: [("path".to_string(), path.display().to_string())].into(),
                ..BackupStorageLocationSpec::default()
            },
        );
        l.spec.object_storage.bucket = "bucket".into();
        l.metadata.namespace = Some(OPERATOR_NS.into());
        l.metadata.generation = Some(3);
        l.status = status;
        Arc::new(l)
    }

    /// The apiserver's answer to a status write: a location as it returns one.
    fn written() -> serde_json::Value {
        serde_json::to_value(&*location(std::path::Path::new("/x"), None)).expect("json")
    }

    async fn check(
        location: Arc<BackupStorageLocation>,
        script: Vec<Expect>,
    ) -> (Action, Vec<serde_json::Value>, Arc<Context>) {
        let (ctx, server) = context();
        let (action, sent) = server.drive(script, reconcile(location, ctx.clone())).await;
        (action.expect("reconciled"), sent, ctx)
    }

    fn available(ctx: &Context) -> i64 {
        ctx.metrics
            .location_available
            .get_or_create(&LocationLabels {
                namespace: OPERATOR_NS.into(),
                location: "default".into(),
            })
            .get()
    }

    #[tokio::test]
    async fn a_location_that_answers_becomes_available_with_its_condition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (action, sent, ctx) = check(
            location(dir.path(), None),
            vec![
                Expect::new(Method::PATCH, STATUS, written()),
                Expect::new(
                    Method::POST,
                    events_path(OPERATOR_NS),
                    event_created(OPERATOR_NS),
                ),
            ],
        )
        .await;
        assert_eq!(action, Action::requeue(Duration::from_secs(60)));
        let status = &sent[0]["status"];
        assert_eq!(status["phase"], "Available");
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["conditions"][0]["type"], "Available");
        assert_eq!(status["conditions"][0]["status"], "True");
        assert!(
            status.get("lastSyncedTime").is_none(),
            "the sync's field: {status}"
        );
        assert_eq!(sent[1]["reason"], "LocationAvailable");
        assert_eq!(available(&ctx), 1);
    }

    #[tokio::test]
    async fn a_location_that_cannot_be_used_says_why_once() {
        let file = tempfile::NamedTempFile::new().expect("a file");
        let (_, sent, ctx) = check(
            location(file.path(), None),
            vec![
                Expect::new(Method::PATCH, STATUS, written()),
                Expect::new(
                    Method::POST,
                    events_path(OPERATOR_NS),
                    event_created(OPERATOR_NS),
                ),
            ],
        )
        .await;
        let status = &sent[0]["status"];
        assert_eq!(status["phase"], "Unavailable");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "Unavailable");
        assert_eq!(status["conditions"][0]["message"], status["message"]);
        assert_eq!(sent[1]["type"], "Warning");
        assert_eq!(available(&ctx), 0);

        // Checked again, still unusable: the status is refreshed, no second Event.
        let before = BackupStorageLocationStatus {
            phase: Some(LocationPhase::Unavailable),
            last_validation_time: Some(time(
                crate::fixtures::now() - jiff::SignedDuration::from_secs(120),
            )),
            observed_generation: Some(3),
            ..BackupStorageLocationStatus::default()
        };
        let (_, sent, _) = check(
            location(file.path(), Some(before)),
            vec![Expect::new(Method::PATCH, STATUS, written())],
        )
        .await;
        assert_eq!(sent[0]["status"]["phase"], "Unavailable");
    }

    /// The status write wakes the controller again: a location checked recently with an
    /// unchanged spec is not checked again before it is due.
    #[tokio::test]
    async fn a_location_checked_recently_waits_for_its_next_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recent = BackupStorageLocationStatus {
            phase: Some(LocationPhase::Available),
            last_validation_time: Some(time(
                crate::fixtures::now() - jiff::SignedDuration::from_secs(20),
            )),
            observed_generation: Some(3),
            ..BackupStorageLocationStatus::default()
        };
        let (action, _, _) = check(location(dir.path(), Some(recent.clone())), Vec::new()).await;
        assert_eq!(action, Action::requeue(Duration::from_secs(40)));
        // A changed spec is checked at once.
        let changed = BackupStorageLocationStatus {
            observed_generation: Some(2),
            ..recent
        };
        let (_, sent, _) = check(
            location(dir.path(), Some(changed)),
            vec![Expect::new(Method::PATCH, STATUS, written())],
        )
        .await;
        assert_eq!(sent[0]["status"]["observedGeneration"], 3);
    }
}
