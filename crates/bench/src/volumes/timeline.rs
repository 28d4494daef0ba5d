//! When each step of an Arca Backup or Restore is seen from outside, in seconds since it was
//! sent: its phases and those of its volume work items (PodVolumeBackups, PodVolumeRestores;
//! object timestamps are whole seconds, too coarse for a 15-second run). Printed after each
//! run, so the time around the data (noticing the run, starting the volume work, finishing)
//! can be told from the data's own.

use std::{collections::BTreeMap, fmt::Write, sync::Arc};

use arca_api::{Backup, PodVolumeBackup, PodVolumeRestore, Restore};
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

/// Watches the objects of `api` that `config` selects and records each change of
/// `phase_of` (None: just created) as `<what> <phase>`.
fn watch_phases<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    phase_of: fn(&K) -> Option<String>,
    steps: Steps,
) -> JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        let mut stream = watcher(api, config).applied_objects().boxed();
        while let Some(Ok(object)) = stream.next().await {
            let phase = phase_of(&object).unwrap_or_else(|| "created".into());
            let name = object.name_any();
            if last.get(&name) != Some(&phase) {
                steps
                    .lock()
                    .await
                    .push((Instant::now(), format!("{what} {phase}")));
                last.insert(name, phase);
            }
        }
    })
}

impl Timeline {
    /// Starts watching the Backup `name` and its PodVolumeBackups; call right before
    /// creating the Backup.
    pub(super) fn start(backups: Api<Backup>, items: Api<PodVolumeBackup>, name: &str) -> Self {
        let steps: Steps = Arc::default();
        let tasks = vec![
            watch_phases(
                backups,
                watcher::Config::default().fields(&format!("metadata.name={name}")),
                "backup",
                |b: &Backup| Some(format!("{:?}", b.status.as_ref()?.phase?)),
                steps.clone(),
            ),
            watch_phases(
                items,
                watcher::Config::default().labels(&format!("arca.dev/backup-name={name}")),
                "volume work",
                |i: &PodVolumeBackup| Some(format!("{:?}", i.status.as_ref()?.phase?)),
                steps.clone(),
            ),
        ];
        Self {
            start: Instant::now(),
            steps,
            tasks,
        }
    }

    /// Starts watching the Restore `name` and its PodVolumeRestores; call right before
    /// creating the Restore.
    pub(super) fn start_restore(
        restores: Api<Restore>,
        items: Api<PodVolumeRestore>,
        name: &str,
    ) -> Self {
        let steps: Steps = Arc::default();
        let tasks = vec![
            watch_phases(
                restores,
                watcher::Config::default().fields(&format!("metadata.name={name}")),
                "restore",
                |r: &Restore| Some(format!("{:?}", r.status.as_ref()?.phase?)),
                steps.clone(),
            ),
            watch_phases(
                items,
                watcher::Config::default().labels(&format!("arca.dev/restore-name={name}")),
                "volume work",
                |i: &PodVolumeRestore| Some(format!("{:?}", i.status.as_ref()?.phase?)),
                steps.clone(),
            ),
        ];
        Self {
            start: Instant::now(),
            steps,
            tasks,
        }
    }

    /// Records a step seen elsewhere (the restored pod scheduled and its folder made).
    pub(super) async fn mark(&self, at: Instant, what: &str) {
        self.steps.lock().await.push((at, what.to_string()));
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
        let mut steps = self.steps.lock().await;
        steps.sort_by_key(|(at, _)| *at);
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
