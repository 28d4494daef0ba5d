//! Arca's storage sync lists Velero's backups, and Arca restores them: real Velero v1.18.3
//! backs up a realistic namespace; an Arca location on the same bucket and prefix syncs it
//! as a Backup labelled `arca.dev/made-by: velero` with Velero's phase, times and filters.
//! Arca never deletes Velero's data (a DeleteBackupRequest is refused, saying why), a
//! deleted Backup object comes back, a Velero folder whose `velero-backup.json` names
//! another backup is skipped with an Event naming it. A Restore of the Velero backup is
//! refused until it says it trusts the bucket (Velero's backups are not authenticated).
//! Then a second cluster, without Velero, whose Arca reads the bucket through a ReadOnly
//! location, restores it: every object identical to the first cluster's; a pod volume that
//! Velero copied with restic (as Velero before 1.15 did: a `restic/<ns>` repository made by
//! the restic CLI with Velero's commands and password, and the PodVolumeBackup Velero
//! records) restored by the second cluster's node agent, file for file; the volumes whose
//! data Arca does not restore (kopia, a moved CSI snapshot) named; no scratch files left;
//! the bucket is byte for byte as it was.

use std::time::Duration;

use arca_api::{
    Backup, BackupPhase, BackupStorageLocation, DeleteBackupRequest, DeleteBackupRequestPhase,
    DownloadRequest, DownloadRequestPhase, Restore, RestorePhase, labels,
};
use arca_e2e::{
    apply_fixture, eventually, kubectl, kubectl_apply,
    operator::{Operator, restore_done, s3_location, settings, synced_backup},
};
use k8s_openapi::api::core::v1::Event;
use kube::{Api, ResourceExt, api::ListParams};

use crate::velero::TYPES;
use crate::volumes::{Node, fill, scheduled, tree};
use arca_e2e::velero::{ArcaReader, Velero, VeleroCluster, bucket_state, not_restored_event};

