//! The CRD reference (docs/reference/crds.md), generated from the same schemas the
//! apiserver gets: every field with its type and its `///` doc, and the admission rules.

use std::fmt::Write as _;

use serde_json::Value;

use crate::all_crds;

/// The whole reference as Markdown.
pub fn render_reference() -> String {
    let mut out = String::from(
        "# CRD reference\n\n\
         Generated from the Rust types in `crates/api` by `make crds` (`arca crd --reference`);\n\
         a test fails when this file is stale. `kubectl explain <kind>.<field>` shows the same\n\
         descriptions. Every resource is namespaced, in group `arca.dev`, version `v1alpha1`.\n",
    );
    for crd in all_crds() {
        let Ok(crd) = serde_json::to_value(&crd) else {
            continue;
        };
        let names = &crd["spec"]["names"];
        let kind = names["kind"].as_str().unwrap_or_default();
        let _ = write!(
            out,
            "\n## {kind}\n\n`{}` ({}), scope {}",
            crd["metadata"]["name"].as_str().unwrap_or_default(),
            names["plural"].as_str().unwrap_or_default(),
            crd["spec"]["scope"].as_str().unwrap_or_default(),
        );
        if let Some(short) = names["shortNames"].as_array() {
            let short: Vec<&str> = short.iter().filter_map(Value::as_str).collect();
            let _ = write!(out, ", short names `{}`", short.join("`, `"));
        }
        out.push_str(".\n");
        let Some(version) = crd["spec"]["versions"].get(0) else {
            continue;
        };
        let schema = &version["schema"]["openAPIV3Schema"];
        if let Some(description) = schema["description"].as_str() {
            let _ = write!(out, "\n{}\n", one_line(description));
        }
        if let Some(columns) = version["additionalPrinterColumns"].as_array() {
            let names: Vec<&str> = columns.iter().filter_map(|c| c["name"].as_str()).collect();
            let _ = write!(out, "\n`kubectl get` columns: {}.\n", names.join(", "));
        }
        let mut rules = Vec::new();
        let mut rows = Vec::new();
        for part in ["spec", "status"] {
            if let Some(sub) = schema["properties"].get(part) {
                collect_rules(part, sub, &mut rules);
                fields(part, sub, &mut rows);
            }
        }
        if !rules.is_empty() {
            out.push_str("\nRefused at admission:\n");
            for (path, message) in rules {
                let _ = writeln!(out, "- `{path}`: {message}");
            }
        }
        out.push_str("\n| Field | Type | Description |\n|---|---|---|\n");
        for (path, ty, description) in rows {
            let _ = writeln!(out, "| `{path}` | {ty} | {} |", cell(&description));
        }
    }
    out
}

/// One row per field, depth first, in the schema's (alphabetical) order.
fn fields(path: &str, schema: &Value, rows: &mut Vec<(String, String, String)>) {
    let description = schema["description"].as_str().unwrap_or_default();
    rows.push((path.to_string(), type_of(schema), description.to_string()));
    if let Some(props) = schema["properties"].as_object() {
        for (name, sub) in props {
            fields(&format!("{path}.{name}"), sub, rows);
        }
    } else if let Some(props) = schema
        .get("items")
        .and_then(|items| items["properties"].as_object())
    {
        for (name, sub) in props {
            fields(&format!("{path}[].{name}"), sub, rows);
        }
    }
}

fn collect_rules(path: &str, schema: &Value, rules: &mut Vec<(String, String)>) {
    if let Some(list) = schema["x-kubernetes-validations"].as_array() {
        for rule in list {
            let message = rule["message"]
                .as_str()
                .or_else(|| rule["rule"].as_str())
                .unwrap_or_default();
            rules.push((path.to_string(), message.to_string()));
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, sub) in props {
            collect_rules(&format!("{path}.{name}"), sub, rules);
        }
    }
    if let Some(items) = schema.get("items") {
        collect_rules(&format!("{path}[]"), items, rules);
    }
}

fn type_of(schema: &Value) -> String {
    let base =
        schema["type"]
            .as_str()
            .unwrap_or(if schema.get("x-kubernetes-int-or-string").is_some() {
                "int-or-string"
            } else {
                "object"
            });
    let mut ty = match base {
        "array" => format!("[]{}", type_of(&schema["items"])),
        "object" if schema["additionalProperties"].is_object() => {
            format!("map[string]{}", type_of(&schema["additionalProperties"]))
        }
        other => other.to_string(),
    };
    if let Some(format) = schema["format"].as_str() {
        let _ = write!(ty, " ({format})");
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| format!("`{v}`"))
            .collect();
        if !values.is_empty() {
            let _ = write!(ty, ": {}", values.join(", "));
        }
    }
    ty
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_a_known_field_are_there() {
        let text = render_reference();
        for kind in ["BackupStorageLocation", "Backup", "Restore", "Schedule"] {
            assert!(text.contains(&format!("\n## {kind}\n")), "{kind}");
        }
        assert!(
            text.contains("| `spec.includedNamespaces` | []string |"),
            "{text}"
        );
        assert!(text.contains("Refused at admission:"));
    }
}
