//! Paths of tar entries: checked for safety, then parsed into what Velero puts there.

use crate::names::{is_dns_label, is_dns_subdomain, object_name_problem};

/// The most bytes of a tar entry's path.
const PATH_BYTES: usize = 4096;

/// Why a path is unsafe (absolute, climbing, empty segments, not UTF-8), or its text.
pub(crate) fn safe_path(bytes: &[u8]) -> Result<&str, String> {
    let path = std::str::from_utf8(bytes).map_err(|_| "its name is not UTF-8".to_string())?;
    if path.len() > PATH_BYTES {
        return Err(format!("its name is longer than {PATH_BYTES} bytes"));
    }
    if path.starts_with('/') {
        return Err("its path is absolute".into());
    }
    if path.contains('\0') || path.chars().any(char::is_control) {
        return Err("its name contains control characters".into());
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    for segment in trimmed.split('/') {
        match segment {
            "" => return Err("its path has an empty segment".into()),
            "." | ".." => return Err(format!("its path has a {segment:?} segment")),
            _ => {}
        }
    }
    Ok(path)
}

/// Which copy of an item a path holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Copy {
    /// `resources/<gr>/<scope>/…`: the preferred version without a version folder, kept by
    /// Velero for older readers (what Velero's own restore reads by default).
    Legacy,
    /// `resources/<gr>/<version>-preferredversion/<scope>/…`: the preferred version.
    Preferred(String),
    /// `resources/<gr>/<version>/<scope>/…`: another version (API group versions feature).
    Other(String),
}

/// A parsed item path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ItemPath {
    /// Plural resource (`deployments`).
    pub resource: String,
    /// API group; empty for the core group.
    pub group: String,
    /// Which copy.
    pub copy: Copy,
    /// Namespace; None for cluster-scoped items.
    pub namespace: Option<String>,
    /// The object's name (the file name without `.json`).
    pub name: String,
}

/// What a (safe) path of a Velero tarball is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `metadata/version`.
    Version,
    /// An item's copy.
    Item(ItemPath),
    /// A folder entry (Velero writes none; harmless).
    Folder,
    /// Something Velero does not write under `resources/` or elsewhere: skipped, named in
    /// the summary.
    Unknown,
}

/// Parses a safe path. `Err` for paths under `resources/` whose parts are not valid
/// Kubernetes names (a bucket writer's, never Velero's).
pub(crate) fn parse(path: &str, is_folder: bool) -> Result<Kind, String> {
    if is_folder {
        return Ok(Kind::Folder);
    }
    if path == "metadata/version" {
        return Ok(Kind::Version);
    }
    let Some(rest) = path.strip_prefix("resources/") else {
        return Ok(Kind::Unknown);
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let (group_resource, tail) = match segments.split_first() {
        Some((gr, tail)) => (*gr, tail),
        None => return Ok(Kind::Unknown),
    };
    let (copy, scoped) = match tail.first() {
        Some(&"namespaces") | Some(&"cluster") => (Copy::Legacy, tail),
        Some(folder) => {
            let copy = match folder.strip_suffix("-preferredversion") {
                Some(version) => Copy::Preferred(version.to_string()),
                None => Copy::Other(folder.to_string()),
            };
            (copy, &tail[1..])
        }
        None => return Ok(Kind::Unknown),
    };
    let (namespace, file) = match scoped {
        ["namespaces", ns, file] => (Some(*ns), *file),
        ["cluster", file] => (None, *file),
        _ => return Ok(Kind::Unknown),
    };
    let Some(name) = file.strip_suffix(".json") else {
        return Ok(Kind::Unknown);
    };
    let (resource, group) = group_resource
        .split_once('.')
        .unwrap_or((group_resource, ""));
    if !is_dns_label(resource) {
        return Err(format!("{resource:?} is not a resource name"));
    }
    if !group.is_empty() && !is_dns_subdomain(group) {
        return Err(format!("{group:?} is not an API group name"));
    }
    if let Copy::Preferred(v) | Copy::Other(v) = &copy
        && !is_dns_label(v)
    {
        return Err(format!("{v:?} is not an API version"));
    }
    if let Some(ns) = namespace
        && !is_dns_label(ns)
    {
        return Err(format!("{ns:?} is not a namespace name"));
    }
    if let Some(problem) = object_name_problem(name) {
        return Err(format!("{name:?} is not an object name: {problem}"));
    }
    Ok(Kind::Item(ItemPath {
        resource: resource.to_string(),
        group: group.to_string(),
        copy,
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str) -> ItemPath {
        match parse(path, false) {
            Ok(Kind::Item(item)) => item,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn velero_paths() {
        let d = item("resources/deployments.apps/v1-preferredversion/namespaces/shop/web.json");
        assert_eq!(
            d,
            ItemPath {
                resource: "deployments".into(),
                group: "apps".into(),
                copy: Copy::Preferred("v1".into()),
                namespace: Some("shop".into()),
                name: "web".into(),
            }
        );
        let crd = item(
            "resources/customresourcedefinitions.apiextensions.k8s.io/v1-preferredversion/cluster/widgets.example.com.json",
        );
        assert_eq!(crd.group, "apiextensions.k8s.io");
        assert_eq!(crd.name, "widgets.example.com");
        assert_eq!(crd.namespace, None);
        assert_eq!(
            item("resources/configmaps/namespaces/shop/settings.json").copy,
            Copy::Legacy
        );
        assert_eq!(
            item("resources/clusterroles.rbac.authorization.k8s.io/cluster/system:x.json").copy,
            Copy::Legacy
        );
        assert_eq!(
            item("resources/horizontalpodautoscalers.autoscaling/v1/namespaces/a/h.json").copy,
            Copy::Other("v1".into())
        );
        assert_eq!(parse("metadata/version", false), Ok(Kind::Version));
        assert_eq!(parse("resources/", true), Ok(Kind::Folder));
        for unknown in [
            "metadata/other",
            "resources/pods",
            "resources/pods/v1-preferredversion/namespaces/a",
            "resources/pods/namespaces/a/b.yaml",
            "extra.txt",
        ] {
            assert_eq!(parse(unknown, false), Ok(Kind::Unknown), "{unknown}");
        }
    }

    #[test]
    fn bad_names_inside_paths_are_refused() {
        for bad in [
            "resources/Pods/namespaces/a/b.json",
            "resources/pods.Bad_Group/namespaces/a/b.json",
            "resources/pods/V1-preferredversion/namespaces/a/b.json",
            "resources/pods/namespaces/Not_A_Namespace/b.json",
            "resources/pods/namespaces/a/%2e%2e.json",
            "resources/pods/namespaces/a/.json",
        ] {
            assert!(parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn unsafe_paths() {
        for bad in [
            &b"/etc/passwd"[..],
            b"resources/../../x.json",
            b"resources/./x.json",
            b"resources//x.json",
            b"resources/pods/namespaces/a/\xff.json",
            b"resources/pods/namespaces/a/b\n.json",
        ] {
            assert!(safe_path(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(safe_path(b"resources/pods/"), Ok("resources/pods/"));
        assert!(safe_path(&vec![b'a'; 5000]).is_err());
    }
}
