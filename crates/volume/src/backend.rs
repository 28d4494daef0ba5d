//! rustic's backend traits over an Arca [`ObjectStore`], in restic's key layout.
//!
//! ```text
//! <root>config
//! <root>keys/<id>
//! <root>snapshots/<id>
//! <root>index/<id>
//! <root>data/<first two hex digits of id>/<id>
//! ```
//!
//! rustic is synchronous and calls the backend from many threads of its own (packers, a
//! restore pool of 20 readers); every method blocks on the store's future with
//! [`Handle::block_on`]. Call rustic from `tokio::task::spawn_blocking` (or a plain
//! thread) of a multi-threaded runtime, never from an async task.

use std::{
    fmt,
    ops::Range,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use arca_store::{ObjectStore, StoreError};
use bytes::{Bytes, BytesMut};
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};
use tokio::{io::AsyncReadExt, runtime::Handle};

use crate::tree_packs::{BUDGET as TREE_PACKS_BUDGET, TreePacks};

/// The largest config, key, snapshot or index file read whole (restic's are kilobytes to a
/// few MiB): whoever can write to the bucket must not make the agent allocate without bound.
pub const MAX_WHOLE_FILE: u64 = 256 * 1024 * 1024;

/// Bytes moved through a [`StoreBackend`], for "bytes uploaded" reports.
#[derive(Debug, Default)]
pub struct TransferCounters {
    written: AtomicU64,
    read: AtomicU64,
}

impl TransferCounters {
    /// Bytes put to the store so far (files and packs, as stored: encrypted, compressed).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Bytes read from the store so far.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

/// A restic-format repository's files as objects under `root` in an [`ObjectStore`].
pub struct StoreBackend {
    store: Arc<dyn ObjectStore>,
    root: String,
    handle: Handle,
    counters: Arc<TransferCounters>,
    last_error: Mutex<Option<String>>,
    tree_packs: Mutex<TreePacks>,
    cancel: crate::Cancel,
}

impl fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBackend")
            .field("location", &self.location())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl StoreBackend {
    /// A backend for the repository under `root` (a key prefix; a trailing `/` is added when
    /// missing) that runs the store's futures on `handle`.
    pub fn new(store: Arc<dyn ObjectStore>, root: &str, handle: Handle) -> Self {
        let mut root = root.trim_start_matches('/').to_string();
        if !root.is_empty() && !root.ends_with('/') {
            root.push('/');
        }
        Self {
            store,
            root,
            handle,
            counters: Arc::default(),
            last_error: Mutex::default(),
            tree_packs: Mutex::default(),
            cancel: crate::Cancel::default(),
        }
    }

    /// This backend, refusing every write once `cancel` is set.
    pub fn canceled_by(mut self, cancel: crate::Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// The flag that stops writes through this backend.
    pub(crate) fn cancel(&self) -> &crate::Cancel {
        &self.cancel
    }

    /// The byte counters, shared: they keep counting while the backend is in use.
    pub fn counters(&self) -> Arc<TransferCounters> {
        self.counters.clone()
    }

    /// The message of the last store error this backend saw, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The key of a repository file: restic's layout, exactly.
    pub fn key(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        let hex = hex.as_str();
        match tpe {
            FileType::Config => format!("{}config", self.root),
            FileType::Pack => format!("{}data/{}/{hex}", self.root, &hex[..2]),
            _ => format!("{}{}/{hex}", self.root, tpe.dirname()),
        }
    }

    fn fail(&self, operation: &str, key: &str, err: StoreError) -> Box<RusticError> {
        let message = format!("{operation} {key}: {err}");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message);
        }
        RusticError::with_source(
            ErrorKind::Backend,
            "{operation} `{key}` in the object store failed.",
            err,
        )
        .attach_context("operation", operation)
        .attach_context("key", key)
    }

