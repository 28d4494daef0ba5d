//! Velero's scoped resource filters (`includedClusterScopedResources`,
//! `excludedClusterScopedResources`, `includedNamespaceScopedResources`,
//! `excludedNamespaceScopedResources`), which a Backup uses instead of `includedResources`,
//! `excludedResources` and `includeClusterResources`, and a resource policy's
//! `includeExcludePolicy` combined with them. Pure: the lists are checked, combined, and
//! turned into the [`ResourceFilter`] and [`ClusterResources`] the rest of the backup reads.
//!
//! The rules, as Velero's:
//! - a namespaced resource is taken unless excluded (a name, or `*`); an empty include list
//!   (or `*`) takes every one, otherwise only those named;
//! - a cluster-scoped resource is never taken when excluded, not even as an item a
//!   namespaced one needs; it is listed whole when included (a name or `*`), or, when
//!   neither cluster list is set, when the backup covers every namespace and every
//!   namespaced resource; otherwise only the ones the namespaced items need come along
//!   (their PersistentVolumes, CRDs, ...), as with `includeClusterResources` unset;
//! - a policy's name counts only where the Backup's lists of that scope neither include nor
//!   exclude it: the Backup's own filters win.

use std::collections::BTreeSet;

use crate::{
    catalogue::Catalogue,
    filters::{ClusterResources, NamespaceFilter, ResourceFilter},
};

/// The four lists, as written (names as kubectl takes them, or `*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopedLists {
    pub included_cluster: Vec<String>,
    pub excluded_cluster: Vec<String>,
    pub included_namespaced: Vec<String>,
    pub excluded_namespaced: Vec<String>,
}

impl ScopedLists {
    /// The Backup's scoped lists.
    pub fn of(spec: &arca_api::BackupSpec) -> Self {
        Self {
            included_cluster: spec.included_cluster_scoped_resources.clone(),
            excluded_cluster: spec.excluded_cluster_scoped_resources.clone(),
            included_namespaced: spec.included_namespace_scoped_resources.clone(),
            excluded_namespaced: spec.excluded_namespace_scoped_resources.clone(),
        }
    }

    /// What is wrong with the lists (Velero's checks), one line each, naming the field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = pair_problems(
            ("includedClusterScopedResources", &self.included_cluster),
            ("excludedClusterScopedResources", &self.excluded_cluster),
        );
        problems.extend(pair_problems(
            (
                "includedNamespaceScopedResources",
                &self.included_namespaced,
            ),
            (
                "excludedNamespaceScopedResources",
                &self.excluded_namespaced,
            ),
        ));
        problems
    }
}

/// Velero's rules for one include list and its exclude list.
fn pair_problems(include: (&str, &[String]), exclude: (&str, &[String])) -> Vec<String> {
    let (include_field, include) = include;
    let (exclude_field, exclude) = exclude;
    let star = |list: &[String]| list.iter().any(|n| n == "*");
    let mut problems = Vec::new();
    if star(include) && include.len() > 1 {
        problems.push(format!(
            "{include_field}: `*` stands alone (it already means all)"
        ));
    }
    if star(exclude) && exclude.len() > 1 {
        problems.push(format!(
            "{exclude_field}: `*` stands alone (it already means all)"
        ));
    }
    if star(exclude) && !include.is_empty() {
        problems.push(format!(
            "{exclude_field} is `*`: {include_field} cannot name anything then"
        ));
    }
    for name in exclude.iter().filter(|n| *n != "*") {
        if include.contains(name) {
            problems.push(format!(
                "{name:?} is in both {include_field} and {exclude_field}"
            ));
        }
    }
    problems
}

/// One list resolved against the cluster: `*`, and the resources named (of the list's
/// scope).
#[derive(Debug, Default)]
struct Resolved {
    all: bool,
    names: BTreeSet<String>,
}

impl Resolved {
    fn is_empty(&self) -> bool {
        !self.all && self.names.is_empty()
    }

    fn has(&self, group_resource: &str) -> bool {
        self.all || self.names.contains(group_resource)
    }
}

/// What [`decide`] gives: the filter, which cluster-scoped items come, and warnings (names
/// of the wrong scope, ignored).
#[derive(Debug)]
pub struct Decided {
    pub resources: ResourceFilter,
    pub cluster: ClusterResources,
    pub warnings: Vec<String>,
}

