//! Velero's filter semantics, as pure functions: namespace globs, resource names, label
//! selectors, the exclude label, and which cluster-scoped resources come along.

use std::collections::{BTreeMap, BTreeSet};

use globset::{Glob, GlobSet, GlobSetBuilder};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::catalogue::Catalogue;

/// A spec value that cannot be used, said so the user can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{field}: {pattern:?} is not a valid glob: {reason}")]
    Glob {
        field: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("{field}: {detail}")]
    Selector { field: &'static str, detail: String },
}

/// Namespaces chosen by include and exclude globs. Empty or `*` includes all.
#[derive(Clone, Debug)]
pub struct NamespaceFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn globs(field: &'static str, patterns: &[String]) -> Result<Option<GlobSet>, FilterError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|e| FilterError::Glob {
            field,
            pattern: pattern.clone(),
            reason: e.kind().to_string(),
        })?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|e| FilterError::Glob {
        field,
        pattern: patterns.join(","),
        reason: e.to_string(),
    })
}

impl NamespaceFilter {
    pub fn new(included: &[String], excluded: &[String]) -> Result<Self, FilterError> {
        let everything = included.is_empty() || included.iter().any(|p| p == "*");
        Ok(Self {
            include: if everything {
                None
            } else {
                globs("includedNamespaces", included)?
            },
            exclude: globs("excludedNamespaces", excluded)?,
        })
    }

    /// Only `namespace` (a tenant's own).
    pub fn only(namespace: &str) -> Self {
        let include = globs("includedNamespaces", &[globset::escape(namespace)])
            .ok()
            .flatten();
        Self {
            include,
            exclude: None,
        }
    }

    pub fn matches(&self, namespace: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(namespace))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(namespace))
    }

    /// True when every namespace is included (exclusions aside).
    pub fn includes_all(&self) -> bool {
        self.include.is_none()
    }

    /// True when no namespace is excluded either.
    pub fn is_everything(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }
}

/// Resources chosen by name. Names resolve through the cluster's catalogue.
#[derive(Clone, Debug, Default)]
pub struct ResourceFilter {
    /// `None`: every resource.
    include: Option<BTreeSet<String>>,
    exclude: BTreeSet<String>,
    /// Resources named in an include list (not through `*`).
    named: BTreeSet<String>,
    /// Names that matched no resource the cluster serves.
    pub unknown: Vec<String>,
}

impl ResourceFilter {
    pub fn new(catalogue: &Catalogue, included: &[String], excluded: &[String]) -> Self {
        let mut unknown = Vec::new();
        let mut resolve = |names: &[String]| -> BTreeSet<String> {
            names
                .iter()
                .filter(|n| n.as_str() != "*")
                .filter_map(|n| match catalogue.resolve(n) {
                    Some(t) => Some(t.group_resource()),
                    None => {
                        unknown.push(n.clone());
                        None
                    }
                })
                .collect()
        };
        let everything = included.is_empty() || included.iter().any(|n| n == "*");
        let include = (!everything).then(|| resolve(included));
        let exclude = resolve(excluded);
        Self {
            named: include.clone().unwrap_or_default(),
            include,
            exclude,
            unknown,
        }
    }

    /// A filter decided elsewhere ([`crate::scoped`]): exactly the resources of `include`,
    /// never those of `exclude`; `named` were named by an include list.
    pub fn from_sets(
        include: BTreeSet<String>,
        exclude: BTreeSet<String>,
        named: BTreeSet<String>,
        unknown: Vec<String>,
    ) -> Self {
        Self {
            include: Some(include),
            exclude,
            named,
            unknown,
        }
    }

    /// By `plural.group`.
    pub fn matches(&self, group_resource: &str) -> bool {
        self.include
            .as_ref()
            .is_none_or(|i| i.contains(group_resource))
            && !self.exclude.contains(group_resource)
    }

    /// Named in `excludedResources`.
    pub fn excludes(&self, group_resource: &str) -> bool {
        self.exclude.contains(group_resource)
    }

    /// Named in `includedResources` (not through `*`).
    pub fn names(&self, group_resource: &str) -> bool {
        self.named.contains(group_resource)
    }
}

