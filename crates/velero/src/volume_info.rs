//! `<name>-volumeinfo.json.gz` (Velero 1.13 and later): how each persistent volume of a
//! backup was backed up (file copy, CSI snapshot, with or without its data moved, native
//! snapshot) or why it was skipped.

use serde::Deserialize;

use crate::VeleroError;

/// How Velero backed up a volume's data (`backupMethod`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeMethod {
    /// Files copied by the node agent (restic or kopia): `PodVolumeBackup`.
    FileCopy,
    /// A CSI VolumeSnapshot: `CSISnapshot`.
    CsiSnapshot,
    /// A snapshot by a volume snapshotter plugin: `NativeSnapshot`.
    NativeSnapshot,
    /// Anything else, as written (empty when none is written).
    Other(String),
}

/// One volume of a Velero backup, as `-volumeinfo.json.gz` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The PVC's namespace (empty for a volume without a claim).
    pub pvc_namespace: String,
    /// The PVC's name (empty for a volume without a claim).
    pub pvc_name: String,
    /// The PersistentVolume's name.
    pub pv_name: String,
    /// How its data was backed up.
    pub method: VolumeMethod,
    /// Whether a snapshot's data was moved to the bucket (Velero's data mover).
    pub data_moved: bool,
    /// Whether Velero skipped the volume.
    pub skipped: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    pvc_name: String,
    #[serde(default)]
    pvc_namespace: String,
    #[serde(default)]
    pv_name: String,
    #[serde(default)]
    backup_method: String,
    #[serde(default)]
    snapshot_data_moved: bool,
    #[serde(default)]
    skipped: bool,
}

/// The two shapes Velero has written: a JSON array, or `{"volumeInfos": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    List(Option<Vec<Raw>>),
    Wrapped {
        #[serde(rename = "volumeInfos", default)]
        volume_infos: Vec<Raw>,
    },
}

/// Parses the decompressed `-volumeinfo.json` read from `key`.
pub(crate) fn parse(bytes: &[u8], key: &str) -> Result<Vec<VolumeInfo>, VeleroError> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| VeleroError::Metadata {
        key: key.into(),
        detail: format!("not a JSON list of volume infos: {e}"),
    })?;
    let raw = match file {
        File::List(list) => list.unwrap_or_default(),
        File::Wrapped { volume_infos } => volume_infos,
    };
    Ok(raw
        .into_iter()
        .map(|r| VolumeInfo {
            pvc_namespace: r.pvc_namespace,
            pvc_name: r.pvc_name,
            pv_name: r.pv_name,
            method: match r.backup_method.as_str() {
                "PodVolumeBackup" => VolumeMethod::FileCopy,
                "CSISnapshot" => VolumeMethod::CsiSnapshot,
                "NativeSnapshot" => VolumeMethod::NativeSnapshot,
                other => VolumeMethod::Other(other.to_string()),
            },
            data_moved: r.snapshot_data_moved,
            skipped: r.skipped,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_velero_wrote() -> Result<(), VeleroError> {
        let list = r#"[{"pvcName":"data-db-0","pvcNamespace":"shop","pvName":"pvc-1","backupMethod":"CSISnapshot","snapshotDataMoved":true,"preserveLocalSnapshot":false,"skipped":false,"result":"succeeded"},
            {"pvcName":"cache","pvcNamespace":"shop","pvName":"pvc-2","snapshotDataMoved":false,"skipped":true,"skippedReason":"excluded by policy"}]"#;
        let infos = parse(list.as_bytes(), "k")?;
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].method, VolumeMethod::CsiSnapshot);
        assert!(infos[0].data_moved);
        assert_eq!(
            (infos[0].pvc_namespace.as_str(), infos[0].pvc_name.as_str()),
            ("shop", "data-db-0")
        );
        assert_eq!(infos[1].method, VolumeMethod::Other(String::new()));
        assert!(infos[1].skipped);
        let wrapped = r#"{"volumeInfos":[{"pvName":"pv-9","backupMethod":"NativeSnapshot","snapshotDataMoved":false,"skipped":false}]}"#;
        let infos = parse(wrapped.as_bytes(), "k")?;
        assert_eq!(infos[0].method, VolumeMethod::NativeSnapshot);
        assert_eq!(infos[0].pv_name, "pv-9");
        assert!(parse(b"null", "k")?.is_empty());
        let err = parse(b"{\"volumeInfos\": 7}", "k").expect_err("not a list");
        assert!(err.to_string().contains("not a JSON list"), "{err}");
        Ok(())
    }
}
