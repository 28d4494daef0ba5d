//! `--index-only`: the operator's peak memory while restoring the index of a large backup,
//! side by side with its floor (the same process idle after start-up, then restoring a
//! small backup).
//!
//! Seeding hundreds of thousands of objects through the apiserver takes hours on the bench
//! machine, so the backups are written straight into the bucket by Arca's own writer
//! (`ArchiveWriter`, `BackupStore::complete`: the code path of a backup, so the checksums
//! and `backup.json` are right) before the operator starts; its storage sync makes their
//! Backup objects. Each is restored with `dryRun: true`: read, verify, plan, decode,
//! transform, and every item sent to the apiserver with `dryRun=All` (nothing is written).

use std::{
    fmt::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use arca_api::{Backup, BackupPhase, Restore, RestorePhase};
use arca_store::{
    BackupStore, ObjectStore, S3Store,
    archive::{ArchiveStats, ArchiveWriter, BackupMetadata, FORMAT_VERSION, Item, encode_frames},
};
use bytes::Bytes;
use kube::{Api, Client, api::PostParams};

use crate::{
    secs, seed,
    steps::{ARCA_NS, cpu_seconds, install, peak_rss_kib, start_server},
};

/// Items per frame: a listed page, as a backup writes them.
const PAGE: usize = 500;
/// Bytes of random text in each ConfigMap.
const PAYLOAD: usize = 256;

/// One measured point: VmHWM of the operator once the step was done.
struct Point {
    what: String,
    objects: usize,
    index_bytes: u64,
    took: Option<Duration>,
    cpu: Option<f64>,
    peak_kib: Option<u64>,
}

/// Writes the backups, starts the operator, and measures it idle, restoring `small`
/// objects, then `large` ones.
pub async fn run(
    env: &arca_testenv::Environment,
    arca: &Path,
    small: usize,
    large: usize,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        arca.is_file(),
        "{} is missing: build it with cargo build --release -p arca",
        arca.display()
    );
    let client = env.client().await?;
    install(&client, env).await?;
    seed::namespaces(&client, (0..seed::NAMESPACES).map(seed::namespace)).await?;
    let store = bucket(env).await?;
    let mut points = Vec::new();
    let mut backups = Vec::new();
    for objects in [small, large] {
        let name = format!("idx-{objects}");
        let started = Instant::now();
        let stats = write_backup(&client, &store, &name, objects).await?;
        eprintln!(
            "bench: {name}: {objects} objects written to the bucket in {}s (index {} bytes, archive {} bytes)",
            secs(started.elapsed()),
            stats.index_bytes,
            stats.archive_bytes
        );
        backups.push((name, objects, stats.index_bytes));
    }

    let mut server = start_server(env, arca)?;
    let pid = server.id().unwrap_or_default();
    for (name, _, _) in &backups {
        synced(&client, name).await?;
    }
    // Idle: started, synced, its controllers' caches filled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    points.push(Point {
        what: "idle after start-up and the storage sync".into(),
        objects: 0,
        index_bytes: 0,
        took: None,
        cpu: None,
        peak_kib: peak_rss_kib(pid),
    });
    for (name, objects, index_bytes) in &backups {
        let cpu_before = cpu_seconds(pid);
        let took = dry_run_restore(&client, name, &format!("r-{name}"), *objects).await;
        let took = match took {
            Ok(took) => took,
            Err(e) => {
                let _ = server.kill().await;
                return Err(e);
            }
        };
        eprintln!("bench: dry-run restore of {name} in {}s", secs(took));
        points.push(Point {
            what: format!("dry-run restore of {name}"),
            objects: *objects,
            index_bytes: *index_bytes,
            took: Some(took),
            cpu: Some(cpu_seconds(pid) - cpu_before),
            peak_kib: peak_rss_kib(pid),
        });
    }
    let _ = server.kill().await;
    Ok(report(&points))
}

/// The bench location's bucket and prefix, as Arca's own store.
async fn bucket(env: &arca_testenv::Environment) -> anyhow::Result<S3Store> {
    crate::test_bucket(env, "bench").await
}

/// ConfigMap `i` of the bench backups, spread over the bench namespaces.
fn config_map(i: usize) -> Item {
    let namespace = seed::namespace(i % seed::NAMESPACES);
    let name = format!("cm-{i}");
    let payload: String = (0..PAYLOAD)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    let json = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"payload": payload}
    });
    Item {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        resource: "configmaps".into(),
        namespace: Some(namespace),
        name,
        json: Bytes::from(json.to_string()),
    }
}

