//! From the index to what the restore does: which items, in which tier, from which frame.
//! Pure: everything here is decided from index entries alone.

use std::collections::{BTreeMap, BTreeSet};

use arca_store::archive::{FrameRef, IndexEntry};

use super::order::{LAST_TIER, Workloads, is_workload, never_restored, tier_of};
use crate::filters::{ClusterResources, NamespaceFilter};

/// Cluster-scoped kinds that come along when only related cluster items are restored;
/// whether each item is related is decided from its content at restore time.
pub const RELATED_CLUSTER_KINDS: &[&str] = &[
    "customresourcedefinitions.apiextensions.k8s.io",
    "persistentvolumes",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
];

/// Items to restore, by tier and frame.
#[derive(Debug, Default)]
pub struct Plan {
    /// `tiers[t]`: frame -> the entries of that frame to restore.
    pub tiers: Vec<BTreeMap<FrameRef, Vec<IndexEntry>>>,
    /// Entries to restore, all tiers.
    pub total: u64,
    /// Items of the backup never restored, with the reason (recorded as skipped).
    pub skipped: Vec<(IndexEntry, String)>,
    /// Cluster-scoped items left out by `includeClusterResources`.
    pub cluster_left_out: u64,
    /// Workload controllers restored, for the skip rule of their children.
    pub workloads: Workloads,
    /// Backed-up namespaces with items to restore.
    pub namespaces: BTreeSet<String>,
    /// `plural.group` of custom resource types restored (their CRDs are related).
    pub custom_types: BTreeSet<String>,
}

/// What decides the plan.
#[allow(missing_debug_implementations)]
pub struct PlanFilters<'a> {
    pub namespaces: &'a NamespaceFilter,
    /// By `plural.group`.
    pub resource_matches: &'a dyn Fn(&str) -> bool,
    pub cluster: ClusterResources,
    /// A tenant's restore: only items backed up from this namespace, restored into it.
    pub tenant: Option<&'a str>,
    /// Where each backed-up namespace lands.
    pub target: &'a dyn Fn(&str) -> String,
    /// `plural.group` of types defined by CRDs in the backup.
    pub crd_types: &'a BTreeSet<String>,
}

impl Plan {
    pub fn build(entries: impl IntoIterator<Item = IndexEntry>, f: &PlanFilters<'_>) -> Self {
        let mut plan = Plan {
            tiers: vec![BTreeMap::new(); LAST_TIER + 1],
            ..Plan::default()
        };
        let mut cluster_candidates = Vec::new();
        for entry in entries {
            let gr = entry.group_resource();
            if !(f.resource_matches)(&gr) {
                continue;
            }
            if never_restored(&gr, &entry.group) {
                plan.skipped
                    .push((entry, "never restored (cluster runtime state)".into()));
                continue;
            }
            match entry.namespace.clone() {
                Some(ns) => {
                    if !f.namespaces.matches(&ns) {
                        continue;
                    }
                    if let Some(tenant) = f.tenant
                        && (ns != tenant || (f.target)(&ns) != tenant)
                    {
                        plan.skipped.push((
                            entry,
                            format!(
                                "backed up from namespace {ns}: a Restore in namespace {tenant} takes only items of {tenant}"
                            ),
                        ));
                        continue;
                    }
                    if is_workload(&entry.group, &entry.kind) {
                        plan.workloads.insert((
                            entry.group.clone(),
                            entry.kind.clone(),
                            ns.clone(),
                            entry.name.clone(),
                        ));
                    }
                    if f.crd_types.contains(&gr) {
                        plan.custom_types.insert(gr.clone());
                    }
                    plan.namespaces.insert(ns);
                    plan.add(entry);
                }
                None => cluster_candidates.push(entry),
            }
        }
        for entry in cluster_candidates {
            let gr = entry.group_resource();
            let keep = match (f.tenant, f.cluster) {
                (Some(_), _) | (None, ClusterResources::None) => false,
                (None, ClusterResources::All) => {
                    gr != "namespaces" || f.namespaces.matches(&entry.name)
                }
                (None, ClusterResources::RelatedOnly) => {
                    (gr == "namespaces" && plan.namespaces.contains(&entry.name))
                        || (gr == "customresourcedefinitions.apiextensions.k8s.io"
                            && plan.custom_types.contains(&entry.name))
                        || RELATED_CLUSTER_KINDS[1..].contains(&gr.as_str())
                }
            };
            if keep {
                plan.add(entry);
            } else {
                plan.cluster_left_out += 1;
            }
        }
        plan
    }

    fn add(&mut self, entry: IndexEntry) {
        let tier = tier_of(&entry.group_resource());
        self.total += 1;
        self.tiers[tier].entry(entry.frame).or_default().push(entry);
    }

