//! Taking a backup's CSI snapshots: for each claim chosen ([`super::choose`]), a
//! VolumeSnapshot in the claim's namespace (made with the run's identity, so a tenant's RBAC
//! decides whether it may snapshot its claims), waited on until ready within
//! `csiSnapshotTimeout`; then its content is kept (`deletionPolicy: Retain`, labelled with the
//! backup) and the VolumeSnapshot removed. A snapshot that fails or times out is deleted with
//! its content: nothing is left behind but an error naming the claim.

use std::{collections::BTreeMap, time::Duration};

use arca_store::archive::CsiSnapshot;
use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};

use super::{
    BACKUP_NAME_LABEL, BACKUP_NAMESPACE_LABEL, BACKUP_UID_LABEL, SnapshotClass, VolumeSnapshot,
    VolumeSnapshotContent, VolumeSnapshotSource, VolumeSnapshotSpec, choose::Claim, object_name,
    snapshot_class_resource,
};
use crate::runlog::RunLog;

/// Snapshots taken at once.
const CONCURRENCY: usize = 4;
/// How often a VolumeSnapshot's readiness is read.
const POLL: Duration = Duration::from_millis(500);
/// `csiSnapshotTimeout` when unset (Velero's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Who takes the snapshots, for which backup.
#[derive(Clone, Copy)]
pub(crate) struct SnapshotJob<'a> {
    /// The run's client: VolumeSnapshots in the claims' namespaces.
    pub run_client: &'a Client,
    /// The operator's own client: the cluster-scoped classes and contents.
    pub operator: &'a Client,
    pub backup: &'a str,
    pub backup_namespace: &'a str,
    pub backup_uid: &'a str,
    pub timeout: Duration,
    /// The run's cancel token: a canceled run stops waiting for its snapshots (and deletes
    /// them, as it deletes one that is never ready).
    pub cancel: &'a tokio_util::sync::CancellationToken,
}

/// What the snapshots gave.
#[derive(Debug, Default)]
pub struct SnapshotOutcome {
    /// Ready and kept, one per claim.
    pub snapshots: Vec<CsiSnapshot>,
    /// VolumeSnapshots created.
    pub attempted: u32,
    /// (namespace, message) of each claim whose snapshot failed.
    pub errors: Vec<(String, String)>,
}

/// Every VolumeSnapshotClass of the cluster; none when the snapshot API is not served.
pub async fn list_classes(operator: &Client) -> Result<Vec<SnapshotClass>, String> {
    let api: Api<kube::api::DynamicObject> =
        Api::all_with(operator.clone(), &snapshot_class_resource());
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
        Err(e) => Err(format!("listing VolumeSnapshotClasses: {e}")),
    }
}

