//! Pod volume data: the operator's side. A backup turns each requested pod volume into a
//! `PodVolumeBackup` for the node agent of the pod's node and waits for them all; a restore
//! turns each snapshot of a recreated pod into a `PodVolumeRestore`. The agents move the
//! data (`arca agent`, crate `arca-volume`); this module only creates the work items,
//! initializes each namespace's repository once (never two agents at a time), and waits.

pub mod backup;
pub mod restore;
mod wait;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use arca_store::{Layout, ObjectStore};

/// The password of the volume repositories (Secret `arca-repo-credentials`). Its `Debug`
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RepositoryPassword(String);

impl RepositoryPassword {
    pub fn new(password: String) -> Self {
        Self(password)
    }
    /// The password itself: only for opening a repository.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RepositoryPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepositoryPassword(<redacted>)")
    }
}

/// Who may write to a repository now. Backups (any number at once) share it; a prune
/// (a deletion) has it alone: rustic's prune marks packs in index files the plain restic CLI
/// does not read, so a backup deduplicating against them while a prune runs would leave
/// snapshots that `restic check` reports broken. One operator (the leader) creates all the
/// agents' work, so a lock in its process is enough.
#[derive(Debug, Default)]
pub struct RepositoryLocks(Mutex<BTreeMap<String, Arc<tokio::sync::RwLock<()>>>>);

impl RepositoryLocks {
    fn lock_of(&self, key: &str) -> Arc<tokio::sync::RwLock<()>> {
        match self.0.lock() {
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
    /// The folder of the repositories under the location's prefix: empty, or
    /// `tenants/<namespace>/` for a tenant using the operator's location.
    pub repository_prefix: String,
    /// The store at the location's prefix plus `repository_prefix` (the run's store).
    pub store: Arc<dyn ObjectStore>,
    pub password: RepositoryPassword,
    /// How long to wait for all of a run's volumes (`--fs-backup-timeout`).
    pub timeout: Duration,
    /// How long a work item may stay New before the run warns that no agent took it.
    pub pickup_warning: Duration,
    /// The operator's repository locks.
    pub locks: Arc<RepositoryLocks>,
}

impl std::fmt::Debug for VolumeJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeJob")
            .field("work_namespace", &self.work_namespace)
            .field("location", &self.location)
            .field("location_namespace", &self.location_namespace)
            .field("repository_prefix", &self.repository_prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl VolumeJob {
    /// The repository of `namespace`, relative to the location's prefix.
    pub fn repository(&self, namespace: &str) -> String {
        format!(
            "{}{}",
            self.repository_prefix,
            Layout::volume_repository(namespace)
        )
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

/// A name for a work item: the run's name, shortened, and a hash of what it moves.
fn item_name(run: &str, parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let hash = hex::encode(&hasher.finalize()[..5]);
    let mut prefix: String = run.chars().take(50).collect();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    format!("{prefix}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_are_short_stable_and_distinct() {
        let long = "b".repeat(200);
        let a = item_name(&long, &["ns", "pod", "data"]);
        assert!(a.len() <= 61, "{a}");
        assert_eq!(a, item_name(&long, &["ns", "pod", "data"]));
        assert_ne!(a, item_name(&long, &["ns", "pod", "logs"]));
        assert_ne!(item_name("x", &["a", "bc"]), item_name("x", &["ab", "c"]));
    }

    #[test]
    fn the_password_is_never_in_debug_output() {
        let p = RepositoryPassword::new("hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
        assert_eq!(p.reveal(), "hunter2");
    }
}