    /// Names of the PersistentVolumes restored.
    pub fn volumes(&self) -> BTreeSet<String> {
        self.tiers
            .iter()
            .flat_map(|t| t.values().flatten())
            .filter(|e| e.group_resource() == "persistentvolumes")
            .map(|e| e.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        group: &str,
        kind: &str,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        frame: u64,
    ) -> IndexEntry {
        IndexEntry {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            resource: resource.into(),
            namespace: ns.map(str::to_string),
            name: name.into(),
            path: String::new(),
            size: 1,
            sha256: String::new(),
            frame: FrameRef(frame, 10),
        }
    }

    fn backup() -> Vec<IndexEntry> {
        vec![
            entry("", "Namespace", "namespaces", None, "app", 0),
            entry("", "Namespace", "namespaces", None, "other", 0),
            entry("", "ConfigMap", "configmaps", Some("app"), "c1", 10),
            entry("", "ConfigMap", "configmaps", Some("app"), "c2", 10),
            entry("", "ConfigMap", "configmaps", Some("other"), "c3", 20),
            entry("apps", "Deployment", "deployments", Some("app"), "web", 30),
            entry("", "Event", "events", Some("app"), "e1", 40),
            entry("example.com", "Widget", "widgets", Some("app"), "w1", 50),
            entry(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                None,
                "widgets.example.com",
                60,
            ),
            entry(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                None,
                "gadgets.example.com",
                60,
            ),
            entry(
                "storage.k8s.io",
                "StorageClass",
                "storageclasses",
                None,
                "fast",
                70,
            ),
            entry("", "PersistentVolume", "persistentvolumes", None, "pv1", 80),
        ]
    }

    fn names(plan: &Plan) -> Vec<String> {
        plan.tiers
            .iter()
            .flat_map(|t| t.values().flatten())
            .map(|e| format!("{}/{}", e.group_resource(), e.name))
            .collect()
    }

    #[test]
    fn one_namespace_brings_its_related_cluster_items_only() {
        let ns = NamespaceFilter::new(&["app".into()], &[]).expect("filter");
        let crd_types = BTreeSet::from(["widgets.example.com".to_string()]);
        let plan = Plan::build(
            backup(),
            &PlanFilters {
                namespaces: &ns,
                resource_matches: &|_| true,
                cluster: ClusterResources::decide(None, &ns),
                tenant: None,
                target: &|n| n.to_string(),
                crd_types: &crd_types,
            },
        );
        let got = names(&plan);
        assert_eq!(
            got[0], "customresourcedefinitions.apiextensions.k8s.io/widgets.example.com",
            "CRDs first"
        );
        assert_eq!(got[1], "namespaces/app");
        assert!(
            got.contains(&"persistentvolumes/pv1".to_string()),
            "a candidate, checked against its claim later"
        );
        assert!(
            !got.iter().any(|n| n.contains("gadgets")
                || n.contains("storageclasses")
                || n.contains("other")
                || n.contains("c3")),
            "{got:?}"
        );
        assert_eq!(plan.skipped.len(), 1, "the event");
        assert_eq!(plan.cluster_left_out, 3);
        assert!(plan.workloads.contains(&(
            "apps".into(),
            "Deployment".into(),
            "app".into(),
            "web".into()
        )));
        assert_eq!(plan.total as usize, got.len());
        let c_frame = plan.tiers[super::super::order::tier_of("configmaps")]
            .get(&FrameRef(10, 10))
            .expect("frame");
        assert_eq!(c_frame.len(), 2, "both items of the frame");
    }

    #[test]
    fn a_tenant_restore_takes_only_its_own_namespace_s_items() {
        let ns = NamespaceFilter::new(&[], &[]).expect("filter");
        // Another tenant's items, even mapped onto this tenant's namespace, are not taken.
        let plan = Plan::build(
            backup(),
            &PlanFilters {
                namespaces: &ns,
                resource_matches: &|gr| gr != "events",
                cluster: ClusterResources::All,
                tenant: Some("other"),
                target: &|n| {
                    if n == "app" {
                        "other".into()
                    } else {
                        n.to_string()
                    }
                },
                crd_types: &BTreeSet::new(),
            },
        );
        let got = names(&plan);
        assert_eq!(
            got,
            ["configmaps/c3"],
            "only what came from namespace other"
        );
        assert_eq!(plan.skipped.len(), 4, "app's items, mapped or not");
        assert!(
            plan.skipped
                .iter()
                .all(|(_, why)| why.contains("takes only items of other")),
            "{:?}",
            plan.skipped
        );
    }
}
