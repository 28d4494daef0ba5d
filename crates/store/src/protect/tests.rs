use super::*;
use crate::FsStore;

fn stores() -> (tempfile::TempDir, Arc<dyn ObjectStore>, EncryptedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs: Arc<dyn ObjectStore> = Arc::new(FsStore::new(dir.path(), "bucket", "p").expect("fs"));
    let ring = KeyRing::new(Key::from_bytes([1; 32]), vec![], "Secret ns/enc");
    let encrypted = EncryptedStore::new(fs.clone(), ring);
    (dir, fs, encrypted)
}

async fn read(store: &dyn ObjectStore, key: &str, range: Option<Range<u64>>) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .reader(key, range)
        .await
        .expect("reader")
        .read_to_end(&mut out)
        .await
        .expect("read");
    out
}

#[tokio::test]
async fn a_backups_objects_are_stored_encrypted_and_read_back_whole_or_by_range() {
    let (_dir, raw, store) = stores();
    let key = Layout::backup_archive("b");
    let plain: Vec<u8> = (0..5 * SEGMENT + 333)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let mut writer = store.writer(&key).await.expect("writer");
    for chunk in plain.chunks(10_000) {
        writer
            .write(Bytes::copy_from_slice(chunk))
            .await
            .expect("write");
    }
    assert_eq!(writer.finish().await.expect("finish"), plain.len() as u64);
    let stored = raw.get(&key).await.expect("raw");
    assert!(stored.starts_with(MAGIC));
    assert!(
        !stored
            .windows(64)
            .any(|w| plain.windows(64).next() == Some(w))
    );
    assert_eq!(read(&store, &key, None).await, plain);
    for range in [
        0..1,
        65_530..65_540,
        2 * SEGMENT as u64..4 * SEGMENT as u64 + 5,
    ] {
        let got = read(&store, &key, Some(range.clone())).await;
        assert_eq!(
            got,
            plain[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
    store
        .put(&Layout::backup_results("b"), Bytes::from_static(b"{}"))
        .await
        .expect("put");
    assert_eq!(
        &store.get(&Layout::backup_results("b")).await.expect("get")[..],
        b"{}"
    );
    assert_ne!(
        &raw.get(&Layout::backup_results("b")).await.expect("raw")[..],
        b"{}"
    );
}

#[tokio::test]
async fn backup_json_volumes_json_and_repositories_stay_as_they_are() {
    let (_dir, raw, store) = stores();
    for key in [
        Layout::backup_metadata("b"),
        Layout::backup_volumes("b"),
        "volumes/ns/config".to_string(),
    ] {
        store
            .put(&key, Bytes::from_static(b"plain"))
            .await
            .expect("put");
        assert_eq!(&raw.get(&key).await.expect("raw")[..], b"plain", "{key}");
        assert_eq!(&store.get(&key).await.expect("get")[..], b"plain", "{key}");
    }
}

#[tokio::test]
async fn a_wrong_key_or_a_plaintext_object_is_refused_naming_the_secret() {
    let (_dir, raw, store) = stores();
    let key = Layout::backup_index("b");
    store
        .put(&key, Bytes::from_static(b"secret"))
        .await
        .expect("put");
    let other = EncryptedStore::new(
        raw.clone(),
        KeyRing::new(Key::from_bytes([2; 32]), vec![], "Secret ns/new"),
    );
    let e = other.get(&key).await.expect_err("wrong key");
    assert!(e.to_string().contains("Secret ns/new"), "{e}");
    let rotated = EncryptedStore::new(
        raw.clone(),
        KeyRing::new(
            Key::from_bytes([2; 32]),
            vec![Key::from_bytes([1; 32])],
            "s",
        ),
    );
    assert_eq!(
        &rotated.get(&key).await.expect("old key kept")[..],
        b"secret"
    );
    raw.put(&key, Bytes::from_static(b"plaintext put there"))
        .await
        .expect("raw put");
    let e = store.get(&key).await.expect_err("not encrypted");
    assert!(e.to_string().contains("not encrypted"), "{e}");
}
