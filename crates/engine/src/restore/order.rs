//! Restore order: the tiers, pure.
//!
//! Tiers run one after another, in the order of [`Tier::ALL`]; the items of one tier are
//! created concurrently. A tier holds only kinds that do not depend on each other at
//! admission. What is never restored, and why, is in `skip.rs`.

/// A tier of the restore. Declared in restore order (`Ord` follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// CustomResourceDefinitions: the types custom resources need. After this tier the
    /// restore waits until they are established and served.
    Crds,
    /// Namespaces. Before this tier the restore waits until namespaces being deleted are
    /// gone; after it, namespaces with items but no Namespace item are created bare.
    Namespaces,
    /// Cluster-wide settings pods and claims refer to (storage, priority, runtime and
    /// ingress classes, ClusterRoles).
    ClusterSettings,
    PersistentVolumes,
    PersistentVolumeClaims,
    /// What pods are admitted against or mount: service accounts, Secrets, ConfigMaps,
    /// limits, quotas, RBAC.
    PodDependencies,
    /// Services, endpoints, network policies, disruption budgets.
    Network,
    /// Pods: before their controllers, so that a pod restored with its volume data (and
    /// the restore helper that holds its containers until the data is there) exists before
    /// a StatefulSet or DaemonSet controller makes one of the same name without it. The
    /// controller then adopts it. Velero restores pods first too.
    Pods,
    /// Workload controllers, Jobs, autoscalers, ingresses.
    Workloads,
    /// Every kind not named: custom resources (their CRDs came first) and the rest.
    Rest,
    /// Admission webhooks and aggregated APIs: last, so they cannot intercept the restore
    /// itself.
    Last,
}

impl Tier {
    /// Every tier, in restore order.
    pub const ALL: [Tier; 11] = [
        Tier::Crds,
        Tier::Namespaces,
        Tier::ClusterSettings,
        Tier::PersistentVolumes,
        Tier::PersistentVolumeClaims,
        Tier::PodDependencies,
        Tier::Network,
        Tier::Pods,
        Tier::Workloads,
        Tier::Rest,
        Tier::Last,
    ];

    /// The `plural.group`s this tier is named for ([`Tier::Rest`] takes the others).
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Tier::Crds => &["customresourcedefinitions.apiextensions.k8s.io"],
            Tier::Namespaces => &["namespaces"],
            Tier::ClusterSettings => &[
                "storageclasses.storage.k8s.io",
                "volumesnapshotclasses.snapshot.storage.k8s.io",
                "priorityclasses.scheduling.k8s.io",
                "runtimeclasses.node.k8s.io",
                "ingressclasses.networking.k8s.io",
                "clusterroles.rbac.authorization.k8s.io",
            ],
            Tier::PersistentVolumes => &["persistentvolumes"],
            Tier::PersistentVolumeClaims => &["persistentvolumeclaims"],
            Tier::PodDependencies => &[
                "serviceaccounts",
                "secrets",
                "configmaps",
                "limitranges",
                "resourcequotas",
                "roles.rbac.authorization.k8s.io",
                "rolebindings.rbac.authorization.k8s.io",
                "clusterrolebindings.rbac.authorization.k8s.io",
            ],
            Tier::Network => &[
                "services",
                "endpoints",
                "networkpolicies.networking.k8s.io",
                "poddisruptionbudgets.policy",
            ],
            Tier::Pods => &["pods"],
            Tier::Workloads => &[
                "deployments.apps",
                "statefulsets.apps",
                "daemonsets.apps",
                "replicasets.apps",
                "replicationcontrollers",
                "cronjobs.batch",
                "jobs.batch",
                "horizontalpodautoscalers.autoscaling",
                "ingresses.networking.k8s.io",
            ],
            Tier::Rest => &[],
            Tier::Last => &[
                "validatingwebhookconfigurations.admissionregistration.k8s.io",
                "mutatingwebhookconfigurations.admissionregistration.k8s.io",
                "validatingadmissionpolicies.admissionregistration.k8s.io",
                "validatingadmissionpolicybindings.admissionregistration.k8s.io",
                "apiservices.apiregistration.k8s.io",
            ],
        }
    }
}

/// The tier of a `plural.group`.
pub fn tier_of(group_resource: &str) -> Tier {
    Tier::ALL
        .into_iter()
        .find(|tier| tier.kinds().contains(&group_resource))
        .unwrap_or(Tier::Rest)
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
        let tiers: Vec<Tier> = order.iter().map(|gr| tier_of(gr)).collect();
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
        assert!(
            tier_of("pods") < tier_of("statefulsets.apps")
                && tier_of("pods") < tier_of("daemonsets.apps"),
            "a pod restored with its volume data comes before a controller could make it"
        );
    }

    #[test]
    fn every_tier_is_in_all_once_in_order() {
        assert!(Tier::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(tier_of("widgets.example.com"), Tier::Rest);
        assert_eq!(tier_of("apiservices.apiregistration.k8s.io"), Tier::Last);
    }
}
