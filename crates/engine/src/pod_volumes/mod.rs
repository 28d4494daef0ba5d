//! Pod volume data: the operator's side. A backup turns each requested pod volume into a
//! `PodVolumeBackup` for the node agent of the pod's node and waits for them all; a restore
//! turns each snapshot of a recreated pod into a `PodVolumeRestore`. The agents move the
//! data (`arca agent`, crate `arca-volume`); this module only creates the work items,
//! initializes each namespace's repository once (never two agents at a time), and waits.

pub mod backup;
pub mod placement;
pub mod populate;
pub mod restore;
mod wait;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use arca_store::ObjectStore;

pub use crate::protocol::RepositoryPassword;
use crate::protocol::{RepositoryId, derive_repository_password};

/// Who may write to a repository now. Backups (any number at once) share it; a prune
/// (a deletion) has it alone: rustic's prune marks packs in index files the plain restic CLI
/// does not read, so a backup deduplicating against them while a prune runs would leave
/// snapshots that `restic check` reports broken. One operator (the leader) creates all the
/// agents' work, so a lock in its process is enough.
///
/// It also remembers which repositories this process has found opening with their own
/// password only ([`RepositoryLocks::keys_checked`]), so the re-keying check (a key
/// derivation per key tried: scrypt, 128 MiB and a fraction of a second each) runs once per
/// repository and process.
#[derive(Debug, Default)]
pub struct RepositoryLocks {
    locks: Mutex<BTreeMap<String, Arc<tokio::sync::RwLock<()>>>>,
    keys_checked: Mutex<BTreeSet<String>>,
}

impl RepositoryLocks {
    /// True once [`RepositoryLocks::set_keys_checked`] was called for `key`.
    pub fn keys_checked(&self, key: &str) -> bool {
        self.keys_checked
            .lock()
            .map(|set| set.contains(key))
            .unwrap_or(false)
    }

    /// Remembers that the repository `key` opens with its own password only.
    pub fn set_keys_checked(&self, key: &str) {
        if let Ok(mut set) = self.keys_checked.lock() {
            set.insert(key.to_string());
        }
    }

    fn lock_of(&self, key: &str) -> Arc<tokio::sync::RwLock<()>> {
        match self.locks.lock() {
            Ok(mut map) => map.entry(key.to_string()).or_default().clone(),
            // A poisoned map only loses sharing: a fresh lock still orders this caller.
            Err(_) => Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    /// Shared use by backups of the repository `key` (see [`repository_key`]).
    pub async fn shared(&self, key: &str) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.lock_of(key).read_owned().await
    }

    /// Sole use, for a prune.
    pub async fn exclusive(&self, key: &str) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.lock_of(key).write_owned().await
    }
}

/// The key of a repository in [`RepositoryLocks`]: its location and folder.
pub fn repository_key(location_namespace: &str, location: &str, repository: &str) -> String {
    format!("{location_namespace}/{location}/{repository}")
}

/// Where a run's pod volume work goes, and how long it may take.
#[derive(Clone)]
pub struct VolumeJob {
    /// The operator's own client: PodVolumeBackups and PodVolumeRestores are Arca's objects,
    /// written as the operator even when the run's other requests impersonate a tenant.
    pub client: kube::Client,
    /// The namespace the PodVolumeBackups and PodVolumeRestores are created in (the
    /// operator's: tenants cannot make the agents read other namespaces' volumes).
    pub work_namespace: String,
    /// The BackupStorageLocation holding the repositories, and its namespace.
    pub location: String,
    pub location_namespace: String,
    /// A tenant's run writing to the operator's location: its repositories are in its
    /// tenant folder there.
    pub tenant_folder: bool,
    /// The location is Velero's: its repositories are Velero's restic ones
    /// (`restic/<namespace>/`), restored from only.
    pub velero_restic: bool,
    /// The run's store: at the location's prefix, plus the tenant folder if `tenant_folder`.
    pub store: Arc<dyn ObjectStore>,
    /// The installation's secret: each repository's own password is derived from it
    /// ([`VolumeJob::own_password`]); repositories not yet re-keyed open with it.
    pub password: RepositoryPassword,
    /// How long to wait for all of a run's volumes (`--fs-backup-timeout`).
    pub timeout: Duration,
    /// How long a work item may stay New before the run warns that no agent took it.
    pub pickup_warning: Duration,
    /// The operator's repository locks.
    pub locks: Arc<RepositoryLocks>,
    /// Where the bytes the work items move are summed, for the run's status
    /// ([`VolumeJob::reporting_to`]).
    pub progress: Arc<crate::progress::Progress>,
    /// Set when the run is to stop (its Backup was deleted): the work items still running
    /// are asked to stop ([`arca_api::labels::CANCEL`]) and waited for a short while.
    pub cancel: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for VolumeJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeJob")
            .field("work_namespace", &self.work_namespace)
            .field("location", &self.location)
            .field("location_namespace", &self.location_namespace)
            .field("tenant_folder", &self.tenant_folder)
            .field("velero_restic", &self.velero_restic)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl VolumeJob {
    /// This job, summing its work items' bytes into `progress`.
    pub fn reporting_to(mut self, progress: Arc<crate::progress::Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// This job, stopping its work items when `cancel` is set.
    pub fn canceled_by(mut self, cancel: tokio_util::sync::CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The repository of `namespace`, relative to the location's prefix.
    pub fn repository(&self, namespace: &str) -> RepositoryId {
        if self.velero_restic {
            RepositoryId::velero_restic(namespace)
        } else if self.tenant_folder {
            RepositoryId::in_tenant_folder(namespace)
        } else {
            RepositoryId::new(namespace)
        }
    }

    /// The own password of `namespace`'s repository (see [`derive_repository_password`]).
    pub fn own_password(&self, namespace: &str) -> RepositoryPassword {
        derive_repository_password(&self.password, &self.repository(namespace))
    }
}

/// The metadata of a work item of run `run` (name and uid): in the operator's namespace,
/// labelled with the run's name and uid under `keys` (name label, uid label).
fn work_metadata(
    job: &VolumeJob,
    name: String,
    keys: (&str, &str),
    run: (&str, &str),
) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name),
        namespace: Some(job.work_namespace.clone()),
        labels: Some(BTreeMap::from([
            (
                keys.0.to_string(),
                crate::restore::transform::label_value(run.0),
            ),
            (keys.1.to_string(), run.1.to_string()),
        ])),
        ..kube::api::ObjectMeta::default()
    }
}
