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

/// What a `test` operation finds, as Velero's JSON patch library (evanphx/json-patch v5)
/// reads it: a missing key whose parent is there is a value that fails the test (or
/// passes it, when the test expects `null`); a missing parent is an error.
#[derive(Debug, PartialEq, Eq)]
enum Test {
    Holds,
    Fails,
    /// The path's parent is not there.
    Missing,
    /// The last part of the path is not an index of the array it names.
    BadIndex,
}

/// The index `part` names in an array of `len` items (negative counts from the end).
fn index(part: &str, len: usize) -> Option<usize> {
    let i: i64 = part.parse().ok()?;
    let len = i64::try_from(len).ok()?;
    let i = if i < 0 { i + len } else { i };
    (0..len)
        .contains(&i)
        .then(|| usize::try_from(i).ok())
        .flatten()
}

fn test(doc: &Value, path: &str, expected: &Value) -> Test {
    let Some(rest) = path.strip_prefix('/') else {
        return Test::Missing;
    };
    let mut parts: Vec<String> = rest
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let key = parts.pop().unwrap_or_default();
    let mut node = doc;
    for part in &parts {
        let next = match node {
            Value::Object(map) => map.get(part),
            Value::Array(items) => index(part, items.len()).and_then(|i| items.get(i)),
            _ => None,
        };
        node = match next {
            Some(v) if !v.is_null() => v,
            _ => return Test::Missing,
        };
    }
    let found = match node {
        Value::Object(map) => map.get(&key),
        Value::Array(items) => match index(&key, items.len()) {
            Some(i) => items.get(i),
            None => return Test::BadIndex,
        },
        _ => return Test::Missing,
    }
    .filter(|v| !v.is_null());
    match (found, expected.is_null()) {
        (None, true) => Test::Holds,
        (Some(v), false) if v == expected => Test::Holds,
        _ => Test::Fails,
    }
}

/// Whether every test holds on `object`.
pub fn all_hold(object: &Value, tests: &[json_patch::PatchOperation]) -> bool {
    tests.iter().all(|op| match op {
        json_patch::PatchOperation::Test(t) => {
            test(object, t.path.as_str(), &t.value) == Test::Holds
        }
        _ => false,
    })
}

/// Applies `operations` to `object` as one patch: all or nothing. A failed `test` leaves
/// the object as it was and is not an error (Velero's rule, including a test of a missing
/// key); any other failure is.
pub fn apply(object: &mut Value, operations: &[json_patch::PatchOperation]) -> Result<(), String> {
    let mut patched = object.clone();
    for op in operations {
        if let json_patch::PatchOperation::Test(t) = op {
            let path = t.path.as_str();
            match test(&patched, path, &t.value) {
                Test::Holds => continue,
                Test::Fails => return Ok(()),
                Test::Missing => {
                    return Err(format!("JSON patch: test {path}: its parent is missing"));
                }
                Test::BadIndex => {
                    return Err(format!(
                        "JSON patch: test {path}: not an index of the array"
                    ));
                }
            }
        }
        json_patch::patch(&mut patched, std::slice::from_ref(op))
            .map_err(|e| format!("JSON patch: {e}"))?;
    }
    *object = patched;
    Ok(())
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

    fn op(operation: &str, path: &str, value: &str) -> json_patch::PatchOperation {
        JsonPatch {
            operation: operation.into(),
            from: String::new(),
            path: path.into(),
            value: value.into(),
        }
        .to_operation()
        .expect("operation")
    }

    #[test]
    fn a_test_of_a_missing_key_fails_quietly_and_of_a_missing_parent_is_an_error() {
        let cm = json!({"metadata": {"labels": {"app": "web"}}, "data": {"mode": "a", "gone": null}, "list": [1, 2]});
        let mut patched = cm.clone();
        let add = op("add", "/data/added", "yes");
        apply(
            &mut patched,
            &[op("test", "/data/absent", "x"), add.clone()],
        )
        .expect("a failed test, not an error");
        assert_eq!(patched, cm, "nothing changed");
        apply(
            &mut patched,
            &[op("test", "/data/absent", "null"), add.clone()],
        )
        .expect("a missing key is null");
        assert_eq!(patched["data"]["added"], "yes");
        let mut patched = cm.clone();
        apply(
            &mut patched,
            &[op("test", "/data/gone", "null"), add.clone()],
        )
        .expect("null");
        assert_eq!(patched["data"]["added"], "yes");
        let mut patched = cm.clone();
        apply(
            &mut patched,
            &[op("test", "/data/mode", "null"), add.clone()],
        )
        .expect("fails");
        assert_eq!(patched, cm);
        for bad in ["/nothing/here", "/data/mode/deeper", "/list/5"] {
            let mut patched = cm.clone();
            assert!(
                apply(&mut patched, &[op("test", bad, "1"), add.clone()]).is_err(),
                "{bad}"
            );
            assert_eq!(patched, cm);
        }
        let mut patched = cm.clone();
        apply(&mut patched, &[op("test", "/list/-1", "2"), add]).expect("from the end");
        assert_eq!(patched["data"]["added"], "yes");
        assert!(all_hold(
            &cm,
            &[op("test", "/metadata/labels/tier", "null")]
        ));
        assert!(!all_hold(
            &cm,
            &[op("test", "/metadata/labels/tier", "front")]
        ));
        assert!(!all_hold(
            &cm,
            &[op("test", "/metadata/annotations/a", "null")]
        ));
        assert!(all_hold(
            &cm,
            &[
                op("test", "/metadata/labels/app", "web"),
                op("test", "/list/0", "1")
            ]
        ));
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
