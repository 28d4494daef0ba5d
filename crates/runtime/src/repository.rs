//! The volume repositories' password: Secret `arca-repo-credentials`, key
//! `repository-password`, in the operator's namespace. The operator makes it at its first
//! start when absent; the node agents read it. It is never logged.

use arca_engine::protocol::{
    REPOSITORY_PASSWORD_KEY, REPOSITORY_SECRET, RepositoryPassword, VELERO_DEFAULT_PASSWORD,
    VELERO_REPOSITORY_SECRET,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use rand::RngCore;

/// Why the password cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error(
        "Secret {namespace}/{REPOSITORY_SECRET} has no key {REPOSITORY_PASSWORD_KEY}: add it (the password of the existing repositories), or delete the Secret so the operator makes a new one"
    )]
    NoKey { namespace: String },
    #[error(
        "Secret {namespace}/{REPOSITORY_SECRET} does not exist yet: the operator creates it at its first start; is the operator installed in {namespace}?"
    )]
    Missing { namespace: String },
    #[error("reading or creating Secret {namespace}/{REPOSITORY_SECRET}: {source}")]
    Api {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// Reads the password; [`PasswordError::Missing`] when the Secret is absent.
pub async fn read_password(
    client: &Client,
    namespace: &str,
) -> Result<RepositoryPassword, PasswordError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(REPOSITORY_SECRET)
        .await
        .map_err(|source| PasswordError::Api {
            namespace: namespace.into(),
            source,
        })?
        .ok_or_else(|| PasswordError::Missing {
            namespace: namespace.into(),
        })?;
    password_of(&secret).ok_or_else(|| PasswordError::NoKey {
        namespace: namespace.into(),
    })
}

/// Velero's repository password, for Velero's restic repositories: Secret
/// `velero-repo-credentials` key `repository-password` in `namespace` (the operator's; copied
/// there from Velero's namespace by whoever migrates), else Velero's default
/// `static-passw0rd`, which Velero gives its repositories when that Secret is absent.
pub async fn read_velero_password(
    client: &Client,
    namespace: &str,
) -> Result<RepositoryPassword, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(VELERO_REPOSITORY_SECRET).await?;
    Ok(secret
        .as_ref()
        .and_then(password_of)
        .unwrap_or_else(|| RepositoryPassword::new(VELERO_DEFAULT_PASSWORD.into())))
}

/// Reads the password, creating the Secret with a random one when it is absent (a second
/// replica racing to create it reads the first one's).
pub async fn ensure_password(
    client: &Client,
    namespace: &str,
) -> Result<RepositoryPassword, PasswordError> {
    match read_password(client, namespace).await {
        Err(PasswordError::Missing { .. }) => {}
        other => return other,
    }
    match crate::secrets::create_once(
        client,
        namespace,
        REPOSITORY_SECRET,
        REPOSITORY_PASSWORD_KEY,
        new_password().into_bytes(),
    )
    .await
    {
        Ok(true) => tracing::info!(
            "created Secret {namespace}/{REPOSITORY_SECRET} with a new repository password: keep a copy, the volume data cannot be read without it"
        ),
        Ok(false) => {}
        Err(source) => {
            return Err(PasswordError::Api {
                namespace: namespace.into(),
                source,
            });
        }
    }
    read_password(client, namespace).await
}

fn password_of(secret: &Secret) -> Option<RepositoryPassword> {
    let bytes = secret.data.as_ref()?.get(REPOSITORY_PASSWORD_KEY)?;
    let text = String::from_utf8(bytes.0.clone()).ok()?;
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    (!text.is_empty()).then(|| RepositoryPassword::new(text))
}

/// 32 random bytes as hex: 256 bits, printable, safe in any shell.
fn new_password() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn new_passwords_are_long_and_different() {
        let (a, b) = (new_password(), new_password());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn a_trailing_newline_is_not_part_of_the_password() {
        let secret = Secret {
            data: Some(BTreeMap::from([(
                REPOSITORY_PASSWORD_KEY.to_string(),
                ByteString(b"s3cret\n".to_vec()),
            )])),
            ..Secret::default()
        };
        assert_eq!(
            password_of(&secret).map(|p| p.reveal().to_string()),
            Some("s3cret".to_string())
        );
        assert!(password_of(&Secret::default()).is_none());
    }
}