/// Which cluster-scoped items a backup or restore takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterResources {
    /// All that pass the resource filter.
    All,
    /// Only those the namespaced items need: their PVs, CRDs, and the ClusterRoleBindings
    /// (and ClusterRoles) of their service accounts.
    RelatedOnly,
    /// None.
    None,
}

impl ClusterResources {
    /// Velero's rule: unset means all when every namespace is included, related ones
    /// otherwise.
    pub fn decide(include_cluster_resources: Option<bool>, namespaces: &NamespaceFilter) -> Self {
        match include_cluster_resources {
            Some(true) => Self::All,
            Some(false) => Self::None,
            None if namespaces.includes_all() => Self::All,
            None => Self::RelatedOnly,
        }
    }
}

/// `labelSelector`, or any of `orLabelSelectors`, or nothing. Matching and the query
/// string are kube-rs's (`kube::core::Selector`); Arca adds the checks that name the field.
#[derive(Clone, Debug, Default)]
pub struct LabelFilter {
    any_of: Vec<kube::core::Selector>,
}

impl LabelFilter {
    pub fn new(
        selector: Option<&LabelSelector>,
        or_selectors: &[LabelSelector],
    ) -> Result<Self, FilterError> {
        let mut any_of = Vec::new();
        if let Some(selector) = selector {
            any_of.push(checked_selector("labelSelector", selector)?);
        }
        for selector in or_selectors {
            any_of.push(checked_selector("orLabelSelectors", selector)?);
        }
        Ok(Self { any_of })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        use kube::core::SelectorExt;
        self.any_of.is_empty() || self.any_of.iter().any(|s| s.matches(labels))
    }

    /// The selector in the apiserver's query syntax, when a single selector can be
    /// evaluated server-side.
    pub fn server_side(&self) -> Option<String> {
        match self.any_of.as_slice() {
            [one] => Some(one.to_string()),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty()
    }
}

/// Whether `key` is a label key Kubernetes accepts: `[prefix/]name`, the prefix a DNS
/// subdomain of at most 253 characters, the name at most 63 of `[A-Za-z0-9._-]`, starting and
/// ending with a letter or digit.
pub fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && valid_label_value(name)
}

/// Whether `value` is a label value Kubernetes accepts: empty, or at most 63 of
/// `[A-Za-z0-9._-]` starting and ending with a letter or digit.
pub fn valid_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// `selector` checked as the apiserver would (label keys and values, operators, values
/// where an operator needs them), with errors naming `field`.
fn checked_selector(
    field: &'static str,
    selector: &LabelSelector,
) -> Result<kube::core::Selector, FilterError> {
    let bad = |detail: String| FilterError::Selector { field, detail };
    for (key, value) in selector.match_labels.iter().flatten() {
        if !valid_label_key(key) {
            return Err(bad(format!("{key:?} is not a valid label key")));
        }
        if !valid_label_value(value) {
            return Err(bad(format!(
                "{value:?} (of {key}) is not a valid label value"
            )));
        }
    }
    for requirement in selector.match_expressions.iter().flatten() {
        check_requirement(requirement).map_err(bad)?;
    }
    kube::core::Selector::try_from(selector.clone()).map_err(|e| bad(e.to_string()))
}

