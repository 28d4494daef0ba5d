//! A Backup or Restore in a tenant's namespace acts on that namespace alone, never on
//! cluster-scoped resources, and keeps its data in the tenant's own folder.

use std::time::Duration;

use arca_api::{BackupPhase, RestorePhase};
use arca_e2e::{
    index_of, kubectl, kubectl_apply,
    operator::{
        Operator, backup_done, create_location, phase_of_backup, phase_of_restore, restore_done,
        settings,
    },
    scenario::Scenario,
    store, tenant_account,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_backs_up_and_restores_its_own_namespace_only() {
    // The tenant's runs act as its ServiceAccount `arca`, which its admin gave `edit`; the
    // operator lives in `arca` and handles the tenant's namespace.
    let scenario = Scenario::start_tenant("team").await;
    let (env, client, arca, team, prefix) = scenario.parts();
    let neighbour = scenario.namespace("neighbour").await;
    for ns in [&team.name, &neighbour.name] {
        kubectl_apply(
            env,
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: data, namespace: {ns}}}\ndata: {{owner: {ns}}}\n"
            ),
        );
    }
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
---
apiVersion: arca.dev/v1alpha1
kind: Backup
metadata: {{name: as-nobody, namespace: {t}}}
spec: {{serviceAccountName: nobody}}
---
apiVersion: arca.dev/v1alpha1
kind: Backup
metadata: {{name: as-the-operator, namespace: {t}}}
spec: {{serviceAccountName: "{arca}:arca"}}
"#,
            arca = arca.name,
            n = neighbour.name
        ),
    );
    let mine = backup_done(client, t, "mine", Duration::from_secs(60)).await;
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
        (
            "as-nobody",
            format!("ServiceAccount {t}/nobody does not exist"),
        ),
        (
            "as-the-operator",
            "is not a ServiceAccount name".to_string(),
        ),
    ] {
        let b = backup_done(client, t, name, Duration::from_secs(60)).await;
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
---
apiVersion: arca.dev/v1alpha1
kind: Restore
metadata: {{name: borrow, namespace: {t}}}
spec: {{backupName: mine, includedNamespaces: [{n}], namespaceMapping: {{{n}: {t}}}}}
"#,
            n = neighbour.name
        ),
    );
    let back = restore_done(client, t, "back", Duration::from_secs(60)).await;
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
    // Neither out of the tenant's namespace, nor (attack 1) another's items into it.
    for (name, from, to) in [
        ("elsewhere", t, &neighbour.name),
        ("borrow", &neighbour.name, t),
    ] {
        let refused = restore_done(client, t, name, Duration::from_secs(60)).await;
        assert_eq!(
            phase_of_restore(&refused),
            RestorePhase::FailedValidation,
            "{name}"
        );
        let errors = refused
            .status
            .unwrap_or_default()
            .validation_errors
            .join(";");
        assert!(
            errors.contains(&format!(
                "restores items of {t} into {t} only; it maps \"{from}\" to \"{to}\""
            )),
            "{name}: {errors}"
        );
    }
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
    scenario.stop().await;
}

