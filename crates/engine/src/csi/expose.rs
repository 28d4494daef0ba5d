//! The data mover's view of a snapshot (`snapshotMoveData`): the snapshot made readable as
//! files on a node, in the operator's namespace, so that the node agent copies them into the
//! namespace's repository like any pod volume:
//! - a pre-provisioned VolumeSnapshotContent naming the snapshot's handle (`Retain`: deleting
//!   it later leaves the snapshot) and a VolumeSnapshot bound to it;
//! - a claim provisioned from it (the original claim's storage class and access modes, at
//!   least the snapshot's size);
//! - a pod of Arca's image (`arca hold`: it does nothing) mounting the claim read-only, on
//!   the node of the pod that mounts the original claim (a node-local snapshot is there, and
//!   that node has an agent); for a claim no pod mounts, on a node with an agent within the
//!   original volume's topology ([`crate::pod_volumes::placement`]); tolerating any taint.
//!
//! Everything is labelled with the backup and removed by [`clean_up`], whatever happened.
//! Velero's data mover exposes a snapshot the same way (a backup pod and claim in its own
//! namespace).

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};

use arca_store::archive::CsiSnapshot;

use super::{VolumeSnapshot, VolumeSnapshotContent};
use crate::runlog::RunLog;

/// The label every object of a data mover exposure carries (its value: the backup's uid).
pub const DATA_MOVER_LABEL: &str = "arca.dev/data-mover-backup-uid";
/// The volume's name in the pod, and where the pod mounts it.
pub const POD_VOLUME: &str = "data";
/// How often the pod's state is read while it starts.
const POLL: Duration = Duration::from_millis(500);

/// Where and for whom a snapshot is exposed.
#[derive(Clone, Copy)]
pub(crate) struct ExposeJob<'a> {
    /// The operator's own client: everything here is the operator's.
    pub operator: &'a Client,
    /// The operator's namespace.
    pub namespace: &'a str,
    /// Arca's image, for the pod.
    pub image: &'a str,
    /// The backup's labels (name, namespace, uid) and uid.
    pub labels: &'a BTreeMap<String, String>,
    pub backup_uid: &'a str,
    /// How long the claim may take to be provisioned and the pod to start.
    pub timeout: Duration,
    /// The run's cancel token: a canceled run stops waiting for the pod.
    pub cancel: &'a tokio_util::sync::CancellationToken,
}

/// A snapshot exposed: the pod the node agent reads the volume of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    /// The name of every object made (content, VolumeSnapshot, claim, pod).
    pub name: String,
    pub pod_uid: String,
    pub node: String,
}

/// The name of the objects exposing `record` for backup `backup` (uid `uid`).
pub fn exposure_name(backup: &str, uid: &str, record: &CsiSnapshot) -> String {
    super::object_name(
        "arca-move",
        backup,
        &format!("{uid}/{}/{}", record.namespace, record.claim),
    )
}

/// Exposes `record` (a ready snapshot of `original`, the claim as the cluster has it) on a
/// node `affinity` (a pod's) allows; on an error, whatever was made is removed before it
/// returns.
pub(crate) async fn expose(
    job: ExposeJob<'_>,
    name: &str,
    record: &CsiSnapshot,
    original: &PersistentVolumeClaim,
    affinity: &Value,
    log: &RunLog,
) -> Result<Exposure, String> {
    match make(job, name, record, original, affinity).await {
        Ok(exposure) => Ok(exposure),
        Err(why) => {
            clean_up(job.operator, job.namespace, name, log).await;
            Err(why)
        }
    }
}

async fn make(
    job: ExposeJob<'_>,
    name: &str,
    record: &CsiSnapshot,
    original: &PersistentVolumeClaim,
    affinity: &Value,
) -> Result<Exposure, String> {
    let mut labels = job.labels.clone();
    labels.insert(
        DATA_MOVER_LABEL.to_string(),
        super::backup::label_value(job.backup_uid),
    );
    let contents: Api<VolumeSnapshotContent> = Api::all(job.operator.clone());
    // Retain: the backup's own content keeps owning the snapshot until the data is moved.
    let content = super::pre_provisioned_content(name, job.namespace, record, &labels);
    create(&contents, &content).await?;
    let snapshots: Api<VolumeSnapshot> = Api::namespaced(job.operator.clone(), job.namespace);
    create(&snapshots, &super::bound_snapshot(name, &labels)).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(job.operator.clone(), job.namespace);
    let claim: PersistentVolumeClaim =
        serde_json::from_value(claim_spec(name, &labels, original, record))
            .map_err(|e| format!("the data mover's claim {name}: {e}"))?;
    create(&claims, &claim).await?;
    let pods: Api<Pod> = Api::namespaced(job.operator.clone(), job.namespace);
    let pod: Pod = serde_json::from_value(pod_spec(name, &labels, job.image, affinity))
        .map_err(|e| format!("the data mover's pod {name}: {e}"))?;
    create(&pods, &pod).await?;
    wait_running(&pods, &claims, name, (job.timeout, job.cancel)).await
}