/// Takes a snapshot of each `(claim, class)`, a few at a time.
pub(crate) async fn take(
    job: SnapshotJob<'_>,
    chosen: Vec<(Claim, String)>,
    log: &RunLog,
) -> SnapshotOutcome {
    let mut outcome = SnapshotOutcome {
        attempted: chosen.len() as u32,
        ..SnapshotOutcome::default()
    };
    let mut runs = futures::stream::iter(chosen)
        .map(|(claim, class)| async move {
            let result = take_one(job, &claim, &class, log).await;
            (claim, result)
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((claim, result)) = runs.next().await {
        match result {
            Ok(snapshot) => {
                log.info(format!(
                    "claim {}/{}: CSI snapshot {} ready (content {})",
                    claim.namespace, claim.name, snapshot.snapshot_handle, snapshot.content
                ));
                outcome.snapshots.push(snapshot);
            }
            Err(why) => outcome.errors.push((
                claim.namespace.clone(),
                format!(
                    "claim {}/{}: its CSI snapshot failed: {why}",
                    claim.namespace, claim.name
                ),
            )),
        }
    }
    outcome
        .snapshots
        .sort_by(|a, b| (&a.namespace, &a.claim).cmp(&(&b.namespace, &b.claim)));
    outcome
}

async fn take_one(
    job: SnapshotJob<'_>,
    claim: &Claim,
    class: &str,
    log: &RunLog,
) -> Result<CsiSnapshot, String> {
    let snapshots: Api<VolumeSnapshot> = Api::namespaced(job.run_client.clone(), &claim.namespace);
    let name = object_name(
        "arca",
        job.backup,
        &format!("{}/{}/{}", job.backup_uid, claim.namespace, claim.name),
    );
    let mut request = VolumeSnapshot::new(
        &name,
        VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(claim.name.clone()),
                volume_snapshot_content_name: None,
            },
            volume_snapshot_class_name: Some(class.to_string()),
        },
    );
    request.metadata.labels = Some(backup_labels(job));
    match snapshots.create(&PostParams::default(), &request).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(format!("creating VolumeSnapshot {name}: {e}")),
    }
    let ready = match wait_ready(&snapshots, &name, (job.timeout, job.cancel)).await {
        Ok(ready) => ready,
        Err(why) => {
            discard(job, &snapshots, &name, log).await;
            return Err(why);
        }
    };
    match keep(job, claim, class, &snapshots, &ready).await {
        Ok(kept) => Ok(kept),
        Err(why) => {
            discard(job, &snapshots, &name, log).await;
            Err(why)
        }
    }
}

/// The VolumeSnapshot once ready; an error with the controllers' last word at the timeout,
/// or as soon as the run is canceled.
async fn wait_ready(
    snapshots: &Api<VolumeSnapshot>,
    name: &str,
    (timeout, cancel): (Duration, &tokio_util::sync::CancellationToken),
) -> Result<VolumeSnapshot, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        if cancel.is_cancelled() {
            return Err(format!(
                "VolumeSnapshot {name}: the backup was canceled before it was ready; it was deleted"
            ));
        }
        match snapshots.get_opt(name).await {
            Ok(Some(snapshot)) => {
                let status = snapshot.status.clone().unwrap_or_default();
                if status.ready_to_use == Some(true)
                    && status.bound_volume_snapshot_content_name.is_some()
                {
                    return Ok(snapshot);
                }
                last_error = status.error.and_then(|e| e.message).or(last_error);
            }
            Ok(None) => return Err(format!("VolumeSnapshot {name} was deleted by someone else")),
            Err(e) => last_error = Some(format!("reading VolumeSnapshot {name}: {e}")),
        }
        if tokio::time::Instant::now() >= deadline {
            let said = last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(format!(
                "VolumeSnapshot {name} was not ready after csiSnapshotTimeout ({}s){said}; it was deleted",
                timeout.as_secs()
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

/// Keeps a ready snapshot's content for the backup and removes the VolumeSnapshot.
async fn keep(
    job: SnapshotJob<'_>,
    claim: &Claim,
    class: &str,
    snapshots: &Api<VolumeSnapshot>,
    ready: &VolumeSnapshot,
) -> Result<CsiSnapshot, String> {
    let name = ready.name_any();
    let content_name = ready
        .status
        .as_ref()
        .and_then(|s| s.bound_volume_snapshot_content_name.clone())
        .unwrap_or_default();
    let contents: Api<VolumeSnapshotContent> = Api::all(job.operator.clone());
    let patch = serde_json::json!({
        "metadata": {"labels": backup_labels(job)},
        "spec": {"deletionPolicy": "Retain"},
    });
    let content = contents
        .patch(
            &content_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| {
            format!("keeping VolumeSnapshotContent {content_name} (deletionPolicy Retain): {e}")
        })?;
    let status = content.status.clone().unwrap_or_default();
    let handle = status
        .snapshot_handle
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("VolumeSnapshotContent {content_name} has no snapshotHandle"))?;
    // The content is Retain now: removing its VolumeSnapshot leaves it and the snapshot.
    snapshots
        .delete(&name, &DeleteParams::default())
        .await
        .map_err(|e| format!("removing VolumeSnapshot {name} once its content was kept: {e}"))?;
    Ok(CsiSnapshot {
        namespace: claim.namespace.clone(),
        claim: claim.name.clone(),
        volume: claim.volume.clone().unwrap_or_default(),
        driver: content.spec.driver.clone(),
        snapshot_class: class.to_string(),
        content: content_name,
        snapshot_handle: handle,
        restore_size: status.restore_size.and_then(|s| u64::try_from(s).ok()),
    })
}

/// Removes a snapshot that will not be used, with its content and the storage system's
/// snapshot (whatever its class's deletion policy).
async fn discard(job: SnapshotJob<'_>, snapshots: &Api<VolumeSnapshot>, name: &str, log: &RunLog) {
    let bound = snapshots
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.status)
        .and_then(|s| s.bound_volume_snapshot_content_name);
    if let Some(content) = bound {
        let contents: Api<VolumeSnapshotContent> = Api::all(job.operator.clone());
        let delete = serde_json::json!({"spec": {"deletionPolicy": "Delete"}});
        if let Err(e) = contents
            .patch(&content, &PatchParams::default(), &Patch::Merge(&delete))
            .await
        {
            log.warn(format!(
                "VolumeSnapshotContent {content}: setting deletionPolicy Delete: {e}"
            ));
        }
    }
    match snapshots.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => log.warn(format!("removing VolumeSnapshot {name}: {e}")),
    }
}

