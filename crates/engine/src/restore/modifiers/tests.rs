//! The rules of Velero's documentation, on the items they are written for.

use serde_json::json;

use super::*;

fn pvc(ns: &str, name: &str, class: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "db"}},
        "spec": {"storageClassName": class, "resources": {"requests": {"storage": "1Gi"}}}})
}

#[test]
fn a_storage_class_is_changed_where_every_condition_holds() {
    let rules = ResourceModifiers::parse(
        r#"
version: v1
resourceModifierRules:
- conditions:
    groupResource: persistentvolumeclaims
    resourceNameRegex: "^data-.*"
    namespaces: [shop, "team-*"]
    labelSelector: {matchLabels: {app: db}}
    matches:
    - path: /spec/storageClassName
      value: gp2
  patches:
  - operation: replace
    path: /spec/storageClassName
    value: premium-rwo
"#,
    )
    .expect("rules");
    let mut hit = pvc("team-a", "data-0", "gp2");
    assert_eq!(rules.apply("persistentvolumeclaims", &mut hit), Ok(1));
    assert_eq!(hit["spec"]["storageClassName"], "premium-rwo");
    for (gr, mut miss) in [
        ("persistentvolumeclaims", pvc("other", "data-0", "gp2")),
        ("persistentvolumeclaims", pvc("shop", "logs-0", "gp2")),
        ("persistentvolumeclaims", pvc("shop", "data-0", "standard")),
        ("configmaps", pvc("shop", "data-0", "gp2")),
    ] {
        let before = miss.clone();
        assert_eq!(rules.apply(gr, &mut miss), Ok(0));
        assert_eq!(miss, before);
    }
}

#[test]
fn rules_match_the_original_and_apply_in_turn() {
    let rules = ResourceModifiers::parse(
        r#"
version: v1
resourceModifierRules:
- conditions: {groupResource: deployments.apps}
  mergePatches:
  - patchData: |
      metadata: {labels: {restored: "yes", tier: null}}
- conditions:
    groupResource: "*.apps"
    matches: [{path: /metadata/labels/tier, value: front}]
  strategicPatches:
  - patchData: '{"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}'
"#,
    )
    .expect("rules");
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "front"}},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "log", "image": "x"}]}}}});
    assert_eq!(
        rules.apply("deployments.apps", &mut d),
        Ok(2),
        "the second rule sees the original's tier"
    );
    assert_eq!(d["metadata"]["labels"], json!({"restored": "yes"}));
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][1]["name"],
        "log"
    );
}

#[test]
fn strategic_patches_refuse_custom_resources() {
    let rules = ResourceModifiers::parse(
        "version: v1\nresourceModifierRules:\n- conditions: {groupResource: '**'}\n  strategicPatches: [{patchData: '{\"spec\": {\"a\": 1}}'}]\n",
    )
    .expect("rules");
    let mut widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}});
    let before = widget.clone();
    let error = rules
        .apply("widgets.example.com", &mut widget)
        .expect_err("refused");
    assert!(
        error.contains("rule 1") && error.contains("use mergePatches"),
        "{error}"
    );
    assert_eq!(widget, before);
}

