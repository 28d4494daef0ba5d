//! Backup, restore, incremental backup and forget on a real tree, checked with the plain
//! `restic` CLI.

mod common;

use std::os::unix::fs::MetadataExt;

use arca_volume::{SnapshotRequest, VolumeRepository};
use common::{
    Fixture, NAMESPACE, PASSWORD, SPARSE_LEN, differences, make_tree, no_progress, recorder,
    restic_ok, restic_snapshot_ids,
};

fn request() -> SnapshotRequest {
    SnapshotRequest {
        as_path: format!("/{NAMESPACE}/web-0/data"),
        hostname: "arca".into(),
        tags: vec!["backup=nightly-1".into(), "volume=data".into()],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_round_trips_through_arca_and_restic() {
    let fx = Fixture::new();
    let source = fx.folder("kubelet/pods/uid-1/volumes/data");
    make_tree(&source);
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    assert!(repo.ensure_initialized().await.expect("init"), "created");
    assert!(!repo.ensure_initialized().await.expect("reopen"), "exists");

    // First backup.
    let (progress, seen) = recorder();
    let started = std::time::Instant::now();
    let first = repo
        .backup(&source, &request(), progress)
        .await
        .expect("backup");
    println!("first backup: {first:?} in {:?}", started.elapsed());
    assert_eq!(first.id.len(), 64);
    assert_eq!(first.parent, None);
    assert_eq!(first.skipped, 0, "{:?}", first.skipped_sample);
    assert!(first.files > 300, "{first:?}");
    assert!(first.bytes_uploaded > 3 << 20, "the random MBs: {first:?}");
    let last = *seen
        .lock()
        .expect("lock")
        .last()
        .expect("progress reported");
    assert_eq!(last.done, first.total_bytes, "{last:?}");
    // The total comes from a parallel scan, which also counts symlinks' own sizes.
    assert!(
        last.total >= last.done && last.total < last.done + 4096,
        "{last:?}"
    );

    // Restored by Arca into another, non-empty folder: identical, sparse stays sparse,
    // unrelated files stay.
    let dest = fx.folder("restore-arca");
    std::fs::write(dest.join("unrelated.txt"), b"keep me").expect("unrelated");
    let (progress, seen) = recorder();
    let restored = repo
        .restore(&first.id, &dest, progress)
        .await
        .expect("restore");
    println!("restore: {restored:?}");
    assert_eq!(restored.files, first.files);
    assert_eq!(restored.bytes, first.total_bytes);
    assert!(
        seen.lock()
            .expect("lock")
            .last()
            .is_some_and(|p| p.done > 0)
    );
    assert_eq!(
        std::fs::read(dest.join("unrelated.txt")).expect("unrelated kept"),
        b"keep me"
    );
    std::fs::remove_file(dest.join("unrelated.txt")).expect("rm");
    assert_eq!(differences(&source, &dest), Vec::<String>::new());
    let sparse = std::fs::metadata(dest.join("sparse.img")).expect("sparse");
    assert_eq!(sparse.len(), SPARSE_LEN);
    assert!(
        sparse.blocks() * 512 < SPARSE_LEN / 4,
        "restored sparse file allocates {} bytes for {SPARSE_LEN}",
        sparse.blocks() * 512
    );

    // The plain restic CLI reads, checks and restores the repository.
    let dir = fx.repository_dir();
    restic_ok(&dir, &["check", "--read-data"]);
    assert_eq!(restic_snapshot_ids(&dir), vec![first.id.clone()]);
    let snapshots = restic_ok(&dir, &["snapshots", "--json"]);
    assert!(snapshots.contains("/shop/web-0/data"), "{snapshots}");
    let by_restic = fx.folder("restore-restic");
    restic_ok(
        &dir,
        &[
            "restore",
            &first.id,
            "--target",
            by_restic.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(differences(&source, &by_restic), Vec::<String>::new());

    // Unchanged data: the parent is found, almost nothing is uploaded.
    let second = repo
        .backup(&source, &request(), no_progress())
        .await
        .expect("second backup");
    println!("second backup: {second:?}");
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    // rustic counts a symlink's own size when it matches the parent, 0 when new.
    assert!(second.total_bytes.abs_diff(first.total_bytes) < 4096);
    assert!(
        second.bytes_uploaded * 100 < first.bytes_uploaded,
        "second backup uploaded {} bytes, first {}",
        second.bytes_uploaded,
        first.bytes_uploaded
    );

    // A change is picked up, from the same stable path in another folder (a pod restart).
    let moved = fx.folder("kubelet/pods/uid-2/volumes/data");
    make_tree(&moved);
    std::fs::write(moved.join("dir-2/new.txt"), b"fresh").expect("new file");
    let third = repo
        .backup(&moved, &request(), no_progress())
        .await
        .expect("third backup");
    println!("third backup: {third:?}");
    assert_eq!(third.parent.as_deref(), Some(second.id.as_str()));
    assert_eq!(third.files, first.files + 1);

    // Forget: gone for restic too, and the repository still checks.
    let report = repo
        .forget(&[first.id.clone(), "0".repeat(64)])
        .await
        .expect("forget");
    println!("forget: {report:?}");
    assert_eq!(report.snapshots_removed, 1);
    let ids = restic_snapshot_ids(&dir);
    assert!(!ids.contains(&first.id), "{ids:?}");
    assert_eq!(ids.len(), 2);
    restic_ok(&dir, &["check", "--read-data"]);
    let listed = repo.snapshots().await.expect("snapshots");
    assert_eq!(
        listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![second.id.clone(), third.id.clone()]
    );
    assert_eq!(listed[0].paths, vec!["/shop/web-0/data".to_string()]);
    assert_eq!(listed[0].tags, vec!["backup=nightly-1", "volume=data"]);

    // Forgetting everything leaves a repository restic still accepts; the remaining
    // snapshot still restores after a prune.
    let report = repo
        .forget(std::slice::from_ref(&second.id))
        .await
        .expect("forget 2");
    println!("forget 2: {report:?}");
    restic_ok(&dir, &["check", "--read-data"]);
    // Data only a forgotten snapshot used is marked, not deleted: its pack stays until a
    // prune a day later, and restic accepts the repository meanwhile.
    let scratch = fx.folder("scratch");
    let mut noise = vec![0u8; 2 << 20];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut noise);
    std::fs::write(scratch.join("noise.bin"), &noise).expect("noise");
    let scratch_request = SnapshotRequest {
        as_path: format!("/{NAMESPACE}/scratch/x"),
        ..request()
    };
    let packs_before = count_files(&dir.join("data"));
    let noisy = repo
        .backup(&scratch, &scratch_request, no_progress())
        .await
        .expect("scratch backup");
    assert!(count_files(&dir.join("data")) > packs_before);
    let packs_with_noise = count_files(&dir.join("data"));
    let report = repo
        .forget(std::slice::from_ref(&noisy.id))
        .await
        .expect("forget 3");
    println!("forget 3: {report:?}");
    assert!(report.packs_marked >= 1, "{report:?}");
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    assert_eq!(
        count_files(&dir.join("data")),
        packs_with_noise,
        "marked packs are kept"
    );
    let check = restic_ok(&dir, &["check", "--read-data"]);
    println!("restic check with marked packs:\n{check}");

    let last = fx.folder("restore-after-prune");
    repo.restore(&third.id, &last, no_progress())
        .await
        .expect("restore third");
    assert_eq!(differences(&moved, &last), Vec::<String>::new());
}

fn count_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            n += count_files(&entry.path());
        } else {
            n += 1;
        }
    }
    n
}
