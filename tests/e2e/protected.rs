//! Protected data (storage format 2), through the operator against the real S3 server:
//! every `backup.json` is sealed with a key the bucket does not hold, and a location with an
//! encryption key stores its backups encrypted. Each attack is one a bucket writer can make.

use std::time::Duration;

use arca_api::RestorePhase;
use arca_e2e::{
    create_configmaps, kubectl, kubectl_apply,
    operator::{phase_of_restore, restore_done, run_arca, succeeded},
    scenario::{Scenario, assert_restored},
    snapshot, store, tamper,
};
use arca_store::archive::{EncodedFrame, FrameRef, Item, encode_frames};
use k8s_openapi::api::{core::v1::Namespace, rbac::v1::ClusterRoleBinding};
use kube::Api;
use sha2::Digest;

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A restore of `backup` into `target`; returns it once it has ended.
async fn restore_into(
    scenario: &Scenario,
    name: &str,
    backup: &str,
    target: &str,
    extra: &str,
) -> arca_api::Restore {
    kubectl_apply(
        scenario.env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: {name}, namespace: {}}}\nspec: {{backupName: {backup}, namespaceMapping: {{{}: {target}}}{extra}}}\n",
            scenario.arca.name, scenario.app.name
        ),
    );
    restore_done(
        &scenario.client,
        &scenario.arca.name,
        name,
        Duration::from_secs(120),
    )
    .await
}

/// The attack from the threat model: a bucket writer adds a ClusterRoleBinding to
/// cluster-admin to an admin's backup, with every sha256 recomputed. Before format 2 the
/// restore applied it. Now the seal no longer holds and nothing is applied; rewriting the file
/// as an unsealed format 1 one is refused too, unless the Restore says it trusts the bucket
/// (and then the binding is indeed created: the opt-in is as dangerous as it says).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_slipped_into_a_backup_with_checksums_recomputed_is_refused() {
    let scenario = Scenario::start("slip").await;
    let (env, client, _, app, prefix) = scenario.parts();
    create_configmaps(client, &app.name, 2, 64).await;
    scenario.completed_backup("admin").await;
    let direct = store(env, &prefix.prefix).await;

    let binding = format!("slipped-{}", app.name);
    let item = Item {
        group: "rbac.authorization.k8s.io".into(),
        version: "v1".into(),
        kind: "ClusterRoleBinding".into(),
        resource: "clusterrolebindings".into(),
        namespace: None,
        name: binding.clone(),
        json: bytes::Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": binding},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": app.name}]
            }))
            .expect("json"),
        ),
    };
    let EncodedFrame {
        bytes: frame,
        mut entries,
    } = encode_frames(&[item], 0)
        .expect("frame")
        .pop()
        .expect("one frame");
    let mut archive = direct
        .get("backups/admin/resources.tar.zst")
        .await
        .expect("archive")
        .to_vec();
    entries[0].frame = FrameRef(archive.len() as u64, frame.len() as u64);
    archive.extend_from_slice(&frame);
    let index = direct
        .get("backups/admin/index.jsonl.zst")
        .await
        .expect("index");
    let mut lines = zstd::decode_all(&index[..]).expect("index");
    lines.extend(serde_json::to_vec(&entries[0]).expect("json"));
    lines.push(b'\n');
    let index = zstd::encode_all(&lines[..], 3).expect("index");
    let (_, mut metadata) = tamper::read(direct.as_ref(), "admin").await;
    let items = metadata["stats"]["items"].as_u64().expect("items") + 1;
    metadata["stats"]["items"] = items.into();
    metadata["stats"]["archiveBytes"] = archive.len().into();
    metadata["stats"]["archiveSha256"] = sha(&archive).into();
    metadata["stats"]["indexBytes"] = index.len().into();
    metadata["stats"]["indexSha256"] = sha(&index).into();
    direct
        .put("backups/admin/resources.tar.zst", archive.into())
        .await
        .expect("archive written");
    direct
        .put("backups/admin/index.jsonl.zst", index.into())
        .await
        .expect("index written");
    tamper::keep_seal(direct.as_ref(), "admin", metadata.clone()).await;

    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let target = format!("{}-copy", app.name);
    let forged = restore_into(&scenario, "forged", "admin", &target, "").await;
    let status = forged.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_restore(&forged),
        RestorePhase::FailedValidation,
        "{status:?}"
    );
    let said = status.validation_errors.join("; ");
    assert!(
        said.contains("backups/admin/backup.json is not authentic")
            && said.contains("seal does not match"),
        "{said}"
    );
    assert!(bindings.get_opt(&binding).await.expect("read").is_none());
    assert!(
        namespaces.get_opt(&target).await.expect("read").is_none(),
        "nothing applied"
    );

    // The downgrade: the same content as an unsealed format 1 file.
    tamper::downgrade(direct.as_ref(), "admin", metadata).await;
    let downgraded = restore_into(&scenario, "downgraded", "admin", &target, "").await;
    let status = downgraded.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_restore(&downgraded),
        RestorePhase::FailedValidation,
        "{status:?}"
    );
    assert!(
        status
            .validation_errors
            .join("; ")
            .contains("allowUnauthenticatedBackup"),
        "{status:?}"
    );
    assert!(bindings.get_opt(&binding).await.expect("read").is_none());
    assert!(
        namespaces.get_opt(&target).await.expect("read").is_none(),
        "nothing applied"
    );

    // Trusting the bucket restores what is in it: the binding the attacker added.
    let trusted = restore_into(
        &scenario,
        "trusted",
        "admin",
        &target,
        ", allowUnauthenticatedBackup: true",
    )
    .await;
    assert_restored(&trusted);
    assert!(
        bindings.get_opt(&binding).await.expect("read").is_some(),
        "without the seal the slipped item is applied: the attack is real"
    );
    kubectl(env, &["delete", "clusterrolebinding", &binding]);
    kubectl(env, &["delete", "namespace", &target, "--wait=false"]);
    scenario.stop().await;
}

