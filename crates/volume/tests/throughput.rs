//! Prints how long backing up (and restoring) half random, half compressible data takes,
//! and how many bytes reach the store. `ARCA_VOLUME_BENCH_MB` sets the size (default 16;
//! use 200 with `--release` for a measurement: debug builds of rustic are ~10x slower).

mod common;

use std::{io::Write, time::Instant};

use arca_volume::{SnapshotRequest, VolumeRepository};
use common::{Fixture, NAMESPACE, PASSWORD, differences, no_progress};
use rand::RngCore;

#[tokio::test(flavor = "multi_thread")]
async fn backup_throughput() {
    let mb: usize = std::env::var("ARCA_VOLUME_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let fx = Fixture::new();
    let source = fx.folder("data");
    let mut rng = rand::rng();
    let mut chunk = vec![0u8; 1 << 20];
    let half = mb.div_ceil(2);
    for f in 0..half.div_ceil(8) {
        let mut random =
            std::fs::File::create(source.join(format!("random-{f}.bin"))).expect("create");
        let mut text = std::fs::File::create(source.join(format!("log-{f}.txt"))).expect("create");
        for _ in 0..8.min(half - f * 8) {
            rng.fill_bytes(&mut chunk);
            random.write_all(&chunk).expect("write");
            let mut written = 0;
            while written < chunk.len() {
                let line = format!(
                    "2026-01-01T00:00:{:02}Z level=info msg=\"request served\" id={} bytes={}\n",
                    written % 60,
                    rng.next_u32(),
                    rng.next_u32() % 10_000
                );
                text.write_all(line.as_bytes()).expect("write");
                written += line.len();
            }
        }
    }
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let request = SnapshotRequest {
        as_path: format!("/{NAMESPACE}/bench/data"),
        hostname: "arca".into(),
        tags: Vec::new(),
    };
    let started = Instant::now();
    let summary = repo
        .backup(&source, &request, no_progress())
        .await
        .expect("backup");
    let took = started.elapsed();
    println!(
        "backup of {} MB: {took:?} ({:.1} MB/s), {} bytes uploaded ({:.0}% of the data), {} bytes new",
        summary.total_bytes >> 20,
        summary.total_bytes as f64 / (1u64 << 20) as f64 / took.as_secs_f64(),
        summary.bytes_uploaded,
        summary.bytes_uploaded as f64 * 100.0 / summary.total_bytes as f64,
        summary.data_added,
    );
    let started = Instant::now();
    let again = repo
        .backup(&source, &request, no_progress())
        .await
        .expect("backup");
    println!(
        "unchanged backup: {:?}, {} bytes uploaded",
        started.elapsed(),
        again.bytes_uploaded
    );
    let dest = fx.folder("restored");
    let started = Instant::now();
    repo.restore(&summary.id, &dest, no_progress())
        .await
        .expect("restore");
    println!("restore: {:?}", started.elapsed());
    assert_eq!(differences(&source, &dest), Vec::<String>::new());
}
