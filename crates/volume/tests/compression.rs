//! `Compression::Off`: the same text stored with compression on and off. Off stores data
//! blobs as they are (the repository grows by about the text's size), still in restic's
//! format: `restic check --read-data` passes and Arca restores the same bytes.

mod common;

use std::{fs, io::Write, path::Path};

use arca_volume::{Compression, SnapshotRequest, VolumeRepository};
use common::{Fixture, NAMESPACE, PASSWORD, differences, no_progress, restic_ok};

const TEXT: usize = 8 << 20;

fn request(path: &str) -> SnapshotRequest {
    SnapshotRequest {
        as_path: format!("/{NAMESPACE}/{path}"),
        hostname: "arca".into(),
        tags: vec![],
    }
}

/// A folder of compressible text: one large log, many small files.
fn text_tree(root: &Path, seed: u32) {
    fs::create_dir_all(root.join("small")).expect("mkdir");
    let mut log = fs::File::create(root.join("app.log")).expect("log");
    let mut written = 0;
    let mut i = seed;
    while written < TEXT {
        let line = format!("2026-01-01 level=info msg=\"request served\" id={i} seed={seed}\n");
        log.write_all(line.as_bytes()).expect("line");
        written += line.len();
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
    }
    for n in 0..200 {
        fs::write(
            root.join(format!("small/{n}.conf")),
            format!("name=file-{n}-{seed}\nvalue={}\n", n * 7).repeat(40),
        )
        .expect("small");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn compression_off_stores_data_as_it_is_and_restic_reads_it() {
    let fx = Fixture::new();
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");

    // Two different trees, so the second backup cannot deduplicate against the first.
    let on = fx.folder("on");
    text_tree(&on, 1);
    let compressed = repo
        .backup(&on, &request("a/data"), no_progress())
        .await
        .expect("backup, compression auto");
    let off = fx.folder("off");
    text_tree(&off, 2);
    let stored = repo
        .clone()
        .with_compression(Compression::Off)
        .backup(&off, &request("b/data"), no_progress())
        .await
        .expect("backup, compression off");

    assert!(
        compressed.bytes_uploaded < TEXT as u64 / 4,
        "compression auto shrinks text: {compressed:?}"
    );
    assert!(
        stored.bytes_uploaded > stored.total_bytes,
        "compression off stores every byte (plus headers): {stored:?}"
    );
    assert!(
        stored.bytes_uploaded < stored.total_bytes + stored.total_bytes / 10,
        "and not much more: {stored:?}"
    );

    restic_ok(&fx.repository_dir(), &["check", "--read-data"]);
    let back = fx.folder("back");
    repo.restore(&stored.id, &back, no_progress())
        .await
        .expect("restore");
    assert_eq!(differences(&off, &back), Vec::<String>::new());
}
