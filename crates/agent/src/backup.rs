//! A `PodVolumeBackup` on this node: read the pod's volume folder into a snapshot.

use std::sync::Arc;

use arca_api::{
    PodVolumeBackup, PodVolumeBackupStatus, PodVolumePhase, PodVolumeProgress, VolumeCompression,
    labels,
};
use arca_engine::progress::Progress;
use arca_volume::{Compression, SnapshotRequest};
use kube::{
    Api, ResourceExt,
    runtime::{controller::Action, wait::await_condition},
};

use arca_engine::protocol::RepositoryId;

use super::{Agent, folders::volume_folder, work};
use arca_runtime::{progress::Ticker, status::time};

use work::MANAGER;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {0}: {1}")]
    Status(String, #[source] kube::Error),
}

pub async fn reconcile(item: Arc<PodVolumeBackup>, agent: Arc<Agent>) -> Result<Action, Error> {
    let status = item.status.clone().unwrap_or_default();
    if item.spec.node != agent.settings.node_name
        || status.phase.unwrap_or_default() != PodVolumePhase::New
    {
        return Ok(Action::await_change());
    }
    // Its backup was deleted before the copy started: it never starts.
    if item.cancel_requested() {
        finish(&agent, &item, status, Err(canceled())).await;
        return Ok(Action::await_change());
    }
    let mut status = PodVolumeBackupStatus {
        phase: Some(PodVolumePhase::InProgress),
        start_timestamp: Some(time(jiff::Timestamp::now())),
        progress: Some(PodVolumeProgress::default()),
        ..PodVolumeBackupStatus::default()
    };
    work::write_status(&agent, item.as_ref(), &status)
        .await
        .map_err(|e| Error::Status(item.name_any(), e))?;
    // The operator asks for a stop by annotating the item (or deletes it): the copy stops
    // at its next chunk, and no snapshot is written.
    let cancel = arca_volume::Cancel::new();
    let watch = tokio::spawn(stop_when_asked(agent.clone(), item.clone(), cancel.clone()));
    let outcome = back_up(&agent, &item, &mut status, &cancel).await;
    watch.abort();
    let outcome = match outcome {
        Err(_) if cancel.is_canceled() => Err(canceled()),
        other => other,
    };
    finish(&agent, &item, status, outcome).await;
    Ok(Action::await_change())
}

/// The message of a copy stopped at the operator's request; starts with
/// [`labels::CANCELED_MESSAGE`].
fn canceled() -> String {
    format!(
        "{}: the backup was deleted while this volume was being copied; no snapshot was written",
        labels::CANCELED_MESSAGE
    )
}

/// Sets `cancel` once `item` is annotated [`labels::CANCEL`] or deleted.
async fn stop_when_asked(
    agent: Arc<Agent>,
    item: Arc<PodVolumeBackup>,
    cancel: arca_volume::Cancel,
) {
    let api: Api<PodVolumeBackup> =
        Api::namespaced(agent.client.clone(), &agent.settings.namespace);
    let name = item.name_any();
    let uid = item.uid().unwrap_or_default();
    let asked = move |found: Option<&PodVolumeBackup>| {
        found.is_none_or(|i| i.uid().as_deref() != Some(uid.as_str()) || i.cancel_requested())
    };
    loop {
        match await_condition(api.clone(), &name, asked.clone()).await {
            Ok(_) => {
                tracing::info!(item = %name, "asked to stop: canceling the copy");
                cancel.cancel();
                return;
            }
            Err(e) => {
                tracing::debug!(item = %name, "watching the work item: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
}

/// Writes the final status: Completed with the snapshot, or Failed with the reason.
pub async fn finish(
    agent: &Agent,
    item: &PodVolumeBackup,
    mut status: PodVolumeBackupStatus,
    outcome: Result<(), String>,
) {
    status.completion_timestamp = Some(time(jiff::Timestamp::now()));
    match outcome {
        Ok(()) => status.phase = Some(PodVolumePhase::Completed),
        Err(why) => {
            tracing::warn!(item = %item.name_any(), "pod volume backup failed: {why}");
            status.phase = Some(PodVolumePhase::Failed);
            status.message = Some(why);
            status.snapshot_id = None;
        }
    }
    if let Err(e) = work::write_status(agent, item, &status).await {
        tracing::error!(item = %item.name_any(), "writing the final status: {e}");
    }
}

async fn back_up(
    agent: &Agent,
    item: &PodVolumeBackup,
    status: &mut PodVolumeBackupStatus,
    cancel: &arca_volume::Cancel,
) -> Result<(), String> {
    let spec = &item.spec;
    if spec.pod.namespace.is_empty() {
        return Err("spec.pod.namespace is empty".into());
    }
    let root = RepositoryId::parse(&spec.repo_identifier).map_err(|e| e.to_string())?;
    let pod = work::the_pod(agent, &spec.pod).await?;
    if work::node_of(&pod) != Some(agent.settings.node_name.as_str()) {
        return Err(format!(
            "pod {}/{} is not on node {} any more",
            spec.pod.namespace, spec.pod.name, agent.settings.node_name
        ));
    }
    let name = work::folder_name(agent, &pod, &spec.volume).await?;
    let folder = volume_folder(&agent.settings.host_pods_dir, &spec.pod.uid, &name)
        .map_err(|e| e.to_string())?;
    status.path = Some(folder.display().to_string());
    let repository = work::repository(
        agent,
        &spec.location_namespace,
        &spec.backup_storage_location,
        &root,
    )
    .await?
    .with_compression(match spec.compression.unwrap_or_default() {
        VolumeCompression::Auto => Compression::Auto,
        VolumeCompression::Off => Compression::Off,
    })
    .with_cancel(cancel.clone(), "the operator asked the agent to stop");
    let progress = Arc::new(Progress::default());
    let ticker = Ticker::start(&agent.client, item, MANAGER, progress.clone(), {
        let status = status.clone();
        move |counts: arca_engine::progress::Counts| {
            let mut status = status.clone();
            status.progress = Some(PodVolumeProgress {
                total_bytes: counts.total,
                bytes_done: counts.done,
            });
            status
        }
    });
    let request = SnapshotRequest {
        as_path: spec.snapshot_path.clone(),
        hostname: "arca".into(),
        tags: spec.tags.clone(),
    };
    let counter = progress.clone();
    let result = repository
        .backup(
            &folder,
            &request,
            Arc::new(move |p: arca_volume::BytesProgress| counter.set(p.total, p.done)),
        )
        .await;
    ticker.stop().await;
    let summary = result.map_err(|e| e.to_string())?;
    tracing::info!(
        item = %item.name_any(),
        snapshot = %summary.id,
        bytes = summary.total_bytes,
        uploaded = summary.bytes_uploaded,
        "pod volume backed up"
    );
    if summary.skipped > 0 {
        status.message = Some(format!(
            "{} files could not be read and are not in the snapshot (for example: {})",
            summary.skipped,
            summary.skipped_sample.join(", ")
        ));
    }
    status.snapshot_id = Some(summary.id);
    status.bytes_uploaded = Some(summary.bytes_uploaded);
    status.progress = Some(PodVolumeProgress {
        total_bytes: summary.total_bytes,
        bytes_done: summary.total_bytes,
    });
    Ok(())
}
