//! The Backup controller: New -> (FailedValidation | InProgress -> Completed |
//! PartiallyFailed | Failed). A New Backup goes through typed steps: [`resolve`] (validate
//! the spec, pure, then its references) -> the claim (a status write conditional on the
//! resourceVersion read) -> [`execute`] (the engine, then `backup.json` last) ->
//! [`report`] (the final status, metrics, an Event). Other phases only need attention
//! when a previous process left a run InProgress.

use std::{sync::Arc, time::Duration};

use arca_api::{Backup, BackupPhase, BackupProgress, BackupStatus, labels};
use arca_store::{Layout, ObjectStore, archive::FORMAT_VERSION};
use kube::{
    Api, ResourceExt,
    runtime::{Controller, controller::Action, watcher},
};

use arca_runtime::{
    locations::{self, LocationError},
    status::{apply_status, time},
};

use crate::{
    context::{Context, Ownership},
    metrics::OutcomeLabels,
};
use execute::execute;
use resolve::resolve;

const MANAGER: &str = "arca-backup-controller";

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {0}: {1}")]
    Status(String, #[source] kube::Error),
}

/// This controller's name in logs and `arca_reconcile_failures_total`.
const CONTROLLER: &str = "backup";

/// Runs the controller until the shutdown signal.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let backups: Api<Backup> = ctx.settings.watched(&ctx.client);
    let config = kube::runtime::controller::Config::default()
        .concurrency(ctx.settings.max_concurrent_backups);
    let controller = Controller::new(backups, watcher::Config::default()).with_config(config);
    ctx.drive(CONTROLLER, controller, shutdown, reconcile).await;
}

async fn reconcile(backup: Arc<Backup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let phase = backup
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    let uid = backup.uid().unwrap_or_default();
    match phase {
        // Made by the storage sync: its status (from backup.json) is on its way.
        BackupPhase::New if backup.labels().contains_key(labels::SYNCED_FROM_STORAGE) => {
            Ok(Action::await_change())
        }
        BackupPhase::New => {
            run_backup(&backup, &ctx).await?;
            Ok(Action::await_change())
        }
        BackupPhase::InProgress => match ctx.ownership(&uid) {
            Ownership::Running => Ok(Action::await_change()),
            Ownership::Finished => Ok(Action::requeue(Duration::from_secs(2))),
            Ownership::Unknown => {
                fail_leftover(&backup, &ctx).await?;
                Ok(Action::await_change())
            }
        },
        _ => Ok(Action::await_change()),
    }
}

/// A backup left InProgress by a previous operator process is Failed: its archive may miss
/// items, and without `backup.json` it does not exist in storage.
async fn fail_leftover(backup: &Backup, ctx: &Context) -> Result<(), Error> {
    let mut status = backup.status.clone().unwrap_or_default();
    status.phase = Some(BackupPhase::Failed);
    status.failure_reason = Some(
        "the operator stopped while this backup was in progress; nothing usable was written. Create a new Backup".into(),
    );
    status.completion_timestamp = Some(time(ctx.clock.now()));
    patch(backup, ctx, &mut status).await?;
    // A data mover stopped in the middle leaves its pods and claims in this namespace.
    let log = arca_engine::runlog::RunLog::detached(&backup.name_any());
    if let Err(e) = arca_engine::csi::expose::clean_up_leftovers(
        &ctx.client,
        &ctx.settings.namespace,
        &backup.uid().unwrap_or_default(),
        &log,
    )
    .await
    {
        tracing::warn!(backup = %backup.name_any(), "removing the data mover's leftovers: {e}");
    }
    ctx.metrics
        .backups
        .get_or_create(&OutcomeLabels {
            outcome: "Failed".into(),
        })
        .inc();
    ctx.event(
        backup,
        true,
        "BackupFailed",
        status.failure_reason.clone().unwrap_or_default(),
    )
    .await;
    Ok(())
}

/// Sets the `Completed` condition from the phase (every status write goes through here).
fn set_completed(backup: &Backup, ctx: &Context, status: &mut BackupStatus) {
    arca_api::conditions::set_completed(status, backup.metadata.generation, time(ctx.clock.now()));
}

/// The first status write of a run: only onto the Backup as this reconcile read it (still
/// New). False when it changed since: a stale cache entry never starts a second run nor
/// marks a finished backup FailedValidation.
async fn claim(backup: &Backup, ctx: &Context, status: &mut BackupStatus) -> Result<bool, Error> {
    set_completed(backup, ctx, status);
    arca_runtime::status::claim(&ctx.client, backup, MANAGER, status)
        .await
        .map_err(|e| Error::Status(backup.name_any(), e))
}

async fn patch(backup: &Backup, ctx: &Context, status: &mut BackupStatus) -> Result<(), Error> {
    set_completed(backup, ctx, status);
    let name = backup.name_any();
    let api: Api<Backup> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    apply_status(&api, &name, MANAGER, status)
        .await
        .map_err(|e| Error::Status(name, e))
}

/// The namespace a tenant's backup is confined to, if it is one.
pub fn tenant_of(namespace: &str, ctx: &Context) -> Option<String> {
    (namespace != ctx.settings.namespace).then(|| namespace.to_string())
}