/// `data` gzip-compressed, as Velero writes its JSON files.
fn gzip(data: &[u8]) -> bytes::Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("compressed");
    bytes::Bytes::from(encoder.finish().expect("compressed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arca_lists_velero_backups_and_never_changes_them() {
    let suffix = format!("{:08x}", rand::random::<u32>());
    let cluster = VeleroCluster::up("velsync", &suffix).await;
    let env = cluster.env();
    let app = format!("shop-{suffix}");
    let fixture = include_str!("fixtures/app.yaml")
        .replace("NS", &app)
        .replace("OTHER", &format!("other-{suffix}"))
        .replace("SUFFIX", &format!("t{suffix}"));
    apply_fixture(&env, &fixture, &["Widget"]);
    // A pod with two volumes, whose files Velero copied (planted below, as Velero 1.14 wrote
    // them: this cluster's pods are kwok's, no node agent reads them).
    kubectl_apply(
        &env,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: files, namespace: {app}}}\nspec:\n  containers: [{{name: app, image: busybox, volumeMounts: [{{name: data, mountPath: /data}}, {{name: cache, mountPath: /cache}}]}}]\n  volumes: [{{name: data, emptyDir: {{}}}}, {{name: cache, emptyDir: {{}}}}]\n"
        ),
    );
    let client = env.client().await.expect("client");
    let (files_uid, files_node) = scheduled(&client, &app, "files").await;
    let velero = Velero::start(cluster, &suffix).await;
    let backup = format!("shop-{suffix}");
    let (prefix, cluster) = velero.back_up_namespace_and_stop(&backup, &app).await;

    // A bucket writer's folder: a copy of the real velero-backup.json, which names the real
    // backup, under another name.
    let store = arca_e2e::store(&env, &prefix).await;
    let impostor = format!("impostor-{suffix}");
    let real = store
        .get(&format!("backups/{backup}/velero-backup.json"))
        .await
        .expect("Velero's velero-backup.json");
    store
        .put(&format!("backups/{impostor}/velero-backup.json"), real)
        .await
        .expect("the impostor planted");
    // What Velero records for a volume whose CSI snapshot its data mover copied to the
    // bucket (this cluster has no CSI driver, so it is written here, as Velero 1.18 would).
    let volume_info = format!(
        r#"[{{"pvcName":"static-claim","pvcNamespace":"{app}","pvName":"pv-t{suffix}","backupMethod":"CSISnapshot","snapshotDataMoved":true,"preserveLocalSnapshot":false,"skipped":false,"result":"succeeded"}}]"#
    );
    store
        .put(
            &format!("backups/{backup}/{backup}-volumeinfo.json.gz"),
            gzip(volume_info.as_bytes()),
        )
        .await
        .expect("the volume info written");
    let volume_data = plant_restic_copy(
        &env,
        &prefix,
        &backup,
        &app,
        (&files_uid, &files_node),
        &store,
    )
    .await;
    let before = bucket_state(store.as_ref()).await;
    let widgets = format!("widgets.t{suffix}.example.com");
    // Claims are left out: the restored claim cannot bind to the volume the first one
    // released (Retain).
    let compared = format!("{},{widgets}", TYPES.replace(",persistentvolumeclaims", ""));
    let expected = arca_e2e::snapshot(&env, Some(&app), &compared);
    assert!(expected.len() >= 20, "{}", expected.len());

    // Arca in the same cluster, its location on Velero's bucket and prefix.
    let arca = format!("arca-{suffix}");
    kubectl(&env, &["create", "namespace", &arca]);
    s3_location(&env, &client, &arca, "default", &prefix).await;
    let operator = Operator::start(&env, settings(&arca)).await;

    let backups: Api<Backup> = Api::namespaced(client.clone(), &arca);
    let synced = synced_backup(&client, &arca, &backup, Duration::from_secs(60)).await;
    assert!(synced.is_made_by_velero(), "{:?}", synced.metadata.labels);
    assert_eq!(
        synced
            .labels()
            .get(labels::SYNCED_FROM_STORAGE)
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(synced.spec.included_namespaces, std::slice::from_ref(&app));
    assert_eq!(synced.spec.storage_location.as_deref(), Some("default"));
    let status = synced.status.clone().expect("status");
    assert_eq!(status.phase, Some(BackupPhase::Completed));
    assert_eq!(status.format_version.as_deref(), Some("velero/1.1.0"));
    let started = status.start_timestamp.expect("start").0;
    let completed = status.completion_timestamp.expect("completion").0;
    let expires = status.expiration.expect("expiration").0;
    assert!(started <= completed, "{started} > {completed}");
    let ttl = expires.duration_since(started).as_secs();
    assert!((24 * 3600 - 120..=24 * 3600 + 120).contains(&ttl), "{ttl}");

    // The impostor: never synced, named in an Event on the location.
    let events: Api<Event> = Api::namespaced(client.clone(), &arca);
    let warning = eventually(
        "an Event naming the impostor folder",
        Duration::from_secs(60),
        || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter_map(|e| e.message)
                .find(|m| m.contains(&format!("backups/{impostor}/")))
        },
    )
    .await;
    assert!(warning.contains("not synced"), "{warning}");
    assert!(
        backups.get_opt(&impostor).await.expect("get").is_none(),
        "the impostor was synced"
    );

    // Deletion is refused, nothing deleted.
    kubectl_apply(
        &env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: DeleteBackupRequest\nmetadata: {{name: del, namespace: {arca}}}\nspec: {{backupName: {backup}}}\n"
        ),
    );
    let requests: Api<DeleteBackupRequest> = Api::namespaced(client.clone(), &arca);
    let refused = eventually("the request processed", Duration::from_secs(30), || async {
        let s = requests.get("del").await.ok()?.status?;
        (s.phase? == DeleteBackupRequestPhase::Processed).then_some(s)
    })
    .await;
    assert!(
        refused
            .errors
            .iter()
            .any(|e| e.contains("made by Velero") && e.contains("nothing was deleted")),
        "{:?}",
        refused.errors
    );
    assert!(backups.get_opt(&backup).await.expect("get").is_some());

    // A deleted Backup object comes back, as Arca's own do.
    kubectl(&env, &["delete", "backups.arca.dev", &backup, "-n", &arca]);
    let back = synced_backup(&client, &arca, &backup, Duration::from_secs(60)).await;
    assert!(back.is_made_by_velero());

    // A Restore of it that does not say it trusts the bucket: refused, nothing restored.
    let target = format!("restored-{suffix}");
    kubectl_apply(
        &env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: r, namespace: {arca}}}\nspec: {{backupName: {backup}, namespaceMapping: {{{app}: {target}}}}}\n"
        ),
    );
    let restore: Restore = restore_done(&client, &arca, "r", Duration::from_secs(60)).await;
    let restore_status = restore.status.expect("status");
    assert_eq!(restore_status.phase, Some(RestorePhase::FailedValidation));
    assert!(
        restore_status
            .validation_errors
            .iter()
            .any(|e| e.contains("made by Velero") && e.contains("allowUnauthenticatedBackup")),
        "{:?}",
        restore_status.validation_errors
    );
    assert_eq!(
        kubectl(
            &env,
            &[
                "get",
                "namespace",
                &target,
                "--ignore-not-found",
                "-o",
                "name"
            ]
        ),
        ""
    );

    // Migration: a second cluster, with no Velero, whose Arca reads Velero's bucket and
    // prefix through a ReadOnly location and restores the backup there.
    let reader = ArcaReader::start(&env, "velmig", &suffix, &prefix, &backup).await;
    let target_env = reader.env();
    let target_client = target_env.client().await.expect("client");
    let scratch = reader.scratch.clone();
    kubectl_apply(
        &target_env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: arrive, namespace: arca-system}}\nspec: {{backupName: {backup}, allowUnauthenticatedBackup: true}}\n"
        ),
    );
    // "kubelet" of the node the restored pod lands on mounts its volumes; that node's agent
    // restores the data Velero's restic copied.
    let (restored_uid, restored_node) = scheduled(&target_client, &app, "files").await;
    let mut node = Node::new(&target_env, "velero");
    node.name = restored_node;
    let restored_data = node.mount(&restored_uid, "data");
    node.mount(&restored_uid, "cache");
    let _agent = node.spawn_agent(&target_env, "arca-system", &format!("velmig-{suffix}"));
    let restore: Restore = restore_done(
        &target_client,
        "arca-system",
        "arrive",
        Duration::from_secs(180),
    )
    .await;
    let uid = restore.uid().expect("uid");
    let restore_status = restore.status.expect("status");
    assert_eq!(
        restore_status.phase,
        Some(RestorePhase::Completed),
        "{restore_status:?}"
    );
    assert_eq!(restore_status.errors, 0, "{restore_status:?}");
    assert!(restore_status.warnings >= 1, "{restore_status:?}");
    let mut restored_files = tree(&restored_data);
    restored_files.retain(|path, _| !path.starts_with(".arca-restore-"));
    assert_eq!(
        restored_files.keys().collect::<Vec<_>>(),
        volume_data.keys().collect::<Vec<_>>()
    );
    for (path, entry) in &volume_data {
        assert!(
            restored_files.get(path) == Some(entry),
            "{path} differs once restored from Velero's restic repository"
        );
    }
    let mut restored = arca_e2e::snapshot(&target_env, Some(&app), &compared);
    // Each cluster's own CA bundle: the second cluster's is kept, never the first's.
    let own_ca = "ConfigMap/kube-root-ca.crt";
    let mut expected = expected;
    assert_ne!(
        restored
            .remove(own_ca)
            .expect("the second cluster's CA bundle")["data"],
        expected
            .remove(own_ca)
            .expect("the first cluster's CA bundle")["data"],
        "the first cluster's CA bundle was restored over the second's"
    );
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, object) in &expected {
        assert_eq!(&restored[key], object, "{key} differs once restored");
    }
    let target_events: Api<Event> = Api::namespaced(target_client.clone(), "arca-system");
    let not_restored = not_restored_event(
        &target_events,
        "arrive",
        &format!("PersistentVolumeClaim {app}/static-claim"),
    )
    .await;
    assert!(not_restored.contains("data mover"), "{not_restored}");
    let kopia = not_restored_event(
        &target_events,
        "arrive",
        &format!("volume cache of pod {app}/files"),
    )
    .await;
    assert!(kopia.contains("Kopia"), "{kopia}");
    assert!(
        !scratch.join(format!("restore-{uid}")).exists(),
        "the restore's scratch folder outlived it"
    );
    // Its log and results are nowhere (nothing was written into Velero's prefix): a
    // download says so instead of pointing into Velero's folders.
    kubectl_apply(
        &target_env,
        "apiVersion: arca.dev/v1alpha1\nkind: DownloadRequest\nmetadata: {name: results, namespace: arca-system}\nspec: {target: {kind: RestoreResults, name: arrive}}\n",
    );
    let downloads: Api<DownloadRequest> = Api::namespaced(target_client.clone(), "arca-system");
    let answer = eventually(
        "the download request processed",
        Duration::from_secs(30),
        || async {
            let status = downloads.get("results").await.ok()?.status?;
            (status.phase? == DownloadRequestPhase::Processed).then_some(status)
        },
    )
    .await;
    assert!(answer.download_url.is_none(), "{answer:?}");
    assert!(
        answer
            .message
            .as_deref()
            .is_some_and(|m| m.contains("made by Velero") && m.contains("Events")),
        "{answer:?}"
    );
    reader.operator.stop().await;
    drop(reader.cluster);

    let location = Api::<BackupStorageLocation>::namespaced(client.clone(), &arca)
        .get("default")
        .await
        .expect("location");
    assert!(location.status.and_then(|s| s.last_synced_time).is_some());
    operator.stop().await;

    assert_eq!(
        bucket_state(store.as_ref()).await,
        before,
        "Arca changed Velero's bucket"
    );
    drop(cluster);
}

