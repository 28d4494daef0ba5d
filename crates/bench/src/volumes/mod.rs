//! Pod volume data: the node agent (`arca agent`, release build) backing up a pod volume of
//! mixed data (large random and compressible files, thousands of small ones) to the test S3
//! server, against `restic backup` of the same folder to the same server, in one run; then
//! the same data unchanged, by both; and the agent's peak resident memory.

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use arca_api::{Backup, BackupPhase, PodVolumeBackup};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

use crate::secs;

const NS: &str = "bench-volumes";
const ARCA_NS: &str = "arca-system";

/// What one side of the comparison did.
struct Run {
    took: Duration,
    uploaded: Option<u64>,
}

pub struct VolumeReport {
    bytes: u64,
    files: u64,
    arca: [Run; 2],
    restic: [Run; 2],
    restic_version: String,
    agent_peak_kib: Option<u64>,
}

/// Runs the volume benchmark with `gib` GiB of data; the operator must be running in
/// `arca-system` with location `default` on the test bucket.
pub async fn run(
    env: &arca_testenv::Environment,
    client: &Client,
    arca: &Path,
    gib: u64,
) -> anyhow::Result<VolumeReport> {
    crate::seed::namespaces(client, std::iter::once(NS.to_string())).await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    let pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db-0", "annotations": {"backup.arca.dev/backup-volumes": "data"}},
        "spec": {"containers": [{"name": "db", "image": "db"}], "volumes": [{"name": "data", "emptyDir": {}}]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let (uid, node) = loop {
        let p = pods.get("db-0").await?;
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            break (p.uid().unwrap_or_default(), node);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pods_dir = env.dir.join("kubelet-pods");
    let data = pods_dir
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/data");
    std::fs::create_dir_all(&data)?;
    let started = Instant::now();
    let (bytes, files) = generate(&data, gib)?;
    eprintln!(
        "bench: {} MiB in {files} files generated in {}s",
        bytes >> 20,
        secs(started.elapsed())
    );

    let mut agent = tokio::process::Command::new(arca)
        .arg("agent")
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .args(["--namespace", ARCA_NS, "--node-name", &node])
        .arg(format!("--host-pods-dir={}", pods_dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            env.dir.join("logs/arca-agent-bench.log"),
        )?)
        .kill_on_drop(true)
        .spawn()?;
    let agent_pid = agent.id().unwrap_or_default();

    let first = arca_backup(client, "vol-1").await?;
    eprintln!("bench: Arca first backup {}s", secs(first.took));
    let second = arca_backup(client, "vol-2").await?;
    eprintln!("bench: Arca unchanged backup {}s", secs(second.took));
    let agent_peak_kib = crate::steps::peak_rss_kib(agent_pid);
    let _ = agent.kill().await;

    let restic = Restic::new(env);
    let restic_version = restic.run(&["version"])?.trim().to_string();
    restic.run(&["init", "--repository-version", "2"])?;
    let restic_first = restic.backup(&data)?;
    eprintln!("bench: restic first backup {}s", secs(restic_first.took));
    let restic_second = restic.backup(&data)?;
    eprintln!(
        "bench: restic unchanged backup {}s",
        secs(restic_second.took)
    );
    let _ = std::fs::remove_dir_all(&data);
    Ok(VolumeReport {
        bytes,
        files,
        arca: [first, second],
        restic: [restic_first, restic_second],
        restic_version,
        agent_peak_kib,
    })
}

/// Half the bytes in 64 MiB files (random, and text-like that compresses), half in small
/// files of 4-60 KiB in nested folders (same mix).
fn generate(dir: &Path, gib: u64) -> anyhow::Result<(u64, u64)> {
    let mut rng = StdRng::seed_from_u64(42);
    let total = gib << 30;
    let words: Vec<String> = (0..4096)
        .map(|i| format!("{:x}{} ", rng.random::<u32>(), i % 97))
        .collect();
    let fill = |rng: &mut StdRng, buf: &mut Vec<u8>, random: bool| {
        if random {
            rng.fill_bytes(buf);
        } else {
            let mut at = 0;
            while at < buf.len() {
                let w = words[rng.random_range(0..words.len())].as_bytes();
                let n = w.len().min(buf.len() - at);
                buf[at..at + n].copy_from_slice(&w[..n]);
                at += n;
            }
        }
    };
    let (mut written, mut files) = (0u64, 0u64);
    let mut chunk = vec![0u8; 1 << 20];
    while written < total / 2 {
        let mut f = std::fs::File::create(dir.join(format!("large-{files}.bin")))?;
        for _ in 0..64 {
            fill(&mut rng, &mut chunk, files % 2 == 0);
            f.write_all(&chunk)?;
        }
        written += 64 << 20;
        files += 1;
    }
    while written < total {
        let sub = dir.join(format!("small/{}/{}", files % 64, files % 7));
        std::fs::create_dir_all(&sub)?;
        let mut body = vec![0u8; rng.random_range(4096..61440)];
        fill(&mut rng, &mut body, files % 2 == 0);
        std::fs::write(sub.join(format!("f{files}")), &body)?;
        written += body.len() as u64;
        files += 1;
    }
    Ok((written, files))
}

/// A Backup of the namespace, timed from creation to Completed; the bytes the agent
/// uploaded.
async fn arca_backup(client: &Client, name: &str) -> anyhow::Result<Run> {
    let api: Api<Backup> = Api::namespaced(client.clone(), ARCA_NS);
    let backup: Backup = serde_json::from_value(serde_json::json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": name},
        "spec": {"includedNamespaces": [NS]}
    }))?;
    let started = Instant::now();
    api.create(&PostParams::default(), &backup).await?;
    let done = crate::steps::finished(&api, name, |b: &Backup| {
        b.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_terminal())
    })
    .await?;
    let took = started.elapsed();
    let status = done.status.unwrap_or_default();
    if status.phase != Some(BackupPhase::Completed) {
        anyhow::bail!(
            "backup {name} ended {:?}: {:?} (see the agent's log)",
            status.phase,
            status.failure_reason
        )
    }
    let items: Api<PodVolumeBackup> = Api::namespaced(client.clone(), ARCA_NS);
    let uploaded = items
        .list(&ListParams::default().labels(&format!("arca.dev/backup-name={name}")))
        .await?
        .items
        .iter()
        .filter_map(|i| i.status.as_ref()?.bytes_uploaded)
        .sum();
    Ok(Run {
        took,
        uploaded: Some(uploaded),
    })
}