fn check_requirement(r: &LabelSelectorRequirement) -> Result<(), String> {
    if !valid_label_key(&r.key) {
        return Err(format!("{:?} is not a valid label key", r.key));
    }
    if let Some(value) = r.values.iter().flatten().find(|v| !valid_label_value(v)) {
        return Err(format!(
            "{value:?} (of {}) is not a valid label value",
            r.key
        ));
    }
    let has_values = r.values.as_ref().is_some_and(|v| !v.is_empty());
    match r.operator.as_str() {
        "In" | "NotIn" if !has_values => Err(format!(
            "operator {} on {:?} needs at least one value",
            r.operator, r.key
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => Ok(()),
        other => Err(format!(
            "unknown operator {other:?} (use In, NotIn, Exists or DoesNotExist)"
        )),
    }
}

/// Parses a selector as kubectl writes it: `app=web,tier in (front,edge),env!=dev,!legacy,team`.
pub fn parse_selector(text: &str) -> Result<LabelSelector, FilterError> {
    let bad = |detail: String| FilterError::Selector {
        field: "selector",
        detail,
    };
    let mut labels = BTreeMap::new();
    let mut requirements = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // A term ends at the next comma outside parentheses.
        let mut depth = 0;
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                *c == ',' && depth == 0
            })
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let term = rest[..end].trim();
        rest = rest[end..].strip_prefix(',').unwrap_or_default().trim();
        if term.is_empty() {
            return Err(bad(format!("{text:?} has an empty term")));
        }
        let requirement =
            |key: &str, operator: &str, values: Vec<String>| LabelSelectorRequirement {
                key: key.trim().to_string(),
                operator: operator.to_string(),
                values: (!values.is_empty()).then_some(values),
            };
        let set = |key: &str,
                   list: &str,
                   operator: &str|
         -> Result<LabelSelectorRequirement, FilterError> {
            let inner = list
                .trim()
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| {
                    bad(format!(
                        "{term:?}: the values must be in parentheses, like (a,b)"
                    ))
                })?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            if values.is_empty() {
                return Err(bad(format!("{term:?} lists no value")));
            }
            Ok(requirement(key, operator, values))
        };
        if let Some((key, list)) = term.split_once(" notin ") {
            requirements.push(set(key, list, "NotIn")?);
        } else if let Some((key, list)) = term.split_once(" in ") {
            requirements.push(set(key, list, "In")?);
        } else if let Some((key, value)) = term.split_once("!=") {
            requirements.push(requirement(key, "NotIn", vec![value.trim().to_string()]));
        } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels.insert(key.trim().to_string(), value.trim().to_string());
        } else if let Some(key) = term.strip_prefix('!') {
            requirements.push(requirement(key, "DoesNotExist", Vec::new()));
        } else if term
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            requirements.push(requirement(term, "Exists", Vec::new()));
        } else {
            return Err(bad(format!(
                "{term:?} is not a label requirement (key=value, key!=value, key in (a,b), key notin (a,b), key, !key)"
            )));
        }
    }
    let selector = LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!requirements.is_empty()).then_some(requirements),
    };
    LabelFilter::new(Some(&selector), &[])?;
    Ok(selector)
}

