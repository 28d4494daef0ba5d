//! Step 1 of a backup, before the claim: validate the spec (pure, the engine's rules), then
//! resolve what it refers to (the account it acts as, its location, writable and answering,
//! with no backup of the same name). Every problem found is one line of
//! `status.validationErrors`; nothing has been written anywhere yet.

use std::sync::Arc;

use arca_api::{Backup, BackupStorageLocation};
use arca_engine::backup;
use arca_runtime::locations;
use arca_store::{Key, KeyRing, ObjectStore};
use kube::ResourceExt;

use super::{Writing, location_for_writing};
use crate::context::Context;

/// What a valid Backup runs with.
pub(super) struct Resolved {
    pub location: BackupStorageLocation,
    /// The location's store (a tenant's folder of the operator's location, for a tenant
    /// without its own).
    pub store: Arc<dyn ObjectStore>,
    /// The client the run reads the cluster with (impersonating a tenant's account).
    pub client: kube::Client,
    /// The user it acts as, when not the operator.
    pub acting_as: Option<String>,
    /// The namespace a tenant's backup is confined to.
    pub tenant: Option<String>,
    /// The key that seals `backup.json`.
    pub seal_key: Key,
    /// The location's encryption keys, when it encrypts.
    pub encryption: Option<KeyRing>,
}

/// Validates `backup` and resolves its references, or says every problem found.
pub(super) async fn resolve(
    backup: &Backup,
    ctx: &Context,
    tenant: Option<String>,
    writing: Writing,
) -> Result<Resolved, Vec<String>> {
    let problems = backup::validate(&backup.spec, tenant.as_deref());
    if !problems.is_empty() {
        return Err(problems);
    }
    let namespace = backup.namespace().unwrap_or_default();
    let client = ctx
        .run_client(&namespace, backup.spec.service_account_name.as_deref())
        .await
        .map_err(|e| e.to_string());
    match (
        client,
        open_for_backup(ctx, backup, &namespace, writing).await,
    ) {
        (Ok((client, acting_as)), Ok((location, store, seal_key, encryption))) => Ok(Resolved {
            location,
            store,
            client,
            acting_as,
            tenant,
            seal_key,
            encryption,
        }),
        (client, location) => Err(client.err().into_iter().chain(location.err()).collect()),
    }
}

/// The location's store, the seal key, and the location's encryption keys.
type Opened = (
    BackupStorageLocation,
    Arc<dyn ObjectStore>,
    Key,
    Option<KeyRing>,
);

/// The backup's location, writable and answering (with object lock enabled when it asks
/// for it), with no backup of the same name in it (a new Backup never overwrites the data of
/// an old one). The store writes with the location's object lock, if any.
async fn open_for_backup(
    ctx: &Context,
    backup: &Backup,
    namespace: &str,
    writing: Writing,
) -> Result<Opened, String> {
    let (location, store) = location_for_writing(
        ctx,
        namespace,
        backup.spec.storage_location.as_deref(),
        Some(writing),
    )
    .await
    .map_err(|e| e.to_string())?;
    locations::ensure_writable(&location).map_err(|e| e.to_string())?;
    locations::check(&location.name_any(), store.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    locations::check_object_lock(&location, store.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let name = backup.name_any();
    let existing = arca_store::BackupStore::new(store.as_ref())
        .exists(&name)
        .await
        .map_err(|e| e.to_string())?;
    if existing {
        return Err(format!(
            "location {} already holds a backup named {name}; it is kept as it is: give this Backup another name",
            location.name_any()
        ));
    }
    let seal_key = ctx
        .seal_keys()
        .await
        .map_err(|e| format!("the key that seals backups: {e}"))?
        .current()
        .clone();
    let encryption = ctx.location_keys(&location).await?;
    Ok((location, store, seal_key, encryption))
}