/// The plain restic CLI on its own repository in the same bucket.
struct Restic {
    repo: String,
    cache: PathBuf,
    access_key: String,
    secret_key: String,
    region: String,
}

impl Restic {
    fn new(env: &arca_testenv::Environment) -> Self {
        let s3 = &env.s3;
        Self {
            repo: format!("s3:{}/{}/bench-restic", s3.endpoint, s3.bucket),
            cache: env.dir.join("restic-cache"),
            access_key: s3.access_key_id.clone(),
            secret_key: s3.secret_access_key.clone(),
            region: s3.region.clone(),
        }
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new("restic")
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("RESTIC_PASSWORD", "bench")
            .args(["-r", &self.repo, "--cache-dir"])
            .arg(&self.cache)
            .arg("-o")
            .arg(format!("s3.region={}", self.region))
            .args(args)
            .output()
            .map_err(|e| anyhow::anyhow!("running restic (Debian package `restic`): {e}"))?;
        anyhow::ensure!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn backup(&self, dir: &Path) -> anyhow::Result<Run> {
        let started = Instant::now();
        let out = self.run(&[
            "backup",
            "--json",
            "--host",
            "bench",
            &dir.display().to_string(),
        ])?;
        let took = started.elapsed();
        let uploaded = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .and_then(|v| v["data_added"].as_u64());
        Ok(Run { took, uploaded })
    }
}

fn mib_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1048576.0 / took.as_secs_f64().max(0.001)
}

fn mib(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.1}", b as f64 / 1048576.0))
        .unwrap_or_else(|| "?".into())
}

pub fn report(r: &VolumeReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "\n## Pod volume backup vs. restic\n\n{:.2} GiB in {} files (half in 64 MiB files, half in 4-60 KiB files; half random, half compressible text), one pod volume, to the same S3 server. Arca: a Backup from creation to Completed (the node agent `arca agent` moves the data). `{}`: `restic backup` of the same folder, with its default cache.\n\n",
        r.bytes as f64 / (1u64 << 30) as f64,
        r.files,
        r.restic_version
    );
    out.push_str("| run | restic (s) | restic MiB/s | Arca (s) | Arca MiB/s | Arca / restic throughput (target >= 1) | uploaded restic / Arca (MiB) |\n|---|---|---|---|---|---|---|\n");
    for (i, label) in ["first", "unchanged"].iter().enumerate() {
        let (a, b) = (&r.restic[i], &r.arca[i]);
        let _ = writeln!(
            out,
            "| {label} | {} | {:.0} | {} | {:.0} | {:.2} | {} / {} |",
            secs(a.took),
            mib_s(r.bytes, a.took),
            secs(b.took),
            mib_s(r.bytes, b.took),
            a.took.as_secs_f64() / b.took.as_secs_f64().max(0.001),
            mib(a.uploaded),
            mib(b.uploaded),
        );
    }
    let _ = write!(
        out,
        "\nArca's unchanged backup is {:.1}x faster than its first (target >= 10). Peak resident set (VmHWM) of `arca agent`: {} MiB (target < 300).\n",
        r.arca[0].took.as_secs_f64() / r.arca[1].took.as_secs_f64().max(0.001),
        r.agent_peak_kib
            .map(|k| format!("{:.0}", k as f64 / 1024.0))
            .unwrap_or_else(|| "unknown".into())
    );
    out
}
