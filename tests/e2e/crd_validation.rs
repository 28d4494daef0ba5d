//! The real apiserver refuses nonsense at admission, with messages a human can act on.

use arca_api::{Backup, BackupStorageLocation, Restore, Schedule};
use arca_e2e::{env, install_crds};
use kube::{
    Api, Resource,
    api::{ApiResource, DynamicObject, PostParams},
    core::Status,
};

/// Creates `body` as a `K` in a fresh namespace; returns the apiserver's refusal, if any.
async fn create<K: Resource<DynamicType = ()>>(
    prefix: &str,
    body: serde_json::Value,
) -> Result<DynamicObject, Status> {
    let env = env();
    let client = env.client().await.expect("client");
    install_crds(&client).await.expect("CRDs installed");
    let ns = env.namespace(prefix).await.expect("namespace");
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns.name, &resource);
    let mut object: DynamicObject = serde_json::from_value(body).expect("object");
    object.types = Some(kube::api::TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    });
    match api.create(&PostParams::default(), &object).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) => Err(*status),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn refused(result: Result<DynamicObject, Status>, expected: &str) {
    match result {
        Ok(created) => panic!("the apiserver accepted what it should refuse: {created:?}"),
        Err(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains(expected),
                "the refusal should say {expected:?}, it says: {}",
                status.message
            );
        }
    }
}

#[tokio::test]
async fn backup_mixing_the_two_kinds_of_resource_filters_is_refused() {
    let body = serde_json::json!({
        "metadata": {"name": "mixed"},
        "spec": {
            "includedResources": ["configmaps"],
            "excludedClusterScopedResources": ["persistentvolumes"]
        }
    });
    refused(
        create::<Backup>("cel-scoped", body).await,
        "cannot be used together with the scoped filters",
    );
}

#[tokio::test]
async fn backup_with_both_selectors_is_refused() {
    let body = serde_json::json!({
        "metadata": {"name": "both"},
        "spec": {
            "labelSelector": {"matchLabels": {"app": "a"}},
            "orLabelSelectors": [{"matchLabels": {"app": "b"}}]
        }
    });
    refused(
        create::<Backup>("cel-selectors", body).await,
        "labelSelector and orLabelSelectors cannot be used together",
    );
}

#[tokio::test]
async fn negative_or_malformed_ttl_is_refused() {
    let negative = serde_json::json!({"metadata": {"name": "neg"}, "spec": {"ttl": "-1h"}});
    refused(
        create::<Backup>("cel-ttl", negative).await,
        "spec.ttl: Invalid value",
    );
    let negative = serde_json::json!({"metadata": {"name": "neg"}, "spec": {"ttl": "-1h"}});
    refused(
        create::<Backup>("cel-ttl", negative).await,
        "must not be negative",
    );
    let garbage = serde_json::json!({"metadata": {"name": "bad"}, "spec": {"ttl": "3 days"}});
    refused(
        create::<Backup>("cel-ttl", garbage).await,
        "must be a duration such as 30s, 15m, 1h30m or 720h",
    );
}

#[tokio::test]
async fn restore_needs_exactly_one_of_backup_and_schedule() {
    let both = serde_json::json!({
        "metadata": {"name": "both"},
        "spec": {"backupName": "b1", "scheduleName": "daily"}
    });
    refused(
        create::<Restore>("cel-restore", both).await,
        "set exactly one of backupName and scheduleName",
    );
    let neither = serde_json::json!({"metadata": {"name": "neither"}, "spec": {}});
    refused(
        create::<Restore>("cel-restore", neither).await,
        "set exactly one of backupName and scheduleName",
    );
    let one = serde_json::json!({"metadata": {"name": "one"}, "spec": {"backupName": "b1"}});
    assert!(
        create::<Restore>("cel-restore", one).await.is_ok(),
        "a Restore with backupName only is valid"
    );
}

#[tokio::test]
async fn schedule_template_is_checked_like_a_backup() {
    let body = serde_json::json!({
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "0 3 * * *",
            "template": {
                "ttl": "-24h",
                "labelSelector": {"matchLabels": {"app": "a"}},
                "orLabelSelectors": [{"matchLabels": {"app": "b"}}]
            }
        }
    });
    let result = create::<Schedule>("cel-schedule", body).await;
    refused(
        result.clone(),
        "labelSelector and orLabelSelectors cannot be used together",
    );
    refused(result, "must not be negative");
}

#[tokio::test]
async fn filesystem_location_needs_a_path() {
    let body = serde_json::json!({
        "metadata": {"name": "local"},
        "spec": {"provider": "filesystem", "objectStorage": {"bucket": "backups"}}
    });
    refused(
        create::<BackupStorageLocation>("cel-bsl", body).await,
        "provider filesystem needs config.path",
    );
    let unknown = serde_json::json!({
        "metadata": {"name": "gcs"},
        "spec": {"provider": "gcp", "objectStorage": {"bucket": "backups"}}
    });
    refused(
        create::<BackupStorageLocation>("cel-bsl", unknown).await,
        "Unsupported value: \"gcp\"",
    );
    let locked_directory = serde_json::json!({
        "metadata": {"name": "locked"},
        "spec": {"provider": "filesystem", "objectStorage": {"bucket": "backups"},
            "config": {"path": "/data"}, "objectLock": {"mode": "Compliance"}}
    });
    refused(
        create::<BackupStorageLocation>("cel-bsl", locked_directory).await,
        "objectLock needs an S3 bucket with object lock enabled",
    );
    let bad_mode = serde_json::json!({
        "metadata": {"name": "badmode"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "backups"},
            "objectLock": {"mode": "Forever"}}
    });
    refused(
        create::<BackupStorageLocation>("cel-bsl", bad_mode).await,
        "Unsupported value: \"Forever\"",
    );
}

#[tokio::test]
async fn a_backup_spec_cannot_change_after_creation() {
    let env = env();
    let client = env.client().await.expect("client");
    install_crds(&client).await.expect("CRDs installed");
    let ns = env.namespace("cel-immutable").await.expect("namespace");
    let backups: Api<Backup> = Api::namespaced(client, &ns.name);
    let backup: Backup = serde_json::from_value(serde_json::json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "b1"},
        "spec": {"includedNamespaces": ["app"], "ttl": "24h"}
    }))
    .expect("backup");
    let mut created = backups
        .create(&PostParams::default(), &backup)
        .await
        .expect("a valid Backup is accepted");
    created.spec.included_namespaces = vec!["other".into()];
    match backups
        .replace("b1", &PostParams::default(), &created)
        .await
    {
        Ok(_) => panic!("the spec change was accepted"),
        Err(kube::Error::Api(status)) => assert!(
            status
                .message
                .contains("a Backup's spec cannot change after creation"),
            "{}",
            status.message
        ),
        Err(other) => panic!("unexpected error: {other}"),
    }
}
