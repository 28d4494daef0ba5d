//! Arca's resource modifiers do what Velero's do: one ConfigMap of rules (Velero's format,
//! `version: v1`), given to real Velero v1.18.3 and to Arca, restoring the same namespace
//! of the same cluster into two others; the two copies are compared object by object.
//!
//! The rules exercise each kind of patch (JSON patch with test, replace, add and remove;
//! merge patch; strategic merge patch, containers merged by name) and each condition
//! (groupResource globs, resourceNameRegex, namespaces, labelSelector, matches). Each kind
//! of patch changes at least one object, and the objects no rule chooses stay as they were,
//! so the comparison cannot hold vacuously.

use std::{collections::BTreeMap, time::Duration};

use arca_e2e::{
    TestEnv, kubectl, kubectl_apply,
    operator::{Operator, backup_done, restore_done, run_arca, s3_location, settings, succeeded},
    scenario::{assert_completed, assert_restored},
    snapshot,
};
use serde_json::Value;

use arca_e2e::velero::{VELERO_NS, Velero, VeleroCluster};

/// What is compared: the application's own objects.
const TYPES: &str = "configmaps,deployments.apps,services";

/// The source namespace's objects (`SRC` is its name).
const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings-a, namespace: SRC, labels: {app: web, tier: config}}
data: {mode: original, level: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings-b, namespace: SRC, labels: {app: db, tier: config}}
data: {mode: original}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings-c, namespace: SRC, labels: {app: web, tier: other}}
data: {mode: original}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other, namespace: SRC}
data: {mode: original, obsolete: "yes"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: SRC, labels: {tier: front}}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "nginx:1.25", env: [{name: A, value: "1"}]}
      - {name: log, image: "busybox:1"}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: SRC, labels: {app: web, tier: front}}
spec: {selector: {app: web}, ports: [{port: 80}]}
"#;

/// The rules, word for word the same for Velero and for Arca.
const RULES: &str = r#"
version: v1
resourceModifierRules:
# 1. JSON patch: a test that holds, then replace, add (a quoted number stays a string;
#    JSON is parsed) and remove.
- conditions:
    groupResource: configmaps
    resourceNameRegex: "^other$"
  patches:
  - {operation: test, path: /data/mode, value: original}
  - {operation: replace, path: /data/mode, value: json}
  - {operation: add, path: /data/count, value: '"3"'}
  - {operation: remove, path: /data/obsolete}
  - {operation: add, path: /metadata/annotations, value: '{"patched-by": "json"}'}
# 2. Merge patch, where a name regex, a namespace glob and a label selector all hold
#    (settings-a; not settings-b, app: db, nor settings-c, tier: other).
- conditions:
    groupResource: configmaps
    resourceNameRegex: "^settings-"
    namespaces: ["vmod-*"]
    labelSelector:
      matchLabels: {app: web}
      matchExpressions: [{key: tier, operator: In, values: [config, cache]}]
  mergePatches:
  - patchData: |
      metadata: {labels: {merged: "yes", tier: null}}
      data: {mode: merged, level: null}
# 3. Strategic merge patch on any kind of group apps whose tier label is front: the web
#    container merged by name (the log container and env A stay).
- conditions:
    groupResource: "*.apps"
    matches: [{path: /metadata/labels/tier, value: front}]
  strategicPatches:
  - patchData: |
      spec:
        template:
          spec:
            containers:
            - name: web
              image: "nginx:1.27"
              env: [{name: B, value: "2"}]
# 4. JSON patch on services (a brace glob), tested on the port as a number.
- conditions:
    groupResource: "{services,secrets}"
    labelSelector: {matchLabels: {app: web}}
  patches:
  - {operation: test, path: /spec/ports/0/port, value: "80"}
  - {operation: add, path: /metadata/labels/patched, value: json}
  - {operation: add, path: /spec/ports/0/name, value: http}
# 5. A test of a key the item lacks fails: the rule leaves settings-b as it was, no error.
- conditions: {groupResource: configmaps, resourceNameRegex: "^settings-b$"}
  patches:
  - {operation: test, path: /data/absent, value: x}
  - {operation: add, path: /data/never, value: x}
