//! Waiting for the agents: watch the run's work items until each is Completed or Failed.

use std::{collections::BTreeMap, time::Duration};

use arca_api::PodVolumePhase;
use futures::StreamExt;
use kube::{
    Api, Resource, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;

use crate::runlog::RunLog;

/// Watches the objects labelled `selector` until those named in `expected` are terminal or
/// `timeout` has passed; returns them as last seen (others with the label, made by an earlier
/// step of the same run, are not waited for). Logs once when some stay New past `pickup`. A
/// watch, not a poll: the run learns of each change as the agent writes it, and an idle run
/// costs the apiserver nothing.
pub async fn until_done<K>(
    api: &Api<K>,
    selector: &str,
    expected: &std::collections::BTreeSet<String>,
    phase_of: impl Fn(&K) -> PodVolumePhase,
    timeout: Duration,
    pickup: Duration,
    log: &RunLog,
) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let pickup_at = tokio::time::Instant::now() + pickup;
    let mut warned = false;
    let mut seen: BTreeMap<String, K> = BTreeMap::new();
    let events = watcher(api.clone(), watcher::Config::default().labels(selector))
        .default_backoff()
        .applied_objects();
    let mut events = std::pin::pin!(events);
    loop {
        let done = seen.values().filter(|i| phase_of(i).is_terminal()).count();
        if done >= expected.len() {
            break;
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(item)) if expected.contains(&item.name_any()) => {
                    seen.insert(item.name_any(), item);
                }
                Some(Ok(_)) => {}
                // The watcher retries with backoff; a lasting failure ends at the deadline.
                Some(Err(e)) => tracing::debug!("watching work items: {e}"),
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep_until(pickup_at), if !warned => {
                warned = true;
                let waiting = seen
                    .values()
                    .filter(|i| phase_of(i) == PodVolumePhase::New)
                    .count();
                if waiting > 0 {
                    log.warn(format!(
                        "{waiting} pod volume work items are not picked up after {}s: is the node agent running (`arca install --use-node-agent`)?",
                        pickup.as_secs()
                    ));
                }
            }
        }
    }
    Ok(seen.into_values().collect())
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
