//! `snapshotMoveData: true`: the data of each CSI snapshot taken is copied into the bucket,
//! and then the snapshot is deleted, so the backup no longer depends on the storage system
//! or the cluster. Runs after the post hooks (the snapshots are the consistent point; the
//! copy takes as long as it takes).
//!
//! Each snapshot is exposed in the operator's namespace ([`crate::csi::expose`]: a claim
//! made from it, mounted by a pod on the node of the pod that mounts the original claim),
//! and the node agent there copies the files through the usual work item
//! ([`crate::pod_volumes::backup`]), into the claim's namespace's repository, recorded as the
//! pod volume that mounts the claim: `volumes.json` then holds it as a file copy of that
//! claim, and any cluster restores it the way it restores file copies (a new claim from its
//! storage class, the data written before the pod's containers start).
//!
//! A claim no pod of the backup mounts on a node (a StatefulSet scaled to zero, a pod not
//! scheduled) is moved too: its exposure goes to a node with an agent within the original
//! volume's topology, and `volumes.json` records it as the claim's alone (no pod), which a
//! restore fills through a pod of its own ([`crate::pod_volumes::populate`]).
//!
//! A snapshot whose data could not be moved is kept and recorded in `csi-snapshots.json`
//! (the backup still restores it in this cluster), and its claim is named in the errors.

use std::collections::BTreeMap;

use arca_store::archive::{CsiSnapshot, VolumeSnapshot};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;

use super::{
    BackupRequest,
    collect::Collector,
    volumes::{ReadFrom, VolumeRequest},
};
use crate::{
    csi::{
        backup::{DEFAULT_TIMEOUT, labels_of},
        delete::delete_snapshot,
        expose::{ExposeJob, POD_VOLUME, clean_up, expose, exposure_name},
    },
    runlog::RunLog,
};

/// Snapshots exposed at once.
const CONCURRENCY: usize = 4;

/// What moving the snapshots' data gave.
#[derive(Debug, Default)]
pub struct Moved {
    /// The moved claims' data, for `volumes.json`.
    pub copies: Vec<VolumeSnapshot>,
    /// The snapshots not moved: kept in the storage system, for `csi-snapshots.json`.
    pub kept: Vec<CsiSnapshot>,
}

