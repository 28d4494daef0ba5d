//! What every controller shares.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use arca_engine::{
    backup::BackupSettings,
    pod_volumes::{RepositoryLocks, RepositoryPassword, VolumeJob},
    restore::RestoreSettings,
};
use kube::{
    Client, Resource,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

use arca_runtime::keys::{KeyRingError, ensure_seal_keys};
use arca_runtime::repository::{PasswordError, ensure_password};
use arca_store::KeyRing;

use crate::metrics::Metrics;

/// The clock controllers read; tests substitute their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> jiff::Timestamp;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// Operator settings (flags of `arca server`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The operator's own namespace: Backups and Restores elsewhere are a tenant's.
    pub namespace: String,
    pub default_backup_ttl: Duration,
    pub backup: BackupSettings,
    pub restore: RestoreSettings,
    pub max_concurrent_backups: u16,
    pub max_concurrent_restores: u16,
    /// Default check period of locations.
    pub validation_frequency: Duration,
    /// How often garbage collection looks for expired backups.
    pub gc_frequency: Duration,
    /// How often locations are synced, unless they say otherwise (`0`: never).
    pub backup_sync_period: Duration,
    /// Hold a Lease so only one replica works; None runs without (a single process).
    pub leader_election: Option<crate::leader::LeaderElection>,
    /// Watch only this namespace's Backups, Restores and locations (as Velero does).
    /// None: every namespace, so tenants can back up their own.
    pub watch_namespace: Option<String>,
    /// How long a backup or restore waits for its pod volumes (`--fs-backup-timeout`).
    pub fs_backup_timeout: Duration,
    /// The image of the restore helper init container (Arca's own image; `arca install` sets
    /// it). None: restored pods get none, and may start before their volumes are filled.
    pub restore_helper_image: Option<String>,
    /// The ServiceAccount a tenant's run impersonates when its spec names none
    /// (`--default-service-account`).
    pub default_service_account: String,
    /// Where tenants' own locations may point (`--tenant-storage`); empty: nowhere, tenants
    /// use the operator's location.
    pub tenant_storage: Vec<arca_runtime::tenant_storage::AllowedStorage>,
    /// Where a restore of a Velero backup rewrites its items as Arca's archive
    /// (`--scratch-dir`): one folder per restore, removed when it ends.
    pub scratch_dir: std::path::PathBuf,
    /// The most archive bytes one such restore may write there (`--scratch-bytes`).
    pub scratch_bytes: u64,
}

impl Settings {
    /// Whose locations are whose, for [`arca_runtime::locations::open_store`].
    pub fn storage_policy(&self) -> arca_runtime::locations::StoragePolicy<'_> {
        arca_runtime::locations::StoragePolicy {
            operator_namespace: &self.namespace,
            tenant_storage: &self.tenant_storage,
        }
    }

    /// The API of `K` objects this operator handles.
    pub fn watched<K>(&self, client: &Client) -> kube::Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match &self.watch_namespace {
            Some(ns) => kube::Api::namespaced(client.clone(), ns),
            None => kube::Api::all(client.clone()),
        }
    }
}

