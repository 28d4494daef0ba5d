//! A volume the pod could write before the restore (a PersistentVolume's old contents) holds
//! links planted to make the agent, root on the node, write outside the volume. The restore
//! replaces the links with the snapshot's folders and files; nothing outside changes.

mod common;

use std::os::unix::fs::PermissionsExt;

use arca_volume::{SnapshotRequest, VolumeRepository};
use common::{Fixture, NAMESPACE, PASSWORD, no_progress};

fn request() -> SnapshotRequest {
    SnapshotRequest {
        as_path: format!("/{NAMESPACE}/db-0/data"),
        hostname: "arca".into(),
        tags: Vec::new(),
    }
}

/// Every path under `dir` with its kind, mode and contents: what "nothing changed" compares.
fn inventory(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = std::fs::symlink_metadata(&d).expect("stat");
        out.push(format!("{} {:o}", d.display(), meta.permissions().mode()));
        if meta.is_dir() {
            for e in std::fs::read_dir(&d).expect("read_dir") {
                stack.push(e.expect("entry").path());
            }
        } else if meta.is_file() {
            out.push(String::from_utf8_lossy(&std::fs::read(&d).expect("read")).into_owned());
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_links_are_replaced_and_nothing_outside_the_volume_changes() {
    let fx = Fixture::new();
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let source = fx.folder("src");
    std::fs::create_dir_all(source.join("sub/deeper")).expect("dirs");
    std::fs::write(source.join("sub/deeper/file.txt"), b"restored").expect("file");
    std::fs::write(source.join("top.txt"), b"top").expect("file");
    std::fs::set_permissions(source.join("sub"), std::fs::Permissions::from_mode(0o777))
        .expect("mode");
    let snapshot = repo
        .backup(&source, &request(), no_progress())
        .await
        .expect("backup");

    // The attacker's volume: `sub` and `top.txt` are links out of it.
    let outside = fx.folder("outside");
    std::fs::create_dir_all(outside.join("deeper")).expect("outside");
    std::fs::write(outside.join("deeper/file.txt"), b"the node's file").expect("file");
    std::fs::write(outside.join("victim.txt"), b"precious").expect("file");
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).expect("mode");
    let before = inventory(&outside);
    let dest = fx.folder("kubelet/pods/uid/volumes/kubernetes.io~local-volume/pv");
    // The volume's root as kubelet made it: open to the pod's user.
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o777)).expect("mode");
    std::os::unix::fs::symlink(&outside, dest.join("sub")).expect("link");
    std::os::unix::fs::symlink(outside.join("victim.txt"), dest.join("top.txt")).expect("link");
    std::fs::write(dest.join("unrelated.txt"), b"keep me").expect("file");

    repo.restore(&snapshot.id, &dest, no_progress())
        .await
        .expect("restore");

    assert_eq!(
        inventory(&outside),
        before,
        "nothing outside the volume changed"
    );
    let sub = std::fs::symlink_metadata(dest.join("sub")).expect("sub");
    assert!(
        sub.is_dir(),
        "the link was replaced by the snapshot's folder"
    );
    assert_eq!(sub.permissions().mode() & 0o777, 0o777);
    assert_eq!(
        std::fs::read(dest.join("sub/deeper/file.txt")).expect("restored"),
        b"restored"
    );
    let top = std::fs::symlink_metadata(dest.join("top.txt")).expect("top");
    assert!(top.is_file());
    assert_eq!(std::fs::read(dest.join("top.txt")).expect("top"), b"top");
    assert_eq!(
        std::fs::read(dest.join("unrelated.txt")).expect("kept"),
        b"keep me"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&dest)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".arca"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no staging folder left: {leftovers:?}"
    );
}
