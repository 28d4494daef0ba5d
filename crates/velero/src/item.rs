//! What the tarball reader yields: items, shaped like Arca's own archive items.

use arca_store::archive::{FrameRef, IndexEntry, Item};
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// One item of a Velero backup: its identity and the preferred version's JSON object,
/// exactly as Velero stored it.
///
/// Shaped like Arca's own archive items, so a restore consumes both the same way:
/// [`VeleroItem::index_entry`] is the [`IndexEntry`] the restore engine decides and orders
/// by (with the sha256 of `json`, and no frame), and `json` is what it decodes, transforms
/// and applies. [`VeleroItem::into_archive_item`] gives the [`Item`] Arca's archive writer
/// takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VeleroItem {
    /// API group; empty for the core group.
    pub group: String,
    /// The API version the item was stored at (Velero's preferred version at backup time).
    pub version: String,
    /// The object's kind, as its JSON says (checked against the path's resource).
    pub kind: String,
    /// Plural resource name (`deployments`), from the path.
    pub resource: String,
    /// Namespace; None for cluster-scoped items.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// The entry's path inside the tarball.
    pub path: String,
    /// The object as Velero stored it (JSON with apiVersion and kind; checked to be a JSON
    /// object whose apiVersion, kind, name and namespace agree with the path).
    pub json: Bytes,
}

impl VeleroItem {
    /// `resource.group`, or `resource` for the core group (Velero's spelling).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// The item as an entry of Arca's index: identity, tarball path, size and the sha256
    /// of `json` (computed here: Velero records no checksums). The frame is `(0, 0)`: a
    /// Velero tarball has no frames to fetch by range, the item's bytes are `json`.
    pub fn index_entry(&self) -> IndexEntry {
        IndexEntry {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            path: self.path.clone(),
            size: self.json.len() as u64,
            sha256: hex::encode(Sha256::digest(&self.json)),
            frame: FrameRef(0, 0),
        }
    }

    /// The item as Arca's archive writer takes it.
    pub fn into_archive_item(self) -> Item {
        Item {
            group: self.group,
            version: self.version,
            kind: self.kind,
            resource: self.resource,
            namespace: self.namespace,
            name: self.name,
            json: self.json,
        }
    }
}

/// An entry of the tarball that looked like an item and was refused: the stream goes on
/// after it. A restore reports it as not restored, with `reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedItem {
    /// The entry's path inside the tarball.
    pub path: String,
    /// Why it was refused.
    pub reason: String,
}

/// What the tarball reader yields, one at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An item, from its preferred-version copy.
    Item(VeleroItem),
    /// An item refused (its JSON is not an object, or disagrees with its path, or a second
    /// copy of an item already yielded).
    Refused(RefusedItem),
}
