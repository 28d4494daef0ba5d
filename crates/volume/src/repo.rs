//! A namespace's volume repository: opening, creating, listing. Backup, restore and forget
//! are in their own modules.

use std::{fmt, sync::Arc};

use arca_store::{Layout, ObjectStore};
use rustic_core::{
    ConfigOptions, Credentials, FileType, KeyOptions, NoProgressBars, OpenStatus, ProgressBars,
    ReadBackend, Repository, RepositoryBackends, RepositoryOptions, WriteBackend,
};
use tokio::runtime::Handle;

use crate::{
    Compression, StoreBackend,
    error::{Result, VolumeError},
    key_cache::{KeyCache, Opened},
};

/// Size of the data packs of new repositories.
const DATA_PACK_MIB: u64 = 16;

/// Who a repository key says created it (its `username` and `hostname`, as `restic key
/// list` shows them).
const KEY_OWNER: &str = "arca";

/// What [`VolumeRepository::retire_password`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rekey {
    /// A key for the repository's own password was added (it opened only with the
    /// previous password).
    pub key_added: bool,
    /// Keys that the previous password opened, deleted.
    pub keys_removed: usize,
}

impl Rekey {
    /// True when the repository changed.
    pub fn changed(&self) -> bool {
        self.key_added || self.keys_removed > 0
    }
}

/// The restic-format repository of one namespace's pod volumes, at
/// `volumes/<namespace>/` in a location's store. Cheap to clone.
///
/// Every method runs rustic on a blocking thread of the current (multi-threaded) Tokio
/// runtime and opens the repository afresh (reads the keys, derives the password's key,
/// reads the config); only the derived master key may come from a [`KeyCache`].
#[derive(Clone)]
pub struct VolumeRepository {
    store: Arc<dyn ObjectStore>,
    root: String,
    password: Arc<str>,
    /// Tried when `password` is refused: the shared password of repositories not yet
    /// re-keyed ([`VolumeRepository::with_fallback_password`]).
    fallback: Option<Arc<str>>,
    /// When set, only snapshots with this tag (`namespace=<ns>`, `ns=<ns>`) are restored.
    namespace_only: Option<Arc<str>>,
    /// Master keys already opened by a password, shared by the process
    /// ([`VolumeRepository::with_key_cache`]).
    key_cache: Option<Arc<KeyCache>>,
    /// Whether backups compress file data ([`VolumeRepository::with_compression`]).
    compression: Compression,
    /// Stops this handle's operations, and why ([`VolumeRepository::with_cancel`]).
    cancel: Option<(crate::Cancel, Arc<str>)>,
}

impl fmt::Debug for VolumeRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VolumeRepository")
            .field("store", &self.store.describe())
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// A snapshot in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The full id (64 hex digits).
    pub id: String,
    /// The paths it records (the stable `as_path` of the backup).
    pub paths: Vec<String>,
    /// Its tags, sorted.
    pub tags: Vec<String>,
    /// The host name it records.
    pub hostname: String,
    /// When it was taken.
    pub time: jiff::Timestamp,
}

/// The public part of the keys Arca writes.
fn key_options() -> KeyOptions {
    let mut key = KeyOptions::default();
    key.hostname = Some(KEY_OWNER.into());
    key.username = Some(KEY_OWNER.into());
    key.with_created = true;
    key
}

impl VolumeRepository {
    /// The repository of `namespace`'s volumes in `store`, opened with `password` (Arca
    /// gives each repository its own, derived from Secret `arca-repo-credentials`, key
    /// `repository-password`).
    pub fn new(store: Arc<dyn ObjectStore>, namespace: &str, password: String) -> Self {
        Self {
            store,
            root: Layout::volume_repository(namespace),
            password: password.into(),
            fallback: None,
            namespace_only: None,
            key_cache: None,
            compression: Compression::Auto,
            cancel: None,
        }
    }

    /// The repository under any key prefix `root` of `store` (a tenant's
    /// `tenants/<namespace>/volumes/<namespace>/`, a repository named in a work item).
    pub fn at_root(store: Arc<dyn ObjectStore>, root: &str, password: String) -> Self {
        let mut root = root.trim_start_matches('/').to_string();
        if !root.is_empty() && !root.ends_with('/') {
            root.push('/');
        }
        Self {
            store,
            root,
            password: password.into(),
            fallback: None,
            namespace_only: None,
            key_cache: None,
            compression: Compression::Auto,
            cancel: None,
        }
    }

