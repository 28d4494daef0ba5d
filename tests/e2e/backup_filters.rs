//! Velero's filter semantics, checked against what lands in the bucket.

use std::{collections::BTreeSet, time::Duration};

use arca_api::BackupPhase;
use arca_e2e::{
    eventually, index_of, kubectl, kubectl_apply,
    operator::phase_of_backup,
    scenario::{Scenario, assert_completed},
};

fn names(index: &[arca_store::archive::IndexEntry], namespace: &str) -> BTreeSet<String> {
    index
        .iter()
        .filter(|e| e.namespace.as_deref() == Some(namespace))
        .map(|e| format!("{}/{}", e.group_resource(), e.name))
        .collect()
}

/// Waits until pod `name` is on a node: a backup reads its volumes only then.
async fn scheduled(env: &arca_e2e::TestEnv, ns: &str, name: &str) {
    eventually(
        &format!("pod {name} to be scheduled"),
        Duration::from_secs(60),
        || async {
            (!kubectl(
                env,
                &[
                    "get",
                    "pod",
                    name,
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.spec.nodeName}",
                ],
            )
            .is_empty())
            .then_some(())
        },
    )
    .await;
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_what_is_backed_up() {
    let scenario = Scenario::start("filters").await;
    let (env, _, _, app, prefix) = scenario.parts();
    let twin = scenario.namespace("filters").await;
    let ns = &app.name;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: a, namespace: {ns}, labels: {{app: a}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: b, namespace: {ns}, labels: {{app: b, tier: x}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: c, namespace: {ns}, labels: {{arca.dev/exclude-from-backup: "true"}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: d, namespace: {ns}, labels: {{velero.io/exclude-from-backup: "true"}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: s, namespace: {ns}, labels: {{app: a}}}}
stringData: {{k: v}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: nginx}}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: twin, namespace: {twin}}}
"#,
            twin = twin.name
        ),
    );
    let backups = [
        (
            "only-configmaps",
            format!("{{includedNamespaces: [{ns}], includedResources: [cm]}}"),
        ),
        (
            "short-and-grouped",
            format!("{{includedNamespaces: [{ns}], includedResources: [deploy, secrets]}}"),
        ),
        (
            "no-config",
            format!(
                "{{includedNamespaces: [{ns}], excludedResources: [configmaps, secrets, serviceaccounts]}}"
            ),
        ),
        (
            "label-a",
            format!("{{includedNamespaces: [{ns}], labelSelector: {{matchLabels: {{app: a}}}}}}"),
        ),
        (
            "a-or-x",
            format!(
                "{{includedNamespaces: [{ns}], orLabelSelectors: [{{matchLabels: {{app: a}}}}, {{matchExpressions: [{{key: tier, operator: In, values: [x]}}]}}]}}"
            ),
        ),
        (
            "glob",
            format!(
                "{{includedNamespaces: ['filters-*'], excludedNamespaces: [{ns}], includedResources: [configmaps]}}"
            ),
        ),
    ];
    for (name, spec) in &backups {
        scenario.apply_backup(name, spec);
    }
    for (name, _) in &backups {
        assert_completed(&scenario.backup_done(name).await);
    }
    let only_cm = index_of(env, &prefix.prefix, "only-configmaps").await;
    assert_eq!(
        names(&only_cm, ns),
        set(&[
            "configmaps/a",
            "configmaps/b",
            "configmaps/kube-root-ca.crt"
        ]),
        "excluded by either label: c and d"
    );
    assert!(
        only_cm
            .iter()
            .any(|e| e.resource == "namespaces" && e.name == *ns),
        "the namespace itself comes along"
    );

    let grouped = index_of(env, &prefix.prefix, "short-and-grouped").await;
    assert_eq!(
        names(&grouped, ns),
        set(&["deployments.apps/web", "secrets/s"])
    );

    let no_config = names(&index_of(env, &prefix.prefix, "no-config").await, ns);
    assert!(no_config.contains("deployments.apps/web"));
    assert!(
        !no_config
            .iter()
            .any(|n| n.starts_with("configmaps/") || n.starts_with("secrets/")),
        "{no_config:?}"
    );

    assert_eq!(
        names(&index_of(env, &prefix.prefix, "label-a").await, ns),
        set(&["configmaps/a", "secrets/s"])
    );
    assert_eq!(
        names(&index_of(env, &prefix.prefix, "a-or-x").await, ns),
        set(&["configmaps/a", "configmaps/b", "secrets/s"])
    );

    let glob = index_of(env, &prefix.prefix, "glob").await;
    assert!(names(&glob, ns).is_empty(), "excluded namespace");
    assert!(
        names(&glob, &twin.name).contains("configmaps/twin"),
        "matched by the glob"
    );
    scenario.stop().await;
}

