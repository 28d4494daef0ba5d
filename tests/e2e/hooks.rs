//! Hooks by pod exec. kwok runs exec'd commands on this host, in the environment's exec
//! folder: hooks append lines to marker files there, which the tests read.

use std::time::{Duration, Instant};

use arca_api::{BackupPhase, RestorePhase};
use arca_e2e::{
    eventually, index_of, kubectl, kubectl_apply,
    operator::{backup_done, phase_of_backup, phase_of_restore},
    scenario::Scenario,
};

fn marker(env: &arca_e2e::TestEnv, name: &str) -> Vec<String> {
    std::fs::read_to_string(env.env.exec_dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn pod(
    ns: &str,
    name: &str,
    labels: &str,
    annotations: &[(&str, String)],
    extra_spec: &str,
) -> String {
    let annotations: Vec<String> = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {}", serde_json::to_string(v).expect("json")))
        .collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {labels}\n  annotations:\n{}\nspec:\n  containers: [{{name: main, image: busybox}}, {{name: side, image: busybox}}]\n{extra_spec}---\n",
        if annotations.is_empty() {
            "    {}".to_string()
        } else {
            annotations.join("\n")
        }
    )
}

/// A hook command appending `word` to the marker file `file` (JSON array, as annotations take it).
fn append(file: &str, word: &str) -> String {
    serde_json::json!(["sh", "-c", format!("echo {word} >> {file}")]).to_string()
}

async fn running(env: &arca_e2e::TestEnv, ns: &str, pods: &[&str]) {
    for p in pods {
        eventually(
            &format!("pod {p} to run"),
            Duration::from_secs(60),
            || async {
                (kubectl(
                    env,
                    &["get", "pod", p, "-n", ns, "-o", "jsonpath={.status.phase}"],
                ) == "Running")
                    .then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_and_post_hooks_run_in_order_from_annotations_and_spec() {
    let scenario = Scenario::start("hooks").await;
    let (env, _, arca, app, _) = scenario.parts();
    let ns = &app.name;
    let file = |p: &str| format!("{ns}-{p}.log");
    let mut yaml = String::new();
    yaml += &pod(
        ns,
        "arca-annotated",
        "{app: web}",
        &[
            (
                "pre.hook.backup.arca.dev/command",
                append(&file("arca-annotated"), "pre"),
            ),
            (
                "post.hook.backup.arca.dev/command",
                append(&file("arca-annotated"), "post"),
            ),
            ("pre.hook.backup.arca.dev/container", "side".into()),
        ],
        "",
    );
    yaml += &pod(
        ns,
        "velero-annotated",
        "{app: web}",
        &[
            (
                "pre.hook.backup.velero.io/command",
                append(&file("velero-annotated"), "pre"),
            ),
            (
                "post.hook.backup.velero.io/command",
                append(&file("velero-annotated"), "post"),
            ),
        ],
        "",
    );
    yaml += &pod(ns, "selected", "{app: db}", &[], "");
    yaml += &pod(ns, "unselected", "{app: cache}", &[], "");
    kubectl_apply(env, &yaml);
    running(
        env,
        ns,
        &[
            "arca-annotated",
            "velero-annotated",
            "selected",
            "unselected",
        ],
    )
    .await;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: arca.dev/v1alpha1
kind: Backup
metadata: {{name: hooked, namespace: {a}}}
spec:
  includedNamespaces: [{ns}]
  hooks:
    resources:
    - name: db-freeze
      labelSelector: {{matchLabels: {{app: db}}}}
      pre: [{{exec: {{command: {pre}}}}}]
      post: [{{exec: {{command: {post}, container: main}}}}]
"#,
            a = arca.name,
            pre = append(&file("selected"), "pre"),
            post = append(&file("selected"), "post")
        ),
    );
    let backup = scenario.backup_done("hooked").await;
    let status = backup.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_backup(&backup),
        BackupPhase::Completed,
        "{status:?}"
    );
    for p in ["arca-annotated", "velero-annotated", "selected"] {
        assert_eq!(
            marker(env, &file(p)),
            ["pre", "post"],
            "{p}: pre before post, once each"
        );
    }
    assert!(
        marker(env, &file("unselected")).is_empty(),
        "no hook chose this pod"
    );
    let hooks = status.hook_status.clone().unwrap_or_default();
    assert_eq!((hooks.hooks_attempted, hooks.hooks_failed), (6, 0));
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_hooks_fail_continue_or_time_out() {
    let scenario = Scenario::start("badhooks").await;
    let (env, _, _, app, prefix) = scenario.parts();
    let ns = &app.name;
    let command = |c: &str| serde_json::json!(["sh", "-c", c]).to_string();
    let mut yaml = String::new();
    yaml += &pod(
        ns,
        "fails",
        "{}",
        &[("pre.hook.backup.arca.dev/command", command("exit 1"))],
        "",
    );
    yaml += &pod(
        ns,
        "warns",
        "{}",
        &[
            ("pre.hook.backup.velero.io/command", command("exit 2")),
            ("pre.hook.backup.velero.io/on-error", "Continue".into()),
        ],
        "",
    );
    yaml += &pod(
        ns,
        "stuck",
        "{}",
        &[
            ("pre.hook.backup.arca.dev/command", command("sleep 25")),
            ("pre.hook.backup.arca.dev/timeout", "2s".into()),
            ("pre.hook.backup.arca.dev/on-error", "Continue".into()),
        ],
        "",
    );
    yaml += &pod(ns, "fine", "{}", &[], "");
    yaml += &pod(
        ns,
        "pending",
        "{}",
        &[("pre.hook.backup.arca.dev/command", command("true"))],
        "  nodeSelector: {nowhere: \"true\"}\n",
    );
    kubectl_apply(env, &yaml);
    running(env, ns, &["fails", "warns", "stuck", "fine"]).await;
    let started = Instant::now();
    let backup = scenario.backup("b", &scenario.app_spec()).await;
    let took = started.elapsed();
    let status = backup.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_backup(&backup),
        BackupPhase::PartiallyFailed,
        "{status:?}"
    );
    assert!(
        took < Duration::from_secs(20),
        "the stuck hook was cut off at its timeout, not waited for: {took:?}"
    );
    let hooks = status.hook_status.clone().unwrap_or_default();
    assert_eq!(
        (hooks.hooks_attempted, hooks.hooks_failed),
        (3, 3),
        "fails, warns and stuck ran and failed; pending did not run"
    );
    assert!(status.errors >= 1 && status.warnings >= 3, "{status:?}");
    let pods: Vec<String> = index_of(env, &prefix.prefix, "b")
        .await
        .into_iter()
        .filter(|e| e.resource == "pods")
        .map(|e| e.name)
        .collect();
    assert!(
        !pods.contains(&"fails".to_string()),
        "a failed Fail hook leaves the pod out: {pods:?}"
    );
    for kept in ["warns", "stuck", "fine", "pending"] {
        assert!(
            pods.contains(&kept.to_string()),
            "{kept} is backed up: {pods:?}"
        );
    }
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_hooks_add_init_containers_and_run_in_restored_pods() {
    let scenario = Scenario::start("rhooks").await;
    let (env, _, arca, app, _) = scenario.parts();
    let ns = &app.name;
    let restored = format!("{ns}-restored.log");
    let yaml = pod(
        ns,
        "worker",
        "{app: worker}",
        &[
            (
                "init.hook.restore.arca.dev/container-image",
                "busybox".into(),
            ),
            (
                "init.hook.restore.arca.dev/container-name",
                "restore-init".into(),
            ),
            (
                "init.hook.restore.arca.dev/command",
                serde_json::json!(["sh", "-c", "echo init"]).to_string(),
            ),
            (
                "post.hook.restore.velero.io/command",
                append(&restored, "restored"),
            ),
        ],
        "",
    );
    kubectl_apply(env, &yaml);
    running(env, ns, &["worker"]).await;
    scenario.completed_backup("b").await;
    assert!(marker(env, &restored).is_empty());
    kubectl(
        env,
        &["delete", "namespace", ns, "--wait=true", "--timeout=120s"],
    );
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: arca.dev/v1alpha1
kind: Restore
metadata: {{name: r, namespace: {a}}}
spec:
  backupName: b
  hooks:
    resources:
    - name: spec-exec
      labelSelector: {{matchLabels: {{app: worker}}}}
      postHooks: [{{exec: {{command: {spec}, waitTimeout: 60s}}}}]
"#,
            a = arca.name,
            spec = append(&restored, "spec-ignored")
        ),
    );
    let restore = scenario
        .restore_done_within("r", Duration::from_secs(180))
        .await;
    let status = restore.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_restore(&restore),
        RestorePhase::Completed,
        "{status:?}"
    );
    let init = kubectl(
        env,
        &[
            "get",
            "pod",
            "worker",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.initContainers[0].name}",
        ],
    );
    assert_eq!(init, "restore-init", "the init hook was injected first");
    assert_eq!(
        marker(env, &restored),
        ["restored"],
        "the annotation's exec hook ran once in the restored pod, taking precedence over the spec's"
    );
    let hooks = status.hook_status.clone().unwrap_or_default();
    assert_eq!((hooks.hooks_attempted, hooks.hooks_failed), (1, 0));
    scenario.stop().await;
}

