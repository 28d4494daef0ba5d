//! What goes wrong: an unusable location, storage failing mid-upload, a damaged archive, the
//! operator killed mid-backup. Each ends with a clear phase and reason, and nothing lost or
//! half-applied.

use std::time::Duration;

use arca_api::{Backup, BackupPhase, BackupStorageLocation, LocationPhase, RestorePhase};
use arca_e2e::{
    create_configmaps, env, eventually, kubectl_apply,
    operator::{
        Operator, backup_done, create_location, phase_of_backup, phase_of_restore, restore_done,
        settings, spawn_server,
    },
    scenario::Scenario,
    store,
};
use kube::{Api, ResourceExt};

/// A running pod whose `phase` ("pre" or "post") backup hook sleeps `seconds`: it holds a
/// backup of its namespace InProgress, before (pre) or after (post) the items are written.
async fn pod_holding_backups(env: &arca_e2e::TestEnv, ns: &str, phase: &str, seconds: u32) {
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: slow
  namespace: {ns}
  annotations:
    {phase}.hook.backup.arca.dev/command: '["sleep", "{seconds}"]'
    {phase}.hook.backup.arca.dev/timeout: {timeout}s
spec:
  containers: [{{name: main, image: busybox}}]
"#,
            timeout = seconds + 30
        ),
    );
    eventually("the pod to run", Duration::from_secs(60), || async {
        (arca_e2e::kubectl(
            env,
            &[
                "get",
                "pod",
                "slow",
                "-n",
                ns,
                "-o",
                "jsonpath={.status.phase}",
            ],
        ) == "Running")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_location_is_explained() {
    let env = env();
    let client = env.client().await.expect("client");
    let arca = env.namespace("arca").await.expect("namespace");
    let s3 = &env.env.s3;
    create_location(
        &env.env.s3,
        &client,
        &arca.name,
        "wrong-key",
        "p",
        &s3.endpoint,
        &s3.bucket,
        "not-the-secret",
    )
    .await;
    create_location(
        &env.env.s3,
        &client,
        &arca.name,
        "no-bucket",
        "p",
        &s3.endpoint,
        "no-such-bucket",
        &s3.secret_access_key,
    )
    .await;
    create_location(
        &env.env.s3,
        &client,
        &arca.name,
        "nobody-home",
        "p",
        "http://127.0.0.1:9",
        &s3.bucket,
        &s3.secret_access_key,
    )
    .await;
    let operator = Operator::start(env, settings(&arca.name)).await;
    let locations: Api<BackupStorageLocation> = Api::namespaced(client.clone(), &arca.name);
    for (name, expected) in [
        ("wrong-key", "rejected the credentials"),
        ("no-bucket", "bucket \"no-such-bucket\" does not exist"),
        (
            "nobody-home",
            "cannot reach the store at http://127.0.0.1:9",
        ),
    ] {
        let message = eventually(
            &format!("location {name} to be Unavailable"),
            Duration::from_secs(60),
            || async {
                let status = locations.get(name).await.ok()?.status?;
                (status.phase? == LocationPhase::Unavailable).then_some(status.message?)
            },
        )
        .await;
        assert!(message.contains(expected), "{name}: {message}");
    }
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: b, namespace: {}}}\nspec: {{storageLocation: wrong-key}}\n",
            arca.name
        ),
    );
    let backup = backup_done(&client, &arca.name, "b", Duration::from_secs(60)).await;
    assert_eq!(phase_of_backup(&backup), BackupPhase::FailedValidation);
    let errors = backup
        .status
        .unwrap_or_default()
        .validation_errors
        .join("; ");
    assert!(errors.contains("rejected the credentials"), "{errors}");
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: nowhere, namespace: {}}}\nspec: {{storageLocation: missing}}\n",
            arca.name
        ),
    );
    let backup = backup_done(&client, &arca.name, "nowhere", Duration::from_secs(60)).await;
    assert_eq!(phase_of_backup(&backup), BackupPhase::FailedValidation);
    assert!(
        backup
            .status
            .unwrap_or_default()
            .validation_errors
            .join(";")
            .contains("no BackupStorageLocation \"missing\"")
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failing_mid_upload_fails_the_backup_and_leaves_no_backup_json() {
    let mut scenario = Scenario::prepare_flaky("big", 256 * 1024).await;
    create_configmaps(&scenario.client, &scenario.app.name, 300, 2048).await;
    scenario.start_operator().await;
    let backup = scenario
        .backup_within("cut", &scenario.app_spec(), Duration::from_secs(180))
        .await;
    let status = backup.status.clone().unwrap_or_default();
    assert_eq!(phase_of_backup(&backup), BackupPhase::Failed, "{status:?}");
    let reason = status.failure_reason.unwrap_or_default();
    assert!(reason.contains("storage location"), "{reason}");
    let direct = store(scenario.env, &scenario.prefix.prefix).await;
    let metadata = direct.get("backups/cut/backup.json").await;
    assert!(
        metadata.is_err_and(|e| e.is_not_found()),
        "a failed backup has no backup.json"
    );
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_archive_is_refused_and_nothing_is_applied() {
    let scenario = Scenario::start("dmg").await;
    let (env, client, _, app, prefix) = scenario.parts();
    create_configmaps(client, &app.name, 20, 512).await;
    scenario.completed_backup("good").await;

    let direct = store(env, &prefix.prefix).await;
    let key = "backups/good/resources.tar.zst";
    let mut archive = direct.get(key).await.expect("archive").to_vec();
    let middle = archive.len() / 2;
    archive[middle] ^= 0x5a;
    direct
        .put(key, bytes::Bytes::from(archive))
        .await
        .expect("damaged archive written");

    let target = format!("{}-restored", app.name);
    let restore = scenario
        .restore(
            "r",
            &format!(
                "{{backupName: good, namespaceMapping: {{{}: {target}}}}}",
                app.name
            ),
        )
        .await;
    let status = restore.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_restore(&restore),
        RestorePhase::Failed,
        "{status:?}"
    );
    let reason = status.failure_reason.unwrap_or_default();
    assert!(
        reason.contains("is damaged, nothing was restored") && reason.contains("checksum mismatch"),
        "{reason}"
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    assert!(
        namespaces.get_opt(&target).await.expect("read").is_none(),
        "nothing was applied"
    );
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_cut_short_by_the_operator_dying_ends_failed() {
    let mut scenario = Scenario::prepare("slow").await;
    let (env, client, arca, app, _) = scenario.parts();
    create_configmaps(client, &app.name, 200, 256).await;
    // A post hook that sleeps holds the backup InProgress once its items are written.
    pod_holding_backups(env, &app.name, "post", 60).await;
    let mut server = spawn_server(env, &arca.name, &arca.name, &[]);
    scenario.apply_backup("cut", &scenario.app_spec());
    let backups: Api<Backup> = Api::namespaced(client.clone(), &arca.name);
    eventually(
        "the backup to be in progress with items written",
        Duration::from_secs(60),
        || async {
            let b = backups.get("cut").await.ok()?;
            let s = b.status?;
            (s.phase? == BackupPhase::InProgress && s.progress?.items_backed_up > 0).then_some(())
        },
    )
    .await;
    server.kill().await.expect("operator killed");

    scenario.start_operator().await;
    let backup = scenario.backup_done("cut").await;
    let status = backup.status.clone().unwrap_or_default();
    assert_eq!(phase_of_backup(&backup), BackupPhase::Failed, "{status:?}");
    assert!(
        status
            .failure_reason
            .unwrap_or_default()
            .contains("operator stopped"),
        "a reason is given"
    );
    let direct = store(scenario.env, &scenario.prefix.prefix).await;
    assert!(
        direct
            .get("backups/cut/backup.json")
            .await
            .is_err_and(|e| e.is_not_found()),
        "never Completed: no backup.json"
    );
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_backup_never_overwrites_an_old_one_of_the_same_name() {
    // No storage sync: it would bring the deleted Backup object back from the bucket before
    // the new one is applied, and the test would read the old one.
    let scenario = Scenario::start_with("same", |s| s.backup_sync_period = Duration::ZERO).await;
    let (env, client, arca, app, prefix) = scenario.parts();
    create_configmaps(client, &app.name, 3, 64).await;
    scenario.completed_backup("nightly").await;
    let direct = store(env, &prefix.prefix).await;
    let before = direct
        .get("backups/nightly/backup.json")
        .await
        .expect("backup.json");

    // The Backup object goes (its data stays), and a new one takes its name.
    arca_e2e::kubectl(env, &["delete", "backup", "nightly", "-n", &arca.name]);
    let again = scenario.backup("nightly", &scenario.app_spec()).await;
    assert_eq!(phase_of_backup(&again), BackupPhase::FailedValidation);
    let errors = again
        .status
        .unwrap_or_default()
        .validation_errors
        .join("; ");
    assert!(
        errors.contains("already holds a backup named nightly"),
        "{errors}"
    );
    assert_eq!(
        direct
            .get("backups/nightly/backup.json")
            .await
            .expect("still there"),
        before,
        "the old data is untouched"
    );
    scenario.stop().await;
}

/// SIGTERM (Kubernetes stopping the pod) mid-backup: the operator finishes the work in flight
/// and exits; the backup is never left InProgress. A pre hook that sleeps holds the backup in
/// progress, so the signal surely lands mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_lets_the_backup_in_flight_finish() {
    let scenario = Scenario::prepare("term").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    pod_holding_backups(env, &app.name, "pre", 6).await;
    let mut server = spawn_server(env, &format!("{}-term", arca.name), &arca.name, &[]);
    scenario.apply_backup("term", &scenario.app_spec());
    let backups: Api<Backup> = Api::namespaced(client.clone(), &arca.name);
    eventually(
        "the backup to be in progress",
        Duration::from_secs(60),
        || async {
            let b = backups.get("term").await.ok()?;
            (b.status?.phase? == BackupPhase::InProgress).then_some(())
        },
    )
    .await;
    let pid = server.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let exit = tokio::time::timeout(Duration::from_secs(90), server.wait())
        .await
        .expect("the operator exits after finishing its work")
        .expect("exit status");
    assert!(exit.success(), "a graceful stop exits 0: {exit:?}");
    let backup = backups.get("term").await.expect("backup");
    let status = backup.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_backup(&backup),
        BackupPhase::Completed,
        "the backup in flight finished: {status:?}"
    );
    assert_eq!(status.hook_status.map(|h| h.hooks_attempted), Some(1));
    let direct = store(env, &prefix.prefix).await;
    assert!(direct.get("backups/term/backup.json").await.is_ok());
}

/// Attack 4 through the operator: a bucket writer who recomputes every checksum swaps one
/// backup's archive for a decompression bomb (a few KB of zstd that unpack to 200 MiB) and
/// another's `backup.json` for a 9 MiB one. The operator reads neither past its limit: each
/// restore is refused with the limit named, and nothing is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_built_to_exhaust_memory_is_refused_with_the_limit_named() {
    use sha2::Digest;
    let scenario = Scenario::start("bomb").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    create_configmaps(client, &app.name, 5, 256).await;
    for name in ["bomb", "big"] {
        scenario.completed_backup(name).await;
    }
    let direct = store(env, &prefix.prefix).await;
    let sha = |bytes: &[u8]| hex::encode(sha2::Sha256::digest(bytes));

    // The bomb: one frame of zeros, every index entry pointing at it, checksums recomputed.
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 19).expect("encoder");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..200 {
        std::io::Write::write_all(&mut encoder, &zeros).expect("compressed");
    }
    let bomb = encoder.finish().expect("bomb");
    assert!(
        bomb.len() < 64 * 1024,
        "a small object: {} bytes",
        bomb.len()
    );
    let index = direct
        .get("backups/bomb/index.jsonl.zst")
        .await
        .expect("index");
    let lines = zstd::decode_all(&index[..]).expect("index decompresses");
    let mut rewritten = Vec::new();
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut entry: serde_json::Value = serde_json::from_slice(line).expect("index line");
        entry["frame"] = serde_json::json!([0, bomb.len()]);
        rewritten.extend(serde_json::to_vec(&entry).expect("json"));
        rewritten.push(b'\n');
    }
    let index = zstd::encode_all(&rewritten[..], 3).expect("index");
    // Sealed again with the operator's key: the limits hold even against whoever holds it.
    let (_, mut metadata) = arca_e2e::tamper::read(direct.as_ref(), "bomb").await;
    metadata["stats"]["archiveBytes"] = bomb.len().into();
    metadata["stats"]["archiveSha256"] = sha(&bomb).into();
    metadata["stats"]["indexBytes"] = index.len().into();
    metadata["stats"]["indexSha256"] = sha(&index).into();
    direct
        .put("backups/bomb/resources.tar.zst", bytes::Bytes::from(bomb))
        .await
        .expect("bomb written");
    direct
        .put("backups/bomb/index.jsonl.zst", bytes::Bytes::from(index))
        .await
        .expect("index written");
    arca_e2e::tamper::reseal(client, &arca.name, &direct, "bomb", metadata).await;
    // The giant: a backup.json past the 8 MiB every metadata read is capped at.
    let giant = format!(
        "{{\"formatVersion\":\"1\",\"padding\":\"{}\"}}",
        "x".repeat(9 << 20)
    );
    direct
        .put("backups/big/backup.json", bytes::Bytes::from(giant))
        .await
        .expect("giant written");

    let target = |name: &str| format!("{}-{name}", app.name);
    for name in ["bomb", "big"] {
        kubectl_apply(
            env,
            &format!(
                "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: r-{name}, namespace: {}}}\nspec: {{backupName: {name}, namespaceMapping: {{{}: {}}}}}\n",
                arca.name,
                app.name,
                target(name)
            ),
        );
    }
    let bombed = restore_done(client, &arca.name, "r-bomb", Duration::from_secs(120)).await;
    let status = bombed.status.clone().unwrap_or_default();
    assert_ne!(
        phase_of_restore(&bombed),
        RestorePhase::Completed,
        "{status:?}"
    );
    let results = direct
        .get(&arca_store::Layout::restore_results("r-bomb"))
        .await
        .expect("results.json");
    let results = String::from_utf8_lossy(&results);
    assert!(
        results.contains("the frame decompresses to more than 67108864 bytes"),
        "the bomb is named: {results}"
    );
    let big = restore_done(client, &arca.name, "r-big", Duration::from_secs(60)).await;
    let status = big.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_restore(&big),
        RestorePhase::FailedValidation,
        "{status:?}"
    );
    assert!(
        status
            .validation_errors
            .join("; ")
            .contains("backups/big/backup.json is larger than 8388608 bytes"),
        "{status:?}"
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for name in ["bomb", "big"] {
        assert!(
            namespaces
                .get_opt(&target(name))
                .await
                .expect("read")
                .is_none(),
            "nothing of {name} was applied"
        );
    }
    scenario.stop().await;
}

