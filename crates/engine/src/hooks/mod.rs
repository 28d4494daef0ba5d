//! Hooks: commands run in pods by exec around a backup, and after a restore; init
//! containers added to restored pods. Pod annotations, with Arca's or Velero's prefix, take
//! precedence over the spec's hooks for the phase they name.

pub mod backup;
pub mod restore;

use std::{collections::BTreeMap, time::Duration};

use arca_api::{ExecHook, HookErrorMode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::filters::{LabelFilter, NamespaceFilter};

/// The default time a hook command may run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The prefixes hook annotations may use: Arca's, then Velero's.
const DOMAINS: [&str; 2] = ["arca.dev", "velero.io"];

/// One command to run in a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// Where it came from, for logs: `annotation` or the spec hook's name.
    pub source: String,
    pub container: Option<String>,
    pub command: Vec<String>,
    pub on_error: HookErrorMode,
    pub timeout: Duration,
}

impl Hook {
    pub fn from_exec(source: &str, exec: &ExecHook) -> Self {
        Self {
            source: source.into(),
            container: exec.container.clone(),
            command: exec.command.clone(),
            on_error: exec.on_error.unwrap_or(HookErrorMode::Fail),
            timeout: exec.timeout.map(|d| d.as_std()).unwrap_or(DEFAULT_TIMEOUT),
        }
    }
}

/// Why hook annotations cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {problem}")]
pub struct AnnotationError {
    pub key: String,
    pub problem: String,
}

/// Looks up `<phase>.hook.<kind>.<domain>/<field>`, Arca's domain first.
fn annotation<'a>(
    annotations: &'a BTreeMap<String, String>,
    prefix: &str,
    field: &str,
) -> Option<(String, &'a str)> {
    DOMAINS.iter().find_map(|domain| {
        let key = format!("{prefix}.{domain}/{field}");
        annotations.get(&key).map(|v| (key, v.as_str()))
    })
}

/// A command annotation: a JSON array of strings, or one plain string.
pub fn parse_command(key: &str, value: &str) -> Result<Vec<String>, AnnotationError> {
    let trimmed = value.trim();
    let command = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<String>>(trimmed).map_err(|e| AnnotationError {
            key: key.into(),
            problem: format!("not a JSON array of strings ({e})"),
        })?
    } else {
        vec![trimmed.to_string()]
    };
    if command.is_empty() || command.iter().all(|c| c.is_empty()) {
        return Err(AnnotationError {
            key: key.into(),
            problem: "the command is empty".into(),
        });
    }
    Ok(command)
}

fn parse_on_error(key: &str, value: &str) -> Result<HookErrorMode, AnnotationError> {
    match value.trim() {
        "Fail" | "fail" => Ok(HookErrorMode::Fail),
        "Continue" | "continue" => Ok(HookErrorMode::Continue),
        other => Err(AnnotationError {
            key: key.into(),
            problem: format!("{other:?} is neither Fail nor Continue"),
        }),
    }
}

fn parse_duration(key: &str, value: &str) -> Result<Duration, AnnotationError> {
    value
        .trim()
        .parse::<arca_api::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| AnnotationError {
            key: key.into(),
            problem: e.to_string(),
        })
}

/// The exec hook a pod's annotations define for `prefix` (`pre.hook.backup`,
/// `post.hook.backup`), if any.
pub fn hook_from_annotations(
    annotations: &BTreeMap<String, String>,
    prefix: &str,
    default_on_error: HookErrorMode,
) -> Result<Option<Hook>, AnnotationError> {
    let Some((key, command)) = annotation(annotations, prefix, "command") else {
        return Ok(None);
    };
    let command = parse_command(&key, command)?;
    let on_error = match annotation(annotations, prefix, "on-error") {
        Some((key, v)) => parse_on_error(&key, v)?,
        None => default_on_error,
    };
    let timeout = match annotation(annotations, prefix, "timeout") {
        Some((key, v)) => parse_duration(&key, v)?,
        None => DEFAULT_TIMEOUT,
    };
    Ok(Some(Hook {
        source: "annotation".into(),
        container: annotation(annotations, prefix, "container").map(|(_, v)| v.to_string()),
        command,
        on_error,
        timeout,
    }))
}

/// Whether a spec hook's selectors choose a pod.
#[derive(Debug)]
pub struct Selection<'a> {
    pub included_namespaces: &'a [String],
    pub excluded_namespaces: &'a [String],
    pub included_resources: &'a [String],
    pub excluded_resources: &'a [String],
    pub label_selector: Option<&'a LabelSelector>,
}

