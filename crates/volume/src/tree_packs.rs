//! Tree packs held in memory for one operation. A backup with a parent reads the parent's
//! tree of every folder, one small blob at a time; without this each is a ranged GET (500
//! folders, 500 round trips), while all of them usually sit in one or two packs of a few
//! MiB. Bounded: packs beyond the budget are read by range as before.

use std::collections::VecDeque;

use bytes::Bytes;

/// Bytes of tree packs kept at most.
pub const BUDGET: usize = 32 * 1024 * 1024;

/// Whole tree packs by key, oldest first out.
#[derive(Debug, Default)]
pub struct TreePacks {
    packs: VecDeque<(String, Bytes)>,
    bytes: usize,
}

impl TreePacks {
    /// `length` bytes at `offset` of the pack `key`, if it is held and that long.
    pub fn slice(&self, key: &str, offset: usize, length: usize) -> Option<Bytes> {
        let (_, pack) = self.packs.iter().find(|(k, _)| k == key)?;
        let end = offset.checked_add(length)?;
        (end <= pack.len()).then(|| pack.slice(offset..end))
    }

    /// Keeps `pack`, dropping the oldest ones past the budget; a pack over the budget alone
    /// is not kept.
    pub fn keep(&mut self, key: String, pack: Bytes) {
        if pack.len() > BUDGET || self.packs.iter().any(|(k, _)| *k == key) {
            return;
        }
        self.bytes += pack.len();
        self.packs.push_back((key, pack));
        while self.bytes > BUDGET {
            match self.packs.pop_front() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_held_packs_and_stays_in_budget() {
        let mut packs = TreePacks::default();
        packs.keep("a".into(), Bytes::from_static(b"0123456789"));
        assert_eq!(packs.slice("a", 2, 3).as_deref(), Some(&b"234"[..]));
        assert_eq!(packs.slice("a", 8, 3), None, "past the end");
        assert_eq!(packs.slice("b", 0, 1), None, "not held");
        packs.keep("big".into(), Bytes::from(vec![0u8; BUDGET + 1]));
        assert_eq!(packs.slice("big", 0, 1), None, "over budget alone");
        packs.keep("c".into(), Bytes::from(vec![1u8; BUDGET - 5]));
        assert_eq!(packs.slice("a", 0, 1), None, "oldest dropped");
        assert!(packs.slice("c", 0, 1).is_some());
        assert!(packs.bytes <= BUDGET);
    }
}