/// With no node agent running, a pod asking for its volumes' data must not end in a silent
/// "Completed": the backup waits `--fs-backup-timeout`, then names the pod, the volume and
/// the missing agent. The configMap volume asked for is never taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_data_with_no_agent_is_an_error_naming_the_volume() {
    let scenario =
        Scenario::start_with("volumes", |s| s.fs_backup_timeout = Duration::from_secs(5)).await;
    let (env, _, _, app, prefix) = scenario.parts();
    let ns = &app.name;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: db
  namespace: {ns}
  annotations: {{backup.velero.io/backup-volumes: "data,conf"}}
spec:
  containers: [{{name: db, image: db}}]
  volumes:
  - {{name: data, emptyDir: {{}}}}
  - {{name: conf, configMap: {{name: settings}}}}
"#
        ),
    );
    scheduled(env, ns, "db").await;
    let backup = scenario.backup("vols", &scenario.app_spec()).await;
    let status = backup.status.clone().unwrap_or_default();
    assert_eq!(phase_of_backup(&backup), BackupPhase::PartiallyFailed);
    assert_eq!(status.errors, 1, "{status:?}");
    let store = arca_e2e::store(env, &prefix.prefix).await;
    let results = store
        .get(&arca_store::Layout::backup_results("vols"))
        .await
        .expect("results.json");
    let results = String::from_utf8_lossy(&results);
    assert!(
        results.contains(&format!("pod {ns}/db volume data: still New after 5s"))
            && results.contains("is the node agent running"),
        "{results}"
    );
    assert!(!results.contains("volume conf"), "{results}");
    scenario.stop().await;
}

/// A Backup's resource policies (Velero's ConfigMap): the first matching policy decides over
/// the pod's annotations: a claim of storage class `fast` is taken though not annotated, the
/// annotated emptyDir volumes are skipped. Bad policies fail validation, naming the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_policies_choose_the_volumes_over_annotations() {
    let scenario =
        Scenario::start_with("policies", |s| s.fs_backup_timeout = Duration::from_secs(5)).await;
    let (env, _, arca, app, prefix) = scenario.parts();
    let ns = &app.name;
    let a = &arca.name;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {ns}-pv}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  hostPath: {{path: /tmp/{ns}-pv}}
  claimRef: {{namespace: {ns}, name: db}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: db, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  volumeName: {ns}-pv
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: db
  namespace: {ns}
  annotations: {{backup.velero.io/backup-volumes: "scratch,logs"}}
spec:
  containers: [{{name: db, image: db}}]
  volumes:
  - {{name: data, persistentVolumeClaim: {{claimName: db}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: logs, emptyDir: {{}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: volume-policy, namespace: {a}}}
data:
  policy.yaml: |
    version: v1
    volumePolicies:
    - conditions: {{storageClass: [fast], capacity: "0,10Gi"}}
      action: {{type: fs-backup}}
    - conditions: {{volumeTypes: [emptyDir]}}
      action: {{type: skip}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: bad-policy, namespace: {a}}}
data:
  policy.yaml: |
    version: v1
    volumePolicies:
    - conditions: {{capacity: "10Gi"}}
      action: {{type: skip}}
"#
        ),
    );
    // The pod must be on a node (its claim bound) before the backup reads it.
    scheduled(env, ns, "db").await;
    let backup = scenario
        .backup(
            "by-policy",
            &format!(
                "{{includedNamespaces: [{ns}], resourcePolicy: {{kind: ConfigMap, name: volume-policy}}}}"
            ),
        )
        .await;
    let status = backup.status.clone().unwrap_or_default();
    // No node agent runs here: the chosen volume waits, then is an error naming it.
    assert_eq!(
        phase_of_backup(&backup),
        BackupPhase::PartiallyFailed,
        "{status:?}"
    );
    assert_eq!(status.errors, 1, "{status:?}");
    let store = arca_e2e::store(env, &prefix.prefix).await;
    let results = store
        .get(&arca_store::Layout::backup_results("by-policy"))
        .await
        .expect("results.json");
    let results = String::from_utf8_lossy(&results);
    assert!(
        results.contains(&format!("pod {ns}/db volume data: still New")),
        "the claim chosen by the policy is asked for: {results}"
    );
    assert!(
        !results.contains("volume scratch") && !results.contains("volume logs"),
        "the annotated emptyDir volumes are skipped: {results}"
    );

    let bad = scenario
        .backup(
            "bad-policy",
            &format!(
                "{{includedNamespaces: [{ns}], resourcePolicy: {{kind: ConfigMap, name: bad-policy}}}}"
            ),
        )
        .await;
    assert_eq!(phase_of_backup(&bad), BackupPhase::FailedValidation);
    let errors = bad.status.unwrap_or_default().validation_errors.join("\n");
    assert!(
        errors
            .contains("ConfigMap bad-policy: volume policy 1: capacity \"10Gi\" is not `min,max`"),
        "{errors}"
    );
    scenario.stop().await;
}

