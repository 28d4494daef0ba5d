//! The volume benchmark's report: a table per phase (medians and ranges over the rounds),
//! Arca's ratios against the targets, and every run.

use std::fmt::Write as _;

use super::{PHASES, Record, VolumeReport, measure::Phase};

/// The targets: Arca's first backup at 1.2x kopia's throughput (1.3x with
/// compression off: each contestant's `first_target`), its unchanged backup at least
/// kopia's, its restore at least the faster of restic and kopia, and the agent's peak under
/// 300 MiB.
const AGENT_PEAK_MIB: f64 = 300.0;

/// Median, lowest and highest of some runs.
#[derive(Clone, Copy, Debug)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(values: impl Iterator<Item = f64>) -> Option<Spread> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = match v.len() % 2 {
        1 => v[mid],
        _ => (v[mid - 1] + v[mid]) / 2.0,
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[v.len() - 1],
    })
}

const MIB: f64 = 1048576.0;

fn mib(bytes: f64) -> String {
    match bytes / MIB {
        m if m >= 100.0 => format!("{m:.0}"),
        m => format!("{m:.2}"),
    }
}

/// The runs of `label`'s phase `phase`.
fn phases<'a>(
    r: &'a VolumeReport,
    label: &'a str,
    phase: usize,
) -> impl Iterator<Item = &'a Phase> {
    r.records
        .iter()
        .filter(move |rec| rec.label == label)
        .map(move |rec| &rec.phases[phase])
}

/// Median seconds of `label`'s phase.
fn median_secs(r: &VolumeReport, label: &str, phase: usize) -> Option<f64> {
    spread(phases(r, label, phase).map(|p| p.took.as_secs_f64())).map(|s| s.median)
}

pub fn report(r: &VolumeReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "\n## Pod volume data: Arca, restic and kopia\n\n{:.2} GiB in {} files (half in 64 MiB files, half in 4-60 KiB files in nested folders; half random, half compressible text), to the same S3 server (versitygw on this machine). {} rounds, each on fresh repositories, the order rotated between rounds (first round: {}). Arca: a Backup of the pod's namespace, then a Restore of the first into another namespace, each timed from creation to Completed, the node agent (`arca agent`) moving the data. `{}` (format 2 repository, own cache) and {} (own config and cache, defaults: no compression policy; maintenance left to a separate job as under Velero): `backup` / `snapshot create` of the same folder twice, then a restore of the first snapshot into an empty folder. Every restore is checked: file count, bytes and the sha256 of 8 files. {}\n\n",
        r.bytes as f64 / (1u64 << 30) as f64,
        r.files,
        r.rounds,
        r.labels.join(", "),
        r.restic_version,
        r.kopia_version,
        match &r.fresh_fs {
            Ok(()) => "Every restore writes into a fresh ext4 filesystem (with its journal) of its own, loop-mounted for it (Arca's: bind-mounted into the pod's volume folder, as kubelet mounts a volume).".to_string(),
            Err(why) => format!("Restores write into the work folder's filesystem: fresh filesystems could not be made ({why}); on an ext4 without a journal, a restore then pays for the files the previous one deleted."),
        },
    );
    for (i, phase) in PHASES.iter().enumerate() {
        let _ = write!(
            out,
            "### {phase}\n\n| tool | s, median (range) | MiB/s | uploaded MiB (tool's own) | peak RSS MiB, median (max) | CPU s: tool / S3 server | load at start |\n|---|---|---|---|---|---|---|\n"
        );
        for label in &r.labels {
            let Some(took) = spread(phases(r, label, i).map(|p| p.took.as_secs_f64())) else {
                continue;
            };
            let uploaded = spread(phases(r, label, i).filter_map(|p| p.uploaded.map(|b| b as f64)));
            let reported = spread(phases(r, label, i).filter_map(|p| p.reported.map(|b| b as f64)));
            let peak =
                spread(phases(r, label, i).filter_map(|p| p.peak_kib.map(|k| k as f64 * 1024.0)));
            let cpu = spread(phases(r, label, i).map(|p| p.cpu_tool));
            let cpu_s3 = spread(phases(r, label, i).map(|p| p.cpu_s3));
            let load = spread(phases(r, label, i).map(|p| p.load));
            let _ = writeln!(
                out,
                "| {label} | {:.2} ({:.2}-{:.2}) | {:.0} | {} | {} | {:.1} / {:.1} | {:.2} |",
                took.median,
                took.min,
                took.max,
                r.bytes as f64 / MIB / took.median.max(0.001),
                match (uploaded, reported) {
                    (Some(u), Some(o)) => format!("{} ({})", mib(u.median), mib(o.median)),
                    (Some(u), None) => mib(u.median),
                    _ => "-".into(),
                },
                peak.map(|p| format!("{:.0} ({:.0})", p.median / MIB, p.max / MIB))
                    .unwrap_or_else(|| "?".into()),
                cpu.map(|c| c.median).unwrap_or_default(),
                cpu_s3.map(|c| c.median).unwrap_or_default(),
                load.map(|l| l.median).unwrap_or_default(),
            );
        }
        out.push('\n');
    }
    targets(r, &mut out);
    let _ = write!(
        out,
        "\nMiB/s: the data's size over the median time. Uploaded: the objects under the tool's prefix after the first backup (Arca: its namespace's repository and the backup's own objects), and what the unchanged backup added; in brackets what the tool reports (restic's `data_added`, which restic 0.14 counts before compression; kopia's progress line; Arca's `bytesUploaded`). Peak RSS: restic and kopia as GNU time reports it (`%M`); Arca: the node agent's VmHWM, {}. CPU s: user + system seconds of the tool's processes during the phase (Arca: the agent and the operator; restic and kopia: GNU time's), and of the S3 server. Load: the 1-minute load average when the phase started (2 cores).\n",
        if r.agent_peak_per_phase {
            "reset before each phase (`/proc/<pid>/clear_refs`; the agent is long-lived, so what earlier phases left resident counts: the rows of every run show in brackets its resident set when the phase started)"
        } else {
            "since the agent started: it is long-lived, its peak covers every backup and restore before it (the kernel refused to reset it)"
        }
    );
    every_run(r, &mut out);
    out
}

