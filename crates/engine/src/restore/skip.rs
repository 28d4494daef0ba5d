//! Why an item of the backup is not restored: every skip rule and its reason, in one place.
//! Pure. The rules that need only the index run when the restore is planned
//! ([`runtime_state`], [`other_tenant`]); the ones that need the item's content run when it
//! is decoded ([`by_content`]). A skipped item is recorded with outcome `skipped` and the
//! reason ([`Skip`]'s text).

use std::{collections::BTreeSet, fmt};

use arca_store::archive::IndexEntry;
use serde_json::Value;

use crate::filters::ClusterResources;

/// Why an item is skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The cluster's own runtime state, or Arca's and Velero's objects.
    RuntimeState,
    /// A tenant's restore takes only items backed up from its own namespace.
    OtherTenant { namespace: String, tenant: String },
    /// A workload controller restored alongside recreates it (pods of a ReplicaSet,
    /// ReplicaSets of a Deployment, Jobs of a CronJob...).
    RecreatedByController { kind: String, name: String },
    /// Cluster-scoped, and not needed by the restored namespaces (only related cluster
    /// items are restored).
    UnrelatedClusterItem,
    /// Published by the cluster itself in every namespace (`kube-root-ca.crt`).
    PublishedByCluster,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::RuntimeState => f.write_str("never restored (cluster runtime state)"),
            Skip::OtherTenant { namespace, tenant } => write!(
                f,
                "backed up from namespace {namespace}: a Restore in namespace {tenant} takes only items of {tenant}"
            ),
            Skip::RecreatedByController { kind, name } => {
                write!(f, "recreated by its {kind} {name}")
            }
            Skip::UnrelatedClusterItem => {
                f.write_str("cluster-scoped and not needed by the restored namespaces")
            }
            Skip::PublishedByCluster => f.write_str("published by the cluster itself"),
        }
    }
}

/// From the index: the cluster's runtime state and Arca's (and Velero's) own objects.
pub fn runtime_state(group_resource: &str, group: &str) -> Option<Skip> {
    never_restored(group_resource, group).then_some(Skip::RuntimeState)
}

/// From the index: in a tenant's restore, an item of another namespace, or one that would
/// land in another namespace.
pub fn other_tenant(
    namespace: &str,
    tenant: Option<&str>,
    target: &dyn Fn(&str) -> String,
) -> Option<Skip> {
    let tenant = tenant?;
    (namespace != tenant || target(namespace) != tenant).then(|| Skip::OtherTenant {
        namespace: namespace.to_string(),
        tenant: tenant.to_string(),
    })
}

/// What the content rules compare an item with: what the restore restores.
#[derive(Clone, Copy, Debug)]
pub struct Restored<'a> {
    /// Workload controllers restored.
    pub workloads: &'a Workloads,
    /// Backed-up namespaces with items restored.
    pub namespaces: &'a BTreeSet<String>,
    /// ClusterRoles bound to restored service accounts.
    pub related_roles: &'a BTreeSet<String>,
    pub cluster: ClusterResources,
}

/// From the item's content, in order: recreated by a restored controller (not a pod with
/// volume data: the data goes into this pod, which the controller adopts), a cluster item
/// the restored namespaces do not need, what the cluster publishes itself.
pub fn by_content(
    entry: &IndexEntry,
    object: &Value,
    has_volume_data: bool,
    restored: &Restored<'_>,
) -> Option<Skip> {
    if let Some(ns) = &entry.namespace
        && !has_volume_data
        && let Some(skip) = recreated_by_controller(ns, &owners_of(object), restored.workloads)
    {
        return Some(skip);
    }
    if unrelated(entry, object, restored) {
        return Some(Skip::UnrelatedClusterItem);
    }
    (entry.group_resource() == "configmaps" && entry.name == "kube-root-ca.crt")
        .then_some(Skip::PublishedByCluster)
}

/// Under `includeClusterResources` unset with some namespaces chosen, a cluster-scoped item
/// comes along only when what is restored needs it.
fn unrelated(entry: &IndexEntry, object: &Value, restored: &Restored<'_>) -> bool {
    if entry.namespace.is_some() || restored.cluster != ClusterResources::RelatedOnly {
        return false;
    }
    let related = match entry.group_resource().as_str() {
        "persistentvolumes" => object
            .pointer("/spec/claimRef/namespace")
            .and_then(Value::as_str)
            .is_some_and(|ns| restored.namespaces.contains(ns)),
        "clusterrolebindings.rbac.authorization.k8s.io" => {
            binds_restored_account(object, restored.namespaces)
        }
        "clusterroles.rbac.authorization.k8s.io" => restored.related_roles.contains(&entry.name),
        _ => true,
    };
    !related
}

/// Whether a (Cluster)RoleBinding binds a service account of the restored namespaces.
pub fn binds_restored_account(binding: &Value, namespaces: &BTreeSet<String>) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .is_some_and(|subjects| {
            subjects.iter().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["namespace"]
                        .as_str()
                        .is_some_and(|ns| namespaces.contains(ns))
            })
        })
}

