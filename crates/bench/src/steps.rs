//! The measured steps, and the report.

use std::{
    fmt::Write as _,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use arca_api::{Backup, BackupPhase, Restore, RestorePhase};
use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    core::Request,
};

use crate::{secs, seed};

pub(crate) const ARCA_NS: &str = "arca-system";

struct Row {
    objects: usize,
    floor: Vec<Duration>,
    backup: Vec<Duration>,
    /// The same backup to the location with an encryption key.
    encrypted: Vec<Duration>,
    archive_bytes: u64,
    /// CPU seconds the operator used per backup.
    cpu: Vec<f64>,
}

pub async fn run_all(
    env: &arca_testenv::Environment,
    arca: &Path,
    sizes: &[usize],
    volumes: crate::volumes::Settings,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        arca.is_file(),
        "{} is missing: build it with cargo build --release -p arca",
        arca.display()
    );
    let client = env.client().await?;
    install(&client, env).await?;
    let mut server = start_server(env, arca)?;
    let pid = server.id().unwrap_or_default();
    seed::namespaces(&client, (0..seed::NAMESPACES).map(seed::namespace)).await?;

    let mut rows = Vec::new();
    let mut restore = None;
    let mut seeded = 0;
    for (step, &size) in sizes.iter().enumerate() {
        let started = Instant::now();
        seed::objects(&client, seeded..size, "").await?;
        eprintln!(
            "bench: {size} objects seeded ({} new in {}s)",
            size - seeded,
            secs(started.elapsed())
        );
        seeded = size;
        let mut row = Row {
            objects: size,
            floor: Vec::new(),
            backup: Vec::new(),
            encrypted: Vec::new(),
            archive_bytes: 0,
            cpu: Vec::new(),
        };
        for round in 0..3 {
            row.floor.push(list_floor(&client).await?);
            let cpu_before = cpu_seconds(pid);
            let (took, bytes) = backup(&client, &format!("b{step}-{round}"), None).await?;
            row.cpu.push(cpu_seconds(pid) - cpu_before);
            row.backup.push(took);
            row.archive_bytes = bytes;
            let (encrypted, _) = backup(
                &client,
                &format!("e{step}-{round}"),
                Some(ENCRYPTED_LOCATION),
            )
            .await?;
            row.encrypted.push(encrypted);
            eprintln!(
                "bench: {size}: floor {}s, backup {}s, encrypted {}s",
                secs(row.floor[round]),
                secs(took),
                secs(encrypted)
            );
        }
        rows.push(row);
        if step == 0 {
            restore = Some(restore_bench(&client, &format!("b{step}-0"), size, pid).await?);
        }
    }
    let mut out = String::new();
    if !rows.is_empty() {
        out = report(&rows, restore, peak_rss_kib(pid));
    }
    if volumes.gib > 0.0 && volumes.rounds > 0 {
        match crate::volumes::run(env, &client, arca, pid, volumes).await {
            Ok(r) => out.push_str(&crate::volumes::report(&r)),
            Err(e) => {
                let _ = server.kill().await;
                return Err(e);
            }
        }
    }
    let _ = server.kill().await;
    Ok(out)
}

/// Starts `arca server` (the measured process) against the environment, its log in
/// `logs/arca-server-bench.log`; killed when the handle drops.
pub(crate) fn start_server(
    env: &arca_testenv::Environment,
    arca: &Path,
) -> anyhow::Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(arca)
        .arg("server")
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .args([
            "--namespace",
            ARCA_NS,
            "--watch-namespace",
            ARCA_NS,
            "--metrics-bind-address",
            "none",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            env.dir.join("logs/arca-server-bench.log"),
        )?)
        .kill_on_drop(true)
        .spawn()?)
}

