//! Step 1 of a restore, before the claim: validate the spec (pure, the engine's rules), then
//! resolve what it refers to (the account it acts as, the backup, its location and
//! `backup.json`). Every problem found is one line of `status.validationErrors`.

use std::sync::Arc;

use arca_api::{AccessMode, Backup, BackupPhase, Restore, labels};
use arca_engine::{pod_volumes::VolumeJob, restore};
use arca_store::{DiscardStore, EncryptedStore, ObjectStore, archive::BackupMetadata};
use arca_velero::VeleroLocation;
use kube::{Api, ResourceExt, api::ListParams};

use crate::{backup_controller::location_for, context::Context};

/// Where a backup's items are read from.
pub(super) enum Source {
    /// Arca's own backup: its verified `backup.json` and the store it is read from.
    Arca {
        metadata: Box<BackupMetadata>,
        store: Arc<dyn ObjectStore>,
    },
    /// A backup Velero made, read in place (read-only); rewritten into scratch space once
    /// the restore is claimed (see `super::velero`).
    Velero { location: VeleroLocation },
}

/// What a valid Restore runs with.
pub(super) struct Resolved {
    pub backup: Backup,
    /// Where its items are read from.
    pub source: Source,
    /// The location written to (results, logs): None when it is ReadOnly.
    pub written_to: Option<String>,
    /// Where the restore's results and logs go (a DiscardStore for a ReadOnly location).
    pub output: Arc<dyn ObjectStore>,
    /// Where pod volume work goes, or why there is none.
    pub volumes: Result<VolumeJob, String>,
    /// The client the run writes the cluster with (impersonating a tenant's account).
    pub client: kube::Client,
    /// The user it acts as, when not the operator.
    pub acting_as: Option<String>,
    /// The namespace a tenant's restore is confined to.
    pub tenant: Option<String>,
}

/// Validates `restore` and resolves its references, or says every problem found.
pub(super) async fn resolve(
    restore: &Restore,
    ctx: &Context,
    tenant: Option<String>,
) -> Result<Resolved, Vec<String>> {
    let problems = restore::validate(&restore.spec, tenant.as_deref());
    if !problems.is_empty() {
        return Err(problems);
    }
    let namespace = restore.namespace().unwrap_or_default();
    let client = ctx
        .run_client(&namespace, restore.spec.service_account_name.as_deref())
        .await
        .map_err(|e| e.to_string());
    match (client, prepare(ctx, restore).await) {
        (Ok((client, acting_as)), Ok(found)) => Ok(Resolved {
            client,
            acting_as,
            tenant,
            ..found
        }),
        (client, found) => Err(client.err().into_iter().chain(found.err()).collect()),
    }
}

