//! Pod volume data: Arca, restic and kopia (the engine Velero uses) on the same generated
//! data, to the same S3 server, in one run. Each contestant, in each round: a first backup,
//! an unchanged backup, then a restore of the first snapshot into an empty folder, checked
//! against the data. Each round uses fresh repositories; the order of the contestants
//! rotates between rounds. See `measure.rs` for what is measured and how.

mod arca;
mod data;
mod fresh_fs;
mod kopia;
mod measure;
mod pod;
mod report;
mod restic;
mod timeline;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Instant,
};

use kube::Client;

use crate::{secs, steps::ARCA_NS};
pub use report::report;

use self::{arca::Arca, data::DataSet, kopia::Kopia, measure::Phase, restic::Restic};

/// The phases of a round, in order.
const PHASES: [&str; 3] = ["first backup", "unchanged backup", "restore"];

/// The volume benchmark's settings (`--volume-gib`, `--volume-rounds`).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// GiB of data (fractions allowed).
    pub gib: f64,
    /// Rounds; each uses fresh repositories, the contestants' order rotated.
    pub rounds: usize,
}

/// What every contestant's round works with.
struct Ctx<'a> {
    env: &'a arca_testenv::Environment,
    client: Client,
    data: DataSet,
    bucket: measure::Bucket,
    /// The S3 server (versitygw), whose CPU seconds each phase reports.
    s3_pid: Option<u32>,
    /// Scratch folders of restic and kopia (repositories' caches, restores).
    work: PathBuf,
    /// The agent's `--host-pods-dir`, laid out as kubelet's.
    pods_dir: PathBuf,
    agent_pid: u32,
    operator_pid: u32,
    /// Whether each restore gets a fresh filesystem (`fresh_fs.rs`); why not, when not.
    fresh_fs: Result<(), String>,
}

impl Ctx<'_> {
    /// A fresh filesystem for one restore, mounted at `name` in the work folder, large enough
    /// for the data; None where they cannot be made (restores then use the work folder).
    fn restore_fs(&self, name: &str) -> anyhow::Result<Option<fresh_fs::FreshFs>> {
        if self.fresh_fs.is_err() {
            return Ok(None);
        }
        let bytes = self.data.bytes + self.data.bytes / 4 + (512 << 20);
        fresh_fs::FreshFs::create(&self.work.join(name), bytes).map(Some)
    }
}

/// One side of the comparison. An Arca variant (another location setting) is one more
/// `Contestant::Arca(Arca::variant(..))` in [`contestants`].
#[derive(Debug)]
enum Contestant {
    Arca(Arca),
    Restic(Restic),
    Kopia(Kopia),
}

/// The contestants, in the first round's order. An Arca variant is one more line, e.g.
/// (with a made-up setting) `Contestant::Arca(Arca::variant("Arca, no compression",
/// "nocomp", json!({"config": {"compression": "off"}})))`: its own location, repository
/// and rows in the report, its own ratios against the targets.
fn contestants() -> Vec<Contestant> {
    vec![
        Contestant::Arca(Arca::default_location()),
        Contestant::Arca(Arca::compression_off()),
        Contestant::Restic(Restic),
        Contestant::Kopia(Kopia),
    ]
}

impl Contestant {
    fn label(&self) -> &str {
        match self {
            Self::Arca(a) => &a.label,
            Self::Restic(_) => "restic",
            Self::Kopia(_) => "kopia",
        }
    }

    async fn install(&self, ctx: &Ctx<'_>) -> anyhow::Result<()> {
        match self {
            Self::Arca(a) => a.install(ctx).await,
            Self::Restic(_) | Self::Kopia(_) => Ok(()),
        }
    }

    async fn round(&self, ctx: &Ctx<'_>, round: usize) -> anyhow::Result<[Phase; 3]> {
        match self {
            Self::Arca(a) => a.round(ctx, round).await,
            Self::Restic(r) => r.round(ctx, round).await,
            Self::Kopia(k) => k.round(ctx, round).await,
        }
    }
}

/// One contestant's round.
#[derive(Debug)]
struct Record {
    label: String,
    /// An Arca contestant's first-backup target (a multiple of kopia's throughput); `None`
    /// for the peers.
    first_target: Option<f64>,
    round: usize,
    /// Its place in the round's order (0: first).
    slot: usize,
    phases: [Phase; 3],
}

