//! A claim no pod mounts (what a StatefulSet scaled to zero leaves) with `snapshotMoveData`:
//! its CSI snapshot is exposed on a node with an agent, within the old volume's topology, and
//! moved into the bucket; `volumes.json` records it as the claim's alone (no pod). The
//! namespace and its volume are deleted; the restore recreates the claim, which gets a new
//! volume, and fills it through a Job of Arca's image that mounts it on the agent's node and
//! is gone afterwards. A pod mounting the claim then finds the files, byte for byte.

use std::time::Duration;

use arca_e2e::{eventually, kubectl, kubectl_apply};
use arca_engine::pod_volumes::populate::POPULATE_LABEL;

use crate::{
    csi::{csi_env, json, names},
    data_mover::moved_backup,
    helpers::{arca, files_under_data, install_with_agent, load_image, ok, ready_pods, uninstall},
};

const LONG: Duration = Duration::from_secs(240);

/// Pod `name` on the real node mounting claim `parked` at /data; with `write`, it first puts
/// files there. Runs until deleted.
fn pod_on_parked(ns: &str, name: &str, image: &str, write: bool) -> String {
    let script = match write {
        true => {
            "mkdir -p /data/logs && head -c 2097152 /dev/urandom > /data/logs/archive && seq 1 5000 > /data/rows && exec sleep 100000"
        }
        false => "exec sleep 100000",
    };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  nodeSelector: {{arca.dev/real-node: "true"}}
  tolerations: [{{key: arca.dev/real-node, operator: Exists, effect: NoSchedule}}]
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: [sh, -c, "{script}"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: parked}}}}]
"#
    )
}

fn parked_claim(ns: &str, class: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: parked, namespace: {ns}}}
spec:
  storageClassName: {class}
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
"#
    )
}

fn volume_of_parked(env: &arca_e2e::TestEnv, ns: &str) -> String {
    kubectl(
        env,
        &[
            "get",
            "pvc",
            "parked",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_no_pod_mounts_is_moved_and_filled_by_the_restore() {
    let (env, csi) = csi_env();
    load_image(env);
    let node = env.env.real_node.clone().expect("a real node");
    let client = env.client().await.expect("client");
    let system = env.namespace("arca").await.expect("namespace");
    let sys = system.name.as_str();
    let prefix = env.prefix();
    install_with_agent(env, &client, sys, &prefix.prefix, LONG).await;

    // A claim with files, and then no pod.
    let app = env.namespace("parked").await.expect("namespace");
    let ns = app.name.as_str();
    kubectl_apply(env, &parked_claim(ns, &csi.storage_class));
    kubectl_apply(env, &pod_on_parked(ns, "writer", &node.test_image, true));
    ready_pods(&client, ns, "app=writer", 1, LONG).await;
    let written = files_under_data(env, ns, "writer");
    assert_eq!(written.len(), 2, "{written:?}");
    kubectl(
        env,
        &[
            "delete",
            "pod",
            "writer",
            "-n",
            ns,
            "--wait=true",
            "--timeout=120s",
        ],
    );
    let old_volume = volume_of_parked(env, ns);
    assert!(!old_volume.is_empty());

    let recorded = moved_backup(env, sys, "parked", ns, &prefix.prefix).await;
    assert_eq!(recorded.snapshots.len(), 1, "{recorded:?}");
    let copy = &recorded.snapshots[0];
    assert!(
        copy.is_claim_only(),
        "recorded as the claim's alone: {copy:?}"
    );
    assert_eq!(
        (copy.namespace.as_str(), copy.claim.as_deref()),
        (ns, Some("parked"))
    );
    assert!(copy.total_bytes >= 2 * 1024 * 1024, "{copy:?}");
    // The agent read the data mover's pod, on the node of the old volume.
    let items = json(
        env,
        &["get", "podvolumebackups.arca.dev", "-n", sys, "-o", "json"],
    );
    let items = items["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["spec"]["node"], node.name.as_str());
    assert_eq!(items[0]["status"]["phase"], "Completed");
    assert!(
        items[0]["spec"]["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "claim=parked")),
        "{:?}",
        items[0]
    );

    kubectl(
        env,
        &["delete", "namespace", ns, "--wait=true", "--timeout=180s"],
    );
    eventually("the old volume deleted", LONG, || async {
        (!names(env, "pv", "default").contains(&old_volume)).then_some(())
    })
    .await;

    let out = ok(
        "arca restore create",
        &arca(
            env,
            sys,
            &[
                "restore",
                "create",
                "parked-back",
                "--from-backup",
                "parked",
                "--wait",
            ],
        ),
    );
    assert!(out.contains("Completed"), "{out}");
    let new_volume = volume_of_parked(env, ns);
    assert!(
        !new_volume.is_empty() && new_volume != old_volume,
        "a new volume: {new_volume}"
    );
    let restores = json(
        env,
        &["get", "podvolumerestores.arca.dev", "-n", sys, "-o", "json"],
    );
    let restores = restores["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert_eq!(restores[0]["status"]["phase"], "Completed");
    assert_eq!(restores[0]["spec"]["pod"]["namespace"], ns);
    // The Job that filled it goes, and its pod.
    eventually("the filling Job and its pod gone", LONG, || async {
        let left = kubectl(
            env,
            &[
                "get",
                "jobs,pods",
                "-n",
                ns,
                "-l",
                POPULATE_LABEL,
                "-o",
                "name",
            ],
        );
        left.trim().is_empty().then_some(())
    })
    .await;

    kubectl_apply(env, &pod_on_parked(ns, "reader", &node.test_image, false));
    ready_pods(&client, ns, "app=reader", 1, LONG).await;
    assert_eq!(
        files_under_data(env, ns, "reader"),
        written,
        "the claim's files, restored"
    );

    // The claim exists now, with a file of its user: restoring the backup again never
    // writes into it (no filling Job, no work item), and says so.
    kubectl(
        env,
        &[
            "exec",
            "-n",
            ns,
            "reader",
            "--",
            "sh",
            "-c",
            "echo mine > /data/mine",
        ],
    );
    let mut now = written.clone();
    now.extend(
        files_under_data(env, ns, "reader")
            .into_iter()
            .filter(|(p, _)| p == "mine"),
    );
    assert_eq!(now.len(), written.len() + 1, "{now:?}");
    let out = ok(
        "arca restore create (the claim exists)",
        &arca(
            env,
            sys,
            &[
                "restore",
                "create",
                "parked-again",
                "--from-backup",
                "parked",
                "--wait",
            ],
        ),
    );
    assert!(out.contains("Completed"), "{out}");
    let described = ok(
        "arca restore describe",
        &arca(env, sys, &["restore", "describe", "parked-again"]),
    );
    assert!(
        described.contains("was not created by this restore: its data is not restored into it"),
        "{described}"
    );
    let restores = json(
        env,
        &["get", "podvolumerestores.arca.dev", "-n", sys, "-o", "json"],
    );
    assert_eq!(
        restores["items"].as_array().map(Vec::len),
        Some(1),
        "no work item for the existing claim: {restores}"
    );
    let jobs = kubectl(env, &["get", "jobs", "-n", ns, "-o", "name"]);
    assert!(jobs.trim().is_empty(), "{jobs}");
    assert_eq!(
        files_under_data(env, ns, "reader"),
        now,
        "the claim untouched"
    );

    let out = uninstall(env, sys);
    assert!(out.contains("Every backup in the bucket is kept"), "{out}");
    kubectl(
        env,
        &["delete", "namespace", ns, "--wait=true", "--timeout=180s"],
    );
}
