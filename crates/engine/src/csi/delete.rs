//! A deleted backup's CSI snapshots: each content it kept is set to `deletionPolicy: Delete`
//! and deleted, which deletes the snapshot in the storage system. Only contents labelled with
//! this backup are touched; one that is gone (a backup synced from another cluster, or
//! already deleted) is fine.

use arca_store::archive::CsiSnapshot;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
};

use super::{
    BACKUP_NAME_LABEL, BACKUP_NAMESPACE_LABEL, VolumeSnapshotContent, backup::label_value,
};

/// What became of one snapshot.
#[derive(Debug, PartialEq)]
pub enum Deleted {
    /// Its content was deleted, and with it the snapshot.
    Snapshot,
    /// Its content is not in this cluster: nothing to delete here.
    Absent,
}

/// Deletes the snapshot of `record`, kept for backup `backup` of `namespace`. An error names
/// the content and why it was left.
pub async fn delete_snapshot(
    operator: &Client,
    backup: &str,
    namespace: &str,
    record: &CsiSnapshot,
) -> Result<Deleted, String> {
    let contents: Api<VolumeSnapshotContent> = Api::all(operator.clone());
    let name = &record.content;
    let Some(content) = contents
        .get_opt(name)
        .await
        .map_err(|e| format!("reading VolumeSnapshotContent {name}: {e}"))?
    else {
        return Ok(Deleted::Absent);
    };
    let labels = content.metadata.labels.clone().unwrap_or_default();
    let ours = labels.get(BACKUP_NAME_LABEL) == Some(&label_value(backup))
        && labels.get(BACKUP_NAMESPACE_LABEL) == Some(&label_value(namespace));
    let handle = content
        .status
        .as_ref()
        .and_then(|s| s.snapshot_handle.as_deref());
    if !ours || handle != Some(record.snapshot_handle.as_str()) {
        return Err(format!(
            "VolumeSnapshotContent {name} is not the one backup {backup} kept (its labels or snapshot handle differ): it is left as it is"
        ));
    }
    let delete = serde_json::json!({"spec": {"deletionPolicy": "Delete"}});
    contents
        .patch(name, &PatchParams::default(), &Patch::Merge(&delete))
        .await
        .map_err(|e| {
            format!("setting deletionPolicy Delete on VolumeSnapshotContent {name}: {e}")
        })?;
    match contents.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(Deleted::Snapshot),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Deleted::Snapshot),
        Err(e) => Err(format!("deleting VolumeSnapshotContent {name}: {e}")),
    }
}
