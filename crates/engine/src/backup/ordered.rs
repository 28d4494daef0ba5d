//! `orderedResources`: objects of a resource written, and their pods' hooks run, in the
//! order the Backup gives, before the rest of that resource (Velero's behaviour). Pure.
//!
//! The spec maps a resource (as users name it: `pods`, `pvc`, `deployments.apps`) to a
//! comma-separated list of `namespace/name` (namespaced resources) or `name` (cluster ones).

use std::collections::{BTreeMap, BTreeSet};

use super::plan::ListScope;
use crate::catalogue::Catalogue;

/// Most names one resource's order may list (the spec is a ConfigMap-sized string anyway).
const MAX_NAMES: usize = 10_000;

/// One object named in an order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderedName {
    /// Its namespace (None: a cluster-scoped object).
    pub namespace: Option<String>,
    pub name: String,
}

/// The orders of a backup, by `group_resource` (`pods`, `deployments.apps`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderedResources {
    by_resource: BTreeMap<String, Vec<OrderedName>>,
}

/// A name as Kubernetes accepts it for most objects (a DNS-1123 subdomain).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Checks the entries' form, without a cluster: `a/b` or `b`, valid names, not too many.
pub fn validate(spec: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (resource, list) in spec {
        let entries: Vec<&str> = entries(list).collect();
        if entries.len() > MAX_NAMES {
            problems.push(format!(
                "orderedResources[{resource:?}] names {} objects (at most {MAX_NAMES})",
                entries.len()
            ));
        }
        for entry in entries {
            let parts: Vec<&str> = entry.split('/').collect();
            if parts.len() > 2 || !parts.iter().all(|p| valid_name(p)) {
                problems.push(format!(
                    "orderedResources[{resource:?}]: {entry:?} is not `namespace/name` or `name`"
                ));
            }
        }
    }
    problems
}

fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty())
}

impl OrderedResources {
    /// Resolves the spec's resources against the cluster's. Returns the orders, and the
    /// problems that make the backup invalid: a resource the cluster does not serve, an
    /// entry whose form does not fit the resource's scope (`ns/name` for a cluster-scoped
    /// one, `name` alone for a namespaced one), a resource given twice under two names.
    pub fn resolve(
        spec: &BTreeMap<String, String>,
        catalogue: &Catalogue,
    ) -> Result<Self, Vec<String>> {
        let mut problems = validate(spec);
        let mut by_resource: BTreeMap<String, Vec<OrderedName>> = BTreeMap::new();
        for (resource, list) in spec {
            let Some(rt) = catalogue.resolve(resource) else {
                problems.push(format!(
                    "orderedResources names {resource:?}, which this cluster does not serve"
                ));
                continue;
            };
            let gr = rt.group_resource();
            if by_resource.contains_key(&gr) {
                problems.push(format!(
                    "orderedResources names {gr} twice (as {resource:?} too): give one list"
                ));
                continue;
            }
            let mut seen = BTreeSet::new();
            let mut names = Vec::new();
            for entry in entries(list) {
                let named = match (rt.namespaced, entry.split_once('/')) {
                    (true, Some((ns, name))) => OrderedName {
                        namespace: Some(ns.to_string()),
                        name: name.to_string(),
                    },
                    (false, None) => OrderedName {
                        namespace: None,
                        name: entry.to_string(),
                    },
                    (true, None) => {
                        problems.push(format!(
                            "orderedResources[{resource:?}]: {gr} are namespaced: write {entry:?} as `namespace/{entry}`"
                        ));
                        continue;
                    }
                    (false, Some(_)) => {
                        problems.push(format!(
                            "orderedResources[{resource:?}]: {gr} are cluster-scoped: write {entry:?} without a namespace"
                        ));
                        continue;
                    }
                };
                if seen.insert(named.clone()) {
                    names.push(named);
                }
            }
            by_resource.insert(gr, names);
        }
        if problems.is_empty() {
            Ok(Self { by_resource })
        } else {
            Err(problems)
        }
    }

    /// The names ordered for `group_resource`, in order (empty when it has no order).
    pub fn of(&self, group_resource: &str) -> &[OrderedName] {
        self.by_resource
            .get(group_resource)
            .map_or(&[], Vec::as_slice)
    }

