//! The repository's index as the writer needs it: which blobs exist (not stored again), where
//! the trees are (to read the parent snapshot's), and the index files this backup adds.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use rustic_core::{Id, repofile::BlobType};
use serde_json::json;

use super::{Hash, pack::PackedBlob};

/// Where a tree blob is stored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TreeLocation {
    pub(crate) pack: Id,
    pub(crate) offset: u32,
    pub(crate) length: u32,
    pub(crate) uncompressed: Option<u32>,
}

/// Blobs in the repository's index, and those this backup claimed.
#[derive(Debug, Default)]
pub(crate) struct KnownBlobs {
    data: HashSet<Hash>,
    trees: HashMap<Hash, TreeLocation>,
    claimed_data: Mutex<HashSet<Hash>>,
    claimed_trees: Mutex<HashSet<Hash>>,
}

/// The 32 bytes of a rustic id.
pub(crate) fn id_bytes(id: &Id) -> Hash {
    let mut out = [0u8; 32];
    // A rustic id always has 64 hex digits.
    let _ = hex::decode_to_slice(id.to_hex().as_str(), &mut out);
    out
}

impl KnownBlobs {
    /// Records a blob listed by an index file (in its `packs`: the packs a prune marked for
    /// deletion do not count).
    pub(crate) fn insert(&mut self, tpe: BlobType, id: Hash, location: TreeLocation) {
        match tpe {
            BlobType::Data => {
                self.data.insert(id);
            }
            BlobType::Tree => {
                self.trees.insert(id, location);
            }
        }
    }

    /// Where the tree `id` is, if the index has it.
    pub(crate) fn tree(&self, id: &Hash) -> Option<TreeLocation> {
        self.trees.get(id).copied()
    }

    /// True when a blob of `tpe` named `id` is in the index.
    pub(crate) fn indexed(&self, tpe: BlobType, id: &Hash) -> bool {
        match tpe {
            BlobType::Data => self.data.contains(id),
            BlobType::Tree => self.trees.contains_key(id),
        }
    }

    /// True when the blob must be stored by the caller: neither in the index nor claimed
    /// earlier in this backup. Each id is claimed once.
    pub(crate) fn claim(&self, tpe: BlobType, id: Hash) -> bool {
        if self.indexed(tpe, &id) {
            return false;
        }
        let set = match tpe {
            BlobType::Data => &self.claimed_data,
            BlobType::Tree => &self.claimed_trees,
        };
        set.lock().is_ok_and(|mut set| set.insert(id))
    }
}

/// A stored pack, as an index file lists it.
#[derive(Debug)]
pub(crate) struct StoredPack {
    pub(crate) id: Id,
    pub(crate) size: u32,
    pub(crate) blobs: Vec<PackedBlob>,
}

/// restic's index file (before compression and encryption) for `packs`: the JSON object
/// `{"packs": [{"id", "blobs": [{"id", "type", "offset", "length",
/// "uncompressed_length"?}], "time", "size"}]}`. `time` and `size` are rustic's additions,
/// which restic ignores.
pub(crate) fn index_json(packs: &[StoredPack], time: &str) -> Vec<u8> {
    let packs: Vec<_> = packs
        .iter()
        .map(|pack| {
            let blobs: Vec<_> = pack
                .blobs
                .iter()
                .map(|b| {
                    let mut blob = json!({
                        "id": hex::encode(b.id),
                        "type": match b.tpe {
                            BlobType::Data => "data",
                            BlobType::Tree => "tree",
                        },
                        "offset": b.offset,
                        "length": b.length,
                    });
                    if let (Some(len), Some(map)) = (b.uncompressed, blob.as_object_mut()) {
                        map.insert("uncompressed_length".into(), len.into());
                    }
                    blob
                })
                .collect();
            json!({
                "id": pack.id.to_hex().as_str(),
                "blobs": blobs,
                "time": time,
                "size": pack.size,
            })
        })
        .collect();
    json!({ "packs": packs }).to_string().into_bytes()
}
