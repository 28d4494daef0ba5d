//! Master keys that a password has already opened, so that a long-lived process (the node
//! agent) opens the same repository again without a key derivation.
//!
//! Opening a restic repository with a password derives a key with scrypt (about 0.2 s of
//! CPU with restic's parameters) for every key file tried. The node agent opens a
//! namespace's repository for each volume of each backup and restore: on an unchanged
//! backup that derivation is a large part of the time.
//!
//! An entry says: "password P opened key file K of the repository at L, which holds master
//! key M". It is used only while K is still in the repository: key files are named by the
//! hash of their content, so while K is there, P still opens it. A password whose key was
//! removed (`restic key remove`, Arca's re-keying) no longer opens the repository from the
//! cache either. M itself is checked by the repository: opening reads and authenticates
//! the `config` with it, so a replaced repository fails and the entry is dropped.
//!
//! Entries live in the process's memory only (the process already holds the passwords), at
//! most [`MAX_ENTRIES`]; the password is kept as a SHA-256 digest.

use std::{collections::HashMap, sync::Mutex};

use rustic_core::repofile::{KeyId, MasterKey};
use sha2::{Digest, Sha256};

/// Entries kept at most; when full, the cache starts empty again (a namespace's
/// repository costs one key derivation more).
pub const MAX_ENTRIES: usize = 4096;

/// Where a repository is and the password's digest.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Entry {
    location: String,
    password: [u8; 32],
}

/// What a password opened.
#[derive(Clone)]
pub(crate) struct Opened {
    pub key_id: KeyId,
    pub master: MasterKey,
}

/// Master keys by repository and password; share one per process
/// ([`crate::VolumeRepository::with_key_cache`]).
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<Entry, Opened>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

fn entry(location: &str, password: &str) -> Entry {
    Entry {
        location: location.to_string(),
        password: Sha256::digest(password.as_bytes()).into(),
    }
}

impl KeyCache {
    /// Repositories (and passwords) held.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get(&self, location: &str, password: &str) -> Option<Opened> {
        let entries = self.entries.lock().ok()?;
        entries.get(&entry(location, password)).cloned()
    }

    pub(crate) fn put(&self, location: &str, password: &str, opened: Opened) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(entry(location, password), opened);
        }
    }

    pub(crate) fn forget(&self, location: &str, password: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&entry(location, password));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(byte: u8) -> Opened {
        let id: rustic_core::Id = format!("{byte:02x}").repeat(32).parse().expect("id");
        Opened {
            key_id: KeyId::from(id),
            master: MasterKey::new(),
        }
    }

    #[test]
    fn an_entry_needs_the_same_location_and_password() {
        let cache = KeyCache::default();
        cache.put("s3/bucket/volumes/a", "pw-a", opened(1));
        assert!(cache.get("s3/bucket/volumes/a", "pw-a").is_some());
        assert!(cache.get("s3/bucket/volumes/a", "pw-b").is_none());
        assert!(cache.get("s3/bucket/volumes/b", "pw-a").is_none());
        cache.forget("s3/bucket/volumes/a", "pw-a");
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_starts_again() {
        let cache = KeyCache::default();
        for i in 0..MAX_ENTRIES {
            cache.put(&format!("loc-{i}"), "pw", opened(1));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        cache.put("one-more", "pw", opened(2));
        assert_eq!(cache.len(), 1);
        assert!(cache.get("one-more", "pw").is_some());
    }
}
