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