pub(crate) async fn install(
    client: &Client,
    env: &arca_testenv::Environment,
) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in arca_api::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("arca-bench").force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    seed::namespaces(client, std::iter::once(ARCA_NS.to_string())).await?;
    let s3 = &env.s3;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s3"},
        "stringData": {"cloud": format!("[default]\naws_access_key_id={}\naws_secret_access_key={}\n", s3.access_key_id, s3.secret_access_key)}
    }))?;
    Api::<Secret>::namespaced(client.clone(), ARCA_NS)
        .create(&PostParams::default(), &secret)
        .await?;
    let location: arca_api::BackupStorageLocation = serde_json::from_value(serde_json::json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "BackupStorageLocation",
        "metadata": {"name": "default"},
        "spec": {"provider": "aws", "default": true, "objectStorage": {"bucket": s3.bucket, "prefix": "bench"},
                 "config": {"region": s3.region, "s3Url": s3.endpoint, "s3ForcePathStyle": "true"},
                 "credential": {"name": "s3", "key": "cloud"}}
    }))?;
    Api::<arca_api::BackupStorageLocation>::namespaced(client.clone(), ARCA_NS)
        .create(&PostParams::default(), &location)
        .await?;
    // The same bucket, encrypting: what client-side encryption costs a backup.
    let key: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench-key"},
        "stringData": {"key": arca_store::Key::generate().to_base64()}
    }))?;
    Api::<Secret>::namespaced(client.clone(), ARCA_NS)
        .create(&PostParams::default(), &key)
        .await?;
    let encrypted: arca_api::BackupStorageLocation = serde_json::from_value(serde_json::json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "BackupStorageLocation",
        "metadata": {"name": ENCRYPTED_LOCATION},
        "spec": {"provider": "aws", "objectStorage": {"bucket": s3.bucket, "prefix": "bench-encrypted"},
                 "config": {"region": s3.region, "s3Url": s3.endpoint, "s3ForcePathStyle": "true"},
                 "credential": {"name": "s3", "key": "cloud"},
                 "encryption": {"keySecretRef": {"name": "bench-key", "key": "key"}}}
    }))?;
    Api::<arca_api::BackupStorageLocation>::namespaced(client.clone(), ARCA_NS)
        .create(&PostParams::default(), &encrypted)
        .await?;
    Ok(())
}

/// The location whose backups are encrypted.
const ENCRYPTED_LOCATION: &str = "encrypted";

/// A page as the floor reads it: the continue token and the items, skipped without building
/// anything (what any paginated client must at least do).
#[derive(serde::Deserialize)]
struct FloorPage {
    metadata: FloorMeta,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct FloorMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

/// The floor: a plain paginated LIST of the same resources (ConfigMaps and Secrets in every
/// namespace, 500 a page, both at once), reading every page.
async fn list_floor(client: &Client) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let list = |path: &'static str| async move {
        let mut token: Option<String> = None;
        let mut items = 0usize;
        loop {
            let mut params = ListParams::default().limit(500);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let body = client
                .request_text(Request::new(path).list(&params)?)
                .await?;
            let page: FloorPage = serde_json::from_str(&body)?;
            items += page.items.len();
            token = page.metadata.continue_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return anyhow::Ok(items);
            }
        }
    };
    let (a, b) = tokio::join!(list("/api/v1/configmaps"), list("/api/v1/secrets"));
    a?;
    b?;
    Ok(started.elapsed())
}

async fn backup(
    client: &Client,
    name: &str,
    location: Option<&str>,
) -> anyhow::Result<(Duration, u64)> {
    let api: Api<Backup> = Api::namespaced(client.clone(), ARCA_NS);
    let backup: Backup = serde_json::from_value(serde_json::json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": name},
        "spec": {"includedNamespaces": ["bench-*"], "includedResources": ["configmaps", "secrets"],
                 "storageLocation": location}
    }))?;
    let started = Instant::now();
    api.create(&PostParams::default(), &backup).await?;
    let b = finished(&api, name, |b: &Backup| {
        b.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_terminal())
    })
    .await?;
    let elapsed = started.elapsed();
    let status = b.status.unwrap_or_default();
    match status.phase {
        Some(BackupPhase::Completed) => Ok((elapsed, status.archive_bytes.unwrap_or_default())),
        p => anyhow::bail!("backup {name} ended {p:?}: {:?}", status.failure_reason),
    }
}

