//! Resource policies: Velero's ConfigMap (`version: v1`, `volumePolicies`) naming, per kind
//! of volume, how its data is backed up: `skip`, `fs-backup` (the node agent copies the
//! files) or `snapshot`; and its `includeExcludePolicy` (resource filters of the scoped kind,
//! combined with the Backup's: [`crate::scoped::decide`]). Pure:
//! parsing, and the action for one volume's facts.
//!
//! ```yaml
//! version: v1
//! volumePolicies:
//! - conditions:
//!     capacity: "0,10Gi"              # min,max (either may be empty)
//!     storageClass: [gp2, standard]
//!     pvcLabels: {backup: "no"}
//!     volumeTypes: [emptyDir, nfs]    # the pod volume's (or its PV's) source
//!     nfs: {server: 10.0.0.1}         # or nfs: {} (any NFS)
//!     csi: {driver: ebs.csi.aws.com}  # or csi: {} (any CSI)
//!     pvcPhase: [Bound]
//!     pvcVolumeMode: Filesystem
//!     pvcAccessModes: [ReadWriteOnce]
//!   action: {type: skip}
//! ```
//!
//! The first policy whose conditions all hold decides; a volume no policy matches keeps the
//! choice of the pod's annotations and `defaultVolumesToFsBackup` (Velero's precedence).

use std::collections::BTreeMap;

use serde::Deserialize;

/// What a policy does with a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum VolumeAction {
    /// Its data is not backed up.
    #[serde(rename = "skip")]
    Skip,
    /// The node agent copies its files.
    #[serde(rename = "fs-backup")]
    FsBackup,
    /// A volume snapshot (Arca copies the files instead, and warns: no snapshots yet).
    #[serde(rename = "snapshot")]
    Snapshot,
}

/// What the conditions look at, for one pod volume.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VolumeFacts {
    /// The PV's capacity in bytes (None for volumes without a PV).
    pub capacity: Option<f64>,
    pub storage_class: Option<String>,
    /// Server and path of an NFS volume.
    pub nfs: Option<(String, String)>,
    /// Driver and volume attributes of a CSI volume.
    pub csi: Option<(String, BTreeMap<String, String>)>,
    /// The volume source's name as Kubernetes spells it (`emptyDir`, `nfs`, `csi`, `local`).
    pub volume_type: String,
    /// The claim's labels, phase, volume mode and access modes (None: not a claim).
    pub pvc_labels: Option<BTreeMap<String, String>>,
    pub pvc_phase: Option<String>,
    pub pvc_volume_mode: Option<String>,
    pub pvc_access_modes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    version: String,
    #[serde(default)]
    volume_policies: Vec<PolicySpec>,
    #[serde(default)]
    include_exclude_policy: Option<IncludeExcludePolicy>,
}

/// `includeExcludePolicy`: resource filters of Velero's scoped kind, combined with the
/// Backup's own (which win where they name a resource).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncludeExcludePolicy {
    #[serde(default)]
    pub included_cluster_scoped_resources: Vec<String>,
    #[serde(default)]
    pub excluded_cluster_scoped_resources: Vec<String>,
    #[serde(default)]
    pub included_namespace_scoped_resources: Vec<String>,
    #[serde(default)]
    pub excluded_namespace_scoped_resources: Vec<String>,
}

