//! The API resources a cluster serves, from aggregated discovery, and how users name them.

use std::collections::BTreeMap;

use kube::{
    Client,
    api::ApiResource,
    core::discovery::v2::{APIGroupDiscovery, APIResourceDiscovery},
};

/// One resource type at its preferred version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural name (`deployments`).
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl ResourceType {
    /// `plural.group`, or `plural` for the core group (Velero's and kubectl's spelling).
    pub fn group_resource(&self) -> String {
        group_resource(&self.plural, &self.group)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// Can be listed, created, got and deleted: the resources a backup takes.
    pub fn is_backupable(&self) -> bool {
        ["list", "create", "get", "delete"]
            .iter()
            .all(|v| self.supports(v))
    }

    fn answers_to(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.plural == name
            || self.singular == name
            || self.kind.to_ascii_lowercase() == name
            || self.short_names.contains(&name)
    }
}

/// `plural.group`, or `plural` for the core group.
pub fn group_resource(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// Every resource type the cluster serves, each at its preferred version.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    /// In discovery order: the core group first, then groups as the apiserver orders them.
    types: Vec<ResourceType>,
    by_group_resource: BTreeMap<String, usize>,
}

impl Catalogue {
    /// Reads aggregated discovery (`/api` and `/apis`, apidiscovery.k8s.io/v2).
    pub async fn discover(client: &Client) -> Result<Self, kube::Error> {
        let core = client.list_core_api_versions_aggregated().await?;
        let groups = client.list_api_groups_aggregated().await?;
        Ok(Self::from_groups(
            core.items.iter().chain(groups.items.iter()),
        ))
    }

    /// Builds the catalogue from discovery documents. Each resource is taken at the first
    /// version (in the group's preference order) that serves it.
    pub fn from_groups<'a>(groups: impl IntoIterator<Item = &'a APIGroupDiscovery>) -> Self {
        let mut catalogue = Self::default();
        for group in groups {
            let group_name = group
                .metadata
                .as_ref()
                .and_then(|m| m.name.clone())
                .unwrap_or_default();
            for version in &group.versions {
                let Some(version_name) = version.version.clone() else {
                    continue;
                };
                for resource in &version.resources {
                    if let Some(rt) = resource_type(&group_name, &version_name, resource) {
                        let key = rt.group_resource();
                        if !catalogue.by_group_resource.contains_key(&key) {
                            catalogue
                                .by_group_resource
                                .insert(key, catalogue.types.len());
                            catalogue.types.push(rt);
                        }
                    }
                }
            }
        }
        catalogue
    }

    /// This catalogue plus `extra` types it lacks (a backup's types not served here yet),
    /// so names of those resolve too.
    pub fn with_types(&self, extra: impl IntoIterator<Item = ResourceType>) -> Self {
        let mut out = self.clone();
        for rt in extra {
            let key = rt.group_resource();
            if !out.by_group_resource.contains_key(&key) {
                out.by_group_resource.insert(key, out.types.len());
                out.types.push(rt);
            }
        }
        out
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// By `plural.group` (or `plural` for the core group).
    pub fn get(&self, group_resource: &str) -> Option<&ResourceType> {
        self.by_group_resource
            .get(group_resource)
            .map(|&i| &self.types[i])
    }

    /// By group and kind.
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
    }

    /// Resolves a name as users write it: `deploy`, `deployments`, `Deployment`,
    /// `deployments.apps`, `deploy.apps`, `cm`. Without a group, the core group wins, then
    /// the first group in discovery order (kubectl's rule).
    pub fn resolve(&self, name: &str) -> Option<&ResourceType> {
        let name = name.trim();
        if let Some(found) = self.types.iter().find(|t| t.answers_to(name)) {
            return Some(found);
        }
        let (resource, group) = name.split_once('.')?;
        self.types
            .iter()
            .find(|t| t.group == group && t.answers_to(resource))
    }
}

