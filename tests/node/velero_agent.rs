//! A pod's volume backed up by Velero's own node agent, as Velero's users back it up: Velero
//! v1.18.3's server (out of cluster) and its node agent (the DaemonSet `velero install
//! --use-node-agent` renders, of an image built here from the same binary) on a real node.
//! Velero 1.18 copies files with kopia only. Then a second cluster, whose Arca reads Velero's
//! bucket through a ReadOnly location, restores the backup: the pod comes back, and the
//! volume's data is named as not restored, with the snapshot and the repository that hold
//! it. Following that message, the kopia CLI restores the data from Velero's repository byte
//! for byte: what Arca names is really there. Velero's bucket is unchanged by Arca.

use std::{collections::BTreeMap, time::Duration};

use arca_api::{Restore, RestorePhase};
use arca_e2e::{
    kubectl, kubectl_apply,
    operator::restore_done,
    velero::{ArcaReader, VELERO_NS, Velero, VeleroCluster, bucket_state, not_restored_event},
};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;

use crate::helpers::{files_under_data, ready_pods, sums};

/// A pod on the real node that writes files into its emptyDir `data` (once), and is Ready
/// when they are all written. Velero copies `data` (its opt-in annotation).
fn writer(ns: &str, test_image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: writer
  namespace: {ns}
  labels: {{app: writer}}
  annotations: {{backup.velero.io/backup-volumes: data}}
spec:
  nodeSelector: {{arca.dev/real-node: "true"}}
  tolerations: [{{key: arca.dev/real-node, operator: Exists, effect: NoSchedule}}]
  containers:
  - name: app
    image: {test_image}
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      mkdir -p /data/nested/deeper
      head -c 1048576 /dev/urandom > /data/blob
      echo "written by the workload" > /data/nested/deeper/note
      seq 1 5000 > /data/numbers
      touch /data/.done
      exec sleep 100000
    readinessProbe:
      exec: {{command: [test, -f, /data/.done]}}
      periodSeconds: 1
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, emptyDir: {{}}}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velero_node_agent_copies_a_volume_that_arca_names_with_its_kopia_snapshot() {
    let suffix = format!("{:08x}", rand::random::<u32>());
    let cluster = VeleroCluster::up_with_real_node("velnode", &suffix).await;
    let env = cluster.env();
    let node = env.env.real_node.clone().expect("a real node");
    let app = format!("files-{suffix}");
    kubectl(&env, &["create", "namespace", &app]);
    kubectl_apply(&env, &writer(&app, &node.test_image));
    let client = env.client().await.expect("client");
    ready_pods(&client, &app, "app=writer", 1, Duration::from_secs(120)).await;
    let written = files_under_data(&env, &app, "writer");
    assert_eq!(written.len(), 3, "{written:?}");

    let velero = Velero::start(cluster, &suffix).await;
    velero.start_node_agent().await;
    let backup = format!("files-{suffix}");
    let (prefix, cluster) = velero.back_up_namespace_and_stop(&backup, &app).await;

    // Velero's node agent copied the volume with kopia, into the namespace's repository.
    let copies: serde_json::Value = serde_json::from_str(&kubectl(
        &env,
        &[
            "get",
            "podvolumebackups.velero.io",
            "-n",
            VELERO_NS,
            "-l",
            &format!("velero.io/backup-name={backup}"),
            "-o",
            "json",
        ],
    ))
    .expect("PodVolumeBackups as JSON");
    let copies = copies["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy = &copies[0];
    assert_eq!(copy["spec"]["volume"], "data", "{copy}");
    assert_eq!(copy["spec"]["uploaderType"], "kopia", "{copy}");
    assert_eq!(copy["status"]["phase"], "Completed", "{copy}");
    let snapshot = copy["status"]["snapshotID"]
        .as_str()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("Velero recorded no snapshot: {copy}"))
        .to_string();
    let store = arca_e2e::store(&env, &prefix).await;
    let before = bucket_state(store.as_ref()).await;
    let repository = format!("kopia/{app}/");
    assert!(
        before.keys().any(|key| key.starts_with(&repository)),
        "no kopia repository {repository} under {prefix}: {:?}",
        before.keys().collect::<Vec<_>>()
    );

    // A second cluster, with no Velero, whose Arca reads Velero's prefix read-only.
    let reader = ArcaReader::start(&env, "velnodemig", &suffix, &prefix, &backup).await;
    let target_env = reader.env();
    let target_client = target_env.client().await.expect("client");
    kubectl_apply(
        &target_env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: arrive, namespace: arca-system}}\nspec: {{backupName: {backup}, allowUnauthenticatedBackup: true}}\n"
        ),
    );
    let restore: Restore = restore_done(
        &target_client,
        "arca-system",
        "arrive",
        Duration::from_secs(120),
    )
    .await;
    let status = restore.status.expect("status");
    assert_eq!(status.phase, Some(RestorePhase::Completed), "{status:?}");
    assert_eq!(status.errors, 0, "{status:?}");
    assert!(status.warnings >= 1, "{status:?}");
    let restored: Pod = Api::namespaced(target_client.clone(), &app)
        .get("writer")
        .await
        .expect("the pod is restored");
    assert!(
        restored
            .spec
            .as_ref()
            .is_some_and(|s| s.init_containers.is_none()),
        "no restore helper for data Arca does not restore: {restored:?}"
    );
    let events: Api<Event> = Api::namespaced(target_client.clone(), "arca-system");
    let named = not_restored_event(
        &events,
        "arrive",
        &format!("volume data of pod {app}/writer"),
    )
    .await;
    assert!(
        named.contains("Kopia") && named.contains(&snapshot) && named.contains(&repository),
        "{named}"
    );
    reader.operator.stop().await;
    drop(reader.cluster);

    // The data is there, as the Event says: the kopia CLI restores the snapshot from Velero's
    // repository (Velero's default password), byte for byte.
    let kopia_dir = env.env.dir.join(format!("kopia-{suffix}"));
    let restored_files = kopia_restore(&env, &prefix, &repository, &snapshot, &kopia_dir);
    assert_eq!(
        restored_files, written,
        "kopia's restore differs from the pod's files"
    );

    assert_eq!(
        bucket_state(store.as_ref()).await,
        before,
        "Arca changed Velero's bucket"
    );
    drop(cluster);
}

