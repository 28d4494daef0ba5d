//! The restore engine: verify checksums -> survey the index -> plan (skipped items recorded)
//! -> for each tier, stream the index again and fetch that tier's frames by byte range as
//! they come, creating their items concurrently -> retry what waited for a dependency ->
//! upload per-item outcomes and results. Nothing is written before the archive and index
//! have been verified whole; the index is never held whole, and every pass reads it checked
//! against what was verified (see `plan.rs` and `run/passes.rs`).

pub mod apply;
pub mod helper;
pub mod modifiers;
pub mod order;
pub mod plan;
mod readiness;
pub mod reprovision;
mod run;
pub mod skip;
pub mod transform;

use std::collections::BTreeMap;

use arca_api::RestoreSpec;
use arca_store::{StoreError, archive::Results};

use crate::filters::{FilterError, LabelFilter, NamespaceFilter};
pub use run::run;

/// What to restore.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// The Restore's name: its folder in storage (`restores/<name>/`).
    pub name: String,
    /// The Restore's namespace: its `resourceModifier` ConfigMap is read there.
    pub namespace: String,
    /// The backup restored.
    pub backup_name: String,
    pub spec: RestoreSpec,
    /// `Some(namespace)`: a tenant's restore, writing into that namespace only.
    pub tenant: Option<String>,
    /// The Restore's uid: labels its pod volume work items.
    pub uid: String,
    /// Where pod volume data comes from, or why it cannot be read (pods with snapshots
    /// then get an error each, and empty volumes).
    pub volumes: Result<crate::pod_volumes::VolumeJob, String>,
    /// The image of the `arca-restore-wait` init container added to pods whose volumes get
    /// data, so their containers start on restored data; None adds none (an operator run
    /// outside the cluster has no image to give).
    pub restore_helper_image: Option<String>,
    /// What the run is told before it starts and reports as warnings: what the backup holds
    /// that this restore cannot bring back (a Velero backup's volume data, items its reader
    /// refused). Each is reported if its namespace is restored.
    pub notices: Vec<Notice>,
    /// The operator's own client: the VolumeSnapshotContents of claims restored from their
    /// CSI snapshots (cluster-scoped).
    pub operator_client: crate::csi::OperatorClient,
}

/// A warning known before the run: about a namespace of the backup (None: the backup as a
/// whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The namespace in the backup it is about (before any namespace mapping).
    pub namespace: Option<String>,
    /// The warning.
    pub message: String,
}

/// Tuning.
#[derive(Clone, Copy, Debug)]
pub struct RestoreSettings {
    /// Items written at once within a tier.
    pub apply_concurrency: usize,
    /// Frames fetched ahead.
    pub frame_concurrency: usize,
    /// How long to wait for CRDs to be served and namespaces to finish terminating.
    pub wait_timeout: std::time::Duration,
}

impl Default for RestoreSettings {
    fn default() -> Self {
        Self {
            apply_concurrency: 32,
            frame_concurrency: 4,
            wait_timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// What a finished restore did.
#[derive(Clone, Debug, Default)]
pub struct RestoreOutcome {
    pub total: u64,
    /// Restore exec hooks run and failed.
    pub hooks: arca_api::HookStatus,
    pub outcomes: arca_api::ItemOutcomes,
    pub results: Results,
}

/// Why a restore could not run.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the spec is invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error(
        "backup {backup} was written in storage format {found}, which this version of Arca cannot read (it reads format {known})"
    )]
    Format {
        backup: String,
        found: String,
        known: String,
    },
    #[error("backup {backup} is damaged, nothing was restored: {source}")]
    Corrupt {
        backup: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "backup {backup} changed in storage during the restore, which stopped there: {source}. Items of the tiers before were restored; restore again once nothing else writes to the backup"
    )]
    Changed {
        backup: String,
        #[source]
        source: StoreError,
    },
    #[error("reading or writing the storage location: {0}")]
    Store(#[from] StoreError),
    #[error("reading the cluster's API discovery: {0}")]
    Discovery(#[source] kube::Error),
    #[error("the restore task failed: {0}")]
    Internal(String),
}

/// Checks of the spec that need no cluster.
pub fn validate(spec: &RestoreSpec, tenant: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut push = |r: Result<(), FilterError>| {
        if let Err(e) = r {
            problems.push(e.to_string());
        }
    };
    push(NamespaceFilter::new(&spec.included_namespaces, &spec.excluded_namespaces).map(|_| ()));
    push(LabelFilter::new(spec.label_selector.as_ref(), &spec.or_label_selectors).map(|_| ()));
    for (from, to) in &spec.namespace_mapping {
        if !arca_api::names::is_dns_label(to) {
            problems.push(format!(
                "namespaceMapping: {from:?} maps to {to:?}, which is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
            ));
        }
    }
    let mut targets: BTreeMap<&String, &String> = BTreeMap::new();
    for (from, to) in &spec.namespace_mapping {
        if let Some(other) = targets.insert(to, from) {
            problems.push(format!(
                "namespaceMapping: both {other:?} and {from:?} map to {to:?}"
            ));
        }
    }
    if let Some(reference) = &spec.resource_modifier
        && !reference.kind.eq_ignore_ascii_case("configmap")
    {
        problems.push(format!(
            "resourceModifier names a {}: the rules must be in a ConfigMap (kind: ConfigMap)",
            reference.kind
        ));
    }
    if let Some(ns) = tenant {
        if spec.include_cluster_resources == Some(true) {
            problems.push(format!("a Restore in namespace {ns} cannot restore cluster-scoped resources; remove includeClusterResources"));
        }
        if let Some((from, to)) = spec
            .namespace_mapping
            .iter()
            .find(|(from, to)| *to != ns || *from != ns)
        {
            problems.push(format!("namespaceMapping: a Restore in namespace {ns} restores items of {ns} into {ns} only; it maps {from:?} to {to:?}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_are_checked() {
        let spec = RestoreSpec {
            backup_name: Some("b".into()),
            namespace_mapping: BTreeMap::from([
                ("a".to_string(), "Bad_Name".to_string()),
                ("b".to_string(), "same".to_string()),
                ("c".to_string(), "same".to_string()),
            ]),
            ..Default::default()
        };
        let problems = validate(&spec, None);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("\"Bad_Name\", which is not a valid namespace name"));
        assert!(problems[1].contains("map to \"same\""));
    }

    #[test]
    fn tenants_restore_into_their_namespace_only() {
        let spec = RestoreSpec {
            backup_name: Some("b".into()),
            include_cluster_resources: Some(true),
            namespace_mapping: BTreeMap::from([("team".to_string(), "elsewhere".to_string())]),
            ..Default::default()
        };
        let problems = validate(&spec, Some("team"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        // Another namespace's items mapped into the tenant's: attack 1's second half.
        let borrowing = RestoreSpec {
            backup_name: Some("b".into()),
            namespace_mapping: BTreeMap::from([("bank".to_string(), "team".to_string())]),
            ..Default::default()
        };
        let problems = validate(&borrowing, Some("team"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .contains("restores items of team into team only; it maps \"bank\" to \"team\""),
            "{problems:?}"
        );
        assert!(
            validate(
                &RestoreSpec {
                    backup_name: Some("b".into()),
                    ..Default::default()
                },
                Some("team")
            )
            .is_empty()
        );
    }
}
