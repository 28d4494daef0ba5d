//! The BackupStorageLocation controller: checks each location every `validationFrequency`
//! and says in its status whether it can be used, and if not, why.

use std::sync::Arc;

use arca_api::{BackupStorageLocation, BackupStorageLocationStatus, LocationPhase};
use futures::StreamExt;
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
    Controller::new(locations, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(
            |object, ctx| ctx.tracked(CONTROLLER, object, reconcile),
            |object, error, ctx| ctx.reconcile_failed(CONTROLLER, object.as_ref(), error),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("location reconcile: {e}");
            }
        })
        .await;
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
    let (phase, message) = match &checked {
        Ok(()) => (LocationPhase::Available, None),
        Err(e) => (LocationPhase::Unavailable, Some(e.to_string())),
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
