//! The keys that protect backups, from Secrets:
//! - the seal key: Secret `arca-metadata-key` (key `key`) in the operator's namespace, made by
//!   the operator at its first start. It seals every `backup.json`; the bucket never holds it.
//! - a location's encryption key: the Secret and key its `spec.encryption.keySecretRef` names,
//!   in the location's namespace.
//!
//! In both, the named key is the current one, and every other entry of the Secret that holds
//! a valid key stays usable for reading (a key ring): rotating is adding a key and pointing
//! at it. Key values are never logged.

use arca_api::BackupStorageLocation;
use arca_store::{Key, KeyRing};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

/// The Secret holding the seal key, in the operator's namespace.
pub const SEAL_SECRET: &str = "arca-metadata-key";
/// Its current key.
pub const SEAL_KEY: &str = "key";

/// Why keys cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("Secret {namespace}/{name} does not exist{hint}")]
    Missing {
        namespace: String,
        name: String,
        hint: &'static str,
    },
    #[error("Secret {namespace}/{name} has no key {key:?}: add it, or name the right key")]
    NoKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("key {key:?} of Secret {namespace}/{name} {problem}")]
    Invalid {
        namespace: String,
        name: String,
        key: String,
        problem: arca_store::protect::KeyError,
    },
    #[error("reading or creating Secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The ring of Secret `namespace/name` whose current key is entry `current`.
pub fn ring_of(secret: &Secret, namespace: &str, current: &str) -> Result<KeyRing, KeyRingError> {
    let name = secret.name_any();
    let data = secret.data.clone().unwrap_or_default();
    let raw = data.get(current).ok_or_else(|| KeyRingError::NoKey {
        namespace: namespace.into(),
        name: name.clone(),
        key: current.into(),
    })?;
    let key = Key::from_base64(&raw.0).map_err(|problem| KeyRingError::Invalid {
        namespace: namespace.into(),
        name: name.clone(),
        key: current.into(),
        problem,
    })?;
    let others = data
        .values()
        .filter_map(|v| Key::from_base64(&v.0).ok())
        .collect();
    Ok(KeyRing::new(
        key,
        others,
        format!("Secret {namespace}/{name}"),
    ))
}

async fn get(client: &Client, namespace: &str, name: &str) -> Result<Option<Secret>, KeyRingError> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| KeyRingError::Api {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })
}

/// The seal keys, creating Secret [`SEAL_SECRET`] with a random key when it is absent (a
/// second replica racing to create it reads the first one's).
pub async fn ensure_seal_keys(client: &Client, namespace: &str) -> Result<KeyRing, KeyRingError> {
    if let Some(secret) = get(client, namespace, SEAL_SECRET).await? {
        return ring_of(&secret, namespace, SEAL_KEY);
    }
    let made = crate::secrets::create_once(
        client,
        namespace,
        SEAL_SECRET,
        SEAL_KEY,
        Key::generate().to_base64().into_bytes(),
    )
    .await
    .map_err(|source| KeyRingError::Api {
        namespace: namespace.into(),
        name: SEAL_SECRET.into(),
        source,
    })?;
    if made {
        tracing::info!(%namespace, "created Secret {SEAL_SECRET}: the key that seals backups; keep a copy");
    }
    let secret =
        get(client, namespace, SEAL_SECRET)
            .await?
            .ok_or_else(|| KeyRingError::Missing {
                namespace: namespace.into(),
                name: SEAL_SECRET.into(),
                hint: "",
            })?;
    ring_of(&secret, namespace, SEAL_KEY)
}

/// The encryption keys of `location`, or None when it does not encrypt.
pub async fn location_keys(
    client: &Client,
    location: &BackupStorageLocation,
) -> Result<Option<KeyRing>, KeyRingError> {
    let Some(encryption) = &location.spec.encryption else {
        return Ok(None);
    };
    let namespace = location.namespace().unwrap_or_default();
    let selector = &encryption.key_secret_ref;
    let secret = get(client, &namespace, &selector.name)
        .await?
        .ok_or_else(|| KeyRingError::Missing {
            namespace: namespace.clone(),
            name: selector.name.clone(),
            hint: ": create it with the location's encryption key (spec.encryption.keySecretRef), or `arca location create --generate-encryption-key` makes one",
        })?;
    ring_of(&secret, &namespace, &selector.key).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    fn secret(entries: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("enc".into()),
                ..ObjectMeta::default()
            },
            data: Some(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn the_named_entry_is_current_and_the_other_valid_entries_stay_readable() {
        let (old, new) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
        let s = secret(&[
            ("2026-01", &old.to_base64()),
            ("2026-11", &new.to_base64()),
            ("note", "not a key"),
        ]);
        let ring = ring_of(&s, "ns", "2026-11").expect("ring");
        assert_eq!(ring.current(), &new);
        assert_eq!(ring.find(old.id()), Some(&old));
        assert_eq!(ring.source(), "Secret ns/enc");
    }

    #[test]
    fn a_missing_or_invalid_current_key_names_the_secret_and_the_key() {
        let e = ring_of(&secret(&[]), "ns", "k").expect_err("no key");
        assert!(
            e.to_string().contains("ns/enc") && e.to_string().contains("\"k\""),
            "{e}"
        );
        let e = ring_of(&secret(&[("k", "c2hvcnQ=")]), "ns", "k").expect_err("short");
        assert!(e.to_string().contains("32 random bytes"), "{e}");
    }
}
