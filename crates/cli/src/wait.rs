//! `--wait`: progress until a backup or restore ends; a bar on a terminal, lines otherwise.

use std::{io::IsTerminal, time::Duration};

/// Where a run stands, as read from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub phase: String,
    pub done: u64,
    pub total: u64,
    pub terminal: bool,
}

/// Polls `read` every second, showing progress, until the run ends; returns its last state.
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
    loop {
        let now = read().await?;
        match &bar {
            Some(bar) => {
                bar.set_length(now.total);
                bar.set_position(now.done);
                bar.set_message(format!("{what}: {}", now.phase));
            }
            None => {
                if last.as_ref() != Some(&now) {
                    eprintln!("{what}: {} {}/{} items", now.phase, now.done, now.total);
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
