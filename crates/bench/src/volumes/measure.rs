//! How each run is measured, the same way for every tool: wall time, the bytes it added to
//! the bucket (listed before and after), its peak resident memory, the CPU seconds of its
//! processes and of the S3 server, and the machine's load when it starts.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use arca_store::{ObjectStore, S3Store};
use futures::{StreamExt, TryStreamExt};

use crate::steps::cpu_seconds;

/// GNU time (Debian package `time`): the tools' peak resident set and CPU seconds, as the
/// kernel accounted them for the process and its children.
const GNU_TIME: &str = "/usr/bin/time";

/// One phase of one tool's round.
#[derive(Clone, Debug, Default)]
pub(super) struct Phase {
    pub took: Duration,
    /// Bytes under the tool's prefix in the bucket: after a first backup, all of them;
    /// after an unchanged one, what it added. None for a restore.
    pub uploaded: Option<u64>,
    /// What the tool itself says it uploaded, when it says so.
    pub reported: Option<u64>,
    /// Peak resident set of the tool's process, KiB.
    pub peak_kib: Option<u64>,
    /// A long-lived tool's (Arca's agent's) resident set when the phase started, KiB.
    pub resident_at_start_kib: Option<u64>,
    /// CPU seconds (user + system) of the tool's processes (Arca: agent and operator).
    pub cpu_tool: f64,
    /// CPU seconds of the S3 server (versitygw) during the phase.
    pub cpu_s3: f64,
    /// The 1-minute load average when the phase started.
    pub load: f64,
}

impl Phase {
    /// Adds what GNU time measured of the phase's processes: their CPU seconds, the highest
    /// of their peaks.
    pub fn add_usage<'a>(&mut self, usages: impl IntoIterator<Item = &'a Usage>) {
        for usage in usages {
            self.cpu_tool += usage.cpu;
            self.peak_kib = Some(self.peak_kib.unwrap_or(0).max(usage.max_rss_kib));
        }
    }
}

/// Runs each of `steps` with `exec`, one after another, as one phase: its time, their CPU
/// seconds and the highest peak (GNU time's); the last step's output. `tool` names the
/// steps' times, printed when there are several.
pub(super) async fn timed_steps<F, Fut>(
    tool: &str,
    s3_pid: Option<u32>,
    steps: &[&[&str]],
    exec: F,
) -> anyhow::Result<(Phase, Output)>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Output, Usage)>>,
{
    let probe = Probe::start(s3_pid, &[]).await;
    let mut runs = Vec::new();
    let mut took = Vec::new();
    for args in steps {
        let started = Instant::now();
        runs.push(exec(args.iter().map(|a| a.to_string()).collect()).await?);
        took.push(format!(
            "{} {:.2}s",
            args.first().copied().unwrap_or_default(),
            started.elapsed().as_secs_f64()
        ));
    }
    let mut phase = probe.stop();
    if steps.len() > 1 {
        eprintln!("bench: {tool} steps: {}", took.join(", "));
    }
    phase.add_usage(runs.iter().map(|(_, usage)| usage));
    let (out, _) = runs
        .pop()
        .ok_or_else(|| anyhow::anyhow!("a {tool} phase without a step"))?;
    Ok((phase, out))
}

/// The clock and the CPU counters of a phase, started before the tool starts.
#[derive(Debug)]
pub(super) struct Probe {
    started: Instant,
    load: f64,
    s3_pid: Option<u32>,
    s3_cpu: f64,
    pids: Vec<u32>,
    pids_cpu: f64,
}

impl Probe {
    /// Starts measuring, once the machine's dirty pages are written out ([`settle`]);
    /// `pids` are long-lived processes of the tool (Arca's agent and operator) whose CPU
    /// seconds count.
    pub async fn start(s3_pid: Option<u32>, pids: &[u32]) -> Self {
        settle().await;
        let load = loadavg();
        let s3_cpu = s3_pid.map(cpu_seconds).unwrap_or_default();
        let pids_cpu = pids.iter().map(|p| cpu_seconds(*p)).sum();
        Self {
            started: Instant::now(),
            load,
            s3_pid,
            s3_cpu,
            pids: pids.to_vec(),
            pids_cpu,
        }
    }

