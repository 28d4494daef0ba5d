//! Namespace mapping, both existing-resource policies, resource filters and dry run.

use arca_e2e::{kubectl, kubectl_apply, scenario::Scenario, store};

/// The spec of a restore of backup `app` with `more` (flow mapping entries) besides.
fn from_app(more: &str) -> String {
    format!("{{backupName: app, {more}}}")
}

fn exists(env: &arca_e2e::TestEnv, args: &[&str]) -> bool {
    env.env
        .kubectl()
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_policies_filters_and_dry_run() {
    let scenario = Scenario::start("opts").await;
    let (env, _, _, app, prefix) = scenario.parts();
    let copy = format!("{}-copy", app.name);
    let only_cm = format!("{}-cm", app.name);
    let dry = format!("{}-dry", app.name);
    let ns = &app.name;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{version: "1"}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: robot, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reader, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: [configmaps], verbs: [get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: robot-reads, namespace: {ns}}}
subjects: [{{kind: ServiceAccount, name: robot, namespace: {ns}}}]
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}
"#
        ),
    );
    scenario.completed_backup("app").await;

    // Into another namespace; bindings follow.
    scenario
        .completed_restore(
            "mapped",
            &from_app(&format!("namespaceMapping: {{{ns}: {copy}}}")),
        )
        .await;
    assert_eq!(
        kubectl(
            env,
            &[
                "get",
                "cm",
                "settings",
                "-n",
                &copy,
                "-o",
                "jsonpath={.data.version}"
            ]
        ),
        "1"
    );
    assert_eq!(
        kubectl(
            env,
            &[
                "get",
                "rolebinding",
                "robot-reads",
                "-n",
                &copy,
                "-o",
                "jsonpath={.subjects[0].namespace}"
            ]
        ),
        copy
    );
    assert_eq!(
        kubectl(
            env,
            &[
                "get",
                "cm",
                "settings",
                "-n",
                ns,
                "-o",
                "jsonpath={.data.version}"
            ]
        ),
        "1",
        "the source is untouched"
    );

    // An object changed since: `none` keeps it and warns; `update` brings it back.
    kubectl(
        env,
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            &copy,
            "--type=merge",
            "-p",
            r#"{"data":{"version":"2"}}"#,
        ],
    );
    let r = scenario
        .completed_restore(
            "keep",
            &from_app(&format!(
                "namespaceMapping: {{{ns}: {copy}}}, existingResourcePolicy: none"
            )),
        )
        .await;
    let status = r.status.clone().unwrap_or_default();
    assert!(
        status.warnings >= 1,
        "a warning names the object that differs: {status:?}"
    );
    assert_eq!(
        status.outcomes.clone().unwrap_or_default().created,
        0,
        "{status:?}"
    );
    assert_eq!(
        kubectl(
            env,
            &[
                "get",
                "cm",
                "settings",
                "-n",
                &copy,
                "-o",
                "jsonpath={.data.version}"
            ]
        ),
        "2"
    );
    let r = scenario
        .completed_restore(
            "update",
            &from_app(&format!(
                "namespaceMapping: {{{ns}: {copy}}}, existingResourcePolicy: update"
            )),
        )
        .await;
    let outcomes = r
        .status
        .clone()
        .unwrap_or_default()
        .outcomes
        .unwrap_or_default();
    assert!(outcomes.updated >= 1, "{outcomes:?}");
    assert_eq!(
        kubectl(
            env,
            &[
                "get",
                "cm",
                "settings",
                "-n",
                &copy,
                "-o",
                "jsonpath={.data.version}"
            ]
        ),
        "1"
    );

    // Only some resources.
    scenario
        .completed_restore(
            "only-cm",
            &from_app(&format!(
                "namespaceMapping: {{{ns}: {only_cm}}}, includedResources: [configmaps]"
            )),
        )
        .await;
    assert!(exists(env, &["get", "cm", "settings", "-n", &only_cm]));
    assert!(
        !exists(env, &["get", "sa", "robot", "-n", &only_cm]),
        "service accounts were not asked for"
    );

    // A dry run writes nothing, and reports what it would do.
    let r = scenario
        .completed_restore(
            "dry",
            &from_app(&format!("namespaceMapping: {{{ns}: {dry}}}, dryRun: true")),
        )
        .await;
    let status = r.status.clone().unwrap_or_default();
    assert!(
        status.outcomes.clone().unwrap_or_default().created >= 4,
        "{status:?}"
    );
    assert!(
        !exists(env, &["get", "namespace", &dry]),
        "a dry run creates nothing"
    );
    let items = store(env, &prefix.prefix)
        .await
        .get("restores/dry/items.jsonl.zst")
        .await
        .expect("per-item outcomes uploaded");
    let text =
        String::from_utf8(zstd::stream::decode_all(&items[..]).expect("zstd")).expect("utf8");
    assert!(
        text.lines()
            .any(|l| l.contains("\"name\":\"settings\"") && l.contains("\"outcome\":\"created\"")),
        "{text}"
    );
    scenario.stop().await;
    for ns in [&copy, &only_cm] {
        kubectl(
            env,
            &[
                "delete",
                "namespace",
                ns,
                "--wait=false",
                "--ignore-not-found",
            ],
        );
    }
}

