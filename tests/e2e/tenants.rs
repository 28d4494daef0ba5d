//! A Backup or Restore in a tenant's namespace acts on that namespace alone, never on
//! cluster-scoped resources, and keeps its data in the tenant's own folder.

use std::time::Duration;

use arca_api::{BackupPhase, RestorePhase};
use arca_e2e::{
    env, index_of, kubectl, kubectl_apply,
    operator::{
        Operator, backup_done, phase_of_backup, phase_of_restore, restore_done, s3_location,
        settings,
    },
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_backs_up_and_restores_its_own_namespace_only() {
    let env = env();
    let client = env.client().await.expect("client");
    let arca = env.namespace("arca").await.expect("namespace");
    let team = env.namespace("team").await.expect("namespace");
    let neighbour = env.namespace("neighbour").await.expect("namespace");
    let prefix = env.prefix();
    for ns in [&team.name, &neighbour.name] {
        kubectl_apply(
            env,
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: data, namespace: {ns}}}\ndata: {{owner: {ns}}}\n"
            ),
        );
    }
    s3_location(env, &client, &arca.name, "default", &prefix.prefix).await;
    // The operator lives in `arca` and handles the tenant's namespace.
    let mut tenant_settings = settings(&arca.name);
    tenant_settings.watch_namespace = Some(team.name.clone());
    let operator = Operator::start(env, tenant_settings).await;
    let t = &team.name;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: arca.dev/v1alpha1
kind: Backup
metadata: {{name: mine, namespace: {t}}}
spec: {{}}
---
apiVersion: arca.dev/v1alpha1
kind: Backup
metadata: {{name: theirs, namespace: {t}}}
spec: {{includedNamespaces: [{n}]}}
---
apiVersion: arca.dev/v1alpha1
kind: Backup
metadata: {{name: cluster, namespace: {t}}}
spec: {{includeClusterResources: true}}
"#,
            n = neighbour.name
        ),
    );
    let mine = backup_done(&client, t, "mine", Duration::from_secs(60)).await;
    assert_eq!(
        phase_of_backup(&mine),
        BackupPhase::Completed,
        "{:?}",
        mine.status
    );
    for (name, expected) in [
        ("theirs", format!("backs up {t} only")),
        (
            "cluster",
            "cannot include cluster-scoped resources".to_string(),
        ),
    ] {
        let b = backup_done(&client, t, name, Duration::from_secs(60)).await;
        assert_eq!(phase_of_backup(&b), BackupPhase::FailedValidation, "{name}");
        let errors = b.status.unwrap_or_default().validation_errors.join("; ");
        assert!(errors.contains(&expected), "{name}: {errors}");
    }
    let index = index_of(env, &format!("{}/tenants/{t}", prefix.prefix), "mine").await;
    assert!(!index.is_empty(), "stored in the tenant's folder");
    assert!(
        index
            .iter()
            .all(|e| e.namespace.as_deref() == Some(t.as_str())),
        "only the tenant's namespace, nothing cluster-scoped"
    );

    kubectl(env, &["delete", "configmap", "data", "-n", t]);
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: arca.dev/v1alpha1
kind: Restore
metadata: {{name: back, namespace: {t}}}
spec: {{backupName: mine}}
---
apiVersion: arca.dev/v1alpha1
kind: Restore
metadata: {{name: elsewhere, namespace: {t}}}
spec: {{backupName: mine, namespaceMapping: {{{t}: {n}}}}}
"#,
            n = neighbour.name
        ),
    );
    let back = restore_done(&client, t, "back", Duration::from_secs(60)).await;
    assert_eq!(
        phase_of_restore(&back),
        RestorePhase::Completed,
        "{:?}",
        back.status
    );
    assert_eq!(
        kubectl(
            env,
            &["get", "cm", "data", "-n", t, "-o", "jsonpath={.data.owner}"]
        ),
        *t
    );
    let elsewhere = restore_done(&client, t, "elsewhere", Duration::from_secs(60)).await;
    assert_eq!(phase_of_restore(&elsewhere), RestorePhase::FailedValidation);
    assert!(
        elsewhere
            .status
            .unwrap_or_default()
            .validation_errors
            .join(";")
            .contains(&format!("restores into {t} only"))
    );
    assert_eq!(
        kubectl(
            env,
            &[
                "get",
                "cm",
                "data",
                "-n",
                &neighbour.name,
                "-o",
                "jsonpath={.data.owner}"
            ]
        ),
        neighbour.name,
        "untouched"
    );
    operator.stop().await;
}
