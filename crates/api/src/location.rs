//! `BackupStorageLocation`: where backups are written.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::SecretKeySelector, apimachinery::pkg::apis::meta::v1::Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// An object store (any S3-compatible service) or a directory that holds backups.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arca.dev",
    version = "v1alpha1",
    kind = "BackupStorageLocation",
    namespaced,
    status = "BackupStorageLocationStatus",
    shortname = "absl",
    category = "arca",
    doc = "A place backups are written to and read from: an S3-compatible bucket (provider aws) or a directory (provider filesystem).",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(
        name = "Bucket",
        type_ = "string",
        json_path = ".spec.objectStorage.bucket"
    ),
    printcolumn(
        name = "Prefix",
        type_ = "string",
        json_path = ".spec.objectStorage.prefix",
        priority = "1"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Last Validated",
        type_ = "date",
        json_path = ".status.lastValidationTime"
    ),
    printcolumn(name = "Access", type_ = "string", json_path = ".spec.accessMode"),
    printcolumn(name = "Default", type_ = "boolean", json_path = ".spec.default"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.provider != 'filesystem' || (has(self.config) && 'path' in self.config)").message("provider filesystem needs config.path, the directory that holds the bucket folders"))]
#[x_kube(validation = Rule::new("self.provider != 'filesystem' || !has(self.objectLock)").message("objectLock needs an S3 bucket with object lock enabled (provider aws): a directory cannot refuse deletes"))]
pub struct BackupStorageLocationSpec {
    /// `aws` for Amazon S3 or any S3-compatible store (MinIO, Ceph RGW, versitygw...);
    /// `filesystem` for a directory the operator can write (single-node clusters, demos).
    pub provider: Provider,
    /// The bucket and prefix.
    pub object_storage: ObjectStorage,
    /// Provider settings, with Velero's keys. aws: `region`, `s3Url` (endpoint of a
    /// non-AWS store), `s3ForcePathStyle` (`"true"` for most non-AWS stores),
    /// `insecureSkipTLSVerify`, `profile` (in the credentials file),
    /// `serverSideEncryption` (`AES256` or `aws:kms`: sent with every object written) and
    /// `kmsKeyId` (the KMS key of `aws:kms`). filesystem: `path`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The Secret key holding an AWS shared-credentials file (`[default]`,
    /// `aws_access_key_id=...`, `aws_secret_access_key=...`), as Velero's. Unset: the
    /// operator's own environment (instance role, IRSA) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SecretKeySelector>,
    /// The location Backups use when they name none. One location should be the default.
    #[serde(default)]
    pub default: bool,
    /// `ReadWrite`, or `ReadOnly` to only read and restore (a migration target): no backup,
    /// deletion or garbage collection writes to a ReadOnly location.
    #[serde(default)]
    pub access_mode: AccessMode,
    /// How often the backups in storage are synced into Backup objects. `0` turns it off.
    /// Default: the operator's `--backup-sync-period` (1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_sync_period: Option<Duration>,
    /// How often the location is checked. `0` checks once. Default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_frequency: Option<Duration>,
    /// Client-side encryption of the backups written here: their archive, index, logs and
    /// results (and restores' outputs) are encrypted before they leave the operator, so the
    /// bucket's owner and whoever steals its keys read nothing. Unset: stored as plain zstd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<LocationEncryption>,
    /// Immutable backups (S3 Object Lock): every object of a backup is written with a
    /// retention that the store enforces until the backup expires, so no one (Arca, or
    /// whoever holds the bucket's keys) can delete or overwrite it before then. The bucket
    /// must have object lock enabled, or the location is Unavailable. Unset: no lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

/// Where a location's encryption key is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationEncryption {
    /// The Secret (in the location's namespace) and key holding the current encryption key:
    /// 32 random bytes, base64-encoded (`head -c 32 /dev/urandom | base64`, or `arca location
    /// create --generate-encryption-key`). New backups use this key. Every other key of the
    /// same Secret holding such a value stays usable for reading, so rotating is: add the new
    /// key to the Secret, point `key` at it, and keep the old one while backups made with it
    /// are kept. A backup records the id of its key (a hash), never the key.
    pub key_secret_ref: SecretKeySelector,
}

/// How backups written to a location are locked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLock {
    /// `Governance` (a user with `s3:BypassGovernanceRetention` can still remove the lock)
    /// or `Compliance` (no one can, the bucket's root account included, until the date).
    pub mode: ObjectLockMode,
    /// The shortest a backup is kept, whatever its `ttl` (a Go duration, `720h`). Each
    /// object is retained until the backup's expiration (start + ttl), and at least until
    /// its start + `retain`. Unset: until its expiration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<Duration>,
}

/// S3 Object Lock's retention modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ObjectLockMode {
    /// Deletes are refused until the date, except for users allowed to bypass governance.
    #[default]
    Governance,
    /// Deletes are refused until the date, for everyone; the date can only be extended.
    Compliance,
}

/// Which kind of store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Amazon S3 or any S3-compatible store.
    #[default]
    Aws,
    /// A directory on the operator's file system.
    Filesystem,
}

/// Bucket, prefix and TLS trust.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorage {
    /// The bucket (aws) or the folder under `config.path` (filesystem).
    #[x_kube(validation = Rule::new("self != ''").message("bucket must not be empty"))]
    pub bucket: String,
    /// A folder inside the bucket that holds everything Arca writes. Empty: the bucket's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A PEM bundle of the CA that signed the store's certificate, base64-encoded (Velero's
    /// `caCert`). Prefer `caCertRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// The Secret key holding the PEM bundle of a private CA that signed the store's
    /// certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_ref: Option<SecretKeySelector>,
}

/// Whether the location may be written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccessMode {
    /// Backups are written, deleted and garbage-collected here.
    #[default]
    ReadWrite,
    /// Only read: sync and restore. Nothing is ever written or deleted.
    ReadOnly,
}

/// Whether the location can be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LocationPhase {
    /// Last check listed the prefix.
    Available,
    /// Last check failed; see `message`.
    Unavailable,
}

/// What the last check found. Written by the operator only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationStatus {
    /// Available or Unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LocationPhase>,
    /// Why the location is unavailable, and what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the location was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_validation_time: Option<Time>,
    /// When backups were last synced from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_time: Option<Time>,
    /// The `metadata.generation` the last check saw: a newer spec is checked at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, as the Kubernetes API conventions ask: `Available` (True when the last
    /// check reached the store; False with the reason otherwise).
    /// `kubectl wait --for=condition=Available bsl/<name>` waits on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}
