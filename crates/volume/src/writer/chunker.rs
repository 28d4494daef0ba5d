//! restic's content-defined chunking, with the rolling hash's tables built once.
//!
//! A chunk ends where the Rabin fingerprint of the last 64 bytes, masked to the average
//! chunk size (1 MiB: the low 20 bits), is zero, but never before the minimum size (512 KiB)
//! and always at the maximum (8 MiB). The boundaries must be exactly those of rustic's
//! chunker (which wrote the repositories' existing data), or nothing deduplicates against
//! older snapshots: like rustic, each chunk takes its first `min` bytes unhashed, primes the
//! window with bytes `min-64 .. min-1` of the chunk and tests the fingerprint before
//! sliding in each following byte. Files shorter than the minimum are one chunk and are not
//! hashed at all.
//!
//! restic's own chunker differs from rustic's in the 64 positions after the minimum (it
//! hashes bytes `min-64 .. min` there, rustic skips byte `min-1` until it leaves the
//! window): about one chunk boundary in 8,000 differs, which only costs deduplication
//! against data that the restic CLI itself wrote. Matching rustic keeps every existing Arca
//! snapshot deduplicating.
//!
//! `rustic_cdc`'s [`Rabin64`] computes its two 256-entry tables in its constructor (13-16%
//! of a backup's CPU when done per file); [`Chunker`] keeps one prepared instance and clones
//! it per file, and the per-chunk priming resets its state.

use std::io::{self, Read};

use rustic_cdc::{Polynom64, Rabin64, RollingHash64};

/// Bytes in the rolling hash's window, as 2^6.
const WINDOW_BITS: u32 = 6;
/// Bytes in the rolling hash's window.
const WINDOW: usize = 1 << WINDOW_BITS;
/// How much is asked of the reader at a time while looking for a boundary.
const READ_BLOCK: usize = 256 << 10;

/// The repository's chunking parameters, with the hash tables prepared.
#[derive(Clone, Debug)]
pub(crate) struct Chunker {
    rabin: Rabin64,
    split_mask: u64,
    min: usize,
    max: usize,
}

impl Chunker {
    /// A chunker for the polynomial and sizes of a repository's config: `avg` must be a
    /// power of two, `WINDOW < min <= avg <= max`.
    pub(crate) fn new(poly: Polynom64, avg: usize, min: usize, max: usize) -> Option<Self> {
        let valid = avg.is_power_of_two() && min > WINDOW && min <= avg && avg <= max;
        valid.then(|| Self {
            rabin: Rabin64::new_with_polynom(WINDOW_BITS, &poly),
            split_mask: avg as u64 - 1,
            min,
            max,
        })
    }

    /// The chunks of `reader`, in order; `expected` is how many bytes it should have (the
    /// file's size: reads are sized by it, so a small file costs no large buffer).
    pub(crate) fn chunks<R: Read>(&self, reader: R, expected: u64) -> Chunks<R> {
        Chunks {
            left: usize::try_from(expected).unwrap_or(usize::MAX),
            rabin: self.rabin.clone(),
            split_mask: self.split_mask,
            min: self.min,
            max: self.max,
            reader,
            pending: Vec::new(),
            eof: false,
        }
    }
}

/// The chunks of one reader.
#[derive(Debug)]
pub(crate) struct Chunks<R> {
    rabin: Rabin64,
    split_mask: u64,
    min: usize,
    max: usize,
    reader: R,
    /// Bytes read and not yet handed out: the start of the next chunk.
    pending: Vec<u8>,
    /// Bytes the reader should still have.
    left: usize,
    eof: bool,
}

impl<R: Read> Chunks<R> {
    /// Reads until `pending` holds at least `want` bytes or the reader ends; false at the
    /// end.
    fn fill(&mut self, want: usize) -> io::Result<bool> {
        while self.pending.len() < want && !self.eof {
            let have = self.pending.len();
            // One byte more than expected, to see the end without another large buffer.
            let ask = (want - have)
                .max(READ_BLOCK.min(self.max))
                .min(self.left.saturating_add(1));
            // `read_to_end` reads into the spare capacity without zeroing it first.
            let n = (&mut self.reader)
                .take(ask as u64)
                .read_to_end(&mut self.pending)?;
            if n < ask {
                self.eof = true;
            }
            // More than expected: the file grew, its size is unknown now.
            self.left = self.left.checked_sub(n).unwrap_or(usize::MAX);
        }
        Ok(self.pending.len() >= want)
    }

