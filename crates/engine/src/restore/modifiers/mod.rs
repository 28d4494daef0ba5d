//! Resource modifiers: Velero's ConfigMap of rules that patch items as they are restored
//! (`version: v1`, `resourceModifierRules`), referenced by a Restore's `resourceModifier`.
//! Pure: parsing, validation, matching and patching of one item's JSON.
//!
//! ```yaml
//! version: v1
//! resourceModifierRules:
//! - conditions:
//!     groupResource: persistentvolumeclaims      # a glob, `.` separated
//!     resourceNameRegex: "^data-.*"
//!     namespaces: [shop]                          # the backed-up namespaces
//!     labelSelector: {matchLabels: {app: db}}
//!     matches: [{path: /spec/storageClassName, value: gp2}]
//!   patches:                                      # or mergePatches, or strategicPatches
//!   - {operation: replace, path: /spec/storageClassName, value: premium-rwo}
//! ```
//!
//! As in Velero: rules are matched against the item as it was backed up (its namespace is
//! the backed-up one), in order, each on the item as the previous rules left it; a rule has
//! one kind of patch; a JSON patch whose `test` fails leaves the item unchanged; Namespace
//! items are not patched.

mod glob;
mod json_patch;
mod strategic;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use self::{
    glob::GroupResourceGlob,
    json_patch::{JsonPatch, MatchRule},
};
use crate::filters::{LabelFilter, NamespaceFilter};

/// What a rule may not change: what an item is, and where it is written.
const IDENTITY: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/namespace",
];

/// Largest ConfigMap value read as rules (the apiserver caps a ConfigMap at 1 MiB anyway).
const MAX_RULES_TEXT: usize = 1 << 20;
/// Longest `resourceNameRegex` compiled.
const MAX_REGEX: usize = 1024;

/// The ConfigMap's document.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    version: String,
    #[serde(default)]
    resource_modifier_rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleSpec {
    conditions: ConditionsSpec,
    #[serde(default)]
    patches: Vec<JsonPatch>,
    #[serde(default)]
    merge_patches: Vec<PatchData>,
    #[serde(default)]
    strategic_patches: Vec<PatchData>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConditionsSpec {
    #[serde(default)]
    group_resource: String,
    #[serde(default)]
    resource_name_regex: String,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    label_selector: Option<LabelSelector>,
    #[serde(default)]
    matches: Vec<MatchRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchData {
    /// YAML or JSON.
    patch_data: String,
}

/// A rule's patches, of one kind.
#[derive(Debug)]
enum Patches {
    Json(Vec<::json_patch::PatchOperation>),
    Merge(Vec<Value>),
    Strategic(Vec<Value>),
}

/// One rule, checked and compiled.
#[derive(Debug)]
struct Rule {
    group_resource: GroupResourceGlob,
    name: Option<Regex>,
    namespaces: Option<NamespaceFilter>,
    labels: LabelFilter,
    tests: Vec<::json_patch::PatchOperation>,
    patches: Patches,
}

/// The rules of a Restore's `resourceModifier` ConfigMap.
#[derive(Debug)]
pub struct ResourceModifiers {
    rules: Vec<Rule>,
}

impl ResourceModifiers {
    /// Reads the rules of ConfigMap `name` (see [`crate::rules::read`]); each problem is
    /// named after the ConfigMap.
    pub fn from_config_map(name: &str, text: &str) -> Result<Self, Vec<String>> {
        Self::parse(text).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| format!("resource modifiers ConfigMap {name}: {p}"))
                .collect()
        })
    }

    /// Reads the rules' YAML.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        if text.len() > MAX_RULES_TEXT {
            return Err(vec![format!(
                "the rules are longer than {MAX_RULES_TEXT} bytes"
            )]);
        }
        let document: Document = serde_yaml::from_str(text)
            .map_err(|e| vec![format!("not valid resource modifier rules: {e}")])?;
        if !document.version.eq_ignore_ascii_case("v1") {
            return Err(vec![format!(
                "version {:?} is not supported: write `version: v1`",
                document.version
            )]);
        }
        if document.resource_modifier_rules.is_empty() {
            return Err(vec![
                "resourceModifierRules is empty: give at least one rule".into(),
            ]);
        }
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        for (i, spec) in document.resource_modifier_rules.into_iter().enumerate() {
            match Rule::compile(spec) {
                Ok(rule) => rules.push(rule),
                Err(e) => problems.push(format!("rule {}: {e}", i + 1)),
            }
        }
        if problems.is_empty() {
            Ok(Self { rules })
        } else {
            Err(problems)
        }
    }

    /// Applies the rules matching `object` (of `group_resource`, as backed up) to it, in
    /// order. Returns how many rules applied; an error names the rule, and leaves the
    /// object with the rules before it applied.
    /// No rule may change what the item is or where it goes (its apiVersion, kind, name
    /// or namespace: `namespaceMapping` moves items); such a rule is an error, and the item
    /// is left as it was.
    /// Namespaces are never patched: Velero makes each from the labels, annotations and
    /// spec the backup holds, outside its rules, and the same rules must do the same here.
    pub fn apply(&self, group_resource: &str, object: &mut Value) -> Result<usize, String> {
        if group_resource == "namespaces" {
            return Ok(0);
        }
        let original = object.clone();
        let mut applied = 0;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches(group_resource, &original) {
                continue;
            }
            let checked = rule.patch(object).and_then(|()| {
                match IDENTITY.iter().find(|p| object.pointer(p) != original.pointer(p)) {
                    Some(path) => Err(format!(
                        "it may not change {path} (use namespaceMapping to restore into another namespace)"
                    )),
                    None => Ok(()),
                }
            });
            if let Err(e) = checked {
                *object = original;
                return Err(format!("resource modifier rule {}: {e}", i + 1));
            }
            applied += 1;
        }
        Ok(applied)
    }
}