    /// Opens with `fallback` when the password is refused as wrong (a repository not yet
    /// re-keyed to its own password: [`VolumeRepository::retire_password`]). Which one
    /// opened is logged at debug level, never the password.
    pub fn with_fallback_password(mut self, fallback: String) -> Self {
        self.fallback = Some(fallback.into());
        self
    }

    /// This repository, restoring only snapshots tagged `tag`: the namespace's own, as the
    /// writer tagged them (`namespace=<ns>` by Arca, `ns=<ns>` by Velero). A work item naming
    /// another namespace's snapshot is refused before anything is written.
    pub fn only_tagged(mut self, tag: String) -> Self {
        self.namespace_only = Some(tag.into());
        self
    }

    /// Opens with a master key that this password opened before (see [`KeyCache`]), skipping
    /// the key derivation, while the key file it came from is still in the repository; a
    /// password open fills the cache.
    pub fn with_key_cache(mut self, cache: Arc<KeyCache>) -> Self {
        self.key_cache = Some(cache);
        self
    }

    /// Backups through this handle compress file data as `compression` says (default
    /// [`Compression::Auto`]). Applies to Arca's writer; rustic's archiver
    /// ([`crate::BackupWriter::Rustic`]) compresses as the repository's config says.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Operations through this handle stop once `cancel` is set, failing with
    /// [`crate::VolumeError::Canceled`] and `reason` (who stopped them). A backup checks it
    /// at every chunk it reads and before every write; a stopped backup writes no snapshot.
    pub fn with_cancel(mut self, cancel: crate::Cancel, reason: &str) -> Self {
        self.cancel = Some((cancel, reason.into()));
        self
    }

    /// How backups through this handle compress file data.
    pub(crate) fn compression(&self) -> Compression {
        self.compression
    }

    /// The tag [`Self::only_tagged`] restricts restores to.
    pub(crate) fn namespace_only(&self) -> Option<&str> {
        self.namespace_only.as_deref()
    }

    /// The repository's key prefix in the store, ending with `/`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Where the repository is (`<store>/volumes/<namespace>`), for messages.
    pub fn location(&self) -> String {
        crate::backend::describe(self.store.as_ref(), &self.root)
    }

    /// Creates the repository if it has no `config` yet (format version 2, zstd
    /// compression, rustic's default chunker and key parameters) and returns true; returns
    /// false when it exists (the password is checked by whoever opens it next).
    ///
    /// Only one process may call this for a namespace at a time (the operator, before it
    /// starts the namespace's first volume backup): two concurrent creations would each write
    /// a key and the one `config`; the `config` that stays is encrypted for one key only, and
    /// opening fails whenever the other key is tried first.
    pub async fn ensure_initialized(&self) -> Result<bool> {
        let this = self.clone();
        self.run("creating the volume repository", move |be| {
            let location = be.location();
            let repo = this.repository(be, NoProgressBars)?;
            let exists = repo
                .config_id()
                .map_err(|e| VolumeError::rustic("reading the repository config", &location, &e))?
                .is_some();
            if exists {
                // Not opened here: that derives the key (scrypt) for nothing on every backup;
                // the data movers open it, and report a wrong password in the same words.
                return Ok(false);
            }
            let key = key_options();
            let mut config = ConfigOptions::default();
            config.set_version = Some(2);
            // Data packs of a fixed 16 MiB, as restic's: rustic's default (32 MiB, growing
            // with the repository) keeps several times as much in flight in the agent.
            config.set_datapack_size = Some(bytesize::ByteSize::mib(DATA_PACK_MIB));
            config.set_datapack_growfactor = Some(0);
            config.set_datapack_size_limit = Some(bytesize::ByteSize::mib(DATA_PACK_MIB));
            repo.init(&this.credentials(), &key, &config)
                .map_err(|e| VolumeError::rustic("creating the repository", &location, &e))?;
            tracing::info!(%location, "created volume repository");
            Ok(true)
        })
        .await
    }