    /// Ids (and sizes) of the objects directly in `folder` (ending in `/`), or, for packs,
    /// in its two-hex-digit subfolders; anything else is skipped.
    fn list_folder(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let folder = format!("{}{}/", self.root, tpe.dirname());
        let objects = self
            .handle
            .block_on(self.store.list(&folder))
            .map_err(|e| self.fail("listing", &folder, e))?;
        let mut out = Vec::with_capacity(objects.len());
        for object in objects {
            let Some(rest) = object.key.strip_prefix(&folder) else {
                continue;
            };
            let name = match (tpe, rest.split_once('/')) {
                (FileType::Pack, Some((sub, name))) if name.get(..2) == Some(sub) => name,
                (FileType::Pack, _) | (_, Some(_)) => continue,
                (_, None) => rest,
            };
            if !is_id(name) {
                continue;
            }
            let Ok(id) = name.parse::<Id>() else {
                continue;
            };
            let size = u32::try_from(object.size).map_err(|_| {
                RusticError::new(
                    ErrorKind::Backend,
                    "Object `{key}` is larger than 4 GiB, which restic repositories do not have. Remove it from the repository folder.",
                )
                .attach_context("key", object.key.clone())
            })?;
            out.push((id, size));
        }
        Ok(out)
    }

    /// The bytes of `range` of `key`: never more than the range's length, and memory grows
    /// with what arrives (a length claimed by a tampered index reserves at most 8 MiB ahead).
    fn read_range(&self, key: &str, range: Range<u64>) -> RusticResult<Bytes> {
        let read = async {
            let length = range.end.saturating_sub(range.start);
            let reader = self.store.reader(key, Some(range)).await?;
            let reserve = usize::try_from(length.min(8 * 1024 * 1024)).unwrap_or(0);
            let mut buf = Vec::with_capacity(reserve);
            reader
                .take(length)
                .read_to_end(&mut buf)
                .await
                .map_err(|source| StoreError::Io {
                    operation: "reading",
                    path: key.to_string(),
                    source,
                })?;
            Ok::<_, StoreError>(buf)
        };
        let data = self
            .handle
            .block_on(read)
            .map_err(|e| self.fail("reading", key, e))?;
        self.counters
            .read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(Bytes::from(data))
    }
}

/// `<store>/<root>`: where a repository is, for messages.
pub(crate) fn describe(store: &dyn ObjectStore, root: &str) -> String {
    format!(
        "{}/{}",
        store.describe().trim_end_matches('/'),
        root.trim_end_matches('/')
    )
}

