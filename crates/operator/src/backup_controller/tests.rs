//! The Backup controller's reconcile, scenario by scenario, against a scripted apiserver
//! (crate::fixtures): the claim race, the stale cache, and each status transition.

use std::sync::Arc;

use arca_api::{
    AccessMode, Backup, BackupPhase, BackupSpec, BackupStatus, BackupStorageLocation,
    BackupStorageLocationSpec, Provider, labels,
};
use http::Method;
use kube::runtime::controller::Action;
use serde_json::json;

use super::reconcile;
use crate::{
    context::Ownership,
    fixtures::{Expect, OPERATOR_NS, context, event_created, events_path, object},
    metrics::OutcomeLabels,
};

const STATUS: &str = "/apis/arca.dev/v1alpha1/namespaces/arca-system/backups/b1/status";

fn backup(spec: BackupSpec, status: Option<BackupStatus>) -> Arc<Backup> {
    let mut backup = Backup::new("b1", spec);
    backup.metadata.namespace = Some(OPERATOR_NS.into());
    backup.metadata.uid = Some("uid-b1".into());
    backup.metadata.resource_version = Some("41".into());
    backup.metadata.generation = Some(1);
    backup.status = status;
    Arc::new(backup)
}

fn with_phase(phase: BackupPhase) -> Option<BackupStatus> {
    Some(BackupStatus {
        phase: Some(phase),
        ..BackupStatus::default()
    })
}

/// A spec the engine refuses before any I/O.
fn invalid() -> BackupSpec {
    BackupSpec {
        excluded_namespaces: vec!["*".into()],
        ..BackupSpec::default()
    }
}

fn outcomes(ctx: &crate::context::Context, outcome: &str) -> u64 {
    ctx.metrics
        .backups
        .get_or_create(&OutcomeLabels {
            outcome: outcome.into(),
        })
        .get()
}

async fn run(
    backup: Arc<Backup>,
    script: Vec<Expect>,
) -> (Action, Vec<serde_json::Value>, Arc<crate::context::Context>) {
    let (ctx, server) = context();
    let (action, sent) = server.drive(script, reconcile(backup, ctx.clone())).await;
    (action.expect("the reconcile succeeds"), sent, ctx)
}

#[tokio::test]
async fn an_invalid_backup_is_claimed_failed_validation_with_its_condition_and_event() {
    let (action, sent, ctx) = run(
        backup(invalid(), None),
        vec![
            Expect::new(Method::PATCH, STATUS, object("Backup", OPERATOR_NS, "b1")),
            Expect::new(
                Method::POST,
                events_path(OPERATOR_NS),
                event_created(OPERATOR_NS),
            ),
        ],
    )
    .await;
    assert_eq!(action, Action::await_change());
    let claim = &sent[0];
    assert_eq!(claim["metadata"]["resourceVersion"], "41", "{claim}");
    assert_eq!(claim["status"]["phase"], "FailedValidation");
    assert!(
        claim["status"]["validationErrors"][0]
            .as_str()
            .is_some_and(|e| e.contains("excludes every namespace")),
        "{claim}"
    );
    let condition = &claim["status"]["conditions"][0];
    assert_eq!(condition["type"], "Completed");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "FailedValidation");
    assert_eq!(condition["observedGeneration"], 1);
    assert_eq!(sent[1]["reason"], "FailedValidation");
    assert_eq!(sent[1]["type"], "Warning");
    assert_eq!(outcomes(&ctx, "FailedValidation"), 1);
}

/// The cache showed the Backup New, but it changed since (it ran, or another replica took
/// it): the conditional claim is refused and nothing else happens: no Event, no count.
#[tokio::test]
async fn a_stale_new_backup_is_never_marked_failed_validation() {
    let (action, _, ctx) = run(
        backup(invalid(), None),
        vec![Expect::conflict(Method::PATCH, STATUS)],
    )
    .await;
    assert_eq!(action, Action::await_change());
    assert_eq!(outcomes(&ctx, "FailedValidation"), 0);
}

