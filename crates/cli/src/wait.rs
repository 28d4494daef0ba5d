//! `--wait`: progress until a backup or restore ends; a bar on a terminal, lines otherwise.

use std::{io::IsTerminal, time::Duration};

/// Where a run stands, as read from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub phase: String,
    pub done: u64,
    pub total: u64,
    /// Bytes of pod volume data (done, total); (0, 0) when the run moves none.
    pub volume: (u64, u64),
    pub terminal: bool,
}

impl Snapshot {
    /// ", 1.2 GiB of 2.0 GiB of volume data" while volume data moves, else nothing.
    fn volume_note(&self) -> String {
        let (done, total) = self.volume;
        if total == 0 {
            return String::new();
        }
        format!(
            ", {} of {} of volume data",
            crate::output::bytes(done),
            crate::output::bytes(total)
        )
    }
}

/// How long a run may stay New before the user is told no operator has started it.
const NOT_STARTED_WARNING: Duration = Duration::from_secs(45);

/// Polls `read` every second, showing progress, until the run ends; returns its last state.
/// A run still New after [`NOT_STARTED_WARNING`] gets one warning line (no operator running
/// for the namespace, or one busy with other runs), and the wait goes on.
pub async fn until_done<F, Fut>(what: &str, mut read: F) -> anyhow::Result<Snapshot>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Snapshot>>,
{
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} items ({elapsed})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let mut last: Option<Snapshot> = None;
    let started = tokio::time::Instant::now();
    let mut warned = false;
    loop {
        let now = read().await?;
        if !warned && now.phase == "New" && started.elapsed() > NOT_STARTED_WARNING {
            warned = true;
            let warning = format!(
                "warning: {what} has not started after {}s: is `arca server` running (and leading) for this namespace, or busy with other runs? Still waiting (Ctrl-C stops waiting, not the run).",
                NOT_STARTED_WARNING.as_secs()
            );
            match &bar {
                Some(bar) => bar.println(warning),
                None => eprintln!("{warning}"),
            }
        }
        match &bar {
            Some(bar) => {
                bar.set_length(now.total);
                bar.set_position(now.done);
                bar.set_message(format!("{what}: {}{}", now.phase, now.volume_note()));
            }
            None => {
                if last.as_ref() != Some(&now) {
                    eprintln!(
                        "{what}: {} {}/{} items{}",
                        now.phase,
                        now.done,
                        now.total,
                        now.volume_note()
                    );
                }
            }
        }
        if now.terminal {
            if let Some(bar) = &bar {
                bar.finish();
            }
            return Ok(now);
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
