//! kubelet's part for the bench's pod: the pod whose volume holds the data, and its
//! volume folder in the agent's `--host-pods-dir`, made once the pod is scheduled.

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, ResourceExt, api::PostParams};
use serde_json::json;

use super::{arca::RUN_LIMIT, fresh_fs::FreshFs};

/// Makes namespace `ns` and in it pod `db-0`, whose emptyDir volume `data` is asked for by
/// annotation.
pub(super) async fn create(client: &Client, ns: &str) -> anyhow::Result<()> {
    crate::seed::namespaces(client, std::iter::once(ns.to_string())).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "db-0", "annotations": {"backup.arca.dev/backup-volumes": "data"}},
        "spec": {"containers": [{"name": "db", "image": "db"}], "volumes": [{"name": "data", "emptyDir": {}}]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    Ok(())
}

/// Waits for pod `db-0` of `ns` to be scheduled, then returns its volume folder `data` as
/// kubelet lays it out, made empty when `make` (a restored pod), else only its parent
/// (the data is moved in); and when it was made. With `fs`, the folder is that filesystem's
/// folder `volume`, bind-mounted (returned with it, to be removed after the restore).
pub(super) async fn mounted(
    client: Client,
    ns: String,
    pods_dir: PathBuf,
    make: bool,
    mut fs: Option<FreshFs>,
) -> anyhow::Result<(PathBuf, tokio::time::Instant, Option<FreshFs>)> {
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let started = tokio::time::Instant::now();
    let uid = loop {
        if let Some(pod) = pods.get_opt("db-0").await?
            && pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
        {
            break pod.uid().unwrap_or_default();
        }
        anyhow::ensure!(
            started.elapsed() < RUN_LIMIT,
            "pod {ns}/db-0 not scheduled after {}s",
            RUN_LIMIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let folder = pods_dir
        .join(uid)
        .join("volumes/kubernetes.io~empty-dir/data");
    match make {
        true => {
            std::fs::create_dir_all(&folder)?;
            if let Some(fs) = fs.as_mut() {
                fs.bind("volume", &folder)?;
            }
        }
        false => {
            if let Some(parent) = folder.parent() {
                std::fs::create_dir_all(parent)?;
            }
        }
    }
    Ok((folder, tokio::time::Instant::now(), fs))
}
