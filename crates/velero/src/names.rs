//! Kubernetes' name rules, as far as the reader checks names read from the bucket.

/// A DNS label (RFC 1123): 1-63 of `a-z`, `0-9`, `-`, starting and ending alphanumeric.
/// Namespaces, resource plurals and API versions are DNS labels.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A DNS subdomain: dot-separated DNS labels, at most 253 characters. API groups and most
/// object names (Velero's backups among them) are DNS subdomains.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Why `name` cannot be a Kubernetes object's name (the rule every object's name follows:
/// a valid path segment; most kinds are stricter), or None when it can.
pub(crate) fn object_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 253 {
        Some("it is longer than 253 bytes")
    } else if name == "." || name == ".." {
        Some("it is '.' or '..'")
    } else if name.contains('/') || name.contains('%') {
        Some("it contains '/' or '%'")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    }
}

/// Why `name` cannot be a Velero backup's name, or None when it can.
pub(crate) fn backup_name_problem(name: &str) -> Option<&'static str> {
    if is_dns_subdomain(name) {
        None
    } else if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 253 {
        Some("it is longer than 253 characters")
    } else {
        Some("it is not a DNS subdomain")
    }
}

/// Whether the plural `resource` can be the resource of `kind`: the lowercase kind, with
/// the plural endings Kubernetes' own and generated plurals use (`s`, `es`, `y` -> `ies`),
/// or the lowercase kind itself (`Endpoints`). Every built-in resource follows this.
pub(crate) fn kind_matches_resource(kind: &str, resource: &str) -> bool {
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let k = kind.to_ascii_lowercase();
    if resource == k
        || resource.strip_suffix('s') == Some(k.as_str())
        || resource.strip_suffix("es") == Some(k.as_str())
    {
        return true;
    }
    match (k.strip_suffix('y'), resource.strip_suffix("ies")) {
        (Some(stem), Some(plural_stem)) => stem == plural_stem,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_their_resources() {
        for (kind, resource) in [
            ("ConfigMap", "configmaps"),
            ("Endpoints", "endpoints"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("StorageClass", "storageclasses"),
            ("CustomResourceDefinition", "customresourcedefinitions"),
            ("NetworkChaos", "networkchaos"),
            ("Prometheus", "prometheuses"),
        ] {
            assert!(kind_matches_resource(kind, resource), "{kind} {resource}");
        }
        for (kind, resource) in [
            ("Secret", "configmaps"),
            ("ClusterRoleBinding", "rolebindings"),
            ("", "s"),
            ("Config/Map", "config/maps"),
            ("Policy", "policys-ies"),
        ] {
            assert!(!kind_matches_resource(kind, resource), "{kind} {resource}");
        }
    }

    #[test]
    fn names() {
        assert!(is_dns_label("v1beta1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        assert!(is_dns_subdomain("rbac.authorization.k8s.io"));
        assert!(!is_dns_subdomain("a..b"));
        assert_eq!(object_name_problem("system:controller:x"), None);
        assert!(object_name_problem("..").is_some());
        assert!(object_name_problem("a%2f").is_some());
        assert!(object_name_problem("a\nb").is_some());
        assert!(backup_name_problem("nightly-20250101").is_none());
        assert!(backup_name_problem("../x").is_some());
    }
}
