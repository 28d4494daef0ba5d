//! `<name>-resource-list.json.gz`: every item Velero backed up, by apiVersion and kind.

use std::collections::BTreeMap;

use crate::{
    VeleroError,
    names::{is_dns_label, is_dns_subdomain, object_name_problem},
};

/// The items of one apiVersion and kind, as Velero listed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceListEntry {
    /// API group; empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// `(namespace, name)` of each item; the namespace is None for cluster-scoped ones.
    pub items: Vec<(Option<String>, String)>,
}

/// What Velero says it backed up (`velero backup describe --details` shows this list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceList {
    /// By `apiVersion/kind` (`apps/v1/Deployment`, `v1/ConfigMap`), in that order.
    pub entries: Vec<ResourceListEntry>,
}

impl ResourceList {
    /// How many items the list names.
    pub fn len(&self) -> usize {
        self.entries.iter().map(|e| e.items.len()).sum()
    }

    /// Whether it names no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses the decompressed `-resource-list.json` (`{"apps/v1/Deployment": ["ns/name"]}`)
/// read from `key`.
pub(crate) fn parse(bytes: &[u8], key: &str) -> Result<ResourceList, VeleroError> {
    let bad = |detail: String| VeleroError::Metadata {
        key: key.into(),
        detail,
    };
    let raw: Option<BTreeMap<String, Vec<String>>> = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("not a JSON map of apiVersion/kind to names: {e}")))?;
    let mut entries = Vec::new();
    for (gvk, names) in raw.unwrap_or_default() {
        let (group_version, kind) = gvk
            .rsplit_once('/')
            .ok_or_else(|| bad(format!("{gvk:?} is not apiVersion/kind")))?;
        let (group, version) = group_version.split_once('/').unwrap_or(("", group_version));
        if (!group.is_empty() && !is_dns_subdomain(group))
            || !is_dns_label(version)
            || kind.is_empty()
            || !kind.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(bad(format!("{gvk:?} is not apiVersion/kind")));
        }
        let items = names
            .into_iter()
            .map(|entry| {
                let (namespace, name) = match entry.split_once('/') {
                    Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
                    None => (None, entry.clone()),
                };
                if namespace.as_deref().is_some_and(|ns| !is_dns_label(ns))
                    || object_name_problem(&name).is_some()
                {
                    return Err(bad(format!("{entry:?} of {gvk} is not [namespace/]name")));
                }
                Ok((namespace, name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        entries.push(ResourceListEntry {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            items,
        });
    }
    Ok(ResourceList { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velero_s_list() -> Result<(), VeleroError> {
        let json = r#"{"apps/v1/Deployment":["shop/web"],"v1/ConfigMap":["shop/a","shop/b"],"v1/Namespace":["shop"],"rbac.authorization.k8s.io/v1/ClusterRole":["system:x"]}"#;
        let list = parse(json.as_bytes(), "k")?;
        assert_eq!(list.len(), 5);
        let deployment = &list.entries[0];
        assert_eq!(
            (deployment.group.as_str(), deployment.version.as_str()),
            ("apps", "v1")
        );
        assert_eq!(
            deployment.items,
            vec![(Some("shop".to_string()), "web".to_string())]
        );
        let namespace = list
            .entries
            .iter()
            .find(|e| e.kind == "Namespace")
            .map(|e| e.items.clone());
        assert_eq!(namespace, Some(vec![(None, "shop".to_string())]));
        for bad in [
            r#"{"Deployment":["a"]}"#,
            r#"{"v1/ConfigMap":["a/b/c"]}"#,
            r#"{"v1/ConfigMap":["Bad_NS/x"]}"#,
            r#"["v1/ConfigMap"]"#,
        ] {
            assert!(parse(bad.as_bytes(), "k").is_err(), "{bad}");
        }
        assert!(parse(b"null", "k")?.is_empty());
        Ok(())
    }
}
