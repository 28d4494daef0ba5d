//! Garbage collection: every `--garbage-collection-frequency`, expired backups get a
//! DeleteBackupRequest (never the newest Completed backup of a schedule), unless their
//! location is ReadOnly or Unavailable, which is said on the Backup with a label. Processed
//! requests older than a day are removed.

use std::{sync::Arc, time::Duration};

use arca_api::{
    AccessMode, Backup, BackupStorageLocation, DeleteBackupRequest, DeleteBackupRequestPhase,
    LocationPhase, labels,
};
use arca_policy::gc::{Expiring, expired};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};

use crate::{context::Context, deletion::request_deletion};

/// Requests older than this are removed once Processed.
const KEEP_PROCESSED: Duration = Duration::from_secs(24 * 3600);

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(ctx.settings.gc_frequency.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = collect(&ctx).await {
            tracing::warn!("garbage collection: {e}");
        }
    }
}

async fn collect(ctx: &Context) -> Result<(), kube::Error> {
    let backups_api: Api<Backup> = ctx.settings.watched(&ctx.client);
    let backups = backups_api.list(&ListParams::default()).await?.items;
    let now = ctx.clock.now();
    let candidates: Vec<Expiring> = backups
        .iter()
        .map(|b| {
            let status = b.status.clone().unwrap_or_default();
            Expiring {
                name: format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any()),
                schedule: b
                    .labels()
                    .get(labels::SCHEDULE_NAME)
                    .map(|s| format!("{}/{s}", b.namespace().unwrap_or_default())),
                phase: status.phase.unwrap_or_default(),
                started: status.start_timestamp.map(|t| t.0),
                expiration: status.expiration.map(|t| t.0),
            }
        })
        .collect();
    let locations_api: Api<BackupStorageLocation> = ctx.settings.watched(&ctx.client);
    let locations = locations_api.list(&ListParams::default()).await?.items;
    for key in expired(&candidates, now) {
        let Some(backup) = backups
            .iter()
            .find(|b| format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any()) == key)
        else {
            continue;
        };
        let location_name = backup.location_name();
        let location = locations
            .iter()
            .find(|l| l.namespace() == backup.namespace() && Some(l.name_any()) == location_name);
        let blocked = match location {
            Some(l) if l.spec.access_mode == AccessMode::ReadOnly => Some("location-read-only"),
            Some(l)
                if l.status.as_ref().and_then(|s| s.phase) == Some(LocationPhase::Unavailable) =>
            {
                Some("location-unavailable")
            }
            _ => None,
        };
        match blocked {
            Some(reason) => label_gc_failure(ctx, backup, reason).await,
            None => request_deletion(ctx, backup, "garbage collection (expired)").await,
        }
    }
    let requests_api: Api<DeleteBackupRequest> = ctx.settings.watched(&ctx.client);
    for request in requests_api.list(&ListParams::default()).await?.items {
        let processed = request.status.as_ref().and_then(|s| s.phase)
            == Some(DeleteBackupRequestPhase::Processed);
        let old = request
            .creation_timestamp()
            .is_some_and(|t| now.duration_since(t.0).unsigned_abs() > KEEP_PROCESSED);
        if processed && old {
            let api: Api<DeleteBackupRequest> =
                Api::namespaced(ctx.client.clone(), &request.namespace().unwrap_or_default());
            let _ = api
                .delete(&request.name_any(), &DeleteParams::default())
                .await;
        }
    }
    Ok(())
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