impl IncludeExcludePolicy {
    /// The lists, as the filters read them.
    pub fn lists(&self) -> crate::scoped::ScopedLists {
        crate::scoped::ScopedLists {
            included_cluster: self.included_cluster_scoped_resources.clone(),
            excluded_cluster: self.excluded_cluster_scoped_resources.clone(),
            included_namespaced: self.included_namespace_scoped_resources.clone(),
            excluded_namespaced: self.excluded_namespace_scoped_resources.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    #[serde(default)]
    conditions: Conditions,
    action: ActionSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionSpec {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted as Velero writes it; no action here takes parameters"
    )]
    parameters: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Conditions {
    #[serde(default)]
    capacity: Option<String>,
    #[serde(default)]
    storage_class: Vec<String>,
    #[serde(default)]
    nfs: Option<NfsCondition>,
    #[serde(default)]
    csi: Option<CsiCondition>,
    #[serde(default)]
    volume_types: Vec<String>,
    #[serde(default)]
    pvc_labels: BTreeMap<String, String>,
    #[serde(default)]
    pvc_phase: Vec<String>,
    #[serde(default)]
    pvc_volume_mode: Option<String>,
    #[serde(default)]
    pvc_access_modes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NfsCondition {
    #[serde(default)]
    server: String,
    #[serde(default)]
    path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CsiCondition {
    #[serde(default)]
    driver: String,
    #[serde(default)]
    volume_attributes: BTreeMap<String, String>,
}

/// One policy, checked.
#[derive(Debug)]
struct Policy {
    capacity: Option<(f64, f64)>,
    conditions: Conditions,
    action: VolumeAction,
}

/// A backup's resource policies: its volume policies, and its `includeExcludePolicy`.
#[derive(Debug)]
pub struct ResourcePolicies {
    policies: Vec<Policy>,
    /// Resource filters combined with the Backup's scoped ones.
    pub include_exclude: Option<IncludeExcludePolicy>,
}

/// Kubernetes' volume source names, as `volumeTypes` lists them (Velero's list).
pub const VOLUME_TYPES: &[&str] = &[
    "awsAzureDisk",
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cinder",
    "cephfs",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flocker",
    "flexVolume",
    "gitRepo",
    "glusterfs",
    "gcePersistentDisk",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageOS",
    "vsphereVolume",
];

/// A Kubernetes quantity (`10Gi`, `500M`, `1.5T`, `1e9`) in bytes.
pub fn quantity(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
    ];
    let (number, factor) = suffixes
        .iter()
        .find_map(|(s, f)| text.strip_suffix(s).map(|n| (n, *f)))
        .unwrap_or((text, 1.0));
    let plain = !number.is_empty()
        && number
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    match number.parse::<f64>() {
        Ok(n) if plain && n.is_finite() && n >= 0.0 => Ok(n * factor),
        _ => Err(format!(
            "{text:?} is not a quantity (write 10Gi, 500M, 1Ti)"
        )),
    }
}

impl ResourcePolicies {
    /// Reads the policies of ConfigMap `name` (see [`crate::rules::read`]); each problem
    /// is named after the ConfigMap.
    pub fn from_config_map(name: &str, text: &str) -> Result<Self, Vec<String>> {
        Self::parse(text).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| format!("resource policies ConfigMap {name}: {p}"))
                .collect()
        })
    }

    /// Reads the policies' YAML; every problem found is returned.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        if text.len() > 1 << 20 {
            return Err(vec!["the policies are longer than 1 MiB".into()]);
        }
        let document: Document = serde_yaml::from_str(text)
            .map_err(|e| vec![format!("not valid resource policies: {e}")])?;
        if document.version != "v1" {
            return Err(vec![format!(
                "version {:?} is not supported: write `version: v1`",
                document.version
            )]);
        }
        let mut policies = Vec::new();
        let mut problems = Vec::new();
        for (i, spec) in document.volume_policies.into_iter().enumerate() {
            match Policy::check(spec) {
                Ok(p) => policies.push(p),
                Err(e) => problems.push(format!("volume policy {}: {e}", i + 1)),
            }
        }
        if let Some(filters) = &document.include_exclude_policy {
            problems.extend(
                filters
                    .lists()
                    .problems()
                    .into_iter()
                    .map(|p| format!("includeExcludePolicy: {p}")),
            );
        }
        if problems.is_empty() {
            Ok(Self {
                policies,
                include_exclude: document.include_exclude_policy,
            })
        } else {
            Err(problems)
        }
    }

    /// The action of the first policy whose conditions all hold, if any.
    pub fn action_for(&self, facts: &VolumeFacts) -> Option<VolumeAction> {
        self.policies
            .iter()
            .find(|p| p.matches(facts))
            .map(|p| p.action)
    }
}

impl Policy {
    fn check(spec: PolicySpec) -> Result<Self, String> {
        let action = match spec.action.kind.as_str() {
            "skip" => VolumeAction::Skip,
            "fs-backup" => VolumeAction::FsBackup,
            "snapshot" => VolumeAction::Snapshot,
            other => {
                return Err(format!(
                    "action type {other:?} is not skip, fs-backup or snapshot"
                ));
            }
        };
        let c = spec.conditions;
        let capacity = match c.capacity.as_deref() {
            None => None,
            Some(text) => {
                let (low, high) = text.split_once(',').ok_or_else(|| {
                    format!("capacity {text:?} is not `min,max` (write \"0,10Gi\" or \"10Gi,\")")
                })?;
                let bound = |b: &str| {
                    if b.trim().is_empty() {
                        Ok(0.0)
                    } else {
                        quantity(b).map_err(|e| format!("capacity: {e}"))
                    }
                };
                let (low, high) = (bound(low)?, bound(high)?);
                if high != 0.0 && high < low {
                    return Err(format!(
                        "capacity {text:?}: the maximum is below the minimum"
                    ));
                }
                Some((low, high))
            }
        };
        if let Some(unknown) = c
            .volume_types
            .iter()
            .find(|t| !VOLUME_TYPES.contains(&t.as_str()))
        {
            return Err(format!(
                "volumeTypes: {unknown:?} is not a Kubernetes volume source (e.g. emptyDir, nfs, csi, local)"
            ));
        }
        if let Some(csi) = &c.csi
            && csi.driver.is_empty()
            && !csi.volume_attributes.is_empty()
        {
            return Err("csi: volumeAttributes need a driver".into());
        }
        Ok(Self {
            capacity,
            conditions: c,
            action,
        })
    }

