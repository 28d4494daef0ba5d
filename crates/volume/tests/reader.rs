//! Arca's own restore against a tampered bucket: a flipped byte in a data pack, a pack cut
//! short, a pack gone. Each restore fails with a message that says what to do, and the
//! volume it was restoring into is left as it was (no partial files, no staging folder).

mod common;

use arca_volume::{SnapshotRequest, VolumeError, VolumeRepository};
use bytes::Bytes;
use common::{Fixture, NAMESPACE, PASSWORD, no_progress};

fn request() -> SnapshotRequest {
    SnapshotRequest {
        hostname: "node-a".into(),
        tags: vec![format!("namespace={NAMESPACE}")],
        as_path: format!("/{NAMESPACE}/db-0/data"),
    }
}

/// A backed-up volume of random data (one large data pack) and its snapshot id.
async fn backed_up(fx: &Fixture) -> (VolumeRepository, String) {
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let source = fx.folder("src");
    let mut data = vec![0u8; 3 << 20];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut data);
    std::fs::write(source.join("data.bin"), &data).expect("write");
    std::fs::write(source.join("small.txt"), b"hello").expect("write");
    let summary = repo
        .backup(&source, &request(), no_progress())
        .await
        .expect("backup");
    (repo, summary.id)
}

/// The data pack of the repository (the only pack over 1 MiB).
async fn data_pack(fx: &Fixture) -> (String, Bytes) {
    let packs = fx.store.list("volumes/shop/data/").await.expect("list");
    let pack = packs
        .iter()
        .find(|p| p.size > 1 << 20)
        .expect("a data pack");
    let body = fx.store.get(&pack.key).await.expect("get");
    (pack.key.clone(), body)
}

/// Flips one bit in the middle of the data pack, as a bucket writer could.
async fn flip_middle_byte(fx: &Fixture) {
    let (key, body) = data_pack(fx).await;
    let mut tampered = body.to_vec();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x40;
    fx.store.put(&key, tampered.into()).await.expect("put");
}

/// A volume folder with one file of its own: it must be exactly this after a failed restore.
fn volume(fx: &Fixture) -> std::path::PathBuf {
    let dest = fx.folder("volume");
    std::fs::write(dest.join("kept.txt"), b"before the restore").expect("write");
    dest
}

fn untouched(dest: &std::path::Path) {
    let names: Vec<_> = std::fs::read_dir(dest)
        .expect("read volume")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    assert_eq!(names, vec!["kept.txt"], "the volume gained entries");
    assert_eq!(
        std::fs::read(dest.join("kept.txt")).expect("read"),
        b"before the restore"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_in_a_data_pack_fails_the_restore_and_names_restic_check() {
    let fx = Fixture::new();
    let (repo, id) = backed_up(&fx).await;
    flip_middle_byte(&fx).await;
    let dest = volume(&fx);
    let err = repo
        .restore(&id, &dest, no_progress())
        .await
        .expect_err("a tampered pack restores");
    let message = err.to_string();
    println!("{message}");
    assert!(matches!(err, VolumeError::Repository { .. }), "{err:?}");
    assert!(message.contains("does not authenticate"), "{message}");
    assert!(message.contains("restic check"), "{message}");
    untouched(&dest);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pack_cut_short_or_gone_fails_the_restore_with_what_happened() {
    let fx = Fixture::new();
    let (repo, id) = backed_up(&fx).await;
    let (key, body) = data_pack(&fx).await;
    fx.store
        .put(&key, body.slice(..body.len() / 3))
        .await
        .expect("put");
    let dest = volume(&fx);
    let err = repo
        .restore(&id, &dest, no_progress())
        .await
        .expect_err("a short pack restores");
    println!("{err}");
    assert!(matches!(err, VolumeError::Repository { .. }), "{err:?}");
    untouched(&dest);

    fx.store.delete(&key).await.expect("delete");
    let err = repo
        .restore(&id, &dest, no_progress())
        .await
        .expect_err("a missing pack restores");
    let message = err.to_string();
    println!("{message}");
    assert!(
        message.contains("no object at volumes/shop/data/"),
        "{message}"
    );
    assert!(message.contains("Check the store"), "{message}");
    untouched(&dest);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_file_grown_past_any_restic_size_is_refused_unread() {
    let fx = Fixture::new();
    let (repo, id) = backed_up(&fx).await;
    // The repository's index file, grown (sparse, so the test stays cheap) past the 256 MiB
    // the agent reads whole at most: it must be refused, never allocated.
    let index = std::fs::read_dir(fx.repository_dir().join("index"))
        .expect("index folder")
        .next()
        .expect("an index file")
        .expect("entry")
        .path();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .expect("open index");
    file.set_len(arca_volume::MAX_WHOLE_FILE + 1)
        .expect("grow index");
    drop(file);
    let dest = volume(&fx);
    let err = repo
        .restore(&id, &dest, no_progress())
        .await
        .expect_err("a 256 MiB index is read");
    let message = err.to_string();
    println!("{message}");
    assert!(message.contains("larger than"), "{message}");
    assert!(message.contains("/index/"), "{message}");
    untouched(&dest);
}

/// A volume of more entries than one batch of the reader holds (8,192): 9,000 small files in
/// 30 folders, then a 3 MiB random file last in the walk's order.
async fn many_files(fx: &Fixture) -> (VolumeRepository, String, std::path::PathBuf) {
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let source = fx.folder("many");
    for i in 0..9_000 {
        let folder = source.join(format!("d{:02}", i % 30));
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(folder.join(format!("f{i}")), format!("file {i}\n")).expect("write");
    }
    let mut data = vec![0u8; 3 << 20];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut data);
    std::fs::write(source.join("zz-last.bin"), &data).expect("write");
    let summary = repo
        .backup(&source, &request(), no_progress())
        .await
        .expect("backup");
    (repo, summary.id, source)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_of_several_batches_is_restored_whole() {
    let fx = Fixture::new();
    let (repo, id, source) = many_files(&fx).await;
    let dest = fx.folder("dest");
    let summary = repo
        .restore(&id, &dest, no_progress())
        .await
        .expect("restored");
    assert_eq!(summary.files, 9_001);
    assert_eq!(common::differences(&source, &dest), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_read_in_a_later_batch_fails_the_restore_and_leaves_the_volume() {
    let fx = Fixture::new();
    let (repo, id, _) = many_files(&fx).await;
    // The small files' blobs come first in the data pack, the last file's after them: the
    // middle of the pack is the last file's, restored in the second batch.
    flip_middle_byte(&fx).await;
    let dest = volume(&fx);
    let err = repo
        .restore(&id, &dest, no_progress())
        .await
        .expect_err("a tampered pack restores");
    assert!(err.to_string().contains("does not authenticate"), "{err}");
    untouched(&dest);
}