/// Each Arca contestant's ratios, against the targets.
fn targets(r: &VolumeReport, out: &mut String) {
    let arcas: Vec<(&String, f64)> = r
        .labels
        .iter()
        .filter_map(|l| {
            let target = r
                .records
                .iter()
                .find(|rec| &rec.label == l)
                .and_then(|rec| rec.first_target)?;
            Some((l, target))
        })
        .collect();
    let met = |ok: bool| if ok { "met" } else { "not met" };
    for (arca, first_target) in arcas {
        let ratio =
            |peer: Option<f64>, phase: usize| Some(peer? / median_secs(r, arca, phase)?.max(0.001));
        let first = ratio(median_secs(r, "kopia", 0), 0);
        let first_restic = ratio(median_secs(r, "restic", 0), 0);
        let unchanged = ratio(median_secs(r, "kopia", 1), 1);
        let faster_peer = |phase| match (
            median_secs(r, "restic", phase),
            median_secs(r, "kopia", phase),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let restore = ratio(faster_peer(2), 2);
        let peak = r
            .records
            .iter()
            .filter(|rec| &rec.label == arca)
            .flat_map(|rec| rec.phases.iter().filter_map(|p| p.peak_kib))
            .max()
            .map(|k| k as f64 / 1024.0);
        let show = |x: Option<f64>| x.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "?".into());
        let _ = writeln!(out, "{arca}, medians against the peers:");
        let _ = writeln!(
            out,
            "- first backup: {} kopia's throughput (target >= {first_target}x): target {}; {} restic's",
            show(first),
            met(first.is_some_and(|x| x >= first_target)),
            show(first_restic),
        );
        let _ = writeln!(
            out,
            "- unchanged backup: {} kopia's (target >= 1x): target {}",
            show(unchanged),
            met(unchanged.is_some_and(|x| x >= 1.0)),
        );
        let _ = writeln!(
            out,
            "- restore: {} the faster of restic and kopia (target >= 1x): target {}",
            show(restore),
            met(restore.is_some_and(|x| x >= 1.0)),
        );
        let _ = writeln!(
            out,
            "- agent peak over all phases and rounds: {} MiB (target < {AGENT_PEAK_MIB:.0}): target {}",
            peak.map(|p| format!("{p:.0}"))
                .unwrap_or_else(|| "?".into()),
            met(peak.is_some_and(|p| p < AGENT_PEAK_MIB)),
        );
    }
}

/// Every run, in the order they ran.
fn every_run(r: &VolumeReport, out: &mut String) {
    out.push_str("\n### Every run\n\n| round | order | tool | phase | s | MiB/s | uploaded MiB (tool's own) | peak RSS MiB | CPU s: tool / S3 | load |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let mut records: Vec<&Record> = r.records.iter().collect();
    records.sort_by_key(|rec| (rec.round, rec.slot));
    for rec in records {
        for (i, p) in rec.phases.iter().enumerate() {
            let secs = p.took.as_secs_f64();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {secs:.2} | {:.0} | {} | {} | {:.1} / {:.1} | {:.2} |",
                rec.round + 1,
                rec.slot + 1,
                rec.label,
                PHASES[i],
                r.bytes as f64 / MIB / secs.max(0.001),
                match (p.uploaded, p.reported) {
                    (Some(u), Some(o)) => format!("{} ({})", mib(u as f64), mib(o as f64)),
                    (Some(u), None) => mib(u as f64),
                    _ => "-".into(),
                },
                match (p.peak_kib, p.resident_at_start_kib) {
                    (Some(k), Some(s)) =>
                        format!("{:.0} (from {:.0})", k as f64 / 1024.0, s as f64 / 1024.0),
                    (Some(k), None) => format!("{:.0}", k as f64 / 1024.0),
                    _ => "?".into(),
                },
                p.cpu_tool,
                p.cpu_s3,
                p.load,
            );
        }
    }
}
