//! Two operator processes against one cluster: only the holder of the Lease works; kill it
//! and the other takes over.

use std::time::Duration;

use arca_e2e::{create_configmaps, eventually, operator::spawn_server, scenario::Scenario};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

fn log_of(env: &arca_e2e::TestEnv, ns: &str, who: &str) -> String {
    std::fs::read_to_string(env.env.dir.join(format!("logs/arca-server-{ns}-{who}.log")))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_works_and_another_takes_over() {
    // The operators are `arca server` processes of the test's own.
    let scenario = Scenario::prepare("ha").await;
    let (env, client, arca, app, _) = scenario.parts();
    create_configmaps(client, &app.name, 3, 64).await;
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

    scenario.completed_backup("one").await;
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
    scenario.completed_backup("two").await;
    assert!(
        log_of(env, &arca.name, "second").contains("backing up"),
        "the new leader did the second backup"
    );
    second.kill().await.expect("stopped");
}