/// A restic id: 64 lowercase hex digits.
fn is_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ReadBackend for StoreBackend {
    fn location(&self) -> String {
        describe(self.store.as_ref(), &self.root)
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe != FileType::Config {
            return self.list_folder(tpe);
        }
        let key = self.key(FileType::Config, &Id::default());
        let size = self
            .handle
            .block_on(self.store.size(&key))
            .map_err(|e| self.fail("reading", &key, e))?;
        Ok(size
            .map(|size| (Id::default(), u32::try_from(size).unwrap_or(u32::MAX)))
            .into_iter()
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let key = self.key(tpe, id);
        let data = self
            .handle
            .block_on(self.store.get_bounded(&key, MAX_WHOLE_FILE))
            .map_err(|e| self.fail("reading", &key, e))?;
        self.counters
            .read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let key = self.key(tpe, id);
        let (at, len) = (offset as usize, length as usize);
        // Tree blobs (the only cacheable blobs in packs): read their pack whole, once.
        if cacheable && tpe == FileType::Pack {
            if let Some(held) = self
                .tree_packs
                .lock()
                .ok()
                .and_then(|p| p.slice(&key, at, len))
            {
                return Ok(held);
            }
            // Never more than the budget of held packs: a larger pack (or a tampered one) is
            // read by range below instead.
            match self
                .handle
                .block_on(self.store.get_bounded(&key, TREE_PACKS_BUDGET as u64))
            {
                Ok(pack) => {
                    self.counters
                        .read
                        .fetch_add(pack.len() as u64, Ordering::Relaxed);
                    let wanted = (at + len <= pack.len()).then(|| pack.slice(at..at + len));
                    if let Ok(mut packs) = self.tree_packs.lock() {
                        packs.keep(key.clone(), pack);
                    }
                    if let Some(wanted) = wanted {
                        return Ok(wanted);
                    }
                }
                Err(StoreError::TooLarge { .. }) => {}
                Err(e) => return Err(self.fail("reading", &key, e)),
            }
        }
        let start = u64::from(offset);
        self.read_range(&key, start..start + u64::from(length))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for StoreBackend {
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let key = self.key(tpe, id);
        if self.cancel.is_canceled() {
            return Err(RusticError::new(
                ErrorKind::Backend,
                "Writing `{key}` was refused: the operation was canceled.",
            )
            .attach_context("key", key));
        }
        let body = match content.slice() {
            [one] => one.clone(),
            many => {
                let mut body = BytesMut::with_capacity(content.size());
                for part in many {
                    body.extend_from_slice(part);
                }
                body.freeze()
            }
        };
        let size = body.len() as u64;
        self.handle
            .block_on(self.store.put(&key, body))
            .map_err(|e| self.fail("writing", &key, e))?;
        self.counters.written.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = self.key(tpe, id);
        self.handle
            .block_on(self.store.delete(&key))
            .map_err(|e| self.fail("deleting", &key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn keys_follow_restics_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = arca_store::FsStore::new(dir.path(), "bucket", "").expect("store");
        let be = StoreBackend::new(Arc::new(store), "volumes/ns", Handle::current());
        let hex = "ab".repeat(32);
        let id: Id = hex.parse().expect("id");
        assert_eq!(be.key(FileType::Config, &id), "volumes/ns/config");
        assert_eq!(be.key(FileType::Key, &id), format!("volumes/ns/keys/{hex}"));
        assert_eq!(
            be.key(FileType::Snapshot, &id),
            format!("volumes/ns/snapshots/{hex}")
        );
        assert_eq!(
            be.key(FileType::Index, &id),
            format!("volumes/ns/index/{hex}")
        );
        assert_eq!(
            be.key(FileType::Pack, &id),
            format!("volumes/ns/data/ab/{hex}")
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn lists_ids_reads_ranges_and_counts_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(arca_store::FsStore::new(dir.path(), "bucket", "").expect("store"));
        let be = Arc::new(StoreBackend::new(
            store.clone(),
            "volumes/ns/",
            Handle::current(),
        ));
        let pack: Id = "cd".repeat(32).parse().expect("id");
        let key: Id = "01".repeat(32).parse().expect("id");
        store
            .put("volumes/ns/data/cd/not-an-id", Bytes::from_static(b"x"))
            .await
            .expect("put");
        store
            .put(
                &format!("volumes/ns/data/ab/{}", "cd".repeat(32)),
                Bytes::from_static(b"misplaced"),
            )
            .await
            .expect("put");
        let be2 = be.clone();
        let (packs, keys, config, part, counters) = tokio::task::spawn_blocking(move || {
            let mut list = BytesList::default();
            list.add(Bytes::from_static(b"0123"));
            list.add(Bytes::from_static(b"456789"));
            be2.write_bytes(FileType::Pack, &pack, false, list)
                .expect("write pack");
            be2.write_bytes(FileType::Key, &key, false, Bytes::from_static(b"k").into())
                .expect("write key");
            let packs = be2.list_with_size(FileType::Pack).expect("list packs");
            let keys = be2.list(FileType::Key).expect("list keys");
            let config = be2.list(FileType::Config).expect("list config");
            let part = be2
                .read_partial(FileType::Pack, &pack, false, 2, 3)
                .expect("read");
            (packs, keys, config, part, be2.counters())
        })
        .await
        .expect("task");
        assert_eq!(packs, vec![(pack, 10)]);
        assert_eq!(keys, vec![key]);
        assert!(config.is_empty(), "no config yet");
        assert_eq!(&part[..], b"234");
        assert_eq!(counters.written(), 11);
        assert_eq!(counters.read(), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn store_errors_reach_the_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = arca_store::FsStore::new(dir.path(), "bucket", "").expect("store");
        let be = Arc::new(StoreBackend::new(Arc::new(store), "v/", Handle::current()));
        let be2 = be.clone();
        let err = tokio::task::spawn_blocking(move || {
            be2.read_full(FileType::Snapshot, &Id::default())
                .expect_err("missing")
        })
        .await
        .expect("task");
        let text = err.display_log();
        assert!(text.contains("no object at v/snapshots/"), "{text}");
        assert!(be.last_error().is_some_and(|e| e.contains("reading")));
    }
}
