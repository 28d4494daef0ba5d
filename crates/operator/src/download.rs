//! DownloadRequest: a presigned URL to one file of a backup or restore, valid 10 minutes;
//! the request is deleted when it expires.

use std::{sync::Arc, time::Duration};

use arca_api::{
    Backup, DownloadRequest, DownloadRequestPhase, DownloadRequestStatus, DownloadTargetKind,
    Restore,
};
use arca_store::Layout;
use kube::{
    Api, ResourceExt,
    api::DeleteParams,
    runtime::{Controller, controller::Action, watcher},
};

use arca_runtime::status::{apply_status, time};

use crate::{backup_controller::location_for, context::Context};

const MANAGER: &str = "arca-download-controller";
const VALID_FOR: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {0}: {1}")]
    Status(String, #[source] kube::Error),
}

/// This controller's name in logs and `arca_reconcile_failures_total`.
const CONTROLLER: &str = "downloadrequest";

pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let requests: Api<DownloadRequest> = ctx.settings.watched(&ctx.client);
    let controller = Controller::new(requests, watcher::Config::default());
    ctx.drive(CONTROLLER, controller, shutdown, reconcile).await;
}

async fn reconcile(request: Arc<DownloadRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let api: Api<DownloadRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = ctx.clock.now();
    let status = request.status.clone().unwrap_or_default();
    if status.phase == Some(DownloadRequestPhase::Processed) {
        let expires = status.expiration.map(|t| t.0).unwrap_or(now);
        if expires <= now {
            let _ = api.delete(&name, &DeleteParams::default()).await;
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(expires.duration_since(now).unsigned_abs()));
    }
    let answer = match url_for(&ctx, &request).await {
        Ok(url) => DownloadRequestStatus {
            phase: Some(DownloadRequestPhase::Processed),
            download_url: Some(url),
            expiration: jiff::SignedDuration::try_from(VALID_FOR)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .map(time),
            message: None,
        },
        Err(message) => DownloadRequestStatus {
            phase: Some(DownloadRequestPhase::Processed),
            download_url: None,
            expiration: jiff::SignedDuration::try_from(VALID_FOR)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .map(time),
            message: Some(message),
        },
    };
    apply_status(&api, &name, MANAGER, &answer)
        .await
        .map_err(|e| Error::Status(name.clone(), e))?;
    Ok(Action::requeue(VALID_FOR))
}

async fn url_for(ctx: &Context, request: &DownloadRequest) -> Result<String, String> {
    let namespace = request.namespace().unwrap_or_default();
    let target = &request.spec.target;
    let backup_kind = matches!(
        target.kind,
        DownloadTargetKind::BackupLog
            | DownloadTargetKind::BackupContents
            | DownloadTargetKind::BackupResults
            | DownloadTargetKind::BackupIndex
            | DownloadTargetKind::BackupVolumes
            | DownloadTargetKind::BackupCsiSnapshots
    );
    let backup_name = if backup_kind {
        target.name.clone()
    } else {
        let restores: Api<Restore> = Api::namespaced(ctx.client.clone(), &namespace);
        let restore = restores
            .get_opt(&target.name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no Restore {:?} in namespace {namespace}", target.name))?;
        restore
            .status
            .and_then(|s| s.backup_name)
            .or(restore.spec.backup_name)
            .ok_or_else(|| format!("restore {} has not started yet", target.name))?
    };
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let backup = backups
        .get_opt(&backup_name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no Backup {backup_name:?} in namespace {namespace}"))?;
    if backup.is_made_by_velero() {
        return Err(if backup_kind {
            format!(
                "backup {backup_name} was made by Velero: its files are Velero's (`velero backup logs {backup_name}`, `velero backup describe {backup_name} --details`)"
            )
        } else {
            format!(
                "restore {} is of backup {backup_name}, made by Velero: Arca writes nothing into Velero's prefix, so it keeps no log or results of it; its warnings are Events on the Restore (`kubectl describe restore {} -n {namespace}`)",
                target.name, target.name
            )
        });
    }
    let location = backup.location_name();
    let (_, store) = location_for(ctx, &namespace, location.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let key = match target.kind {
        DownloadTargetKind::BackupLog => Layout::backup_logs(&target.name),
        DownloadTargetKind::BackupContents => Layout::backup_archive(&target.name),
        DownloadTargetKind::BackupResults => Layout::backup_results(&target.name),
        DownloadTargetKind::BackupIndex => Layout::backup_index(&target.name),
        DownloadTargetKind::BackupVolumes => Layout::backup_volumes(&target.name),
        DownloadTargetKind::BackupCsiSnapshots => Layout::backup_csi_snapshots(&target.name),
        DownloadTargetKind::RestoreLog => Layout::restore_logs(&target.name),
        DownloadTargetKind::RestoreResults => Layout::restore_results(&target.name),
        DownloadTargetKind::RestoreItems => Layout::restore_items(&target.name),
    };
    if store.size(&key).await.map_err(|e| e.to_string())?.is_none() {
        return Err(format!(
            "{} has no {key} in {}",
            target.name,
            store.describe()
        ));
    }
    store
        .presign_get(&key, VALID_FOR)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the location is a directory ({}): read {key} there",
                store.describe()
            )
        })
}
