//! Namespace mapping, both existing-resource policies, resource filters and dry run.

use std::time::Duration;

use arca_api::{BackupPhase, RestorePhase};
use arca_e2e::{
    env, kubectl, kubectl_apply,
    operator::{
        Operator, backup_done, phase_of_backup, phase_of_restore, restore_done, s3_location,
        settings,
    },
    store,
};

fn restore(arca: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: {name}, namespace: {arca}}}\nspec:\n  backupName: app\n  {spec}\n"
    )
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
    let env = env();
    let client = env.client().await.expect("client");
    let arca = env.namespace("arca").await.expect("namespace");
    let app = env.namespace("opts").await.expect("namespace");
    let copy = format!("{}-copy", app.name);
    let only_cm = format!("{}-cm", app.name);
    let dry = format!("{}-dry", app.name);
    let prefix = env.prefix();
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
    s3_location(env, &client, &arca.name, "default", &prefix.prefix).await;
    let operator = Operator::start(env, settings(&arca.name)).await;
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: app, namespace: {}}}\nspec: {{includedNamespaces: [{ns}]}}\n",
            arca.name
        ),
    );
    let backup = backup_done(&client, &arca.name, "app", Duration::from_secs(120)).await;
    assert_eq!(phase_of_backup(&backup), BackupPhase::Completed);

    // Into another namespace; bindings follow.
    kubectl_apply(
        env,
        &restore(
            &arca.name,
            "mapped",
            &format!("namespaceMapping: {{{ns}: {copy}}}"),
        ),
    );
    let r = restore_done(&client, &arca.name, "mapped", Duration::from_secs(120)).await;
    assert_eq!(
        phase_of_restore(&r),
        RestorePhase::Completed,
        "{:?}",
        r.status
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
    kubectl_apply(
        env,
        &restore(
            &arca.name,
            "keep",
            &format!("namespaceMapping: {{{ns}: {copy}}}\n  existingResourcePolicy: none"),
        ),
    );
    let r = restore_done(&client, &arca.name, "keep", Duration::from_secs(120)).await;
    let status = r.status.clone().unwrap_or_default();
    assert_eq!(phase_of_restore(&r), RestorePhase::Completed, "{status:?}");
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
    kubectl_apply(
        env,
        &restore(
            &arca.name,
            "update",
            &format!("namespaceMapping: {{{ns}: {copy}}}\n  existingResourcePolicy: update"),
        ),
    );
    let r = restore_done(&client, &arca.name, "update", Duration::from_secs(120)).await;
    let outcomes = r
        .status
        .clone()
        .unwrap_or_default()
        .outcomes
        .unwrap_or_default();
    assert_eq!(
        phase_of_restore(&r),
        RestorePhase::Completed,
        "{:?}",
        r.status
    );
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
    kubectl_apply(
        env,
        &restore(
            &arca.name,
            "only-cm",
            &format!("namespaceMapping: {{{ns}: {only_cm}}}\n  includedResources: [configmaps]"),
        ),
    );
    let r = restore_done(&client, &arca.name, "only-cm", Duration::from_secs(120)).await;
    assert_eq!(
        phase_of_restore(&r),
        RestorePhase::Completed,
        "{:?}",
        r.status
    );
    assert!(exists(env, &["get", "cm", "settings", "-n", &only_cm]));
    assert!(
        !exists(env, &["get", "sa", "robot", "-n", &only_cm]),
        "service accounts were not asked for"
    );

    // A dry run writes nothing, and reports what it would do.
    kubectl_apply(
        env,
        &restore(
            &arca.name,
            "dry",
            &format!("namespaceMapping: {{{ns}: {dry}}}\n  dryRun: true"),
        ),
    );
    let r = restore_done(&client, &arca.name, "dry", Duration::from_secs(120)).await;
    let status = r.status.clone().unwrap_or_default();
    assert_eq!(phase_of_restore(&r), RestorePhase::Completed, "{status:?}");
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
    operator.stop().await;
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