/// Velero's scoped filters, alone and with a resource policy's `includeExcludePolicy`
/// (whose names count where the Backup's lists are silent), checked in the bucket; mixing
/// them with the first filters is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_filters_and_an_include_exclude_policy_choose_what_is_backed_up() {
    let scenario = Scenario::start("scoped").await;
    let (env, _, arca, app, prefix) = scenario.parts();
    let ns = &app.name;
    let a = &arca.name;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: token, namespace: {ns}}}
stringData: {{k: v}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {ns}-pv}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: /tmp/{ns}-pv}}
  claimRef: {{namespace: {ns}, name: db}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: db, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: {ns}-pv
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: no-pvs, namespace: {a}}}
data:
  policy.yaml: |
    version: v1
    includeExcludePolicy:
      includedNamespaceScopedResources: [secrets, persistentvolumeclaims]
      excludedNamespaceScopedResources: [configmaps]
      excludedClusterScopedResources: [persistentvolumes]
"#
        ),
    );
    let policy = "resourcePolicy: {kind: ConfigMap, name: no-pvs}";
    let backups = [
        (
            "scoped",
            format!("{{includedNamespaces: [{ns}], includedNamespaceScopedResources: [cm, pvc]}}"),
        ),
        (
            "policy-only",
            format!("{{includedNamespaces: [{ns}], {policy}}}"),
        ),
        (
            "backup-wins",
            format!(
                "{{includedNamespaces: [{ns}], includedNamespaceScopedResources: [configmaps], includedClusterScopedResources: [persistentvolumes], {policy}}}"
            ),
        ),
    ];
    for (name, spec) in &backups {
        scenario.apply_backup(name, spec);
    }
    for (name, _) in &backups {
        assert_completed(&scenario.backup_done(name).await);
    }
    let cluster = |index: &[arca_store::archive::IndexEntry]| -> BTreeSet<String> {
        index
            .iter()
            .filter(|e| e.namespace.is_none() && e.resource != "namespaces")
            .map(|e| format!("{}/{}", e.group_resource(), e.name))
            .collect()
    };
    let pv = format!("persistentvolumes/{ns}-pv");

    // Namespaced types chosen; the claim's volume comes along as a related item.
    let scoped = index_of(env, &prefix.prefix, "scoped").await;
    assert_eq!(
        names(&scoped, ns),
        set(&[
            "configmaps/kube-root-ca.crt",
            "configmaps/settings",
            "persistentvolumeclaims/db"
        ])
    );
    assert_eq!(cluster(&scoped), set(&[&pv]));

    // The policy alone: its types, and its cluster exclusion holds even for the claim's PV.
    let policy_only = index_of(env, &prefix.prefix, "policy-only").await;
    assert_eq!(
        names(&policy_only, ns),
        set(&["persistentvolumeclaims/db", "secrets/token"])
    );
    assert!(
        cluster(&policy_only).is_empty(),
        "{:?}",
        cluster(&policy_only)
    );

    // The Backup's own lists win where they speak (configmaps, persistentvolumes); the
    // policy adds where they are silent (secrets, claims).
    let wins = index_of(env, &prefix.prefix, "backup-wins").await;
    assert_eq!(
        names(&wins, ns),
        set(&[
            "configmaps/kube-root-ca.crt",
            "configmaps/settings",
            "persistentvolumeclaims/db",
            "secrets/token"
        ])
    );
    assert!(cluster(&wins).contains(&pv), "{:?}", cluster(&wins));

    // The first filters and an includeExcludePolicy: refused, naming both.
    let mixed = scenario
        .backup(
            "mixed",
            &format!("{{includedNamespaces: [{ns}], includedResources: [cm], {policy}}}"),
        )
        .await;
    assert_eq!(phase_of_backup(&mixed), BackupPhase::FailedValidation);
    let errors = mixed
        .status
        .unwrap_or_default()
        .validation_errors
        .join("\n");
    assert!(
        errors.contains(
            "ConfigMap no-pvs: its includeExcludePolicy works with the scoped filters only"
        ),
        "{errors}"
    );
    scenario.stop().await;
}
