//! Blobs: compressed when that pays, then encrypted.
//!
//! restic's format v2 lets each blob be stored compressed (zstd; the index and pack header
//! record its uncompressed length) or not. Random data (media, archives, encrypted files)
//! does not shrink, so compressing it only costs CPU and a few bytes: a blob is stored
//! uncompressed unless compression saves at least [`MIN_SAVING_PERCENT`]. Large chunks are
//! first judged on two samples, so incompressible data is not compressed whole for nothing.

use std::io;

use rustic_core::repofile::BlobType;
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

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
    compressor: Option<Encoder<'static>>,
    /// Whether data blobs are compressed (trees are whenever `compressor` is set).
    compress_data: bool,
    scratch: Vec<u8>,
}

/// Compresses `data` into `out` as one zstd frame, as a stream of unknown size: the same
/// parameters, and so the same bytes, as rustic's compression (zstd 0.13's `encode_all`).
/// One-shot compression tunes its tables to the input's size, and on small text it stores
/// a few percent more.
pub(crate) fn compress(
    encoder: &mut Encoder<'static>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    encoder.reinit()?;
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()) + 64);
    let mut input = InBuffer::around(data);
    let mut output = OutBuffer::around(out);
    let full = || io::Error::other("the zstd output buffer is full");
    while input.pos() < data.len() {
        let before = (input.pos(), output.pos());
        encoder.run(&mut input, &mut output)?;
        if (input.pos(), output.pos()) == before {
            return Err(full());
        }
    }
    while encoder.finish(&mut output, true)? > 0 {
        if output.pos() == output.capacity() {
            return Err(full());
        }
    }
    Ok(())
}

impl std::fmt::Debug for BlobSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSealer")
            .field("compress", &self.compressor.is_some())
            .finish_non_exhaustive()
    }
}

impl BlobSealer {
    /// A sealer compressing at zstd `level` (`None`: never, as in a format v1 repository),
    /// data blobs only if `compress_data`.
    pub(crate) fn new(
        sealer: Sealer,
        level: Option<i32>,
        compress_data: bool,
    ) -> Result<Self, WriterError> {
        let compressor = level
            .map(Encoder::new)
            .transpose()
            .map_err(WriterError::Compression)?;
        Ok(Self {
            sealer,
            compressor,
            compress_data,
            scratch: Vec::new(),
        })
    }

    /// True when compressing `data` is worth trying (`scratch` is overwritten).
    fn worth_compressing(
        compressor: &mut Encoder<'static>,
        data: &[u8],
        scratch: &mut Vec<u8>,
    ) -> bool {
        if data.len() < SAMPLED_FROM {
            return true;
        }
        let middle = data.len() / 2;
        [&data[..SAMPLE], &data[middle..middle + SAMPLE]]
            .iter()
            .any(|sample| {
                compress(compressor, sample, scratch).is_ok() && pays(scratch.len(), sample.len())
            })
    }

    /// `blob`, compressed if that pays, and encrypted.
    pub(crate) fn seal(&mut self, blob: Blob) -> Result<SealedBlob, WriterError> {
        let raw_len = u32::try_from(blob.data.len()).map_err(|_| WriterError::BlobTooLarge)?;
        let mut uncompressed = None;
        if let Some(compressor) = self.compressor.as_mut()
            && !blob.data.is_empty()
            && (blob.tpe == BlobType::Tree
                || (self.compress_data
                    && Self::worth_compressing(compressor, &blob.data, &mut self.scratch)))
        {
            compress(compressor, &blob.data, &mut self.scratch)
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

#[cfg(test)]
mod tests {
    use rand::RngCore;
    use rustic_core::repofile::MasterKey;

    use super::*;

    fn sealer() -> (Sealer, BlobSealer) {
        let key = Sealer::new(&MasterKey::new()).expect("key");
        (
            key.clone(),
            BlobSealer::new(key, Some(3), true).expect("zstd"),
        )
    }

    #[test]
    fn random_data_is_stored_uncompressed_and_text_compressed() {
        let (key, mut blobs) = sealer();
        for len in [1000, 1 << 20] {
            let mut random = vec![0u8; len];
            rand::rng().fill_bytes(&mut random);
            let sealed = blobs
                .seal(Blob {
                    tpe: BlobType::Data,
                    id: [1; 32],
                    data: random.clone(),
                })
                .expect("seal");
            assert_eq!(sealed.uncompressed, None);
            assert_eq!(sealed.bytes.len(), len + OVERHEAD);
            assert_eq!(key.open(&sealed.bytes).expect("open"), random);
        }
        let text: Vec<u8> = b"level=info msg=served\n".repeat(50_000);
        let sealed = blobs
            .seal(Blob {
                tpe: BlobType::Data,
                id: [2; 32],
                data: text.clone(),
            })
            .expect("seal");
        assert_eq!(sealed.uncompressed, Some(text.len() as u32));
        assert!(sealed.bytes.len() < text.len() / 10);
        let packed = key.open(&sealed.bytes).expect("open");
        assert_eq!(
            zstd::bulk::decompress(&packed, text.len()).expect("zstd"),
            text
        );
    }

    #[test]
    fn compression_gives_rustics_bytes() {
        // rustic compresses with zstd 0.13's `encode_all`: a stream of unknown size.
        let mut encoder = Encoder::new(0).expect("zstd");
        let mut out = Vec::new();
        let words: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{:x} ", i.wrapping_mul(2_654_435_761) % 5000).into_bytes())
            .collect();
        for len in [0, 1, 5000, 9145, 60_000, 1 << 20] {
            let text = &words[..len.min(words.len())];
            compress(&mut encoder, text, &mut out).expect("compress");
            let rustics = zstd_rustic::stream::encode_all(text, 0).expect("zstd");
            assert_eq!(out, rustics, "{len} bytes");
        }
    }

    #[test]
    fn without_compression_nothing_is_compressed() {
        let key = Sealer::new(&MasterKey::new()).expect("key");
        let mut blobs = BlobSealer::new(key, None, true).expect("no zstd");
        let sealed = blobs
            .seal(Blob {
                tpe: BlobType::Tree,
                id: [3; 32],
                data: b"{\"nodes\":[]}\n".repeat(100),
            })
            .expect("seal");
        assert_eq!(sealed.uncompressed, None);
    }

    #[test]
    fn with_data_compression_off_only_trees_are_compressed() {
        let key = Sealer::new(&MasterKey::new()).expect("key");
        let mut blobs = BlobSealer::new(key, Some(3), false).expect("zstd");
        let text: Vec<u8> = b"level=info msg=served\n".repeat(50_000);
        let data = blobs
            .seal(Blob {
                tpe: BlobType::Data,
                id: [4; 32],
                data: text.clone(),
            })
            .expect("seal");
        assert_eq!(data.uncompressed, None, "text stored as it is");
        assert_eq!(data.bytes.len(), text.len() + OVERHEAD);
        let tree = blobs
            .seal(Blob {
                tpe: BlobType::Tree,
                id: [5; 32],
                data: text.clone(),
            })
            .expect("seal");
        assert_eq!(
            tree.uncompressed,
            Some(text.len() as u32),
            "trees compressed"
        );
    }

    #[test]
    fn tampered_blobs_do_not_open() {
        let (key, _) = sealer();
        let mut sealed = key.seal(b"secret").expect("seal");
        sealed[20] ^= 1;
        assert!(key.open(&sealed).is_err());
        assert!(key.open(&sealed[..10]).is_err());
    }
}
