//! Claims the backup holds alone (`volumes.json` entries with no pod: no pod of the backup
//! mounted them, a StatefulSet scaled to zero say, and their CSI snapshot's data was moved
//! into the bucket). Once a restore has recreated such a claim, nothing of the restore mounts
//! it, so it is filled through a pod of its own:
//!
//! - a Job in the claim's namespace (`ttlSecondsAfterFinished: 0`, no retries) whose pod runs
//!   Arca's image doing nothing (`arca hold`), restricted (non-root, no capabilities, no
//!   service account token), mounting the claim, on a node where a node agent runs (with
//!   `WaitForFirstConsumer` storage the new volume is provisioned there);
//! - once that pod runs, a PodVolumeRestore of its volume, as for any restored pod;
//! - then the Job's `activeDeadlineSeconds` is cut to one second: Kubernetes ends the pod and
//!   removes the Job. The operator deletes no pod or Job outside its own namespace; should it
//!   stop in between, the Job's first deadline (the volume timeout) ends it all the same.
//!
//! Velero restores such a claim with a pod of its own too (its data mover's restore pod).

use std::{collections::BTreeMap, time::Duration};

use arca_store::archive::VolumeSnapshot;
use futures::StreamExt;
use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use super::restore::{PodToFill, RestoreRun};
use crate::{csi::expose::POD_VOLUME, runlog::RunLog};

/// How long the pod may take to be scheduled, its claim provisioned and its volume mounted.
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the pod's state is read while it starts.
const POLL: Duration = Duration::from_millis(500);
/// Claims whose pods are started at once.
const CONCURRENCY: usize = 4;
/// The label on the Job and its pod naming the Restore (its uid).
pub const POPULATE_LABEL: &str = "arca.dev/populate-restore-uid";

/// A claim recreated by the restore, and its data.
#[derive(Clone, Debug)]
pub struct ClaimToFill {
    /// Where the claim now is.
    pub namespace: String,
    pub claim: String,
    pub snapshot: VolumeSnapshot,
}

/// What the restore needs to fill claims.
pub(crate) struct Populate<'a> {
    /// The restore's client: the Jobs are written as the restore writes everything else.
    pub client: &'a Client,
    /// The operator's own: it finds the agents' nodes and the Jobs' pods.
    pub operator: &'a Client,
    /// Arca's image (the operator's own).
    pub image: Option<&'a str>,
    /// The Job's first deadline: the pod's start and the volume's restore.
    pub volume_timeout: Duration,
}

/// The pods started, and the claims that could not be filled.
#[derive(Debug, Default)]
pub struct Started {
    /// The Jobs' pods, each with its claim's data to restore into volume [`POD_VOLUME`].
    pub pods: Vec<PodToFill>,
    /// (namespace, Job name) of every Job made, to end with [`finish`].
    pub jobs: Vec<(String, String)>,
    /// (namespace, message) of claims left empty.
    pub errors: Vec<(String, String)>,
}

