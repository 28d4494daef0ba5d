//! Store errors, with messages that say what to do.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no object at {key}")]
    NotFound { key: String },
    #[error(
        "the store rejected the credentials ({detail}): check the Secret named in the location's `credential` (an AWS credentials file with aws_access_key_id and aws_secret_access_key)"
    )]
    Credentials { detail: String },
    #[error(
        "bucket {bucket:?} does not exist at {endpoint}: create it, or fix objectStorage.bucket"
    )]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error(
        "access denied to {what} ({detail}): the credentials need s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on the bucket"
    )]
    AccessDenied { what: String, detail: String },
    #[error(
        "the store refuses to {what}: it is under object lock ({detail}). It can be deleted once its retain-until date has passed"
    )]
    Locked { what: String, detail: String },
    #[error(
        "cannot reach the store at {endpoint}: {detail}. Check config.s3Url and that the network allows the connection"
    )]
    Unreachable { endpoint: String, detail: String },
    #[error(
        "TLS with {endpoint} failed: {detail}. If the store uses a private CA, put its certificate in a Secret and name it in objectStorage.caCertRef"
    )]
    Tls { endpoint: String, detail: String },
    #[error(
        "{what} was refused: Arca only reads this layout (another tool's) and never writes to it"
    )]
    ReadOnly { what: String },
    #[error("bad location settings: {0}")]
    Config(String),
    #[error("{operation} {key}: {detail}")]
    Service {
        operation: &'static str,
        key: String,
        detail: String,
    },
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{key} changed in storage after it was verified: {detail}. Something wrote to the backup's folder while it was read; read it again once nothing else writes there"
    )]
    Changed { key: String, detail: String },
    #[error("{key} is not authentic: {detail}")]
    Unauthentic { key: String, detail: String },
    #[error("cannot decrypt {key}: {detail}")]
    Decrypt { key: String, detail: String },
    #[error("corrupt data in {key}: {detail}")]
    Corrupt { key: String, detail: String },
    #[error(
        "{key} is larger than {limit} bytes, more than Arca ever writes there: the bucket's contents were changed by someone else; it is not read"
    )]
    TooLarge { key: String, limit: u64 },
}

impl StoreError {
    /// True for a missing object.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}
