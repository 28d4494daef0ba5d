//! Waiting for the agents: poll the run's work items until each is Completed or Failed.

use std::time::{Duration, Instant};

use arca_api::PodVolumePhase;
use kube::{Api, Resource, api::ListParams};
use serde::de::DeserializeOwned;

use crate::runlog::RunLog;

/// A label-selected list in one namespace: cheap enough to ask often, and the backup ends
/// close to when its last volume does.
const POLL: Duration = Duration::from_millis(200);

/// Polls the objects labelled `selector` until `expected` of them are terminal or `timeout`
/// has passed; returns them as last seen. Logs once when some stay New past `pickup`.
pub async fn until_done<K>(
    api: &Api<K>,
    selector: &str,
    expected: usize,
    phase_of: impl Fn(&K) -> PodVolumePhase,
    timeout: Duration,
    pickup: Duration,
    log: &RunLog,
) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let start = Instant::now();
    let mut warned = false;
    loop {
        let items = api
            .list(&ListParams::default().labels(selector))
            .await?
            .items;
        let done = items.iter().filter(|i| phase_of(i).is_terminal()).count();
        if done >= expected || start.elapsed() >= timeout {
            return Ok(items);
        }
        if !warned && start.elapsed() >= pickup {
            let waiting = items
                .iter()
                .filter(|i| phase_of(i) == PodVolumePhase::New)
                .count();
            if waiting > 0 {
                warned = true;
                log.warn(format!(
                    "{waiting} pod volume work items are not picked up after {}s: is the node agent running (`arca install --use-node-agent`)?",
                    pickup.as_secs()
                ));
            }
        }
        tokio::time::sleep(POLL).await;
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
