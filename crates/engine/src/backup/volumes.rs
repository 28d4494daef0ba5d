//! Which of a pod's volumes a backup is asked to copy the data of (Velero's file-system
//! backup selection): opt-in by annotation, or every eligible volume with
//! `defaultVolumesToFsBackup` minus the opt-out annotation. hostPath, secret, configMap,
//! projected and downwardAPI volumes are never chosen: their data is a manifest already, or
//! the node's.
//!
//! The selection becomes [`VolumeRequest`]s: the pod volume backups the operator asks the node
//! agents for (see [`crate::pod_volumes`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::policies::VolumeFacts;

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
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    volumes: Vec<Volume>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimSource {
    claim_name: String,
}

/// One pod volume whose data a backup asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeRequest {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    /// The node the pod runs on; None when it is not scheduled (its data cannot be read).
    pub node: Option<String>,
    /// The volume's name in the pod spec.
    pub volume: String,
    /// The claim it mounts, for a PersistentVolumeClaim volume.
    pub claim: Option<String>,
    /// Whether the pod's annotations (or `defaultVolumesToFsBackup`) ask for its data;
    /// resource policies may decide otherwise.
    pub requested: bool,
    /// What the pod spec says of the volume (its source type, NFS, CSI), for resource
    /// policies; the claim's and PV's facts are added when policies are evaluated.
    pub facts: VolumeFacts,
    /// Where the node agent reads the data, when not from the pod volume above: the data
    /// mover's pod holding a claim made from the claim's CSI snapshot. The data is still
    /// recorded as the pod volume above's (its repository, snapshot path and `volumes.json`
    /// entry), so it restores as a file copy of it.
    pub read_from: Option<ReadFrom>,
}

impl VolumeRequest {
    /// A claim's data with no pod of the backup mounting it (the data mover reads it).
    pub fn is_claim_only(&self) -> bool {
        self.pod.is_empty() && self.claim.is_some()
    }

    /// How messages name it: `pod <ns>/<pod> volume <volume>`, or `claim <ns>/<claim>`.
    pub fn what(&self) -> String {
        match (&self.claim, self.is_claim_only()) {
            (Some(claim), true) => format!("claim {}/{claim}", self.namespace),
            _ => format!("pod {}/{} volume {}", self.namespace, self.pod, self.volume),
        }
    }
}

/// A pod volume the node agent reads instead of the one a [`VolumeRequest`] names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadFrom {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub node: String,
    pub volume: String,
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
    #[serde(default)]
    persistent_volume_claim: Option<ClaimSource>,
    #[serde(default)]
    nfs: Option<NfsSource>,
    #[serde(default)]
    csi: Option<CsiSource>,
    /// The other sources (`emptyDir`, `local`...): only their names are read.
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct NfsSource {
    #[serde(default)]
    server: String,
    #[serde(default)]
    path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CsiSource {
    #[serde(default)]
    driver: String,
    #[serde(default)]
    volume_attributes: BTreeMap<String, String>,
}

impl Volume {
    /// The pod-side facts resource policies look at.
    fn facts(&self) -> VolumeFacts {
        let known = [
            (self.host_path.is_some(), "hostPath"),
            (self.secret.is_some(), "secret"),
            (self.config_map.is_some(), "configMap"),
            (self.projected.is_some(), "projected"),
            (self.downward_api.is_some(), "downwardAPI"),
            (
                self.persistent_volume_claim.is_some(),
                "persistentVolumeClaim",
            ),
            (self.nfs.is_some(), "nfs"),
            (self.csi.is_some(), "csi"),
        ];
        let volume_type = known
            .iter()
            .find(|(set, _)| *set)
            .map(|(_, name)| name.to_string())
            .or_else(|| self.other.keys().next().cloned())
            .unwrap_or_default();
        VolumeFacts {
            volume_type,
            nfs: self
                .nfs
                .as_ref()
                .map(|n| (n.server.clone(), n.path.clone())),
            csi: self
                .csi
                .as_ref()
                .map(|c| (c.driver.clone(), c.volume_attributes.clone())),
            ..VolumeFacts::default()
        }
    }

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

    /// The volumes whose data is asked for, as requests.
    pub fn requests(&self, default_all: bool) -> Vec<VolumeRequest> {
        self.candidates(default_all)
            .into_iter()
            .filter(|r| r.requested)
            .collect()
    }

    /// Every volume that holds data, each saying whether the annotations ask for it: what
    /// resource policies choose from.
    pub fn candidates(&self, default_all: bool) -> Vec<VolumeRequest> {
        let wanted = self.requested(default_all);
        let meta = &self.metadata;
        self.spec
            .volumes
            .iter()
            .filter(|v| v.holds_data())
            .map(|v| VolumeRequest {
                requested: wanted.contains(&v.name),
                facts: v.facts(),
                namespace: meta.namespace.clone(),
                pod: meta.name.clone(),
                pod_uid: meta.uid.clone(),
                node: self.spec.node_name.clone().filter(|n| !n.is_empty()),
                volume: v.name.clone(),
                claim: v
                    .persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone()),
                read_from: None,
            })
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

    #[test]
    fn candidates_are_every_data_volume_with_its_source() {
        let p: PodVolumes = serde_json::from_value(serde_json::json!({
            "metadata": {"annotations": {"backup.arca.dev/backup-volumes": "data"}},
            "spec": {"volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "db"}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "share", "nfs": {"server": "10.0.0.1", "path": "/x"}},
                {"name": "conf", "configMap": {"name": "c"}}
            ]}
        }))
        .expect("pod");
        let found: Vec<(String, bool, String)> = p
            .candidates(false)
            .into_iter()
            .map(|r| (r.volume, r.requested, r.facts.volume_type))
            .collect();
        assert_eq!(
            found,
            [
                ("data".into(), true, "persistentVolumeClaim".into()),
                ("scratch".into(), false, "emptyDir".into()),
                ("share".into(), false, "nfs".into()),
            ]
        );
        assert_eq!(
            p.candidates(false)[2].facts.nfs,
            Some(("10.0.0.1".into(), "/x".into()))
        );
    }

    #[test]
    fn requests_carry_the_pod_node_and_claim() {
        let p: PodVolumes = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-0", "namespace": "shop", "uid": "u1",
                "annotations": {"backup.arca.dev/backup-volumes": "data,scratch"}},
            "spec": {"nodeName": "n1", "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "db"}},
                {"name": "scratch", "emptyDir": {}}
            ]}
        }))
        .expect("pod");
        let requests = p.requests(false);
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].claim.as_deref(), Some("db"));
        assert_eq!(requests[0].node.as_deref(), Some("n1"));
        assert_eq!(requests[1].claim, None);
        assert_eq!(requests[1].pod_uid, "u1");
    }
}
