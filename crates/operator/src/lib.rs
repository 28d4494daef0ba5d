//! Arca's operator (`arca server`): the controllers of storage locations, backups and
//! restores, with metrics and health endpoints.

mod backup_controller;
mod context;
mod deletion;
mod download;
#[cfg(test)]
mod fixtures;
mod gc;
mod http;
pub mod identity;
pub mod leader;
mod location_controller;
pub mod metrics;
mod orphans;
mod restore_controller;
mod schedule_controller;
mod sync;
mod velero_sync;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
};

use context::Context;
pub use context::{Clock, Settings, SystemClock};
use kube::Client;
use metrics::Metrics;

/// Runs every controller until `shutdown` resolves; work in flight is finished first.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics_address: Option<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        metrics.clone(),
        Arc::new(SystemClock),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the Kubernetes API server: {e}"))?;
    let http = metrics_address.map(|address| {
        tokio::spawn(http::serve(
            address,
            metrics.clone(),
            ready.clone(),
            stopped(),
        ))
    });
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::pin!(shutdown);

    // Only the holder of the lease works; the others wait for it.
    let mut elector = ctx
        .settings
        .leader_election
        .clone()
        .map(|config| leader::Elector::new(client.clone(), config));
    if let Some(elector) = &mut elector {
        tokio::select! {
            _ = elector.acquire() => {}
            _ = &mut shutdown => {
                tracing::info!("stopped before leading");
                return Ok(());
            }
        }
    }
    metrics.leader.set(1);
    // The volume repositories' password exists from the first start on, so node agents
    // and users (with `restic`) can read the repositories.
    if let Err(e) = ctx.repository_password().await {
        tracing::error!("{e}; pod volume backups fail until it is fixed");
    }
    // The seal key exists from the first start on: every backup.json is sealed with it.
    if let Err(e) = ctx.seal_keys().await {
        tracing::error!("{e}; backups and restores fail until it is fixed");
    }
    // What runs of since-deleted Backups left (an operator stopped while cleaning up).
    orphans::sweep(&ctx).await;
    tracing::info!(namespace = %ctx.settings.namespace, "arca operator started");
    let controllers = futures::future::join(
        futures::future::join4(
            location_controller::run(ctx.clone(), stopped()),
            backup_controller::run(ctx.clone(), stopped()),
            restore_controller::run(ctx.clone(), stopped()),
            schedule_controller::run(ctx.clone(), stopped()),
        ),
        futures::future::join4(
            deletion::run(ctx.clone(), stopped()),
            gc::run(ctx.clone(), stopped()),
            sync::run(ctx.clone(), stopped()),
            download::run(ctx.clone(), stopped()),
        ),
    );
    tokio::pin!(controllers);
    let lost = async {
        match &mut elector {
            Some(elector) => elector.keep().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = &mut controllers => Ok(()),
        _ = &mut shutdown => {
            tracing::info!("shutting down: finishing work in flight");
            let _ = stop_tx.send(true);
            controllers.await;
            Ok(())
        }
        _ = lost => {
            tracing::error!("lost the lease: stopping so that only one replica works");
            let _ = stop_tx.send(true);
            controllers.await;
            Err(anyhow::anyhow!("lost the leader lease"))
        }
    };
    metrics.leader.set(0);
    if let (Ok(()), Some(elector)) = (&outcome, &mut elector) {
        elector.release().await;
    }
    if let Some(http) = http {
        http.abort();
    }
    outcome
}
