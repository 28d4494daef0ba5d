//! What backups and restores of a volume share: the pod, the volume's folder name, the
//! repository.

use std::sync::Arc;

use arca_api::{BackupStorageLocation, PodReference};
use arca_store::ObjectStore;
use arca_volume::VolumeRepository;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{Api, ResourceExt};

use super::Agent;
use arca_engine::protocol::{RepositoryId, VELERO_REPOSITORY_SECRET, derive_repository_password};
use arca_runtime::{locations, repository, status::apply_status};

/// The field manager of everything the agent writes.
pub const MANAGER: &str = "arca-node-agent";

/// Writes `status` as the whole status of the work item `item` (in the operator's namespace).
pub async fn write_status<K, S>(agent: &Agent, item: &K, status: &S) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize + Sync,
{
    let api: Api<K> = Api::namespaced(agent.client.clone(), &agent.settings.namespace);
    apply_status(&api, &item.name_any(), MANAGER, status).await
}

/// The pod named by a work item, if it is still the same pod.
pub async fn the_pod(agent: &Agent, pod: &PodReference) -> Result<Pod, String> {
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &pod.namespace);
    let found = api
        .get_opt(&pod.name)
        .await
        .map_err(|e| format!("reading pod {}/{}: {e}", pod.namespace, pod.name))?
        .ok_or_else(|| format!("pod {}/{} no longer exists", pod.namespace, pod.name))?;
    if found.uid().as_deref() != Some(pod.uid.as_str()) {
        return Err(format!(
            "pod {}/{} was replaced (its uid changed): its volumes are not the ones asked for",
            pod.namespace, pod.name
        ));
    }
    Ok(found)
}

/// The node a pod is scheduled on, if any.
pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// The name of a volume's folder under `volumes/<plugin>/`: the volume's name, or the
/// bound PersistentVolume's for a claim.
pub async fn folder_name(agent: &Agent, pod: &Pod, volume: &str) -> Result<String, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let spec = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name == volume))
        .ok_or_else(|| {
            format!(
                "pod {namespace}/{} has no volume named {volume}",
                pod.name_any()
            )
        })?;
    let forbidden = spec.host_path.is_some()
        || spec.secret.is_some()
        || spec.config_map.is_some()
        || spec.projected.is_some()
        || spec.downward_api.is_some();
    if forbidden {
        return Err(format!(
            "volume {volume} is a hostPath, secret, configMap, projected or downwardAPI volume: its data is never moved by the agent"
        ));
    }
    let Some(claim) = &spec.persistent_volume_claim else {
        return Ok(volume.to_string());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(agent.client.clone(), &namespace);
    let pvc = api
        .get(&claim.claim_name)
        .await
        .map_err(|e| format!("reading claim {namespace}/{}: {e}", claim.claim_name))?;
    pvc.spec
        .and_then(|s| s.volume_name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!(
                "claim {namespace}/{} is not bound to a volume yet",
                claim.claim_name
            )
        })
}

/// The repository `root` (relative to the location's prefix) of location
/// `namespace/name`, opened with its own password (derived from the installation's secret),
/// or the shared one when it has not been re-keyed yet.
pub async fn repository(
    agent: &Agent,
    location_namespace: &str,
    location: &str,
    root: &RepositoryId,
) -> Result<VolumeRepository, String> {
    let api: Api<BackupStorageLocation> = Api::namespaced(agent.client.clone(), location_namespace);
    let location = api
        .get(location)
        .await
        .map_err(|e| format!("reading location {location_namespace}/{location}: {e}"))?;
    let store = locations::open_store(
        &agent.client,
        &location,
        locations::StoragePolicy {
            operator_namespace: &agent.settings.namespace,
            tenant_storage: &[],
        },
        None,
    )
    .await
    .map_err(|e| e.to_string())?;
    if root.is_velero() {
        // Velero's: its own password (one for all its repositories), nothing derived, and the
        // store read only (Arca never writes into Velero's layout).
        let password = repository::read_velero_password(&agent.client, &agent.settings.namespace)
            .await
            .map_err(|e| {
                format!(
                    "reading Secret {}/{VELERO_REPOSITORY_SECRET}: {e}",
                    agent.settings.namespace
                )
            })?;
        let store: Arc<dyn ObjectStore> = Arc::new(arca_store::WriteRefusingStore::new(store));
        return Ok(VolumeRepository::at_root(
            store,
            &root.to_string(),
            password.reveal().to_string(),
        )
        .with_key_cache(agent.key_cache.clone()));
    }
    let shared = repository::read_password(&agent.client, &agent.settings.namespace)
        .await
        .map_err(|e| e.to_string())?;
    // Its own password first; the shared one only for a repository the operator has not
    // re-keyed yet (one in a ReadOnly location, say).
    let own = derive_repository_password(&shared, root);
    Ok(
        VolumeRepository::at_root(store, &root.to_string(), own.reveal().to_string())
            .with_fallback_password(shared.reveal().to_string())
            .with_key_cache(agent.key_cache.clone()),
    )
}