/// A valid Backup whose claim is refused is not run: nothing is written to its location and
/// the process does not count it as its own.
#[tokio::test]
async fn a_stale_new_backup_is_never_run_a_second_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut location = BackupStorageLocation::new(
        "default",
        BackupStorageLocationSpec {
            provider: Provider::Filesystem,
            default: true,
            access_mode: AccessMode::ReadWrite,
            config: [("path".to_string(), dir.path().display().to_string())].into(),
            ..BackupStorageLocationSpec::default()
        },
    );
    location.spec.object_storage.bucket = "bucket".into();
    location.metadata.namespace = Some(OPERATOR_NS.into());
    let list = json!({"apiVersion": "arca.dev/v1alpha1", "kind": "BackupStorageLocationList",
        "metadata": {"resourceVersion": "1"}, "items": [location]});
    let (action, sent, ctx) = run(
        backup(BackupSpec::default(), None),
        vec![
            Expect::new(
                Method::GET,
                "/apis/arca.dev/v1alpha1/namespaces/arca-system/backupstoragelocations",
                list,
            ),
            Expect::conflict(Method::PATCH, STATUS),
        ],
    )
    .await;
    assert_eq!(action, Action::await_change());
    assert_eq!(sent[1]["status"]["phase"], "InProgress");
    assert_eq!(sent[1]["metadata"]["resourceVersion"], "41");
    assert_eq!(ctx.ownership("uid-b1"), Ownership::Unknown);
    assert_eq!(outcomes(&ctx, "Completed"), 0);
    let written: Vec<_> = walk(dir.path());
    assert!(
        !written.iter().any(|p| p.contains("backups/")),
        "nothing of the backup is written: {written:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if path.is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

/// InProgress, but not run by this process: its operator stopped mid-run. Failed, with the
/// condition, an Event and the count; what its data mover left in the operator's namespace
/// (a pod and the claim, VolumeSnapshot and content of the same name) is removed.
#[tokio::test]
async fn a_backup_left_in_progress_by_a_previous_process_fails() {
    let left = "arca-move-b1-0123456789";
    let list = |kind: &str, items: serde_json::Value| json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items});
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": left, "namespace": OPERATOR_NS}});
    let (action, sent, ctx) = run(
        backup(BackupSpec::default(), with_phase(BackupPhase::InProgress)),
        vec![
            Expect::new(Method::PATCH, STATUS, object("Backup", OPERATOR_NS, "b1")),
            Expect::new(
                Method::GET,
                format!("/api/v1/namespaces/{OPERATOR_NS}/pods?&labelSelector=arca.dev%2Fdata-mover-backup-uid%3Duid-b1"),
                list("PodList", json!([pod])),
            ),
            Expect::new(
                Method::GET,
                format!("/api/v1/namespaces/{OPERATOR_NS}/persistentvolumeclaims"),
                list("PersistentVolumeClaimList", json!([])),
            ),
            Expect::new(
                Method::GET,
                "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents",
                list("VolumeSnapshotContentList", json!([])),
            ),
            Expect::new(
                Method::DELETE,
                format!("/api/v1/namespaces/{OPERATOR_NS}/pods/{left}"),
                pod.clone(),
            ),
            Expect::new(
                Method::DELETE,
                format!("/api/v1/namespaces/{OPERATOR_NS}/persistentvolumeclaims/{left}"),
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": left, "namespace": OPERATOR_NS}}),
            ),
            Expect::new(
                Method::DELETE,
                format!("/apis/snapshot.storage.k8s.io/v1/namespaces/{OPERATOR_NS}/volumesnapshots/{left}"),
                json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                    "metadata": {"name": left, "namespace": OPERATOR_NS}, "spec": {"source": {}}}),
            ),
            Expect::new(
                Method::DELETE,
                format!("/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/{left}"),
                json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent", "metadata": {"name": left}, "spec": {"deletionPolicy": "Retain", "driver": "d", "source": {}, "volumeSnapshotRef": {}}}),
            ),
            Expect::new(
                Method::POST,
                events_path(OPERATOR_NS),
                event_created(OPERATOR_NS),
            ),
        ],
    )
    .await;
    assert_eq!(action, Action::await_change());
    let status = &sent[0]["status"];
    assert_eq!(status["phase"], "Failed");
    assert!(
        status["failureReason"]
            .as_str()
            .is_some_and(|r| r.contains("operator stopped")),
        "{status}"
    );
    assert_eq!(status["conditions"][0]["reason"], "Failed");
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(sent[8]["reason"], "BackupFailed");
    assert_eq!(outcomes(&ctx, "Failed"), 1);
}

/// What this process runs, or has just finished, is left alone; so are finished Backups and
/// the ones the storage sync made (their status comes from backup.json).
#[tokio::test]
async fn running_finished_and_synced_backups_make_no_request() {
    for (phase, ownership, wanted) in [
        (
            BackupPhase::InProgress,
            Some(Ownership::Running),
            Action::await_change(),
        ),
        (
            BackupPhase::InProgress,
            Some(Ownership::Finished),
            Action::requeue(std::time::Duration::from_secs(2)),
        ),
        (BackupPhase::Completed, None, Action::await_change()),
        (BackupPhase::PartiallyFailed, None, Action::await_change()),
        (BackupPhase::FailedValidation, None, Action::await_change()),
    ] {
        let (ctx, server) = context();
        match ownership {
            Some(Ownership::Running) => ctx.start("uid-b1"),
            Some(Ownership::Finished) => {
                ctx.start("uid-b1");
                ctx.finish("uid-b1");
            }
            _ => {}
        }
        let work = reconcile(backup(BackupSpec::default(), with_phase(phase)), ctx);
        let (action, _) = server.drive(Vec::new(), work).await;
        assert_eq!(
            action.expect("reconciled"),
            wanted,
            "{phase:?} {ownership:?}"
        );
    }
    let mut synced = (*backup(BackupSpec::default(), None)).clone();
    synced.metadata.labels =
        Some([(labels::SYNCED_FROM_STORAGE.to_string(), "true".into())].into());
    let (ctx, server) = context();
    let (action, _) = server
        .drive(Vec::new(), reconcile(Arc::new(synced), ctx))
        .await;
    assert_eq!(action.expect("reconciled"), Action::await_change());
}