# 6. A failing test leaves the item as it was (the port is 80).
- conditions: {groupResource: services}
  patches:
  - {operation: test, path: /spec/ports/0/port, value: "8080"}
  - {operation: add, path: /metadata/labels/never, value: x}
# 7. Rules that choose nothing: another namespace (Velero never patches Namespace items,
#    which `*` and their empty namespace would match otherwise); a label no item has.
- conditions: {groupResource: "*", namespaces: [elsewhere]}
  mergePatches: [{patchData: '{"metadata": {"labels": {"wrong": "namespace"}}}'}]
- conditions: {groupResource: "**", labelSelector: {matchLabels: {nobody: here}}}
  mergePatches: [{patchData: '{"metadata": {"labels": {"wrong": "labels"}}}'}]
# 8. Conditions see the item as backed up, not as rule 2 left it.
- conditions:
    groupResource: configmaps
    resourceNameRegex: "^settings-a$"
    matches: [{path: /data/mode, value: original}]
  mergePatches:
  - patchData: '{"data": {"seen": "original"}}'
"#;

/// The rules ConfigMap `name` in `namespace`.
fn rules_config_map(namespace: &str, name: &str) -> String {
    let indented: String = RULES.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\ndata:\n  rules.yaml: |\n{indented}"
    )
}

/// The application's objects in `namespace`, keyed `kind/name`, normalized as the other
/// tests compare them, without the labels Velero's restores add.
fn restored(env: &TestEnv, namespace: &str) -> BTreeMap<String, Value> {
    let mut objects = snapshot(env, Some(namespace), TYPES);
    objects.remove("ConfigMap/kube-root-ca.crt");
    for object in objects.values_mut() {
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        // The Deployment controller's count of rollouts: Velero restores the backed-up
        // ReplicaSet too (a second rollout follows once the template is patched), Arca
        // lets the controller make it (one).
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("deployment.kubernetes.io/revision");
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove("velero.io/backup-name");
            labels.remove("velero.io/restore-name");
            if labels.is_empty() {
                meta.remove("labels");
            }
        }
    }
    objects
}