    /// The phase so far: time, load at start, CPU of the S3 server and of `pids`.
    pub fn stop(&self) -> Phase {
        let took = self.started.elapsed();
        Phase {
            took,
            load: self.load,
            cpu_s3: self.s3_pid.map(cpu_seconds).unwrap_or_default() - self.s3_cpu,
            cpu_tool: self.pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - self.pids_cpu,
            ..Phase::default()
        }
    }
}

/// Writes every dirty page out (`sync`) before a phase starts, so that no phase pays for
/// the writes of what ran before it: the generated data, or the previous tool's 2 GiB sent to
/// the S3 server (left dirty, the kernel writes them back within 30 s, during the next
/// phase). A phase still pays for its own writes.
pub(super) async fn settle() {
    match tokio::process::Command::new("sync").status().await {
        Ok(status) if status.success() => {}
        other => eprintln!("bench: `sync` before a phase failed: {other:?}"),
    }
}

/// The 1-minute load average.
pub(super) fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_default()
}

/// Resets a process's peak resident set (VmHWM) to its current one (`clear_refs` 5), so the
/// next reading is the peak of what comes after. False when the kernel refused.
pub(super) fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// A process's resident set now (VmRSS), KiB.
pub(super) fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What GNU time measured of a command.
#[derive(Debug)]
pub(super) struct Usage {
    pub max_rss_kib: u64,
    pub cpu: f64,
}

/// Runs `program args` under GNU time with `envs`; its output and usage. Fails, with its
/// stderr, when it fails.
pub(super) async fn timed(
    program: impl AsRef<OsStr>,
    args: &[&OsStr],
    envs: &[(&str, &str)],
    usage_file: &Path,
) -> anyhow::Result<(Output, Usage)> {
    let mut cmd = tokio::process::Command::new(GNU_TIME);
    cmd.arg("-o")
        .arg(usage_file)
        .args(["-f", "%M %U %S"])
        .arg(program.as_ref())
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null());
    let what = format!("{} {args:?}", program.as_ref().to_string_lossy());
    let out = cmd.output().await.map_err(|e| {
        anyhow::anyhow!("running {GNU_TIME} (Debian package `time`) for {what}: {e}")
    })?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(usage_file)?;
    let fields: Vec<f64> = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [rss, user, system] = fields[..] else {
        anyhow::bail!("{GNU_TIME} wrote {text:?} for {what}")
    };
    Ok((
        out,
        Usage {
            max_rss_kib: rss as u64,
            cpu: user + system,
        },
    ))
}

/// The test bucket, listed and cleaned with the environment's S3 credentials.
#[derive(Debug)]
pub(super) struct Bucket(S3Store);

impl Bucket {
    pub async fn new(env: &arca_testenv::Environment) -> anyhow::Result<Self> {
        Ok(Self(crate::test_bucket(env, "").await?))
    }

    /// The sum of the sizes of the objects under `prefixes` (each ending with `/`).
    pub async fn bytes(&self, prefixes: &[String]) -> anyhow::Result<u64> {
        let mut total = 0;
        for prefix in prefixes {
            total += self
                .0
                .list(prefix)
                .await?
                .iter()
                .map(|o| o.size)
                .sum::<u64>();
        }
        Ok(total)
    }

    /// Deletes every object under `prefix` (a tool's round is over: the disk is shared).
    pub async fn remove(&self, prefix: &str) -> anyhow::Result<()> {
        let keys = self.0.list(prefix).await?;
        futures::stream::iter(keys)
            .map(|o| async move { self.0.delete(&o.key).await })
            .buffer_unordered(8)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }
}

/// A folder for one tool's round, empty.
pub(super) fn fresh_dir(path: PathBuf) -> anyhow::Result<PathBuf> {
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    std::fs::create_dir_all(&path)?;
    Ok(path)
}
