//! Cluster migration: two clusters, one bucket. A backup made in the first appears in the
//! second (through a ReadOnly location) and is restored there identical.

use std::time::Duration;

use arca_api::{Backup, BackupPhase, RestorePhase};
use arca_e2e::{
    eventually, kubectl_apply, normalize,
    operator::{
        Operator, create_location, phase_of_backup, phase_of_restore, restore_done, settings,
    },
    scenario::Scenario,
    small_app, store,
};
use kube::Api;

/// A second cluster for this test, stopped when dropped.
struct SecondCluster(arca_testenv::Environment);

impl Drop for SecondCluster {
    fn drop(&mut self) {
        let _ = arca_testenv::Environment::down(&self.0.name);
    }
}

fn kubectl_on(env: &arca_testenv::Environment, args: &[&str]) -> String {
    let out = env.kubectl().args(args).output().expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Secret value as `kubectl get -o jsonpath` prints it (base64), decoded.
fn decode(base64_text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_text.trim())
        .expect("base64");
    String::from_utf8(bytes).expect("text")
}

fn objects(env: &arca_testenv::Environment, namespace: &str) -> Vec<serde_json::Value> {
    let list: serde_json::Value = serde_json::from_str(&kubectl_on(
        env,
        &[
            "get",
            "deployments,services,configmaps,secrets,serviceaccounts,roles,rolebindings",
            "-n",
            namespace,
            "-o",
            "json",
        ],
    ))
    .expect("json");
    let mut items: Vec<serde_json::Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            i["metadata"]["name"] != "kube-root-ca.crt" && i["metadata"]["name"] != "default"
        })
        .map(|i| normalize(i.clone()))
        .collect();
    items.sort_by_key(|i| format!("{}/{}", i["kind"], i["metadata"]["name"]));
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_in_one_cluster_is_restored_in_another() {
    // The first cluster's operator stops before the second cluster starts, so the test
    // starts it itself.
    let scenario = Scenario::prepare("migrate").await;
    let (env, _, arca, app, prefix) = scenario.parts();
    let ns = &app.name;
    kubectl_apply(env, &small_app(ns));
    let source_operator = Operator::start(env, settings(&arca.name)).await;
    scenario.completed_backup("move-me").await;
    let before = objects(&env.env, ns);
    source_operator.stop().await;

    // The second cluster: its own Kubernetes, the first one's bucket, read-only.
    let second = SecondCluster(
        arca_testenv::Environment::up(&format!("mig-{}", &app.name[app.name.len() - 8..]))
            .await
            .expect("second cluster"),
    );
    let target = second.0.client().await.expect("client");
    arca_e2e::install_crds(&target).await.expect("CRDs");
    let target_ns = "arca-system";
    kubectl_on(&second.0, &["create", "namespace", target_ns]);
    let s3 = &env.env.s3;
    let env_for_target = arca_testenv::TestEnv {
        env: second.0.clone(),
    };
    create_location(
        &env.env.s3,
        &target,
        target_ns,
        "from-cluster-a",
        &prefix.prefix,
        &s3.endpoint,
        &s3.bucket,
        &s3.secret_access_key,
    )
    .await;
    kubectl_on(
        &second.0,
        &[
            "patch",
            "absl",
            "from-cluster-a",
            "-n",
            target_ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"accessMode":"ReadOnly"}}"#,
        ],
    );
    // The one Secret a migration copies: the key that sealed the backups (and the volume
    // repositories' password beside it, when there is volume data).
    let seal_key = kubectl_on(
        &env.env,
        &[
            "get",
            "secret",
            "arca-metadata-key",
            "-n",
            &arca.name,
            "-o",
            "jsonpath={.data.key}",
        ],
    );
    kubectl_on(
        &second.0,
        &[
            "create",
            "secret",
            "generic",
            "arca-metadata-key",
            "-n",
            target_ns,
            &format!("--from-literal=key={}", decode(&seal_key)),
        ],
    );
    let target_operator = Operator::start(&env_for_target, settings(target_ns)).await;

    let backups: Api<Backup> = Api::namespaced(target.clone(), target_ns);
    eventually(
        "the backup to be synced into the second cluster",
        Duration::from_secs(60),
        || async {
            let b = backups.get_opt("move-me").await.ok()??;
            (phase_of_backup(&b) == BackupPhase::Completed).then_some(())
        },
    )
    .await;
    kubectl_apply(
        &env_for_target,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: arrive, namespace: {target_ns}}}\nspec: {{backupName: move-me}}\n"
        ),
    );
    let restore = restore_done(&target, target_ns, "arrive", Duration::from_secs(120)).await;
    assert_eq!(
        phase_of_restore(&restore),
        RestorePhase::Completed,
        "{:?}",
        restore.status
    );
    assert_eq!(
        objects(&second.0, ns),
        before,
        "the namespace is identical in the second cluster"
    );
    eventually(
        "the deployment to run in the second cluster",
        Duration::from_secs(60),
        || async {
            let ready = kubectl_on(
                &second.0,
                &[
                    "get",
                    "deploy",
                    "web",
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                ],
            );
            (ready == "2").then_some(())
        },
    )
    .await;
    let bucket = store(env, &prefix.prefix).await;
    assert!(
        bucket.list("restores/").await.expect("list").is_empty(),
        "nothing written to a ReadOnly location"
    );
    target_operator.stop().await;
}