/// Starts a pod mounting each of `claims`.
pub(crate) async fn start(
    populate: &Populate<'_>,
    run: RestoreRun<'_>,
    claims: Vec<ClaimToFill>,
    log: &RunLog,
) -> Started {
    let mut out = Started::default();
    let not_filled = |c: &ClaimToFill, why: &str| {
        (
            c.namespace.clone(),
            format!(
                "claim {}/{}: its data is not restored: {why}",
                c.namespace, c.claim
            ),
        )
    };
    let image = match populate.image {
        Some(image) => image,
        None => {
            let why = "the operator has no image for the pod that fills it (--restore-helper-image, which `arca install` sets)";
            out.errors = claims.iter().map(|c| not_filled(c, why)).collect();
            return out;
        }
    };
    let nodes = match super::placement::agent_nodes(populate.operator).await {
        Ok(nodes) => nodes,
        Err(why) => {
            out.errors = claims.iter().map(|c| not_filled(c, &why)).collect();
            return out;
        }
    };
    let affinity = super::placement::affinity(nodes.as_ref(), &[]);
    let deadline = (START_TIMEOUT + populate.volume_timeout).as_secs();
    let affinity = &affinity;
    let mut runs = futures::stream::iter(claims)
        .map(|claim| async move {
            let name = crate::csi::object_name(
                "arca-fill",
                run.name,
                &format!("{}/{}/{}", run.uid, claim.namespace, claim.claim),
            );
            let spec = job_spec(&name, run.uid, image, &claim.claim, affinity, deadline);
            let result = start_one(populate, &claim.namespace, &name, spec).await;
            (claim, name, result)
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((claim, name, result)) = runs.next().await {
        match result {
            Ok(made) => {
                out.jobs.push((claim.namespace.clone(), name.clone()));
                match made {
                    Ok(pod) => {
                        log.info(format!(
                            "claim {}/{}: mounted by pod {pod} (Job {name}) for the node agent to fill",
                            claim.namespace, claim.claim
                        ));
                        out.pods.push(PodToFill {
                            namespace: claim.namespace,
                            pod,
                            snapshots: vec![VolumeSnapshot {
                                volume: POD_VOLUME.into(),
                                ..claim.snapshot
                            }],
                        });
                    }
                    Err(why) => out.errors.push(not_filled(&claim, &why)),
                }
            }
            Err(why) => out.errors.push(not_filled(&claim, &why)),
        }
    }
    out
}

/// Creates the Job (the outer error: not made) and waits for its pod to run (the inner one:
/// made, but its pod did not start).
async fn start_one(
    populate: &Populate<'_>,
    namespace: &str,
    name: &str,
    spec: Value,
) -> Result<Result<String, String>, String> {
    let jobs: Api<Job> = Api::namespaced(populate.client.clone(), namespace);
    let job: Job = serde_json::from_value(spec).map_err(|e| format!("the Job {name}: {e}"))?;
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(format!("creating Job {namespace}/{name}: {e}")),
    }
    let pods: Api<Pod> = Api::namespaced(populate.operator.clone(), namespace);
    Ok(wait_running(&pods, name).await)
}

/// The name of the Job's pod once it runs (its volume mounted).
async fn wait_running(pods: &Api<Pod>, job: &str) -> Result<String, String> {
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut last = "no pod yet".to_string();
    loop {
        match pods.list(&params).await {
            Ok(list) => {
                for pod in list.items {
                    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                    match phase.as_deref() {
                        Some("Running") => return Ok(pod.name_any()),
                        Some(phase @ ("Failed" | "Succeeded")) => {
                            return Err(format!(
                                "pod {} of Job {job} ended ({phase})",
                                pod.name_any()
                            ));
                        }
                        phase => {
                            last = format!("pod {}: {}", pod.name_any(), phase.unwrap_or("Pending"))
                        }
                    }
                }
            }
            Err(e) => last = format!("listing the pods of Job {job}: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the pod that fills it did not start within {}s ({last})",
                START_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Ends the Jobs' pods (their deadline cut to a second) once their volumes are done;
/// Kubernetes then removes the Jobs (`ttlSecondsAfterFinished: 0`).
pub async fn finish(client: &Client, jobs: &[(String, String)], log: &RunLog) {
    let cut = json!({"spec": {"activeDeadlineSeconds": 1}});
    for (namespace, name) in jobs {
        let api: Api<Job> = Api::namespaced(client.clone(), namespace);
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&cut))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => log.warn(format!(
                "Job {namespace}/{name}: cutting its deadline: {e}; it ends at its first deadline"
            )),
        }
    }
}

/// The Job whose pod holds `claim` mounted for the agent on a node `affinity` allows. Pure.
pub fn job_spec(
    name: &str,
    restore_uid: &str,
    image: &str,
    claim: &str,
    affinity: &Value,
    deadline_seconds: u64,
) -> Value {
    let labels = BTreeMap::from([(POPULATE_LABEL, restore_uid)]);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": super::placement::hold_pod_spec(image, claim, false, affinity),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_mounts_the_claim_restricted_on_an_agents_node_and_cleans_itself_up() {
        let on_agents =
            crate::pod_volumes::placement::affinity(Some(&["node-a".to_string()].into()), &[]);
        let value = job_spec(
            "arca-fill-r-1",
            "uid-r",
            "arca:1",
            "data-db-1",
            &on_agents,
            4200,
        );
        let job: Job = serde_json::from_value(value.clone()).expect("a Job");
        assert!(job.spec.is_some());
        let spec = &value["spec"];
        assert_eq!(spec["ttlSecondsAfterFinished"], 0, "Kubernetes removes it");
        assert_eq!(spec["backoffLimit"], 0, "one pod, never retried");
        assert_eq!(
            spec["activeDeadlineSeconds"], 4200,
            "it ends even if nobody cuts it"
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["affinity"], on_agents);
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let container = &pod["containers"][0];
        assert_eq!(container["args"], json!(["hold"]));
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert_eq!(pod["volumes"][0]["name"], POD_VOLUME);
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "data-db-1"
        );
        // Writable: the agent writes the data into the volume kubelet mounts for it.
        assert!(
            pod["volumes"][0]["persistentVolumeClaim"]
                .get("readOnly")
                .is_none()
        );
        assert!(container["volumeMounts"][0].get("readOnly").is_none());
        assert_eq!(
            value["metadata"]["labels"][POPULATE_LABEL], "uid-r",
            "the Job names its Restore"
        );
        assert_eq!(pod.get("nodeName"), None, "the scheduler places it");
    }
}
