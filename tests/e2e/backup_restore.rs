//! Backup and restore of a realistic namespace, end to end, against the real cluster and S3.

use std::time::Duration;

use arca_api::{BackupPhase, RestorePhase};
use arca_e2e::{
    apply_fixture, eventually, index_of, kubectl, kubectl_apply,
    operator::{backup_done, phase_of_backup, phase_of_restore, restore_done},
    scenario::{Scenario, assert_restored},
    snapshot,
};

const TYPES: &str = "deployments,statefulsets,services,ingresses,networkpolicies,horizontalpodautoscalers,cronjobs,poddisruptionbudgets,limitranges,resourcequotas,configmaps,secrets,serviceaccounts,roles,rolebindings,persistentvolumeclaims";

fn fixture(ns: &str, other: &str, suffix: &str) -> String {
    include_str!("fixtures/app.yaml")
        .replace("NS", ns)
        .replace("OTHER", other)
        .replace("SUFFIX", suffix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realistic_namespace_comes_back_identical() {
    let scenario = Scenario::start("shop").await;
    let (env, _, _, app, prefix) = scenario.parts();
    let other = scenario.namespace("neighbour").await;
    let suffix = format!("t{}", &app.name[app.name.len() - 6..]);
    apply_fixture(env, &fixture(&app.name, &other.name, &suffix), &["Widget"]);
    wait_bound(env, &app.name, "static-claim").await;
    let crd = format!("widgets.{suffix}.example.com");
    let pv = format!("pv-{suffix}");
    let before = snapshot(
        env,
        Some(&app.name),
        &format!("{TYPES},widgets.{suffix}.example.com"),
    );
    let crd_before = snapshot(env, None, &format!("crd/{crd}"));
    let pv_before = snapshot(env, None, &format!("pv/{pv}"));
    assert!(
        before.len() >= 25,
        "the fixture made {} objects",
        before.len()
    );

    let backup = scenario
        .completed_backup_with(
            "full",
            &format!("{{includedNamespaces: [{}], ttl: 24h}}", app.name),
        )
        .await;
    let status = backup.status.clone().unwrap_or_default();
    assert_eq!(status.errors, 0);
    assert!(status.expiration.is_some() && status.completion_timestamp.is_some());

    let index = index_of(env, &prefix.prefix, "full").await;
    assert!(
        !index
            .iter()
            .any(|e| e.namespace.as_deref() == Some(other.name.as_str()) || e.name == other.name),
        "the neighbour is not in the backup"
    );
    for (resource, name) in [
        ("customresourcedefinitions", crd.as_str()),
        ("persistentvolumes", pv.as_str()),
        ("namespaces", app.name.as_str()),
    ] {
        assert!(
            index
                .iter()
                .any(|e| e.resource == resource && e.name == name),
            "{resource}/{name} comes along"
        );
    }
    let progress = status.progress.unwrap_or_default();
    assert_eq!(progress.items_backed_up, index.len() as u64);
    assert_eq!(progress.total_items, index.len() as u64);

    // The disaster: the namespace, the CRD (and with it the widgets) and the volume are gone.
    kubectl(
        env,
        &[
            "delete",
            "namespace",
            &app.name,
            "--wait=true",
            "--timeout=120s",
        ],
    );
    kubectl(
        env,
        &["delete", "crd", &crd, "--wait=true", "--timeout=60s"],
    );
    kubectl(env, &["delete", "pv", &pv, "--wait=true", "--timeout=60s"]);

    let restore = scenario
        .restore_within("back", "{backupName: full}", Duration::from_secs(180))
        .await;
    assert_restored(&restore);
    let outcomes = restore
        .status
        .clone()
        .unwrap_or_default()
        .outcomes
        .unwrap_or_default();
    assert_eq!(outcomes.failed, 0);
    assert!(outcomes.created >= before.len() as u64, "{outcomes:?}");

    let after = snapshot(
        env,
        Some(&app.name),
        &format!("{TYPES},widgets.{suffix}.example.com"),
    );
    for (key, value) in &before {
        let restored = after
            .get(key)
            .unwrap_or_else(|| panic!("{key} was not restored"));
        assert_eq!(restored, value, "{key} differs after the restore");
    }
    assert_eq!(
        snapshot(env, None, &format!("crd/{crd}")),
        crd_before,
        "the CRD"
    );
    assert_eq!(
        snapshot(env, None, &format!("pv/{pv}")),
        pv_before,
        "the volume"
    );
    eventually(
        "the restored claim to bind to the restored volume",
        Duration::from_secs(60),
        || async {
            let phase = kubectl(
                env,
                &[
                    "get",
                    "pvc",
                    "static-claim",
                    "-n",
                    &app.name,
                    "-o",
                    "jsonpath={.status.phase}",
                ],
            );
            (phase == "Bound").then_some(())
        },
    )
    .await;
    eventually(
        "the deployment's pods to run again",
        Duration::from_secs(60),
        || async {
            let ready = kubectl(
                env,
                &[
                    "get",
                    "deploy",
                    "web",
                    "-n",
                    &app.name,
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                ],
            );
            (ready == "2").then_some(())
        },
    )
    .await;
    let labels = kubectl(
        env,
        &[
            "get",
            "cm",
            "settings",
            "-n",
            &app.name,
            "-o",
            "jsonpath={.metadata.labels}",
        ],
    );
    assert!(
        labels.contains("\"arca.dev/backup-name\":\"full\"")
            && labels.contains("\"arca.dev/restore-name\":\"back\""),
        "{labels}"
    );
    scenario.stop().await;
    kubectl(
        env,
        &["delete", "pv", &pv, "--ignore-not-found", "--wait=false"],
    );
    kubectl(
        env,
        &["delete", "crd", &crd, "--ignore-not-found", "--wait=false"],
    );
}

/// Status conditions, as `kubectl wait` reads them: `Available` on a location, `Completed`
/// on a Backup and a Restore (True when they ended Completed), False with the phase as
/// reason and the cause as message otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_say_how_a_run_ended_for_kubectl_wait() {
    let scenario = Scenario::start("cond").await;
    let (env, client, app) = (scenario.env, &scenario.client, &scenario.app);
    let a = &scenario.arca.name;
    kubectl_apply(
        env,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: {}}}\ndata: {{k: v}}\n",
            app.name
        ),
    );
    let wait = |what: &str, condition: &str| {
        kubectl(
            env,
            &[
                "wait",
                &format!("--for=condition={condition}"),
                what,
                "-n",
                a,
                "--timeout=60s",
            ],
        )
    };
    wait("absl/default", "Available");
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: ok, namespace: {a}}}\nspec: {{includedNamespaces: [{}]}}\n---\napiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: bad, namespace: {a}}}\nspec: {{includedNamespaces: [\"[\"]}}\n",
            app.name
        ),
    );
    wait("backup/ok", "Completed");
    let bad = backup_done(client, a, "bad", Duration::from_secs(60)).await;
    let status = bad.status.clone().unwrap_or_default();
    assert_eq!(phase_of_backup(&bad), BackupPhase::FailedValidation);
    let completed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Completed")
        .expect("a Completed condition");
    assert_eq!(
        (completed.status.as_str(), completed.reason.as_str()),
        ("False", "FailedValidation")
    );
    assert!(
        completed.message.contains("includedNamespaces"),
        "{completed:?}"
    );
    assert_eq!(completed.observed_generation, bad.metadata.generation);
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: r, namespace: {a}}}\nspec: {{backupName: ok, namespaceMapping: {{{}: {}-copy}}}}\n",
            app.name, app.name
        ),
    );
    wait("restore/r", "Completed");
    let restore = restore_done(client, a, "r", Duration::from_secs(60)).await;
    assert_eq!(phase_of_restore(&restore), RestorePhase::Completed);
    kubectl(
        env,
        &[
            "delete",
            "namespace",
            &format!("{}-copy", app.name),
            "--wait=false",
        ],
    );
    scenario.stop().await;
}

/// Waits until the claim is Bound (the controller-manager's volume binder runs every 15 s);
/// on a timeout, fails with what the claim and the volumes show.
async fn wait_bound(env: &arca_e2e::TestEnv, namespace: &str, claim: &str) {
    let bound = || {
        kubectl(
            env,
            &[
                "get",
                "pvc",
                claim,
                "-n",
                namespace,
                "-o",
                "jsonpath={.status.phase}",
            ],
        ) == "Bound"
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !bound() {
        if tokio::time::Instant::now() > deadline {
            let claim_state = kubectl(env, &["describe", "pvc", claim, "-n", namespace]);
            let volumes = kubectl(env, &["get", "pv", "-o", "wide"]);
            panic!(
                "the claim is not Bound after 60s (the controller-manager's log is kept with \
                 the environment's, under control-plane/)\n{claim_state}\n{volumes}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