async fn create<K>(api: &Api<K>, object: &K) -> Result<(), String>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(format!(
            "creating {} {}: {e}",
            K::kind(&K::DynamicType::default()),
            object.name_any()
        )),
    }
}

/// The claim provisioned from the snapshot: the original's storage class, access modes and
/// volume mode, at least as large as the snapshot. Pure.
pub fn claim_spec(
    name: &str,
    labels: &BTreeMap<String, String>,
    original: &PersistentVolumeClaim,
    record: &CsiSnapshot,
) -> Value {
    let spec = original.spec.clone().unwrap_or_default();
    let mut claim = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "resources": {"requests": {
                "storage": spec.resources.as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .map(|q| q.0.clone())
                    .unwrap_or_else(|| "1Gi".into()),
            }},
        },
    });
    if let Some(class) = spec.storage_class_name {
        claim["spec"]["storageClassName"] = Value::from(class);
    }
    if let Some(mode) = spec.volume_mode {
        claim["spec"]["volumeMode"] = Value::from(mode);
    }
    super::restore::point_at_snapshot(&mut claim, name, record.restore_size);
    claim
}

/// The pod holding the claim mounted read-only where `affinity` allows, doing nothing. Pure.
pub fn pod_spec(
    name: &str,
    labels: &BTreeMap<String, String>,
    image: &str,
    affinity: &Value,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": crate::pod_volumes::placement::hold_pod_spec(image, name, true, affinity),
    })
}

