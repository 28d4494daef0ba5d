//! CSI snapshots on the real node: a StatefulSet writes into a claim of the test
//! environment's CSI driver (`make testenv-up NODE=real CSI=1`); a backup snapshots the claim
//! (the VolumeSnapshot ready, its content kept, the backup recording it); the namespace is
//! deleted, and the restore provisions a new claim from the snapshot with the data byte for
//! byte. Attacks and faults: a `csi-snapshots.json` changed in the bucket is refused before
//! anything is restored; a snapshot that never becomes ready fails its claim after
//! `csiSnapshotTimeout` and leaves nothing behind. The operator runs in this process: the
//! snapshots need no node agent.

use std::time::Duration;

use arca_api::{BackupPhase, RestorePhase};
use arca_e2e::{TestEnv, eventually, kubectl, kubectl_apply, scenario::Scenario};
use arca_store::{Layout, archive::CsiSnapshots};
use bytes::Bytes;

use crate::helpers::{arca, files_under_data, ok, ready_pods};

/// The environment with its real node and CSI driver, and the driver's names.
pub(crate) fn csi_env() -> (&'static TestEnv, arca_testenv::Csi) {
    let env = match TestEnv::shared_with_csi() {
        Ok(env) => env,
        Err(why) => panic!("{why}"),
    };
    let csi = env
        .env
        .csi
        .clone()
        .expect("the environment has a CSI driver");
    (env, csi)
}

/// A one-replica StatefulSet on the real node whose claim `data-db-0` gets files once (a
/// restored pod finds them and writes nothing), Ready when they are there.
pub(crate) fn database(ns: &str, image: &str, class: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: {ns}}}
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      nodeSelector: {{arca.dev/real-node: "true"}}
      tolerations: [{{key: arca.dev/real-node, operator: Exists, effect: NoSchedule}}]
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: {image}
        imagePullPolicy: Never
        command:
        - sh
        - -c
        - |
          if [ ! -f /data/.done ]; then
            mkdir -p /data/tables/deep
            head -c 3145728 /dev/urandom > /data/tables/blob
            seq 1 20000 > /data/tables/deep/rows
            echo "written once" > /data/note
            touch /data/.done
          fi
          exec sleep 100000
        readinessProbe:
          exec: {{command: [test, -f, /data/.done]}}
          periodSeconds: 1
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: {class}
      resources: {{requests: {{storage: 64Mi}}}}
"#
    )
}

/// The PersistentVolume claim `data-db-0` of `ns` is bound to.
pub(crate) fn volume_of_db(env: &TestEnv, ns: &str) -> String {
    kubectl(
        env,
        &[
            "get",
            "pvc",
            "data-db-0",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
    )
}

pub(crate) fn json(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&kubectl(env, args)).expect("kubectl printed JSON")
}

