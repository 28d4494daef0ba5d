//! deploy/monitoring must agree with the operator: every metric an alert or a dashboard
//! panel queries is one the operator exports, and every alert's runbook exists in
//! docs/runbooks.md.

use std::{collections::BTreeSet, path::PathBuf};

use arca_operator::metrics::Metrics;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `arca_…` names in a PromQL expression, without histogram suffixes.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("arca_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(base.to_string());
        rest = &tail[end..];
    }
    out
}

/// The metric families the operator exports (counters under their `_total` name).
fn exported() -> BTreeSet<String> {
    Metrics::default().names().iter().cloned().collect()
}

fn rules() -> Vec<serde_json::Value> {
    let rule: serde_json::Value =
        serde_yaml::from_str(&read("deploy/monitoring/prometheus-rule.yaml")).expect("yaml");
    assert_eq!(rule["kind"], "PrometheusRule");
    rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn alerts_query_exported_metrics_and_link_existing_runbooks() {
    let exported = exported();
    assert!(exported.contains("arca_backups_total"), "{exported:?}");
    let runbooks = read("docs/runbooks.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let rules = rules();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for wanted in [
        "ArcaScheduleNoRecentSuccess",
        "ArcaBackupFailed",
        "ArcaLocationUnavailable",
    ] {
        assert!(names.contains(wanted), "alert {wanted} is missing");
    }
    for rule in &rules {
        let alert = rule["alert"].as_str().expect("alert name");
        let expr = rule["expr"].as_str().expect("expr");
        let used = metrics_in(expr);
        assert!(!used.is_empty(), "{alert} queries no Arca metric");
        for metric in used {
            assert!(
                exported.contains(&metric),
                "{alert} queries {metric}, which the operator does not export"
            );
        }
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
        let anchor = url
            .rsplit_once("docs/runbooks.md#")
            .expect("a runbooks.md anchor")
            .1;
        assert!(
            anchors.contains(anchor),
            "{alert}: docs/runbooks.md has no section `## {alert}`"
        );
    }
}

#[test]
fn dashboard_panels_query_exported_metrics() {
    let exported = exported();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json")).expect("json");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 5);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let used = metrics_in(expr);
            assert!(!used.is_empty(), "{}: no Arca metric", panel["title"]);
            for metric in used {
                assert!(
                    exported.contains(&metric),
                    "panel {} queries {metric}, which the operator does not export",
                    panel["title"]
                );
            }
        }
    }
}