    /// Every snapshot in the repository, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let this = self.clone();
        self.run("listing volume snapshots", move |be| {
            let location = be.location();
            let repo = this.open(be, NoProgressBars)?;
            let mut snapshots = repo
                .get_all_snapshots()
                .map_err(|e| VolumeError::rustic("listing snapshots", &location, &e))?;
            snapshots.sort_by(|a, b| a.time.cmp(&b.time));
            Ok(snapshots
                .into_iter()
                .map(|s| SnapshotInfo {
                    id: s.id.to_hex().as_str().to_string(),
                    paths: s.paths.iter().cloned().collect(),
                    tags: s.tags.iter().cloned().collect(),
                    hostname: s.hostname,
                    time: s.time.timestamp(),
                })
                .collect())
        })
        .await
    }

    pub(crate) fn credentials(&self) -> Credentials {
        Credentials::password(&*self.password)
    }

    /// A rustic repository (not yet opened) on `be`. No cache: a data mover runs in
    /// short-lived pods, and the cache would only duplicate the index in the pod's disk.
    pub(crate) fn repository(
        &self,
        be: Arc<StoreBackend>,
        bars: impl ProgressBars,
    ) -> Result<Repository<()>> {
        let location = be.location();
        let backends = RepositoryBackends::new(be as Arc<dyn WriteBackend>, None);
        let opts = RepositoryOptions::default().no_cache(true);
        Repository::new_with_progress(&opts, &backends, bars)
            .map_err(|e| VolumeError::rustic("opening the repository", &location, &e))
    }

    /// The opened repository on `be`: [`VolumeError::NotInitialized`] when there is none,
    /// [`VolumeError::WrongPassword`] when the password opens no key.
    /// With a fallback password ([`VolumeRepository::with_fallback_password`]), that one is
    /// tried when the password is refused.
    pub(crate) fn open(
        &self,
        be: Arc<StoreBackend>,
        bars: impl ProgressBars + Clone,
    ) -> Result<Repository<OpenStatus>> {
        let location = be.location();
        match self.open_with(be.clone(), bars.clone(), &self.password) {
            Ok(repo) => {
                tracing::debug!(%location, "opened the volume repository with its own password");
                Ok(repo)
            }
            Err(refused @ VolumeError::WrongPassword { .. }) => {
                let Some(fallback) = self.fallback.as_deref() else {
                    return Err(refused);
                };
                let repo = self.open_with(be, bars, fallback)?;
                tracing::debug!(
                    %location,
                    "opened the volume repository with the shared password: it has not been re-keyed to its own yet"
                );
                Ok(repo)
            }
            Err(e) => Err(e),
        }
    }

    /// The opened repository on `be` with `password` alone: from the key cache when this
    /// password opened it before and its key file is still there, else by the password.
    fn open_with(
        &self,
        be: Arc<StoreBackend>,
        bars: impl ProgressBars + Clone,
        password: &str,
    ) -> Result<Repository<OpenStatus>> {
        let location = be.location();
        let repo = self.repository(be.clone(), bars.clone())?;
        let exists = repo
            .config_id()
            .map_err(|e| VolumeError::rustic("reading the repository config", &location, &e))?
            .is_some();
        if !exists {
            return Err(VolumeError::NotInitialized { location });
        }
        let cache = self.key_cache.as_deref();
        if let Some(cached) = cache.and_then(|c| c.get(&location, password)) {
            let keys = be
                .list(FileType::Key)
                .map_err(|e| VolumeError::rustic("listing the repository keys", &location, &e))?;
            if keys.contains(&*cached.key_id) {
                let again = self.repository(be.clone(), bars)?;
                if let Ok(opened) = again.open(&Credentials::Masterkey(cached.master)) {
                    tracing::debug!(%location, "opened the volume repository with a cached key");
                    return Ok(opened);
                }
            }
            cache.inspect(|c| c.forget(&location, password));
        }
        let opened = repo
            .open(&Credentials::password(password))
            .map_err(|e| VolumeError::rustic("opening the repository", &location, &e))?;
        if let (Some(cache), Some(key_id)) = (cache, *opened.key_id()) {
            let master = opened.key();
            cache.put(&location, password, Opened { key_id, master });
        }
        Ok(opened)
    }

    /// Re-keys the repository from `previous` to this handle's password: when only
    /// `previous` opens it, adds a key for this handle's password; then deletes every key
    /// that `previous` opens. Afterwards the repository opens with this handle's password and
    /// not with `previous`. Idempotent, and safe to run again after a crash at any point: the
    /// key is added before any is deleted, so the repository always opens with at least one
    /// of the two. Keys that neither password opens (an admin's own `restic key add`) are
    /// left alone.
    ///
    /// Costs one key derivation (scrypt) per key tried, for each password: run it once per
    /// repository, not before every backup. Only one process may run it on a repository at a
    /// time, and no data mover should open the repository meanwhile (a key deleted between
    /// its listing and its reading fails that open).
    ///
    /// [`VolumeError::WrongPassword`] when neither password opens the repository,
    /// [`VolumeError::NotInitialized`] when there is none.
    pub async fn retire_password(&self, previous: String) -> Result<Rekey> {
        // Which key each password opens matters here: never from the cache.
        let mut this = self.clone();
        this.key_cache = None;
        self.run("re-keying the volume repository", move |be| {
            let location = be.location();
            let mut outcome = Rekey::default();
            let own = match this.open_with(be.clone(), NoProgressBars, &this.password) {
                Ok(repo) => repo,
                Err(VolumeError::WrongPassword { .. }) => {
                    let old = this.open_with(be.clone(), NoProgressBars, &previous)?;
                    old.add_key(&this.password, &key_options()).map_err(|e| {
                        VolumeError::rustic("adding the repository's own key", &location, &e)
                    })?;
                    outcome.key_added = true;
                    tracing::debug!(%location, "added the volume repository's own key");
                    this.open_with(be.clone(), NoProgressBars, &this.password)?
                }
                Err(e) => return Err(e),
            };
            // Each round deletes one key that `previous` opens; bounded by the keys there are.
            let keys = own
                .list::<rustic_core::repofile::KeyId>()
                .map_err(|e| VolumeError::rustic("listing the repository keys", &location, &e))?
                .count();
            for _ in 0..keys {
                let old = match this.open_with(be.clone(), NoProgressBars, &previous) {
                    Ok(old) => old,
                    Err(VolumeError::WrongPassword { .. }) => break,
                    Err(e) => return Err(e),
                };
                let Some(old_key) = *old.key_id() else { break };
                if own.key_id().as_ref() == Some(&old_key) {
                    // Both passwords open the same key: they are the same password.
                    break;
                }
                own.delete_key(&old_key).map_err(|e| {
                    VolumeError::rustic("deleting the shared password's key", &location, &e)
                })?;
                outcome.keys_removed += 1;
            }
            if outcome.changed() {
                tracing::info!(
                    %location,
                    key_added = outcome.key_added,
                    keys_removed = outcome.keys_removed,
                    "re-keyed the volume repository: it opens with its own password only"
                );
            }
            Ok(outcome)
        })
        .await
    }

    /// Runs `work` on a blocking thread with a fresh backend. A panic inside rustic (it
    /// unwraps failed store reads while restoring) becomes [`VolumeError::Aborted`] carrying
    /// the last store error.
    pub(crate) async fn run<T, F>(&self, operation: &str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<StoreBackend>) -> Result<T> + Send + 'static,
    {
        let mut be = StoreBackend::new(self.store.clone(), &self.root, Handle::current());
        if let Some((cancel, _)) = &self.cancel {
            be = be.canceled_by(cancel.clone());
        }
        let be = Arc::new(be);
        let worker = be.clone();
        let outcome = tokio::task::spawn_blocking(move || work(worker)).await;
        // Whatever a stopped operation failed with, it failed because it was stopped.
        if let Some((cancel, reason)) = &self.cancel
            && cancel.is_canceled()
            && !matches!(outcome, Ok(Ok(_)))
        {
            return Err(VolumeError::Canceled {
                operation: operation.to_string(),
                reason: reason.to_string(),
            });
        }
        match outcome {
            Ok(result) => result,
            Err(err) => {
                let panic = if err.is_panic() {
                    let payload = err.into_panic();
                    payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
                        .unwrap_or_else(|| "a panic in rustic".into())
                } else {
                    err.to_string()
                };
                Err(VolumeError::Aborted {
                    operation: operation.to_string(),
                    detail: be.last_error().unwrap_or(panic),
                })
            }
        }
    }
}