/// Names of the objects of `kind` in `ns` (`-A` when None).
pub(crate) fn names(env: &TestEnv, kind: &str, ns: &str) -> Vec<String> {
    json(env, &["get", kind, "-n", ns, "-o", "json"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// The VolumeSnapshotContents whose VolumeSnapshot is (or was) in `ns`.
pub(crate) fn contents_of_namespace(env: &TestEnv, ns: &str) -> Vec<String> {
    json(env, &["get", "volumesnapshotcontents", "-o", "json"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["spec"]["volumeSnapshotRef"]["namespace"] == ns)
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Backup `name` of `spec` by the scenario's operator, PartiallyFailed: its status and its
/// `results.json` as text.
async fn partially_failed(
    env: &TestEnv,
    s: &Scenario,
    name: &str,
    spec: &str,
) -> (arca_api::BackupStatus, String) {
    let backup = s.backup(name, spec).await;
    let status = backup.status.clone().expect("status");
    assert_eq!(
        status.phase,
        Some(BackupPhase::PartiallyFailed),
        "{status:?}"
    );
    let store = arca_e2e::store(env, &s.prefix.prefix).await;
    let results = store
        .get(&Layout::backup_results(name))
        .await
        .expect("results.json");
    (status, String::from_utf8_lossy(&results).into_owned())
}

/// `arca backup delete <backup>`, then waits until its VolumeSnapshotContent `content` is
/// gone (deleted with the backup, and the snapshot with it).
async fn delete_backup_and_its_content(env: &TestEnv, s: &Scenario, backup: &str, content: &str) {
    ok(
        "arca backup delete",
        &arca(
            env,
            &s.arca.name,
            &["backup", "delete", backup, "--confirm"],
        ),
    );
    eventually(
        "the backup's VolumeSnapshotContent deleted",
        Duration::from_secs(120),
        || async {
            let out = kubectl(
                env,
                &[
                    "get",
                    "volumesnapshotcontent",
                    content,
                    "--ignore-not-found",
                    "-o",
                    "name",
                ],
            );
            out.trim().is_empty().then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_backed_up_by_csi_snapshot_and_restored_from_it_byte_for_byte() {
    let (env, csi) = csi_env();
    let node = env.env.real_node.clone().expect("a real node");
    let s = Scenario::start_on(env, "csi").await;
    let app = s.app.name.clone();
    kubectl_apply(env, &database(&app, &node.test_image, &csi.storage_class));
    ready_pods(&s.client, &app, "app=db", 1, Duration::from_secs(180)).await;
    let written = files_under_data(env, &app, "db-0");
    assert_eq!(written.len(), 3, "{written:?}");
    let old_volume = volume_of_db(env, &app);

    // The backup snapshots the claim, keeps the content and records it.
    let backup = s
        .completed_backup_with(
            "snap",
            &format!("{{includedNamespaces: [{app}], snapshotVolumes: true}}"),
        )
        .await;
    let status = backup.status.clone().expect("status");
    assert_eq!(status.csi_volume_snapshots_attempted, 1, "{status:?}");
    assert_eq!(status.csi_volume_snapshots_completed, 1, "{status:?}");
    let store = arca_e2e::store(env, &s.prefix.prefix).await;
    let key = Layout::backup_csi_snapshots("snap");
    let recorded_bytes = store.get(&key).await.expect("csi-snapshots.json");
    let recorded: CsiSnapshots = serde_json::from_slice(&recorded_bytes).expect("its JSON");
    assert_eq!(recorded.snapshots.len(), 1, "{recorded:?}");
    let snapshot = recorded.snapshots[0].clone();
    assert_eq!(
        (snapshot.namespace.as_str(), snapshot.claim.as_str()),
        (app.as_str(), "data-db-0")
    );
    assert_eq!(snapshot.driver, csi.driver);
    assert_eq!(snapshot.snapshot_class, csi.snapshot_class);
    // The driver holds the snapshot (a tarball of the volume in its state).
    let tarball = csi
        .state_dir
        .join("snapshots")
        .join(format!("{}.tar", snapshot.snapshot_handle));
    assert!(tarball.is_file(), "{} is missing", tarball.display());
    assert_eq!(snapshot.volume, old_volume);
    let content = json(
        env,
        &[
            "get",
            "volumesnapshotcontent",
            &snapshot.content,
            "-o",
            "json",
        ],
    );
    assert_eq!(content["spec"]["deletionPolicy"], "Retain", "{content}");
    assert_eq!(content["status"]["readyToUse"], true, "{content}");
    assert_eq!(
        content["status"]["snapshotHandle"], snapshot.snapshot_handle,
        "{content}"
    );
    assert_eq!(
        content["metadata"]["labels"]["arca.dev/backup-name"],
        "snap"
    );
    // Its VolumeSnapshot is removed: the namespace can go without the snapshot.
    eventually(
        "the backup's VolumeSnapshot removed from the app namespace",
        Duration::from_secs(60),
        || async { names(env, "volumesnapshots", &app).is_empty().then_some(()) },
    )
    .await;
    let described = ok(
        "arca backup describe --details",
        &arca(
            env,
            &s.arca.name,
            &["backup", "describe", "snap", "--details"],
        ),
    );
    assert!(
        described.contains("CSI snapshots: 1 of 1")
            && described.contains(&format!("claim {app}/data-db-0"))
            && described.contains(&snapshot.snapshot_handle),
        "{described}"
    );

    // The namespace goes, and its volume with it (reclaim policy Delete).
    kubectl(
        env,
        &["delete", "namespace", &app, "--wait=true", "--timeout=120s"],
    );
    eventually(
        "the old volume deleted",
        Duration::from_secs(120),
        || async {
            let pvs = names(env, "pv", "default");
            (!pvs.contains(&old_volume)).then_some(())
        },
    )
    .await;

    // A csi-snapshots.json pointing at another snapshot is refused before anything is made.
    let mut forged = recorded.clone();
    forged.snapshots[0].snapshot_handle = "someone-elses-snapshot".into();
    store
        .put(
            &key,
            Bytes::from(serde_json::to_vec_pretty(&forged).expect("json")),
        )
        .await
        .expect("tamper");
    let refused = s.restore("forged", "{backupName: snap}").await;
    let refused_status = refused.status.clone().expect("status");
    assert_eq!(
        refused_status.phase,
        Some(RestorePhase::Failed),
        "{refused_status:?}"
    );
    let reason = refused_status.failure_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("csi-snapshots.json") && reason.contains("changed"),
        "{reason}"
    );
    assert!(
        kubectl(
            env,
            &["get", "namespace", &app, "--ignore-not-found", "-o", "name"]
        )
        .is_empty(),
        "the refused restore created the namespace"
    );
    assert_eq!(
        contents_of_namespace(env, &app),
        vec![snapshot.content.clone()],
        "the refused restore made a VolumeSnapshotContent (only the backup's may be there)"
    );
    store.put(&key, recorded_bytes).await.expect("put back");

    // The restore provisions a new claim from the snapshot; the data is there.
    s.completed_restore("back", "{backupName: snap}").await;
    let claim = json(env, &["get", "pvc", "data-db-0", "-n", &app, "-o", "json"]);
    assert_eq!(
        claim["spec"]["dataSource"]["kind"], "VolumeSnapshot",
        "{claim}"
    );
    ready_pods(&s.client, &app, "app=db", 1, Duration::from_secs(180)).await;
    assert_eq!(
        files_under_data(env, &app, "db-0"),
        written,
        "the restored claim's files"
    );
    let new_volume = volume_of_db(env, &app);
    assert!(
        !new_volume.is_empty() && new_volume != old_volume,
        "{new_volume}"
    );

    // Deleting the backup deletes its snapshot's content.
    delete_backup_and_its_content(env, &s, "snap", &snapshot.content).await;
    kubectl(
        env,
        &["delete", "namespace", &app, "--wait=true", "--timeout=120s"],
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_never_becomes_ready_fails_its_claim_and_leaves_nothing_behind() {
    let (env, csi) = csi_env();
    let node = env.env.real_node.clone().expect("a real node");
    let s = Scenario::start_on(env, "csi-stuck").await;
    let app = s.app.name.clone();
    let never = format!("never-ready-{}", &app[app.len() - 8..]);
    kubectl_apply(
        env,
        &format!(
            "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata: {{name: {never}}}\ndriver: {}\ndeletionPolicy: Delete\nparameters: {{{}: \"true\"}}\n",
            csi.driver,
            arca_testenv::CSI_NEVER_READY_PARAMETER
        ),
    );
    let mut workload = database(&app, &node.test_image, &csi.storage_class);
    workload = workload.replace(
        "  - metadata: {name: data}",
        &format!(
            "  - metadata: {{name: data, annotations: {{velero.io/csi-volumesnapshot-class: {never}}}}}"
        ),
    );
    kubectl_apply(env, &workload);
    ready_pods(&s.client, &app, "app=db", 1, Duration::from_secs(180)).await;

    let (status, results) = partially_failed(
        env,
        &s,
        "stuck",
        &format!("{{includedNamespaces: [{app}], snapshotVolumes: true, csiSnapshotTimeout: 5s}}"),
    )
    .await;
    assert_eq!(status.csi_volume_snapshots_attempted, 1, "{status:?}");
    assert_eq!(status.csi_volume_snapshots_completed, 0, "{status:?}");
    let store = arca_e2e::store(env, &s.prefix.prefix).await;
    assert!(
        results.contains(&format!("claim {app}/data-db-0"))
            && results.contains("csiSnapshotTimeout"),
        "{results}"
    );
    assert!(
        store
            .get(&Layout::backup_csi_snapshots("stuck"))
            .await
            .is_err(),
        "a csi-snapshots.json without a ready snapshot"
    );
    // Nothing left: no VolumeSnapshot, no content, and no claim or pod but the app's.
    eventually(
        "the stuck snapshot and its content removed",
        Duration::from_secs(120),
        || async {
            (names(env, "volumesnapshots", &app).is_empty()
                && contents_of_namespace(env, &app).is_empty())
            .then_some(())
        },
    )
    .await;
    assert_eq!(names(env, "pvc", &app), vec!["data-db-0".to_string()]);
    assert_eq!(names(env, "pods", &app), vec!["db-0".to_string()]);
    kubectl(env, &["delete", "volumesnapshotclass", &never]);
    s.stop().await;
}

/// `snapshotMoveData` where the data cannot be moved (this operator has no image for the data
/// mover's pod): the snapshot is kept as without the data mover, recorded in
/// `csi-snapshots.json`, the claim named in the errors; no volume data is claimed and nothing
/// temporary is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_data_cannot_be_moved_is_kept_and_its_claim_named() {
    let (env, csi) = csi_env();
    let node = env.env.real_node.clone().expect("a real node");
    let s = Scenario::start_on(env, "csi-nomove").await;
    let app = s.app.name.clone();
    kubectl_apply(env, &database(&app, &node.test_image, &csi.storage_class));
    ready_pods(&s.client, &app, "app=db", 1, Duration::from_secs(180)).await;

    let (status, results) = partially_failed(
        env,
        &s,
        "nomove",
        &format!("{{includedNamespaces: [{app}], snapshotVolumes: true, snapshotMoveData: true}}"),
    )
    .await;
    assert_eq!(status.csi_volume_snapshots_completed, 1, "{status:?}");
    let store = arca_e2e::store(env, &s.prefix.prefix).await;
    assert!(
        results.contains(&format!("claim {app}/data-db-0"))
            && results.contains("not moved into the bucket")
            && results.contains("--restore-helper-image"),
        "{results}"
    );
    let kept: CsiSnapshots = serde_json::from_slice(
        &store
            .get(&Layout::backup_csi_snapshots("nomove"))
            .await
            .expect("the kept snapshot is recorded"),
    )
    .expect("its JSON");
    assert_eq!(kept.snapshots.len(), 1, "{kept:?}");
    assert_eq!(kept.snapshots[0].claim, "data-db-0");
    let content = json(
        env,
        &[
            "get",
            "volumesnapshotcontent",
            &kept.snapshots[0].content,
            "-o",
            "json",
        ],
    );
    assert_eq!(content["spec"]["deletionPolicy"], "Retain", "{content}");
    assert!(
        store.get(&Layout::backup_volumes("nomove")).await.is_err(),
        "no volume data is claimed"
    );
    let made = kubectl(
        env,
        &[
            "get",
            "pods,pvc,volumesnapshots",
            "-n",
            &s.arca.name,
            "-l",
            arca_engine::csi::expose::DATA_MOVER_LABEL,
            "-o",
            "name",
        ],
    );
    assert!(made.trim().is_empty(), "{made}");

    delete_backup_and_its_content(env, &s, "nomove", &kept.snapshots[0].content).await;
    kubectl(
        env,
        &["delete", "namespace", &app, "--wait=true", "--timeout=120s"],
    );
    s.stop().await;
}