/// Velero's resource modifier ConfigMap: a merge patch, a strategic merge patch and a JSON
/// patch with a test, each on the items its conditions choose; rules that cannot be read
/// fail the restore's validation naming the rule; a patch that cannot apply fails its item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_modifiers_patch_what_their_conditions_choose() {
    let scenario = Scenario::start("mods").await;
    let (env, _, arca, app, _) = scenario.parts();
    let ns = &app.name;
    let copy = format!("{ns}-modified");
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings-a, namespace: {ns}, labels: {{app: web}}}}
data: {{mode: original}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: other, namespace: {ns}}}
data: {{mode: original}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}, labels: {{tier: front}}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - {{name: web, image: "nginx:1.25", env: [{{name: A, value: "1"}}]}}
      - {{name: log, image: "busybox:1"}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}
"#
        ),
    );
    scenario.completed_backup("app").await;
    let a = &arca.name;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: modifiers, namespace: {a}}}
data:
  rules.yaml: |
    version: v1
    resourceModifierRules:
    - conditions:
        groupResource: configmaps
        resourceNameRegex: "^settings-"
        namespaces: [{ns}]
        labelSelector: {{matchLabels: {{app: web}}}}
      mergePatches:
      - patchData: |
          data: {{mode: modified, added: "yes"}}
    - conditions:
        groupResource: "*.apps"
        matches: [{{path: /metadata/labels/tier, value: front}}]
      strategicPatches:
      - patchData: |
          spec:
            replicas: 0
            template:
              spec:
                containers:
                - name: web
                  image: "nginx:1.27"
                  env: [{{name: B, value: "2"}}]
    - conditions: {{groupResource: services}}
      patches:
      - {{operation: test, path: /spec/ports/0/port, value: "80"}}
      - {{operation: add, path: /metadata/labels, value: '{{"patched": "json"}}'}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: broken, namespace: {a}}}
data:
  rules.yaml: |
    version: v1
    resourceModifierRules:
    - conditions: {{groupResource: configmaps}}
      patches: [{{operation: merge, path: /data}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: impossible, namespace: {a}}}
data:
  rules.yaml: |
    version: v1
    resourceModifierRules:
    - conditions: {{groupResource: services}}
      patches: [{{operation: remove, path: /spec/nothing}}]
"#
        ),
    );
    scenario
        .completed_restore(
            "modified",
            &from_app(&format!(
                "namespaceMapping: {{{ns}: {copy}}}, resourceModifier: {{kind: ConfigMap, name: modifiers}}"
            )),
        )
        .await;
    let get = |what: &[&str]| kubectl(env, &[&["get"], what, &["-n", &copy]].concat());
    assert_eq!(
        get(&[
            "cm",
            "settings-a",
            "-o",
            "jsonpath={.data.mode}/{.data.added}"
        ]),
        "modified/yes"
    );
    assert_eq!(
        get(&["cm", "other", "-o", "jsonpath={.data.mode}"]),
        "original",
        "no rule chose it"
    );
    assert_eq!(
        get(&[
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image} {.spec.template.spec.containers[0].env[*].name}"
        ]),
        // Kubernetes' (and Velero's) strategic merge order: the patch's new element first.
        "nginx:1.27 busybox:1 B A",
        "merged by name: the log container and env A stay"
    );
    assert_eq!(
        get(&["svc", "web", "-o", "jsonpath={.metadata.labels.patched}"]),
        "json"
    );

    let broken = scenario
        .restore(
            "broken-rules",
            &from_app(&format!(
                "namespaceMapping: {{{ns}: {copy}-b}}, resourceModifier: {{kind: ConfigMap, name: broken}}"
            )),
        )
        .await;
    let status = broken.status.clone().unwrap_or_default();
    assert_eq!(
        status.phase,
        Some(arca_api::RestorePhase::FailedValidation),
        "{status:?}"
    );
    assert!(
        status
            .validation_errors
            .join("\n")
            .contains("ConfigMap broken: rule 1: patch operation \"merge\""),
        "{status:?}"
    );
    assert!(
        !exists(env, &["get", "namespace", &format!("{copy}-b")]),
        "nothing restored"
    );

    let failed = scenario
        .restore(
            "impossible-patch",
            &from_app(&format!(
                "namespaceMapping: {{{ns}: {copy}-c}}, resourceModifier: {{kind: ConfigMap, name: impossible}}"
            )),
        )
        .await;
    let status = failed.status.clone().unwrap_or_default();
    assert_eq!(
        status.phase,
        Some(arca_api::RestorePhase::PartiallyFailed),
        "{status:?}"
    );
    assert!(
        !exists(env, &["get", "svc", "web", "-n", &format!("{copy}-c")]),
        "the item its rule could not patch is not created"
    );
    assert!(exists(
        env,
        &["get", "cm", "other", "-n", &format!("{copy}-c")]
    ));
    scenario.stop().await;
}
