//! The tarball reader: `<name>.tar.gz` (format 1.1.0), one entry at a time, every byte
//! checked. Synchronous (gzip and tar are); [`crate::ItemStream`] runs it on a blocking
//! thread over the store's stream.

use std::{
    cell::Cell,
    collections::{BTreeMap, BTreeSet, HashSet},
    io::{self, Read},
    ops::ControlFlow,
    rc::Rc,
};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{
    Entry, KNOWN_FORMATS, Limits, RefusedItem, VeleroError, VeleroItem,
    limits::{IGNORED_NAMES_KEPT, VERSION_FILE_BYTES},
    names::kind_matches_resource,
    path::{self, Copy, ItemPath, Kind},
};

/// The most distinct types whose other-version copies a summary names (it counts them all).
const OTHER_VERSION_TYPES_KEPT: usize = 1000;

/// What a whole read of a tarball found besides the items it yielded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TarballSummary {
    /// `metadata/version`.
    pub format_version: String,
    /// Items yielded ([`Entry::Item`]).
    pub items: u64,
    /// Items refused ([`Entry::Refused`]).
    pub refused: u64,
    /// Copies without a version folder (`resources/<gr>/namespaces/…`): the same object as
    /// the preferred-version copy, which is the one read. Not read.
    pub legacy_copies: u64,
    /// Copies at a version other than the preferred one (Velero's API group versions
    /// feature). Not read.
    pub other_version_copies: u64,
    /// `resource.group` -> the other versions found for it (at most 1000 types named).
    pub other_versions: BTreeMap<String, BTreeSet<String>>,
    /// Entries that are not items nor the version file (skipped, not read).
    pub ignored: u64,
    /// The first 100 of their paths.
    pub ignored_names: Vec<String>,
    /// Bytes of the gzip stream read.
    pub compressed_bytes: u64,
    /// Bytes it decompressed to (as far as read).
    pub decompressed_bytes: u64,
}

/// Counts the bytes read through it; past `limit`, refuses to read more.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    limit: Option<u64>,
    /// Set when `inner` itself failed (the store, not the data).
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.count.get();
        let buf = match self.limit {
            Some(limit) if count > limit => {
                return Err(io::Error::other("decompressed size limit reached"));
            }
            Some(limit) => {
                let allowed = usize::try_from(limit - count + 1).unwrap_or(usize::MAX);
                let len = buf.len().min(allowed);
                &mut buf[..len]
            }
            None => buf,
        };
        match self.inner.read(buf) {
            Ok(n) => {
                self.count.set(count + n as u64);
                Ok(n)
            }
            Err(e) => {
                if self.limit.is_none() {
                    self.failed.set(true);
                }
                Err(e)
            }
        }
    }
}

/// The fields of an item's JSON that must agree with its path. Duplicated keys among them
/// are refused (serde refuses duplicate fields).
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    metadata: HeadMeta,
}

#[derive(Deserialize)]
struct HeadMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// Reads a Velero tarball (gzip-compressed tar, format 1.1.0) from `reader`, handing each
/// item to `each`, in tarball order, one at a time; returns what else it found.
///
/// `key` (the tarball's key) and `backup` (its name) are for messages. Each item is read
/// from its `<version>-preferredversion` copy; legacy and other-version copies are counted,
/// not read. Stops early, with what was found so far, when `each` returns `Break`.
///
/// Fatal (`Err`, nothing more read): a gzip or tar stream that is damaged; more than
/// `limits.tarball_bytes` decompressed or an entry over `limits.item_bytes`
/// ([`VeleroError::TooLarge`]); a tar entry that is not a regular file or folder, whose
/// path is absolute, climbs (`..`), has empty segments or is not UTF-8, or whose item path
/// holds invalid names ([`VeleroError::Hostile`]); items before `metadata/version`, or no
/// `metadata/version` at all; a format version not in [`KNOWN_FORMATS`]
/// ([`VeleroError::UnknownFormat`]). An item whose JSON is not an object, or whose
/// apiVersion, kind, name or namespace disagree with its path, or a second copy of an item
/// already read, is [`Entry::Refused`], and the read goes on.
pub fn read_tarball<R: Read>(
    reader: R,
    key: &str,
    backup: &str,
    limits: &Limits,
    mut each: impl FnMut(Entry) -> ControlFlow<()>,
) -> Result<TarballSummary, VeleroError> {
    let compressed = Rc::new(Cell::new(0u64));
    let decompressed = Rc::new(Cell::new(0u64));
    let store_failed = Rc::new(Cell::new(false));
    let gzip = MultiGzDecoder::new(Counted {
        inner: reader,
        count: compressed.clone(),
        limit: None,
        failed: store_failed.clone(),
    });
    let counted = Counted {
        inner: gzip,
        count: decompressed.clone(),
        limit: Some(limits.tarball_bytes),
        failed: Rc::new(Cell::new(false)),
    };
    let mut summary = TarballSummary::default();
    let stream_error = |e: io::Error| {
        if decompressed.get() > limits.tarball_bytes {
            VeleroError::TooLarge {
                key: key.into(),
                what: format!(
                    "the decompressed tarball ({} compressed bytes read so far)",
                    compressed.get()
                ),
                limit: limits.tarball_bytes,
            }
        } else if store_failed.get() {
            VeleroError::Store(arca_store::StoreError::Service {
                operation: "reading",
                key: key.into(),
                detail: e.to_string(),
            })
        } else {
            VeleroError::Corrupt {
                key: key.into(),
                detail: e.to_string(),
            }
        }
    };
    let mut state = State {
        key,
        backup,
        limits,
        version: None,
        seen: HashSet::new(),
    };
    let mut archive = tar::Archive::new(counted);
    let entries = archive.entries().map_err(stream_error)?;
    for entry in entries {
        let mut entry = entry.map_err(stream_error)?;
        let flow = state.entry(&mut entry, &mut summary).map_err(|e| match e {
            Step::Fatal(e) => e,
            Step::Io(e) => stream_error(e),
        })?;
        if let Some(found) = flow
            && each(found).is_break()
        {
            break;
        }
    }
    summary.compressed_bytes = compressed.get();
    summary.decompressed_bytes = decompressed.get();
    match state.version {
        Some(version) => summary.format_version = version,
        None => {
            return Err(VeleroError::Corrupt {
                key: key.into(),
                detail: "it has no metadata/version: it is not a Velero backup tarball".into(),
            });
        }
    }
    Ok(summary)
}

