//! Waiting for the agents: watch the run's work items until each is Completed or Failed.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use arca_api::{PodVolumePhase, labels};
use futures::StreamExt;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;

use super::VolumeJob;
use crate::runlog::RunLog;

/// How long a canceled run waits for the agents to confirm they stopped (their work items
/// Failed) before it goes on without them: the operator then deletes the work items, which
/// stops an agent that has not looked yet.
pub const CANCEL_GRACE: Duration = Duration::from_secs(60);

/// What the wait reads of a work item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemState {
    pub phase: PodVolumePhase,
    /// Bytes to move, as the agent last wrote.
    pub total_bytes: u64,
    /// Bytes moved so far.
    pub bytes_done: u64,
}

impl ItemState {
    /// From a work item's status: its phase (New when unset) and progress.
    pub fn of(
        phase: Option<PodVolumePhase>,
        progress: Option<&arca_api::PodVolumeProgress>,
    ) -> Self {
        Self {
            phase: phase.unwrap_or_default(),
            total_bytes: progress.map_or(0, |p| p.total_bytes),
            bytes_done: progress.map_or(0, |p| p.bytes_done),
        }
    }
}

/// (total, done) bytes over `items`. Pure.
pub fn bytes_of(items: impl Iterator<Item = ItemState>) -> (u64, u64) {
    items.fold((0, 0), |(total, done), i| {
        (
            total.saturating_add(i.total_bytes),
            done.saturating_add(i.bytes_done),
        )
    })
}

/// Watches the objects labelled `selector` until those named in `expected` are terminal or
/// the job's timeout has passed; returns them as last seen (others with the label, made by
/// an earlier step of the same run, are not waited for). Meanwhile the bytes they report are
/// summed into the job's progress (on top of what earlier rounds of the run moved). Logs once
/// when some stay New past the job's pickup warning. When the job is canceled, every item
/// not yet terminal is annotated [`labels::CANCEL`] and waited for at most
/// [`CANCEL_GRACE`] more. A watch, not a poll: the run learns of each change as the agent
/// writes it, and an idle run costs the apiserver nothing.
pub async fn until_done<K>(
    api: &Api<K>,
    selector: &str,
    expected: &BTreeSet<String>,
    job: &VolumeJob,
    read: impl Fn(&K) -> ItemState,
    log: &RunLog,
) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let mut deadline = tokio::time::Instant::now() + job.timeout;
    let pickup_at = tokio::time::Instant::now() + job.pickup_warning;
    let (base_total, base_done) = job.progress.volume();
    let mut warned = false;
    let mut canceled = false;
    let mut seen: BTreeMap<String, K> = BTreeMap::new();
    let events = watcher(api.clone(), watcher::Config::default().labels(selector))
        .default_backoff()
        .applied_objects();
    let mut events = std::pin::pin!(events);
    loop {
        let done = seen
            .values()
            .filter(|i| read(i).phase.is_terminal())
            .count();
        if done >= expected.len() {
            break;
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(item)) if expected.contains(&item.name_any()) => {
                    seen.insert(item.name_any(), item);
                    let (total, done) = bytes_of(seen.values().map(&read));
                    job.progress.set_volume(
                        base_total.saturating_add(total),
                        base_done.saturating_add(done),
                    );
                }
                Some(Ok(_)) => {}
                // The watcher retries with backoff; a lasting failure ends at the deadline.
                Some(Err(e)) => tracing::debug!("watching work items: {e}"),
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = job.cancel.cancelled(), if !canceled => {
                canceled = true;
                deadline = deadline.min(tokio::time::Instant::now() + CANCEL_GRACE);
                let running: Vec<&String> = expected
                    .iter()
                    .filter(|name| !seen.get(*name).is_some_and(|i| read(i).phase.is_terminal()))
                    .collect();
                log.warn(format!(
                    "the run is canceled: asking the node agents to stop {} pod volume work items",
                    running.len()
                ));
                for name in running {
                    ask_to_stop(api, name).await;
                }
            }
            _ = tokio::time::sleep_until(pickup_at), if !warned => {
                warned = true;
                let waiting = seen
                    .values()
                    .filter(|i| read(i).phase == PodVolumePhase::New)
                    .count();
                if waiting > 0 {
                    log.warn(format!(
                        "{waiting} pod volume work items are not picked up after {}s: is the node agent running (`arca install --use-node-agent`)?",
                        job.pickup_warning.as_secs()
                    ));
                }
            }
        }
    }
    Ok(seen.into_values().collect())
}

/// Annotates work item `name` [`labels::CANCEL`]: its agent stops the copy, or never starts
/// it. A work item already gone needs nothing.
async fn ask_to_stop<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({"metadata": {"annotations": {labels::CANCEL: "true"}}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(item = name, "asking the agent to stop: {e}"),
    }
}

/// Why a work item did not end Completed: the agent's reason when it Failed, or how long it
/// was waited for. `node` names where the agent should run ("node n1", "the pod's node").
pub fn not_done(
    what: &str,
    phase: PodVolumePhase,
    message: Option<String>,
    timeout: Duration,
    node: &str,
) -> String {
    match phase {
        PodVolumePhase::Failed | PodVolumePhase::Completed => format!(
            "{what}: {}",
            message.unwrap_or_else(|| "the agent gave no reason".into())
        ),
        phase => format!(
            "{what}: still {phase:?} after {}s (--fs-backup-timeout); is the node agent running on {node}?",
            timeout.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_summed_over_the_items() {
        let item = |total_bytes, bytes_done| ItemState {
            phase: PodVolumePhase::InProgress,
            total_bytes,
            bytes_done,
        };
        assert_eq!(bytes_of([].into_iter()), (0, 0));
        assert_eq!(
            bytes_of([item(10, 4), item(0, 0), item(5, 5)].into_iter()),
            (15, 9)
        );
        assert_eq!(
            bytes_of([item(u64::MAX, 1), item(1, 1)].into_iter()),
            (u64::MAX, 2),
            "saturates, never wraps"
        );
    }

    #[test]
    fn a_failure_gives_the_agents_reason_and_a_timeout_names_the_agent() {
        let t = Duration::from_secs(5);
        let failed = not_done(
            "v",
            PodVolumePhase::Failed,
            Some("disk gone".into()),
            t,
            "node n1",
        );
        assert_eq!(failed, "v: disk gone");
        let late = not_done("v", PodVolumePhase::New, None, t, "node n1");
        assert!(
            late.contains("still New after 5s") && late.contains("running on node n1?"),
            "{late}"
        );
    }
}
