//! The seal of `backup.json`: an HMAC-SHA256, under a key the bucket does not hold, of the
//! backup's name and of the exact bytes of its metadata. The metadata holds the sizes and
//! SHA-256 of the archive, the index and `volumes.json`, so the seal covers them too: whoever
//! can write to the bucket but does not hold the key cannot change a backup unnoticed, nor
//! pass one backup's metadata off as another's.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::keys::{Key, KeyId, KeyRing};

/// What `backup.json` records of its seal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seal {
    /// The id of the key that made it.
    pub key_id: String,
    /// Hex HMAC-SHA256.
    pub hmac_sha256: String,
}

/// Why a seal does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "it is sealed with key {key_id}, which {secret} does not hold (it holds {held}): copy the key from the cluster that made the backup into that Secret"
    )]
    UnknownKey {
        key_id: String,
        secret: String,
        held: String,
    },
    #[error(
        "its seal does not match its content: someone changed backup.json, or moved it from another backup's folder, without the key; it is not used"
    )]
    Mismatch,
}

fn mac(key: &Key, name: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut seal_key = [0u8; 32];
    // Expanding 32 bytes from a 32-byte key cannot fail.
    let _ =
        Hkdf::<Sha256>::new(None, key.bytes()).expand(b"arca backup.json seal v1", &mut seal_key);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&seal_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(b"arca backup.json v2\n");
    mac.update(&(name.len() as u64).to_be_bytes());
    mac.update(name.as_bytes());
    mac.update(body);
    mac
}

/// The seal of backup `name`'s metadata `body` under `key`.
pub fn seal(key: &Key, name: &str, body: &[u8]) -> Seal {
    Seal {
        key_id: key.id().to_string(),
        hmac_sha256: hex::encode(mac(key, name, body).finalize().into_bytes()),
    }
}

/// Checks `seal` over backup `name`'s metadata `body` with the keys of `ring`.
pub fn verify(ring: &KeyRing, name: &str, body: &[u8], seal: &Seal) -> Result<(), SealError> {
    let key = ring
        .find(&KeyId::from_stored(&seal.key_id))
        .ok_or_else(|| SealError::UnknownKey {
            key_id: seal.key_id.clone(),
            secret: ring.source().into(),
            held: ring.ids().join(", "),
        })?;
    let expected = hex::decode(&seal.hmac_sha256).map_err(|_| SealError::Mismatch)?;
    mac(key, name, body)
        .verify_slice(&expected)
        .map_err(|_| SealError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(Key::from_bytes([3; 32]), vec![], "Secret ns/keys")
    }

    #[test]
    fn a_seal_holds_for_its_backup_and_content_only() {
        let ring = ring();
        let s = seal(ring.current(), "b1", br#"{"a":1}"#);
        assert_eq!(verify(&ring, "b1", br#"{"a":1}"#, &s), Ok(()));
        assert_eq!(
            verify(&ring, "b1", br#"{"a":2}"#, &s),
            Err(SealError::Mismatch)
        );
        assert_eq!(
            verify(&ring, "b2", br#"{"a":1}"#, &s),
            Err(SealError::Mismatch)
        );
        let mut forged = s.clone();
        forged.hmac_sha256 = "zz".into();
        assert_eq!(
            verify(&ring, "b1", br#"{"a":1}"#, &forged),
            Err(SealError::Mismatch)
        );
    }

    #[test]
    fn a_seal_by_a_key_the_ring_lacks_names_the_secret_and_the_key() {
        let other = Key::from_bytes([4; 32]);
        let s = seal(&other, "b1", b"{}");
        let e = verify(&ring(), "b1", b"{}", &s).expect_err("unknown key");
        assert!(e.to_string().contains(other.id().as_str()), "{e}");
        assert!(e.to_string().contains("Secret ns/keys"), "{e}");
        let both = KeyRing::new(Key::from_bytes([3; 32]), vec![other], "s");
        assert_eq!(verify(&both, "b1", b"{}", &s), Ok(()));
    }
}