fn backup_labels(job: SnapshotJob<'_>) -> BTreeMap<String, String> {
    labels_of(job.backup, job.backup_namespace, job.backup_uid)
}

/// The labels tying an object to backup `namespace/name` (uid `uid`).
pub(crate) fn labels_of(name: &str, namespace: &str, uid: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (BACKUP_NAME_LABEL.to_string(), label_value(name)),
        (BACKUP_NAMESPACE_LABEL.to_string(), label_value(namespace)),
        (BACKUP_UID_LABEL.to_string(), label_value(uid)),
    ])
}

/// Object names can be longer than a label value (63): such a value is cut, and only ever
/// compared with the same cut.
pub fn label_value(value: &str) -> String {
    value
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.', '_'])
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose apiserver answers every request with a VolumeSnapshot never ready;
    /// the task returns how many requests it saw.
    fn never_ready() -> (Client, tokio::task::JoinHandle<usize>) {
        let (service, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let server = tokio::spawn(async move {
            let body = r#"{"apiVersion":"snapshot.storage.k8s.io/v1","kind":"VolumeSnapshot","metadata":{"name":"s","namespace":"n"},"spec":{"source":{"persistentVolumeClaimName":"c"}},"status":{"readyToUse":false}}"#;
            let mut seen = 0;
            while let Some((_request, respond)) = handle.next_request().await {
                seen += 1;
                let response = http::Response::builder()
                    .status(200)
                    .body(kube::client::Body::from(body.as_bytes().to_vec()))
                    .expect("response");
                respond.send_response(response);
            }
            seen
        });
        (Client::new(service, "default"), server)
    }

    #[tokio::test(start_paused = true)]
    async fn a_canceled_run_stops_waiting_for_a_snapshot_at_once() {
        let (client, server) = never_ready();
        let snapshots: Api<VolumeSnapshot> = Api::namespaced(client, "n");
        let cancel = tokio_util::sync::CancellationToken::new();
        let canceler = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                cancel.cancel();
            })
        };
        let started = tokio::time::Instant::now();
        let timeout = Duration::from_secs(3600);
        let result = wait_ready(&snapshots, "s", (timeout, &cancel)).await;
        let waited = started.elapsed();
        let Err(why) = result else {
            panic!("a never-ready snapshot is never Ok");
        };
        assert!(why.contains("the backup was canceled"), "{why}");
        assert!(
            waited < Duration::from_secs(4),
            "stopped at the cancel: {waited:?}"
        );
        canceler.await.expect("canceler");
        drop(snapshots);
        assert!(server.await.expect("server") >= 2, "it polled meanwhile");
    }
}
