//! The storage format, version [`FORMAT_VERSION`]. The normative description is
//! `docs/reference/storage-format.md`; this module is its implementation.
//!
//! A backup's items live in `resources.tar.zst`: one tar stream, compressed as a sequence
//! of independent zstd frames. Each frame holds whole tar entries of a single resource type
//! (the end-of-archive blocks get a frame of their own), so
//! - `zstd -d < resources.tar.zst | tar t` reads it like any tarball, and
//! - a restore fetches just the frames it needs, in dependency order, by byte range.
//!
//! `index.jsonl.zst` has one [`IndexEntry`] per item: identity, path, size, sha256, and the
//! byte range of its frame.

mod csi;
mod frame;
mod jsonl;
mod metadata;
mod reader;
mod results;
mod verified_index;
mod volumes;
mod writer;

pub use csi::{CSI_SNAPSHOTS_LIMIT, CsiSnapshot, CsiSnapshots, read_csi_snapshots};
pub use frame::{
    ArchivedItem, EncodedFrame, FRAME_TARGET_BYTES, FrameRef, Item, decode_frame, encode_frames,
    end_frame, item_path,
};
pub use jsonl::{JsonlWriter, read_jsonl};
pub(crate) use metadata::FormatOne;
pub use metadata::{ArchiveStats, BackupMetadata, ENCRYPTION_SCHEME, Encryption};
pub use reader::{read_frame, read_index, verify_object};
pub use results::{Messages, Results};
pub use verified_index::{CHUNK as INDEX_CHUNK, VerifiedIndex, verify_index};
pub use volumes::{VolumeSnapshot, VolumeSnapshots, read_volume_snapshots};
pub use writer::ArchiveWriter;

use serde::{Deserialize, Serialize};

/// The format version written in `backup.json`. Readers refuse versions they do not know.
pub const FORMAT_VERSION: &str = "2";

/// The format versions a reader knows: 1 (unsealed, plain) and 2 (sealed, optionally
/// encrypted).
pub const KNOWN_FORMATS: [&str; 2] = ["1", "2"];

/// One item of a backup, one line of `index.jsonl.zst`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// API group; empty for the core group.
    pub group: String,
    /// API version the item was read at (the preferred version).
    pub version: String,
    pub kind: String,
    /// Plural resource name (`deployments`).
    pub resource: String,
    /// Namespace; absent for cluster-scoped items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// Path of the entry inside the tar stream.
    pub path: String,
    /// Size of the item's JSON in bytes.
    pub size: u64,
    /// Hex sha256 of the item's JSON.
    pub sha256: String,
    /// The frame of `resources.tar.zst` that holds the item.
    pub frame: FrameRef,
}

impl IndexEntry {
    /// `resource.group`, or `resource` for the core group (Velero's spelling).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}