impl Selection<'_> {
    /// Hooks only ever run in pods: a resource filter that leaves pods out leaves the hook
    /// out. Errors (a bad glob or selector) are reported by the caller.
    pub fn chooses(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, String> {
        let namespaces = NamespaceFilter::new(self.included_namespaces, self.excluded_namespaces)
            .map_err(|e| e.to_string())?;
        let names_pods = |names: &[String]| {
            names
                .iter()
                .any(|n| matches!(n.to_ascii_lowercase().as_str(), "*" | "pods" | "pod" | "po"))
        };
        let resources_ok = (self.included_resources.is_empty()
            || names_pods(self.included_resources))
            && !names_pods(self.excluded_resources);
        let labels_ok = LabelFilter::new(self.label_selector, &[])
            .map_err(|e| e.to_string())?
            .matches(labels);
        Ok(namespaces.matches(namespace) && resources_ok && labels_ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations_with_either_prefix() -> Result<(), AnnotationError> {
        let velero = map(&[
            ("pre.hook.backup.velero.io/container", "db"),
            (
                "pre.hook.backup.velero.io/command",
                r#"["/bin/sh", "-c", "fsfreeze -f /data"]"#,
            ),
            ("pre.hook.backup.velero.io/on-error", "Continue"),
            ("pre.hook.backup.velero.io/timeout", "2m"),
        ]);
        let hook = hook_from_annotations(&velero, "pre.hook.backup", HookErrorMode::Fail)?
            .expect("a hook");
        assert_eq!(hook.container.as_deref(), Some("db"));
        assert_eq!(hook.command, ["/bin/sh", "-c", "fsfreeze -f /data"]);
        assert_eq!(hook.on_error, HookErrorMode::Continue);
        assert_eq!(hook.timeout, Duration::from_secs(120));
        let arca = map(&[
            ("post.hook.backup.arca.dev/command", "/usr/bin/thaw"),
            ("post.hook.backup.velero.io/command", "ignored"),
        ]);
        let hook =
            hook_from_annotations(&arca, "post.hook.backup", HookErrorMode::Fail)?.expect("a hook");
        assert_eq!(
            hook.command,
            ["/usr/bin/thaw"],
            "a plain string, Arca's prefix first"
        );
        assert_eq!(
            (hook.on_error, hook.timeout, hook.container),
            (HookErrorMode::Fail, DEFAULT_TIMEOUT, None)
        );
        assert!(hook_from_annotations(&arca, "pre.hook.backup", HookErrorMode::Fail)?.is_none());
        Ok(())
    }

    #[test]
    fn bad_annotations_are_explained() {
        let bad = map(&[
            ("pre.hook.backup.arca.dev/command", "[\"unterminated"),
            ("pre.hook.backup.arca.dev/on-error", "Panic"),
        ]);
        let err =
            hook_from_annotations(&bad, "pre.hook.backup", HookErrorMode::Fail).expect_err("bad");
        assert!(
            err.to_string()
                .starts_with("annotation pre.hook.backup.arca.dev/command: not a JSON array"),
            "{err}"
        );
        let bad = map(&[
            ("pre.hook.backup.arca.dev/command", "x"),
            ("pre.hook.backup.arca.dev/on-error", "Panic"),
        ]);
        let err =
            hook_from_annotations(&bad, "pre.hook.backup", HookErrorMode::Fail).expect_err("bad");
        assert!(
            err.to_string()
                .contains("\"Panic\" is neither Fail nor Continue"),
            "{err}"
        );
        let bad = map(&[
            ("pre.hook.backup.arca.dev/command", "x"),
            ("pre.hook.backup.arca.dev/timeout", "soon"),
        ]);
        assert!(hook_from_annotations(&bad, "pre.hook.backup", HookErrorMode::Fail).is_err());
    }

    #[test]
    fn spec_selection() -> Result<(), String> {
        let selector: LabelSelector =
            serde_json::from_value(serde_json::json!({"matchLabels": {"app": "db"}}))
                .map_err(|e| e.to_string())?;
        let included = vec!["shop-*".to_string()];
        let selection = Selection {
            included_namespaces: &included,
            excluded_namespaces: &[],
            included_resources: &[],
            excluded_resources: &[],
            label_selector: Some(&selector),
        };
        assert!(selection.chooses("shop-eu", &map(&[("app", "db")]))?);
        assert!(!selection.chooses("shop-eu", &map(&[("app", "web")]))?);
        assert!(!selection.chooses("blog", &map(&[("app", "db")]))?);
        let not_pods = vec!["deployments".to_string()];
        let other = Selection {
            included_resources: &not_pods,
            label_selector: None,
            ..selection
        };
        assert!(
            !other.chooses("shop-eu", &map(&[]))?,
            "a hook for other resources never runs"
        );
        Ok(())
    }
}
