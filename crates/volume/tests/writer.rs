//! Arca's own writer (`VolumeRepository::backup`) on a realistic tree: the plain `restic`
//! CLI checks every byte and restores it, Arca restores it, and its snapshots deduplicate
//! fully with those of rustic's archiver (the previous writer) in both directions.

mod common;

use std::{fs, io::Write, os::unix::fs::symlink, path::Path};

use arca_volume::{BackupWriter, SnapshotRequest, VolumeRepository};
use common::{Fixture, NAMESPACE, PASSWORD, differences, make_tree, no_progress, restic_ok};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

const BIG: usize = 16 << 20;

fn request(path: &str) -> SnapshotRequest {
    SnapshotRequest {
        as_path: format!("/{NAMESPACE}/{path}"),
        hostname: "arca".into(),
        tags: vec!["volume=data".into()],
    }
}

/// The fixture's tree plus a large random file, a large compressible file, empty files in
/// deep folders, and links to a folder, to a missing file and out of the volume.
fn realistic_tree(root: &Path) {
    make_tree(root);
    let mut rng = StdRng::seed_from_u64(11);
    let mut random = vec![0u8; BIG];
    rng.fill_bytes(&mut random);
    fs::create_dir_all(root.join("media")).expect("mkdir");
    fs::write(root.join("media/video.bin"), &random).expect("random");
    fs::create_dir_all(root.join("logs")).expect("mkdir");
    let mut log = fs::File::create(root.join("logs/app.log")).expect("log");
    let mut written = 0;
    while written < BIG {
        let line = format!(
            "2026-01-01T00:00:{:02}Z level=info msg=\"request served\" id={} bytes={}\n",
            written % 60,
            rng.random::<u32>(),
            rng.random::<u32>() % 10_000
        );
        log.write_all(line.as_bytes()).expect("log line");
        written += line.len();
    }
    fs::File::create(root.join("logs/empty.log")).expect("empty");
    fs::create_dir_all(root.join("a/b/c/d/e")).expect("deep");
    fs::File::create(root.join("a/b/c/d/e/empty")).expect("empty");
    symlink("dir-0", root.join("a/link-to-dir")).expect("symlink");
    symlink("missing-target", root.join("a/dangling")).expect("symlink");
    symlink("/etc/hostname", root.join("a/outside")).expect("symlink");
}