/// The attack: a tenant's location with no credentials, pointed at the admin's bucket and
/// prefix, while the operator has cloud credentials in its environment (an instance role,
/// IRSA). Without a check the S3 client falls back to the operator's credentials, the location
/// is Available and the sync copies the admin's Backups into the tenant's namespace. A
/// filesystem location would have the operator write as itself wherever its path says. Both
/// are Unavailable, with the reason, before any connection is made; nothing is synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_location_cannot_borrow_the_operator_s_credentials_or_its_filesystem() {
    // The admin's backup, in the admin's location, by an operator that is then gone.
    let scenario = Scenario::prepare("team").await;
    let (env, client, arca, team, prefix) = scenario.parts();
    let admin = Operator::start(env, settings(&arca.name)).await;
    scenario
        .completed_backup_with(
            "admin-only",
            &format!("{{includedNamespaces: [{}]}}", arca.name),
        )
        .await;
    drop(admin);

    // The operator of the tenant's namespace, with ambient credentials that reach the bucket.
    let log = env
        .env
        .dir
        .join(format!("logs/arca-server-ambient-{}.log", team.name));
    let _operator = tokio::process::Command::new(arca_e2e::operator::arca_binary())
        .arg("server")
        .arg(format!("--kubeconfig={}", env.env.kubeconfig.display()))
        .args(["--namespace", &arca.name, "--watch-namespace", &team.name])
        .args(["--metrics-bind-address", "none", "--log-format", "text"])
        .args(["--leader-elect=false"])
        .env("AWS_ACCESS_KEY_ID", &env.env.s3.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &env.env.s3.secret_access_key)
        .env("AWS_REGION", &env.env.s3.region)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("arca server starts");
    let (t, s3) = (&team.name, &env.env.s3);
    kubectl_apply(
        env,
        &format!(
            r#"apiVersion: arca.dev/v1alpha1
kind: BackupStorageLocation
metadata: {{name: borrowed, namespace: {t}}}
spec:
  provider: aws
  default: true
  backupSyncPeriod: 1s
  objectStorage: {{bucket: {bucket}, prefix: {prefix}}}
  config: {{region: {region}, s3Url: "{url}", s3ForcePathStyle: "true"}}
---
apiVersion: arca.dev/v1alpha1
kind: BackupStorageLocation
metadata: {{name: disk, namespace: {t}}}
spec:
  provider: filesystem
  objectStorage: {{bucket: b}}
  config: {{path: /tmp}}
"#,
            bucket = s3.bucket,
            prefix = prefix.prefix,
            region = s3.region,
            url = s3.endpoint,
        ),
    );
    // With its own credentials, a tenant location still needs storage the admin allows; this
    // operator allows none (no --tenant-storage).
    create_location(
        s3,
        client,
        t,
        "unlisted",
        &prefix.prefix,
        &s3.endpoint,
        &s3.bucket,
        &s3.secret_access_key,
    )
    .await;
    let locations: kube::Api<arca_api::BackupStorageLocation> =
        kube::Api::namespaced(client.clone(), t);
    for (name, reason) in [
        ("borrowed", "spec.credential is required".to_string()),
        (
            "disk",
            "the filesystem provider is for the operator's own namespace".to_string(),
        ),
        (
            "unlisted",
            format!(
                "{}/{} is not storage the admin allows for tenants (allowed: none",
                s3.endpoint, s3.bucket
            ),
        ),
    ] {
        let status = arca_e2e::eventually(
            &format!("location {name} to be checked"),
            Duration::from_secs(60),
            || async {
                let l = locations.get(name).await.ok()?;
                let status = l.status?;
                status.last_validation_time.as_ref()?;
                Some(status)
            },
        )
        .await;
        assert_eq!(
            status.phase,
            Some(arca_api::LocationPhase::Unavailable),
            "{name}: {status:?}"
        );
        let message = status.message.unwrap_or_default();
        assert!(message.contains(&reason), "{name}: {message}");
    }
    // Three sync periods later, none of the admin's backups is in the tenant's namespace.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let backups: kube::Api<arca_api::Backup> = kube::Api::namespaced(client.clone(), t);
    let synced = backups.list(&Default::default()).await.expect("list").items;
    assert!(
        synced.is_empty(),
        "nothing synced into the tenant: {synced:?}"
    );
}

