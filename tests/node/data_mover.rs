//! The data mover (`snapshotMoveData: true`) on the real node, Arca installed from its image
//! with the node agent: a StatefulSet's CSI claim is snapshotted, the snapshot mounted through
//! a temporary claim by a pod in Arca's namespace, and the agent copies its files into the
//! namespace's repository (the plain `restic` CLI checks every byte); then every temporary
//! object and the snapshot itself are gone. The namespace and its volume are deleted, and the
//! restore gives the claim a new volume from its storage class (no snapshot left to restore
//! from), with the data written by the agent before the database's container starts, byte
//! for byte.

use std::time::Duration;

use arca_e2e::{
    eventually, kubectl, kubectl_apply,
    restic::{own_password, restic},
};
use arca_engine::{csi::expose::DATA_MOVER_LABEL, protocol::RepositoryId};
use arca_store::{Layout, archive::VolumeSnapshots};

use crate::{
    csi::{csi_env, database, json, names, volume_of_db},
    helpers::{
        arca, files_under_data, import_image, install_arca, install_with_agent, load_image,
        location_available, ready_pods, restored_with_helper, uninstall,
    },
};

const LONG: Duration = Duration::from_secs(240);

/// Tarballs of the driver's snapshots (one per snapshot it holds).
fn driver_snapshots(csi: &arca_testenv::Csi) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(csi.state_dir.join("snapshots"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_data_is_moved_into_the_bucket_and_restored_without_the_snapshot() {
    let (env, csi) = csi_env();
    load_image(env);
    let node = env.env.real_node.clone().expect("a real node");
    let client = env.client().await.expect("client");
    let system = env.namespace("arca").await.expect("namespace");
    let sys = system.name.as_str();
    let prefix = env.prefix();
    install_with_agent(env, &client, sys, &prefix.prefix, LONG).await;

    let app = env.namespace("moved").await.expect("namespace");
    let ns = app.name.as_str();
    kubectl_apply(env, &database(ns, &node.test_image, &csi.storage_class));
    ready_pods(&client, ns, "app=db", 1, LONG).await;
    let written = files_under_data(env, ns, "db-0");
    assert_eq!(written.len(), 3, "{written:?}");
    let old_volume = volume_of_db(env, ns);
    let snapshots_before = driver_snapshots(&csi);

    // The backup snapshots the claim and moves the snapshot's data into the bucket.
    let recorded = moved_backup(env, sys, "moved", ns, &prefix.prefix).await;
    let backup = json(
        env,
        &["get", "backups.arca.dev", "moved", "-n", sys, "-o", "json"],
    );
    assert_eq!(
        backup["status"]["csiVolumeSnapshotsCompleted"], 1,
        "{backup}"
    );
    let store = arca_e2e::store(env, &prefix.prefix).await;
    assert_eq!(recorded.snapshots.len(), 1, "{recorded:?}");
    let copy = &recorded.snapshots[0];
    assert_eq!(
        (
            copy.namespace.as_str(),
            copy.pod.as_str(),
            copy.volume.as_str()
        ),
        (ns, "db-0", "data"),
        "recorded as the database's pod volume"
    );
    assert_eq!(copy.claim.as_deref(), Some("data-db-0"));
    assert!(copy.total_bytes >= 3 * 1024 * 1024, "{copy:?}");
    assert!(
        store
            .get(&Layout::backup_csi_snapshots("moved"))
            .await
            .is_err(),
        "a moved snapshot is not kept in csi-snapshots.json"
    );
    // The agent read the data mover's pod in Arca's namespace, not the database's.
    let items = json(
        env,
        &["get", "podvolumebackups.arca.dev", "-n", sys, "-o", "json"],
    );
    let items = items["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["spec"]["pod"]["namespace"], sys, "{:?}", items[0]);
    assert_eq!(items[0]["spec"]["node"], node.name.as_str());
    assert_eq!(items[0]["status"]["phase"], "Completed");
    assert!(
        items[0]["spec"]["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "source=csi-snapshot")),
        "{:?}",
        items[0]
    );

    // restic reads every byte of it, at the claim's path.
    let password = own_password(&client, sys, &RepositoryId::new(ns)).await;
    let (checked, out) = restic(
        env,
        &prefix.prefix,
        ns,
        &password,
        &["check", "--read-data"],
    );
    assert!(checked, "restic check: {out}");
    let (listed, out) = restic(env, &prefix.prefix, ns, &password, &["snapshots", "--json"]);
    assert!(
        listed && out.contains(&format!("/{ns}/pvc/data-db-0")),
        "{out}"
    );

    // Nothing temporary is left, and the snapshot itself is deleted.
    eventually(
        "the data mover's objects and the snapshot gone",
        LONG,
        || async {
            let selector = DATA_MOVER_LABEL;
            let left_in_sys = kubectl(
                env,
                &[
                    "get",
                    "pods,pvc,volumesnapshots",
                    "-n",
                    sys,
                    "-l",
                    selector,
                    "-o",
                    "name",
                ],
            );
            let contents = kubectl(
                env,
                &[
                    "get",
                    "volumesnapshotcontents",
                    "-l",
                    "arca.dev/backup-name=moved",
                    "-o",
                    "name",
                ],
            );
            (left_in_sys.trim().is_empty()
                && contents.trim().is_empty()
                && names(env, "volumesnapshots", ns).is_empty()
                && driver_snapshots(&csi) == snapshots_before)
                .then_some(())
        },
    )
    .await;
    let moved_claims = names(env, "pvc", sys);
    assert!(moved_claims.is_empty(), "{moved_claims:?}");

    // The namespace goes, and its volume with it.
    kubectl(
        env,
        &["delete", "namespace", ns, "--wait=true", "--timeout=180s"],
    );
    eventually("the old volume deleted", LONG, || async {
        (!names(env, "pv", "default").contains(&old_volume)).then_some(())
    })
    .await;

    // The restore: a new volume from the storage class, the data written before the
    // database's container starts.
    restored_with_helper(env, &client, (sys, "back", "moved"), (ns, "app=db"), LONG).await;
    let claim = json(env, &["get", "pvc", "data-db-0", "-n", ns, "-o", "json"]);
    assert!(claim["spec"].get("dataSource").is_none(), "{claim}");
    let new_volume = volume_of_db(env, ns);
    assert!(
        !new_volume.is_empty() && new_volume != old_volume,
        "{new_volume}"
    );
    assert_eq!(
        files_under_data(env, ns, "db-0"),
        written,
        "the restored claim's files"
    );

    // Another cluster, with no storage shared with this one: the backup restores there too.
    restored_in_a_second_environment(env, sys, &prefix.prefix, ns, &written).await;

    let out = uninstall(env, sys);
    assert!(out.contains("Every backup in the bucket is kept"), "{out}");
    kubectl(
        env,
        &["delete", "namespace", ns, "--wait=true", "--timeout=180s"],
    );
}

/// A second environment of this test, stopped when dropped.
struct SecondEnvironment(arca_e2e::TestEnv);

impl Drop for SecondEnvironment {
    fn drop(&mut self) {
        let _ = arca_testenv::Environment::down(&self.0.env.name);
    }
}

/// A cluster of its own with its own real node, CSI driver and S3 server: the bucket's
/// objects under `prefix` are copied to its S3 server (a replicated bucket), and the two
/// Secrets a migration copies (the seal key, the repositories' password); Arca installed
/// there syncs backup `moved` and restores it, the claim's data written by that cluster's
/// agent from the bucket alone, identical to `written`.
async fn restored_in_a_second_environment(
    first: &arca_e2e::TestEnv,
    sys: &str,
    prefix: &str,
    ns: &str,
    written: &std::collections::BTreeMap<String, String>,
) {
    let name = format!("dm2-{}", &ns[ns.len().saturating_sub(6)..]);
    let options = arca_testenv::UpOptions {
        real_node: true,
        csi: true,
    };
    let second = SecondEnvironment(arca_e2e::TestEnv {
        env: arca_testenv::Environment::up_with(&arca_testenv::testenv_root(), &name, options)
            .await
            .expect("a second environment"),
    });
    let there = &second.0;
    import_image(there);
    let from = arca_e2e::store(first, prefix).await;
    let to = arca_e2e::store(there, prefix).await;
    let objects = from.list("").await.expect("list the bucket");
    assert!(
        objects.iter().any(|o| o.key.starts_with("volumes/")),
        "{objects:?}"
    );
    for object in &objects {
        let body = from.get(&object.key).await.expect("read an object");
        to.put(&object.key, body).await.expect("copy an object");
    }
    kubectl(there, &["create", "namespace", sys]);
    for secret in [
        arca_runtime::keys::SEAL_SECRET,
        arca_engine::protocol::REPOSITORY_SECRET,
    ] {
        let found: serde_json::Value = serde_json::from_str(&kubectl(
            first,
            &["get", "secret", secret, "-n", sys, "-o", "json"],
        ))
        .expect("the Secret's JSON");
        let copy = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": sys},
            "type": found["type"],
            "data": found["data"],
        });
        kubectl_apply(there, &copy.to_string());
    }
    install_arca(there, sys, prefix);
    location_available(there, sys, "default", LONG).await;
    eventually("backup moved synced from the bucket", LONG, || async {
        let out = there
            .env
            .kubectl()
            .args([
                "get",
                "backups.arca.dev",
                "moved",
                "-n",
                sys,
                "-o",
                "jsonpath={.status.phase}",
            ])
            .output()
            .ok()?;
        (String::from_utf8_lossy(&out.stdout) == "Completed").then_some(())
    })
    .await;
    let client = there.client().await.expect("client");
    restored_with_helper(
        there,
        &client,
        (sys, "there", "moved"),
        (ns, "app=db"),
        LONG,
    )
    .await;
    let claim = json(there, &["get", "pvc", "data-db-0", "-n", ns, "-o", "json"]);
    assert!(claim["spec"].get("dataSource").is_none(), "{claim}");
    assert_eq!(
        files_under_data(there, ns, "db-0"),
        *written,
        "the claim's files, restored in the second environment"
    );
    uninstall(there, sys);
}

/// `arca backup create <name> --include-namespaces <ns> --snapshot-volumes true
/// --snapshot-move-data --wait` in `sys`, Completed (else the panic shows `backup describe
/// --details`); its `volumes.json` from the bucket under `prefix`.
pub(crate) async fn moved_backup(
    env: &arca_e2e::TestEnv,
    sys: &str,
    name: &str,
    ns: &str,
    prefix: &str,
) -> VolumeSnapshots {
    let created = arca(
        env,
        sys,
        &[
            "backup",
            "create",
            name,
            "--include-namespaces",
            ns,
            "--snapshot-volumes",
            "true",
            "--snapshot-move-data",
            "--wait",
        ],
    );
    let out = String::from_utf8_lossy(&created.stdout).into_owned();
    if !created.status.success() || !out.contains("Completed") {
        let described = arca(env, sys, &["backup", "describe", name, "--details"]);
        panic!(
            "backup {name} did not complete: {out}{}\n{}",
            String::from_utf8_lossy(&created.stderr),
            String::from_utf8_lossy(&described.stdout)
        );
    }
    let store = arca_e2e::store(env, prefix).await;
    serde_json::from_slice(
        &store
            .get(&Layout::backup_volumes(name))
            .await
            .expect("volumes.json"),
    )
    .expect("its JSON")
}