    fn matches(&self, v: &VolumeFacts) -> bool {
        let c = &self.conditions;
        if let Some((low, high)) = self.capacity {
            // Velero's rule: a volume without a capacity counts as 0.
            let size = v.capacity.unwrap_or(0.0);
            let fits = size >= low && (high == 0.0 || size <= high);
            if !fits {
                return false;
            }
        }
        if !c.storage_class.is_empty()
            && !v
                .storage_class
                .as_ref()
                .is_some_and(|s| c.storage_class.contains(s))
        {
            return false;
        }
        if let Some(want) = &c.nfs {
            let Some((server, path)) = &v.nfs else {
                return false;
            };
            if (!want.server.is_empty() && &want.server != server)
                || (!want.path.is_empty() && &want.path != path)
            {
                return false;
            }
        }
        if let Some(want) = &c.csi {
            let Some((driver, attributes)) = &v.csi else {
                return false;
            };
            if !want.driver.is_empty() && &want.driver != driver {
                return false;
            }
            if want
                .volume_attributes
                .iter()
                .any(|(k, value)| attributes.get(k) != Some(value))
            {
                return false;
            }
        }
        if !c.volume_types.is_empty() && !c.volume_types.contains(&v.volume_type) {
            return false;
        }
        if !c.pvc_labels.is_empty() {
            let Some(labels) = &v.pvc_labels else {
                return false;
            };
            if c.pvc_labels
                .iter()
                .any(|(k, value)| labels.get(k) != Some(value))
            {
                return false;
            }
        }
        if !c.pvc_phase.is_empty()
            && !v
                .pvc_phase
                .as_ref()
                .is_some_and(|p| c.pvc_phase.contains(p))
        {
            return false;
        }
        if let Some(mode) = &c.pvc_volume_mode
            && v.pvc_volume_mode.as_ref() != Some(mode)
        {
            return false;
        }
        if !c.pvc_access_modes.is_empty() {
            let mut want = c.pvc_access_modes.clone();
            let mut have = v.pvc_access_modes.clone();
            want.sort();
            want.dedup();
            have.sort();
            have.dedup();
            if want != have {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(class: &str, gib: f64, labels: &[(&str, &str)]) -> VolumeFacts {
        VolumeFacts {
            capacity: Some(gib * 1024f64.powi(3)),
            storage_class: Some(class.into()),
            volume_type: "csi".into(),
            csi: Some(("ebs.csi.aws.com".into(), BTreeMap::new())),
            pvc_labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            pvc_phase: Some("Bound".into()),
            pvc_volume_mode: Some("Filesystem".into()),
            pvc_access_modes: vec!["ReadWriteOnce".into()],
            ..Default::default()
        }
    }

    fn scratch() -> VolumeFacts {
        VolumeFacts {
            volume_type: "emptyDir".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_matching_policy_decides() {
        let policies = ResourcePolicies::parse(
            r#"
version: v1
volumePolicies:
- conditions: {pvcLabels: {backup: "no"}}
  action: {type: skip}
- conditions: {capacity: "0,5Gi", storageClass: [gp3]}
  action: {type: fs-backup}
- conditions: {csi: {driver: ebs.csi.aws.com}}
  action: {type: snapshot}
- conditions: {volumeTypes: [emptyDir]}
  action: {type: skip}
"#,
        )
        .expect("policies");
        let at = |f: &VolumeFacts| policies.action_for(f);
        assert_eq!(
            at(&claim("gp3", 1.0, &[("backup", "no")])),
            Some(VolumeAction::Skip)
        );
        assert_eq!(at(&claim("gp3", 1.0, &[])), Some(VolumeAction::FsBackup));
        assert_eq!(
            at(&claim("gp3", 50.0, &[])),
            Some(VolumeAction::Snapshot),
            "too big for 2"
        );
        assert_eq!(at(&claim("gp2", 1.0, &[])), Some(VolumeAction::Snapshot));
        assert_eq!(at(&scratch()), Some(VolumeAction::Skip));
        let nfs = VolumeFacts {
            volume_type: "nfs".into(),
            nfs: Some(("10.0.0.1".into(), "/export".into())),
            ..Default::default()
        };
        assert_eq!(at(&nfs), None, "no policy: the annotations decide");
    }

    #[test]
    fn conditions_follow_velero() {
        let one = |conditions: &str, facts: &VolumeFacts| {
            ResourcePolicies::parse(&format!(
                "version: v1\nvolumePolicies:\n- conditions: {conditions}\n  action: {{type: skip}}\n"
            ))
            .expect("policy")
            .action_for(facts)
            .is_some()
        };
        let nfs = VolumeFacts {
            volume_type: "nfs".into(),
            nfs: Some(("10.0.0.1".into(), "/export".into())),
            ..Default::default()
        };
        assert!(one("{nfs: {}}", &nfs));
        assert!(one("{nfs: {server: 10.0.0.1}}", &nfs));
        assert!(!one("{nfs: {path: /other}}", &nfs));
        assert!(!one("{nfs: {}}", &scratch()));
        assert!(one("{csi: {}}", &claim("gp2", 1.0, &[])));
        assert!(!one("{csi: {driver: other}}", &claim("gp2", 1.0, &[])));
        assert!(
            one("{capacity: \"10Gi,\"}", &claim("gp2", 10.0, &[])),
            "bounds included"
        );
        assert!(
            !one("{capacity: \"10Gi,\"}", &scratch()),
            "no capacity counts as 0"
        );
        assert!(one(
            "{pvcAccessModes: [ReadWriteOnce]}",
            &claim("gp2", 1.0, &[])
        ));
        assert!(!one(
            "{pvcAccessModes: [ReadWriteOnce, ReadOnlyMany]}",
            &claim("gp2", 1.0, &[])
        ));
        assert!(one(
            "{pvcPhase: [Bound], pvcVolumeMode: Filesystem}",
            &claim("gp2", 1.0, &[])
        ));
        assert!(!one("{pvcLabels: {a: b}}", &scratch()));
        assert!(one("{}", &scratch()), "no condition: every volume");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("10Gi"), Ok(10.0 * 1024f64.powi(3)));
        assert_eq!(quantity("500M"), Ok(5e8));
        assert_eq!(quantity("1.5"), Ok(1.5));
        assert_eq!(quantity("1e3"), Ok(1000.0));
        for bad in ["", "Gi", "ten", "-1Gi", "1GB", "inf", "NaN"] {
            assert!(quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_policies_are_reported_with_the_fix() {
        let problems = ResourcePolicies::parse(
            r#"
version: v1
volumePolicies:
- conditions: {capacity: "10Gi"}
  action: {type: skip}
- conditions: {capacity: "10Gi,1Gi"}
  action: {type: skip}
- conditions: {volumeTypes: [emptydir]}
  action: {type: skip}
- conditions: {}
  action: {type: delete}
- conditions: {csi: {volumeAttributes: {a: b}}}
  action: {type: skip}
"#,
        )
        .expect_err("invalid");
        let all = problems.join("\n");
        assert_eq!(problems.len(), 5, "{all}");
        assert!(
            all.contains("volume policy 1: capacity \"10Gi\" is not `min,max`"),
            "{all}"
        );
        assert!(
            all.contains("volume policy 2: capacity \"10Gi,1Gi\": the maximum"),
            "{all}"
        );
        assert!(
            all.contains("volume policy 3: volumeTypes: \"emptydir\""),
            "{all}"
        );
        assert!(
            all.contains("volume policy 4: action type \"delete\""),
            "{all}"
        );
        assert!(
            all.contains("volume policy 5: csi: volumeAttributes need a driver"),
            "{all}"
        );
        for (text, says) in [
            ("version: v2\nvolumePolicies: []", "write `version: v1`"),
            (
                "version: v1\nvolumePolicies:\n- conditions: {size: 1}\n  action: {type: skip}",
                "unknown field",
            ),
        ] {
            let problems = ResourcePolicies::parse(text).expect_err(text);
            assert!(problems[0].contains(says), "{text}: {problems:?}");
        }
    }
}
