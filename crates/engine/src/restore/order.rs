//! Restore order and the items never restored: pure.
//!
//! Tiers run one after another; the items of one tier are created concurrently. A tier
//! holds only kinds that do not depend on each other at admission.

use std::collections::BTreeSet;

/// Tiers, first to last. Anything not named goes to [`REST_TIER`], except admission
/// webhooks and API services, which go last so they cannot intercept the restore itself.
pub const TIERS: &[&[&str]] = &[
    // 0: the types custom resources need; the restore waits until they are served.
    &["customresourcedefinitions.apiextensions.k8s.io"],
    // 1
    &["namespaces"],
    // 2: cluster-wide settings pods and claims refer to.
    &[
        "storageclasses.storage.k8s.io",
        "volumesnapshotclasses.snapshot.storage.k8s.io",
        "priorityclasses.scheduling.k8s.io",
        "runtimeclasses.node.k8s.io",
        "ingressclasses.networking.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
    ],
    // 3
    &["persistentvolumes"],
    // 4
    &["persistentvolumeclaims"],
    // 5: what pods are admitted against or mount.
    &[
        "serviceaccounts",
        "secrets",
        "configmaps",
        "limitranges",
        "resourcequotas",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "clusterrolebindings.rbac.authorization.k8s.io",
    ],
    // 6
    &[
        "services",
        "endpoints",
        "networkpolicies.networking.k8s.io",
        "poddisruptionbudgets.policy",
    ],
    // 7: workloads.
    &[
        "deployments.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "replicasets.apps",
        "replicationcontrollers",
        "cronjobs.batch",
        "jobs.batch",
        "pods",
        "horizontalpodautoscalers.autoscaling",
        "ingresses.networking.k8s.io",
    ],
];

/// Everything else: custom resources (their CRDs came in tier 0) and the rest.
pub const REST_TIER: usize = TIERS.len();
/// Admission webhooks and aggregated APIs: last.
pub const LAST_TIER: usize = TIERS.len() + 1;
const LAST: &[&str] = &[
    "validatingwebhookconfigurations.admissionregistration.k8s.io",
    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingadmissionpolicies.admissionregistration.k8s.io",
    "validatingadmissionpolicybindings.admissionregistration.k8s.io",
    "apiservices.apiregistration.k8s.io",
];

/// The tier of a `plural.group`.
pub fn tier_of(group_resource: &str) -> usize {
    if LAST.contains(&group_resource) {
        return LAST_TIER;
    }
    TIERS
        .iter()
        .position(|tier| tier.contains(&group_resource))
        .unwrap_or(REST_TIER)
}

/// Resources never restored: the cluster's own runtime state, and Arca's (and Velero's).
pub fn never_restored(group_resource: &str, group: &str) -> bool {
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
pub fn recreated_by_controller(
    namespace: &str,
    owners: &[Owner],
    restored: &Workloads,
) -> Option<String> {
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
        (recreates && restored.contains(&key))
            .then(|| format!("recreated by its {} {}", o.kind, o.name))
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
    fn order_follows_dependencies() {
        let order = [
            "customresourcedefinitions.apiextensions.k8s.io",
            "namespaces",
            "storageclasses.storage.k8s.io",
            "persistentvolumes",
            "persistentvolumeclaims",
            "secrets",
            "services",
            "deployments.apps",
            "widgets.example.com",
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
        ];
        let tiers: Vec<usize> = order.iter().map(|gr| tier_of(gr)).collect();
        assert!(tiers.windows(2).all(|w| w[0] < w[1]), "{tiers:?}");
        assert_eq!(
            tier_of("configmaps"),
            tier_of("serviceaccounts"),
            "independent kinds share a tier"
        );
        assert!(
            tier_of("serviceaccounts") < tier_of("pods"),
            "pods are admitted against their service account"
        );
        assert!(tier_of("priorityclasses.scheduling.k8s.io") < tier_of("pods"));
    }

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
}
