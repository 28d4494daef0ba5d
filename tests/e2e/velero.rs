//! Real Velero writes a backup; Arca's Velero reader (crates/velero) reads it back.
//!
//! Velero (the harness in tests/velero.rs) runs out of cluster against a cluster of this
//! test's own. The backup goes to that cluster's S3 server (versitygw), under a prefix; the
//! reader lists it and reads every item from the same bucket, which it leaves byte for byte
//! as it was.

use std::collections::BTreeMap;

use arca_e2e::{
    apply_fixture, kubectl, normalize, snapshot,
    velero::{VELERO_NS, Velero, VeleroCluster, bucket_state},
};
use arca_velero::{BackupPhase, Entry, FolderLayout, VeleroLocation};
use sha2::{Digest, Sha256};

/// The namespaced types of the fixture compared item by item (and its widgets).
pub(super) const TYPES: &str = "deployments,statefulsets,services,ingresses,networkpolicies,horizontalpodautoscalers,cronjobs,poddisruptionbudgets,limitranges,resourcequotas,configmaps,secrets,serviceaccounts,roles,rolebindings,persistentvolumeclaims";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arca_reads_every_item_of_a_backup_real_velero_made() {
    let suffix = format!("{:08x}", rand::random::<u32>());
    let cluster = VeleroCluster::up("velero", &suffix).await;
    let env = cluster.env();

    // The application: a realistic namespace, with a CRD and its objects (before Velero
    // starts, so that it knows the CRD).
    let app = format!("shop-{suffix}");
    let fixture = include_str!("fixtures/app.yaml")
        .replace("NS", &app)
        .replace("OTHER", &format!("other-{suffix}"))
        .replace("SUFFIX", &format!("t{suffix}"));
    apply_fixture(&env, &fixture, &["Widget"]);
    let widgets = format!("widgets.t{suffix}.example.com");
    let velero = Velero::start(cluster, &suffix).await;

    // Velero's backup of the namespace; then Velero stops, so nothing writes to the bucket
    // while it is read.
    let backup = format!("shop-{suffix}");
    let (prefix, cluster) = velero.back_up_namespace_and_stop(&backup, &app).await;

    // What the cluster holds now (the backup saw the same: nothing changed it since).
    let mut expected = snapshot(&env, Some(&app), &format!("{TYPES},{widgets}"));
    assert!(
        expected.len() >= 25,
        "the fixture made {} objects",
        expected.len()
    );
    let crd_now: serde_json::Value =
        serde_json::from_str(&kubectl(&env, &["get", "crd", &widgets, "-o", "json"]))
            .expect("the CRD as JSON");

    // Arca's reader, on the same bucket and prefix.
    let store = arca_e2e::store(&env, &prefix).await;
    let before = bucket_state(store.as_ref()).await;
    let location = VeleroLocation::new(store.clone());
    let folders = location.list_backups().await.expect("backups listed");
    assert_eq!(folders.len(), 1, "{folders:?}");
    assert_eq!(folders[0].name, backup);
    assert!(
        matches!(
            folders[0].layout,
            FolderLayout::Velero {
                tarball_bytes: Some(_),
                pod_volume_backups: true,
                resource_list: true
            }
        ),
        "{:?}",
        folders[0]
    );

    let meta = location.backup(&backup).await.expect("velero-backup.json");
    assert_eq!(meta.phase, BackupPhase::Completed);
    assert_eq!(meta.format_version.as_deref(), Some("1.1.0"));
    meta.check_format().expect("a format Arca reads");
    assert_eq!(meta.included_namespaces, vec![app.clone()]);
    assert_eq!(meta.storage_location.as_deref(), Some("default"));
    assert_eq!(meta.namespace.as_deref(), Some(VELERO_NS));
    assert_eq!(meta.ttl.as_deref(), Some("24h0m0s"));
    let (start, end, expiry) = (
        meta.start_timestamp.expect("start"),
        meta.completion_timestamp.expect("completion"),
        meta.expiration.expect("expiration"),
    );
    assert!(start <= end && end < expiry, "{start} {end} {expiry}");

    let mut items = BTreeMap::new();
    let mut stream = location.items(&backup).await.expect("tarball opened");
    while let Some(entry) = stream.next().await.expect("the tarball reads whole") {
        match entry {
            Entry::Item(item) => {
                let key = (
                    item.group_resource(),
                    item.namespace.clone(),
                    item.name.clone(),
                );
                let json: serde_json::Value =
                    serde_json::from_slice(&item.json).expect("items are JSON");
                let sha = item.index_entry().sha256;
                assert_eq!(sha, hex::encode(Sha256::digest(&item.json)));
                assert!(items.insert(key, (item.kind.clone(), json)).is_none());
            }
            Entry::Refused(refused) => panic!("an item of Velero's was refused: {refused:?}"),
        }
    }
    let summary = stream.summary().expect("summary").clone();
    assert_eq!(summary.format_version, "1.1.0");
    assert_eq!(summary.items, items.len() as u64);
    assert_eq!(summary.refused, 0);
    assert_eq!(
        summary.legacy_copies, summary.items,
        "each item has its legacy copy beside the preferred one"
    );
    assert_eq!(summary.ignored, 0, "{:?}", summary.ignored_names);
    eprintln!(
        "velero backup {backup}: {} items read ({} legacy copies, {} at other versions), {} bytes of gzip, {} decompressed",
        summary.items,
        summary.legacy_copies,
        summary.other_version_copies,
        summary.compressed_bytes,
        summary.decompressed_bytes
    );

    // Every object of the namespace is there, identical but for what the server sets.
    let mut found = 0;
    for (key, object) in std::mem::take(&mut expected) {
        let (kind, name) = key.split_once('/').expect("kind/name");
        let item = items.iter().find(|((_, ns, n), (k, _))| {
            ns.as_deref() == Some(app.as_str()) && n == name && k == kind
        });
        let Some((_, (_, json))) = item else {
            panic!("{key} of namespace {app} is not in Velero's backup as Arca reads it")
        };
        assert_eq!(normalize(json.clone()), object, "{key} differs");
        found += 1;
    }
    assert!(found >= 25);
    let ns_item = items
        .get(&("namespaces".to_string(), None, app.clone()))
        .expect("the namespace comes along");
    assert_eq!(ns_item.0, "Namespace");
    let crd_item = items
        .get(&(
            "customresourcedefinitions.apiextensions.k8s.io".to_string(),
            None,
            widgets.clone(),
        ))
        .expect("the CRD of the widgets comes along");
    assert_eq!(crd_item.1["spec"]["names"], crd_now["spec"]["names"]);
    assert_eq!(crd_item.1["spec"]["versions"], crd_now["spec"]["versions"]);

    // The side files: no file-level volume data; the resource list names each item read.
    let volumes = location
        .pod_volume_backups(&backup)
        .await
        .expect("pod volume backups read")
        .expect("Velero writes the list, empty or not");
    assert!(volumes.is_empty(), "{volumes:?}");
    let list = location
        .resource_list(&backup)
        .await
        .expect("resource list read")
        .expect("Velero writes the resource list");
    assert_eq!(list.len(), items.len(), "{list:?}");
    for entry in &list.entries {
        for (ns, name) in &entry.items {
            assert!(
                items.iter().any(|((_, n_ns, n_name), (kind, _))| n_ns == ns
                    && n_name == name
                    && kind == &entry.kind),
                "{}/{} {ns:?}/{name} of the resource list was not read",
                entry.version,
                entry.kind
            );
        }
    }

    // Read-only: the bucket is byte for byte what Velero left.
    assert_eq!(bucket_state(store.as_ref()).await, before);
    drop(cluster);
}
