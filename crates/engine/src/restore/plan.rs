//! From the index to what the restore does: which items, in which tier, and why the others
//! are not restored. Pure: everything here is decided from index entries alone.
//!
//! The index is streamed, never held: a first pass feeds every entry to an [`IndexSurvey`],
//! which becomes the [`Survey`] (namespaces, workloads and custom types restored: what the
//! rule for cluster-scoped items and the children of controllers need); a second decides each
//! entry ([`decide`]) into a [`Plan`] of counts and small sets; each tier's pass decides again
//! and groups the entries of its tier by frame ([`FrameBatches`]) for the frame workers.

use std::collections::{BTreeMap, BTreeSet};

use arca_store::archive::{FrameRef, IndexEntry};

use super::{
    order::{Tier, tier_of},
    skip::{self, Skip, Workloads, is_workload},
};
use crate::filters::{ClusterResources, NamespaceFilter};

/// Cluster-scoped kinds that come along when only related cluster items are restored;
/// whether each item is related is decided from its content at restore time.
pub const RELATED_CLUSTER_KINDS: &[&str] = &[
    "customresourcedefinitions.apiextensions.k8s.io",
    "persistentvolumes",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
];

const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";

/// Where the restored items come from and go.
#[allow(missing_debug_implementations)]
pub struct Scope<'a> {
    pub namespaces: &'a NamespaceFilter,
    /// A tenant's restore: only items backed up from this namespace, restored into it.
    pub tenant: Option<&'a str>,
    /// Where each backed-up namespace lands.
    pub target: &'a (dyn Fn(&str) -> String + Sync),
}

/// What decides the plan.
#[allow(missing_debug_implementations)]
pub struct PlanFilters<'a> {
    pub scope: Scope<'a>,
    /// By `plural.group`.
    pub resource_matches: &'a (dyn Fn(&str) -> bool + Sync),
    pub cluster: ClusterResources,
}

/// What becomes of one entry of the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Restored, in this tier.
    Restore(Tier),
    /// Not restored, recorded as skipped with the reason.
    Skip(Skip),
    /// Left out by the spec's resource or namespace filters; not recorded.
    Filtered,
    /// Cluster-scoped and left out by `includeClusterResources`; counted.
    ClusterLeftOut,
}

/// What the first pass over the index finds, by type: it runs before the resource filter
/// can be made (that needs the backup's types), so [`IndexSurvey::finish`] applies it.
#[derive(Debug, Default)]
pub struct IndexSurvey {
    /// By `plural.group` of namespaced items in scope: their namespaces and workload
    /// controllers.
    by_type: BTreeMap<String, (BTreeSet<String>, Workloads)>,
    /// Names of the CRDs in the backup: the `plural.group` of the types they define.
    crd_names: BTreeSet<String>,
}

impl IndexSurvey {
    /// Takes one entry of the index into account.
    pub fn add(&mut self, entry: &IndexEntry, scope: &Scope<'_>) {
        let gr = entry.group_resource();
        let Some(ns) = &entry.namespace else {
            if gr == CRDS {
                self.crd_names.insert(entry.name.clone());
            }
            return;
        };
        if skip::runtime_state(&gr, &entry.group).is_some()
            || !scope.namespaces.matches(ns)
            || skip::other_tenant(ns, scope.tenant, scope.target).is_some()
        {
            return;
        }
        let (namespaces, workloads) = self.by_type.entry(gr).or_default();
        if !namespaces.contains(ns) {
            namespaces.insert(ns.clone());
        }
        if is_workload(&entry.group, &entry.kind) {
            workloads.insert((
                entry.group.clone(),
                entry.kind.clone(),
                ns.clone(),
                entry.name.clone(),
            ));
        }
    }

    /// What is restored, once the resource filter is known.
    pub fn finish(self, resource_matches: &dyn Fn(&str) -> bool) -> Survey {
        let mut survey = Survey::default();
        for (gr, (namespaces, workloads)) in self.by_type {
            if !resource_matches(&gr) {
                continue;
            }
            survey.namespaces.extend(namespaces);
            survey.workloads.extend(workloads);
            if self.crd_names.contains(&gr) {
                survey.custom_types.insert(gr);
            }
        }
        survey
    }
}

/// What the restore restores, as far as the rule for cluster-scoped items and the skip
/// rule for controllers' children need it. Grows with the namespaces, workload controllers
/// and custom types restored, never with the other items.
#[derive(Debug, Default)]
pub struct Survey {
    /// Workload controllers restored, for the skip rule of their children.
    pub workloads: Workloads,
    /// Backed-up namespaces with items to restore.
    pub namespaces: BTreeSet<String>,
    /// `plural.group` of custom resource types restored (their CRDs are related).
    pub custom_types: BTreeSet<String>,
}