/// Moves the data of `snapshots` into the bucket; `mounts` are the pod volumes of the backup
/// that mount each (namespace, claim).
pub async fn move_data(
    request: &BackupRequest,
    snapshots: Vec<CsiSnapshot>,
    mounts: &BTreeMap<(String, String), VolumeRequest>,
    collector: &Collector,
    log: &RunLog,
) -> Moved {
    let cannot = |why: &str, snapshots: Vec<CsiSnapshot>| {
        for s in &snapshots {
            collector.record_error(
                Some(&s.namespace),
                format!(
                    "claim {}/{}: the data of its CSI snapshot is not moved into the bucket: {why}; the snapshot is kept",
                    s.namespace, s.claim
                ),
            );
        }
        Moved {
            copies: Vec::new(),
            kept: snapshots,
        }
    };
    if snapshots.is_empty() {
        return Moved::default();
    }
    // A canceled run keeps its snapshots for the operator to delete with what it wrote.
    if request.cancel.is_cancelled() {
        return Moved {
            copies: Vec::new(),
            kept: snapshots,
        };
    }
    let job = match &request.volumes {
        Ok(job) => job,
        Err(why) => return cannot(why, snapshots),
    };
    let Some(image) = request.helper_image.as_deref() else {
        return cannot(
            "the operator has no image for its helper pods (--restore-helper-image, which `arca install` sets)",
            snapshots,
        );
    };
    let operator = &request.operator_client.0;
    let labels = labels_of(&request.name, &request.namespace, &request.uid);
    let expose_job = ExposeJob {
        operator,
        namespace: &job.work_namespace,
        image,
        labels: &labels,
        backup_uid: &request.uid,
        timeout: request
            .spec
            .csi_snapshot_timeout
            .map(std::time::Duration::from)
            .unwrap_or(DEFAULT_TIMEOUT),
        cancel: &request.cancel,
    };
    let candidates = movable(snapshots, mounts);
    let mut kept = Vec::new();
    // Where a claim no pod holds on a node can be read: the agents' nodes, listed once.
    let agents = match candidates.iter().any(|(_, m)| m.node.is_none()) {
        true => crate::pod_volumes::placement::agent_nodes(operator).await,
        false => Ok(None),
    };
    let agents = &agents;
    let mut exposed = Vec::new();
    let mut requests = Vec::new();
    let mut runs = futures::stream::iter(candidates)
        .map(|(snapshot, mount)| async move {
            let name = exposure_name(&request.name, &request.uid, &snapshot);
            let result = expose_one(expose_job, &name, &snapshot, &mount, agents, log).await;
            (snapshot, mount, name, result)
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((snapshot, mount, name, result)) = runs.next().await {
        match result {
            Ok(exposure) => {
                log.info(format!(
                    "claim {}/{}: its CSI snapshot is mounted by pod {}/{name} on node {}",
                    snapshot.namespace, snapshot.claim, job.work_namespace, exposure.node
                ));
                requests.push(VolumeRequest {
                    node: Some(exposure.node.clone()),
                    requested: true,
                    read_from: Some(ReadFrom {
                        namespace: job.work_namespace.clone(),
                        pod: exposure.name.clone(),
                        pod_uid: exposure.pod_uid.clone(),
                        node: exposure.node.clone(),
                        volume: POD_VOLUME.into(),
                    }),
                    ..mount
                });
                exposed.push((name, snapshot));
            }
            Err(why) => {
                collector.record_error(
                    Some(&snapshot.namespace),
                    format!(
                        "claim {}/{}: the data of its CSI snapshot is not moved into the bucket: {why}; the snapshot is kept",
                        snapshot.namespace, snapshot.claim
                    ),
                );
                kept.push(snapshot);
            }
        }
    }
    drop(runs);
    let outcome = if requests.is_empty() || request.cancel.is_cancelled() {
        crate::pod_volumes::backup::VolumeBackups::default()
    } else {
        crate::pod_volumes::backup::back_up(job, request.volume_run(), requests, log).await
    };
    for (ns, message) in outcome.errors {
        collector.record_error(Some(&ns), message);
    }
    for (ns, message) in outcome.warnings {
        collector.record_warning(Some(&ns), message);
    }
    for (name, snapshot) in exposed {
        clean_up(operator, &job.work_namespace, &name, log).await;
        let moved = outcome.snapshots.iter().any(|c| {
            c.namespace == snapshot.namespace && c.claim.as_ref() == Some(&snapshot.claim)
        });
        if !moved {
            // Its copy failed (an error names it): the snapshot stays the backup's.
            kept.push(snapshot);
            continue;
        }
        match delete_snapshot(operator, &request.name, &request.namespace, &snapshot).await {
            Ok(_) => log.info(format!(
                "claim {}/{}: its data is in the bucket; CSI snapshot {} deleted",
                snapshot.namespace, snapshot.claim, snapshot.snapshot_handle
            )),
            Err(why) => collector.record_warning(
                Some(&snapshot.namespace),
                format!(
                    "claim {}/{}: its data is in the bucket, but its CSI snapshot was not deleted: {why}",
                    snapshot.namespace, snapshot.claim
                ),
            ),
        }
    }
    kept.sort_by(|a, b| (&a.namespace, &a.claim).cmp(&(&b.namespace, &b.claim)));
    Moved {
        copies: outcome.snapshots,
        kept,
    }
}

/// What each snapshot's data is recorded as: the pod volume of the backup that mounts its
/// claim on a node, else the claim alone (no pod, no node: a claim-only entry). Pure.
fn movable(
    snapshots: Vec<CsiSnapshot>,
    mounts: &BTreeMap<(String, String), VolumeRequest>,
) -> Vec<(CsiSnapshot, VolumeRequest)> {
    snapshots
        .into_iter()
        .map(|snapshot| {
            let key = (snapshot.namespace.clone(), snapshot.claim.clone());
            let request = match mounts.get(&key) {
                Some(mount) if mount.node.is_some() => mount.clone(),
                _ => VolumeRequest {
                    namespace: snapshot.namespace.clone(),
                    pod: String::new(),
                    pod_uid: String::new(),
                    node: None,
                    volume: String::new(),
                    claim: Some(snapshot.claim.clone()),
                    requested: true,
                    facts: Default::default(),
                    read_from: None,
                },
            };
            (snapshot, request)
        })
        .collect()
}

async fn expose_one(
    job: ExposeJob<'_>,
    name: &str,
    snapshot: &CsiSnapshot,
    mount: &VolumeRequest,
    agents: &Result<Option<std::collections::BTreeSet<String>>, String>,
    log: &RunLog,
) -> Result<crate::csi::expose::Exposure, String> {
    use crate::pod_volumes::placement;
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(job.operator.clone(), &snapshot.namespace);
    let original = claims.get(&snapshot.claim).await.map_err(|e| {
        format!(
            "reading claim {}/{}: {e}",
            snapshot.namespace, snapshot.claim
        )
    })?;
    let affinity = match &mount.node {
        // The node of the pod that mounts it: a node-local snapshot is there, and an agent.
        Some(node) => placement::affinity(Some(&[node.clone()].into()), &[]),
        None => {
            let volume = original
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref());
            let terms = placement::volume_terms(job.operator, volume).await;
            let nodes = agents.as_ref().map_err(Clone::clone)?;
            placement::affinity(nodes.as_ref(), &terms)
        }
    };
    expose(job, name, snapshot, &original, &affinity, log).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(namespace: &str, claim: &str) -> CsiSnapshot {
        CsiSnapshot {
            namespace: namespace.into(),
            claim: claim.into(),
            ..CsiSnapshot::default()
        }
    }

    fn mount(namespace: &str, pod: &str, claim: &str, node: Option<&str>) -> VolumeRequest {
        VolumeRequest {
            namespace: namespace.into(),
            pod: pod.into(),
            pod_uid: format!("uid-{pod}"),
            node: node.map(str::to_string),
            volume: "data".into(),
            claim: Some(claim.into()),
            requested: false,
            facts: Default::default(),
            read_from: None,
        }
    }

    #[test]
    fn a_claim_no_scheduled_pod_mounts_is_moved_as_the_claims_alone() {
        let mounts = BTreeMap::from([
            (
                ("shop".to_string(), "data-db-0".to_string()),
                mount("shop", "db-0", "data-db-0", Some("node-a")),
            ),
            (
                ("shop".to_string(), "pending".to_string()),
                mount("shop", "waiting", "pending", None),
            ),
        ]);
        let moved = movable(
            vec![
                snapshot("shop", "data-db-0"),
                snapshot("shop", "pending"),
                snapshot("shop", "unmounted"),
                // The same claim name in another namespace is another claim.
                snapshot("other", "data-db-0"),
            ],
            &mounts,
        );
        let recorded: Vec<(&str, &str, &str, Option<&str>)> = moved
            .iter()
            .map(|(s, r)| {
                assert_eq!(r.claim.as_deref(), Some(s.claim.as_str()));
                assert_eq!(r.namespace, s.namespace);
                (
                    s.claim.as_str(),
                    r.pod.as_str(),
                    r.volume.as_str(),
                    r.node.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            recorded,
            vec![
                ("data-db-0", "db-0", "data", Some("node-a")),
                ("pending", "", "", None),
                ("unmounted", "", "", None),
                ("data-db-0", "", "", None),
            ]
        );
    }
}
