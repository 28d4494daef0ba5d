//! The Restore controller's reconcile, scenario by scenario, against a scripted apiserver
//! (crate::fixtures): the finalizer first, the claim race, each status transition, and the
//! cleanup of a deleted Restore.

use std::sync::Arc;

use arca_api::{
    Backup, BackupPhase, BackupSpec, BackupStatus, Restore, RestorePhase, RestoreSpec,
    RestoreStatus, labels,
};
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::{Error, reconcile};
use crate::{
    context::{Context, Ownership},
    fixtures::{Expect, OPERATOR_NS, context, event_created, events_path, object},
    metrics::OutcomeLabels,
};

const RESTORE: &str = "/apis/arca.dev/v1alpha1/namespaces/arca-system/restores/r1";
const STATUS: &str = "/apis/arca.dev/v1alpha1/namespaces/arca-system/restores/r1/status";
const BACKUP: &str = "/apis/arca.dev/v1alpha1/namespaces/arca-system/backups/b1";

fn restore(status: Option<RestoreStatus>, finalizer: bool) -> Restore {
    let mut restore = Restore::new(
        "r1",
        RestoreSpec {
            backup_name: Some("b1".into()),
            ..RestoreSpec::default()
        },
    );
    restore.metadata.namespace = Some(OPERATOR_NS.into());
    restore.metadata.uid = Some("uid-r1".into());
    restore.metadata.resource_version = Some("41".into());
    restore.metadata.generation = Some(1);
    if finalizer {
        restore.metadata.finalizers = Some(vec![labels::RESTORE_FINALIZER.into()]);
    }
    restore.status = status;
    restore
}

fn with_phase(phase: RestorePhase) -> Option<RestoreStatus> {
    Some(RestoreStatus {
        phase: Some(phase),
        ..RestoreStatus::default()
    })
}

/// Backup b1 as the apiserver returns it, still running.
fn running_backup() -> Value {
    let mut backup = Backup::new("b1", BackupSpec::default());
    backup.metadata.namespace = Some(OPERATOR_NS.into());
    backup.status = Some(BackupStatus {
        phase: Some(BackupPhase::InProgress),
        ..BackupStatus::default()
    });
    serde_json::to_value(backup).expect("json")
}

fn outcomes(ctx: &Context, outcome: &str) -> u64 {
    ctx.metrics
        .restores
        .get_or_create(&OutcomeLabels {
            outcome: outcome.into(),
        })
        .get()
}

async fn run(
    restore: Restore,
    script: Vec<Expect>,
    prepare: impl FnOnce(&Context),
) -> (Result<Action, Error>, Vec<Value>, Arc<Context>) {
    let (ctx, server) = context();
    prepare(&ctx);
    let (result, sent) = server
        .drive(script, reconcile(Arc::new(restore), ctx.clone()))
        .await;
    (result, sent, ctx)
}

/// Nothing runs before the Restore holds its finalizer: its files and work items can then
/// never outlive it.
#[tokio::test]
async fn the_finalizer_is_added_before_anything_else() {
    let (result, sent, _) = run(
        restore(None, false),
        vec![Expect::new(
            Method::PATCH,
            RESTORE,
            object("Restore", OPERATOR_NS, "r1"),
        )],
        |_| {},
    )
    .await;
    assert_eq!(result.expect("reconciled"), Action::await_change());
    let patch = sent[0].to_string();
    assert!(patch.contains(labels::RESTORE_FINALIZER), "{patch}");
}

#[tokio::test]
async fn a_restore_of_an_unfinished_backup_is_claimed_failed_validation() {
    let (result, sent, ctx) = run(
        restore(None, true),
        vec![
            Expect::new(Method::GET, BACKUP, running_backup()),
            Expect::new(Method::GET, BACKUP, running_backup()),
            Expect::new(Method::PATCH, STATUS, object("Restore", OPERATOR_NS, "r1")),
            Expect::new(
                Method::POST,
                events_path(OPERATOR_NS),
                event_created(OPERATOR_NS),
            ),
        ],
        |_| {},
    )
    .await;
    assert_eq!(result.expect("reconciled"), Action::await_change());
    let claim = &sent[2];
    assert_eq!(claim["metadata"]["resourceVersion"], "41", "{claim}");
    assert_eq!(claim["status"]["phase"], "FailedValidation");
    assert!(
        claim["status"]["validationErrors"][0]
            .as_str()
            .is_some_and(|e| e.contains("only Completed or PartiallyFailed")),
        "{claim}"
    );
    assert_eq!(claim["status"]["conditions"][0]["type"], "Completed");
    assert_eq!(claim["status"]["conditions"][0]["status"], "False");
    assert_eq!(sent[3]["reason"], "FailedValidation");
    assert_eq!(outcomes(&ctx, "FailedValidation"), 1);
}

