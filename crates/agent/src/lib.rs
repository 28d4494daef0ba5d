//! The node agent (`arca agent`): one per node (a DaemonSet). It takes the
//! `PodVolumeBackup`s and `PodVolumeRestore`s of pods on its node and moves their data
//! between kubelet's pod folders and the namespaces' restic-format repositories.
//!
//! - It works only in the operator's namespace: tenants cannot create work for it.
//! - Work it had InProgress when it stopped is marked Failed at its next start: a half-read
//!   volume is never reported Completed.

mod backup;
mod folders;
mod markers;
mod restore;
mod work;

use std::{path::PathBuf, sync::Arc, time::Duration};

use arca_api::{PodVolumeBackup, PodVolumePhase, PodVolumeRestore};
use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{Controller, controller, watcher},
};

pub use folders::{FolderError, volume_folder};

/// Flags of `arca agent`.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// This node's name: the agent takes the work of pods on it only.
    pub node_name: String,
    /// kubelet's pods folder as the agent sees it (`/var/lib/kubelet/pods` mounted in).
    pub host_pods_dir: PathBuf,
    /// The operator's namespace, where the work items are.
    pub namespace: String,
    /// Volumes moved at once.
    pub concurrency: u16,
    /// How long a restore waits for kubelet to create the new pod's volume folder.
    pub mount_wait: Duration,
}

/// What the work functions share.
pub(crate) struct Agent {
    pub client: Client,
    pub settings: AgentSettings,
    /// Consecutive reconcile failures per work item.
    pub backoff: arca_runtime::backoff::Backoff,
    /// Master keys of the repositories opened so far: a repository is opened for every
    /// volume of every backup and restore, and the password's key derivation is done once.
    pub key_cache: Arc<arca_volume::KeyCache>,
}

impl Agent {
    /// A reconcile of `item` failed: logged and retried after the item's backoff.
    fn failed<K: kube::Resource>(
        &self,
        controller: &str,
        item: &K,
        error: &dyn std::fmt::Display,
    ) -> kube::runtime::controller::Action {
        let key = arca_runtime::backoff::key(controller, item);
        let wait = self.backoff.failed(&key);
        tracing::warn!(item = %key, retry_in = ?wait, "{error}");
        kube::runtime::controller::Action::requeue(wait)
    }
}

/// Runs the agent until `shutdown` resolves; volumes in flight are finished first.
pub async fn run(
    client: Client,
    settings: AgentSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the Kubernetes API server: {e}"))?;
    if !settings.host_pods_dir.is_dir() {
        anyhow::bail!(
            "--host-pods-dir {} is not a folder: mount kubelet's pods folder (/var/lib/kubelet/pods) there",
            settings.host_pods_dir.display()
        );
    }
    let agent = Arc::new(Agent {
        client,
        settings,
        backoff: arca_runtime::backoff::Backoff::default(),
        key_cache: Arc::default(),
    });
    fail_orphans(&agent).await?;
    tracing::info!(
        node = %agent.settings.node_name,
        pods = %agent.settings.host_pods_dir.display(),
        "arca node agent started"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let config = controller::Config::default().concurrency(agent.settings.concurrency);
    let backups: Api<PodVolumeBackup> =
        Api::namespaced(agent.client.clone(), &agent.settings.namespace);
    let restores: Api<PodVolumeRestore> =
        Api::namespaced(agent.client.clone(), &agent.settings.namespace);
    let backup_loop = Controller::new(backups, watcher::Config::default())
        .with_config(config.clone())
        .graceful_shutdown_on(stopped())
        .run(
            |item, agent| async move {
                let result = backup::reconcile(item.clone(), agent.clone()).await;
                if result.is_ok() {
                    agent.backoff.succeeded(&arca_runtime::backoff::key(
                        "podvolumebackup",
                        item.as_ref(),
                    ));
                }
                result
            },
            |item, error, agent| agent.failed("podvolumebackup", item.as_ref(), error),
            agent.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("pod volume backup reconcile: {e}");
            }
        });
    let restore_loop = Controller::new(restores, watcher::Config::default())
        .with_config(config)
        .graceful_shutdown_on(stopped())
        .run(
            |item, agent| async move {
                let result = restore::reconcile(item.clone(), agent.clone()).await;
                if result.is_ok() {
                    agent.backoff.succeeded(&arca_runtime::backoff::key(
                        "podvolumerestore",
                        item.as_ref(),
                    ));
                }
                result
            },
            |item, error, agent| agent.failed("podvolumerestore", item.as_ref(), error),
            agent.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("pod volume restore reconcile: {e}");
            }
        });
    let loops = futures::future::join(backup_loop, restore_loop);
    tokio::pin!(loops);
    tokio::select! {
        _ = &mut loops => {}
        _ = shutdown => {
            tracing::info!("shutting down: finishing the volumes in flight");
            let _ = stop_tx.send(true);
            loops.await;
        }
    }
    Ok(())
}

/// Marks Failed the work this node had InProgress: the process that ran it is gone.
async fn fail_orphans(agent: &Agent) -> anyhow::Result<()> {
    let why = "the node agent stopped while this volume was being moved; the data is incomplete: run a new backup (or restore)";
    let node = &agent.settings.node_name;
    let backups: Api<PodVolumeBackup> =
        Api::namespaced(agent.client.clone(), &agent.settings.namespace);
    for item in backups.list(&Default::default()).await?.items {
        let status = item.status.clone().unwrap_or_default();
        if item.spec.node == *node && status.phase == Some(PodVolumePhase::InProgress) {
            tracing::warn!(item = %item.name_any(), "{why}");
            backup::finish(agent, &item, status, Err(why.to_string())).await;
        }
    }
    let restores: Api<PodVolumeRestore> =
        Api::namespaced(agent.client.clone(), &agent.settings.namespace);
    for item in restores.list(&Default::default()).await?.items {
        let status = item.status.clone().unwrap_or_default();
        if status.node.as_deref() == Some(node.as_str())
            && status.phase == Some(PodVolumePhase::InProgress)
        {
            tracing::warn!(item = %item.name_any(), "{why}");
            restore::finish(agent, &item, status, Err(why.to_string())).await;
        }
    }
    Ok(())
}
