//! What S3 adds to the objects it stores: object lock retention and server-side encryption.
//! Plain values; [`crate::S3Store`] turns them into request headers.

use std::time::SystemTime;

/// S3 Object Lock's retention modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Refused deletes, but for users allowed to bypass governance retention.
    Governance,
    /// Refused deletes for everyone until the date.
    Compliance,
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        })
    }
}

/// The retention an object is written with, or carries: the store refuses to delete or
/// overwrite it before `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRetention {
    pub mode: LockMode,
    pub until: SystemTime,
}

/// Server-side encryption asked of the store for every object written (Velero's
/// `serverSideEncryption` and `kmsKeyId` location settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// `AES256`: keys the store manages (SSE-S3).
    Aes256,
    /// `aws:kms`, with the given key, or the account's default KMS key when None.
    Kms { key_id: Option<String> },
}

impl ServerSideEncryption {
    /// From the location's `serverSideEncryption` and `kmsKeyId` values; None when neither
    /// is set. Refuses any other algorithm, and a key without `aws:kms`.
    pub fn from_config(
        algorithm: Option<&str>,
        kms_key_id: Option<&str>,
    ) -> Result<Option<Self>, String> {
        let key = kms_key_id.map(str::trim).filter(|k| !k.is_empty());
        match (algorithm.map(str::trim).filter(|a| !a.is_empty()), key) {
            (None, None) => Ok(None),
            (Some("AES256"), None) => Ok(Some(Self::Aes256)),
            (Some("AES256"), Some(_)) => Err(
                "config.kmsKeyId names a KMS key but config.serverSideEncryption is AES256: set serverSideEncryption to aws:kms, or remove kmsKeyId".into(),
            ),
            (Some("aws:kms") | None, key) => Ok(Some(Self::Kms {
                key_id: key.map(str::to_string),
            })),
            (Some(other), _) => Err(format!(
                "config.serverSideEncryption is {other:?}: use AES256 (keys managed by the store) or aws:kms (with config.kmsKeyId, or the account's default key)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_encryption_settings_are_read_or_refused_with_the_fix() {
        assert_eq!(ServerSideEncryption::from_config(None, None), Ok(None));
        assert_eq!(
            ServerSideEncryption::from_config(Some("AES256"), None),
            Ok(Some(ServerSideEncryption::Aes256))
        );
        assert_eq!(
            ServerSideEncryption::from_config(Some("aws:kms"), None),
            Ok(Some(ServerSideEncryption::Kms { key_id: None }))
        );
        // Velero sends aws:kms when only kmsKeyId is set.
        assert_eq!(
            ServerSideEncryption::from_config(None, Some("arn:aws:kms:k")),
            Ok(Some(ServerSideEncryption::Kms {
                key_id: Some("arn:aws:kms:k".into())
            }))
        );
        let wrong = ServerSideEncryption::from_config(Some("aes256"), None).expect_err("refused");
        assert!(wrong.contains("use AES256"), "{wrong}");
        let both =
            ServerSideEncryption::from_config(Some("AES256"), Some("k")).expect_err("refused");
        assert!(
            both.contains("set serverSideEncryption to aws:kms"),
            "{both}"
        );
    }
}