/// Waits until `done` holds for object `name`, watching it (the time is taken when the
/// status changes, not at the next poll), and returns it.
pub(crate) async fn finished<K>(
    api: &Api<K>,
    name: &str,
    done: impl Fn(&K) -> bool,
) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let object = kube::runtime::wait::await_condition(api.clone(), name, move |o: Option<&K>| {
        o.is_some_and(&done)
    })
    .await?;
    object.ok_or_else(|| anyhow::anyhow!("{name} was deleted while it ran"))
}

struct RestoreRow {
    items: usize,
    one_by_one: Vec<Duration>,
    ceiling: Duration,
    arca: Vec<Duration>,
    cpu: f64,
}

/// Restores the first backup into mapped namespaces, against creating the same number of
/// objects one at a time, in two interleaved rounds on fresh namespaces; and the ceiling:
/// the same objects created 128 at a time by a bare client.
async fn restore_bench(
    client: &Client,
    backup: &str,
    items: usize,
    pid: u32,
) -> anyhow::Result<RestoreRow> {
    let scratch = ["f0-", "r0-", "f1-", "r1-", "c-"];
    for prefix in scratch {
        seed::namespaces(
            client,
            (0..seed::NAMESPACES).map(|i| format!("{prefix}{}", seed::namespace(i))),
        )
        .await?;
    }
    let mut row = RestoreRow {
        items,
        one_by_one: Vec::new(),
        ceiling: Duration::ZERO,
        arca: Vec::new(),
        cpu: 0.0,
    };
    for round in 0..2 {
        let started = Instant::now();
        seed::objects_one_by_one(client, 0..items, &format!("f{round}-")).await?;
        row.one_by_one.push(started.elapsed());
        let cpu_before = cpu_seconds(pid);
        row.arca
            .push(restore(client, backup, &format!("r{round}"), &format!("r{round}-")).await?);
        row.cpu = row.cpu.max(cpu_seconds(pid) - cpu_before);
        eprintln!(
            "bench: {items} objects: one at a time {}s, Arca restore {}s",
            secs(row.one_by_one[round]),
            secs(row.arca[round])
        );
    }
    let started = Instant::now();
    seed::objects_at_once(client, 0..items, "c-", 128).await?;
    row.ceiling = started.elapsed();
    eprintln!(
        "bench: {items} objects created 128 at a time in {}s",
        secs(row.ceiling)
    );
    // Out of the way of the next, larger, backup: deleted, and gone before it starts.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..seed::NAMESPACES {
        for prefix in scratch {
            let _ = namespaces
                .delete(
                    &format!("{prefix}{}", seed::namespace(i)),
                    &DeleteParams::background(),
                )
                .await;
        }
    }
    let started = Instant::now();
    loop {
        let left = namespaces
            .list_metadata(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| {
                n.metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| scratch.iter().any(|p| name.starts_with(p)))
            })
            .count();
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "{left} scratch namespaces still terminating after 15 minutes"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!(
        "bench: scratch namespaces gone after {}s",
        secs(started.elapsed())
    );
    Ok(row)
}

/// Restores `backup` as `name`, its namespaces mapped to `<prefix>bench-…`.
async fn restore(
    client: &Client,
    backup: &str,
    name: &str,
    prefix: &str,
) -> anyhow::Result<Duration> {
    let mapping: serde_json::Map<String, serde_json::Value> = (0..seed::NAMESPACES)
        .map(|i| {
            (
                seed::namespace(i),
                serde_json::Value::from(format!("{prefix}{}", seed::namespace(i))),
            )
        })
        .collect();
    let api: Api<Restore> = Api::namespaced(client.clone(), ARCA_NS);
    let restore: Restore = serde_json::from_value(serde_json::json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "Restore",
        "metadata": {"name": name},
        "spec": {"backupName": backup, "namespaceMapping": mapping}
    }))?;
    let started = Instant::now();
    api.create(&PostParams::default(), &restore).await?;
    let r = finished(&api, name, |r: &Restore| {
        r.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_terminal())
    })
    .await?;
    let elapsed = started.elapsed();
    let status = r.status.unwrap_or_default();
    match status.phase {
        Some(RestorePhase::Completed) => Ok(elapsed),
        p => anyhow::bail!(
            "restore ended {p:?}: {:?} {:?}",
            status.failure_reason,
            status.outcomes
        ),
    }
}

