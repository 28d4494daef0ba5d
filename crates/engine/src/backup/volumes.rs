//! Which of a pod's volumes a backup is asked to copy the data of (Velero's file-system
//! backup selection): opt-in by annotation, or every eligible volume with
//! `defaultVolumesToFsBackup` minus the opt-out annotation. hostPath, secret, configMap,
//! projected and downwardAPI volumes are never chosen: their data is a manifest already, or
//! the node's.
//!
//! This release backs up manifests only: the engine turns a non-empty selection into a
//! warning, so nobody believes their data is in a backup that does not hold it.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Opt-in annotations (comma list of volume names), Arca's and Velero's.
pub const INCLUDE_ANNOTATIONS: [&str; 2] = [
    "backup.arca.dev/backup-volumes",
    "backup.velero.io/backup-volumes",
];
/// Opt-out annotations, used with `defaultVolumesToFsBackup`.
pub const EXCLUDE_ANNOTATIONS: [&str; 2] = [
    "backup.arca.dev/backup-volumes-excludes",
    "backup.velero.io/backup-volumes-excludes",
];

/// The parts of a pod the selection reads.
#[derive(Debug, Default, Deserialize)]
pub struct PodVolumes {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Spec {
    #[serde(default)]
    volumes: Vec<Volume>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    #[serde(default)]
    host_path: Option<serde_json::Value>,
    #[serde(default)]
    secret: Option<serde_json::Value>,
    #[serde(default)]
    config_map: Option<serde_json::Value>,
    #[serde(default)]
    projected: Option<serde_json::Value>,
    #[serde(default, rename = "downwardAPI")]
    downward_api: Option<serde_json::Value>,
}

impl Volume {
    fn holds_data(&self) -> bool {
        self.host_path.is_none()
            && self.secret.is_none()
            && self.config_map.is_none()
            && self.projected.is_none()
            && self.downward_api.is_none()
    }
}

fn names(annotations: &BTreeMap<String, String>, keys: [&str; 2]) -> Vec<String> {
    keys.iter()
        .filter_map(|k| annotations.get(*k))
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

impl PodVolumes {
    /// The volumes whose data is asked for, in the pod's order.
    pub fn requested(&self, default_all: bool) -> Vec<String> {
        let annotations = &self.metadata.annotations;
        let include = names(annotations, INCLUDE_ANNOTATIONS);
        let exclude = names(annotations, EXCLUDE_ANNOTATIONS);
        self.spec
            .volumes
            .iter()
            .filter(|v| v.holds_data())
            .filter(|v| {
                if default_all {
                    !exclude.contains(&v.name)
                } else {
                    include.contains(&v.name)
                }
            })
            .map(|v| v.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: serde_json::Value) -> PodVolumes {
        serde_json::from_value(serde_json::json!({
            "metadata": {"annotations": annotations},
            "spec": {"volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "db"}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "host", "hostPath": {"path": "/var"}},
                {"name": "token", "projected": {"sources": []}},
                {"name": "conf", "configMap": {"name": "c"}},
                {"name": "keys", "secret": {"secretName": "k"}},
                {"name": "info", "downwardAPI": {"items": []}}
            ]}
        }))
        .expect("pod")
    }

    #[test]
    fn nothing_is_asked_for_without_annotation_or_default() {
        assert!(pod(serde_json::json!({})).requested(false).is_empty());
    }

    #[test]
    fn opt_in_by_either_annotation_never_picks_config_volumes() {
        let p = pod(serde_json::json!({
            "backup.velero.io/backup-volumes": "data, host,keys",
            "backup.arca.dev/backup-volumes": "info"
        }));
        assert_eq!(p.requested(false), vec!["data"]);
    }

    #[test]
    fn default_all_takes_data_volumes_minus_opt_outs() {
        let p = pod(serde_json::json!({"backup.arca.dev/backup-volumes-excludes": "scratch"}));
        assert_eq!(p.requested(true), vec!["data"]);
        assert_eq!(
            pod(serde_json::json!({})).requested(true),
            vec!["data", "scratch"]
        );
    }
}
