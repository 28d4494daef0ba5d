//! The repository's index as a restore needs it: where each data blob and each tree is.
//! Packs are numbered so that an entry holds 4 bytes of pack, not 32.

use std::collections::HashMap;

use rustic_core::{
    Id,
    repofile::{BlobType, IndexFile},
};

use crate::writer::{Hash, index::TreeLocation, index::id_bytes};

/// Where a data blob is: its pack (a number into [`BlobIndex::pack`]), offset and length in
/// it, and its plaintext length when stored compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DataLocation {
    pub(crate) pack: u32,
    pub(crate) offset: u32,
    pub(crate) length: u32,
    pub(crate) uncompressed: Option<u32>,
}

/// Data blobs and trees by id.
#[derive(Debug, Default)]
pub(crate) struct BlobIndex {
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    data: HashMap<Hash, DataLocation>,
    trees: HashMap<Hash, TreeLocation>,
}

impl BlobIndex {
    /// Adds the blobs of one index file (its `packs`: those a prune marked for deletion do
    /// not count).
    pub(crate) fn add(&mut self, file: IndexFile) {
        for pack in file.packs {
            let id = *pack.id;
            let next = u32::try_from(self.packs.len()).unwrap_or(u32::MAX);
            let number = *self.pack_numbers.entry(id).or_insert_with(|| {
                self.packs.push(id);
                next
            });
            for blob in pack.blobs {
                let (offset, length) = (blob.location.offset, blob.location.length);
                let uncompressed = blob.location.uncompressed_length.map(|n| n.get());
                match blob.tpe {
                    BlobType::Data => {
                        self.data.insert(
                            id_bytes(&blob.id),
                            DataLocation {
                                pack: number,
                                offset,
                                length,
                                uncompressed,
                            },
                        );
                    }
                    BlobType::Tree => {
                        self.trees.insert(
                            id_bytes(&blob.id),
                            TreeLocation {
                                pack: id,
                                offset,
                                length,
                                uncompressed,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Where the data blob `id` is.
    pub(crate) fn data(&self, id: &Hash) -> Option<DataLocation> {
        self.data.get(id).copied()
    }

    /// Where the tree `id` is.
    pub(crate) fn tree(&self, id: &Hash) -> Option<TreeLocation> {
        self.trees.get(id).copied()
    }

    /// The pack numbered `number`.
    pub(crate) fn pack(&self, number: u32) -> Option<Id> {
        self.packs.get(number as usize).copied()
    }
}
