//! The backup side: one `PodVolumeBackup` per requested volume (a claim mounted by several
//! pods once), then wait for the agents and gather the snapshots for `volumes.json`.

use std::collections::{BTreeMap, BTreeSet};

use arca_api::{PodReference, PodVolumeBackup, PodVolumeBackupSpec, PodVolumePhase};
use arca_store::archive::VolumeSnapshot;
use kube::{Api, ResourceExt, api::PostParams};

use super::{VolumeJob, wait, work_metadata};
use crate::protocol::{self, work_item_name};
use crate::{backup::volumes::VolumeRequest, runlog::RunLog};

/// What the volume part of a backup produced.
#[derive(Debug, Default)]
pub struct VolumeBackups {
    pub snapshots: Vec<VolumeSnapshot>,
    /// (namespace, message) of volumes whose data is not in the backup.
    pub errors: Vec<(String, String)>,
    /// (namespace, message) of volumes backed up with a remark (files that could not be read).
    pub warnings: Vec<(String, String)>,
}

/// The run a backup's work items belong to.
#[derive(Clone, Copy, Debug)]
pub struct BackupRun<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    /// The Backup's `uploaderConfig.compression`, passed on to each work item.
    pub compression: Option<arca_api::VolumeCompression>,
}

/// Which requests are work: a claim mounted by several pods is backed up once, with the
/// first pod; a pod on no node cannot be read.
pub fn plan(requests: Vec<VolumeRequest>) -> (Vec<VolumeRequest>, Vec<(String, String)>) {
    let mut seen_claims = BTreeSet::new();
    let mut work = Vec::new();
    let mut errors = Vec::new();
    for request in requests {
        if let Some(claim) = &request.claim
            && !seen_claims.insert((request.namespace.clone(), claim.clone()))
        {
            continue;
        }
        if request.node.is_none() {
            let message = match request.is_claim_only() {
                true => format!("{}: no node reads it", request.what()),
                false => format!(
                    "pod {}/{} is not scheduled on a node: the data of its volume {} cannot be read",
                    request.namespace, request.pod, request.volume
                ),
            };
            errors.push((request.namespace.clone(), message));
            continue;
        }
        work.push(request);
    }
    (work, errors)
}

/// The path recorded in the snapshot: the claim for a claim (pods come and go), else the
/// pod, so the next backup of the same data finds its parent snapshot.
pub fn snapshot_path(request: &VolumeRequest) -> String {
    match &request.claim {
        Some(claim) => format!("/{}/pvc/{claim}", request.namespace),
        None => format!(
            "/{}/pod/{}/{}",
            request.namespace, request.pod, request.volume
        ),
    }
}

/// Makes `namespace`'s repository ready for the agents: creates it with its own password,
/// or re-keys one that still opens with the installation's shared password (made before
/// each repository had its own). The re-keying check costs a key derivation per key, so it
/// runs once per repository and process, holding the repository alone (no agent opens it
/// while its keys change: the check waits for running backups and prunes of it).
async fn prepare_repository(
    job: &VolumeJob,
    namespace: &str,
    log: &RunLog,
) -> Result<(), arca_volume::VolumeError> {
    let id = job.repository(namespace);
    let repo = arca_volume::VolumeRepository::new(
        job.store.clone(),
        namespace,
        job.own_password(namespace).reveal().to_string(),
    );
    let key = super::repository_key(&job.location_namespace, &job.location, &id.to_string());
    let created = |log: &RunLog| log.info(format!("created the volume repository {id}"));
    if job.locks.keys_checked(&key) {
        // Cheap (a listing): a repository removed from the bucket meanwhile is made again.
        if repo.ensure_initialized().await? {
            created(log);
        }
        return Ok(());
    }
    let _sole = job.locks.exclusive(&key).await;
    if repo.ensure_initialized().await? {
        created(log);
    } else {
        let outcome = repo
            .retire_password(job.password.reveal().to_string())
            .await?;
        if outcome.changed() {
            // At info in the operator's log too (RunLog writes through tracing).
            log.info(format!(
                "re-keyed the volume repository {id}: it opens with its own password, no longer with the shared one"
            ));
        }
    }
    job.locks.set_keys_checked(&key);
    Ok(())
}

