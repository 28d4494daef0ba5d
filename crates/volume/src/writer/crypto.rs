//! restic's authenticated encryption: AES-256-CTR with a Poly1305-AES MAC, applied by the
//! `aes256ctr_poly1305aes` crate (the one rustic uses). A sealed message is
//! `nonce (16) || ciphertext || tag (16)`.

use aes256ctr_poly1305aes::{
    Aes256CtrPoly1305Aes, Key, Nonce,
    aead::{Aead, AeadInPlace},
};
use rand::RngCore;
use rustic_core::repofile::MasterKey;

/// Bytes a sealed message has more than its plaintext.
pub(crate) const OVERHEAD: usize = 32;
const NONCE: usize = 16;

/// Why a sealed message could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CryptoError {
    /// The repository key has the wrong shape.
    #[error("the repository's master key is malformed (expected 32 + 16 + 16 bytes)")]
    BadKey,
    /// The message is too short or its MAC does not match: corrupt, or not from this
    /// repository.
    #[error("the data does not authenticate with the repository key (corrupted or tampered)")]
    Unauthentic,
    /// A message past the cipher's limit (2^36 bytes; a chunk is at most 8 MiB).
    #[error("a message too large to encrypt ({0} bytes)")]
    TooLarge(usize),
}

/// The repository's data key.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: Aes256CtrPoly1305Aes,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// The key of an opened repository ([`rustic_core::Repository::key`]).
    pub(crate) fn new(master: &MasterKey) -> Result<Self, CryptoError> {
        let (encrypt, k, r) = (&master.encrypt, &master.mac.k, &master.mac.r);
        if encrypt.len() != 32 || k.len() != 16 || r.len() != 16 {
            return Err(CryptoError::BadKey);
        }
        let mut key = Key::default();
        key[..32].copy_from_slice(encrypt);
        key[32..48].copy_from_slice(k);
        key[48..].copy_from_slice(r);
        Ok(Self {
            cipher: Aes256CtrPoly1305Aes::new(&key),
        })
    }

    /// `plain` sealed with a fresh random nonce.
    pub(crate) fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        self.seal_into(plain, &mut out)?;
        Ok(out)
    }

    /// Appends `plain`, sealed, to `out`.
    pub(crate) fn seal_into(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let mut nonce = Nonce::default();
        rand::rng().fill_bytes(&mut nonce);
        let start = out.len();
        out.reserve(plain.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let body = &mut out[start + NONCE..];
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, &[], body)
            .map_err(|_| CryptoError::TooLarge(plain.len()))?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// The plaintext of a sealed message.
    pub(crate) fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::Unauthentic);
        }
        let nonce = Nonce::from_slice(&sealed[..NONCE]);
        self.cipher
            .decrypt(nonce, &sealed[NONCE..])
            .map_err(|_| CryptoError::Unauthentic)
    }
}
