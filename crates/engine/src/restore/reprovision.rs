//! Claims that get a new volume at restore time. Pure.
//!
//! A dynamically provisioned PersistentVolume (a provisioner made it for its claim: the
//! `pv.kubernetes.io/provisioned-by` annotation) names a disk of the cluster and storage
//! system it was backed up from; when the backup holds the claim's data as files (a pod
//! volume copy in `volumes.json`), that disk is not what the restore needs: the PV object is
//! not restored, the claim loses its `volumeName`, its storage class provisions a new volume,
//! and the node agent writes the data into it. (Velero does the same for every file-copied
//! claim; a statically made PV (a local or NFS path an administrator defined) is restored
//! as it is here, since no provisioner would make one again.) Claims restored from a CSI
//! snapshot are the other way to a new volume (`csi-snapshots.json`).

use arca_store::archive::VolumeSnapshots;
use serde_json::Value;

/// The annotation provisioners put on the volumes they make.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// The claim (namespace, name) of `volume`, a PersistentVolume of the backup, when it gets a
/// new volume instead: dynamically provisioned, and its claim's data is in `copies`.
pub fn reprovisioned_claim<'a>(
    volume: &'a Value,
    copies: &VolumeSnapshots,
) -> Option<(&'a str, &'a str)> {
    volume
        .pointer("/metadata/annotations")?
        .get(PROVISIONED_BY)?;
    let claim = volume.pointer("/spec/claimRef")?;
    let namespace = claim.get("namespace")?.as_str()?;
    let name = claim.get("name")?.as_str()?;
    copies
        .snapshots
        .iter()
        .any(|s| s.namespace == namespace && s.claim.as_deref() == Some(name))
        .then_some((namespace, name))
}

/// Removes `spec.volumeName` from a claim when it names one of `reprovisioned`, so that its
/// storage class provisions a new volume. True when it did.
pub fn unbind_claim(claim: &mut Value, reprovisioned: &std::collections::BTreeSet<String>) -> bool {
    let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) else {
        return false;
    };
    let named = spec
        .get("volumeName")
        .and_then(Value::as_str)
        .is_some_and(|v| reprovisioned.contains(v));
    if named {
        spec.remove("volumeName");
    }
    named
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use arca_store::archive::VolumeSnapshot;
    use serde_json::json;

    use super::*;

    fn copies() -> VolumeSnapshots {
        VolumeSnapshots {
            snapshots: vec![
                VolumeSnapshot {
                    namespace: "shop".into(),
                    pod: "db-0".into(),
                    volume: "data".into(),
                    claim: Some("data-db-0".into()),
                    ..VolumeSnapshot::default()
                },
                VolumeSnapshot {
                    namespace: "shop".into(),
                    pod: "web".into(),
                    volume: "cache".into(),
                    claim: None,
                    ..VolumeSnapshot::default()
                },
            ],
        }
    }

    fn volume(provisioned: bool, namespace: &str, claim: &str) -> Value {
        let annotations = if provisioned {
            json!({PROVISIONED_BY: "hostpath.csi.arca.dev"})
        } else {
            json!({})
        };
        json!({
            "metadata": {"name": "pvc-1", "annotations": annotations},
            "spec": {"claimRef": {"namespace": namespace, "name": claim}},
        })
    }

    #[test]
    fn a_provisioned_volume_of_a_copied_claim_is_made_again() {
        let pv = volume(true, "shop", "data-db-0");
        assert_eq!(
            reprovisioned_claim(&pv, &copies()),
            Some(("shop", "data-db-0"))
        );
    }

    #[test]
    fn static_volumes_and_other_claims_are_restored_as_they_are() {
        for pv in [
            volume(false, "shop", "data-db-0"),
            volume(true, "shop", "other"),
            volume(true, "elsewhere", "data-db-0"),
            // An emptyDir copy has no claim: "cache" is not a claim's name.
            volume(true, "shop", "cache"),
            json!({"metadata": {"annotations": {PROVISIONED_BY: "x"}}, "spec": {}}),
            json!({"spec": {"claimRef": {"namespace": "shop", "name": "data-db-0"}}}),
        ] {
            assert_eq!(reprovisioned_claim(&pv, &copies()), None, "{pv}");
        }
    }

    #[test]
    fn a_claim_of_a_reprovisioned_volume_is_unbound_and_others_are_kept() {
        let made_again = BTreeSet::from(["pvc-1".to_string()]);
        let mut claim = json!({"spec": {"volumeName": "pvc-1", "storageClassName": "fast"}});
        assert!(unbind_claim(&mut claim, &made_again));
        assert_eq!(claim, json!({"spec": {"storageClassName": "fast"}}));

        let mut kept = json!({"spec": {"volumeName": "static-pv"}});
        assert!(!unbind_claim(&mut kept, &made_again));
        assert_eq!(kept["spec"]["volumeName"], "static-pv");
        assert!(!unbind_claim(&mut json!({}), &made_again));
    }
}
