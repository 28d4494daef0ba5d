//! Immutable backups: S3 Object Lock on the test server's locked bucket (versitygw with
//! versioning, `arca_testenv::LOCKED_BUCKET`), and server-side encryption settings.

use std::time::{Duration, SystemTime};

use arca_api::{
    BackupPhase, BackupStorageLocation, DeleteBackupRequest, DeleteBackupRequestPhase,
    LocationPhase,
};
use arca_e2e::{
    create_configmaps, eventually, kubectl_apply,
    scenario::{Scenario, assert_completed},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};

/// Merges `spec` into location `name`.
async fn patch_location(client: &Client, namespace: &str, name: &str, spec: serde_json::Value) {
    Api::<BackupStorageLocation>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "spec": spec })),
        )
        .await
        .expect("location patched");
}

/// Waits until location `name` is in `phase`; returns its message.
async fn location_phase(
    client: &Client,
    namespace: &str,
    name: &str,
    phase: LocationPhase,
) -> String {
    let api: Api<BackupStorageLocation> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("location {name} to be {phase:?}"),
        Duration::from_secs(60),
        || async {
            let status = api.get(name).await.ok()?.status?;
            (status.phase? == phase).then(|| status.message.unwrap_or_default())
        },
    )
    .await
}

/// The mode and retain-until date of `key` in the locked bucket, read with
/// GetObjectRetention. versitygw 1.7.0 answers it with an `ObjectLockRetention` root element
/// where S3 has `Retention`, which the SDK refuses to parse: the answer is then read from the
/// raw body. HeadObject must say the same (Arca reads retentions that way).
async fn retention_of(s3: &aws_sdk_s3::Client, key: &str) -> (String, SystemTime) {
    let bucket = arca_testenv::LOCKED_BUCKET;
    let (mode, until) = match s3
        .get_object_retention()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(out) => {
            let r = out.retention().expect("a retention");
            (
                r.mode().expect("mode").as_str().to_string(),
                SystemTime::try_from(*r.retain_until_date().expect("date")).expect("date"),
            )
        }
        Err(e) => {
            let raw = e.raw_response().expect("an answer");
            assert_eq!(
                raw.status().as_u16(),
                200,
                "{}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            );
            let body = String::from_utf8_lossy(raw.body().bytes().expect("body")).into_owned();
            let field = |name: &str| {
                body.split(&format!("<{name}>"))
                    .nth(1)
                    .and_then(|rest| rest.split(&format!("</{name}>")).next())
                    .unwrap_or_else(|| panic!("no {name} in {body}"))
                    .to_string()
            };
            let date = aws_sdk_s3::primitives::DateTime::from_str(
                &field("RetainUntilDate"),
                aws_sdk_s3::primitives::DateTimeFormat::DateTime,
            )
            .expect("a date");
            (field("Mode"), SystemTime::try_from(date).expect("date"))
        }
    };
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.object_lock_mode().map(|m| m.as_str()),
        Some(mode.as_str()),
        "{key}"
    );
    assert_eq!(
        head.object_lock_retain_until_date()
            .map(|d| SystemTime::try_from(*d).expect("date")),
        Some(until),
        "{key}"
    );
    (mode, until)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_backup_is_retained_and_its_deletion_waits_for_the_date() {
    let mut scenario = Scenario::prepare_on_bucket("lock", arca_testenv::LOCKED_BUCKET).await;
    let (env, client, arca, app, prefix) = scenario.parts();
    let (env, client, arca, app) = (env, client.clone(), arca.name.clone(), app.name.clone());
    let prefix = prefix.prefix.clone();
    // Object lock with a minimum longer than the ttl, and server-side encryption (which
    // versitygw accepts and does not apply itself).
    patch_location(
        &client,
        &arca,
        "default",
        serde_json::json!({
            "objectLock": {"mode": "Governance", "retain": "2h"},
            "config": {"serverSideEncryption": "AES256"}
        }),
    )
    .await;
    create_configmaps(&client, &app, 3, 64).await;
    scenario.start_operator().await;
    location_phase(&client, &arca, "default", LocationPhase::Available).await;

    let backup = scenario
        .backup(
            "locked",
            &format!("{{includedNamespaces: [{app}], ttl: 1h}}"),
        )
        .await;
    assert_completed(&backup);
    let status = backup.status.clone().expect("status");
    let started: SystemTime = status.start_timestamp.expect("start").0.into();
    let expiration: SystemTime = status.expiration.expect("expiration").0.into();

    // Every object of the backup carries the retention: Governance, until start + 2h
    // (the minimum, later than the expiration), never before the expiration.
    let s3 = env.env.s3_client();
    let folder = format!("{prefix}/backups/locked/");
    let listed = s3
        .list_objects_v2()
        .bucket(arca_testenv::LOCKED_BUCKET)
        .prefix(&folder)
        .send()
        .await
        .expect("listing");
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    for name in [
        "backup.json",
        "resources.tar.zst",
        "index.jsonl.zst",
        "logs.jsonl.zst",
        "results.json",
    ] {
        assert!(
            keys.contains(&format!("{folder}{name}")),
            "{name} missing from {keys:?}"
        );
    }
    let mut latest = SystemTime::UNIX_EPOCH;
    for key in &keys {
        let (mode, until) = retention_of(&s3, key).await;
        assert_eq!(mode, "GOVERNANCE", "{key}");
        assert!(
            until >= expiration,
            "{key}: retained until {until:?}, before the expiration {expiration:?}"
        );
        let minimum = started + Duration::from_secs(2 * 3600);
        assert!(
            until >= minimum && until <= minimum + Duration::from_secs(120),
            "{key}: retained until {until:?}, expected start + 2h ({minimum:?})"
        );
        latest = latest.max(until);
    }

    // A DeleteBackupRequest now is Deferred until that date, saying so; nothing is deleted.
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: DeleteBackupRequest\nmetadata: {{name: del-locked, namespace: {arca}}}\nspec: {{backupName: locked}}\n"
        ),
    );
    let requests: Api<DeleteBackupRequest> = Api::namespaced(client.clone(), &arca);
    let deferred = eventually(
        "the request to be deferred",
        Duration::from_secs(30),
        || async {
            let s = requests.get("del-locked").await.ok()?.status?;
            (s.phase? == DeleteBackupRequestPhase::Deferred).then_some(s)
        },
    )
    .await;
    let until: SystemTime = deferred.retain_until.expect("retainUntil").0.into();
    assert_eq!(until, latest, "the request waits for the latest retention");
    let message = deferred.message.unwrap_or_default();
    assert!(
        message.contains("under object lock (GOVERNANCE) until")
            && message.contains("nothing was deleted"),
        "{message}"
    );
    assert!(deferred.errors.is_empty(), "{:?}", deferred.errors);
    // Still deferred a little later, the Backup untouched and every object still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = requests
        .get("del-locked")
        .await
        .expect("request")
        .status
        .expect("status");
    assert_eq!(again.phase, Some(DeleteBackupRequestPhase::Deferred));
    let kept = Api::<arca_api::Backup>::namespaced(client.clone(), &arca)
        .get("locked")
        .await
        .expect("the Backup is kept");
    assert_eq!(
        kept.status.and_then(|s| s.phase),
        Some(BackupPhase::Completed),
        "not marked Deleting"
    );
    let after = s3
        .list_objects_v2()
        .bucket(arca_testenv::LOCKED_BUCKET)
        .prefix(&folder)
        .send()
        .await
        .expect("listing");
    let after: Vec<String> = after
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(after, keys, "every object is still there");

    // Garbage collection of a backup whose ttl (2s) has passed but whose retention (the
    // location's 2h minimum) has not: its request waits, Deferred, and nothing goes.
    let short = scenario
        .backup(
            "short",
            &format!("{{includedNamespaces: [{app}], ttl: 2s}}"),
        )
        .await;
    assert_completed(&short);
    let gc_request = eventually(
        "garbage collection's request to be deferred",
        Duration::from_secs(60),
        || async {
            let listed = requests
                .list(&kube::api::ListParams::default().labels("arca.dev/backup-name=short"))
                .await
                .ok()?;
            let status = listed.items.into_iter().next()?.status?;
            (status.phase? == DeleteBackupRequestPhase::Deferred).then_some(status)
        },
    )
    .await;
    let message = gc_request.message.unwrap_or_default();
    assert!(
        message.contains("backup short is under object lock (GOVERNANCE) until"),
        "{message}"
    );
    let short_kept = Api::<arca_api::Backup>::namespaced(client.clone(), &arca)
        .get("short")
        .await
        .expect("the expired Backup is kept");
    assert_eq!(
        short_kept.status.and_then(|s| s.phase),
        Some(BackupPhase::Completed)
    );

    // The store itself enforces it: deleting backup.json's version with the bucket's own
    // credentials is refused by the server.
    let versions = s3
        .list_object_versions()
        .bucket(arca_testenv::LOCKED_BUCKET)
        .prefix(format!("{folder}backup.json"))
        .send()
        .await
        .expect("versions");
    let version = versions
        .versions()
        .first()
        .and_then(|v| v.version_id())
        .expect("a version")
        .to_string();
    let refused = s3
        .delete_object()
        .bucket(arca_testenv::LOCKED_BUCKET)
        .key(format!("{folder}backup.json"))
        .version_id(&version)
        .send()
        .await
        .expect_err("the server refuses to delete a retained version");
    let said = aws_sdk_s3::error::DisplayErrorContext(&refused).to_string();
    assert!(
        said.contains("AccessDenied") && said.contains("object lock"),
        "{said}"
    );
    let still = s3
        .head_object()
        .bucket(arca_testenv::LOCKED_BUCKET)
        .key(format!("{folder}backup.json"))
        .send()
        .await;
    assert!(still.is_ok(), "backup.json is still there");
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_on_a_bucket_without_it_and_bad_encryption_settings_are_unavailable() {
    let mut scenario = Scenario::prepare("nolock").await;
    let (_, client, arca, app, _) = scenario.parts();
    let (client, arca, app) = (client.clone(), arca.name.clone(), app.name.clone());
    patch_location(
        &client,
        &arca,
        "default",
        serde_json::json!({"objectLock": {"mode": "Compliance"}}),
    )
    .await;
    scenario.start_operator().await;
    let message = location_phase(&client, &arca, "default", LocationPhase::Unavailable).await;
    assert!(
        message.contains("does not have S3 Object Lock enabled")
            && message.contains("remove spec.objectLock"),
        "{message}"
    );
    // A backup to it fails validation with the same reason, and writes nothing.
    let backup = scenario
        .backup("unlocked", &format!("{{includedNamespaces: [{app}]}}"))
        .await;
    let status = backup.status.expect("status");
    assert_eq!(status.phase, Some(BackupPhase::FailedValidation));
    assert!(
        status
            .validation_errors
            .iter()
            .any(|e| e.contains("does not have S3 Object Lock enabled")),
        "{:?}",
        status.validation_errors
    );

    // serverSideEncryption is checked, never ignored.
    patch_location(
        &client,
        &arca,
        "default",
        serde_json::json!({"objectLock": null, "config": {"serverSideEncryption": "aes256"}}),
    )
    .await;
    let api: Api<BackupStorageLocation> = Api::namespaced(client.clone(), &arca);
    let message = eventually(
        "the encryption setting to be refused",
        Duration::from_secs(60),
        || async {
            let message = api.get("default").await.ok()?.status?.message?;
            message.contains("serverSideEncryption").then_some(message)
        },
    )
    .await;
    assert!(
        message.contains("use AES256") && message.contains("aws:kms"),
        "{message}"
    );
    scenario.stop().await;
}
