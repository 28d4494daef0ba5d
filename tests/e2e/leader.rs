//! Two operator processes against one cluster: only the holder of the Lease works; kill it
//! and the other takes over.

use std::time::Duration;

use arca_api::BackupPhase;
use arca_e2e::{
    create_configmaps, env, eventually, kubectl_apply,
    operator::{backup_done, phase_of_backup, s3_location, spawn_server},
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

fn log_of(env: &arca_e2e::TestEnv, ns: &str, who: &str) -> String {
    std::fs::read_to_string(env.env.dir.join(format!("logs/arca-server-{ns}-{who}.log")))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_works_and_another_takes_over() {
    let env = env();
    let client = env.client().await.expect("client");
    let arca = env.namespace("arca").await.expect("namespace");
    let app = env.namespace("ha").await.expect("namespace");
    let prefix = env.prefix();
    create_configmaps(&client, &app.name, 3, 64).await;
    s3_location(env, &client, &arca.name, "default", &prefix.prefix).await;
    let mut first = spawn_server(
        env,
        &format!("{}-first", arca.name),
        &arca.name,
        &["--identity", "first"],
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), &arca.name);
    eventually(
        "the first replica to hold the lease",
        Duration::from_secs(30),
        || async {
            let lease = leases.get_opt("arca-operator").await.ok()??;
            (lease.spec?.holder_identity.as_deref() == Some("first")).then_some(())
        },
    )
    .await;
    let mut second = spawn_server(
        env,
        &format!("{}-second", arca.name),
        &arca.name,
        &["--identity", "second"],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: one, namespace: {}}}\nspec: {{includedNamespaces: [{}]}}\n",
            arca.name, app.name
        ),
    );
    assert_eq!(
        phase_of_backup(&backup_done(&client, &arca.name, "one", Duration::from_secs(60)).await),
        BackupPhase::Completed
    );
    let (first_log, second_log) = (
        log_of(env, &arca.name, "first"),
        log_of(env, &arca.name, "second"),
    );
    assert!(
        first_log.contains("backing up"),
        "the leader did the backup"
    );
    assert!(
        !second_log.contains("backing up") && second_log.contains("another replica leads"),
        "the follower waited: {second_log}"
    );

    first.kill().await.expect("leader killed");
    eventually(
        "the second replica to take the lease",
        Duration::from_secs(60),
        || async {
            let lease = leases.get_opt("arca-operator").await.ok()??;
            (lease.spec?.holder_identity.as_deref() == Some("second")).then_some(())
        },
    )
    .await;
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: two, namespace: {}}}\nspec: {{includedNamespaces: [{}]}}\n",
            arca.name, app.name
        ),
    );
    assert_eq!(
        phase_of_backup(&backup_done(&client, &arca.name, "two", Duration::from_secs(60)).await),
        BackupPhase::Completed
    );
    assert!(
        log_of(env, &arca.name, "second").contains("backing up"),
        "the new leader did the second backup"
    );
    second.kill().await.expect("stopped");
}
