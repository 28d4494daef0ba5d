//! `arca restore-helper`: the `arca-restore-wait` init container of a restored pod. It waits
//! until the node agent has written every listed volume (a done marker in each), so the pod's
//! own containers start on restored data; a failed marker ends it with the agent's reason.
//! No API access, no network: it only looks at the mounted volumes.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::bail;
use arca_api::restore_helper::{done_marker, failed_marker};

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreHelperArgs {
    /// The Restore's uid: the markers are named after it.
    #[arg(long)]
    pub restore_uid: String,
    /// How often the volumes are looked at.
    #[arg(long, default_value = "1s")]
    pub interval: arca_api::Duration,
    /// The volumes' mount points, as the restore mounted them (`/restores/<volume>`).
    #[arg(required = true)]
    pub volumes: Vec<PathBuf>,
}

/// What one look at a volume found.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Done,
    Failed(String),
    /// The volume cannot be looked into (permissions): said once, and waited on.
    Unreadable(String),
}

fn look(volume: &Path, uid: &str) -> State {
    let failed = volume.join(failed_marker(uid));
    if let Ok(why) = std::fs::read_to_string(&failed) {
        return State::Failed(why.trim().to_string());
    }
    match std::fs::symlink_metadata(volume.join(done_marker(uid))) {
        Ok(m) if m.is_file() => State::Done,
        Ok(_) => State::Waiting,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::Waiting,
        Err(e) => State::Unreadable(e.to_string()),
    }
}

pub fn run(args: &RestoreHelperArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut said_unreadable = Vec::new();
    let mut last_report = Instant::now();
    println!(
        "arca-restore-wait: waiting for the node agent to restore {} volume(s): {}",
        args.volumes.len(),
        list(&args.volumes)
    );
    loop {
        let mut waiting = Vec::new();
        for volume in &args.volumes {
            match look(volume, &args.restore_uid) {
                State::Done => {}
                State::Failed(why) => bail!(
                    "the node agent could not restore {}: {why}. The Restore's status and `arca restore describe` say more; delete this pod to start it without the data",
                    volume.display()
                ),
                State::Unreadable(why) => {
                    if !said_unreadable.contains(volume) {
                        eprintln!(
                            "arca-restore-wait: cannot look into {}: {why}; the pod's securityContext (runAsUser, fsGroup) must let it read the volume's top folder",
                            volume.display()
                        );
                        said_unreadable.push(volume.clone());
                    }
                    waiting.push(volume.clone());
                }
                State::Waiting => waiting.push(volume.clone()),
            }
        }
        if waiting.is_empty() {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            println!(
                "arca-restore-wait: still waiting after {}s for {}",
                started.elapsed().as_secs(),
                list(&waiting)
            );
            last_report = Instant::now();
        }
        std::thread::sleep(args.interval.as_std());
    }
    // The markers are the agent's note to this container: gone once read, where the volume
    // lets this user remove them (else they stay, hidden, and harmless).
    for volume in &args.volumes {
        let marker = volume.join(done_marker(&args.restore_uid));
        if let Err(e) = std::fs::remove_file(&marker) {
            eprintln!(
                "arca-restore-wait: leaving {} in place: {e}",
                marker.display()
            );
        }
    }
    println!(
        "arca-restore-wait: every volume is restored ({}s): {}",
        started.elapsed().as_secs(),
        list(&args.volumes)
    );
    Ok(())
}

fn list(volumes: &[PathBuf]) -> String {
    volumes
        .iter()
        .map(|v| v.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_done_and_reports_failed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(look(dir.path(), "u"), State::Waiting);
        std::fs::write(dir.path().join(".arca-restore-u"), "")?;
        assert_eq!(look(dir.path(), "u"), State::Done);
        assert_eq!(
            look(dir.path(), "other"),
            State::Waiting,
            "another restore's marker"
        );
        std::fs::write(dir.path().join(".arca-restore-v.failed"), "no snapshot\n")?;
        assert_eq!(look(dir.path(), "v"), State::Failed("no snapshot".into()));
        Ok(())
    }

    #[test]
    fn a_directory_named_like_the_marker_is_not_done() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join(".arca-restore-u"))?;
        assert_eq!(look(dir.path(), "u"), State::Waiting);
        Ok(())
    }

    #[test]
    fn ends_once_every_volume_is_done_and_removes_the_markers() -> anyhow::Result<()> {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        for d in [&a, &b] {
            std::fs::write(d.path().join(".arca-restore-u"), "")?;
        }
        run(&RestoreHelperArgs {
            restore_uid: "u".into(),
            interval: arca_api::Duration::from_std(Duration::from_millis(10)),
            volumes: vec![a.path().into(), b.path().into()],
        })?;
        assert!(!a.path().join(".arca-restore-u").exists());
        assert!(!b.path().join(".arca-restore-u").exists());
        Ok(())
    }

    #[test]
    fn a_failed_volume_fails_with_the_reason() -> anyhow::Result<()> {
        let a = tempfile::tempdir()?;
        std::fs::write(a.path().join(".arca-restore-u.failed"), "snapshot gone\n")?;
        let err = run(&RestoreHelperArgs {
            restore_uid: "u".into(),
            interval: arca_api::Duration::from_std(Duration::from_millis(10)),
            volumes: vec![a.path().into()],
        })
        .expect_err("failed marker");
        assert!(err.to_string().contains("snapshot gone"), "{err}");
        Ok(())
    }
}
