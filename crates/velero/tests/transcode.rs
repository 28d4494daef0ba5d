//! A Velero backup's items rewritten as Arca's archive in a scratch store: every item read
//! back from the frames Arca's restore engine fetches, identical; damaged input leaves
//! nothing in the scratch store.

mod common;

use std::{path::Path, sync::Arc};

use arca_store::{FsStore, Layout, ObjectStore, archive};
use arca_velero::{Entry, VeleroError, VeleroLayout, VeleroLocation, transcode};
use common::*;

fn write(root: &Path, key: &str, bytes: &[u8]) {
    let path = root.join("bucket/velero").join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
    std::fs::write(path, bytes).expect("written");
}

fn source(root: &Path) -> VeleroLocation {
    VeleroLocation::new(Arc::new(
        FsStore::new(root, "bucket", "velero").expect("store"),
    ))
}

/// Every item the Velero reader yields for backup `name`: (its path in Arca's archive, json).
async fn velero_items(location: &VeleroLocation, name: &str) -> Vec<(String, Vec<u8>)> {
    let mut stream = location.items(name).await.expect("items");
    let mut out = Vec::new();
    while let Some(entry) = stream.next().await.expect("entry") {
        if let Entry::Item(item) = entry {
            let path = archive::item_path(
                &item.resource,
                &item.group,
                item.namespace.as_deref(),
                &item.name,
            );
            out.push((path, item.json.to_vec()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn every_item_is_read_back_from_arca_s_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &VeleroLayout::tarball("b1"), &velero_tarball());
    let location = source(dir.path());
    let scratch_dir = tempfile::tempdir().expect("tempdir");
    let scratch = FsStore::new(scratch_dir.path(), "scratch", "x").expect("scratch");

    let done = transcode(&location, "b1", &scratch, u64::MAX)
        .await
        .expect("transcoded");
    let expected = velero_items(&location, "b1").await;
    assert!(expected.len() >= 5, "{expected:?}");
    assert_eq!(done.stats.items, expected.len() as u64);
    assert_eq!(done.refused_count, 0);

    // The archive and index verify against their own stats, as the engine checks them.
    archive::verify_object(
        &scratch,
        &Layout::backup_archive("b1"),
        done.stats.archive_bytes,
        &done.stats.archive_sha256,
    )
    .await
    .expect("archive verified");
    let mut index = archive::read_index(&scratch, "b1").await.expect("index");
    let mut read_back = Vec::new();
    while let Some(entry) = index.recv().await {
        let entry = entry.expect("entry");
        let frame = archive::read_frame(&scratch, "b1", entry.frame)
            .await
            .expect("frame");
        let item = frame
            .into_iter()
            .find(|i| i.path == entry.path)
            .expect("the entry's item is in its frame");
        read_back.push((entry.path.clone(), item.json.to_vec()));
    }
    read_back.sort();
    assert_eq!(read_back, expected);
}

#[tokio::test]
async fn a_truncated_tarball_leaves_nothing_in_the_scratch_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = velero_tarball();
    write(
        dir.path(),
        &VeleroLayout::tarball("b1"),
        &whole[..whole.len() / 2],
    );
    let location = source(dir.path());
    let scratch_dir = tempfile::tempdir().expect("tempdir");
    let scratch = FsStore::new(scratch_dir.path(), "scratch", "x").expect("scratch");

    let err = transcode(&location, "b1", &scratch, u64::MAX)
        .await
        .expect_err("a truncated tarball is refused");
    assert!(
        matches!(
            err,
            VeleroError::Corrupt { .. } | VeleroError::Hostile { .. }
        ),
        "{err}"
    );
    let left = scratch.list("").await.expect("listed");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn a_missing_tarball_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = source(dir.path());
    let scratch_dir = tempfile::tempdir().expect("tempdir");
    let scratch = FsStore::new(scratch_dir.path(), "scratch", "x").expect("scratch");
    let err = transcode(&location, "b1", &scratch, u64::MAX)
        .await
        .expect_err("refused");
    assert!(matches!(err, VeleroError::Missing { .. }), "{err}");
    assert!(scratch.list("").await.expect("listed").is_empty());
}

#[tokio::test]
async fn a_backup_larger_than_the_scratch_space_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &VeleroLayout::tarball("b1"), &velero_tarball());
    let location = source(dir.path());
    let scratch_dir = tempfile::tempdir().expect("tempdir");
    let scratch = FsStore::new(scratch_dir.path(), "scratch", "x").expect("scratch");
    let whole = transcode(&location, "b1", &scratch, u64::MAX)
        .await
        .expect("transcoded")
        .stats
        .archive_bytes;
    arca_store::delete_prefix(&scratch, "")
        .await
        .expect("emptied");

    // The archive's size is enough; a fifth of it is not.
    let fits = transcode(&location, "b1", &scratch, whole)
        .await
        .expect("fits");
    assert_eq!(fits.stats.archive_bytes, whole);
    arca_store::delete_prefix(&scratch, "")
        .await
        .expect("emptied");
    let err = transcode(&location, "b1", &scratch, whole / 5)
        .await
        .expect_err("refused");
    match &err {
        VeleroError::ScratchFull { backup, limit } => {
            assert_eq!((backup.as_str(), *limit), ("b1", whole / 5));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("--scratch-bytes"), "{err}");
    let left = scratch.list("").await.expect("listed");
    assert!(left.is_empty(), "left behind: {left:?}");
}