/// The tree id `restic snapshots --json` shows for snapshot `id`.
fn tree_of(repo: &Path, id: &str) -> String {
    let out = restic_ok(repo, &["snapshots", "--json", id]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    list[0]["tree"].as_str().expect("tree").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn restic_checks_and_restores_what_the_writer_stores() {
    let fx = Fixture::new();
    let source = fx.folder("volume");
    realistic_tree(&source);
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let started = std::time::Instant::now();
    let snap = repo
        .backup(&source, &request("web-0/data"), no_progress())
        .await
        .expect("backup");
    println!("backup: {snap:?} in {:?}", started.elapsed());
    assert_eq!(snap.skipped, 0, "{:?}", snap.skipped_sample);
    // The random MiBs are stored once, the log compressed, the sparse file's zeros once.
    assert!(snap.bytes_uploaded > BIG as u64, "{snap:?}");
    assert!(snap.bytes_uploaded < BIG as u64 * 3 / 2, "{snap:?}");

    let dir = fx.repository_dir();
    restic_ok(&dir, &["check", "--read-data"]);
    let by_restic = fx.folder("by-restic");
    let target = by_restic.to_str().expect("utf-8");
    restic_ok(&dir, &["restore", &snap.id, "--target", target]);
    assert_eq!(differences(&source, &by_restic), Vec::<String>::new());
    let by_arca = fx.folder("by-arca");
    let restored = repo
        .restore(&snap.id, &by_arca, no_progress())
        .await
        .expect("restore");
    assert_eq!(restored.files, snap.files);
    assert_eq!(differences(&source, &by_arca), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_of_both_writers_deduplicate_fully() {
    let fx = Fixture::new();
    let source = fx.folder("volume");
    realistic_tree(&source);
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let dir = fx.repository_dir();
    // Other paths: no parent, so every file is read and chunked again.
    let writers = [
        (BackupWriter::Rustic, "rustic-first"),
        (BackupWriter::Arca, "arca-second"),
        (BackupWriter::Rustic, "rustic-third"),
    ];
    let mut snaps = Vec::new();
    for (writer, path) in writers {
        let snap = repo
            .backup_with(&source, &request(path), no_progress(), writer)
            .await
            .expect("backup");
        println!("{writer:?}: {snap:?}");
        assert_eq!(snap.parent, None);
        snaps.push(snap);
    }
    assert!(snaps[0].data_added > BIG as u64);
    for later in &snaps[1..] {
        // The same chunks and the same trees: nothing new at all.
        assert_eq!(later.data_added, 0, "{later:?}");
        assert_eq!(later.total_bytes, snaps[0].total_bytes);
        assert_eq!(later.files, snaps[0].files);
    }
    let trees: Vec<_> = snaps.iter().map(|s| tree_of(&dir, &s.id)).collect();
    assert!(trees.iter().all(|t| *t == trees[0]), "{trees:?}");
    restic_ok(&dir, &["check", "--read-data"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pack_the_store_refuses_fails_the_backup_and_leaves_no_snapshot() {
    let fx = Fixture::new();
    let source = fx.folder("volume");
    make_tree(&source);
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    // A file where the packs' folder should be: the store cannot write any pack.
    let data = fx.repository_dir().join("data");
    let _ = fs::remove_dir_all(&data);
    fs::write(&data, b"in the way").expect("obstacle");
    let err = repo
        .backup(&source, &request("db-0/data"), no_progress())
        .await
        .expect_err("no pack can be stored");
    let message = err.to_string();
    println!("{message}");
    assert!(message.contains("volumes/shop/data/"), "{message}");
    assert!(
        !message.contains("stopped"),
        "the store's failure is reported: {message}"
    );
    assert!(repo.snapshots().await.expect("list").is_empty());
    assert!(
        fs::read_dir(fx.repository_dir().join("index"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "no index file names a pack that is not there"
    );
    fs::remove_file(&data).expect("remove the obstacle");
    let snap = repo
        .backup(&source, &request("db-0/data"), no_progress())
        .await
        .expect("backup once the store works");
    restic_ok(&fx.repository_dir(), &["check", "--read-data"]);
    assert_eq!(repo.snapshots().await.expect("list")[0].id, snap.id);
}

/// A backup canceled half way (from its own progress: after the first 8 MiB of a 64 MiB
/// file, so it cannot have finished) ends `Canceled` with the caller's reason, writes no
/// snapshot and no index, and leaves a repository `restic check` passes; the next backup
/// works.
#[tokio::test(flavor = "multi_thread")]
async fn a_canceled_backup_stops_writes_no_snapshot_and_the_next_one_works() {
    let fx = Fixture::new();
    let source = fx.folder("volume");
    let mut rng = StdRng::seed_from_u64(21);
    let mut random = vec![0u8; 64 << 20];
    rng.fill_bytes(&mut random);
    fs::write(source.join("big.bin"), &random).expect("random");
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let cancel = arca_volume::Cancel::new();
    let progress: arca_volume::ProgressFn = {
        let cancel = cancel.clone();
        std::sync::Arc::new(move |p: arca_volume::BytesProgress| {
            if p.done >= 8 << 20 {
                cancel.cancel();
            }
        })
    };
    let err = repo
        .clone()
        .with_cancel(cancel.clone(), "its backup was deleted")
        .backup(&source, &request("db-0/data"), progress)
        .await
        .expect_err("canceled");
    assert!(
        matches!(err, arca_volume::VolumeError::Canceled { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("its backup was deleted"), "{err}");
    assert!(repo.snapshots().await.expect("list").is_empty());
    assert!(
        fs::read_dir(fx.repository_dir().join("index"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "no index file: the packs written are named by nothing"
    );
    restic_ok(&fx.repository_dir(), &["check"]);
    // Canceled before it starts: the same.
    let err = repo
        .clone()
        .with_cancel(cancel, "its backup was deleted")
        .backup(&source, &request("db-0/data"), no_progress())
        .await
        .expect_err("canceled before it starts");
    assert!(
        matches!(err, arca_volume::VolumeError::Canceled { .. }),
        "{err:?}"
    );
    let snap = repo
        .backup(&source, &request("db-0/data"), no_progress())
        .await
        .expect("a backup without the flag");
    restic_ok(&fx.repository_dir(), &["check", "--read-data"]);
    assert_eq!(repo.snapshots().await.expect("list")[0].id, snap.id);
}