/// The cache showed the Restore New but it changed since: nothing is marked or counted.
#[tokio::test]
async fn a_stale_new_restore_is_left_to_the_fresh_object() {
    let (result, _, ctx) = run(
        restore(None, true),
        vec![
            Expect::new(Method::GET, BACKUP, running_backup()),
            Expect::new(Method::GET, BACKUP, running_backup()),
            Expect::conflict(Method::PATCH, STATUS),
        ],
        |_| {},
    )
    .await;
    assert_eq!(result.expect("reconciled"), Action::await_change());
    assert_eq!(outcomes(&ctx, "FailedValidation"), 0);
}

/// The storage sync creates a Backup, then writes its status: a Restore applied in between
/// waits for the status instead of failing with "backup is New".
#[tokio::test]
async fn a_restore_of_a_backup_synced_an_instant_ago_waits_for_its_status() {
    let mut synced = Backup::new("b1", BackupSpec::default());
    synced.metadata.namespace = Some(OPERATOR_NS.into());
    synced.metadata.labels = Some(
        [(labels::SYNCED_FROM_STORAGE.to_string(), "true".to_string())]
            .into_iter()
            .collect(),
    );
    let (result, sent, ctx) = run(
        restore(None, true),
        vec![Expect::new(
            Method::GET,
            BACKUP,
            serde_json::to_value(synced).expect("json"),
        )],
        |_| {},
    )
    .await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(std::time::Duration::from_secs(1))
    );
    assert_eq!(
        sent,
        vec![Value::Null],
        "only the Backup read, nothing written"
    );
    assert_eq!(outcomes(&ctx, "FailedValidation"), 0);
}

#[tokio::test]
async fn a_restore_left_in_progress_by_a_previous_process_fails() {
    let (result, sent, ctx) = run(
        restore(with_phase(RestorePhase::InProgress), true),
        vec![
            Expect::new(Method::PATCH, STATUS, object("Restore", OPERATOR_NS, "r1")),
            Expect::new(
                Method::POST,
                events_path(OPERATOR_NS),
                event_created(OPERATOR_NS),
            ),
        ],
        |_| {},
    )
    .await;
    assert_eq!(result.expect("reconciled"), Action::await_change());
    assert_eq!(sent[0]["status"]["phase"], "Failed");
    assert_eq!(sent[0]["status"]["conditions"][0]["reason"], "Failed");
    assert_eq!(sent[1]["reason"], "RestoreFailed");
    assert_eq!(outcomes(&ctx, "Failed"), 1);
}

#[tokio::test]
async fn finished_and_running_restores_make_no_request() {
    for (phase, running) in [
        (RestorePhase::InProgress, true),
        (RestorePhase::Completed, false),
        (RestorePhase::PartiallyFailed, false),
        (RestorePhase::FailedValidation, false),
    ] {
        let (result, _, _) = run(restore(with_phase(phase), true), Vec::new(), |ctx| {
            if running {
                ctx.start("uid-r1");
            }
        })
        .await;
        assert_eq!(result.expect("reconciled"), Action::await_change());
    }
}

fn deleted(phase: RestorePhase) -> Restore {
    let mut r = restore(with_phase(phase), true);
    r.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        crate::fixtures::now(),
    ));
    r
}

/// A deleted Restore still running keeps its finalizer: nothing is removed under it.
#[tokio::test]
async fn a_running_restore_keeps_its_finalizer_until_it_ends() {
    let (result, _, ctx) = run(deleted(RestorePhase::InProgress), Vec::new(), |ctx| {
        ctx.start("uid-r1")
    })
    .await;
    assert!(result.is_err(), "retried later");
    assert_eq!(ctx.ownership("uid-r1"), Ownership::Running);
}

/// A deleted Restore: its PodVolumeRestores go (by its uid), then its files (none here: its
/// backup is gone, so no location is known), then the finalizer.
#[tokio::test]
async fn a_deleted_restore_takes_its_work_items_then_releases_its_finalizer() {
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": "backups.arca.dev \"b1\" not found"});
    let (result, sent, _) = run(
        deleted(RestorePhase::Completed),
        vec![
            Expect::new(
                Method::DELETE,
                "/apis/arca.dev/v1alpha1/namespaces/arca-system/podvolumerestores?labelSelector=arca.dev%2Frestore-uid%3Duid-r1",
                json!({"apiVersion": "arca.dev/v1alpha1", "kind": "PodVolumeRestoreList",
                    "metadata": {}, "items": []}),
            ),
            Expect {
                status: http::StatusCode::NOT_FOUND,
                ..Expect::new(Method::GET, BACKUP, not_found)
            },
            Expect::new(Method::PATCH, RESTORE, object("Restore", OPERATOR_NS, "r1")),
        ],
        |_| {},
    )
    .await;
    assert_eq!(result.expect("reconciled"), Action::await_change());
    let release = sent[2].to_string();
    assert!(
        release.contains("remove") && release.contains("finalizers"),
        "{release}"
    );
}