/// A PodVolumeBackup of Backup uid `uid` in the operator's namespace `ns`, as a run makes them.
fn work_item(name: &str, ns: &str, uid: &str) -> String {
    format!(
        r#"
apiVersion: arca.dev/v1alpha1
kind: PodVolumeBackup
metadata:
  name: {name}
  namespace: {ns}
  labels: {{arca.dev/backup-uid: "{uid}", arca.dev/backup-name: gone}}
spec:
  node: kwok-node-0
  pod: {{namespace: {ns}, name: app, uid: "pod-uid"}}
  volume: data
  backupStorageLocation: default
  locationNamespace: {ns}
  repoIdentifier: volumes/{ns}/
  snapshotPath: /{ns}/pod/app/data
"#
    )
}

/// An operator stopped while a deleted backup's run was cleaning up (or while a run went on
/// whose Backup was then deleted) leaves work items and data mover objects nobody looks at
/// again: the next operator removes those of uids no Backup has, and nothing of a Backup
/// that exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_starting_removes_what_runs_of_deleted_backups_left() {
    let mut scenario = Scenario::prepare("orphans").await;
    let (env, client, arca, _, _) = scenario.parts();
    let ns = arca.name.clone();
    let orphan = "00000000-dead-4000-8000-000000000001";
    // A Backup that exists (it fails validation: no such location; it stays).
    scenario.apply_backup("alive", "{storageLocation: nowhere}");
    let backups: Api<Backup> = Api::namespaced(client.clone(), &ns);
    let alive = backups
        .get("alive")
        .await
        .expect("the Backup")
        .uid()
        .expect("uid");
    kubectl_apply(env, &work_item("left-by-gone", &ns, orphan));
    kubectl_apply(env, &work_item("of-alive", &ns, &alive));
    let mover = arca_engine::csi::expose::DATA_MOVER_LABEL;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: arca-move-gone, namespace: {ns}, labels: {{{mover}: "{orphan}"}}}}
spec:
  containers: [{{name: hold, image: busybox}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: arca-move-gone, namespace: {ns}, labels: {{{mover}: "{orphan}"}}}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Mi}}}}
"#
        ),
    );

    scenario.start_operator().await;
    let names = |kind: &str| arca_e2e::kubectl(env, &["get", kind, "-n", &ns, "-o", "name"]);
    eventually(
        "the orphan's work item, pod and claim removed",
        Duration::from_secs(60),
        || async {
            let items = names("podvolumebackups.arca.dev");
            let pods = names("pods");
            let claims = names("pvc");
            (!items.contains("left-by-gone")
                && !pods.contains("arca-move-gone")
                && !claims.contains("arca-move-gone"))
            .then_some(())
        },
    )
    .await;
    assert!(
        names("podvolumebackups.arca.dev").contains("of-alive"),
        "the work item of a Backup that exists is kept"
    );
    scenario.stop().await;
}