/// What becomes of `entry`, given the filters and the survey of the whole index.
pub fn decide(entry: &IndexEntry, f: &PlanFilters<'_>, survey: &Survey) -> Decision {
    let gr = entry.group_resource();
    match &entry.namespace {
        Some(ns) => decide_namespaced(entry, &gr, ns, f),
        None => {
            if let Some(early) = decide_common(entry, &gr, f) {
                return early;
            }
            let keep = match (f.scope.tenant, f.cluster) {
                (Some(_), _) | (None, ClusterResources::None) => false,
                (None, ClusterResources::All) => {
                    gr != "namespaces" || f.scope.namespaces.matches(&entry.name)
                }
                (None, ClusterResources::RelatedOnly) => {
                    (gr == "namespaces" && survey.namespaces.contains(&entry.name))
                        || (gr == CRDS && survey.custom_types.contains(&entry.name))
                        || RELATED_CLUSTER_KINDS[1..].contains(&gr.as_str())
                }
            };
            if keep {
                Decision::Restore(tier_of(&gr))
            } else {
                Decision::ClusterLeftOut
            }
        }
    }
}

/// The resource filter, then the runtime-state rule: for every entry, first.
fn decide_common(entry: &IndexEntry, gr: &str, f: &PlanFilters<'_>) -> Option<Decision> {
    if !(f.resource_matches)(gr) {
        return Some(Decision::Filtered);
    }
    skip::runtime_state(gr, &entry.group).map(Decision::Skip)
}

/// A namespaced entry: decided by the filters alone.
fn decide_namespaced(entry: &IndexEntry, gr: &str, ns: &str, f: &PlanFilters<'_>) -> Decision {
    if let Some(early) = decide_common(entry, gr, f) {
        return early;
    }
    if !f.scope.namespaces.matches(ns) {
        return Decision::Filtered;
    }
    match skip::other_tenant(ns, f.scope.tenant, f.scope.target) {
        Some(skip) => Decision::Skip(skip),
        None => Decision::Restore(tier_of(gr)),
    }
}

/// What the second pass over the index finds: counts, and the few names the run needs
/// before the tiers (the CRDs to wait for, the volumes restored, the frames holding
/// ClusterRoleBindings).
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to restore, all tiers.
    pub total: u64,
    /// Entries to restore, by tier; a tier without any is not read.
    pub per_tier: BTreeMap<Tier, u64>,
    /// Items of the backup never restored (recorded as skipped).
    pub skipped: u64,
    /// Cluster-scoped items left out by `includeClusterResources`.
    pub cluster_left_out: u64,
    /// Names of the CRDs restored: the restore waits for them to be served.
    pub crds: Vec<String>,
    /// Names of the PersistentVolumes restored.
    pub volumes: BTreeSet<String>,
    /// Frames holding ClusterRoleBindings restored (read ahead for the related roles).
    pub binding_frames: BTreeSet<FrameRef>,
}

impl Plan {
    /// Counts `entry`, decided `decision`.
    pub fn add(&mut self, entry: &IndexEntry, decision: &Decision) {
        match decision {
            Decision::Restore(tier) => {
                self.total += 1;
                *self.per_tier.entry(*tier).or_default() += 1;
                match entry.group_resource().as_str() {
                    CRDS => self.crds.push(entry.name.clone()),
                    "persistentvolumes" => {
                        self.volumes.insert(entry.name.clone());
                    }
                    "clusterrolebindings.rbac.authorization.k8s.io" => {
                        self.binding_frames.insert(entry.frame);
                    }
                    _ => {}
                }
            }
            Decision::Skip(_) => self.skipped += 1,
            Decision::ClusterLeftOut => self.cluster_left_out += 1,
            Decision::Filtered => {}
        }
    }
}

/// Groups entries that follow each other in the index by frame. A backup writes the entries
/// of a frame together, so each frame is fetched once; an index that interleaves frames
/// still restores every item (its frames are fetched once per run of entries).
#[derive(Debug, Default)]
pub struct FrameBatches {
    current: Option<(FrameRef, Vec<IndexEntry>)>,
}

impl FrameBatches {
    /// Adds an entry; returns the previous frame's entries when `entry` starts another.
    pub fn push(&mut self, entry: IndexEntry) -> Option<(FrameRef, Vec<IndexEntry>)> {
        match &mut self.current {
            Some((frame, entries)) if *frame == entry.frame => {
                entries.push(entry);
                None
            }
            _ => self.current.replace((entry.frame, vec![entry])),
        }
    }

