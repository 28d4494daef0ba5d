//! Keys and key rings. A key is 32 random bytes, kept base64-encoded in a Secret (as
//! `head -c 32 /dev/urandom | base64` makes). Storage names a key only by its [`KeyId`],
//! never by its value.

use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};

/// The bytes of a key.
pub const KEY_BYTES: usize = 32;

/// A 256-bit secret key. Its `Debug` shows the id only.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; KEY_BYTES],
    id: KeyId,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// A key's public name: 16 hex digits of a hash of the key (SHA-256 with a label of its
/// own, so the id reveals nothing usable about the key).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl KeyId {
    /// The id as written in storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's 8 bytes (as in an encrypted object's header).
    pub(crate) fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        if let Ok(raw) = hex::decode(&self.0) {
            let n = raw.len().min(8);
            out[..n].copy_from_slice(&raw[..n]);
        }
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8; 8]) -> Self {
        Self(hex::encode(bytes))
    }

    /// An id read from storage, kept as it is for comparison and messages.
    pub fn from_stored(id: &str) -> Self {
        Self(id.to_string())
    }
}

/// Why a key is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("is not base64: {0} (make a key with `head -c 32 /dev/urandom | base64`)")]
    NotBase64(String),
    #[error(
        "holds {0} bytes once decoded; a key is exactly 32 random bytes (make one with `head -c 32 /dev/urandom | base64`)"
    )]
    WrongLength(usize),
}

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"arca key id v1\n");
        hasher.update(bytes);
        let id = KeyId(hex::encode(&hasher.finalize()[..8]));
        Self { bytes, id }
    }

    /// A key from its base64 text (surrounding whitespace ignored, as `base64` prints it).
    pub fn from_base64(text: &[u8]) -> Result<Self, KeyError> {
        let trimmed: Vec<u8> = text
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&trimmed)
            .map_err(|e| KeyError::NotBase64(e.to_string()))?;
        let bytes: [u8; KEY_BYTES] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(raw.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        Self::from_bytes(bytes)
    }

    /// The key as a Secret holds it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes)
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }
}

/// The keys of one Secret: the current one (used for everything new) and the others (kept so
/// what they protected stays readable). `source` names the Secret, for messages.
#[derive(Clone, Debug)]
pub struct KeyRing {
    current: Key,
    others: Vec<Key>,
    source: String,
}

impl KeyRing {
    /// A ring whose current key is `current`; `others` may repeat it.
    pub fn new(current: Key, others: Vec<Key>, source: impl Into<String>) -> Self {
        let others = others.into_iter().filter(|k| k != &current).collect();
        Self {
            current,
            others,
            source: source.into(),
        }
    }

    pub fn current(&self) -> &Key {
        &self.current
    }

    /// The key with `id`, current or not.
    pub fn find(&self, id: &KeyId) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.others)
            .find(|k| k.id() == id)
    }

    /// Where the keys come from (`Secret arca-system/arca-metadata-key`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The ids this ring holds, for messages.
    pub fn ids(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.others)
            .map(|k| k.id().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_from_the_base64_that_the_guide_makes_and_names_itself_by_id() {
        let key = Key::from_bytes([7; 32]);
        let text = format!("{}\n", key.to_base64());
        let back = Key::from_base64(text.as_bytes()).expect("valid");
        assert_eq!(back, key);
        assert_eq!(back.id().as_str().len(), 16);
        assert_ne!(Key::from_bytes([8; 32]).id(), key.id());
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }

    #[test]
    fn a_key_of_the_wrong_size_or_not_base64_is_refused_with_how_to_make_one() {
        assert_eq!(Key::from_base64(b"aGVsbG8="), Err(KeyError::WrongLength(5)));
        let e = Key::from_base64(b"not base64!").expect_err("refused");
        assert!(e.to_string().contains("head -c 32 /dev/urandom"), "{e}");
    }

    #[test]
    fn a_ring_finds_old_keys_and_writes_with_the_current_one() {
        let (old, new) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
        let ring = KeyRing::new(new.clone(), vec![old.clone(), new.clone()], "s");
        assert_eq!(ring.current(), &new);
        assert_eq!(ring.find(old.id()), Some(&old));
        assert_eq!(ring.find(&KeyId::from_stored("0000000000000000")), None);
        assert_eq!(ring.ids().len(), 2);
        let id = KeyId::from_bytes(&new.id().to_bytes());
        assert_eq!(&id, new.id());
    }
}