/// The owner references of an object.
pub fn owners_of(object: &Value) -> Vec<Owner> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .map(|r| Owner {
                    api_version: r["apiVersion"].as_str().unwrap_or_default().to_string(),
                    kind: r["kind"].as_str().unwrap_or_default().to_string(),
                    name: r["name"].as_str().unwrap_or_default().to_string(),
                    controller: r["controller"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Resources never restored: the cluster's own runtime state, and Arca's (and Velero's).
fn never_restored(group_resource: &str, group: &str) -> bool {
    const NEVER: &[&str] = &[
        "nodes",
        "events",
        "events.events.k8s.io",
        "leases.coordination.k8s.io",
        "endpointslices.discovery.k8s.io",
        "componentstatuses",
        "csinodes.storage.k8s.io",
        "volumeattachments.storage.k8s.io",
        "controllerrevisions.apps",
        "certificatesigningrequests.certificates.k8s.io",
    ];
    NEVER.contains(&group_resource) || group == "arca.dev" || group == "velero.io"
}

/// An owner reference, as far as the skip rule needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub controller: bool,
}

/// Kinds whose controllers recreate the objects they own.
const RECREATING_OWNERS: &[(&str, &str)] = &[
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("", "ReplicationController"),
];

/// The workload objects of a restore, as (group, kind, namespace, name): an owned object is
/// skipped only when its owner is restored too (else nothing would recreate it).
pub type Workloads = BTreeSet<(String, String, String, String)>;

/// Whether a workload controller restored alongside will recreate this object; if so it is
/// skipped (pods of a ReplicaSet, ReplicaSets of a Deployment, Jobs of a CronJob...).
fn recreated_by_controller(
    namespace: &str,
    owners: &[Owner],
    restored: &Workloads,
) -> Option<Skip> {
    owners.iter().filter(|o| o.controller).find_map(|o| {
        let group = o.api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
        let recreates = RECREATING_OWNERS
            .iter()
            .any(|(g, k)| *g == group && *k == o.kind);
        let key = (
            group.to_string(),
            o.kind.clone(),
            namespace.to_string(),
            o.name.clone(),
        );
        (recreates && restored.contains(&key)).then(|| Skip::RecreatedByController {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
    })
}

/// Whether `(group, kind)` is a workload that recreates what it owns.
pub fn is_workload(group: &str, kind: &str) -> bool {
    RECREATING_OWNERS
        .iter()
        .any(|(g, k)| *g == group && *k == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_state_is_never_restored() {
        for gr in [
            "nodes",
            "events",
            "events.events.k8s.io",
            "leases.coordination.k8s.io",
            "endpointslices.discovery.k8s.io",
        ] {
            assert!(never_restored(gr, ""), "{gr}");
        }
        assert!(never_restored("backups.arca.dev", "arca.dev"));
        assert!(!never_restored("configmaps", ""));
    }

    #[test]
    fn children_of_restored_controllers_are_skipped() {
        let restored: Workloads = BTreeSet::from([
            (
                "apps".into(),
                "ReplicaSet".into(),
                "app".into(),
                "web-123".into(),
            ),
            (
                "batch".into(),
                "CronJob".into(),
                "app".into(),
                "nightly".into(),
            ),
        ]);
        let by_rs = Owner {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-123".into(),
            controller: true,
        };
        assert!(recreated_by_controller("app", std::slice::from_ref(&by_rs), &restored).is_some());
        assert!(
            recreated_by_controller("other", std::slice::from_ref(&by_rs), &restored).is_none(),
            "owner not restored there"
        );
        let by_cron = Owner {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            name: "nightly".into(),
            controller: true,
        };
        assert!(recreated_by_controller("app", &[by_cron], &restored).is_some());
        let not_controller = Owner {
            controller: false,
            ..by_rs
        };
        assert!(recreated_by_controller("app", &[not_controller], &restored).is_none());
        let custom = Owner {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            name: "w".into(),
            controller: true,
        };
        assert!(recreated_by_controller("app", &[custom], &restored).is_none());
    }

    #[test]
    fn content_rules_give_their_reason_in_order() {
        let workloads: Workloads = BTreeSet::from([(
            "apps".into(),
            "ReplicaSet".into(),
            "app".into(),
            "web-1".into(),
        )]);
        let namespaces = BTreeSet::from(["app".to_string()]);
        let roles = BTreeSet::new();
        let restored = Restored {
            workloads: &workloads,
            namespaces: &namespaces,
            related_roles: &roles,
            cluster: ClusterResources::RelatedOnly,
        };
        let entry = |resource: &str, ns: Option<&str>, name: &str| IndexEntry {
            group: String::new(),
            version: "v1".into(),
            kind: String::new(),
            resource: resource.into(),
            namespace: ns.map(str::to_string),
            name: name.into(),
            path: String::new(),
            size: 1,
            sha256: String::new(),
            frame: arca_store::archive::FrameRef(0, 1),
        };
        let pod = serde_json::json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "controller": true}
        ]}});
        let skip = by_content(
            &entry("pods", Some("app"), "web-1-x"),
            &pod,
            false,
            &restored,
        );
        assert_eq!(
            skip.map(|s| s.to_string()).as_deref(),
            Some("recreated by its ReplicaSet web-1")
        );
        assert_eq!(
            by_content(
                &entry("pods", Some("app"), "web-1-x"),
                &pod,
                true,
                &restored
            ),
            None,
            "a pod with volume data is restored"
        );
        let pv = serde_json::json!({"spec": {"claimRef": {"namespace": "elsewhere"}}});
        assert_eq!(
            by_content(
                &entry("persistentvolumes", None, "pv"),
                &pv,
                false,
                &restored
            ),
            Some(Skip::UnrelatedClusterItem)
        );
        assert_eq!(
            by_content(
                &entry("configmaps", Some("app"), "kube-root-ca.crt"),
                &serde_json::json!({}),
                false,
                &restored
            )
            .map(|s| s.to_string())
            .as_deref(),
            Some("published by the cluster itself")
        );
    }
}