fn resource_type(group: &str, version: &str, r: &APIResourceDiscovery) -> Option<ResourceType> {
    let plural = r.resource.clone()?;
    if plural.contains('/') {
        return None;
    }
    let kind = r
        .response_kind
        .as_ref()
        .and_then(|k| k.kind.clone())
        .unwrap_or_default();
    Some(ResourceType {
        group: group.to_string(),
        version: version.to_string(),
        singular: r
            .singular_resource
            .clone()
            .unwrap_or_else(|| kind.to_ascii_lowercase()),
        kind,
        plural,
        short_names: r.short_names.clone(),
        namespaced: r.scope.as_deref() == Some("Namespaced"),
        verbs: r.verbs.clone(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// (plural, kind, singular, namespaced, short names)
    type Res<'a> = (&'a str, &'a str, &'a str, bool, &'a [&'a str]);

    fn group(name: &str, versions: &[(&str, &[Res<'_>])]) -> APIGroupDiscovery {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "versions": versions.iter().map(|(v, resources)| serde_json::json!({
                "version": v,
                "resources": resources.iter().map(|(plural, kind, singular, namespaced, short)| serde_json::json!({
                    "resource": plural,
                    "responseKind": {"group": name, "version": v, "kind": kind},
                    "singularResource": singular,
                    "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    "shortNames": short,
                })).collect::<Vec<_>>()
            })).collect::<Vec<_>>()
        }))
        .expect("discovery document")
    }

    pub(crate) fn sample() -> Catalogue {
        let core = group(
            "",
            &[(
                "v1",
                &[
                    ("configmaps", "ConfigMap", "configmap", true, &["cm"]),
                    ("namespaces", "Namespace", "namespace", false, &["ns"]),
                    ("pods", "Pod", "pod", true, &["po"]),
                    ("events", "Event", "event", true, &["ev"]),
                    (
                        "persistentvolumes",
                        "PersistentVolume",
                        "persistentvolume",
                        false,
                        &["pv"],
                    ),
                    (
                        "persistentvolumeclaims",
                        "PersistentVolumeClaim",
                        "persistentvolumeclaim",
                        true,
                        &["pvc"],
                    ),
                    (
                        "serviceaccounts",
                        "ServiceAccount",
                        "serviceaccount",
                        true,
                        &["sa"],
                    ),
                    ("secrets", "Secret", "secret", true, &[]),
                    ("services", "Service", "service", true, &["svc"]),
                ],
            )],
        );
        let apps = group(
            "apps",
            &[(
                "v1",
                &[
                    ("deployments", "Deployment", "deployment", true, &["deploy"]),
                    ("replicasets", "ReplicaSet", "replicaset", true, &["rs"]),
                ],
            )],
        );
        let events = group(
            "events.k8s.io",
            &[("v1", &[("events", "Event", "event", true, &["ev"])])],
        );
        let widgets = group(
            "example.com",
            &[
                ("v2", &[("widgets", "Widget", "widget", true, &["wd"])]),
                (
                    "v1",
                    &[
                        ("widgets", "Widget", "widget", true, &["wd"]),
                        ("gadgets", "Gadget", "gadget", false, &[]),
                    ],
                ),
            ],
        );
        let crds = group(
            "apiextensions.k8s.io",
            &[(
                "v1",
                &[(
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    "customresourcedefinition",
                    false,
                    &["crd"],
                )],
            )],
        );
        Catalogue::from_groups([&core, &apps, &events, &widgets, &crds])
    }

    #[test]
    fn resolves_names_as_kubectl_does() {
        let c = sample();
        for name in [
            "deploy",
            "deployments",
            "Deployment",
            "deployment",
            "deployments.apps",
            "deploy.apps",
        ] {
            assert_eq!(
                c.resolve(name).map(|t| t.group_resource()),
                Some("deployments.apps".into()),
                "{name}"
            );
        }
        assert_eq!(
            c.resolve("cm").map(|t| t.group_resource()),
            Some("configmaps".into())
        );
        assert_eq!(
            c.resolve("events").map(|t| t.group_resource()),
            Some("events".into()),
            "core wins"
        );
        assert_eq!(
            c.resolve("events.events.k8s.io")
                .map(|t| t.group_resource()),
            Some("events.events.k8s.io".into())
        );
        assert_eq!(
            c.resolve("crd").map(|t| t.group_resource()),
            Some("customresourcedefinitions.apiextensions.k8s.io".into())
        );
        assert!(c.resolve("deploymnts").is_none());
    }

    #[test]
    fn takes_each_resource_at_its_preferred_version() {
        let c = sample();
        assert_eq!(
            c.get("widgets.example.com").map(|t| t.version.as_str()),
            Some("v2")
        );
        assert_eq!(
            c.get("gadgets.example.com").map(|t| t.version.as_str()),
            Some("v1"),
            "only served in v1"
        );
        assert!(c.get("pods").is_some_and(ResourceType::is_backupable));
    }
}
