//! Which ranges of which packs to read for a batch of files: every blob the batch needs,
//! once, grouped by pack and in pack order, neighbours read together. Pure logic.

use std::collections::HashMap;

use super::index::DataLocation;
use crate::writer::Hash;

/// Blobs closer than this in a pack are read in one request (the bytes between are read
/// and dropped).
pub(crate) const MAX_GAP: u32 = 256 << 10;
/// A read spans at most this much, unless one blob alone is larger.
pub(crate) const MAX_READ: u32 = 8 << 20;

/// Where a blob's plaintext goes: a file of the batch and an offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) file: u32,
    pub(crate) offset: u64,
}

/// One blob to restore, and everywhere it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) id: Hash,
    pub(crate) at: DataLocation,
    pub(crate) places: Vec<Place>,
}

/// One ranged read of a pack and the blobs in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) pack: u32,
    pub(crate) offset: u32,
    pub(crate) length: u32,
    pub(crate) blobs: Vec<Wanted>,
}

/// The blobs a batch needs, each once with all its places.
#[derive(Debug, Default)]
pub(crate) struct Needed {
    blobs: HashMap<Hash, Wanted>,
}

impl Needed {
    /// `id`, stored at `at`, goes to `place`.
    pub(crate) fn add(&mut self, id: Hash, at: DataLocation, place: Place) {
        self.blobs
            .entry(id)
            .or_insert_with(|| Wanted {
                id,
                at,
                places: Vec::new(),
            })
            .places
            .push(place);
    }

    /// How many different blobs.
    pub(crate) fn len(&self) -> usize {
        self.blobs.len()
    }

    /// The reads that fetch every blob: by pack, in offset order, neighbours no more than
    /// [`MAX_GAP`] apart joined while the read stays within [`MAX_READ`].
    pub(crate) fn into_reads(self) -> Vec<Read> {
        let mut blobs: Vec<Wanted> = self.blobs.into_values().collect();
        blobs.sort_by_key(|b| (b.at.pack, b.at.offset));
        let mut reads: Vec<Read> = Vec::new();
        for blob in blobs {
            let (start, end) = (
                blob.at.offset,
                u64::from(blob.at.offset) + u64::from(blob.at.length),
            );
            if let Some(read) = reads.last_mut() {
                let read_end = u64::from(read.offset) + u64::from(read.length);
                let joins = read.pack == blob.at.pack
                    && u64::from(start) >= read_end
                    && u64::from(start) - read_end <= u64::from(MAX_GAP)
                    && end - u64::from(read.offset) <= u64::from(MAX_READ);
                if joins {
                    // Within MAX_READ of a u32 offset: fits in u32.
                    read.length = u32::try_from(end - u64::from(read.offset)).unwrap_or(u32::MAX);
                    read.blobs.push(blob);
                    continue;
                }
            }
            reads.push(Read {
                pack: blob.at.pack,
                offset: start,
                length: blob.at.length,
                blobs: vec![blob],
            });
        }
        reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pack: u32, offset: u32, length: u32) -> DataLocation {
        DataLocation {
            pack,
            offset,
            length,
            uncompressed: None,
        }
    }

    fn place(file: u32, offset: u64) -> Place {
        Place { file, offset }
    }

    #[test]
    fn a_blob_used_twice_is_read_once_with_both_places() {
        let mut needed = Needed::default();
        needed.add([1; 32], at(0, 0, 100), place(0, 0));
        needed.add([1; 32], at(0, 0, 100), place(3, 4096));
        assert_eq!(needed.len(), 1);
        let reads = needed.into_reads();
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].blobs[0].places, vec![place(0, 0), place(3, 4096)]);
    }

    #[test]
    fn neighbours_in_a_pack_are_read_together_in_offset_order() {
        let mut needed = Needed::default();
        needed.add([2; 32], at(0, 1000, 500), place(0, 0));
        needed.add([1; 32], at(0, 0, 900), place(1, 0));
        // 300 KiB after the second blob: past MAX_GAP, a read of its own.
        needed.add([3; 32], at(0, 1500 + MAX_GAP + 1, 10), place(2, 0));
        needed.add([4; 32], at(1, 0, 10), place(3, 0));
        let reads = needed.into_reads();
        let shape: Vec<_> = reads
            .iter()
            .map(|r| (r.pack, r.offset, r.length, r.blobs.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, 0, 1500, 2),
                (0, 1500 + MAX_GAP + 1, 10, 1),
                (1, 0, 10, 1)
            ]
        );
        assert_eq!(reads[0].blobs[0].id, [1; 32], "in offset order");
    }

    #[test]
    fn a_read_stays_within_its_limit_but_a_large_blob_is_read_whole() {
        let mut needed = Needed::default();
        let big = MAX_READ / 2 + 1;
        needed.add([1; 32], at(0, 0, big), place(0, 0));
        needed.add([2; 32], at(0, big, big), place(1, 0));
        needed.add([3; 32], at(0, 2 * big, 3 * MAX_READ), place(2, 0));
        let reads = needed.into_reads();
        let lengths: Vec<_> = reads.iter().map(|r| r.length).collect();
        assert_eq!(lengths, vec![big, big, 3 * MAX_READ]);
    }

    #[test]
    fn overlapping_entries_are_not_joined() {
        // A tampered index may name overlapping blobs: each is read on its own.
        let mut needed = Needed::default();
        needed.add([1; 32], at(0, 0, 100), place(0, 0));
        needed.add([2; 32], at(0, 50, 100), place(1, 0));
        assert_eq!(needed.into_reads().len(), 2);
    }
}