impl Rule {
    fn compile(spec: RuleSpec) -> Result<Self, String> {
        let c = spec.conditions;
        if c.group_resource.is_empty() {
            return Err("conditions.groupResource is empty: name the resource (`deployments.apps`, `persistentvolumeclaims`, `*.apps`)".into());
        }
        let group_resource = GroupResourceGlob::new(&c.group_resource)?;
        let name = match c.resource_name_regex.as_str() {
            "" => None,
            r if r.len() > MAX_REGEX => {
                return Err(format!(
                    "resourceNameRegex is longer than {MAX_REGEX} characters"
                ));
            }
            r => Some(
                regex::RegexBuilder::new(r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("resourceNameRegex {r:?}: {e}"))?,
            ),
        };
        let namespaces = if c.namespaces.is_empty() {
            None
        } else {
            Some(NamespaceFilter::new(&c.namespaces, &[]).map_err(|e| e.to_string())?)
        };
        let labels = LabelFilter::new(c.label_selector.as_ref(), &[])
            .map_err(|e| format!("labelSelector: {e}"))?;
        let tests = json_patch::tests_of(&c.matches)?;
        let kinds = [
            !spec.patches.is_empty(),
            !spec.merge_patches.is_empty(),
            !spec.strategic_patches.is_empty(),
        ];
        let patches = match kinds {
            [true, false, false] => Patches::Json(
                spec.patches
                    .iter()
                    .map(JsonPatch::to_operation)
                    .collect::<Result<_, _>>()?,
            ),
            [false, true, false] => Patches::Merge(yaml_values(&spec.merge_patches)?),
            [false, false, true] => Patches::Strategic(yaml_values(&spec.strategic_patches)?),
            [false, false, false] => {
                return Err("no patches: give patches, mergePatches or strategicPatches".into());
            }
            _ => {
                return Err(
                    "only one of patches, mergePatches and strategicPatches may be given".into(),
                );
            }
        };
        Ok(Self {
            group_resource,
            name,
            namespaces,
            labels,
            tests,
            patches,
        })
    }

    fn matches(&self, group_resource: &str, object: &Value) -> bool {
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !namespace.is_empty()
            && let Some(filter) = &self.namespaces
            && !filter.matches(namespace)
        {
            return false;
        }
        if !self.group_resource.matches(group_resource) {
            return false;
        }
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(regex) = &self.name
            && !regex.is_match(name)
        {
            return false;
        }
        if !self.labels.is_empty() && !self.labels.matches(&crate::rules::labels_of(object)) {
            return false;
        }
        self.tests.is_empty() || json_patch::all_hold(object, &self.tests)
    }

    fn patch(&self, object: &mut Value) -> Result<(), String> {
        match &self.patches {
            Patches::Json(operations) => json_patch::apply(object, operations),
            Patches::Merge(patches) => {
                for patch in patches {
                    ::json_patch::merge(object, patch);
                }
                Ok(())
            }
            Patches::Strategic(patches) => {
                let api_version = object
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                let kind = object
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if !strategic::is_built_in(group) {
                    return Err(format!(
                        "strategic merge patches apply to Kubernetes' own kinds; {kind} of {group} has no merge keys to follow: use mergePatches"
                    ));
                }
                let mut patched = object.clone();
                for patch in patches {
                    strategic::apply(&kind, &mut patched, patch)?;
                }
                *object = patched;
                Ok(())
            }
        }
    }
}

/// The `patchData` texts (YAML or JSON) as JSON objects.
fn yaml_values(patches: &[PatchData]) -> Result<Vec<Value>, String> {
    patches
        .iter()
        .map(|p| {
            let value: Value = serde_yaml::from_str(&p.patch_data)
                .map_err(|e| format!("patchData is not YAML or JSON: {e}"))?;
            if value.is_object() {
                Ok(value)
            } else {
                Err(format!("patchData must be an object, not {value}"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
