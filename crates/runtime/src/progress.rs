//! Progress in status, at most once a second, while a backup or restore runs.

use std::{sync::Arc, time::Duration};

use arca_engine::progress::{Counts, Progress};
use kube::{Api, Resource, ResourceExt};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{sync::oneshot, task::JoinHandle};

use crate::status::apply_status;

/// A task that writes `status_for(progress)` whenever the counts change.
#[derive(Debug)]
pub struct Ticker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Ticker {
    pub fn start<K, S, F>(
        client: &kube::Client,
        object: &K,
        manager: &'static str,
        progress: Arc<Progress>,
        status_for: F,
    ) -> Self
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
        S: Serialize + Send + Sync + 'static,
        F: Fn(Counts) -> S + Send + 'static,
    {
        let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
        let name = object.name_any();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut last = Counts::default();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tick.tick() => {}
                }
                let now = progress.counts();
                if now != last {
                    last = now;
                    if let Err(e) = apply_status(&api, &name, manager, &status_for(now)).await {
                        tracing::debug!(object = %name, "progress update: {e}");
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// Stops the ticker and waits until it has, so no progress write lands after the
    /// final status.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