/// A location with an encryption key: no object of the bucket holds a Secret's value or a
/// ConfigMap's text; the restore brings the namespace back identical. A key the Secret no
/// longer holds fails the restore naming the Secret, with nothing applied; keeping the old
/// key beside the new one (a key ring) restores again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_backup_holds_no_plaintext_and_needs_its_key() {
    let scenario = Scenario::start("crypt").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    let marker = format!("plaintext-marker-{}", rand::random::<u64>());
    let first = arca_store::Key::generate();
    // The key named before its Secret exists: the location says what is missing.
    kubectl(
        env,
        &[
            "patch",
            "absl",
            "default",
            "-n",
            &arca.name,
            "--type=merge",
            "-p",
            r#"{"spec":{"encryption":{"keySecretRef":{"name":"backup-key","key":"k1"}}}}"#,
        ],
    );
    let missing = format!("Secret {}/backup-key does not exist", arca.name);
    location_message(&scenario, |m| m.contains(&missing)).await;
    kubectl(
        env,
        &[
            "create",
            "secret",
            "generic",
            "backup-key",
            "-n",
            &arca.name,
            &format!("--from-literal=k1={}", first.to_base64()),
        ],
    );
    location_message(&scenario, str::is_empty).await;
    kubectl(
        env,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            &app.name,
            &format!("--from-literal=password={marker}"),
        ],
    );
    kubectl(
        env,
        &[
            "create",
            "configmap",
            "notes",
            "-n",
            &app.name,
            &format!("--from-literal=text={marker}"),
        ],
    );
    let types = "secrets,configmaps";
    let before = snapshot(env, Some(&app.name), types);
    scenario.completed_backup("sealed").await;

    let direct = store(env, &prefix.prefix).await;
    let encoded = base64_of(marker.as_bytes());
    let objects = direct.list("").await.expect("list");
    assert!(objects.len() >= 5, "{objects:?}");
    for object in &objects {
        let raw = direct.get(&object.key).await.expect("object");
        for plain in [marker.as_bytes(), encoded.as_bytes()] {
            assert!(
                !raw.windows(plain.len()).any(|w| w == plain),
                "{} holds the Secret's value in the clear",
                object.key
            );
        }
        if object.key.ends_with("resources.tar.zst") || object.key.ends_with("index.jsonl.zst") {
            assert!(
                raw.starts_with(arca_store::protect::MAGIC),
                "{} is encrypted",
                object.key
            );
        }
    }
    // The CLI decrypts what it downloads with the key it can read itself.
    let logs = succeeded(&run_arca(env, &arca.name, &["backup", "logs", "sealed"]));
    assert!(logs.contains("wrote") && logs.contains("items"), "{logs}");
    let described = succeeded(&run_arca(
        env,
        &arca.name,
        &["backup", "describe", "sealed", "--details"],
    ));
    assert!(!described.contains("results not readable"), "{described}");
    assert!(
        described.contains(&format!("  configmaps  {}/", app.name))
            && described.contains(" items)"),
        "the encrypted index is listed: {described}"
    );
    let (_, metadata) = tamper::read(direct.as_ref(), "sealed").await;
    assert_eq!(metadata["encryption"]["keyId"], first.id().as_str());
    let backup_json = direct
        .get("backups/sealed/backup.json")
        .await
        .expect("backup.json");
    assert!(!String::from_utf8_lossy(&backup_json).contains(&first.to_base64()));

    // Rotated, the old key dropped: the backup cannot be read.
    let second = arca_store::Key::generate();
    let target = format!("{}-back", app.name);
    kubectl(
        env,
        &[
            "patch",
            "secret",
            "backup-key",
            "-n",
            &arca.name,
            "--type=json",
            "-p",
            &format!(
                r#"[{{"op":"remove","path":"/data/k1"}},{{"op":"add","path":"/data/k2","value":"{}"}}]"#,
                base64_of(second.to_base64().as_bytes())
            ),
        ],
    );
    kubectl(
        env,
        &[
            "patch",
            "absl",
            "default",
            "-n",
            &arca.name,
            "--type=merge",
            "-p",
            r#"{"spec":{"encryption":{"keySecretRef":{"name":"backup-key","key":"k2"}}}}"#,
        ],
    );
    let refused = restore_into(&scenario, "no-key", "sealed", &target, "").await;
    let status = refused.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_restore(&refused),
        RestorePhase::FailedValidation,
        "{status:?}"
    );
    let said = status.validation_errors.join("; ");
    assert!(
        said.contains(&format!("Secret {}/backup-key", arca.name))
            && said.contains(first.id().as_str()),
        "{said}"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces.get_opt(&target).await.expect("read").is_none(),
        "nothing applied"
    );

    // The old key kept beside the new one: the ring reads the old backup.
    kubectl(
        env,
        &[
            "patch",
            "secret",
            "backup-key",
            "-n",
            &arca.name,
            "--type=json",
            "-p",
            &format!(
                r#"[{{"op":"add","path":"/data/k1","value":"{}"}}]"#,
                base64_of(first.to_base64().as_bytes())
            ),
        ],
    );
    let restored = restore_into(&scenario, "with-ring", "sealed", &target, "").await;
    assert_restored(&restored);
    let after = snapshot(env, Some(&target), types);
    for kind_name in ["Secret/db", "ConfigMap/notes"] {
        let was = before
            .get(kind_name)
            .unwrap_or_else(|| panic!("{kind_name} in {before:?}"));
        let now = after
            .get(kind_name)
            .unwrap_or_else(|| panic!("{kind_name} restored"));
        assert_eq!(was["data"], now["data"], "{kind_name} identical");
    }
    kubectl(env, &["delete", "namespace", &target, "--wait=false"]);
    scenario.stop().await;
}

/// Waits until location `default`'s status message satisfies `wanted` (empty: Available).
async fn location_message(scenario: &Scenario, wanted: impl Fn(&str) -> bool) {
    let locations: Api<arca_api::BackupStorageLocation> =
        Api::namespaced(scenario.client.clone(), &scenario.arca.name);
    arca_e2e::eventually(
        "the location's status to say what it should",
        Duration::from_secs(60),
        || async {
            let status = locations.get("default").await.ok()?.status?;
            let message = status.message.unwrap_or_default();
            wanted(&message).then_some(())
        },
    )
    .await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
