//! `backup.json`: the backup's identity card, written last. Format 2 seals it (see
//! [`crate::protect::seal`]); format 1 backups are read as they are, unauthenticated.

use serde::{Deserialize, Serialize};

/// Counts and checksums of what a backup wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStats {
    /// Items in the archive (and lines in the index).
    pub items: u64,
    /// Size of `resources.tar.zst` (of its plaintext, when encrypted).
    pub archive_bytes: u64,
    /// Hex sha256 of `resources.tar.zst` (of its plaintext, when encrypted).
    pub archive_sha256: String,
    /// Size of `index.jsonl.zst` (of its plaintext, when encrypted).
    pub index_bytes: u64,
    /// Hex sha256 of `index.jsonl.zst` (of its plaintext, when encrypted).
    pub index_sha256: String,
    /// Size of `volumes.json`, when the backup wrote one (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes_bytes: Option<u64>,
    /// Hex sha256 of `volumes.json`, when the backup wrote one (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes_sha256: Option<String>,
    /// Size of `csi-snapshots.json`, when the backup wrote one (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_snapshots_bytes: Option<u64>,
    /// Hex sha256 of `csi-snapshots.json`, when the backup wrote one (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_snapshots_sha256: Option<String>,
}

/// How a backup's objects are encrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// The id of the key (never the key): see [`crate::KeyId`].
    pub key_id: String,
    /// The construction: [`ENCRYPTION_SCHEME`].
    pub scheme: String,
}

/// The one encryption construction of format 2: ChaCha20-Poly1305, STREAM (big-endian 32-bit
/// counter), 64 KiB segments, a key per object by HKDF-SHA256.
pub const ENCRYPTION_SCHEME: &str = "chacha20poly1305-stream-64k";

/// The content of `backup.json`. Its presence is what makes a backup exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupMetadata {
    /// The format the backup was read in (`"1"` or `"2"`): set by the reader, written by
    /// the writer in the envelope, never inside the sealed part.
    #[serde(skip)]
    pub format_version: String,
    /// The Backup object as it stood when the backup ended (`apiVersion`, `kind`,
    /// `metadata`, `spec`, `status`).
    pub backup: serde_json::Value,
    /// Counts and checksums.
    pub stats: ArchiveStats,
    /// The Kubernetes version of the cluster backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_version: Option<String>,
    /// How the backup's objects are encrypted; absent when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

impl BackupMetadata {
    /// Whether the metadata was authenticated when read (format 2 and later).
    pub fn is_sealed(&self) -> bool {
        self.format_version != "1"
    }
}

/// Format 1 `backup.json`, as it was written: everything at the top, no seal.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FormatOne {
    pub backup: serde_json::Value,
    pub stats: ArchiveStats,
    #[serde(default)]
    pub cluster_version: Option<String>,
}