/// Restores kopia snapshot `snapshot` of Velero's repository `<prefix>/<repository>` with
/// the kopia CLI (a config of its own under `dir`), and gives each file restored, by path, as
/// its sha256.
fn kopia_restore(
    env: &arca_e2e::TestEnv,
    prefix: &str,
    repository: &str,
    snapshot: &str,
    dir: &std::path::Path,
) -> BTreeMap<String, String> {
    let s3 = &env.env.s3;
    let endpoint = s3
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let config = dir.join("repository.config");
    let target = dir.join("restored");
    let kopia = |args: &[&str]| {
        let out = std::process::Command::new(env.env.bin.join("kopia"))
            .args(args)
            .arg(format!("--config-file={}", config.display()))
            .env("KOPIA_PASSWORD", arca_e2e::velero::VELERO_DEFAULT_PASSWORD)
            .env("KOPIA_CHECK_FOR_UPDATES", "false")
            .env("HOME", dir)
            .output()
            .expect("kopia runs");
        assert!(
            out.status.success(),
            "kopia {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    kopia(&[
        "repository",
        "connect",
        "s3",
        &format!("--bucket={}", s3.bucket),
        &format!("--prefix={prefix}/{repository}"),
        &format!("--endpoint={endpoint}"),
        &format!("--region={}", s3.region),
        &format!("--access-key={}", s3.access_key_id),
        &format!("--secret-access-key={}", s3.secret_access_key),
        "--disable-tls",
        "--readonly",
    ]);
    kopia(&[
        "snapshot",
        "restore",
        snapshot,
        &target.display().to_string(),
    ]);
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg("find . -type f ! -name .done | xargs sha256sum")
        .current_dir(&target)
        .output()
        .expect("sha256sum runs");
    sums(&String::from_utf8_lossy(&listing.stdout))
}
