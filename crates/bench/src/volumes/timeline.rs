//! When each step of an Arca Backup is seen from outside, in seconds since the Backup was
//! sent: the Backup's phases and its PodVolumeBackups' (object timestamps are whole
//! seconds, too coarse for a 15-second run). Printed after each backup, so the time around
//! the data (noticing the Backup, starting the volume work, finishing) can be told from the
//! data's own.

use std::{collections::BTreeMap, fmt::Write, sync::Arc};

use arca_api::{Backup, PodVolumeBackup};
use futures::StreamExt;
use kube::{
    Api, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use tokio::{sync::Mutex, task::JoinHandle, time::Instant};

/// Steps seen: what, and when.
type Steps = Arc<Mutex<Vec<(Instant, String)>>>;

/// Watches the Backup `name` and its PodVolumeBackups from before it is created.
pub(super) struct Timeline {
    start: Instant,
    steps: Steps,
    tasks: Vec<JoinHandle<()>>,
}

impl Timeline {
    /// Starts watching; call right before creating the Backup.
    pub(super) fn start(backups: Api<Backup>, items: Api<PodVolumeBackup>, name: &str) -> Self {
        let start = Instant::now();
        let steps: Steps = Arc::default();
        let backup_steps = steps.clone();
        let backup_config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let backup_task = tokio::spawn(async move {
            let mut last = String::new();
            let mut stream = watcher(backups, backup_config).applied_objects().boxed();
            while let Some(Ok(backup)) = stream.next().await {
                let phase = backup
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|| "created".into());
                if phase != last {
                    backup_steps
                        .lock()
                        .await
                        .push((Instant::now(), format!("backup {phase}")));
                    last = phase;
                }
            }
        });
        let item_steps = steps.clone();
        let item_config =
            watcher::Config::default().labels(&format!("arca.dev/backup-name={name}"));
        let items_task = tokio::spawn(async move {
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            let mut stream = watcher(items, item_config).applied_objects().boxed();
            while let Some(Ok(item)) = stream.next().await {
                let phase = item
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|| "created".into());
                let name = item.name_any();
                if last.get(&name) != Some(&phase) {
                    item_steps
                        .lock()
                        .await
                        .push((Instant::now(), format!("volume work {phase}")));
                    last.insert(name, phase);
                }
            }
        });
        Self {
            start,
            steps,
            tasks: vec![backup_task, items_task],
        }
    }

    /// Stops watching; the steps as one line, in seconds since `origin` (when the Backup
    /// was sent; else when the watch started): `+0.012s backup created, ...`.
    pub(super) async fn finish(self, origin: Option<Instant>) -> String {
        let origin = origin.unwrap_or(self.start);
        let since = |at: Instant| at.saturating_duration_since(origin).as_secs_f64();
        let total = since(Instant::now());
        for task in &self.tasks {
            task.abort();
        }
        let steps = self.steps.lock().await;
        let mut line = String::new();
        for (at, what) in steps.iter() {
            let _ = write!(line, "+{:.3}s {what}, ", since(*at));
        }
        let _ = write!(line, "seen done at +{total:.3}s");
        line
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