/// The pod once running on its node (the volume mounted); at the timeout, an error saying
/// where it stood.
async fn wait_running(
    pods: &Api<Pod>,
    claims: &Api<PersistentVolumeClaim>,
    name: &str,
    (timeout, cancel): (Duration, &tokio_util::sync::CancellationToken),
) -> Result<Exposure, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cancel.is_cancelled() {
            return Err("the backup was canceled".into());
        }
        let pod = pods
            .get_opt(name)
            .await
            .map_err(|e| format!("reading pod {name}: {e}"))?
            .ok_or_else(|| format!("pod {name} was deleted by someone else"))?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        match (phase.as_deref(), node) {
            (Some("Running"), Some(node)) => {
                return Ok(Exposure {
                    name: name.to_string(),
                    pod_uid: pod.uid().unwrap_or_default(),
                    node,
                });
            }
            (Some(phase @ ("Failed" | "Succeeded")), _) => {
                return Err(format!(
                    "pod {name} ended ({phase}) before its volume was read"
                ));
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let claim_phase = claims
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.status)
                .and_then(|s| s.phase)
                .unwrap_or_else(|| "unknown".into());
            return Err(format!(
                "the snapshot's data was not mounted within {}s (claim {name}: {claim_phase}, pod {name}: {})",
                timeout.as_secs(),
                phase.as_deref().unwrap_or("not scheduled")
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Removes everything [`expose`] made under `name` (what is gone already is fine): the pod,
/// the claim (its volume goes with it), the VolumeSnapshot and the content (`Retain`: the
/// snapshot itself stays). Problems are logged, never fatal: the objects carry the backup's
/// labels.
pub(crate) async fn clean_up(operator: &Client, namespace: &str, name: &str, log: &RunLog) {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let pods: Api<Pod> = Api::namespaced(operator.clone(), namespace);
    gone(pods.delete(name, &now).await, "pod", name, log);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(operator.clone(), namespace);
    gone(
        claims.delete(name, &DeleteParams::default()).await,
        "claim",
        name,
        log,
    );
    let snapshots: Api<VolumeSnapshot> = Api::namespaced(operator.clone(), namespace);
    gone(
        snapshots.delete(name, &DeleteParams::default()).await,
        "VolumeSnapshot",
        name,
        log,
    );
    let contents: Api<VolumeSnapshotContent> = Api::all(operator.clone());
    gone(
        contents.delete(name, &DeleteParams::default()).await,
        "VolumeSnapshotContent",
        name,
        log,
    );
}

/// Removes what the data mover of backup `backup_uid` left in `namespace` (an operator that
/// stopped in the middle of a move leaves its exposures): every pod labelled with it, and the
/// claim, VolumeSnapshot and content of the same name.
pub async fn clean_up_leftovers(
    operator: &Client,
    namespace: &str,
    backup_uid: &str,
    log: &RunLog,
) -> Result<usize, kube::Error> {
    let selector = format!(
        "{DATA_MOVER_LABEL}={}",
        super::backup::label_value(backup_uid)
    );
    let params = kube::api::ListParams::default().labels(&selector);
    let mut names = std::collections::BTreeSet::new();
    let pods: Api<Pod> = Api::namespaced(operator.clone(), namespace);
    names.extend(pods.list(&params).await?.items.iter().map(|p| p.name_any()));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(operator.clone(), namespace);
    names.extend(
        claims
            .list(&params)
            .await?
            .items
            .iter()
            .map(|c| c.name_any()),
    );
    // A cluster without the snapshot API (its CRDs not installed) has no contents.
    let contents: Api<VolumeSnapshotContent> = Api::all(operator.clone());
    match contents.list(&params).await {
        Ok(list) => names.extend(list.items.iter().map(|c| c.name_any())),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    for name in &names {
        clean_up(operator, namespace, name, log).await;
    }
    Ok(names.len())
}

fn gone<T>(result: Result<T, kube::Error>, kind: &str, name: &str, log: &RunLog) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => log.warn(format!("data mover: removing {kind} {name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CsiSnapshot {
        CsiSnapshot {
            namespace: "shop".into(),
            claim: "data-db-0".into(),
            volume: "pvc-1".into(),
            driver: "hostpath.csi.arca.dev".into(),
            snapshot_class: "csi-hostpath-snapclass".into(),
            content: "snapcontent-1".into(),
            snapshot_handle: "snap-1".into(),
            restore_size: Some(8 * 1024 * 1024),
        }
    }

    fn original() -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data-db-0", "namespace": "shop"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "csi-hostpath",
                "volumeName": "pvc-1",
                "resources": {"requests": {"storage": "1Mi"}},
            },
        }))
        .expect("claim")
    }

    #[test]
    fn the_claim_is_provisioned_from_the_snapshot_like_the_original() {
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let claim = claim_spec("arca-move-x", &labels, &original(), &record());
        assert_eq!(claim["metadata"]["name"], "arca-move-x");
        assert_eq!(claim["metadata"]["labels"]["a"], "b");
        assert!(claim["metadata"].get("namespace").is_none());
        assert_eq!(claim["spec"]["storageClassName"], "csi-hostpath");
        assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(claim["spec"]["dataSource"]["name"], "arca-move-x");
        assert_eq!(claim["spec"]["dataSource"]["kind"], "VolumeSnapshot");
        assert!(claim["spec"].get("volumeName").is_none());
        // Never smaller than the snapshot.
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "8388608");
        let parsed: PersistentVolumeClaim = serde_json::from_value(claim).expect("a claim");
        assert!(parsed.spec.is_some());
    }

    #[test]
    fn the_pod_holds_the_claim_read_only_on_the_node_with_nothing_else() {
        let labels = BTreeMap::new();
        let on_node =
            crate::pod_volumes::placement::affinity(Some(&["node-a".to_string()].into()), &[]);
        let pod = pod_spec("arca-move-x", &labels, "arca:1", &on_node);
        let spec = &pod["spec"];
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchFields"][0]["values"],
            json!(["node-a"])
        );
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        let container = &spec["containers"][0];
        assert_eq!(container["args"], json!(["hold"]));
        assert_eq!(container["image"], "arca:1");
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(container["volumeMounts"][0]["readOnly"], true);
        assert_eq!(
            spec["volumes"][0]["persistentVolumeClaim"]["readOnly"],
            true
        );
        assert_eq!(
            spec["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "arca-move-x"
        );
        let parsed: Pod = serde_json::from_value(pod).expect("a pod");
        assert!(parsed.spec.is_some());
    }

    #[test]
    fn exposure_names_differ_per_claim_and_backup() {
        let a = exposure_name("nightly", "uid-1", &record());
        let mut other = record();
        other.claim = "data-db-1".into();
        assert_ne!(a, exposure_name("nightly", "uid-1", &other));
        assert_ne!(a, exposure_name("nightly", "uid-2", &record()));
        assert!(a.starts_with("arca-move-nightly-") && a.len() <= 63, "{a}");
    }
}