/// Backs up the data of `requests` and waits for it.
pub async fn back_up(
    job: &VolumeJob,
    run: BackupRun<'_>,
    requests: Vec<VolumeRequest>,
    log: &RunLog,
) -> VolumeBackups {
    let (work, mut errors) = plan(requests);
    let mut out = VolumeBackups::default();
    let namespaces: BTreeSet<String> = work.iter().map(|r| r.namespace.clone()).collect();
    let mut unusable: BTreeMap<String, String> = BTreeMap::new();
    for ns in &namespaces {
        if let Err(e) = prepare_repository(job, ns, log).await {
            unusable.insert(ns.clone(), e.to_string());
        }
    }
    // Held until every volume is done: no prune runs on these repositories meanwhile.
    let mut guards = Vec::new();
    for ns in &namespaces {
        let key = super::repository_key(
            &job.location_namespace,
            &job.location,
            &job.repository(ns).to_string(),
        );
        guards.push(job.locks.shared(&key).await);
    }
    let api: Api<PodVolumeBackup> = Api::namespaced(job.client.clone(), &job.work_namespace);
    let mut created = BTreeSet::new();
    let mut recorded = BTreeMap::new();
    for request in &work {
        if let Some(problem) = unusable.get(&request.namespace) {
            errors.push((
                request.namespace.clone(),
                format!(
                    "{}: the repository {} cannot be used: {problem}",
                    request.what(),
                    job.repository(&request.namespace)
                ),
            ));
            continue;
        }
        let item = work_item(job, run, request);
        recorded.insert(item.name_any(), Recorded::of(request));
        match api.create(&PostParams::default(), &item).await {
            Ok(_) => {
                created.insert(item.name_any());
            }
            Err(e) => errors.push((
                request.namespace.clone(),
                format!("{}: creating its PodVolumeBackup: {e}", request.what()),
            )),
        }
    }
    if !created.is_empty() {
        log.info(format!(
            "waiting for {} pod volume backups (node agents)",
            created.len()
        ));
        let selector = format!("{}={}", protocol::BACKUP_UID, run.uid);
        match wait::until_done(
            &api,
            &selector,
            &created,
            job,
            |p: &PodVolumeBackup| {
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
            Ok(items) => gather(job, items, &recorded, &mut out, &mut errors, log),
            Err(e) => errors.push((String::new(), format!("reading the PodVolumeBackups: {e}"))),
        }
    }
    drop(guards);
    out.errors = errors;
    out
}

fn work_item(job: &VolumeJob, run: BackupRun<'_>, request: &VolumeRequest) -> PodVolumeBackup {
    let name = match (&request.claim, request.is_claim_only()) {
        (Some(claim), true) => work_item_name(run.name, &[&request.namespace, "claim", claim]),
        _ => work_item_name(
            run.name,
            &[&request.namespace, &request.pod, &request.volume],
        ),
    };
    // The data mover's pod is read in place of the pod volume the data is recorded as.
    let (node, pod, volume) = match &request.read_from {
        Some(from) => (
            from.node.clone(),
            PodReference {
                namespace: from.namespace.clone(),
                name: from.pod.clone(),
                uid: from.pod_uid.clone(),
            },
            from.volume.clone(),
        ),
        None => (
            request.node.clone().unwrap_or_default(),
            PodReference {
                namespace: request.namespace.clone(),
                name: request.pod.clone(),
                uid: request.pod_uid.clone(),
            },
            request.volume.clone(),
        ),
    };
    let mut tags = vec![
        format!("backup={}", run.name),
        format!("backup-uid={}", run.uid),
        format!("namespace={}", request.namespace),
    ];
    match (&request.claim, request.is_claim_only()) {
        (Some(claim), true) => tags.push(format!("claim={claim}")),
        _ => tags.extend([
            format!("pod={}", request.pod),
            format!("volume={}", request.volume),
        ]),
    }
    if request.read_from.is_some() {
        tags.push("source=csi-snapshot".into());
    }
    let mut item = PodVolumeBackup::new(
        &name,
        PodVolumeBackupSpec {
            node,
            pod,
            volume,
            backup_storage_location: job.location.clone(),
            location_namespace: job.location_namespace.clone(),
            repo_identifier: job.repository(&request.namespace).to_string(),
            snapshot_path: snapshot_path(request),
            tags,
            uploader_type: "restic-format".into(),
            compression: run.compression,
        },
    );
    item.metadata = work_metadata(
        job,
        name,
        (protocol::BACKUP_NAME, protocol::BACKUP_UID),
        (run.name, run.uid),
    );
    item
}

/// The pod volume a work item's data is recorded as (not the data mover's pod it may read).
#[derive(Debug)]
struct Recorded {
    namespace: String,
    pod: String,
    volume: String,
    claim: Option<String>,
}

impl Recorded {
    fn of(request: &VolumeRequest) -> Self {
        Self {
            namespace: request.namespace.clone(),
            pod: request.pod.clone(),
            volume: request.volume.clone(),
            claim: request.claim.clone(),
        }
    }
}

fn gather(
    job: &VolumeJob,
    items: Vec<PodVolumeBackup>,
    recorded: &BTreeMap<String, Recorded>,
    out: &mut VolumeBackups,
    errors: &mut Vec<(String, String)>,
    log: &RunLog,
) {
    for item in items {
        let spec = &item.spec;
        let status = item.status.clone().unwrap_or_default();
        let Some(as_) = recorded.get(&item.name_any()) else {
            continue;
        };
        let what = match &as_.claim {
            Some(claim) if spec.pod.namespace != as_.namespace => format!(
                "claim {}/{claim} (its CSI snapshot, read through pod {}/{})",
                as_.namespace, spec.pod.namespace, spec.pod.name
            ),
            _ => format!("pod {}/{} volume {}", as_.namespace, as_.pod, as_.volume),
        };
        match (status.phase.unwrap_or_default(), status.snapshot_id) {
            (PodVolumePhase::Completed, Some(id)) => {
                if let Some(remark) = &status.message {
                    out.warnings
                        .push((as_.namespace.clone(), format!("{what}: {remark}")));
                }
                let total = status.progress.map(|p| p.total_bytes).unwrap_or_default();
                let uploaded = status.bytes_uploaded.unwrap_or_default();
                log.info(format!(
                    "{what}: snapshot {id}, {total} bytes, {uploaded} uploaded"
                ));
                out.snapshots.push(VolumeSnapshot {
                    namespace: as_.namespace.clone(),
                    pod: as_.pod.clone(),
                    volume: as_.volume.clone(),
                    claim: as_.claim.clone(),
                    repository: spec.repo_identifier.clone(),
                    snapshot_id: id,
                    snapshot_path: spec.snapshot_path.clone(),
                    total_bytes: total,
                    bytes_uploaded: uploaded,
                });
            }
            (phase, _) => errors.push((
                as_.namespace.clone(),
                wait::not_done(
                    &what,
                    phase,
                    status.message,
                    job.timeout,
                    &format!("node {}", spec.node),
                ),
            )),
        }
    }
    out.snapshots
        .sort_by(|a, b| (&a.namespace, &a.pod, &a.volume).cmp(&(&b.namespace, &b.pod, &b.volume)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job on a directory store, with a client that is never called.
    fn job(dir: &std::path::Path, tenant_folder: bool) -> VolumeJob {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let store = arca_store::FsStore::new(dir, "bucket", "prefix").expect("store");
        VolumeJob {
            client: kube::Client::new(service, "default"),
            work_namespace: "arca-system".into(),
            location: "default".into(),
            location_namespace: "arca-system".into(),
            tenant_folder,
            velero_restic: false,
            store: std::sync::Arc::new(store),
            password: crate::protocol::RepositoryPassword::new("installation secret".into()),
            timeout: std::time::Duration::from_secs(60),
            pickup_warning: std::time::Duration::from_secs(60),
            locks: Default::default(),
            progress: Default::default(),
            cancel: Default::default(),
        }
    }

    fn repo(job: &VolumeJob, password: &str) -> arca_volume::VolumeRepository {
        arca_volume::VolumeRepository::new(job.store.clone(), "shop", password.into())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_new_repository_is_made_with_its_own_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        for tenant_folder in [false, true] {
            let job = job(&dir.path().join(tenant_folder.to_string()), tenant_folder);
            prepare_repository(&job, "shop", &RunLog::detached("t"))
                .await
                .expect("prepared");
            let own = job.own_password("shop");
            assert_ne!(own, job.password);
            repo(&job, own.reveal()).snapshots().await.expect("opens");
            assert!(
                repo(&job, job.password.reveal()).snapshots().await.is_err(),
                "the shared password opens a new repository"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_shared_password_repository_is_rekeyed_once_per_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = job(dir.path(), false);
        let shared = job.password.reveal().to_string();
        assert!(repo(&job, &shared).ensure_initialized().await.expect("old"));
        let key = super::super::repository_key("arca-system", "default", "volumes/shop/");
        assert!(!job.locks.keys_checked(&key));

        prepare_repository(&job, "shop", &RunLog::detached("t"))
            .await
            .expect("re-keyed");
        repo(&job, job.own_password("shop").reveal())
            .snapshots()
            .await
            .expect("its own password opens it");
        let err = repo(&job, &shared)
            .snapshots()
            .await
            .expect_err("the shared password no longer opens it");
        assert!(
            matches!(err, arca_volume::VolumeError::WrongPassword { .. }),
            "{err:?}"
        );
        assert!(job.locks.keys_checked(&key), "checked once in this process");
        prepare_repository(&job, "shop", &RunLog::detached("t"))
            .await
            .expect("again");
    }

    fn request(pod: &str, volume: &str, claim: Option<&str>, node: Option<&str>) -> VolumeRequest {
        VolumeRequest {
            namespace: "shop".into(),
            pod: pod.into(),
            pod_uid: format!("uid-{pod}"),
            node: node.map(str::to_string),
            volume: volume.into(),
            claim: claim.map(str::to_string),
            requested: true,
            facts: Default::default(),
            read_from: None,
        }
    }

    #[test]
    fn a_claim_is_backed_up_once_and_unscheduled_pods_are_errors() {
        let (work, errors) = plan(vec![
            request("a", "data", Some("db"), Some("n1")),
            request("b", "data", Some("db"), Some("n2")),
            request("b", "scratch", None, Some("n2")),
            request("c", "scratch", None, None),
        ]);
        let picked: Vec<(&str, &str)> = work
            .iter()
            .map(|r| (r.pod.as_str(), r.volume.as_str()))
            .collect();
        assert_eq!(picked, vec![("a", "data"), ("b", "scratch")]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].1.contains("shop/c is not scheduled"),
            "{errors:?}"
        );
    }

    #[tokio::test]
    async fn the_work_item_carries_the_backups_compression_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = job(dir.path(), false);
        let request = request("a", "data", None, Some("node-1"));
        for compression in [None, Some(arca_api::VolumeCompression::Off)] {
            let run = BackupRun {
                name: "nightly",
                uid: "uid-1",
                compression,
            };
            let item = work_item(&job, run, &request);
            assert_eq!(item.spec.compression, compression);
            assert_eq!(item.spec.node, "node-1");
        }
    }

    #[tokio::test]
    async fn a_moved_snapshot_is_read_from_the_data_movers_pod_and_recorded_as_the_claims() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = job(dir.path(), false);
        let mut moved = request("db-0", "data", Some("data-db-0"), Some("node-1"));
        moved.read_from = Some(crate::backup::volumes::ReadFrom {
            namespace: "arca-system".into(),
            pod: "arca-move-nightly-1".into(),
            pod_uid: "uid-mover".into(),
            node: "node-2".into(),
            volume: "data".into(),
        });
        let run = BackupRun {
            name: "nightly",
            uid: "uid-1",
            compression: None,
        };
        let item = work_item(&job, run, &moved);
        let spec = &item.spec;
        assert_eq!(
            (spec.pod.namespace.as_str(), spec.pod.name.as_str()),
            ("arca-system", "arca-move-nightly-1")
        );
        assert_eq!(spec.pod.uid, "uid-mover");
        assert_eq!(spec.node, "node-2");
        assert_eq!(spec.volume, "data");
        // The data belongs to the claim's namespace: its repository, its path, its tags.
        assert_eq!(spec.repo_identifier, "volumes/shop/");
        assert_eq!(spec.snapshot_path, "/shop/pvc/data-db-0");
        assert!(spec.tags.contains(&"namespace=shop".to_string()));
        assert!(spec.tags.contains(&"pod=db-0".to_string()));
        assert!(spec.tags.contains(&"source=csi-snapshot".to_string()));
        let as_ = Recorded::of(&moved);
        assert_eq!((as_.namespace.as_str(), as_.pod.as_str()), ("shop", "db-0"));
        assert_eq!(as_.claim.as_deref(), Some("data-db-0"));
    }

    #[tokio::test]
    async fn a_claim_no_pod_mounts_gets_its_own_work_item_and_is_recorded_without_a_pod() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = job(dir.path(), false);
        let claim_only = |claim: &str| {
            let mut r = request("", "", Some(claim), Some("node-2"));
            r.pod_uid = String::new();
            r.read_from = Some(crate::backup::volumes::ReadFrom {
                namespace: "arca-system".into(),
                pod: format!("arca-move-{claim}"),
                pod_uid: "uid-mover".into(),
                node: "node-2".into(),
                volume: "data".into(),
            });
            r
        };
        let run = BackupRun {
            name: "nightly",
            uid: "uid-1",
            compression: None,
        };
        let (a, b) = (claim_only("data-db-1"), claim_only("data-db-2"));
        assert!(a.is_claim_only());
        assert_eq!(a.what(), "claim shop/data-db-1");
        let (first, second) = (work_item(&job, run, &a), work_item(&job, run, &b));
        assert_ne!(first.name_any(), second.name_any(), "two claims, two items");
        assert_eq!(first.spec.snapshot_path, "/shop/pvc/data-db-1");
        assert!(first.spec.tags.contains(&"claim=data-db-1".to_string()));
        assert!(!first.spec.tags.iter().any(|t| t.starts_with("pod=")));
        let as_ = Recorded::of(&a);
        assert!(as_.pod.is_empty() && as_.volume.is_empty());
        assert_eq!(as_.claim.as_deref(), Some("data-db-1"));
    }

    #[test]
    fn snapshot_paths_follow_the_claim_or_the_pod() {
        assert_eq!(
            snapshot_path(&request("a", "data", Some("db"), None)),
            "/shop/pvc/db"
        );
        assert_eq!(
            snapshot_path(&request("a", "scratch", None, None)),
            "/shop/pod/a/scratch"
        );
    }
}
