//! Compares Arca's writer with rustic's archiver on the same mixed data in one run: half in
//! 64 MiB files, half in 4-60 KiB files, each half half random and half compressible text,
//! as in the agent's profile. Prints wall time, the process's CPU time, bytes stored and
//! peak RSS for each; asserts nothing about timings. `ARCA_VOLUME_COMPARE_MB` sets the size
//! (default 32; use 512 with `--release` for a measurement); `ARCA_VOLUME_COMPARE_ONLY`
//! (`Arca` or `Rustic`) runs one of them, for a profiler.

mod common;

use std::{
    fs,
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use arca_volume::{BackupWriter, SnapshotRequest, VolumeRepository};
use common::{Fixture, PASSWORD, no_progress};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

fn generate(dir: &Path, total: u64) {
    let mut rng = StdRng::seed_from_u64(42);
    let words: Vec<String> = (0..4096)
        .map(|i| format!("{:x}{} ", rng.random::<u32>(), i % 97))
        .collect();
    let fill = |rng: &mut StdRng, buf: &mut [u8], random: bool| {
        if random {
            rng.fill_bytes(buf);
            return;
        }
        let mut at = 0;
        while at < buf.len() {
            let word = words[rng.random_range(0..words.len())].as_bytes();
            let n = word.len().min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&word[..n]);
            at += n;
        }
    };
    let large = (64u64 << 20).min(total / 2).max(1 << 20);
    let (mut written, mut files) = (0u64, 0u64);
    let mut block = vec![0u8; 1 << 20];
    while written + large <= total / 2 {
        let mut f = fs::File::create(dir.join(format!("large-{files}.bin"))).expect("create");
        for _ in 0..large >> 20 {
            fill(&mut rng, &mut block, files % 2 == 0);
            f.write_all(&block).expect("write");
        }
        written += large;
        files += 1;
    }
    while written < total {
        let sub = dir.join(format!("small/{}/{}", files % 64, files % 7));
        fs::create_dir_all(&sub).expect("mkdir");
        let mut body = vec![0u8; rng.random_range(4096..61_440)];
        fill(&mut rng, &mut body, files % 2 == 0);
        fs::write(sub.join(format!("f{files}")), &body).expect("write");
        written += body.len() as u64;
        files += 1;
    }
}

/// User + system CPU time of this process so far (/proc/self/stat, in USER_HZ = 1/100 s).
fn cpu_time() -> Duration {
    let stat = fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// The process's peak resident memory since the last reset, in MiB.
fn peak_rss_mib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb >> 10)
}

/// Bytes in each of the repository's folders that a backup writes to.
fn stored(repo: &Path) -> String {
    fn size(path: &Path) -> u64 {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::read_dir(path)
                .map(|d| d.flatten().map(|e| size(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    ["data", "index", "snapshots"]
        .map(|f| format!("{f} {}", size(&repo.join(f))))
        .join(", ")
}

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    let _ = fs::write("/proc/self/clear_refs", "5");
}

#[tokio::test(flavor = "multi_thread")]
async fn arca_writer_against_rustic_archiver() {
    let mb: u64 = std::env::var("ARCA_VOLUME_COMPARE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let fx = Fixture::new();
    let source = fx.folder("data");
    generate(&source, mb << 20);
    let request = SnapshotRequest {
        as_path: "/bench/pod/data".into(),
        hostname: "arca".into(),
        tags: Vec::new(),
    };
    let only = std::env::var("ARCA_VOLUME_COMPARE_ONLY").ok();
    let mut results = Vec::new();
    for (writer, root) in [
        (BackupWriter::Arca, "arca"),
        (BackupWriter::Rustic, "rustic"),
    ] {
        if only.as_ref().is_some_and(|o| *o != format!("{writer:?}")) {
            continue;
        }
        let repo = VolumeRepository::at_root(fx.store.clone(), root, PASSWORD.into());
        repo.ensure_initialized().await.expect("init");
        reset_peak_rss();
        let (cpu, started) = (cpu_time(), Instant::now());
        let summary = repo
            .backup_with(&source, &request, no_progress(), writer)
            .await
            .expect("backup");
        let (wall, cpu) = (started.elapsed(), cpu_time() - cpu);
        let mib = summary.total_bytes as f64 / f64::from(1 << 20);
        println!(
            "{writer:?}: {mib:.0} MiB in {} files: {wall:.2?} wall ({:.1} MiB/s), {cpu:.2?} CPU ({:.2} CPU-s per GiB), {} bytes stored ({:.1}% of the data), peak RSS {} MiB",
            summary.files,
            mib / wall.as_secs_f64(),
            cpu.as_secs_f64() * 1024.0 / mib,
            summary.bytes_uploaded,
            summary.bytes_uploaded as f64 * 100.0 / summary.total_bytes as f64,
            peak_rss_mib(),
        );
        let dir = fx.dir.path().join("objects/bucket/cluster-a").join(root);
        println!("{writer:?} stored: {}", stored(&dir));
        results.push((wall, cpu, summary));
    }
    let [arca, rustic] = &results[..] else {
        return;
    };
    println!(
        "Arca's writer: {:.2}x rustic's throughput, {:.2}x its CPU, {:.3}x its bytes stored",
        rustic.0.as_secs_f64() / arca.0.as_secs_f64(),
        arca.1.as_secs_f64() / rustic.1.as_secs_f64(),
        arca.2.bytes_uploaded as f64 / rustic.2.bytes_uploaded as f64,
    );
    assert_eq!(arca.2.total_bytes, rustic.2.total_bytes);
    assert_eq!(arca.2.files, rustic.2.files);
}