/// A tenant's hooks exec as its ServiceAccount: with `edit` (which may create `pods/exec`)
/// the pre hook runs; with `view` the apiserver refuses the exec, the hook fails by name,
/// and the pod's items are left out, though the operator itself could exec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_s_hooks_exec_as_its_service_account() {
    let scenario = Scenario::start_tenant("team").await;
    let (env, client, _, team, prefix) = scenario.parts();
    let t = &team.name;
    arca_e2e::tenant_account(env, t, "viewer", "view");
    let log = format!("{t}-tenant-hook.log");
    kubectl_apply(
        env,
        &pod(
            t,
            "app",
            "{app: web}",
            &[("pre.hook.backup.arca.dev/command", append(&log, "pre"))],
            "",
        ),
    );
    running(env, t, &["app"]).await;
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: as-editor, namespace: {t}}}\nspec: {{}}\n"
        ),
    );
    let editor = backup_done(client, t, "as-editor", Duration::from_secs(60)).await;
    let status = editor.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_backup(&editor),
        BackupPhase::Completed,
        "{status:?}"
    );
    let hooks = status.hook_status.clone().unwrap_or_default();
    assert_eq!((hooks.hooks_attempted, hooks.hooks_failed), (1, 0));
    assert_eq!(marker(env, &log), ["pre"], "the hook ran once");

    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: as-viewer, namespace: {t}}}\nspec: {{serviceAccountName: viewer}}\n"
        ),
    );
    let viewer = backup_done(client, t, "as-viewer", Duration::from_secs(60)).await;
    let status = viewer.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_backup(&viewer),
        BackupPhase::PartiallyFailed,
        "{status:?}"
    );
    let hooks = status.hook_status.clone().unwrap_or_default();
    assert_eq!((hooks.hooks_attempted, hooks.hooks_failed), (1, 1));
    assert_eq!(marker(env, &log), ["pre"], "the refused hook did not run");
    let results = arca_e2e::store(env, &format!("{}/tenants/{t}", prefix.prefix))
        .await
        .get(&arca_store::Layout::backup_results("as-viewer"))
        .await
        .expect("results.json");
    let results = String::from_utf8_lossy(&results);
    assert!(
        results.contains(&format!("system:serviceaccount:{t}:viewer"))
            && results.contains("pods/exec"),
        "the refusal names the account and pods/exec: {results}"
    );
    let index = index_of(env, &format!("{}/tenants/{t}", prefix.prefix), "as-viewer").await;
    assert!(
        !index.iter().any(|e| e.kind == "Pod" && e.name == "app"),
        "the pod whose Fail hook failed is left out"
    );
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_resources_order_hooks_and_items_and_bad_orders_are_refused() {
    let scenario = Scenario::start("ordered").await;
    let (env, _, arca, app, prefix) = scenario.parts();
    let ns = &app.name;
    let order_file = format!("{ns}-order.log");
    let pods = ["ord-a", "ord-b", "ord-c", "ord-d", "ord-e"];
    let mut yaml = String::new();
    for p in pods {
        yaml += &pod(
            ns,
            p,
            "{app: db}",
            &[("pre.hook.backup.arca.dev/command", append(&order_file, p))],
            "",
        );
    }
    for cm in ["cm-x", "cm-y", "cm-z"] {
        yaml += &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {cm}, namespace: {ns}}}\n---\n"
        );
    }
    kubectl_apply(env, &yaml);
    running(env, ns, &pods).await;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: arca.dev/v1alpha1