/// CPU seconds (user + system) a process has used.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_default()
    };
    (ticks(11) + ticks(12)) / 100.0
}

pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn best(runs: &[Duration]) -> Duration {
    runs.iter().min().copied().unwrap_or_default()
}

fn report(rows: &[Row], restore: Option<RestoreRow>, peak_kib: Option<u64>) -> String {
    let mut out = String::from(
        "## Backup of small objects vs. the floor (a plain paginated LIST of the same resources)\n\n",
    );
    out.push_str("| objects | floor: LIST (s), best of 3 | Arca backup (s), best of 3 | ratio (target <= 1.3) | encrypted (s), best of 3 | ratio encrypted (target: within 5% of plain) | archive (MiB) | operator CPU (s) | runs (floor / backup / encrypted) |\n|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        let floor = row.floor.iter().min().copied().unwrap_or_default();
        let backup = row.backup.iter().min().copied().unwrap_or_default();
        let encrypted = row.encrypted.iter().min().copied().unwrap_or_default();
        let ratio = backup.as_secs_f64() / floor.as_secs_f64().max(0.001);
        let encrypted_ratio = encrypted.as_secs_f64() / floor.as_secs_f64().max(0.001);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {:.2} ({:+.1}%) | {:.1} | {} | {} / {} / {} |",
            row.objects,
            secs(floor),
            secs(backup),
            ratio,
            secs(encrypted),
            encrypted_ratio,
            (encrypted_ratio / ratio.max(0.001) - 1.0) * 100.0,
            row.archive_bytes as f64 / 1048576.0,
            row.cpu
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            row.floor
                .iter()
                .map(|d| secs(*d))
                .collect::<Vec<_>>()
                .join(", "),
            row.backup
                .iter()
                .map(|d| secs(*d))
                .collect::<Vec<_>>()
                .join(", "),
            row.encrypted
                .iter()
                .map(|d| secs(*d))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    if let Some(r) = restore {
        let _ = write!(
            out,
            "\n## Restore vs. creating the objects one at a time\n\nTwo interleaved rounds, each on fresh namespaces. The ceiling is what this cluster accepts at best: the same objects created 128 at a time by a bare client, with no backup read, check or transform.\n\n| objects | one at a time (s), best of 2 | Arca restore (s), best of 2 | speed-up (target >= 5) | ceiling: 128 at a time (s) | ceiling speed-up | operator CPU (s) | runs (one at a time / Arca) |\n|---|---|---|---|---|---|---|---|\n| {} | {} | {} | {:.1}x | {} | {:.1}x | {:.1} | {} / {} |\n",
            r.items,
            secs(best(&r.one_by_one)),
            secs(best(&r.arca)),
            best(&r.one_by_one).as_secs_f64() / best(&r.arca).as_secs_f64().max(0.001),
            secs(r.ceiling),
            best(&r.one_by_one).as_secs_f64() / r.ceiling.as_secs_f64().max(0.001),
            r.cpu,
            r.one_by_one
                .iter()
                .map(|d| secs(*d))
                .collect::<Vec<_>>()
                .join(", "),
            r.arca
                .iter()
                .map(|d| secs(*d))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let _ = write!(
        out,
        "\n## Operator memory\n\nPeak resident set (VmHWM) of `arca server` over the whole run, largest backup {} objects: {} MiB (target < 200).\n",
        rows.last().map(|r| r.objects).unwrap_or_default(),
        peak_kib
            .map(|k| format!("{:.0}", k as f64 / 1024.0))
            .unwrap_or_else(|| "unknown".into())
    );
    out
}