/// Labelled `arca.dev/exclude-from-backup=true` or `velero.io/exclude-from-backup=true`.
pub fn excluded_by_label(labels: &BTreeMap<String, String>) -> bool {
    [
        arca_api::labels::EXCLUDE_FROM_BACKUP,
        arca_api::labels::VELERO_EXCLUDE_FROM_BACKUP,
    ]
    .iter()
    .any(|k| labels.get(*k).is_some_and(|v| v == "true"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::tests::sample;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_with_impossible_keys_or_values_are_refused() {
        for text in ["!!!", "a b=c", "app=-x", "x/y/z=1", "app in (a,b c)"] {
            assert!(parse_selector(text).is_err(), "{text:?} must be refused");
        }
        for text in [
            "app=web",
            "!legacy",
            "example.com/tier in (a,b)",
            "app",
            "k=",
        ] {
            assert!(parse_selector(text).is_ok(), "{text:?} must be accepted");
        }
        let err = parse_selector("!!!").expect_err("refused").to_string();
        assert!(err.contains("not a valid label key"), "{err}");
    }

    #[test]
    fn namespace_globs() -> Result<(), FilterError> {
        let f = NamespaceFilter::new(&s(&["team-*", "shop"]), &s(&["team-secret"]))?;
        assert!(f.matches("team-a") && f.matches("shop"));
        assert!(!f.matches("team-secret") && !f.matches("kube-system"));
        assert!(!f.includes_all());
        let all = NamespaceFilter::new(&s(&["*"]), &s(&["kube-*"]))?;
        assert!(all.includes_all() && !all.is_everything());
        assert!(all.matches("app") && !all.matches("kube-system"));
        assert!(NamespaceFilter::new(&[], &[])?.is_everything());
        let err = NamespaceFilter::new(&s(&["team-[a"]), &[]).expect_err("bad glob");
        assert!(
            err.to_string()
                .starts_with("includedNamespaces: \"team-[a\""),
            "{err}"
        );
        let only = NamespaceFilter::only("tenant-1");
        assert!(only.matches("tenant-1") && !only.matches("tenant-10"));
        Ok(())
    }

    #[test]
    fn resource_names_resolve_and_unknown_ones_are_reported() {
        let c = sample();
        let f = ResourceFilter::new(&c, &s(&["deploy", "cm", "deploymnts"]), &s(&["configmaps"]));
        assert!(f.matches("deployments.apps"));
        assert!(!f.matches("configmaps"), "excluded wins");
        assert!(!f.matches("pods"));
        assert_eq!(f.unknown, ["deploymnts"]);
        let all = ResourceFilter::new(&c, &s(&["*"]), &s(&["secrets"]));
        assert!(all.matches("pods") && !all.matches("secrets"));
    }

    #[test]
    fn cluster_resources_follow_velero() -> Result<(), FilterError> {
        let all_ns = NamespaceFilter::new(&[], &[])?;
        let some = NamespaceFilter::new(&s(&["app"]), &[])?;
        assert_eq!(
            ClusterResources::decide(None, &all_ns),
            ClusterResources::All
        );
        assert_eq!(
            ClusterResources::decide(None, &some),
            ClusterResources::RelatedOnly
        );
        assert_eq!(
            ClusterResources::decide(Some(true), &some),
            ClusterResources::All
        );
        assert_eq!(
            ClusterResources::decide(Some(false), &all_ns),
            ClusterResources::None
        );
        Ok(())
    }

    #[test]
    fn label_selectors() -> Result<(), FilterError> {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .expect("selector");
        let f = LabelFilter::new(Some(&sel), &[])?;
        assert!(f.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!f.matches(&labels(&[("app", "web"), ("tier", "back")])));
        assert!(!f.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("legacy", "1")
        ])));
        assert_eq!(
            f.server_side().as_deref(),
            Some("app=web,tier in (edge,front),!legacy")
        );

        let a: LabelSelector =
            serde_json::from_value(serde_json::json!({"matchLabels": {"app": "a"}})).expect("a");
        let b: LabelSelector =
            serde_json::from_value(serde_json::json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a", "c"]}, {"key": "team", "operator": "Exists"}]}))
                .expect("b");
        let or = LabelFilter::new(None, &[a, b])?;
        assert!(or.matches(&labels(&[("app", "a")])));
        assert!(or.matches(&labels(&[("team", "x")])));
        assert!(!or.matches(&labels(&[("app", "c"), ("team", "x")])));
        assert!(or.server_side().is_none(), "an OR is evaluated client-side");
        assert!(LabelFilter::default().matches(&labels(&[])));
        Ok(())
    }

    #[test]
    fn bad_selectors_are_explained() {
        let bad: LabelSelector =
            serde_json::from_value(serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}))
                .expect("selector");
        let err = LabelFilter::new(Some(&bad), &[]).expect_err("unknown operator");
        assert!(
            err.to_string().contains("unknown operator \"Like\""),
            "{err}"
        );
        let empty: LabelSelector = serde_json::from_value(
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
        )
        .expect("selector");
        assert!(LabelFilter::new(Some(&empty), &[]).is_err());
    }

    #[test]
    fn selectors_parse_as_kubectl_writes_them() -> Result<(), FilterError> {
        let s = parse_selector("app=web, tier in (front, edge),env!=dev,!legacy,team")?;
        let f = LabelFilter::new(Some(&s), &[])?;
        assert!(f.matches(&labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("env", "prod"),
            ("team", "a")
        ])));
        assert!(!f.matches(&labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("env", "dev"),
            ("team", "a")
        ])));
        assert!(!f.matches(&labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("team", "a"),
            ("legacy", "1")
        ])));
        assert_eq!(
            f.server_side().as_deref(),
            Some("app=web,tier in (edge,front),env notin (dev),!legacy,team")
        );
        for bad in ["app=web,,x", "tier in front", "tier in ()", "a b"] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn exclude_label_either_prefix() {
        assert!(excluded_by_label(&labels(&[(
            "arca.dev/exclude-from-backup",
            "true"
        )])));
        assert!(excluded_by_label(&labels(&[(
            "velero.io/exclude-from-backup",
            "true"
        )])));
        assert!(!excluded_by_label(&labels(&[(
            "velero.io/exclude-from-backup",
            "false"
        )])));
    }
}
