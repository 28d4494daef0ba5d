//! A Velero location over a directory store: listing, each part of a backup, streaming; and
//! the proof that the reader never writes (a store that fails every write).

mod common;

use std::{
    ops::Range,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use arca_store::{FsStore, ObjectInfo, ObjectReader, ObjectStore, ObjectWriter, StoreError};
use arca_velero::{
    BackupPhase, Entry, FolderLayout, Limits, Uploader, VeleroError, VeleroLayout, VeleroLocation,
};
use async_trait::async_trait;
use bytes::Bytes;
use common::*;

/// A store that reads from `inner` and fails (and counts) every write, change or delete.
#[derive(Debug)]
struct NoWrites {
    inner: FsStore,
    writes: AtomicUsize,
}

impl NoWrites {
    fn refuse(&self, what: &str, key: &str) -> StoreError {
        self.writes.fetch_add(1, Ordering::SeqCst);
        StoreError::Config(format!("the Velero reader tried to {what} {key}"))
    }
}

#[async_trait]
impl ObjectStore for NoWrites {
    async fn put(&self, key: &str, _body: Bytes) -> Result<(), StoreError> {
        Err(self.refuse("put", key))
    }
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        Err(self.refuse("write", key))
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn reader(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ObjectReader, StoreError> {
        self.inner.reader(key, range).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_folders(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        Err(self.refuse("delete", key))
    }
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.size(key).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn backup_json(name: &str) -> String {
    format!(
        r#"{{"kind":"Backup","apiVersion":"velero.io/v1","metadata":{{"name":"{name}","namespace":"velero"}},"spec":{{"includedNamespaces":["shop"],"storageLocation":"default","ttl":"720h0m0s"}},"status":{{"formatVersion":"1.1.0","phase":"Completed","startTimestamp":"2025-01-01T00:00:00Z","completionTimestamp":"2025-01-01T00:00:09Z","expiration":"2025-01-31T00:00:00Z"}}}}"#
    )
}

fn write(root: &Path, key: &str, bytes: &[u8]) {
    let path = root.join("bucket/velero").join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
    std::fs::write(path, bytes).expect("written");
}

/// A location with a complete Velero backup `b1`, an Arca backup, a folder of both, an
/// incomplete one, and a folder named as no backup can be.
fn populate(root: &Path) {
    write(
        root,
        &VeleroLayout::metadata("b1"),
        backup_json("b1").as_bytes(),
    );
    write(root, &VeleroLayout::tarball("b1"), &velero_tarball());
    write(
        root,
        &VeleroLayout::pod_volume_backups("b1"),
        &gzip(br#"[{"metadata":{"name":"b1-abc"},"spec":{"pod":{"kind":"Pod","namespace":"shop","name":"db-0","uid":"u1"},"volume":"data","repoIdentifier":"s3:http://x/b/kopia/shop","uploaderType":"kopia"},"status":{"phase":"Completed","snapshotID":"s1","progress":{"totalBytes":10}}}]"#),
    );
    write(
        root,
        &VeleroLayout::resource_list("b1"),
        &gzip(br#"{"v1/ConfigMap":["shop/settings"],"apps/v1/Deployment":["shop/web"]}"#),
    );
    write(root, "backups/b1/b1-logs.gz", &gzip(b"log"));
    write(root, "backups/arca-1/backup.json", b"{}");
    write(root, "backups/mixed/backup.json", b"{}");
    write(
        root,
        &VeleroLayout::metadata("mixed"),
        backup_json("mixed").as_bytes(),
    );
    write(
        root,
        &VeleroLayout::metadata("half"),
        backup_json("half").as_bytes(),
    );
    write(root, "backups/stray/notes.txt", b"x");
    write(root, "backups/Not_A_Name/velero-backup.json", b"{}");
}

fn location(root: &Path) -> (VeleroLocation, Arc<NoWrites>) {
    let store = Arc::new(NoWrites {
        inner: FsStore::new(root, "bucket", "velero").expect("store"),
        writes: AtomicUsize::new(0),
    });
    (VeleroLocation::new(store.clone()), store)
}

#[tokio::test]
async fn a_location_is_listed_and_read_without_a_single_write() -> Result<(), VeleroError> {
    let dir = tempfile::tempdir().expect("tempdir");
    populate(dir.path());
    let (location, store) = location(dir.path());

    let folders = location.list_backups().await?;
    let layouts: Vec<(String, FolderLayout)> = folders
        .iter()
        .map(|f| (f.name.clone(), f.layout.clone()))
        .collect();
    let tarball_bytes = velero_tarball().len() as u64;
    assert_eq!(
        layouts,
        vec![
            (
                "Not_A_Name".to_string(),
                FolderLayout::InvalidName {
                    reason: "it is not a DNS subdomain".into()
                }
            ),
            ("arca-1".to_string(), FolderLayout::Arca),
            (
                "b1".to_string(),
                FolderLayout::Velero {
                    tarball_bytes: Some(tarball_bytes),
                    pod_volume_backups: true,
                    resource_list: true
                }
            ),
            (
                "half".to_string(),
                FolderLayout::Velero {
                    tarball_bytes: None,
                    pod_volume_backups: false,
                    resource_list: false
                }
            ),
            ("mixed".to_string(), FolderLayout::Both),
            ("stray".to_string(), FolderLayout::Unrecognized),
        ]
    );

    let backup = location.backup("b1").await?;
    assert_eq!(backup.phase, BackupPhase::Completed);
    assert_eq!(backup.included_namespaces, vec!["shop".to_string()]);
    backup.check_format()?;

    let mut stream = location.items("b1").await?;
    let mut names = Vec::new();
    while let Some(entry) = stream.next().await? {
        match entry {
            Entry::Item(item) => names.push(format!("{}/{}", item.group_resource(), item.name)),
            Entry::Refused(r) => panic!("refused {r:?}"),
        }
    }
    assert_eq!(names.len(), 5, "{names:?}");
    let summary = stream.summary().expect("summary at the end");
    assert_eq!((summary.items, summary.legacy_copies), (5, 5));
    assert!(stream.next().await?.is_none(), "the end stays the end");

    let volumes = location
        .pod_volume_backups("b1")
        .await?
        .expect("pod volume list");
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].uploader, Uploader::Kopia);
    assert_eq!(
        (
            volumes[0].pod_namespace.as_str(),
            volumes[0].pod_name.as_str(),
            volumes[0].volume.as_str()
        ),
        ("shop", "db-0", "data")
    );
    let list = location.resource_list("b1").await?.expect("resource list");
    assert_eq!(list.len(), 2);

    // What is missing is said, never invented.
    let err = location.items("half").await.expect_err("no tarball");
    assert!(
        err.to_string()
            .contains("backup half has no tarball (backups/half/half.tar.gz)"),
        "{err}"
    );
    assert!(location.pod_volume_backups("half").await?.is_none());
    assert!(location.resource_list("half").await?.is_none());
    let err = location.backup("nothing").await.expect_err("no backup");
    assert!(matches!(err, VeleroError::Missing { .. }), "{err:?}");
    for bad in ["../b1", "Not_A_Name", "", "a/b"] {
        let err = location.backup(bad).await.expect_err("bad name");
        assert!(
            matches!(err, VeleroError::InvalidName { .. }),
            "{bad}: {err:?}"
        );
        assert!(location.items(bad).await.is_err());
    }

    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        0,
        "the reader tried to write"
    );
    Ok(())
}

#[tokio::test]
async fn a_stream_dropped_midway_neither_hangs_nor_fails() -> Result<(), VeleroError> {
    let dir = tempfile::tempdir().expect("tempdir");
    // Many items: more than the stream queues.
    let mut entries = vec![version("1.1.0")];
    for i in 0..200 {
        let name = format!("cm-{i}");
        entries.extend(velero_item(
            "configmaps",
            "v1",
            Some("a"),
            &name,
            &object("v1", "ConfigMap", Some("a"), &name),
        ));
    }
    write(
        dir.path(),
        &VeleroLayout::tarball("big"),
        &tarball(&entries),
    );
    let (location, _) = location(dir.path());
    let mut stream = location.items("big").await?;
    assert!(stream.next().await?.is_some());
    drop(stream);
    Ok(())
}

#[tokio::test]
async fn hostile_parts_are_refused_with_their_limit() -> Result<(), VeleroError> {
    let dir = tempfile::tempdir().expect("tempdir");
    // A 2 MiB velero-backup.json under a 1 MiB limit; a bomb as the resource list; a
    // tarball with a symlink, read through the async stream.
    let mut padded = backup_json("b2");
    padded.insert_str(1, &format!("\"pad\":\"{}\",", "x".repeat(2 * 1024 * 1024)));
    write(dir.path(), &VeleroLayout::metadata("b2"), padded.as_bytes());
    write(
        dir.path(),
        &VeleroLayout::resource_list("b2"),
        &gzip(&vec![b' '; 4 * 1024 * 1024]),
    );
    write(
        dir.path(),
        &VeleroLayout::tarball("b2"),
        &tarball(&[
            version("1.1.0"),
            raw(
                b"resources/secrets/v1-preferredversion/namespaces/a/x.json",
                tar::EntryType::Symlink,
                b"",
            ),
        ]),
    );
    let (location, store) = location(dir.path());
    let location = location.with_limits(Limits {
        metadata_bytes: 1024 * 1024,
        list_bytes: 1024 * 1024,
        ..Limits::default()
    });
    let err = location.backup("b2").await.expect_err("too large");
    assert!(
        err.to_string()
            .contains("velero-backup.json exceeds the limit of 1048576 bytes"),
        "{err}"
    );
    let err = location.resource_list("b2").await.expect_err("bomb");
    assert!(
        err.to_string()
            .contains("the resource list, decompressed, exceeds the limit of 1048576 bytes"),
        "{err}"
    );
    let mut stream = location.items("b2").await?;
    let err = stream.next().await.expect_err("symlink");
    assert!(err.to_string().contains("it is a symbolic link"), "{err}");
    assert_eq!(store.writes.load(Ordering::SeqCst), 0);
    Ok(())
}