/// Why reading one entry failed: a refusal, or the stream underneath.
enum Step {
    Fatal(VeleroError),
    Io(io::Error),
}

/// What the read keeps between entries.
struct State<'a> {
    key: &'a str,
    backup: &'a str,
    limits: &'a Limits,
    version: Option<String>,
    /// Digests of the identities read, to refuse a second copy.
    seen: HashSet<[u8; 16]>,
}

impl State<'_> {
    fn hostile(&self, path: &str, detail: impl Into<String>) -> Step {
        Step::Fatal(VeleroError::Hostile {
            key: self.key.into(),
            path: path.into(),
            detail: detail.into(),
        })
    }

    /// Checks one entry and reads it if it is an item's preferred copy.
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        summary: &mut TarballSummary,
    ) -> Result<Option<Entry>, Step> {
        let raw = entry.path_bytes().into_owned();
        let lossy = String::from_utf8_lossy(&raw).into_owned();
        let path = path::safe_path(&raw).map_err(|d| self.hostile(&lossy, d))?;
        let is_folder = match entry.header().entry_type() {
            tar::EntryType::Regular => false,
            tar::EntryType::Directory => true,
            other => {
                return Err(self.hostile(
                    path,
                    format!(
                        "it is {} (only regular files are read)",
                        describe_type(other)
                    ),
                ));
            }
        };
        let size = entry.size();
        if size > self.limits.item_bytes {
            return Err(Step::Fatal(VeleroError::TooLarge {
                key: self.key.into(),
                what: format!("tar entry {path:?}, which claims {size} bytes,"),
                limit: self.limits.item_bytes,
            }));
        }
        let kind = path::parse(path, is_folder).map_err(|d| self.hostile(path, d))?;
        match kind {
            Kind::Folder => Ok(None),
            Kind::Unknown => {
                summary.ignored += 1;
                if summary.ignored_names.len() < IGNORED_NAMES_KEPT {
                    summary.ignored_names.push(path.to_string());
                }
                Ok(None)
            }
            Kind::Version => {
                if self.version.is_some() {
                    return Err(self.hostile(path, "a second metadata/version"));
                }
                let bytes = read_entry(entry, VERSION_FILE_BYTES).map_err(Step::Io)?;
                let version = std::str::from_utf8(&bytes)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
                if bytes.len() as u64 > VERSION_FILE_BYTES
                    || !KNOWN_FORMATS.contains(&version.as_str())
                {
                    return Err(Step::Fatal(VeleroError::UnknownFormat {
                        backup: self.backup.into(),
                        version: version.chars().take(64).collect(),
                        known: KNOWN_FORMATS.join(", "),
                    }));
                }
                self.version = Some(version);
                Ok(None)
            }
            Kind::Item(item) => {
                if self.version.is_none() {
                    return Err(self.hostile(
                        path,
                        "an item before metadata/version (Velero writes the version first)",
                    ));
                }
                match &item.copy {
                    Copy::Legacy => {
                        summary.legacy_copies += 1;
                        Ok(None)
                    }
                    Copy::Other(version) => {
                        summary.other_version_copies += 1;
                        let gr = group_resource(&item);
                        if summary.other_versions.contains_key(&gr)
                            || summary.other_versions.len() < OTHER_VERSION_TYPES_KEPT
                        {
                            summary
                                .other_versions
                                .entry(gr)
                                .or_default()
                                .insert(version.clone());
                        }
                        Ok(None)
                    }
                    Copy::Preferred(version) => {
                        let version = version.clone();
                        let json = read_entry(entry, self.limits.item_bytes).map_err(Step::Io)?;
                        let found = self.item(path, item, version, json)?;
                        match &found {
                            Entry::Item(_) => summary.items += 1,
                            Entry::Refused(_) => summary.refused += 1,
                        }
                        Ok(Some(found))
                    }
                }
            }
        }
    }

    /// An item's preferred copy, checked against its path.
    fn item(
        &mut self,
        path: &str,
        item: ItemPath,
        version: String,
        json: Vec<u8>,
    ) -> Result<Entry, Step> {
        let refuse = |reason: String| {
            Entry::Refused(RefusedItem {
                path: path.to_string(),
                reason,
            })
        };
        let head: Head = match serde_json::from_slice(&json) {
            Ok(head) => head,
            Err(e) => {
                return Ok(refuse(format!(
                    "it is not a Kubernetes object in JSON (apiVersion, kind, metadata.name): {e}"
                )));
            }
        };
        let api_version = if item.group.is_empty() {
            version.clone()
        } else {
            format!("{}/{version}", item.group)
        };
        if head.api_version != api_version {
            return Ok(refuse(format!(
                "its apiVersion is {:?}, its path says {api_version:?}",
                head.api_version
            )));
        }
        if !kind_matches_resource(&head.kind, &item.resource) {
            return Ok(refuse(format!(
                "its kind {:?} is not the kind of resource {:?} that its path names",
                head.kind, item.resource
            )));
        }
        if head.metadata.name != item.name {
            return Ok(refuse(format!(
                "its metadata.name is {:?}, its path says {:?}",
                head.metadata.name, item.name
            )));
        }
        let json_namespace = head.metadata.namespace.filter(|ns| !ns.is_empty());
        if json_namespace != item.namespace {
            return Ok(refuse(match (&item.namespace, &json_namespace) {
                (Some(ns), Some(other)) => {
                    format!("its metadata.namespace is {other:?}, its path says {ns:?}")
                }
                (Some(ns), None) => {
                    format!("it has no metadata.namespace, its path says {ns:?}")
                }
                (None, Some(other)) => format!(
                    "its metadata.namespace is {other:?}, its path says it is cluster-scoped"
                ),
                (None, None) => String::new(),
            }));
        }
        let gr = group_resource(&item);
        let mut digest = Sha256::new();
        for part in [
            gr.as_bytes(),
            item.namespace.as_deref().unwrap_or_default().as_bytes(),
            item.name.as_bytes(),
        ] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest.finalize()[..16]);
        if self.seen.contains(&id) {
            return Ok(refuse(format!(
                "a second copy of {gr} {}{} in the tarball (the first was read)",
                item.namespace
                    .as_deref()
                    .map(|ns| format!("{ns}/"))
                    .unwrap_or_default(),
                item.name
            )));
        }
        if self.seen.len() as u64 >= self.limits.items {
            return Err(Step::Fatal(VeleroError::TooLarge {
                key: self.key.into(),
                what: format!("the number of items (more than {})", self.limits.items),
                limit: self.limits.items,
            }));
        }
        self.seen.insert(id);
        Ok(Entry::Item(VeleroItem {
            group: item.group,
            version,
            kind: head.kind,
            resource: item.resource,
            namespace: item.namespace,
            name: item.name,
            path: path.to_string(),
            json: Bytes::from(json),
        }))
    }
}

/// Reads an entry's data, at most `limit + 1` bytes (the caller checks the length when it
/// matters; sizes over the item limit were refused from the header already).
fn read_entry<R: Read>(entry: &mut tar::Entry<'_, R>, limit: u64) -> io::Result<Vec<u8>> {
    let capacity = usize::try_from(entry.size().min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    entry
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn group_resource(item: &ItemPath) -> String {
    if item.group.is_empty() {
        item.resource.clone()
    } else {
        format!("{}.{}", item.resource, item.group)
    }
}

fn describe_type(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Symlink => "a symbolic link".into(),
        tar::EntryType::Link => "a hard link".into(),
        tar::EntryType::Char => "a character device".into(),
        tar::EntryType::Block => "a block device".into(),
        tar::EntryType::Fifo => "a FIFO".into(),
        tar::EntryType::GNUSparse => "a sparse file".into(),
        other => format!("an entry of type {:?}", other.as_byte() as char),
    }
}
