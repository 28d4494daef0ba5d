//! Applying a Backup's resource policies to the pod volumes found: each candidate gets its
//! claim's and PersistentVolume's facts (read once per claim, as the run's identity), and
//! the first matching policy decides; no match keeps the annotations' choice.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{Api, Client};

use super::{
    collect::Collector,
    policies::{ResourcePolicies, VOLUME_TYPES, VolumeAction, VolumeFacts, quantity},
    volumes::VolumeRequest,
};
use crate::runlog::RunLog;

/// What a claim (and its volume, when bound) adds to a pod volume's facts.
type ClaimFacts = Result<VolumeFacts, String>;

/// The volumes whose data is backed up, of `candidates`.
pub(crate) async fn choose(
    client: &Client,
    policies: &ResourcePolicies,
    candidates: Vec<VolumeRequest>,
    collector: &Collector,
    log: &RunLog,
) -> Vec<VolumeRequest> {
    let mut claims: BTreeMap<(String, String), ClaimFacts> = BTreeMap::new();
    let mut chosen = Vec::new();
    for mut request in candidates {
        let ns = request.namespace.clone();
        let what = format!("pod {ns}/{} volume {}", request.pod, request.volume);
        if let Some(claim) = request.claim.clone() {
            let key = (ns.clone(), claim.clone());
            if !claims.contains_key(&key) {
                let facts = claim_facts(client, &ns, &claim).await;
                claims.insert(key.clone(), facts);
            }
            match claims.get(&key) {
                Some(Ok(facts)) => {
                    let pod_side = std::mem::take(&mut request.facts);
                    request.facts = VolumeFacts {
                        volume_type: if facts.volume_type.is_empty() {
                            pod_side.volume_type
                        } else {
                            facts.volume_type.clone()
                        },
                        ..facts.clone()
                    };
                }
                Some(Err(e)) => {
                    if request.requested {
                        collector.record_error(
                            Some(&ns),
                            format!("{what}: the resource policies need claim {claim} ({e}); its data is not backed up"),
                        );
                    }
                    continue;
                }
                None => continue,
            }
        }
        match policies.action_for(&request.facts) {
            Some(VolumeAction::Skip) => {
                log.info(format!("{what}: skipped by the resource policy"));
            }
            Some(VolumeAction::FsBackup) => chosen.push(request),
            // A claim's snapshot is taken with the other claims' (crate::csi); a volume of
            // another kind cannot be snapshotted: its files are copied, as the closest
            // thing to what was asked.
            Some(VolumeAction::Snapshot) if request.claim.is_some() => {}
            Some(VolumeAction::Snapshot) => {
                collector.record_warning(
                    Some(&ns),
                    format!("{what}: the resource policy asks for a snapshot, and only PersistentVolumeClaims can be snapshotted: its files are copied instead"),
                );
                chosen.push(request);
            }
            None if request.requested => chosen.push(request),
            None => {}
        }
    }
    chosen
}

/// The facts of claim `name` in `namespace` and of its PersistentVolume.
async fn claim_facts(client: &Client, namespace: &str, name: &str) -> ClaimFacts {
    let (claim, pv) = read_claim(client, client, namespace, name).await?;
    facts_of(&claim, pv.as_ref())
}

/// Claim `name` of `namespace` (read with `client`) and the PersistentVolume it is bound to
/// (read with `volumes_client`; None when unbound or gone).
pub(crate) async fn read_claim(
    client: &Client,
    volumes_client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(PersistentVolumeClaim, Option<PersistentVolume>), String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let claim = claims
        .get_opt(name)
        .await
        .map_err(|e| format!("reading it: {e}"))?
        .ok_or_else(|| "it does not exist".to_string())?;
    let bound = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let Some(volume) = bound else {
        return Ok((claim, None));
    };
    let volumes: Api<PersistentVolume> = Api::all(volumes_client.clone());
    let pv = volumes
        .get_opt(&volume)
        .await
        .map_err(|e| format!("reading its volume {volume}: {e}"))?;
    Ok((claim, pv))
}

/// What resource policies look at, of a claim and its volume.
pub(crate) fn facts_of(claim: &PersistentVolumeClaim, pv: Option<&PersistentVolume>) -> ClaimFacts {
    let spec = claim.spec.clone().unwrap_or_default();
    let mut facts = VolumeFacts {
        storage_class: spec.storage_class_name.clone(),
        pvc_labels: Some(claim.metadata.labels.clone().unwrap_or_default()),
        pvc_phase: claim.status.as_ref().and_then(|s| s.phase.clone()),
        pvc_volume_mode: spec.volume_mode.clone(),
        pvc_access_modes: spec.access_modes.clone().unwrap_or_default(),
        volume_type: "persistentVolumeClaim".into(),
        ..VolumeFacts::default()
    };
    let Some(pv) = pv else {
        return Ok(facts);
    };
    let volume = pv.metadata.name.clone().unwrap_or_default();
    let pv_spec = pv.spec.clone().unwrap_or_default();
    if let Some(size) = pv_spec.capacity.as_ref().and_then(|c| c.get("storage")) {
        facts.capacity = Some(quantity(&size.0).map_err(|e| format!("volume {volume}: {e}"))?);
    }
    if pv_spec.storage_class_name.is_some() {
        facts.storage_class = pv_spec.storage_class_name.clone();
    }
    facts.nfs = pv_spec
        .nfs
        .as_ref()
        .map(|n| (n.server.clone(), n.path.clone()));
    facts.csi = pv_spec.csi.as_ref().map(|c| {
        (
            c.driver.clone(),
            c.volume_attributes.clone().unwrap_or_default(),
        )
    });
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&pv_spec)
        && let Some(kind) = VOLUME_TYPES.iter().find(|t| fields.contains_key(**t))
    {
        facts.volume_type = kind.to_string();
    }
    Ok(facts)
}
