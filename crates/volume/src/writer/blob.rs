//! Blobs: compressed when that pays, then encrypted.
//!
//! restic's format v2 lets each blob be stored compressed (zstd; the index and pack header
//! record its uncompressed length) or not. Random data (media, archives, encrypted files)
//! does not shrink, so compressing it only costs CPU and a few bytes: a blob is stored
//! uncompressed unless compression saves at least [`MIN_SAVING_PERCENT`]. Large chunks are
//! first judged on two samples, so incompressible data is not compressed whole for nothing.

use rustic_core::repofile::BlobType;
use zstd::bulk::Compressor;

use super::{
    Hash, WriterError,
    crypto::{OVERHEAD, Sealer},
};

/// Compression must save at least this share of a blob's size, or the blob is stored as is.
pub(crate) const MIN_SAVING_PERCENT: usize = 3;
/// Chunks at least this large are sampled before being compressed whole.
const SAMPLED_FROM: usize = 256 << 10;
/// The size of each sample.
const SAMPLE: usize = 32 << 10;

/// A blob's plaintext, named by its SHA-256.
#[derive(Debug)]
pub(crate) struct Blob {
    pub(crate) tpe: BlobType,
    pub(crate) id: Hash,
    pub(crate) data: Vec<u8>,
}

/// A blob as stored in a pack.
#[derive(Debug)]
pub(crate) struct SealedBlob {
    pub(crate) tpe: BlobType,
    pub(crate) id: Hash,
    /// The encrypted (and maybe compressed) bytes.
    pub(crate) bytes: Vec<u8>,
    /// The plaintext's length when stored compressed.
    pub(crate) uncompressed: Option<u32>,
    /// The plaintext's length.
    pub(crate) raw_len: u32,
}

/// Compresses and encrypts blobs; one per worker thread (it keeps a zstd context).
pub(crate) struct BlobSealer {
    sealer: Sealer,
    compressor: Option<Compressor<'static>>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for BlobSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSealer")
            .field("compress", &self.compressor.is_some())
            .finish_non_exhaustive()
    }
}

impl BlobSealer {
    /// A sealer compressing at zstd `level` (`None`: never, as in a format v1 repository).
    pub(crate) fn new(sealer: Sealer, level: Option<i32>) -> Result<Self, WriterError> {
        let compressor = level
            .map(Compressor::new)
            .transpose()
            .map_err(WriterError::Compression)?;
        Ok(Self {
            sealer,
            compressor,
            scratch: Vec::new(),
        })
    }

    /// True when compressing `data` is worth trying.
    fn worth_compressing(compressor: &mut Compressor<'static>, data: &[u8]) -> bool {
        if data.len() < SAMPLED_FROM {
            return true;
        }
        let middle = data.len() / 2;
        [&data[..SAMPLE], &data[middle..middle + SAMPLE]]
            .iter()
            .any(|sample| {
                compressor
                    .compress(sample)
                    .is_ok_and(|packed| pays(packed.len(), sample.len()))
            })
    }

    /// `blob`, compressed if that pays, and encrypted.
    pub(crate) fn seal(&mut self, blob: Blob) -> Result<SealedBlob, WriterError> {
        let raw_len = u32::try_from(blob.data.len()).map_err(|_| WriterError::BlobTooLarge)?;
        let mut uncompressed = None;
        if let Some(compressor) = self.compressor.as_mut()
            && !blob.data.is_empty()
            && (blob.tpe == BlobType::Tree || Self::worth_compressing(compressor, &blob.data))
        {
            self.scratch.clear();
            self.scratch
                .reserve(zstd::zstd_safe::compress_bound(blob.data.len()));
            compressor
                .compress_to_buffer(&blob.data, &mut self.scratch)
                .map_err(WriterError::Compression)?;
            if pays(self.scratch.len(), blob.data.len()) {
                uncompressed = Some(raw_len);
            }
        }
        let plain = if uncompressed.is_some() {
            &self.scratch[..]
        } else {
            &blob.data[..]
        };
        let mut bytes = Vec::with_capacity(plain.len() + OVERHEAD);
        self.sealer.seal_into(plain, &mut bytes)?;
        Ok(SealedBlob {
            tpe: blob.tpe,
            id: blob.id,
            bytes,
            uncompressed,
            raw_len,
        })
    }
}

/// True when `packed` bytes for `raw` save at least [`MIN_SAVING_PERCENT`].
fn pays(packed: usize, raw: usize) -> bool {
    packed.saturating_mul(100) < raw.saturating_mul(100 - MIN_SAVING_PERCENT)
}