/// What the volume benchmark found.
#[derive(Debug)]
pub struct VolumeReport {
    bytes: u64,
    files: u64,
    rounds: usize,
    /// The labels, in the first round's order.
    labels: Vec<String>,
    records: Vec<Record>,
    restic_version: String,
    kopia_version: String,
    /// Whether the agent's peak could be reset before each phase.
    agent_peak_per_phase: bool,
    /// Whether each restore had a fresh filesystem; why not, when not.
    fresh_fs: Result<(), String>,
}

/// Runs the volume benchmark; the operator (`operator_pid`) must be running in
/// `arca-system` with location `default` on the test bucket.
pub async fn run(
    env: &arca_testenv::Environment,
    client: &Client,
    arca: &Path,
    operator_pid: u32,
    settings: Settings,
) -> anyhow::Result<VolumeReport> {
    let work = measure::fresh_dir(env.dir.join("volume-bench"))?;
    let started = Instant::now();
    let data = DataSet::generate(&work.join("data"), settings.gib)?;
    eprintln!(
        "bench: {} MiB in {} files generated in {}s",
        data.bytes >> 20,
        data.files,
        secs(started.elapsed())
    );
    let pods_dir = env.dir.join("kubelet-pods");
    std::fs::create_dir_all(&pods_dir)?;
    // The node agent lives through every round: its peak is reset before each phase.
    let mut agent = tokio::process::Command::new(arca)
        .arg("agent")
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .args([
            "--namespace",
            ARCA_NS,
            "--node-name",
            &node_name(client).await?,
        ])
        .arg(format!("--host-pods-dir={}", pods_dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            env.dir.join("logs/arca-agent-bench.log"),
        )?)
        .kill_on_drop(true)
        .spawn()?;
    let agent_pid = agent.id().unwrap_or_default();
    let s3_pid = std::fs::read_to_string(env.dir.join("pids/versitygw.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let fresh_fs = fresh_fs::probe(&work);
    if let Err(why) = &fresh_fs {
        eprintln!("bench: restores run on the work folder's filesystem: {why}");
    }
    let ctx = Ctx {
        fresh_fs,
        env,
        client: client.clone(),
        data,
        bucket: measure::Bucket::new(env).await?,
        s3_pid,
        work: work.clone(),
        pods_dir,
        agent_pid,
        operator_pid,
    };
    let restic_version = Restic::version().await?;
    let kopia_version = Kopia::version(env).await?;
    let contestants = contestants();
    for c in &contestants {
        c.install(&ctx).await?;
    }
    let mut records = Vec::new();
    for round in 0..settings.rounds {
        let n = contestants.len();
        for slot in 0..n {
            let c = &contestants[(slot + round) % n];
            let phases = c.round(&ctx, round).await?;
            eprintln!(
                "bench: round {round}, {}: first {}s, unchanged {}s, restore {}s",
                c.label(),
                secs(phases[0].took),
                secs(phases[1].took),
                secs(phases[2].took)
            );
            records.push(Record {
                label: c.label().to_string(),
                first_target: match c {
                    Contestant::Arca(a) => Some(a.first_vs_kopia),
                    _ => None,
                },
                round,
                slot,
                phases,
            });
        }
    }
    let agent_peak_per_phase = measure::reset_peak(agent_pid);
    let _ = agent.kill().await;
    let (bytes, files) = (ctx.data.bytes, ctx.data.files);
    let fresh_fs = ctx.fresh_fs.clone();
    drop(ctx);
    std::fs::remove_dir_all(&work)?;
    Ok(VolumeReport {
        bytes,
        files,
        rounds: settings.rounds,
        labels: contestants.iter().map(|c| c.label().to_string()).collect(),
        records,
        restic_version,
        kopia_version,
        agent_peak_per_phase,
        fresh_fs,
    })
}

/// The node the bench's pods are scheduled on (kwok's single node): the agent's.
async fn node_name(client: &Client) -> anyhow::Result<String> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let list = nodes.list(&kube::api::ListParams::default()).await?;
    anyhow::ensure!(
        list.items.len() == 1,
        "the volume bench expects one node, the cluster has {}",
        list.items.len()
    );
    Ok(list.items[0].metadata.name.clone().unwrap_or_default())
}