    /// Where the chunk starting at `pending[0]` ends.
    fn boundary(&mut self) -> io::Result<usize> {
        if !self.fill(self.min)? {
            // The rest is shorter than a chunk can be: it is the last chunk, unhashed.
            return Ok(self.pending.len());
        }
        let prime = &self.pending[self.min - WINDOW..self.min - 1];
        self.rabin
            .reset_and_prefill_window(&mut prime.iter().copied());
        let mut len = self.min;
        loop {
            if len >= self.max || self.rabin.hash & self.split_mask == 0 {
                return Ok(len);
            }
            if len == self.pending.len() && !self.fill(len + 1)? {
                return Ok(len);
            }
            // Slide through what is buffered without going back to the reader.
            let end = self.pending.len().min(self.max);
            for &byte in &self.pending[len..end] {
                self.rabin.slide(byte);
                len += 1;
                if self.rabin.hash & self.split_mask == 0 {
                    return Ok(len);
                }
            }
        }
    }

    /// The next chunk, `None` after the last.
    pub(crate) fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let end = self.boundary()?;
        if end == 0 {
            return Ok(None);
        }
        let rest = self.pending.split_off(end);
        Ok(Some(std::mem::replace(&mut self.pending, rest)))
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngCore, SeedableRng, rngs::StdRng};

    use super::*;

    const MIN: usize = 512 << 10;
    const MAX: usize = 8 << 20;

    fn chunker() -> Chunker {
        Chunker::new(0x003D_A335_8B4D_C173, 1 << 20, MIN, MAX).expect("restic's sizes")
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut data = vec![0u8; len];
        StdRng::seed_from_u64(seed).fill_bytes(&mut data);
        data
    }

    fn split<R: Read>(reader: R, expected: u64) -> Vec<Vec<u8>> {
        let mut chunks = chunker().chunks(reader, expected);
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next_chunk().expect("read") {
            out.push(chunk);
        }
        out
    }

    /// A reader handing out a few bytes at a time.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(4093);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn invalid_sizes_are_refused() {
        assert!(
            Chunker::new(1, 3 << 20, MIN, MAX).is_none(),
            "not a power of two"
        );
        assert!(
            Chunker::new(1, 1 << 20, 2 << 20, MAX).is_none(),
            "min above average"
        );
        assert!(
            Chunker::new(1, 1 << 20, 32, MAX).is_none(),
            "min within the window"
        );
    }

    #[test]
    fn small_files_are_one_chunk_and_empty_ones_none() {
        let data = random(100 << 10, 1);
        assert_eq!(split(&data[..], data.len() as u64), vec![data.clone()]);
        assert!(split(&[][..], 0).is_empty());
        let exact = random(MIN, 2);
        assert_eq!(split(&exact[..], MIN as u64), vec![exact.clone()]);
    }

    #[test]
    fn zeros_split_at_the_minimum_and_sizes_stay_in_bounds() {
        let zeros = vec![0u8; 2 * MIN + 10];
        let sizes: Vec<_> = split(&zeros[..], zeros.len() as u64)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![MIN, MIN, 10]);
        let data = random(24 << 20, 3);
        let chunks = split(&data[..], data.len() as u64);
        assert_eq!(chunks.concat(), data);
        let (last, rest) = chunks.split_last().expect("chunks");
        assert!(rest.iter().all(|c| (MIN..=MAX).contains(&c.len())));
        assert!(last.len() <= MAX);
        assert!(chunks.len() > 8, "about one per MiB: {}", chunks.len());
    }

    #[test]
    fn boundaries_depend_on_content_only() {
        let data = random(12 << 20, 4);
        let whole = split(&data[..], data.len() as u64);
        // Read a few KiB at a time, with a wrong size expectation: the same chunks.
        assert_eq!(split(Trickle(&data), 1), whole);
        // Bytes inserted at the start: the chunks after the first boundaries are the same.
        let mut shifted = b"inserted".to_vec();
        shifted.extend_from_slice(&data);
        let moved = split(&shifted[..], shifted.len() as u64);
        let same = moved.iter().filter(|c| whole.contains(c)).count();
        assert!(
            same + 2 >= whole.len(),
            "{same} of {} chunks kept",
            whole.len()
        );
    }
}
