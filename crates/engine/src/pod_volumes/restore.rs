//! The restore side: once a pod with snapshots is recreated, one `PodVolumeRestore` per
//! volume for the agent of the pod's node; the restore waits for them.

use arca_api::{PodReference, PodVolumePhase, PodVolumeRestore, PodVolumeRestoreSpec};
use arca_store::archive::VolumeSnapshot;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, ResourceExt, api::PostParams};

use super::{VolumeJob, wait, work_metadata};
use crate::protocol::{self, work_item_name};
use crate::runlog::RunLog;

/// A recreated pod and the snapshots of its volumes.
#[derive(Clone, Debug)]
pub struct PodToFill {
    /// Where the pod now is.
    pub namespace: String,
    pub pod: String,
    pub snapshots: Vec<VolumeSnapshot>,
}

/// The run a restore's work items belong to.
#[derive(Clone, Copy, Debug)]
pub struct RestoreRun<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

/// What the volume part of a restore did.
#[derive(Debug, Default)]
pub struct VolumeRestores {
    pub restored: usize,
    /// (namespace, message) of volumes left empty.
    pub errors: Vec<(String, String)>,
}

/// Creates the work items of `pods` and waits for the agents.
pub async fn restore(
    client: &Client,
    job: &VolumeJob,
    run: RestoreRun<'_>,
    pods: Vec<PodToFill>,
    log: &RunLog,
) -> VolumeRestores {
    let mut out = VolumeRestores::default();
    let api: Api<PodVolumeRestore> = Api::namespaced(job.client.clone(), &job.work_namespace);
    let mut created = std::collections::BTreeSet::new();
    for target in &pods {
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
        let uid = match pods_api.get_opt(&target.pod).await {
            Ok(Some(pod)) => pod.uid().unwrap_or_default(),
            Ok(None) => {
                out.errors.push((
                    target.namespace.clone(),
                    format!(
                        "pod {}/{} is gone: the data of its volumes is not restored",
                        target.namespace, target.pod
                    ),
                ));
                continue;
            }
            Err(e) => {
                out.errors.push((
                    target.namespace.clone(),
                    format!("reading pod {}/{}: {e}", target.namespace, target.pod),
                ));
                continue;
            }
        };
        for snapshot in &target.snapshots {
            let item = work_item(job, run, target, &uid, snapshot);
            match api.create(&PostParams::default(), &item).await {
                Ok(_) => {
                    created.insert(item.name_any());
                }
                Err(e) => out.errors.push((
                    target.namespace.clone(),
                    format!(
                        "pod {}/{} volume {}: creating its PodVolumeRestore: {e}",
                        target.namespace, target.pod, snapshot.volume
                    ),
                )),
            }
        }
    }
    if created.is_empty() {
        return out;
    }
    log.info(format!(
        "waiting for {} pod volume restores (node agents)",
        created.len()
    ));
    let selector = format!("{}={}", protocol::RESTORE_UID, run.uid);
    let items = match wait::until_done(
        &api,
        &selector,
        &created,
        job,
        |p: &PodVolumeRestore| {
            let status = p.status.as_ref();
            wait::ItemState::of(
                status.and_then(|s| s.phase),
                status.and_then(|s| s.progress.as_ref()),
            )
        },
        log,
    )
    .await
    {
        Ok(items) => items,
        Err(e) => {
            out.errors
                .push((String::new(), format!("reading the PodVolumeRestores: {e}")));
            return out;
        }
    };
    for item in items {
        let spec = &item.spec;
        let status = item.status.clone().unwrap_or_default();
        let what = format!(
            "pod {}/{} volume {}",
            spec.pod.namespace, spec.pod.name, spec.volume
        );
        match status.phase.unwrap_or_default() {
            PodVolumePhase::Completed => {
                out.restored += 1;
                log.info(format!(
                    "{what}: restored from snapshot {}",
                    spec.snapshot_id
                ));
            }
            phase => out.errors.push((
                spec.pod.namespace.clone(),
                wait::not_done(&what, phase, status.message, job.timeout, "the pod's node"),
            )),
        }
    }
    out
}

fn work_item(
    job: &VolumeJob,
    run: RestoreRun<'_>,
    target: &PodToFill,
    uid: &str,
    snapshot: &VolumeSnapshot,
) -> PodVolumeRestore {
    let name = work_item_name(
        run.name,
        &[&target.namespace, &target.pod, &snapshot.volume],
    );
    let mut item = PodVolumeRestore::new(
        &name,
        PodVolumeRestoreSpec {
            pod: PodReference {
                namespace: target.namespace.clone(),
                name: target.pod.clone(),
                uid: uid.to_string(),
            },
            volume: snapshot.volume.clone(),
            backup_storage_location: job.location.clone(),
            location_namespace: job.location_namespace.clone(),
            repo_identifier: snapshot.repository.clone(),
            snapshot_id: snapshot.snapshot_id.clone(),
            source_namespace: snapshot.namespace.clone(),
            uploader_type: "restic-format".into(),
        },
    );
    item.metadata = work_metadata(
        job,
        name,
        (protocol::RESTORE_NAME, protocol::RESTORE_UID),
        (run.name, run.uid),
    );
    item
}