/// Writes backup `name` of `objects` ConfigMaps into `store` the way a backup does: frames
/// of a listed page each, the index beside them, `backup.json` last.
async fn write_backup(
    client: &Client,
    store: &dyn ObjectStore,
    name: &str,
    objects: usize,
) -> anyhow::Result<ArchiveStats> {
    let mut writer = ArchiveWriter::create(store, name).await?;
    let mut start = 0;
    while start < objects {
        let end = (start + PAGE).min(objects);
        let page: Vec<Item> = (start..end).map(config_map).collect();
        for frame in encode_frames(&page, 0)? {
            writer.append(frame).await?;
        }
        start = end;
    }
    let stats = writer.finish().await?;
    let now = "2026-01-01T00:00:00Z";
    let backup = serde_json::json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": name, "namespace": ARCA_NS},
        "spec": {"includedNamespaces": ["bench-*"], "includedResources": ["configmaps"]},
        "status": {"phase": "Completed", "startTimestamp": now, "completionTimestamp": now,
                   "itemsBackedUp": objects, "totalItems": objects}
    });
    BackupStore::new(store)
        .complete(
            name,
            &BackupMetadata {
                format_version: FORMAT_VERSION.into(),
                backup,
                stats: stats.clone(),
                cluster_version: None,
                encryption: None,
            },
            // Sealed with the operator's key, as its own backups are.
            arca_runtime::keys::ensure_seal_keys(client, ARCA_NS)
                .await?
                .current(),
        )
        .await?;
    Ok(stats)
}

/// Waits until the storage sync has made Backup `name`.
async fn synced(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Backup> = Api::namespaced(client.clone(), ARCA_NS);
    let started = Instant::now();
    loop {
        if let Some(b) = api.get_opt(name).await?
            && b.status.and_then(|s| s.phase) == Some(BackupPhase::Completed)
        {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "backup {name} was not synced from the bucket within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Restores `backup` with `dryRun: true`; fails unless every item would be created.
async fn dry_run_restore(
    client: &Client,
    backup: &str,
    name: &str,
    objects: usize,
) -> anyhow::Result<Duration> {
    let api: Api<Restore> = Api::namespaced(client.clone(), ARCA_NS);
    let restore: Restore = serde_json::from_value(serde_json::json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "Restore",
        "metadata": {"name": name},
        "spec": {"backupName": backup, "dryRun": true}
    }))?;
    let started = Instant::now();
    api.create(&PostParams::default(), &restore).await?;
    loop {
        let status = api.get(name).await?.status.unwrap_or_default();
        match status.phase {
            Some(RestorePhase::Completed) => {
                let created = status.outcomes.as_ref().map(|o| o.created);
                anyhow::ensure!(
                    created == Some(objects as u64),
                    "dry-run restore {name}: {created:?} of {objects} items would be created"
                );
                return Ok(started.elapsed());
            }
            Some(p) if p.is_terminal() => anyhow::bail!(
                "restore {name} ended {p:?}: {:?} {:?}",
                status.failure_reason,
                status.outcomes
            ),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.0}", k as f64 / 1024.0))
        .unwrap_or_else(|| "unknown".into())
}

fn report(points: &[Point]) -> String {
    let mut out = String::from(
        "## Operator memory while restoring a large index\n\nVmHWM (peak resident set) of `arca server` after each step, in order (the peak only grows). Backups of small ConfigMaps written straight into the bucket by Arca's writer, restored with `dryRun: true`.\n\n| step | objects | index (MiB, compressed) | restore (s) | operator CPU (s) | VmHWM after (MiB) |\n|---|---|---|---|---|---|\n",
    );
    for p in points {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            p.what,
            p.objects,
            if p.index_bytes > 0 {
                format!("{:.2}", p.index_bytes as f64 / 1048576.0)
            } else {
                "-".into()
            },
            p.took.map(secs).unwrap_or_else(|| "-".into()),
            p.cpu
                .map(|c| format!("{c:.1}"))
                .unwrap_or_else(|| "-".into()),
            mib(p.peak_kib),
        );
    }
    if let [_, small, large] = points
        && let (Some(s), Some(l)) = (small.peak_kib, large.peak_kib)
    {
        let _ = writeln!(
            out,
            "\nThe {}-object restore peaks {:.0} MiB above the {}-object one (target: a few tens of MiB).",
            large.objects,
            (l as f64 - s as f64) / 1024.0,
            small.objects
        );
    }
    out
}