#[test]
fn bad_rules_are_all_reported_with_the_fix() {
    let problems = ResourceModifiers::parse(
        r#"
version: v1
resourceModifierRules:
- conditions: {groupResource: ""}
  patches: [{operation: add, path: /a, value: "1"}]
- conditions: {groupResource: pods, resourceNameRegex: "(unclosed"}
  patches: [{operation: add, path: /a, value: "1"}]
- conditions: {groupResource: pods}
  patches: [{operation: add, path: /a, value: "1"}]
  mergePatches: [{patchData: "a: 1"}]
- conditions: {groupResource: pods}
- conditions: {groupResource: pods}
  patches: [{operation: explode, path: /a}]
"#,
    )
    .expect_err("invalid");
    let all = problems.join("\n");
    assert_eq!(problems.len(), 5, "{all}");
    assert!(
        all.contains("rule 1: conditions.groupResource is empty"),
        "{all}"
    );
    assert!(all.contains("rule 2: resourceNameRegex"), "{all}");
    assert!(all.contains("rule 3: only one of"), "{all}");
    assert!(all.contains("rule 4: no patches"), "{all}");
    assert!(all.contains("rule 5: patch operation \"explode\""), "{all}");

    for (text, says) in [
        (
            "version: v2\nresourceModifierRules: []",
            "write `version: v1`",
        ),
        (
            "version: v1\nresourceModifierRules: []",
            "at least one rule",
        ),
        ("version: v1\nresourceModifiers: []", "unknown field"),
        ("- not a map", "not valid resource modifier rules"),
    ] {
        let problems = ResourceModifiers::parse(text).expect_err(text);
        assert!(problems[0].contains(says), "{text}: {problems:?}");
    }
    let problems = ResourceModifiers::from_config_map("mods", "version: v2").expect_err("v2");
    assert!(
        problems[0].starts_with("resource modifiers ConfigMap mods: version"),
        "{problems:?}"
    );
}

#[test]
fn a_patch_that_cannot_apply_is_an_error_naming_the_rule() {
    let rules = ResourceModifiers::parse(
        "version: v1\nresourceModifierRules:\n- conditions: {groupResource: persistentvolumeclaims}\n  patches: [{operation: remove, path: /spec/volumeMode}]\n",
    )
    .expect("rules");
    let mut claim = pvc("shop", "data-0", "gp2");
    let before = claim.clone();
    let error = rules
        .apply("persistentvolumeclaims", &mut claim)
        .expect_err("no such path");
    assert!(
        error.starts_with("resource modifier rule 1: JSON patch"),
        "{error}"
    );
    assert_eq!(claim, before);
}

#[test]
fn no_rule_may_move_an_item_to_another_namespace_name_or_kind() {
    for (path, value) in [
        ("/metadata/namespace", "kube-system"),
        ("/metadata/name", "elsewhere"),
        ("/kind", "Secret"),
        ("/apiVersion", "v2"),
    ] {
        let rules = ResourceModifiers::parse(&format!(
            "version: v1\nresourceModifierRules:\n- conditions: {{groupResource: persistentvolumeclaims}}\n  patches: [{{operation: replace, path: {path}, value: {value}}}]\n"
        ))
        .expect("rules");
        let mut claim = pvc("shop", "data-0", "gp2");
        let before = claim.clone();
        let error = rules
            .apply("persistentvolumeclaims", &mut claim)
            .expect_err("refused");
        assert!(error.contains("may not change"), "{path}: {error}");
        assert_eq!(claim, before, "{path}: the item is left as it was");
    }
    let rules = ResourceModifiers::parse(
        "version: v1\nresourceModifierRules:\n- conditions: {groupResource: persistentvolumeclaims}\n  mergePatches: [{patchData: 'metadata: null'}]\n",
    )
    .expect("rules");
    let mut claim = pvc("shop", "data-0", "gp2");
    assert!(
        rules.apply("persistentvolumeclaims", &mut claim).is_err(),
        "metadata removed"
    );
}

#[test]
fn namespaces_are_never_patched_as_velero_makes_them_outside_its_rules() {
    let rules = ResourceModifiers::parse(
        "version: v1\nresourceModifierRules:\n- conditions: {groupResource: '*', namespaces: [elsewhere]}\n  mergePatches: [{patchData: '{\"metadata\": {\"labels\": {\"patched\": \"yes\"}}}'}]\n- conditions: {groupResource: namespaces}\n  patches: [{operation: remove, path: /spec/nothing}]\n",
    )
    .expect("rules");
    let mut namespace = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"team": "a"}}});
    let before = namespace.clone();
    assert_eq!(rules.apply("namespaces", &mut namespace), Ok(0));
    assert_eq!(namespace, before);
    let mut volume = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv-1"}});
    assert_eq!(
        rules.apply("persistentvolumes", &mut volume),
        Ok(1),
        "other cluster-scoped items are, whatever the rule's namespaces"
    );
    assert_eq!(volume["metadata"]["labels"]["patched"], "yes");
}