/// The labels and annotations of Namespace `name`, without those the restores add and
/// the one the apiserver sets from its name.
fn namespace_meta(env: &TestEnv, name: &str) -> Value {
    let namespace: Value =
        serde_json::from_str(&kubectl(env, &["get", "namespace", name, "-o", "json"]))
            .expect("namespace as JSON");
    let mut labels = namespace["metadata"]["labels"].clone();
    if let Some(labels) = labels.as_object_mut() {
        labels.retain(|k, _| {
            k != "kubernetes.io/metadata.name"
                && !k.starts_with("velero.io/")
                && !k.starts_with("arca.dev/")
        });
    }
    serde_json::json!({"labels": labels, "annotations": namespace["metadata"]["annotations"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_modifiers_do_what_veleros_do() {
    let suffix = format!("{:08x}", rand::random::<u32>());
    let mut velero = Velero::start(VeleroCluster::up("vmod", &suffix).await, &suffix).await;
    let env = velero.env();
    let src = format!("vmod-{suffix}");
    let by_velero = format!("{src}-velero");
    let by_arca = format!("{src}-arca");
    kubectl(&env, &["create", "namespace", &src]);
    kubectl(&env, &["label", "namespace", &src, "team=shop"]);
    kubectl_apply(&env, &APP.replace("SRC", &src));
    let source = restored(&env, &src);
    assert_eq!(source.len(), 6, "{:?}", source.keys());

    // Velero: a backup, then a restore with the rules into a namespace of its own.
    let backup = format!("vmod-{suffix}");
    velero.cli(&[
        "backup",
        "create",
        &backup,
        "--include-namespaces",
        &src,
        "--snapshot-volumes=false",
    ]);
    velero
        .completed("backups", &backup, Duration::from_secs(180))
        .await;
    kubectl_apply(&env, &rules_config_map(VELERO_NS, "modifiers"));
    velero.cli(&[
        "restore",
        "create",
        "modified",
        "--from-backup",
        &backup,
        "--namespace-mappings",
        &format!("{src}:{by_velero}"),
        "--resource-modifier-configmap",
        "modifiers",
    ]);
    velero
        .completed("restores", "modified", Duration::from_secs(180))
        .await;
    let Velero { server, .. } = velero;
    server.stop().await;

    // Arca, in the same cluster: its CRDs, a namespace with a location on the same S3
    // server (another prefix) and the rules, an operator; a backup of the same namespace,
    // and a restore with the same flags.
    let arca = format!("arca-{suffix}");
    kubectl(&env, &["create", "namespace", &arca]);
    let client = env.client().await.expect("client");
    s3_location(&env, &client, &arca, "default", &format!("arca-{suffix}")).await;
    let operator = Operator::start(&env, settings(&arca)).await;
    kubectl_apply(
        &env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: {backup}, namespace: {arca}}}\nspec: {{includedNamespaces: [{src}]}}\n"
        ),
    );
    assert_completed(&backup_done(&client, &arca, &backup, Duration::from_secs(120)).await);
    kubectl_apply(&env, &rules_config_map(&arca, "modifiers"));
    succeeded(&run_arca(
        &env,
        &arca,
        &[
            "restore",
            "create",
            "modified",
            "--from-backup",
            &backup,
            "--namespace-mappings",
            &format!("{src}:{by_arca}"),
            "--resource-modifier-configmap",
            "modifiers",
        ],
    ));
    assert_restored(&restore_done(&client, &arca, "modified", Duration::from_secs(120)).await);
    operator.stop().await;

    // The two copies, object by object.
    let velero_copy = restored(&env, &by_velero);
    let arca_copy = restored(&env, &by_arca);
    assert_eq!(
        velero_copy.keys().collect::<Vec<_>>(),
        source.keys().collect::<Vec<_>>(),
        "Velero restored the application"
    );
    assert_eq!(
        arca_copy.keys().collect::<Vec<_>>(),
        velero_copy.keys().collect::<Vec<_>>(),
        "Arca restored what Velero did"
    );
    for (key, theirs) in &velero_copy {
        assert_eq!(
            &arca_copy[key], theirs,
            "{key}: Arca's copy (left) differs from Velero's (right)"
        );
    }

    assert_eq!(
        namespace_meta(&env, &by_arca),
        namespace_meta(&env, &by_velero),
        "the namespaces: Arca's (left), Velero's (right)"
    );
    assert_eq!(
        namespace_meta(&env, &by_velero),
        serde_json::json!({"labels": {"team": "shop"}, "annotations": null})
    );

    // Not vacuous: what each kind of patch did, and what no rule chose.
    let changed = |key: &str| velero_copy[key] != source[key];
    for key in [
        "ConfigMap/other",      // JSON patch
        "ConfigMap/settings-a", // merge patch
        "Deployment/web",       // strategic merge patch
        "Service/web",          // JSON patch
    ] {
        assert!(changed(key), "{key} is as it was: {}", velero_copy[key]);
    }
    for key in ["ConfigMap/settings-b", "ConfigMap/settings-c"] {
        assert!(!changed(key), "{key} changed: {}", velero_copy[key]);
    }
    let other = &velero_copy["ConfigMap/other"];
    assert_eq!(
        other["data"],
        serde_json::json!({"mode": "json", "count": "3"})
    );
    assert_eq!(
        other["metadata"]["annotations"],
        serde_json::json!({"patched-by": "json"})
    );
    let settings_a = &velero_copy["ConfigMap/settings-a"];
    assert_eq!(
        settings_a["data"],
        serde_json::json!({"mode": "merged", "seen": "original"})
    );
    assert_eq!(
        settings_a["metadata"]["labels"],
        serde_json::json!({"app": "web", "merged": "yes"})
    );
    let containers = &velero_copy["Deployment/web"]["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx:1.27");
    assert_eq!(
        containers[0]["env"],
        serde_json::json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]),
        "merged by name, in Kubernetes' order: the patch's new element first"
    );
    assert_eq!(containers[1]["image"], "busybox:1");
    let service = &velero_copy["Service/web"];
    assert_eq!(
        service["metadata"]["labels"],
        serde_json::json!({"app": "web", "tier": "front", "patched": "json"})
    );
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
}
