//! Schedules, retention, garbage collection and deletion.

use std::{collections::BTreeSet, time::Duration};

use arca_api::{
    Backup, BackupPhase, DeleteBackupRequest, DeleteBackupRequestPhase, Schedule, SchedulePhase,
};
use arca_e2e::{
    create_configmaps, eventually, kubectl, kubectl_apply,
    operator::{Operator, backup_done, free_address, http_get, phase_of_backup, settings},
    scenario::Scenario,
    store,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};

async fn backups_of(api: &Api<Backup>, schedule: &str) -> Vec<Backup> {
    api.list(&ListParams::default().labels(&format!("arca.dev/schedule-name={schedule}")))
        .await
        .expect("list")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_back_up_expire_keep_and_pause() {
    // The operator also serves /metrics here, so the test starts it itself.
    let scenario = Scenario::prepare("sched").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    create_configmaps(client, &app.name, 3, 64).await;
    let metrics = free_address();
    let operator = Operator::start_serving(env, settings(&arca.name), Some(metrics)).await;
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: arca.dev/v1alpha1
kind: Schedule
metadata: {{name: quick, namespace: {a}}}
spec:
  schedule: "@every 15s"
  template: {{includedNamespaces: [{n}], ttl: 40s}}
---
apiVersion: arca.dev/v1alpha1
kind: Schedule
metadata: {{name: kept, namespace: {a}}}
spec:
  schedule: "@every 15s"
  template: {{includedNamespaces: [{n}]}}
  retention: {{keepLast: 2}}
"#,
            a = arca.name,
            n = app.name
        ),
    );
    let backups: Api<Backup> = Api::namespaced(client.clone(), &arca.name);
    let bucket = store(env, &prefix.prefix).await;

    // Timestamped backups appear; the first one expires after 40s and goes with its data.
    let first = eventually(
        "the first scheduled backup",
        Duration::from_secs(30),
        || async {
            backups_of(&backups, "quick")
                .await
                .into_iter()
                .map(|b| b.name_any())
                .min()
        },
    )
    .await;
    assert!(
        first.starts_with("quick-20") && first.len() == "quick-".len() + 14,
        "{first}"
    );
    let completed = backup_done(client, &arca.name, &first, Duration::from_secs(30)).await;
    assert_eq!(phase_of_backup(&completed), BackupPhase::Completed);
    assert!(
        bucket
            .size(&format!("backups/{first}/backup.json"))
            .await
            .expect("size")
            .is_some()
    );
    // The schedule's last success is exported, for the 25h alert of deploy/monitoring.
    let series = |schedule: &str| {
        format!(
            "arca_schedule_last_success_timestamp_seconds{{namespace=\"{}\",schedule=\"{schedule}\"}}",
            arca.name
        )
    };
    let created = |schedule: &str| {
        format!(
            "arca_schedule_created_timestamp_seconds{{namespace=\"{}\",schedule=\"{schedule}\"}}",
            arca.name
        )
    };
    eventually(
        "the schedule's last success in /metrics",
        Duration::from_secs(30),
        || async {
            let text = http_get(metrics, "/metrics").await?;
            let line = text.lines().find(|l| l.starts_with(&series("quick")))?;
            let at: i64 = line.rsplit_once(' ')?.1.parse().ok()?;
            let done = completed.status.as_ref()?.completion_timestamp.as_ref()?;
            (at >= done.0.as_second()).then_some(())
        },
    )
    .await;
    let seen = std::sync::Mutex::new(BTreeSet::new());
    eventually(
        "the first backup to expire, with its data",
        Duration::from_secs(90),
        || async {
            for b in backups_of(&backups, "quick").await {
                seen.lock().expect("lock").insert(b.name_any());
            }
            let gone_object = backups.get_opt(&first).await.ok()?.is_none();
            let gone_data = bucket
                .list(&format!("backups/{first}/"))
                .await
                .ok()?
                .is_empty();
            (gone_object && gone_data).then_some(())
        },
    )
    .await;
    let now = backups_of(&backups, "quick").await.len();
    assert!(
        now <= 4,
        "40s of ttl at one backup every 15s keeps at most 4, found {now}"
    );
    let seen = seen.into_inner().expect("lock");
    assert!(
        seen.len() >= 3,
        "a backup every 15s until the first expired: {seen:?}"
    );

    // keepLast: 2 leaves two.
    eventually(
        "retention to leave two backups of `kept`",
        Duration::from_secs(60),
        || async {
            let all = backups_of(&backups, "kept").await;
            let done: Vec<_> = all
                .iter()
                .filter(|b| phase_of_backup(b) == BackupPhase::Completed)
                .collect();
            (all.len() == 2 && done.len() == 2 && done.iter().all(|b| b.name_any() != first))
                .then_some(())
        },
    )
    .await;

    // Pausing stops runs.
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), &arca.name);
    schedules
        .patch(
            "quick",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused");
    eventually(
        "the schedule to show no next run",
        Duration::from_secs(20),
        || async {
            let s = schedules.get("quick").await.ok()?;
            (s.status?.next_run.is_none()).then_some(())
        },
    )
    .await;
    let text = http_get(metrics, "/metrics").await.expect("metrics");
    assert!(
        !text.contains(&created("quick")) && !text.contains(&series("quick")),
        "a paused schedule has no series (it must not alert): {text}"
    );
    assert!(text.contains(&created("kept")), "{text}");
    let before: BTreeSet<String> = backups_of(&backups, "quick")
        .await
        .iter()
        .map(|b| b.name_any())
        .collect();
    tokio::time::sleep(Duration::from_secs(35)).await;
    let after: BTreeSet<String> = backups_of(&backups, "quick")
        .await
        .iter()
        .map(|b| b.name_any())
        .collect();
    assert!(
        after.is_subset(&before),
        "no new backup while paused: {:?}",
        after.difference(&before).collect::<Vec<_>>()
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_refused_with_the_reason() {
    let scenario = Scenario::start("badsched").await;
    let (env, client, arca, _, _) = scenario.parts();
    kubectl_apply(
        env,
        &format!(
            r#"
apiVersion: arca.dev/v1alpha1
kind: Schedule
metadata: {{name: bad-cron, namespace: {a}}}
spec: {{schedule: "0 25 * * *", template: {{}}}}
---
apiVersion: arca.dev/v1alpha1
kind: Schedule
metadata: {{name: bad-zone, namespace: {a}}}
spec: {{schedule: "0 3 * * *", timeZone: Europe/Atlantis, template: {{}}}}
"#,
            a = arca.name
        ),
    );
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), &arca.name);
    for (name, expected) in [
        ("bad-cron", "not a valid cron expression"),
        ("bad-zone", "\"Europe/Atlantis\" is not an IANA time zone"),
    ] {
        let errors = eventually(
            &format!("{name} to fail validation"),
            Duration::from_secs(30),
            || async {
                let status = schedules.get(name).await.ok()?.status?;
                (status.phase? == SchedulePhase::FailedValidation)
                    .then(|| status.validation_errors.join("; "))
            },
        )
        .await;
        assert!(errors.contains(expected), "{name}: {errors}");
    }
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_delete_backup_request_removes_data() {
    let scenario = Scenario::start("del").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    create_configmaps(client, &app.name, 5, 64).await;
    scenario.completed_backup("b1").await;
    let bucket = store(env, &prefix.prefix).await;
    let objects = bucket.list("backups/b1/").await.expect("list");
    assert!(objects.len() >= 4, "{objects:?}");

    // The Backup object alone: the data stays, and the sync brings the object back.
    kubectl(env, &["delete", "backup", "b1", "-n", &arca.name]);
    assert_eq!(bucket.list("backups/b1/").await.expect("list"), objects);
    let backups: Api<Backup> = Api::namespaced(client.clone(), &arca.name);
    eventually(
        "the sync to bring b1 back",
        Duration::from_secs(30),
        || async {
            let b = backups.get_opt("b1").await.ok()??;
            (phase_of_backup(&b) == BackupPhase::Completed).then_some(())
        },
    )
    .await;

    // A DeleteBackupRequest: every object goes, then the Backup, and it stays gone.
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: DeleteBackupRequest\nmetadata: {{name: del-b1, namespace: {}}}\nspec: {{backupName: b1}}\n",
            arca.name
        ),
    );
    let requests: Api<DeleteBackupRequest> = Api::namespaced(client.clone(), &arca.name);
    let status = eventually(
        "the request to be processed",
        Duration::from_secs(30),
        || async {
            let s = requests.get("del-b1").await.ok()?.status?;
            (s.phase? == DeleteBackupRequestPhase::Processed).then_some(s)
        },
    )
    .await;
    assert!(status.errors.is_empty(), "{:?}", status.errors);
    assert!(
        bucket.list("backups/b1/").await.expect("list").is_empty(),
        "every object of the backup is deleted"
    );
    assert!(backups.get_opt("b1").await.expect("get").is_none());
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        backups.get_opt("b1").await.expect("get").is_none(),
        "the sync does not bring it back"
    );

    // A request for a backup that does not exist says so.
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: DeleteBackupRequest\nmetadata: {{name: del-none, namespace: {}}}\nspec: {{backupName: none}}\n",
            arca.name
        ),
    );
    let status = eventually(
        "the request to be processed",
        Duration::from_secs(30),
        || async {
            let s = requests.get("del-none").await.ok()?.status?;
            (s.phase? == DeleteBackupRequestPhase::Processed).then_some(s)
        },
    )
    .await;
    assert!(
        status.errors.join(";").contains("no Backup \"none\""),
        "{:?}",
        status.errors
    );
    scenario.stop().await;
}
