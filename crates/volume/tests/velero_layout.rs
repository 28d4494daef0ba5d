//! A repository in Velero's layout (`restic/<namespace>/`, snapshots tagged `ns=<namespace>`),
//! as the node agent reads it for a restore of a Velero backup: through a store that refuses
//! every write, restoring only the namespace's own snapshots, by the short id Velero records.

mod common;

use std::sync::Arc;

use arca_store::{ObjectStore, WriteRefusingStore};
use arca_volume::{SnapshotRequest, VolumeError, VolumeRepository};
use common::{Fixture, PASSWORD, differences, make_tree, no_progress};

/// Stores a snapshot of a fresh tree in `restic/shop/` tagged `tag`; its id and the tree.
async fn velero_snapshot(fx: &Fixture, tag: &str) -> (String, std::path::PathBuf) {
    let repo = VolumeRepository::at_root(fx.store.clone(), "restic/shop/", PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let source = fx.folder(&format!("src-{tag}"));
    make_tree(&source);
    let request = SnapshotRequest {
        as_path: "/host_pods/p-1/volumes/kubernetes.io~empty-dir/data".into(),
        hostname: "velero".into(),
        tags: vec![tag.into(), "volume=data".into()],
    };
    let summary = repo
        .backup(&source, &request, no_progress())
        .await
        .expect("backup");
    (summary.id, source)
}

fn read_only(fx: &Fixture) -> VolumeRepository {
    let store: Arc<dyn ObjectStore> = Arc::new(WriteRefusingStore::new(fx.store.clone()));
    VolumeRepository::at_root(store, "restic/shop/", PASSWORD.into()).only_tagged("ns=shop".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_namespace_s_snapshot_is_restored_by_its_short_id_without_a_write() {
    let fx = Fixture::new();
    let (id, source) = velero_snapshot(&fx, "ns=shop").await;
    let before = fx.store.list("").await.expect("listed");
    let dest = fx.folder("dest");
    read_only(&fx)
        .restore(&id[..8], &dest, no_progress())
        .await
        .expect("restored by Velero's short id");
    assert_eq!(differences(&source, &dest), Vec::<String>::new());
    assert_eq!(
        fx.store.list("").await.expect("listed"),
        before,
        "the repository changed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_namespace_s_snapshot_is_refused_and_nothing_is_written() {
    let fx = Fixture::new();
    let (id, _) = velero_snapshot(&fx, "ns=bank").await;
    let dest = fx.folder("dest");
    let err = read_only(&fx)
        .restore(&id, &dest, no_progress())
        .await
        .expect_err("another namespace's snapshot");
    assert!(matches!(err, VolumeError::InvalidRequest(_)), "{err:?}");
    assert!(err.to_string().contains("not tagged ns=shop"), "{err}");
    assert_eq!(std::fs::read_dir(&dest).expect("dest").count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_through_the_read_only_store_fails_and_leaves_the_repository_as_it_was() {
    let fx = Fixture::new();
    let (_, source) = velero_snapshot(&fx, "ns=shop").await;
    let before = fx.store.list("").await.expect("listed");
    let request = SnapshotRequest {
        as_path: "/x".into(),
        hostname: "arca".into(),
        tags: Vec::new(),
    };
    let err = read_only(&fx)
        .backup(&source, &request, no_progress())
        .await
        .expect_err("a write");
    assert!(err.to_string().contains("never writes"), "{err}");
    assert_eq!(fx.store.list("").await.expect("listed"), before);
}
