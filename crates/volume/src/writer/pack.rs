//! Pack files in restic's format: the blobs one after another, then the encrypted header
//! (one entry per blob), then the header's length as a little-endian u32.
//!
//! A header entry is a type byte (0 data, 1 tree; 2 and 3 when the blob is compressed), the
//! blob's stored length (u32 LE), for compressed blobs its uncompressed length (u32 LE), and
//! the blob's id (32 bytes).

use rustic_core::repofile::BlobType;

use super::{
    Hash, WriterError,
    blob::SealedBlob,
    crypto::{OVERHEAD, Sealer},
};

/// Blobs a pack holds at most (rustic closes its packs at this count too).
const MAX_BLOBS: usize = 10_000;

/// Where a blob is in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackedBlob {
    pub(crate) tpe: BlobType,
    pub(crate) id: Hash,
    pub(crate) offset: u32,
    pub(crate) length: u32,
    pub(crate) uncompressed: Option<u32>,
}

impl PackedBlob {
    /// The header entry's bytes.
    fn write_entry(&self, out: &mut Vec<u8>) {
        let kind: u8 = match (self.tpe, self.uncompressed.is_some()) {
            (BlobType::Data, false) => 0,
            (BlobType::Tree, false) => 1,
            (BlobType::Data, true) => 2,
            (BlobType::Tree, true) => 3,
        };
        out.push(kind);
        out.extend_from_slice(&self.length.to_le_bytes());
        if let Some(len) = self.uncompressed {
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(&self.id);
    }
}

/// A pack being filled.
#[derive(Debug)]
pub(crate) struct PackBuilder {
    tpe: BlobType,
    target: usize,
    bytes: Vec<u8>,
    blobs: Vec<PackedBlob>,
}

/// A pack ready to be stored (its id is the SHA-256 of `bytes`).
#[derive(Debug)]
pub(crate) struct FinishedPack {
    pub(crate) tpe: BlobType,
    pub(crate) bytes: Vec<u8>,
    pub(crate) blobs: Vec<PackedBlob>,
}

impl PackBuilder {
    /// An empty pack for blobs of `tpe`, full at `target` bytes.
    pub(crate) fn new(tpe: BlobType, target: usize) -> Self {
        Self {
            tpe,
            target,
            bytes: Vec::new(),
            blobs: Vec::new(),
        }
    }

    /// True when no blob was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// True when the pack should be stored now.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes.len() >= self.target || self.blobs.len() >= MAX_BLOBS
    }

    /// Appends `blob`.
    pub(crate) fn add(&mut self, blob: SealedBlob) -> Result<(), WriterError> {
        let too_large = |_| WriterError::BlobTooLarge;
        let offset = u32::try_from(self.bytes.len()).map_err(too_large)?;
        let length = u32::try_from(blob.bytes.len()).map_err(too_large)?;
        if self.bytes.is_empty() {
            // One allocation for the whole pack in the common case.
            self.bytes
                .reserve(self.target.max(blob.bytes.len()) + (64 << 10));
        }
        self.bytes.extend_from_slice(&blob.bytes);
        self.blobs.push(PackedBlob {
            tpe: blob.tpe,
            id: blob.id,
            offset,
            length,
            uncompressed: blob.uncompressed,
        });
        Ok(())
    }

    /// The pack with its header, leaving this builder empty.
    pub(crate) fn finish(&mut self, sealer: &Sealer) -> Result<FinishedPack, WriterError> {
        let mut header = Vec::with_capacity(self.blobs.len() * 41);
        for blob in &self.blobs {
            blob.write_entry(&mut header);
        }
        let mut bytes = std::mem::take(&mut self.bytes);
        sealer.seal_into(&header, &mut bytes)?;
        let header_len =
            u32::try_from(header.len() + OVERHEAD).map_err(|_| WriterError::BlobTooLarge)?;
        bytes.extend_from_slice(&header_len.to_le_bytes());
        Ok(FinishedPack {
            tpe: self.tpe,
            bytes,
            blobs: std::mem::take(&mut self.blobs),
        })
    }
}

#[cfg(test)]
mod tests {
    use rustic_core::{
        Id,
        repofile::{IndexFile, MasterKey},
    };

    use super::*;
    use crate::writer::index::{StoredPack, index_json};

    fn blob(tpe: BlobType, id: u8, len: usize, uncompressed: Option<u32>) -> SealedBlob {
        SealedBlob {
            tpe,
            id: [id; 32],
            bytes: vec![id; len],
            uncompressed,
            raw_len: uncompressed.unwrap_or(len as u32),
        }
    }

    #[test]
    fn packs_and_index_files_are_in_restics_format() {
        let key = Sealer::new(&MasterKey::new()).expect("key");
        let mut pack = PackBuilder::new(BlobType::Data, 100);
        assert!(pack.is_empty());
        pack.add(blob(BlobType::Data, 7, 60, None)).expect("add");
        assert!(!pack.is_full());
        pack.add(blob(BlobType::Data, 9, 50, Some(400)))
            .expect("add");
        assert!(pack.is_full());
        let done = pack.finish(&key).expect("finish");
        assert!(pack.is_empty(), "the builder starts over");

        // Blobs, then the sealed header, then its length.
        let bytes = &done.bytes;
        let (body, len) = bytes.split_at(bytes.len() - 4);
        let header_len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        assert_eq!(header_len, 37 + 41 + OVERHEAD);
        assert_eq!(&body[..60], &[7u8; 60][..]);
        let header = key.open(&body[110..]).expect("header opens");
        assert_eq!(header[0], 0, "uncompressed data");
        assert_eq!(&header[1..5], &60u32.to_le_bytes());
        assert_eq!(&header[5..37], &[7u8; 32]);
        assert_eq!(header[37], 2, "compressed data");
        assert_eq!(&header[38..42], &50u32.to_le_bytes());
        assert_eq!(&header[42..46], &400u32.to_le_bytes());
        assert_eq!(&header[46..78], &[9u8; 32]);

        // rustic reads the index file written for it.
        let pack_id = Id::new([5; 32]);
        let json = index_json(
            &[StoredPack {
                id: pack_id,
                size: bytes.len() as u32,
                blobs: done.blobs,
            }],
            "2026-01-02T03:04:05Z",
        );
        let index: IndexFile = serde_json::from_slice(&json).expect("rustic reads it");
        assert_eq!(index.packs[0].pack_size(), bytes.len() as u32);
        // Without the recorded size, rustic computes it from the header entries: the same.
        let mut value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        if let Some(pack) = value["packs"][0].as_object_mut() {
            pack.remove("size");
        }
        let index: IndexFile = serde_json::from_value(value).expect("rustic reads it");
        let read = &index.packs[0];
        assert_eq!(*read.id, pack_id);
        assert_eq!(read.pack_size(), bytes.len() as u32, "sizes agree");
        assert_eq!(read.blobs[1].location.offset, 60);
        assert_eq!(read.blobs[1].location.length, 50);
        assert_eq!(
            read.blobs[1].location.uncompressed_length.map(|n| n.get()),
            Some(400)
        );
        assert_eq!(read.blobs[0].location.uncompressed_length, None);
    }
}
