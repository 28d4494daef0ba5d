//! Which resource types a backup lists, and how: pure.

use std::collections::BTreeSet;

use crate::{
    catalogue::{Catalogue, ResourceType},
    filters::{ClusterResources, ResourceFilter},
};

/// Resources left out unless `includedResources` names them: they are never restored, and
/// in a large cluster they are the noisiest (events, leases) or rebuilt by controllers.
pub const SKIPPED_UNLESS_NAMED: &[&str] = &[
    "events",
    "events.events.k8s.io",
    "leases.coordination.k8s.io",
    "endpointslices.discovery.k8s.io",
    "nodes",
];

/// Groups whose resources are never backed up: Arca's own, and Velero's.
pub const OWN_GROUPS: &[&str] = &["arca.dev", "velero.io"];

/// How one resource type is listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListScope {
    /// One list over every namespace; items of unselected namespaces are dropped.
    AllNamespaces,
    /// One list in this namespace.
    Namespace(String),
    /// A cluster-scoped type.
    Cluster,
}

/// One list to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListTask {
    pub resource: ResourceType,
    pub scope: ListScope,
}

/// Lists one namespace at a time when few are selected; otherwise one list across all.
pub fn per_namespace(selected: usize, existing: usize) -> bool {
    selected <= 10 || selected * 4 <= existing
}

/// Every list the backup runs, namespaces aside (they are listed first, to choose them).
pub fn plan_lists(
    catalogue: &Catalogue,
    resources: &ResourceFilter,
    cluster: ClusterResources,
    selected_namespaces: &BTreeSet<String>,
    existing_namespaces: usize,
) -> Vec<ListTask> {
    let split = per_namespace(selected_namespaces.len(), existing_namespaces);
    let mut tasks = Vec::new();
    for rt in catalogue.types() {
        let gr = rt.group_resource();
        let wanted = rt.is_backupable()
            && gr != "namespaces"
            && !OWN_GROUPS.contains(&rt.group.as_str())
            && resources.matches(&gr)
            && (!SKIPPED_UNLESS_NAMED.contains(&gr.as_str()) || resources.names(&gr));
        if !wanted {
            continue;
        }
        if !rt.namespaced {
            if cluster == ClusterResources::All {
                tasks.push(ListTask {
                    resource: rt.clone(),
                    scope: ListScope::Cluster,
                });
            }
        } else if selected_namespaces.is_empty() {
            continue;
        } else if split {
            for ns in selected_namespaces {
                tasks.push(ListTask {
                    resource: rt.clone(),
                    scope: ListScope::Namespace(ns.clone()),
                });
            }
        } else {
            tasks.push(ListTask {
                resource: rt.clone(),
                scope: ListScope::AllNamespaces,
            });
        }
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{catalogue::tests::sample, filters::NamespaceFilter};

    fn names(tasks: &[ListTask]) -> Vec<String> {
        tasks
            .iter()
            .map(|t| match &t.scope {
                ListScope::Namespace(ns) => format!("{}@{ns}", t.resource.group_resource()),
                ListScope::AllNamespaces => format!("{}@*", t.resource.group_resource()),
                ListScope::Cluster => format!("{}@cluster", t.resource.group_resource()),
            })
            .collect()
    }

    #[test]
    fn a_namespace_backup_lists_its_types_there_and_no_cluster_types() {
        let c = sample();
        let filter = ResourceFilter::new(&c, &[], &[]);
        let ns = NamespaceFilter::new(&["app".into()], &[]).expect("filter");
        let cluster = ClusterResources::decide(None, &ns);
        let selected = BTreeSet::from(["app".to_string()]);
        let plan = names(&plan_lists(&c, &filter, cluster, &selected, 40));
        assert!(plan.contains(&"configmaps@app".to_string()));
        assert!(plan.contains(&"deployments.apps@app".to_string()));
        assert!(plan.contains(&"widgets.example.com@app".to_string()));
        assert!(!plan.iter().any(|p| p.ends_with("@cluster")), "{plan:?}");
        assert!(
            !plan.iter().any(|p| p.starts_with("events")),
            "events only when named"
        );
    }

    #[test]
    fn a_whole_cluster_backup_lists_across_namespaces_and_cluster_types() {
        let c = sample();
        let filter = ResourceFilter::new(&c, &[], &["secrets".into()]);
        let ns = NamespaceFilter::new(&[], &[]).expect("filter");
        let selected: BTreeSet<String> = (0..100).map(|i| format!("ns{i}")).collect();
        let plan = names(&plan_lists(
            &c,
            &filter,
            ClusterResources::decide(None, &ns),
            &selected,
            100,
        ));
        assert!(plan.contains(&"configmaps@*".to_string()));
        assert!(plan.contains(&"persistentvolumes@cluster".to_string()));
        assert!(
            plan.contains(&"customresourcedefinitions.apiextensions.k8s.io@cluster".to_string())
        );
        assert!(!plan.iter().any(|p| p.starts_with("secrets")));
        assert!(
            !plan.iter().any(|p| p.starts_with("namespaces")),
            "namespaces are chosen first"
        );
    }

    #[test]
    fn named_noisy_resources_are_listed() {
        let c = sample();
        let filter = ResourceFilter::new(&c, &["events".into()], &[]);
        let selected = BTreeSet::from(["app".to_string()]);
        let plan = names(&plan_lists(
            &c,
            &filter,
            ClusterResources::None,
            &selected,
            5,
        ));
        assert_eq!(plan, ["events@app"]);
    }

    #[test]
    fn splitting_rule() {
        assert!(per_namespace(3, 1000));
        assert!(per_namespace(20, 200));
        assert!(!per_namespace(100, 100));
        assert!(!per_namespace(60, 100));
    }
}
