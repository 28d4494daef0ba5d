//! A claim restored from its CSI snapshot: a pre-provisioned VolumeSnapshotContent naming the
//! snapshot's handle (`deletionPolicy: Retain`: the backup still owns the snapshot), a
//! VolumeSnapshot bound to it in the claim's target namespace, and the claim's `dataSource`
//! pointing at that VolumeSnapshot, so its storage class's provisioner creates a new volume
//! from the snapshot. The backed-up PersistentVolume is not restored: the new claim gets a new
//! one.

use arca_store::archive::CsiSnapshot;
use kube::{Api, Client, api::PostParams};
use serde_json::{Value, json};

use super::{
    RESTORE_NAME_LABEL, VolumeSnapshot, VolumeSnapshotContent, backup::label_value, object_name,
};

/// Who restores, for which Restore.
#[derive(Clone, Copy)]
pub(crate) struct RestoreJob<'a> {
    /// The run's client: the VolumeSnapshot in the target namespace.
    pub run_client: &'a Client,
    /// The operator's own client: the cluster-scoped content.
    pub operator: &'a Client,
    pub restore: &'a str,
    pub restore_uid: &'a str,
    pub dry_run: bool,
}

/// Makes the content and VolumeSnapshot claim `claim` (to be created in `target`) is
/// provisioned from, and points the claim at them. Returns the VolumeSnapshot's name.
pub(crate) async fn provision_from_snapshot(
    job: RestoreJob<'_>,
    record: &CsiSnapshot,
    target: &str,
    claim: &mut Value,
) -> Result<String, String> {
    let name = object_name(
        "arca",
        job.restore,
        &format!("{}/{target}/{}", job.restore_uid, record.claim),
    );
    point_at_snapshot(claim, &name, record.restore_size);
    if job.dry_run {
        return Ok(name);
    }
    let labels = std::collections::BTreeMap::from([(
        RESTORE_NAME_LABEL.to_string(),
        label_value(job.restore),
    )]);
    let content = super::pre_provisioned_content(&name, target, record, &labels);
    let contents: Api<VolumeSnapshotContent> = Api::all(job.operator.clone());
    match contents.create(&PostParams::default(), &content).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(format!("creating VolumeSnapshotContent {name}: {e}")),
    }
    let snapshot = super::bound_snapshot(&name, &labels);
    let snapshots: Api<VolumeSnapshot> = Api::namespaced(job.run_client.clone(), target);
    match snapshots.create(&PostParams::default(), &snapshot).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(name),
        Err(e) => Err(format!("creating VolumeSnapshot {target}/{name}: {e}")),
    }
}

/// Points a claim at VolumeSnapshot `name` of its namespace: a new volume is provisioned from
/// it (no `volumeName`), at least `restore_size` bytes large.
pub fn point_at_snapshot(claim: &mut Value, name: &str, restore_size: Option<u64>) {
    let source = json!({"apiGroup": super::GROUP, "kind": "VolumeSnapshot", "name": name});
    let Some(root) = claim.as_object_mut() else {
        return;
    };
    let spec = root
        .entry("spec")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(spec) = spec else {
        return;
    };
    spec.remove("volumeName");
    spec.insert("dataSource".into(), source.clone());
    spec.insert("dataSourceRef".into(), source);
    let Some(size) = restore_size else {
        return;
    };
    let requested = spec
        .get("resources")
        .and_then(|r| r.get("requests"))
        .and_then(|r| r.get("storage"))
        .and_then(Value::as_str)
        .and_then(|q| crate::backup::policies::quantity(q).ok());
    if requested.is_none_or(|r| r < size as f64) {
        let requests = spec
            .entry("resources")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|r| r.entry("requests").or_insert_with(|| json!({})));
        if let Some(Value::Object(requests)) = requests {
            requests.insert("storage".into(), Value::from(size.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_pointed_at_its_snapshot_and_never_smaller_than_it() {
        let mut claim = json!({
            "metadata": {"name": "data-0"},
            "spec": {"volumeName": "pvc-old", "resources": {"requests": {"storage": "1Mi"}}}
        });
        point_at_snapshot(&mut claim, "arca-r-1", Some(5 * 1024 * 1024));
        assert!(claim["spec"].get("volumeName").is_none());
        assert_eq!(claim["spec"]["dataSource"]["kind"], "VolumeSnapshot");
        assert_eq!(claim["spec"]["dataSource"]["name"], "arca-r-1");
        assert_eq!(claim["spec"]["dataSourceRef"], claim["spec"]["dataSource"]);
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "5242880");

        let mut big = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        point_at_snapshot(&mut big, "s", Some(1024));
        assert_eq!(big["spec"]["resources"]["requests"]["storage"], "1Gi");
    }
}