kind: Backup
metadata: {{name: ordered, namespace: {a}}}
spec:
  includedNamespaces: [{ns}]
  orderedResources:
    pods: "{ns}/ord-d, {ns}/ord-b, {ns}/missing"
    cm: "{ns}/cm-z,{ns}/cm-y"
---
apiVersion: arca.dev/v1alpha1
kind: Backup
metadata: {{name: badly-ordered, namespace: {a}}}
spec:
  includedNamespaces: [{ns}]
  orderedResources:
    pods: "ord-a"
"#,
            a = arca.name,
        ),
    );
    let backup = scenario.backup_done("ordered").await;
    let status = backup.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_backup(&backup),
        BackupPhase::Completed,
        "{status:?}"
    );
    // The missing pod is the one warning of this backup's own. The cluster is shared: a
    // type another test removes while this backup runs is a warning too ("no longer
    // served"), and only that may be beside it.
    let results = arca_e2e::store(env, &prefix.prefix)
        .await
        .get(&arca_store::Layout::backup_results("ordered"))
        .await
        .expect("results.json");
    let results: serde_json::Value = serde_json::from_slice(&results).expect("results JSON");
    let warnings = &results["warnings"];
    let mut messages: Vec<String> = ["arca", "cluster"]
        .iter()
        .flat_map(|group| warnings[group].as_array().cloned().unwrap_or_default())
        .chain(
            warnings["namespaces"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .flat_map(|v| v.as_array().cloned().unwrap_or_default()),
        )
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    assert_eq!(messages.len() as u32, status.warnings, "{results}");
    messages.retain(|m| !m.contains("is no longer served by the apiserver"));
    assert_eq!(
        messages.len(),
        1,
        "the missing pod is the one warning: {results}"
    );
    assert!(
        messages[0].contains(&format!("{ns}/missing")),
        "{messages:?}"
    );

    // Pre hooks: the ordered pods first, one after the other, then the others.
    let ran = marker(env, &order_file);
    assert_eq!(ran.len(), pods.len(), "{ran:?}");
    assert_eq!(ran[..2], ["ord-d", "ord-b"], "{ran:?}");

    // The archive: each resource's ordered items first, in order, then the rest.
    let index = index_of(env, &prefix.prefix, "ordered").await;
    let order_of = |resource: &str| -> Vec<String> {
        index
            .iter()
            .filter(|e| e.group_resource() == resource && e.namespace.as_deref() == Some(ns))
            .map(|e| e.name.clone())
            .collect()
    };
    let written_pods = order_of("pods");
    assert_eq!(written_pods.len(), pods.len(), "{written_pods:?}");
    assert_eq!(written_pods[..2], ["ord-d", "ord-b"], "{written_pods:?}");
    let maps: Vec<String> = order_of("configmaps")
        .into_iter()
        .filter(|n| n.starts_with("cm-"))
        .collect();
    assert_eq!(maps, ["cm-z", "cm-y", "cm-x"]);

    // A namespaced resource ordered by bare names: refused, saying how to write it.
    let bad = scenario.backup_done("badly-ordered").await;
    assert_eq!(phase_of_backup(&bad), BackupPhase::FailedValidation);
    let errors = bad.status.unwrap_or_default().validation_errors.join("\n");
    assert!(
        errors.contains("write \"ord-a\" as `namespace/ord-a`"),
        "{errors}"
    );
    scenario.stop().await;
}