/// Plants what Velero 1.14 leaves for a pod whose volume `data` it copied with restic, and
/// whose volume `cache` it copied with kopia: a `restic/<ns>` repository made by the restic
/// CLI with Velero's commands (`restic backup .` in the volume's folder, `--host=velero`,
/// Velero's tags) and default password, and the backup's PodVolumeBackups list with the
/// snapshot's short id, as Velero records it. Returns the files of `data`.
async fn plant_restic_copy(
    env: &arca_e2e::TestEnv,
    prefix: &str,
    backup: &str,
    ns: &str,
    (pod_uid, node): (&str, &str),
    store: &std::sync::Arc<dyn arca_store::ObjectStore>,
) -> std::collections::BTreeMap<String, (char, u32, i64, Vec<u8>)> {
    let folder = env.env.dir.join(format!("velero-volume-{pod_uid}"));
    std::fs::create_dir_all(&folder).expect("volume folder");
    fill(&folder, 3, 40, 7);
    let s3 = &env.env.s3;
    let repository = format!(
        "s3:{}/{}/{}/restic/{ns}",
        s3.endpoint,
        s3.bucket,
        prefix.trim_matches('/')
    );
    let restic = |args: &[&str]| {
        let out = std::process::Command::new("restic")
            .current_dir(&folder)
            .env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key)
            .env("RESTIC_PASSWORD", "static-passw0rd")
            .args(["-r", &repository, "--no-cache", "-o"])
            .arg(format!("s3.region={}", s3.region))
            .args(args)
            .output()
            .expect("restic runs (Debian package `restic`)");
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    restic(&["init"]);
    let tags: Vec<String> = [
        ("backup", backup),
        ("ns", ns),
        ("pod", "files"),
        ("pod-uid", pod_uid),
        ("volume", "data"),
    ]
    .iter()
    .map(|(k, v)| format!("--tag={k}={v}"))
    .collect();
    let mut args = vec!["backup", ".", "--host=velero", "--json"];
    args.extend(tags.iter().map(String::as_str));
    let summary: serde_json::Value = restic(&args)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .expect("restic's backup summary");
    let snapshot = summary["snapshot_id"].as_str().expect("snapshot id");
    let short_id = &snapshot[..8];
    let copy = |name: &str, volume: &str, uploader: &str, id: &str| {
        serde_json::json!({
            "apiVersion": "velero.io/v1", "kind": "PodVolumeBackup",
            "metadata": {"name": format!("{backup}-{name}"), "namespace": "velero",
                "labels": {"velero.io/backup-name": backup}},
            "spec": {"node": node, "pod": {"kind": "Pod", "namespace": ns, "name": "files", "uid": pod_uid},
                "volume": volume, "backupStorageLocation": "default",
                "repoIdentifier": format!("{repository}"), "uploaderType": uploader,
                "tags": {"backup": backup, "ns": ns, "pod": "files", "pod-uid": pod_uid, "volume": volume}},
            "status": {"phase": "Completed", "snapshotID": id,
                "path": format!("/host_pods/{pod_uid}/volumes/kubernetes.io~empty-dir/{volume}"),
                "progress": {"totalBytes": 4096, "bytesDone": 4096}}
        })
    };
    let list = serde_json::json!([
        copy("r1", "data", "restic", short_id),
        copy("k1", "cache", "kopia", "0f3d1c2b9a8e7d6c5b4a39281706f5e4"),
    ]);
    store
        .put(
            &format!("backups/{backup}/{backup}-podvolumebackups.json.gz"),
            gzip(list.to_string().as_bytes()),
        )
        .await
        .expect("the PodVolumeBackups list written");
    let files = tree(&folder);
    std::fs::remove_dir_all(&folder).expect("removed");
    files
}