    /// The names ordered for `group_resource` that a list in `scope` returns, and whose
    /// namespace `selected` says is backed up (for a list across all namespaces).
    pub fn in_scope<'a>(
        &'a self,
        group_resource: &str,
        scope: &'a ListScope,
        selected: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a OrderedName> + 'a {
        self.of(group_resource)
            .iter()
            .filter(move |n| match (scope, n.namespace.as_deref()) {
                (ListScope::Namespace(ns), Some(of)) => ns == of,
                (ListScope::AllNamespaces, Some(of)) => selected(of),
                (ListScope::Cluster, None) => true,
                _ => false,
            })
    }

    /// Warnings for ordered objects in namespaces the backup does not cover.
    pub fn outside(&self, selected: &BTreeSet<String>) -> Vec<String> {
        self.by_resource
            .iter()
            .flat_map(|(gr, names)| {
                names.iter().filter_map(move |n| {
                    let ns = n.namespace.as_deref()?;
                    (!selected.contains(ns)).then(|| {
                        format!(
                            "orderedResources names {gr} {ns}/{}, outside this backup's namespaces: not backed up",
                            n.name
                        )
                    })
                })
            })
            .collect()
    }

    /// Sorts `items` (by namespace and name) so that the ordered ones of `group_resource`
    /// come first, in their order; the others keep their relative order. Stable.
    pub fn sort<T>(&self, group_resource: &str, items: &mut [T], key: impl Fn(&T) -> OrderedName) {
        let order = self.of(group_resource);
        if order.is_empty() {
            return;
        }
        let rank: BTreeMap<&OrderedName, usize> =
            order.iter().enumerate().map(|(i, n)| (n, i)).collect();
        items.sort_by_key(|item| rank.get(&key(item)).copied().unwrap_or(usize::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn name(ns: Option<&str>, name: &str) -> OrderedName {
        OrderedName {
            namespace: ns.map(str::to_string),
            name: name.into(),
        }
    }

    #[test]
    fn orders_resolve_by_any_resource_name_and_keep_their_order() {
        let catalogue = crate::catalogue::tests::sample();
        let ordered = OrderedResources::resolve(
            &spec(&[
                ("po", "shop/db-2, shop/db-0,,shop/db-2"),
                ("persistentvolumes", "pv-b,pv-a"),
            ]),
            &catalogue,
        )
        .expect("valid");
        assert_eq!(
            ordered.of("pods"),
            [name(Some("shop"), "db-2"), name(Some("shop"), "db-0")],
            "duplicates once, blanks ignored"
        );
        assert_eq!(
            ordered.of("persistentvolumes"),
            [name(None, "pv-b"), name(None, "pv-a")]
        );
        assert!(ordered.of("configmaps").is_empty());
    }

    #[test]
    fn entries_that_do_not_fit_are_refused_with_the_fix() {
        let catalogue = crate::catalogue::tests::sample();
        let problems = OrderedResources::resolve(
            &spec(&[
                ("pods", "db-0"),
                ("persistentvolumes", "shop/pv-a"),
                ("nosuchthings", "a"),
                ("configmaps", "a/b/c,UPPER/x"),
            ]),
            &catalogue,
        )
        .expect_err("invalid");
        let all = problems.join("\n");
        assert!(all.contains("write \"db-0\" as `namespace/db-0`"), "{all}");
        assert!(all.contains("cluster-scoped: write \"shop/pv-a\""), "{all}");
        assert!(
            all.contains("\"nosuchthings\", which this cluster does not serve"),
            "{all}"
        );
        assert!(all.contains("\"a/b/c\" is not `namespace/name`"), "{all}");
        assert!(all.contains("\"UPPER/x\""), "{all}");
        let twice = OrderedResources::resolve(&spec(&[("pods", "a/b"), ("po", "a/c")]), &catalogue)
            .expect_err("twice");
        assert!(twice[0].contains("names pods twice"), "{twice:?}");
    }

    #[test]
    fn a_list_fetches_the_ordered_names_of_its_scope() {
        let ordered = OrderedResources::resolve(
            &spec(&[("pods", "shop/a,web/b,other/c"), ("pv", "pv-1")]),
            &crate::catalogue::tests::sample(),
        )
        .expect("valid");
        let names = |gr: &str, scope: ListScope| -> Vec<String> {
            ordered
                .in_scope(gr, &scope, |ns| ns != "other")
                .map(|n| n.name.clone())
                .collect()
        };
        assert_eq!(names("pods", ListScope::Namespace("web".into())), ["b"]);
        assert_eq!(names("pods", ListScope::AllNamespaces), ["a", "b"]);
        assert!(names("pods", ListScope::Cluster).is_empty());
        assert_eq!(names("persistentvolumes", ListScope::Cluster), ["pv-1"]);
        let selected = BTreeSet::from(["shop".to_string(), "web".to_string()]);
        assert_eq!(
            ordered.outside(&selected),
            [
                "orderedResources names pods other/c, outside this backup's namespaces: not backed up"
            ]
        );
    }

    #[test]
    fn sorting_puts_the_ordered_first_and_keeps_the_rest_in_place() {
        let ordered = OrderedResources::resolve(
            &spec(&[("pods", "shop/c,shop/a")]),
            &crate::catalogue::tests::sample(),
        )
        .expect("valid");
        let mut pods = vec!["b", "a", "d", "c", "e"];
        ordered.sort("pods", &mut pods, |p| name(Some("shop"), p));
        assert_eq!(pods, ["c", "a", "b", "d", "e"]);
        let mut other = vec!["b", "a"];
        ordered.sort("configmaps", &mut other, |p| name(Some("shop"), p));
        assert_eq!(other, ["b", "a"]);
    }
}
