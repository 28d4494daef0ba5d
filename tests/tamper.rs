//! What someone with write access to the bucket does to a backup's `backup.json`: edit the
//! sealed metadata and keep the old seal (an attacker without the key), rewrite it as an
//! unsealed format 1 file (a downgrade), or seal it again with the operator's key (an insider,
//! to reach the checks behind the seal).

use std::sync::Arc;

use arca_store::ObjectStore;
use bytes::Bytes;
use serde_json::Value;

/// The backup's `backup.json`: (the envelope, the sealed metadata).
pub async fn read(store: &dyn ObjectStore, backup: &str) -> (Value, Value) {
    let raw = store
        .get(&format!("backups/{backup}/backup.json"))
        .await
        .expect("backup.json");
    let envelope: Value = serde_json::from_slice(&raw).expect("backup.json is JSON");
    assert_eq!(
        envelope["formatVersion"], "2",
        "a sealed backup: {envelope}"
    );
    let metadata = envelope["metadata"].clone();
    (envelope, metadata)
}

/// Writes `metadata` under the old seal, as an attacker without the key can.
pub async fn keep_seal(store: &dyn ObjectStore, backup: &str, metadata: Value) {
    let (mut envelope, _) = read(store, backup).await;
    envelope["metadata"] = metadata;
    put(store, backup, &envelope).await;
}

/// Writes `metadata` as an unsealed format 1 `backup.json`.
pub async fn downgrade(store: &dyn ObjectStore, backup: &str, metadata: Value) {
    let mut one = metadata;
    one["formatVersion"] = "1".into();
    put(store, backup, &one).await;
}

/// Writes `metadata` sealed with the key of the operator in `operator_namespace`.
pub async fn reseal(
    client: &kube::Client,
    operator_namespace: &str,
    store: &Arc<dyn ObjectStore>,
    backup: &str,
    metadata: Value,
) {
    let keys = arca_runtime::keys::ensure_seal_keys(client, operator_namespace)
        .await
        .expect("the operator's seal key");
    let parsed: arca_store::archive::BackupMetadata =
        serde_json::from_value(metadata).expect("metadata");
    arca_store::BackupStore::new(store.as_ref())
        .complete(backup, &parsed, keys.current())
        .await
        .expect("backup.json sealed again");
}

async fn put(store: &dyn ObjectStore, backup: &str, value: &Value) {
    store
        .put(
            &format!("backups/{backup}/backup.json"),
            Bytes::from(serde_json::to_vec(value).expect("json")),
        )
        .await
        .expect("backup.json written");
}