    /// The last frame's entries.
    pub fn finish(self) -> Option<(FrameRef, Vec<IndexEntry>)> {
        self.current
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

    /// What the restore's passes make of `entries`: the survey, the plan, the entries
    /// restored in tier order (index order within a tier) and the skipped ones.
    struct Built {
        survey: Survey,
        plan: Plan,
        restored: Vec<(Tier, IndexEntry)>,
        skipped: Vec<(IndexEntry, String)>,
    }

    fn build(entries: Vec<IndexEntry>, f: &PlanFilters<'_>) -> Built {
        let mut found = IndexSurvey::default();
        for entry in &entries {
            found.add(entry, &f.scope);
        }
        let survey = found.finish(f.resource_matches);
        let mut plan = Plan::default();
        let mut restored = Vec::new();
        let mut skipped = Vec::new();
        for entry in entries {
            let decision = decide(&entry, f, &survey);
            plan.add(&entry, &decision);
            match decision {
                Decision::Restore(tier) => restored.push((tier, entry)),
                Decision::Skip(why) => skipped.push((entry, why.to_string())),
                Decision::Filtered | Decision::ClusterLeftOut => {}
            }
        }
        restored.sort_by_key(|(tier, _)| *tier);
        Built {
            survey,
            plan,
            restored,
            skipped,
        }
    }

    fn names(built: &Built) -> Vec<String> {
        built
            .restored
            .iter()
            .map(|(_, e)| format!("{}/{}", e.group_resource(), e.name))
            .collect()
    }

    #[test]
    fn one_namespace_brings_its_related_cluster_items_only() {
        let ns = NamespaceFilter::new(&["app".into()], &[]).expect("filter");
        let built = build(
            backup(),
            &PlanFilters {
                scope: Scope {
                    namespaces: &ns,
                    tenant: None,
                    target: &|n| n.to_string(),
                },
                resource_matches: &|_| true,
                cluster: ClusterResources::decide(None, &ns),
            },
        );
        let got = names(&built);
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
        assert_eq!(built.skipped.len(), 1, "the event");
        assert_eq!(built.plan.skipped, 1);
        assert_eq!(built.plan.cluster_left_out, 3);
        assert!(built.survey.workloads.contains(&(
            "apps".into(),
            "Deployment".into(),
            "app".into(),
            "web".into()
        )));
        assert_eq!(built.plan.total as usize, got.len());
        let mut batches = FrameBatches::default();
        let mut frames: Vec<(FrameRef, Vec<IndexEntry>)> = built
            .restored
            .iter()
            .filter(|(tier, _)| *tier == tier_of("configmaps"))
            .filter_map(|(_, e)| batches.push(e.clone()))
            .collect();
        frames.extend(batches.finish());
        let c_frame = frames
            .iter()
            .find(|(frame, _)| *frame == FrameRef(10, 10))
            .map(|(_, entries)| entries)
            .expect("frame");
        assert_eq!(c_frame.len(), 2, "both items of the frame");
        assert_eq!(built.plan.crds, ["widgets.example.com"]);
        assert_eq!(
            built.plan.volumes,
            BTreeSet::from(["pv1".to_string()]),
            "a candidate"
        );
    }

    #[test]
    fn frames_are_batched_as_they_follow_each_other() {
        let mut batches = FrameBatches::default();
        let mut out = Vec::new();
        for (name, frame) in [("a", 1), ("b", 1), ("c", 2), ("d", 1)] {
            out.extend(batches.push(entry("", "ConfigMap", "configmaps", Some("n"), name, frame)));
        }
        out.extend(batches.finish());
        let got: Vec<(u64, usize)> = out.iter().map(|(f, e)| (f.0, e.len())).collect();
        assert_eq!(
            got,
            [(1, 2), (2, 1), (1, 1)],
            "an interleaved frame is read again"
        );
    }

    #[test]
    fn a_tenant_restore_takes_only_its_own_namespace_s_items() {
        let ns = NamespaceFilter::new(&[], &[]).expect("filter");
        // Another tenant's items, even mapped onto this tenant's namespace, are not taken.
        let built = build(
            backup(),
            &PlanFilters {
                scope: Scope {
                    namespaces: &ns,
                    tenant: Some("other"),
                    target: &|n| {
                        if n == "app" {
                            "other".into()
                        } else {
                            n.to_string()
                        }
                    },
                },
                resource_matches: &|gr| gr != "events",
                cluster: ClusterResources::All,
            },
        );
        let got = names(&built);
        assert_eq!(
            got,
            ["configmaps/c3"],
            "only what came from namespace other"
        );
        assert_eq!(built.skipped.len(), 4, "app's items, mapped or not");
        assert!(
            built
                .skipped
                .iter()
                .all(|(_, why)| why.contains("takes only items of other")),
            "{:?}",
            built.skipped
        );
    }
}
