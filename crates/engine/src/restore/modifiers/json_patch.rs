//! Velero's JSON patches (RFC 6902) and match rules: each `value` is a string, read as
//! Velero reads it (`"3"` a number, `"true"` a boolean, `"{...}"`/`"[...]"` JSON, `"null"`,
//! `"\"3\""` the string `3`, anything else a string).

use serde::Deserialize;
use serde_json::{Value, json};

/// One operation as the ConfigMap gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonPatch {
    /// add, remove, replace, copy, move or test.
    pub operation: String,
    #[serde(default)]
    pub from: String,
    pub path: String,
    #[serde(default)]
    pub value: String,
}

/// A `matches` condition: the value at `path` equals `value`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchRule {
    pub path: String,
    #[serde(default)]
    pub value: String,
}

const OPERATIONS: &[&str] = &["add", "remove", "replace", "copy", "move", "test"];

/// Velero's reading of a patch value.
pub fn value_of(text: &str) -> Result<Value, String> {
    if text.is_empty() {
        return Ok(Value::String(String::new()));
    }
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        return Ok(Value::String(text[1..text.len() - 1].to_string()));
    }
    match text.to_ascii_lowercase().as_str() {
        "null" if text == "null" => return Ok(Value::Null),
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if text.starts_with(['{', '[']) {
        return serde_json::from_str(text)
            .map_err(|e| format!("value {text:?} starts like JSON but is not: {e}"));
    }
    if let Ok(n) = serde_json::from_str::<serde_json::Number>(text) {
        return Ok(Value::Number(n));
    }
    Ok(Value::String(text.to_string()))
}

impl JsonPatch {
    /// The operation as RFC 6902 writes it; refuses an unknown operation or an empty path.
    pub fn to_operation(&self) -> Result<json_patch::PatchOperation, String> {
        let op = self.operation.to_ascii_lowercase();
        if !OPERATIONS.contains(&op.as_str()) {
            return Err(format!(
                "patch operation {:?} is not one of {}",
                self.operation,
                OPERATIONS.join(", ")
            ));
        }
        if self.path.is_empty() {
            return Err(format!("a {op} patch has no path"));
        }
        let mut operation = json!({"op": op, "path": self.path});
        match op.as_str() {
            "copy" | "move" => operation["from"] = Value::String(self.from.clone()),
            "remove" => {}
            _ => operation["value"] = value_of(&self.value)?,
        }
        serde_json::from_value(operation)
            .map_err(|e| format!("patch {} {}: {e}", self.operation, self.path))
    }
}

/// The `test` operations of a rule's `matches`.
pub fn tests_of(rules: &[MatchRule]) -> Result<Vec<json_patch::PatchOperation>, String> {
    rules
        .iter()
        .map(|r| {
            if r.path.is_empty() {
                return Err("a match rule has no path".to_string());
            }
            JsonPatch {
                operation: "test".into(),
                from: String::new(),
                path: r.path.clone(),
                value: r.value.clone(),
            }
            .to_operation()
        })
        .collect()
}

/// Whether every test holds on `object` (a missing path does not).
pub fn all_hold(object: &Value, tests: &[json_patch::PatchOperation]) -> bool {
    let mut copy = object.clone();
    json_patch::patch(&mut copy, tests).is_ok()
}

/// Applies `operations` to `object` as one patch: all or nothing. A failed `test` leaves
/// the object as it was and is not an error (Velero's rule); any other failure is.
pub fn apply(object: &mut Value, operations: &[json_patch::PatchOperation]) -> Result<(), String> {
    match json_patch::patch(object, operations) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) => Ok(()),
        Err(e) => Err(format!("JSON patch: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_velero_reads_them() {
        assert_eq!(value_of("3").ok(), Some(json!(3)));
        assert_eq!(value_of("1.5").ok(), Some(json!(1.5)));
        assert_eq!(value_of("\"3\"").ok(), Some(json!("3")));
        assert_eq!(value_of("True").ok(), Some(json!(true)));
        assert_eq!(value_of("null").ok(), Some(Value::Null));
        assert_eq!(value_of("").ok(), Some(json!("")));
        assert_eq!(value_of("premium-rwo").ok(), Some(json!("premium-rwo")));
        assert_eq!(value_of("{\"a\": [1]}").ok(), Some(json!({"a": [1]})));
        assert!(value_of("{not json").is_err());
    }

    #[test]
    fn operations_apply_atomically_and_a_failed_test_changes_nothing() {
        let mut pvc = json!({"spec": {"storageClassName": "gp2", "resources": {"requests": {"storage": "1Gi"}}}});
        let ops: Vec<_> = [
            ("test", "/spec/storageClassName", "gp2"),
            ("replace", "/spec/storageClassName", "premium"),
            ("add", "/metadata", "{}"),
        ]
        .iter()
        .map(|(op, path, value)| {
            JsonPatch {
                operation: op.to_string(),
                from: String::new(),
                path: path.to_string(),
                value: value.to_string(),
            }
            .to_operation()
            .expect("operation")
        })
        .collect();
        apply(&mut pvc, &ops).expect("applied");
        assert_eq!(pvc["spec"]["storageClassName"], "premium");
        let before = pvc.clone();
        apply(&mut pvc, &ops).expect("a failed test is not an error");
        assert_eq!(pvc, before, "nothing changed");
        let missing = JsonPatch {
            operation: "Replace".into(),
            path: "/spec/nothing/here".into(),
            value: "1".into(),
            ..Default::default()
        }
        .to_operation()
        .expect("op");
        assert!(apply(&mut pvc, &[missing]).is_err());
        assert_eq!(pvc, before);
    }

    #[test]
    fn unknown_operations_and_empty_paths_are_refused() {
        let bad = JsonPatch {
            operation: "merge".into(),
            path: "/a".into(),
            ..Default::default()
        };
        assert!(
            bad.to_operation()
                .expect_err("refused")
                .contains("not one of")
        );
        let empty = JsonPatch {
            operation: "remove".into(),
            ..Default::default()
        };
        assert!(
            empty
                .to_operation()
                .expect_err("refused")
                .contains("no path")
        );
        assert!(tests_of(&[MatchRule::default()]).is_err());
    }
}