/// The Backup's scoped `lists`, combined with a resource policy's (`policy`), read against
/// `catalogue`, for a backup of `namespaces`.
pub fn decide(
    catalogue: &Catalogue,
    lists: &ScopedLists,
    policy: Option<&ScopedLists>,
    namespaces: &NamespaceFilter,
) -> Decided {
    let mut unknown = Vec::new();
    let mut warnings = Vec::new();
    let mut resolve = |field: &str, names: &[String], namespaced: bool| {
        let mut out = Resolved::default();
        for name in names {
            if name == "*" {
                out.all = true;
                continue;
            }
            match catalogue.resolve(name) {
                Some(t) if t.namespaced == namespaced => {
                    out.names.insert(t.group_resource());
                }
                Some(t) => warnings.push(format!(
                    "{field}: {name:?} is {}, ignored",
                    if t.namespaced {
                        "namespaced"
                    } else {
                        "cluster-scoped"
                    }
                )),
                None => unknown.push(name.clone()),
            }
        }
        out
    };
    let mut ns_include = resolve(
        "includedNamespaceScopedResources",
        &lists.included_namespaced,
        true,
    );
    let mut ns_exclude = resolve(
        "excludedNamespaceScopedResources",
        &lists.excluded_namespaced,
        true,
    );
    let mut cl_include = resolve(
        "includedClusterScopedResources",
        &lists.included_cluster,
        false,
    );
    let mut cl_exclude = resolve(
        "excludedClusterScopedResources",
        &lists.excluded_cluster,
        false,
    );
    if let Some(policy) = policy {
        let mut add = |field: &str,
                       names: &[String],
                       namespaced: bool,
                       to_include: bool,
                       include: &mut Resolved,
                       exclude: &mut Resolved| {
            let from_policy = resolve(field, names, namespaced);
            // The Backup's lists win: a resource they include or exclude keeps their say.
            for name in from_policy.names {
                if !include.has(&name) && !exclude.has(&name) {
                    if to_include {
                        include.names.insert(name);
                    } else {
                        exclude.names.insert(name);
                    }
                }
            }
            if from_policy.all && include.is_empty() && exclude.is_empty() {
                if to_include {
                    include.all = true;
                } else {
                    exclude.all = true;
                }
            }
        };
        let field = "includeExcludePolicy";
        add(
            field,
            &policy.excluded_namespaced,
            true,
            false,
            &mut ns_include,
            &mut ns_exclude,
        );
        add(
            field,
            &policy.included_namespaced,
            true,
            true,
            &mut ns_include,
            &mut ns_exclude,
        );
        add(
            field,
            &policy.excluded_cluster,
            false,
            false,
            &mut cl_include,
            &mut cl_exclude,
        );
        add(
            field,
            &policy.included_cluster,
            false,
            true,
            &mut cl_include,
            &mut cl_exclude,
        );
    }
    let every_namespaced = ns_exclude.is_empty() && (ns_include.is_empty() || ns_include.all);
    let full_cluster = cl_include.is_empty()
        && cl_exclude.is_empty()
        && namespaces.includes_all()
        && every_namespaced;
    let mut include = BTreeSet::new();
    let mut exclude = BTreeSet::new();
    for t in catalogue.types() {
        let gr = t.group_resource();
        let (taken, excluded) = if t.namespaced {
            let excluded = ns_exclude.has(&gr);
            (
                !excluded && (ns_include.is_empty() || ns_include.has(&gr)),
                excluded,
            )
        } else {
            let excluded = cl_exclude.has(&gr);
            (
                !excluded && (full_cluster || cl_include.has(&gr) || gr == "namespaces"),
                excluded,
            )
        };
        if taken {
            include.insert(gr.clone());
        }
        if excluded {
            exclude.insert(gr);
        }
    }
    let named = ns_include.names.union(&cl_include.names).cloned().collect();
    let cluster = if full_cluster || !cl_include.is_empty() {
        ClusterResources::All
    } else {
        ClusterResources::RelatedOnly
    };
    Decided {
        resources: ResourceFilter::from_sets(include, exclude, named, unknown),
        cluster,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::tests::sample;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn all_namespaces() -> NamespaceFilter {
        NamespaceFilter::new(&[], &[]).expect("filter")
    }

    fn lists(ci: &[&str], ce: &[&str], ni: &[&str], ne: &[&str]) -> ScopedLists {
        ScopedLists {
            included_cluster: s(ci),
            excluded_cluster: s(ce),
            included_namespaced: s(ni),
            excluded_namespaced: s(ne),
        }
    }

    #[test]
    fn velero_s_list_rules_are_checked_and_name_the_field() {
        assert!(lists(&["*"], &[], &[], &[]).problems().is_empty());
        let problems = lists(&["*", "pv"], &["*"], &["pods"], &["pods"]).problems();
        assert_eq!(
            problems,
            vec![
                "includedClusterScopedResources: `*` stands alone (it already means all)",
                "excludedClusterScopedResources is `*`: includedClusterScopedResources cannot name anything then",
                "\"pods\" is in both includedNamespaceScopedResources and excludedNamespaceScopedResources",
            ]
        );
    }

    #[test]
    fn nothing_set_over_every_namespace_is_a_full_backup() {
        let d = decide(&sample(), &ScopedLists::default(), None, &all_namespaces());
        assert_eq!(d.cluster, ClusterResources::All);
        for gr in [
            "pods",
            "persistentvolumes",
            "gadgets.example.com",
            "deployments.apps",
        ] {
            assert!(d.resources.matches(gr), "{gr}");
        }
    }

    #[test]
    fn some_namespaces_or_some_namespaced_types_take_only_the_related_cluster_items() {
        let some = NamespaceFilter::new(&s(&["shop"]), &[]).expect("filter");
        let d = decide(&sample(), &ScopedLists::default(), None, &some);
        assert_eq!(d.cluster, ClusterResources::RelatedOnly);
        assert!(d.resources.matches("pods"));
        let d = decide(
            &sample(),
            &lists(&[], &[], &["pods"], &[]),
            None,
            &all_namespaces(),
        );
        assert_eq!(d.cluster, ClusterResources::RelatedOnly);
        assert!(d.resources.matches("pods") && !d.resources.matches("configmaps"));
        assert!(d.resources.names("pods"));
        assert!(
            !d.resources.excludes("persistentvolumes"),
            "PVs still come as related items"
        );
    }

    #[test]
    fn cluster_lists_choose_cluster_types_and_an_exclusion_holds_for_related_items() {
        let d = decide(
            &sample(),
            &lists(&["gadgets.example.com"], &["pv"], &[], &["secrets"]),
            None,
            &all_namespaces(),
        );
        assert_eq!(d.cluster, ClusterResources::All);
        assert!(d.resources.matches("gadgets.example.com"));
        assert!(d.resources.matches("namespaces"), "namespaces always");
        assert!(!d.resources.matches("persistentvolumes"));
        assert!(
            d.resources.excludes("persistentvolumes"),
            "not even as related items"
        );
        assert!(!d.resources.matches("secrets") && d.resources.excludes("secrets"));
        assert!(d.resources.matches("configmaps"));
    }

    #[test]
    fn names_of_the_wrong_scope_are_ignored_with_a_warning_and_unknown_names_kept() {
        let d = decide(
            &sample(),
            &lists(&["pods"], &[], &["pv", "nosuchthing"], &[]),
            None,
            &all_namespaces(),
        );
        assert_eq!(
            d.warnings,
            vec![
                "includedNamespaceScopedResources: \"pv\" is cluster-scoped, ignored",
                "includedClusterScopedResources: \"pods\" is namespaced, ignored",
            ]
        );
        assert_eq!(d.resources.unknown, vec!["nosuchthing".to_string()]);
    }

    /// Velero's own cases for combining a policy (pkg/util/collections, CombineWithPolicy).
    #[test]
    fn a_policy_adds_to_the_backup_s_lists_and_the_backup_wins_where_both_speak() {
        // No conflict: merged.
        let d = decide(
            &sample(),
            &lists(&[], &["gadgets"], &["pods"], &["configmaps"]),
            Some(&lists(&["pv"], &[], &["deployments"], &["secrets"])),
            &all_namespaces(),
        );
        let r = &d.resources;
        assert!(r.matches("persistentvolumes") && !r.matches("gadgets.example.com"));
        assert!(r.matches("deployments.apps") && r.matches("pods"));
        assert!(!r.matches("configmaps") && !r.matches("secrets"));
        // Conflicts: the Backup's lists win.
        let d = decide(
            &sample(),
            &lists(
                &["gadgets"],
                &["pv"],
                &["pods", "deployments"],
                &["configmaps"],
            ),
            Some(&lists(
                &["pv"],
                &["gadgets"],
                &["configmaps"],
                &["pods", "secrets"],
            )),
            &all_namespaces(),
        );
        let r = &d.resources;
        assert!(r.matches("gadgets.example.com") && !r.matches("persistentvolumes"));
        assert!(r.matches("pods") && !r.matches("configmaps") && !r.matches("secrets"));
        // `*` in the Backup's include list: the policy cannot narrow it.
        let d = decide(
            &sample(),
            &lists(&[], &[], &["*"], &[]),
            Some(&lists(
                &[],
                &[],
                &["deployments", "pods"],
                &["configmaps", "secrets"],
            )),
            &all_namespaces(),
        );
        assert!(d.resources.matches("configmaps") && d.resources.matches("secrets"));
        // An empty Backup: the policy alone decides.
        let d = decide(
            &sample(),
            &ScopedLists::default(),
            Some(&lists(&[], &[], &["configmaps"], &[])),
            &all_namespaces(),
        );
        assert!(d.resources.matches("configmaps") && !d.resources.matches("pods"));
        assert_eq!(d.cluster, ClusterResources::RelatedOnly);
    }
}