/// The backup, its location and metadata; the client fields are the operator's own until
/// [`resolve`] sets them.
async fn prepare(ctx: &Context, restore: &Restore) -> Result<Resolved, String> {
    let namespace = restore.namespace().unwrap_or_default();
    let backup = find_backup(ctx, restore).await?;
    if backup.is_made_by_velero() {
        return prepare_velero(ctx, restore, backup).await;
    }
    let location_name = backup.location_name();
    let (location, store) = location_for(ctx, &namespace, location_name.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let name = backup.name_any();
    let metadata = ctx
        .backup_metadata(store.as_ref(), &name)
        .await
        .map_err(|e| format!("reading backup {name}: {e}"))?
        .ok_or_else(|| format!("backup {name} has no backup.json in {}: it never completed there, or its data was deleted", store.describe()))?;
    if !metadata.is_sealed() && !restore.spec.allow_unauthenticated_backup {
        return Err(format!(
            "backup {name} is in storage format 1: its backup.json has no seal, so nothing tells whether someone with write access to the bucket changed it. If you trust the bucket, set spec.allowUnauthenticatedBackup: true on the Restore"
        ));
    }
    let stored: Backup = serde_json::from_value(metadata.backup.clone())
        .map_err(|e| format!("reading backup {name}: the Backup in backup.json: {e}"))?;
    if let Some(problem) = crate::sync::foreign_tenant(ctx, &stored, &namespace) {
        return Err(format!("backup {name}: {problem}"));
    }
    let keys = ctx.location_keys(&location).await?;
    let volumes = ctx
        .volume_job(&namespace, &location, store.clone())
        .await
        .map_err(|e| e.to_string());
    let read_from: Arc<dyn ObjectStore> = match (&metadata.encryption, &keys) {
        (None, _) => store.clone(),
        (Some(used), None) => {
            return Err(format!(
                "backup {name} is encrypted (key {}), but location {} names no encryption key: set its spec.encryption.keySecretRef to the Secret that holds that key",
                used.key_id,
                location.name_any()
            ));
        }
        (Some(used), Some(ring)) => {
            if ring
                .find(&arca_store::KeyId::from_stored(&used.key_id))
                .is_none()
            {
                return Err(format!(
                    "backup {name} is encrypted with key {}, which {} does not hold (it holds {}): add that key to the Secret (keep old keys while backups made with them are kept); nothing was restored",
                    used.key_id,
                    ring.source(),
                    ring.ids().join(", ")
                ));
            }
            Arc::new(EncryptedStore::new(store.clone(), ring.clone()))
        }
    };
    let output: Arc<dyn ObjectStore> = match (location.spec.access_mode, keys) {
        (AccessMode::ReadOnly, _) => Arc::new(DiscardStore),
        (_, Some(ring)) => Arc::new(EncryptedStore::new(store.clone(), ring)),
        (_, None) => store.clone(),
    };
    let written = (location.spec.access_mode != AccessMode::ReadOnly).then(|| location.name_any());
    Ok(Resolved {
        backup,
        source: Source::Arca {
            metadata: Box::new(metadata),
            store: read_from,
        },
        written_to: written,
        output,
        volumes,
        client: ctx.client.clone(),
        acting_as: None,
        tenant: None,
    })
}

/// A backup Velero made: read in place, never written. Velero's backups carry no checksum
/// or seal, so the Restore must say it trusts the bucket, as for Arca's unsealed format 1.
/// Nothing is written to the location (results and logs are discarded: Velero's folders
/// share its prefix). Velero's restic copies of pod volumes are restored by the node agents
/// from Velero's repositories, read only; other volume data is reported per volume.
async fn prepare_velero(
    ctx: &Context,
    restore: &Restore,
    backup: Backup,
) -> Result<Resolved, String> {
    let name = backup.name_any();
    if !restore.spec.allow_unauthenticated_backup {
        return Err(format!(
            "backup {name} was made by Velero: Velero's backups carry no checksum or seal, so nothing tells whether someone with write access to the bucket changed it. If you trust the bucket, set spec.allowUnauthenticatedBackup: true on the Restore (`arca restore create --allow-unauthenticated-backup`)"
        ));
    }
    let namespace = restore.namespace().unwrap_or_default();
    let (bsl, store) = location_for(ctx, &namespace, backup.location_name().as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let volumes = ctx
        .volume_job(&namespace, &bsl, store.clone())
        .await
        .map(|job| VolumeJob {
            velero_restic: true,
            ..job
        })
        .map_err(|e| e.to_string());
    let location = VeleroLocation::new(store);
    location
        .backup(&name)
        .await
        .and_then(|found| found.check_format())
        .map_err(|e| e.to_string())?;
    Ok(Resolved {
        backup,
        source: Source::Velero { location },
        written_to: None,
        output: Arc::new(DiscardStore),
        volumes,
        client: ctx.client.clone(),
        acting_as: None,
        tenant: None,
    })
}

/// The Backup to restore: named, or the newest Completed one of the schedule.
async fn find_backup(ctx: &Context, restore: &Restore) -> Result<Backup, String> {
    let namespace = restore.namespace().unwrap_or_default();
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let backup = match (&restore.spec.backup_name, &restore.spec.schedule_name) {
        (Some(name), _) if !name.is_empty() => backups
            .get_opt(name)
            .await
            .map_err(|e| format!("reading Backup {name}: {e}"))?
            .ok_or_else(|| format!("no Backup {name:?} in namespace {namespace} (see `arca backup get -n {namespace}`)"))?,
        (_, Some(schedule)) => {
            let params = ListParams::default().labels(&format!("{}={schedule}", labels::SCHEDULE_NAME));
            let mut found: Vec<Backup> = backups
                .list(&params)
                .await
                .map_err(|e| format!("listing backups of schedule {schedule}: {e}"))?
                .items
                .into_iter()
                .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Completed))
                .collect();
            found.sort_by_key(|b| b.status.as_ref().and_then(|s| s.start_timestamp.clone()).map(|t| t.0));
            found.pop().ok_or_else(|| format!("schedule {schedule:?} has no Completed backup in namespace {namespace}"))?
        }
        _ => return Err("set exactly one of backupName and scheduleName".into()),
    };
    let phase = backup
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    if !matches!(phase, BackupPhase::Completed | BackupPhase::PartiallyFailed) {
        return Err(format!(
            "backup {} is {phase:?}: only Completed or PartiallyFailed backups can be restored",
            backup.name_any()
        ));
    }
    Ok(backup)
}
