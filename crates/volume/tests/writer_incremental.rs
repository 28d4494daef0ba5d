//! Incremental backups with Arca's writer: an unchanged volume reads no file and adds no
//! data; one changed byte in a large file adds about one chunk. Bytes read are measured by
//! the kernel (`rchar` of /proc/self/io), so this file holds one test: nothing else reads
//! in the process meanwhile.

mod common;

use std::{fs, os::unix::fs::FileExt};

use arca_volume::{SnapshotRequest, VolumeRepository};
use common::{Fixture, NAMESPACE, PASSWORD, differences, make_tree, no_progress, restic_ok};
use rand::{RngCore, SeedableRng, rngs::StdRng};

const BIG: usize = 16 << 20;

/// Bytes this process has read through read(2) and friends so far.
fn bytes_read() -> u64 {
    let io = fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("rchar")
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_files_are_not_read_and_a_changed_byte_adds_one_chunk() {
    let fx = Fixture::new();
    let source = fx.folder("volume");
    make_tree(&source);
    let mut big = vec![0u8; BIG];
    StdRng::seed_from_u64(5).fill_bytes(&mut big);
    fs::write(source.join("big.bin"), &big).expect("big");
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let request = SnapshotRequest {
        as_path: format!("/{NAMESPACE}/db-0/data"),
        hostname: "arca".into(),
        tags: Vec::new(),
    };
    let first = repo
        .backup(&source, &request, no_progress())
        .await
        .expect("first");
    println!("first: {first:?}");

    let before = bytes_read();
    let second = repo
        .backup(&source, &request, no_progress())
        .await
        .expect("second");
    let read = bytes_read() - before;
    println!("unchanged: {second:?}, {read} bytes read in all");
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    assert_eq!(second.data_added, 0, "no blob, not even a tree");
    assert_eq!(second.total_bytes, first.total_bytes);
    assert_eq!(second.files, first.files);
    // The repository's index, trees and snapshot list only: no file's contents.
    assert!(
        read < 1 << 20,
        "{read} bytes read for {}",
        first.total_bytes
    );

    // One byte in the middle of the large file.
    let file = fs::OpenOptions::new()
        .write(true)
        .open(source.join("big.bin"))
        .expect("open");
    file.write_all_at(&[!big[BIG / 2]], (BIG / 2) as u64)
        .expect("change a byte");
    drop(file);
    let before = bytes_read();
    let third = repo
        .backup(&source, &request, no_progress())
        .await
        .expect("third");
    let read = bytes_read() - before;
    println!("one byte changed: {third:?}, {read} bytes read in all");
    assert_eq!(third.parent.as_deref(), Some(second.id.as_str()));
    assert!(third.data_added > 0);
    // The chunk holding the byte and the trees above it: 1 MiB on average, 8 MiB at most
    // (where the chunks end depends on the repository's random polynomial).
    assert!(third.data_added <= (8 << 20) + (64 << 10), "{third:?}");
    assert!(
        read >= BIG as u64 && read < BIG as u64 + (1 << 20),
        "only big.bin is read"
    );

    let dir = fx.repository_dir();
    restic_ok(&dir, &["check", "--read-data"]);
    let restored = fx.folder("restored");
    repo.restore(&third.id, &restored, no_progress())
        .await
        .expect("restore");
    assert_eq!(differences(&source, &restored), Vec::<String>::new());
}