/// Shared by the controllers.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    recorder: Recorder,
    /// uids of the backups and restores this process runs now, or ran: an InProgress object
    /// not among them was left by a previous process.
    pub running: Mutex<BTreeSet<String>>,
    pub finished: Mutex<BTreeSet<String>>,
    /// Backups share a volume repository; a prune has it alone.
    pub repository_locks: Arc<RepositoryLocks>,
    /// Consecutive reconcile failures per object.
    pub backoff: arca_runtime::backoff::Backoff,
    /// The seal keys, read once and again when a seal names a key they lack (a Secret
    /// copied in for a migration is then taken without a restart).
    seal_keys: tokio::sync::RwLock<Option<KeyRing>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let reporter = Reporter {
            controller: "arca".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            clock,
            running: Mutex::new(BTreeSet::new()),
            finished: Mutex::new(BTreeSet::new()),
            repository_locks: Arc::default(),
            backoff: arca_runtime::backoff::Backoff::default(),
            seal_keys: tokio::sync::RwLock::new(None),
        }
    }

    /// This context with `ring` as its seal keys, read from no Secret (tests).
    #[cfg(test)]
    pub fn with_seal_keys(self, ring: KeyRing) -> Self {
        Self {
            seal_keys: tokio::sync::RwLock::new(Some(ring)),
            ..self
        }
    }

    /// The keys that seal `backup.json` (Secret `arca-metadata-key`, made when absent).
    pub async fn seal_keys(&self) -> Result<KeyRing, KeyRingError> {
        if let Some(ring) = self.seal_keys.read().await.clone() {
            return Ok(ring);
        }
        self.reload_seal_keys().await
    }

    /// The seal keys read afresh from their Secret.
    pub async fn reload_seal_keys(&self) -> Result<KeyRing, KeyRingError> {
        let ring = ensure_seal_keys(&self.client, &self.settings.namespace).await?;
        *self.seal_keys.write().await = Some(ring.clone());
        Ok(ring)
    }

    /// The encryption keys of `location` (None when it does not encrypt), or why they cannot
    /// be read, said for a Backup's or Restore's validation errors.
    pub async fn location_keys(
        &self,
        location: &arca_api::BackupStorageLocation,
    ) -> Result<Option<KeyRing>, String> {
        use kube::ResourceExt;
        arca_runtime::keys::location_keys(&self.client, location)
            .await
            .map_err(|e| {
                format!(
                    "location {} encrypts its backups, but its key cannot be read: {e}",
                    location.name_any()
                )
            })
    }

    /// `backup.json` of `name` in `store`, its seal checked; when the seal does not hold
    /// with the keys known, once more with the keys read afresh.
    pub async fn backup_metadata(
        &self,
        store: &dyn arca_store::ObjectStore,
        name: &str,
    ) -> Result<Option<arca_store::archive::BackupMetadata>, String> {
        let backups = arca_store::BackupStore::new(store);
        let ring = self.seal_keys().await.map_err(|e| e.to_string())?;
        match backups.metadata(name, &ring).await {
            Err(arca_store::StoreError::Unauthentic { .. }) => {
                let ring = self.reload_seal_keys().await.map_err(|e| e.to_string())?;
                backups
                    .metadata(name, &ring)
                    .await
                    .map_err(|e| e.to_string())
            }
            other => other.map_err(|e| e.to_string()),
        }
    }

    /// The volume repositories' password, read at each use (a Secret copied in for a
    /// migration is taken at once); made when the Secret is absent.
    pub async fn repository_password(&self) -> Result<RepositoryPassword, PasswordError> {
        ensure_password(&self.client, &self.settings.namespace).await
    }

    /// Where a run's pod volume work goes: the run's location and store.
    pub async fn volume_job(
        &self,
        run_namespace: &str,
        location: &arca_api::BackupStorageLocation,
        store: Arc<dyn arca_store::ObjectStore>,
    ) -> Result<VolumeJob, PasswordError> {
        use kube::ResourceExt;
        let location_namespace = location.namespace().unwrap_or_default();
        // A tenant writing to the operator's location works in its folder there.
        let tenant_folder = location_namespace != run_namespace;
        Ok(VolumeJob {
            client: self.client.clone(),
            work_namespace: self.settings.namespace.clone(),
            location: location.name_any(),
            location_namespace,
            tenant_folder,
            velero_restic: false,
            store,
            password: self.repository_password().await?,
            timeout: self.settings.fs_backup_timeout,
            pickup_warning: Duration::from_secs(60),
            locks: self.repository_locks.clone(),
            progress: Arc::default(),
            cancel: Default::default(),
        })
    }

    /// The client a run in `run_namespace` reads and writes the cluster with (see
    /// [`crate::identity`]): the operator's own for an admin's run, else one impersonating
    /// the tenant's ServiceAccount, with the user name it acts as.
    pub async fn run_client(
        &self,
        run_namespace: &str,
        requested: Option<&str>,
    ) -> Result<(Client, Option<String>), crate::identity::IdentityError> {
        let identity = crate::identity::decide(
            run_namespace,
            &self.settings.namespace,
            requested,
            &self.settings.default_service_account,
        )?;
        let client = crate::identity::client_for(&self.client, &identity).await?;
        Ok((client, identity.user()))
    }

    /// A reconcile of `object` by `controller` failed: logged, counted, and retried after
    /// the object's backoff.
    pub fn reconcile_failed<K: kube::Resource>(
        &self,
        controller: &str,
        object: &K,
        error: &dyn std::fmt::Display,
    ) -> kube::runtime::controller::Action {
        let key = arca_runtime::backoff::key(controller, object);
        let wait = self.backoff.failed(&key);
        tracing::warn!(object = %key, retry_in = ?wait, "{error}");
        self.metrics
            .reconcile_failures
            .get_or_create(&crate::metrics::ControllerLabels {
                controller: controller.into(),
            })
            .inc();
        kube::runtime::controller::Action::requeue(wait)
    }

    /// Runs `controller` (configured: its watches and concurrency) as controller `name`
    /// until `shutdown`: each object goes through `reconcile` via [`Context::tracked`], a
    /// failure through [`Context::reconcile_failed`] (backoff, metric); results are logged
    /// at debug level. The one way every controller of the operator runs.
    pub async fn drive<K, E, Fut, R>(
        self: Arc<Self>,
        name: &'static str,
        controller: kube::runtime::Controller<K>,
        shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
        reconcile: R,
    ) where
        R: Fn(Arc<K>, Arc<Context>) -> Fut + Clone + Send + Sync + 'static,
        K: Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
        E: std::error::Error + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, E>>
            + Send
            + 'static,
    {
        use futures::StreamExt;
        controller
            .graceful_shutdown_on(shutdown)
            .run(
                move |object, ctx| ctx.tracked(name, object, reconcile.clone()),
                move |object, error, ctx| ctx.reconcile_failed(name, object.as_ref(), error),
                self,
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(controller = name, "reconcile: {e}");
                }
            })
            .await;
    }

    /// Runs `reconcile` on `object`: a success resets the object's backoff (failures go
    /// through [`Context::reconcile_failed`], the controllers' error policy).
    pub async fn tracked<K, E, Fut>(
        self: Arc<Self>,
        controller: &str,
        object: Arc<K>,
        reconcile: impl FnOnce(Arc<K>, Arc<Context>) -> Fut,
    ) -> Result<kube::runtime::controller::Action, E>
    where
        K: kube::Resource,
        Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, E>>,
    {
        let result = reconcile(object.clone(), self.clone()).await;
        if result.is_ok() {
            self.reconcile_succeeded(controller, object.as_ref());
        }
        result
    }

    /// A reconcile of `object` by `controller` succeeded: its backoff starts over.
    pub fn reconcile_succeeded<K: kube::Resource>(&self, controller: &str, object: &K) {
        self.backoff
            .succeeded(&arca_runtime::backoff::key(controller, object));
    }

    /// Publishes an Event about `object`; failures to publish are only logged.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let note: String = note.chars().take(1000).collect();
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            action: event_action(reason, &note),
            note: Some(note),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!("publishing event {reason}: {e}");
        }
    }

    /// Where a uid stands in this process.
    pub fn ownership(&self, uid: &str) -> Ownership {
        if self.running.lock().is_ok_and(|r| r.contains(uid)) {
            Ownership::Running
        } else if self.finished.lock().is_ok_and(|f| f.contains(uid)) {
            Ownership::Finished
        } else {
            Ownership::Unknown
        }
    }

    pub fn start(&self, uid: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.insert(uid.into());
        }
    }

    pub fn finish(&self, uid: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(uid);
        }
        if let Ok(mut f) = self.finished.lock() {
            f.insert(uid.into());
        }
    }
}

/// Whether this process runs (or ran) a given backup or restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    Running,
    /// Done here; the cache may still show it InProgress.
    Finished,
    /// Not this process's: left InProgress by a previous one.
    Unknown,
}

/// The `action` of an Event: its reason and a short hash of its note. kube's recorder folds
/// Events of one object with the same type, reason and action into one (a series, keeping
/// the first note): the same note again is counted, a different note (another volume not
/// restored, another failure) stays an Event of its own.
fn event_action(reason: &str, note: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(note.as_bytes());
    format!("{reason}-{}", hex::encode(&hash[..4]))
}

#[cfg(test)]
mod event_action_tests {
    #[test]
    fn notes_that_differ_make_different_actions_and_a_repeat_the_same() {
        let a = super::event_action("NotRestored", "volume a");
        assert_eq!(a, super::event_action("NotRestored", "volume a"));
        assert_ne!(a, super::event_action("NotRestored", "volume b"));
        assert!(a.starts_with("NotRestored-") && a.len() <= 128, "{a}");
    }
}
