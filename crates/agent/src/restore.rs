//! A `PodVolumeRestore` of a pod on this node: wait for kubelet to set up the new pod's
//! volumes (a container of it started) and its volume folder, then write the snapshot into
//! it.

use std::{sync::Arc, time::Duration};

use arca_api::{PodVolumePhase, PodVolumeProgress, PodVolumeRestore, PodVolumeRestoreStatus};
use arca_engine::progress::Progress;
use kube::{ResourceExt, runtime::controller::Action};

use arca_engine::protocol::{REPOSITORY_PASSWORD_KEY, RepositoryId, VELERO_REPOSITORY_SECRET};

use super::{
    Agent,
    folders::{FolderError, volume_folder},
    markers, work,
};
use arca_api::labels::RESTORE_UID;
use arca_runtime::{progress::Ticker, status::time};

use work::MANAGER;
/// The longest wait before an unscheduled pod, or a folder not yet made, is looked at again.
const RECHECK: Duration = Duration::from_secs(2);
/// The first wait: a restored pod is usually scheduled, and its folder made, within moments.
const FIRST_RECHECK: Duration = Duration::from_millis(100);

/// How long to wait before looking again at what was not ready `waited` after it was first
/// looked at: a tenth of that, between [`FIRST_RECHECK`] and [`RECHECK`] (quick at first,
/// without polling a pod that stays pending for hours more than every 2 s).
fn recheck_after(waited: Duration) -> Duration {
    (waited / 10).clamp(FIRST_RECHECK, RECHECK)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {0}: {1}")]
    Status(String, #[source] kube::Error),
}

pub async fn reconcile(item: Arc<PodVolumeRestore>, agent: Arc<Agent>) -> Result<Action, Error> {
    let status = item.status.clone().unwrap_or_default();
    if status.phase.unwrap_or_default() != PodVolumePhase::New {
        return Ok(Action::await_change());
    }
    // Whose work is it? The agent of the node the pod is scheduled on.
    let pod = match work::the_pod(&agent, &item.spec.pod).await {
        Ok(pod) => pod,
        Err(why) => {
            finish(&agent, &item, status, Err(why)).await;
            return Ok(Action::await_change());
        }
    };
    match work::node_of(&pod) {
        None => {
            let waited = item
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| jiff::Timestamp::now().duration_since(t.0).try_into().ok())
                .unwrap_or(RECHECK * 10);
            return Ok(Action::requeue(recheck_after(waited)));
        }
        Some(node) if node != agent.settings.node_name => return Ok(Action::await_change()),
        Some(_) => {}
    }
    let mut status = PodVolumeRestoreStatus {
        phase: Some(PodVolumePhase::InProgress),
        node: Some(agent.settings.node_name.clone()),
        start_timestamp: Some(time(jiff::Timestamp::now())),
        progress: Some(PodVolumeProgress::default()),
        ..PodVolumeRestoreStatus::default()
    };
    work::write_status(&agent, item.as_ref(), &status)
        .await
        .map_err(|e| Error::Status(item.name_any(), e))?;
    let mut outcome = restore(&agent, &item, &pod, &mut status).await;
    // The pod's restore helper waits for a marker in the volume: done, or failed with why.
    // A pod without the helper gets no marker: nothing of Arca's is left in its data.
    if let (Some(folder), Some(uid), true) = (
        &status.path,
        item.labels().get(RESTORE_UID),
        has_restore_helper(&pod),
    ) && let Err(why) = markers::write(std::path::Path::new(folder), uid, &outcome)
    {
        outcome = outcome.and(Err(why));
    }
    finish(&agent, &item, status, outcome).await;
    Ok(Action::await_change())
}

/// Whether the restore gave the pod the init container that waits for the markers.
fn has_restore_helper(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.name == arca_api::restore_helper::INIT_CONTAINER_NAME)
        })
}

/// Writes the final status.
pub async fn finish(
    agent: &Agent,
    item: &PodVolumeRestore,
    mut status: PodVolumeRestoreStatus,
    outcome: Result<(), String>,
) {
    status.completion_timestamp = Some(time(jiff::Timestamp::now()));
    match outcome {
        Ok(()) => status.phase = Some(PodVolumePhase::Completed),
        Err(why) => {
            tracing::warn!(item = %item.name_any(), "pod volume restore failed: {why}");
            status.phase = Some(PodVolumePhase::Failed);
            status.message = Some(why);
        }
    }
    if let Err(e) = work::write_status(agent, item, &status).await {
        tracing::error!(item = %item.name_any(), "writing the final status: {e}");
    }
}

