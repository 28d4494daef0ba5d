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