/// The location a backup (or restore) of `namespace` uses, and the store it opens: a
/// tenant's own location, or else the operator's in a folder of the tenant's.
pub async fn location_for(
    ctx: &Context,
    namespace: &str,
    name: Option<&str>,
) -> Result<(arca_api::BackupStorageLocation, Arc<dyn ObjectStore>), LocationError> {
    location_for_writing(ctx, namespace, name, None).await
}

/// When a backup writes: the times its objects' retain-until date comes from, when its
/// location asks for object lock.
#[derive(Clone, Copy, Debug)]
pub struct Writing {
    pub started: jiff::Timestamp,
    pub expiration: Option<jiff::Timestamp>,
}

/// The object lock retention of every object a backup `writing` puts in `location`: None
/// when the location has no `objectLock`.
pub fn retention_of(
    location: &arca_api::BackupStorageLocation,
    writing: Writing,
) -> Option<arca_store::ObjectRetention> {
    let lock = location.spec.object_lock.as_ref()?;
    let until = arca_policy::lock::retain_until(
        writing.started,
        writing.expiration,
        lock.retain.map(|r| r.as_std()),
    );
    Some(arca_store::ObjectRetention {
        mode: match lock.mode {
            arca_api::ObjectLockMode::Governance => arca_store::LockMode::Governance,
            arca_api::ObjectLockMode::Compliance => arca_store::LockMode::Compliance,
        },
        until: until.into(),
    })
}

/// [`location_for`], with a store whose writes carry the location's object lock for a
/// backup `writing`.
pub async fn location_for_writing(
    ctx: &Context,
    namespace: &str,
    name: Option<&str>,
    writing: Option<Writing>,
) -> Result<(arca_api::BackupStorageLocation, Arc<dyn ObjectStore>), LocationError> {
    let tenant = tenant_of(namespace, ctx);
    let own = locations::find_location(&ctx.client, namespace, name).await;
    let (location, sub_prefix) = match (own, &tenant) {
        (Ok(location), _) => (location, None),
        (Err(LocationError::NotFound { .. } | LocationError::NoDefault(_)), Some(tenant)) => (
            locations::find_location(&ctx.client, &ctx.settings.namespace, name).await?,
            Some(Layout::tenant_root(tenant)),
        ),
        (Err(e), _) => return Err(e),
    };
    let retention = writing.and_then(|w| retention_of(&location, w));
    let store = locations::open_store_with(
        &ctx.client,
        &location,
        ctx.settings.storage_policy(),
        sub_prefix.as_deref(),
        retention,
    )
    .await?;
    Ok((location, store))
}

async fn run_backup(backup: &Backup, ctx: &Context) -> Result<(), Error> {
    let uid = backup.uid().unwrap_or_default();
    let namespace = backup.namespace().unwrap_or_default();
    let tenant = tenant_of(&namespace, ctx);
    let started = ctx.clock.now();
    let ttl = backup
        .spec
        .ttl
        .map(|t| t.as_std())
        .unwrap_or(ctx.settings.default_backup_ttl);
    let mut status = BackupStatus {
        phase: Some(BackupPhase::InProgress),
        format_version: Some(FORMAT_VERSION.into()),
        start_timestamp: Some(time(started)),
        expiration: jiff::SignedDuration::try_from(ttl)
            .ok()
            .and_then(|d| started.checked_add(d).ok())
            .map(time),
        progress: Some(BackupProgress::default()),
        ..BackupStatus::default()
    };

    let writing = Writing {
        started,
        expiration: status.expiration.as_ref().map(|t| t.0),
    };
    let resolved = match resolve(backup, ctx, tenant, writing).await {
        Ok(resolved) => resolved,
        Err(problems) => {
            status.phase = Some(BackupPhase::FailedValidation);
            status.validation_errors = problems.clone();
            status.expiration = None;
            status.completion_timestamp = Some(time(ctx.clock.now()));
            if !claim(backup, ctx, &mut status).await? {
                return Ok(());
            }
            ctx.metrics
                .backups
                .get_or_create(&OutcomeLabels {
                    outcome: "FailedValidation".into(),
                })
                .inc();
            ctx.event(backup, true, "FailedValidation", problems.join("; "))
                .await;
            return Ok(());
        }
    };

    if !claim(backup, ctx, &mut status).await? {
        return Ok(());
    }
    ctx.start(&uid);
    ctx.metrics.backups_in_progress.inc();
    let result = execute(backup, ctx, &mut status, resolved).await;
    ctx.metrics.backups_in_progress.dec();
    ctx.finish(&uid);
    result
}

/// Labels the Backup with its location (`arca.dev/storage-location`), as Velero does, so a
/// restore finds the data when the Backup named no location.
/// Labels a Backup or Restore with the location it writes to (`arca.dev/storage-location`),
/// so it is found again after the spec's default changes or its backup is gone.
pub(crate) async fn label_location<K>(object: &K, ctx: &Context, location: &str)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if object
        .labels()
        .get(labels::STORAGE_LOCATION)
        .map(String::as_str)
        == Some(location)
    {
        return;
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"labels": {labels::STORAGE_LOCATION: location}}});
    if let Err(e) = api
        .patch(
            &object.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(object = %object.name_any(), "labelling with its location: {e}");
    }
}

mod cancel;
mod execute;
mod report;
mod resolve;
#[cfg(test)]
mod tests;
