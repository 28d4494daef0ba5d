//! Helm: install the chart, then upgrade it to a new image tag with two operator replicas
//! while a Schedule runs: the Deployment rolls (a new pod Ready before an old one stops), the
//! lease moves to a new pod, and no backup is lost or left InProgress.

use std::{collections::BTreeSet, time::Duration};

use arca_api::{Backup, BackupPhase};
use arca_e2e::{TestEnv, eventually, kubectl};
use k8s_openapi::api::{apps::v1::Deployment, coordination::v1::Lease, core::v1::Pod};
use kube::{Api, ResourceExt, api::ListParams};

use crate::helpers::{arca, ctr, image, is_ready, node_env, ok, ready_pods, real_node};

const LONG: Duration = Duration::from_secs(300);

fn helm(env: &TestEnv, namespace: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env.env.bin.join("helm"))
        .arg(format!("--kubeconfig={}", env.env.kubeconfig.display()))
        .args(["--namespace", namespace])
        .args(args)
        .output()
        .expect("helm runs");
    ok(&format!("helm {args:?}"), &out)
}

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("arca-operator")
        .await
        .ok()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_rolls_the_operator_while_a_schedule_runs() {
    let env = node_env();
    let node = real_node(env);
    let client = env.client().await.expect("client");
    let system = env.namespace("arca-helm").await.expect("namespace");
    let sys = system.name.as_str();
    let prefix = env.prefix();
    let app = env.namespace("sched").await.expect("namespace");
    kubectl(
        env,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            &app.name,
            "--from-literal=k=v",
        ],
    );

    let values = env.env.dir.join(format!("values-{sys}.yaml"));
    let credentials = format!(
        "[default]\\naws_access_key_id = {}\\naws_secret_access_key = {}\\n",
        env.env.s3.access_key_id, env.env.s3.secret_access_key
    );
    std::fs::write(
        &values,
        format!(
            r#"image: {image}
replicas: 2
nodeSelector: {{arca.dev/real-node: "true"}}
tolerations: [{{key: arca.dev/real-node, operator: Exists, effect: NoSchedule}}]
kubeletRootDir: {root}
location:
  provider: aws
  bucket: {bucket}
  prefix: {prefix}
  config: {{region: {region}, s3Url: "{url}", s3ForcePathStyle: "true"}}
  credentials: "{credentials}"
"#,
            image = image(),
            root = node.kubelet_root_dir.display(),
            bucket = env.env.s3.bucket,
            prefix = prefix.prefix,
            region = env.env.s3.region,
            url = node.s3_endpoint_in_cluster,
        ),
    )
    .expect("values");
    let chart = arca_testenv::workspace_root().join("deploy/helm/arca");
    helm(
        env,
        sys,
        &[
            "install",
            "arca",
            &chart.display().to_string(),
            "-f",
            &values.display().to_string(),
            "--wait",
            "--timeout=4m",
        ],
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), sys);
    let deployment = deployments.get("arca").await.expect("deployment");
    let strategy = deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.clone());
    assert_eq!(strategy.as_deref(), Some("RollingUpdate"));
    let selector = "app.kubernetes.io/component=operator";
    let before: BTreeSet<String> = ready_pods(&client, sys, selector, 2, LONG)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    let leases: Api<Lease> = Api::namespaced(client.clone(), sys);
    let first_leader = eventually("a leader among the two replicas", LONG, || async {
        lease_holder(&leases).await.filter(|h| before.contains(h))
    })
    .await;

    // A schedule backing up every 15 seconds; its first backup completes.
    ok(
        "schedule create",
        &arca(
            env,
            sys,
            &[
                "schedule",
                "create",
                "often",
                "--schedule",
                "@every 15s",
                "--include-namespaces",
                &app.name,
            ],
        ),
    );
    let backups: Api<Backup> = Api::namespaced(client.clone(), sys);
    let completed = |list: &[Backup]| {
        list.iter()
            .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Completed))
            .count()
    };
    eventually("the schedule's first backup", LONG, || async {
        let list = backups.list(&ListParams::default()).await.ok()?.items;
        (completed(&list) >= 1).then_some(())
    })
    .await;

    // The upgrade: the same image under a new tag, as a release would bring.
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), sys);
    let new_image = format!("{}-upgrade", image());
    ctr(env, &["images", "tag", "--force", &image(), &new_image]);
    helm(
        env,
        sys,
        &[
            "upgrade",
            "arca",
            &chart.display().to_string(),
            "-f",
            &values.display().to_string(),
            "--set",
            &format!("image={new_image}"),
            "--wait",
            "--timeout=5m",
        ],
    );
    let after = eventually(
        "two Ready pods of the new image, and no old one",
        LONG,
        || async {
            // Every pod not being deleted: two, Ready, all of the new image.
            let pods: Vec<Pod> = operator_pods
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            if pods.len() != 2 || !pods.iter().all(is_ready) {
                return None;
            }
            let all_new = pods.iter().all(|p| {
                p.spec.as_ref().is_some_and(|s| {
                    s.containers
                        .iter()
                        .all(|c| c.image.as_deref() == Some(&new_image))
                })
            });
            all_new.then(|| pods.iter().map(|p| p.name_any()).collect::<BTreeSet<_>>())
        },
    )
    .await;
    assert!(after.is_disjoint(&before), "every pod was replaced");
    let new_leader = eventually("the lease to move to a new pod", LONG, || async {
        lease_holder(&leases).await.filter(|h| after.contains(h))
    })
    .await;
    assert_ne!(new_leader, first_leader);

    // Backups go on under the new leader, and none was lost or left InProgress.
    let count_at_upgrade = completed(
        &backups
            .list(&ListParams::default())
            .await
            .expect("list")
            .items,
    );
    let settled = eventually(
        "a backup under the new leader, and every backup ended",
        LONG,
        || async {
            let list = backups.list(&ListParams::default()).await.ok()?.items;
            let all_ended = list.iter().all(|b| {
                b.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_terminal())
            });
            (all_ended && completed(&list) > count_at_upgrade).then_some(list)
        },
    )
    .await;
    let not_completed: Vec<String> = settled
        .iter()
        .filter(|b| b.status.as_ref().and_then(|s| s.phase) != Some(BackupPhase::Completed))
        .map(|b| {
            format!(
                "{}: {:?}",
                b.name_any(),
                b.status.as_ref().and_then(|s| s.phase)
            )
        })
        .collect();
    assert!(
        not_completed.is_empty(),
        "backups that did not complete: {not_completed:?}"
    );

    ok(
        "schedule delete",
        &arca(env, sys, &["schedule", "delete", "often", "--confirm"]),
    );
    helm(env, sys, &["uninstall", "arca", "--wait", "--timeout=4m"]);
    let store = arca_e2e::store(env, &prefix.prefix).await;
    for backup in &settled {
        store
            .get(&format!("backups/{}/backup.json", backup.name_any()))
            .await
            .expect("every backup is still in the bucket after helm uninstall");
    }
}
