//! Reading and writing the repository's files through the backend: packs, index and
//! snapshot files, and the parent snapshot's trees.

use std::sync::Arc;

use rustic_core::{FileType, Id, ReadBackend, WriteBackend, repofile::Tree};

use zstd::stream::raw::Encoder;

use super::{Hash, WriterError, blob::compress, crypto::Sealer, index::TreeLocation, sha256};
use crate::StoreBackend;

/// The largest tree read (a folder of about a million entries): an index cannot make a
/// backup or a restore allocate more for one.
pub(crate) const MAX_TREE: u32 = 256 << 20;

/// The prefix of a compressed repository file (format v2): the JSON follows, zstd-compressed.
const COMPRESSED_FILE: u8 = 2;

/// The backend, the key and the compression of one repository.
#[derive(Clone, Debug)]
pub(crate) struct RepoFiles {
    pub(crate) be: Arc<StoreBackend>,
    pub(crate) sealer: Sealer,
    /// zstd level for repository files (`None` in a format v1 repository).
    pub(crate) level: Option<i32>,
}

impl RepoFiles {
    /// Stores `bytes` (already sealed) as the file of type `tpe` named by their SHA-256;
    /// `cacheable` for tree packs (rustic's hint to caching backends).
    pub(crate) fn put(
        &self,
        tpe: FileType,
        bytes: Vec<u8>,
        cacheable: bool,
    ) -> Result<Id, WriterError> {
        let id = Id::new(sha256(&bytes));
        self.be
            .write_bytes(tpe, &id, cacheable, bytes.into())
            .map_err(|e| WriterError::store(&e))?;
        Ok(id)
    }

    /// Stores a JSON repository file (index, snapshot) as restic does: compressed with the
    /// version byte in front when the format allows, then encrypted.
    pub(crate) fn save_json(&self, tpe: FileType, json: &[u8]) -> Result<Id, WriterError> {
        let plain = match self.level {
            Some(level) => {
                let mut encoder = Encoder::new(level).map_err(WriterError::Compression)?;
                let mut packed = Vec::new();
                compress(&mut encoder, json, &mut packed).map_err(WriterError::Compression)?;
                let mut out = Vec::with_capacity(packed.len() + 1);
                out.push(COMPRESSED_FILE);
                out.extend_from_slice(&packed);
                out
            }
            None => json.to_vec(),
        };
        let sealed = self.sealer.seal(&plain)?;
        self.put(tpe, sealed, true)
    }

    /// The tree `id` stored at `at`, checked against its id.
    pub(crate) fn read_tree(&self, id: &Hash, at: &TreeLocation) -> Result<Tree, WriterError> {
        if at.length > MAX_TREE || at.uncompressed.unwrap_or(0) > MAX_TREE {
            return Err(WriterError::Corrupt(format!(
                "tree {} claims more than {MAX_TREE} bytes in the index",
                hex::encode(id)
            )));
        }
        let sealed = self
            .be
            .read_partial(FileType::Pack, &at.pack, true, at.offset, at.length)
            .map_err(|e| WriterError::store(&e))?;
        let plain = self.sealer.open(&sealed)?;
        let plain = match at.uncompressed {
            Some(len) => {
                zstd::bulk::decompress(&plain, len as usize).map_err(WriterError::Compression)?
            }
            None => plain,
        };
        if sha256(&plain) != *id {
            return Err(WriterError::Corrupt(format!(
                "tree {} does not match its id",
                hex::encode(id)
            )));
        }
        serde_json::from_slice(&plain)
            .map_err(|e| WriterError::Corrupt(format!("tree {}: {e}", hex::encode(id))))
    }
}