async fn restore(
    agent: &Agent,
    item: &PodVolumeRestore,
    pod: &k8s_openapi::api::core::v1::Pod,
    status: &mut PodVolumeRestoreStatus,
) -> Result<(), String> {
    let spec = &item.spec;
    let root = RepositoryId::parse(&spec.repo_identifier).map_err(|e| e.to_string())?;
    let name = work::folder_name(agent, pod, &spec.volume).await?;
    wait_for_volumes_set_up(agent, &spec.pod).await?;
    let folder = wait_for_folder(agent, &spec.pod.uid, &name).await?;
    status.path = Some(folder.display().to_string());
    let repository = work::repository(
        agent,
        &spec.location_namespace,
        &spec.backup_storage_location,
        &root,
    )
    .await?
    // The repository of namespace N holds only N's snapshots; a work item pairing it with a
    // snapshot of another namespace is refused.
    .only_tagged(root.namespace_tag());
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
    let counter = progress.clone();
    let result = repository
        .restore(
            &spec.snapshot_id,
            &folder,
            Arc::new(move |p: arca_volume::BytesProgress| counter.set(p.total, p.done)),
        )
        .await;
    ticker.stop().await;
    let summary = result.map_err(|e| explain(&root, &agent.settings.namespace, e))?;
    tracing::info!(
        item = %item.name_any(),
        snapshot = %spec.snapshot_id,
        files = summary.files,
        bytes = summary.bytes,
        "pod volume restored"
    );
    status.progress = Some(PodVolumeProgress {
        total_bytes: summary.bytes,
        bytes_done: summary.bytes,
    });
    Ok(())
}

/// Why a restore failed, in words for its repository: a wrong password of Velero's says
/// where Arca looked for Velero's.
fn explain(root: &RepositoryId, namespace: &str, error: arca_volume::VolumeError) -> String {
    match error {
        arca_volume::VolumeError::WrongPassword { location } if root.is_velero() => format!(
            "Velero's repository password does not open Velero's restic repository at {location}: Arca reads it from Secret {namespace}/{VELERO_REPOSITORY_SECRET} key {REPOSITORY_PASSWORD_KEY}, or uses Velero's default when that Secret is absent; copy Velero's Secret (from Velero's namespace) into {namespace}"
        ),
        other => other.to_string(),
    }
}

/// Whether kubelet has set up every volume of `pod`: it starts a pod's first container (the
/// restore helper, for a restored pod) only then. Before, a volume's folder may already be
/// there while the volume itself (a CSI or local volume) is mounted over it a moment later:
/// data written into the folder then would be hidden under the mount. Pure.
fn volumes_set_up(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref())
        .any(|state| state.running.is_some() || state.terminated.is_some())
}

/// Waits until kubelet has set up the volumes of the pod (see [`volumes_set_up`]).
async fn wait_for_volumes_set_up(
    agent: &Agent,
    pod: &arca_api::PodReference,
) -> Result<(), String> {
    let started = tokio::time::Instant::now();
    let deadline = started + agent.settings.mount_wait;
    loop {
        if volumes_set_up(&work::the_pod(agent, pod).await?) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "pod {}/{}: no container started within {}s, so kubelet has not set up its volumes; the data is not restored",
                pod.namespace,
                pod.name,
                agent.settings.mount_wait.as_secs()
            ));
        }
        tokio::time::sleep(recheck_after(started.elapsed())).await;
    }
}

/// kubelet makes the folder when it mounts the volume, which may be after the pod exists.
async fn wait_for_folder(
    agent: &Agent,
    uid: &str,
    name: &str,
) -> Result<std::path::PathBuf, String> {
    let started = tokio::time::Instant::now();
    let deadline = started + agent.settings.mount_wait;
    loop {
        match volume_folder(&agent.settings.host_pods_dir, uid, name) {
            Ok(folder) => return Ok(folder),
            Err(e @ FolderError::Io { .. }) => return Err(e.to_string()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "{e} after {}s; the data is not restored",
                    agent.settings.mount_wait.as_secs()
                ));
            }
            Err(_) => tokio::time::sleep(recheck_after(started.elapsed())).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_velero_password_says_where_arca_looked() {
        let wrong = || arca_volume::VolumeError::WrongPassword {
            location: "s3://b/velero/restic/shop/".into(),
        };
        let velero = explain(&RepositoryId::velero_restic("shop"), "arca-system", wrong());
        assert!(
            velero.contains("Secret arca-system/velero-repo-credentials key repository-password")
                && velero.contains("restic/shop"),
            "{velero}"
        );
        // Arca's own repositories keep the volume crate's words.
        let own = explain(&RepositoryId::new("shop"), "arca-system", wrong());
        assert!(!own.contains("velero-repo-credentials"), "{own}");
    }

    #[test]
    fn volumes_are_set_up_once_a_container_has_started() {
        let pod = |status: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "db-0"},
                "status": status,
            }))
            .expect("a pod")
        };
        assert!(!volumes_set_up(&pod(
            serde_json::json!({"phase": "Pending"})
        )));
        assert!(!volumes_set_up(&pod(serde_json::json!({
            "phase": "Pending",
            "initContainerStatuses": [{"name": "arca-restore-wait", "image": "a", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}]
        }))));
        assert!(volumes_set_up(&pod(serde_json::json!({
            "phase": "Pending",
            "initContainerStatuses": [{"name": "arca-restore-wait", "image": "a", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-11-29T08:00:00Z"}}}]
        }))));
        assert!(volumes_set_up(&pod(serde_json::json!({
            "phase": "Running",
            "containerStatuses": [{"name": "hold", "image": "a", "imageID": "",
                "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-11-29T08:00:00Z"}}}]
        }))));
    }

    #[test]
    fn rechecks_start_quick_and_slow_down_to_two_seconds() {
        assert_eq!(recheck_after(Duration::ZERO), FIRST_RECHECK);
        assert_eq!(
            recheck_after(Duration::from_secs(5)),
            Duration::from_millis(500)
        );
        assert_eq!(recheck_after(Duration::from_secs(3600)), RECHECK);
    }
}
