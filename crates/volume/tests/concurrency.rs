//! Concurrent writers to one repository (agents of several nodes backing up pods of one
//! namespace at once) must not corrupt it: every snapshot restores whole, and the plain
//! `restic check --read-data` passes, also after a later prune. A prune never runs during
//! backups: the operator's repository lock keeps them apart (rustic marks pruned packs in
//! index fields restic does not read, so a backup deduplicating against a marked pack would
//! look broken to restic until the next prune).

mod common;

use arca_volume::{SnapshotRequest, VolumeRepository};
use common::{Fixture, NAMESPACE, PASSWORD, differences, make_tree, no_progress, restic_ok};

fn request(pod: &str) -> SnapshotRequest {
    SnapshotRequest {
        as_path: format!("/{NAMESPACE}/pod/{pod}/data"),
        hostname: "arca".into(),
        tags: vec![format!("pod={pod}")],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_backups_then_a_prune_leave_every_snapshot_whole() {
    let fx = Fixture::new();
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");

    // An old snapshot, forgotten afterwards; it shares data with the others.
    let old = fx.folder("pods/old");
    make_tree(&old);
    let doomed = repo
        .backup(&old, &request("old"), no_progress())
        .await
        .expect("old backup");

    let sources: Vec<_> = (0..3)
        .map(|i| {
            let dir = fx.folder(&format!("pods/p{i}"));
            make_tree(&dir);
            std::fs::write(dir.join("own.txt"), format!("pod {i}")).expect("own file");
            dir
        })
        .collect();
    let mut tasks = Vec::new();
    for (i, dir) in sources.iter().enumerate() {
        // Each writer opens the repository on its own, as separate agents do.
        let writer = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
        let dir = dir.clone();
        tasks.push(tokio::spawn(async move {
            writer
                .backup(&dir, &request(&format!("p{i}")), no_progress())
                .await
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        written.push(task.await.expect("task").expect("backup"));
    }
    restic_ok(&fx.repository_dir(), &["check", "--read-data"]);
    let pruner = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    pruner
        .forget(std::slice::from_ref(&doomed.id))
        .await
        .expect("forget and prune");

    restic_ok(&fx.repository_dir(), &["check", "--read-data"]);
    for (i, (summary, source)) in written.iter().zip(&sources).enumerate() {
        let dest = fx.folder(&format!("restored/p{i}"));
        repo.restore(&summary.id, &dest, no_progress())
            .await
            .expect("restore");
        let diff = differences(source, &dest);
        assert!(diff.is_empty(), "snapshot of p{i} differs: {diff:?}");
    }
    let listed = repo.snapshots().await.expect("snapshots");
    assert!(!listed.iter().any(|s| s.id == doomed.id), "forgotten");
    assert_eq!(listed.len(), 3, "{listed:?}");
}