/// Attack 2: a tenant restores, from storage it controls, a backup holding a RoleBinding
/// that makes its ServiceAccount cluster-admin (here a real backup of its namespace, made
/// while such a binding existed; a forged archive is the same to the restore). The operator
/// could create it (it holds `escalate` and `bind`); the tenant's ServiceAccount cannot, and
/// the restore acts as that account: the binding is refused by the apiserver, named in the
/// results, and does not exist afterwards. The tenant's ConfigMap is restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_restore_cannot_create_what_its_service_account_may_not() {
    let scenario = Scenario::prepare("team").await;
    let (env, client, arca, team, prefix) = scenario.parts();
    let t = &team.name;
    tenant_account(env, t, "arca", "edit");
    kubectl_apply(
        env,
        &format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {t}}}
data: {{mode: blue}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: take-over, namespace: {t}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects: [{{kind: ServiceAccount, name: arca, namespace: {t}}}]
"#
        ),
    );
    // The archive holding the binding, written where the tenant's own location points.
    let admin = Operator::start(env, settings(&arca.name)).await;
    scenario
        .completed_backup_with(
            "loaded",
            &format!("{{includedNamespaces: [{t}], includeClusterResources: false}}"),
        )
        .await;
    admin.stop().await;
    // Sealed again as made in the tenant's namespace (an insider with the operator's key):
    // a backup made elsewhere is never synced into a tenant's namespace; here the test is
    // what the tenant's account may create when such a backup is restored.
    let direct = store(env, &prefix.prefix).await;
    let (_, mut metadata) = arca_e2e::tamper::read(direct.as_ref(), "loaded").await;
    metadata["backup"]["metadata"]["namespace"] = t.as_str().into();
    arca_e2e::tamper::reseal(client, &arca.name, &direct, "loaded", metadata).await;
    let index = index_of(env, &prefix.prefix, "loaded").await;
    assert!(
        index
            .iter()
            .any(|e| e.kind == "RoleBinding" && e.name == "take-over"),
        "the archive holds the binding"
    );
    kubectl(env, &["delete", "rolebinding", "take-over", "-n", t]);
    kubectl(env, &["delete", "configmap", "settings", "-n", t]);

    // The tenant's own location (its credentials, storage it controls), synced into its
    // namespace, and its Restore.
    let s3 = &env.env.s3;
    create_location(
        s3,
        client,
        t,
        "mine",
        &prefix.prefix,
        &s3.endpoint,
        &s3.bucket,
        &s3.secret_access_key,
    )
    .await;
    let mut tenant_settings = settings(&arca.name);
    tenant_settings.watch_namespace = Some(t.clone());
    // The admin lets tenants use this bucket (`--tenant-storage`).
    tenant_settings.tenant_storage = vec![
        format!("{}/{}", s3.endpoint, s3.bucket)
            .parse()
            .expect("an endpoint and bucket"),
    ];
    let operator = Operator::start(env, tenant_settings).await;
    arca_e2e::operator::synced_backup(client, t, "loaded", Duration::from_secs(60)).await;
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: escalate, namespace: {t}}}\nspec: {{backupName: loaded}}\n"
        ),
    );
    let restore = restore_done(client, t, "escalate", Duration::from_secs(90)).await;
    assert_eq!(
        phase_of_restore(&restore),
        RestorePhase::PartiallyFailed,
        "{:?}",
        restore.status
    );
    let results = arca_e2e::store(env, &prefix.prefix)
        .await
        .get(&arca_store::Layout::restore_results("escalate"))
        .await
        .expect("results.json");
    let results = String::from_utf8_lossy(&results);
    assert!(
        results.contains("take-over") && results.contains("forbidden"),
        "the refused binding is named with the apiserver's reason: {results}"
    );
    let bindings = kubectl(
        env,
        &[
            "get",
            "rolebindings",
            "-n",
            t,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    );
    assert!(
        !bindings.contains("take-over"),
        "no binding was created: {bindings}"
    );
    assert_eq!(
        kubectl(
            env,
            &[
                "get",
                "cm",
                "settings",
                "-n",
                t,
                "-o",
                "jsonpath={.data.mode}"
            ]
        ),
        "blue",
        "what the account may create is restored"
    );
    operator.stop().await;
}
