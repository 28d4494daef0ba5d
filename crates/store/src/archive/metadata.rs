//! `backup.json`: the backup's identity card, written last.

use serde::{Deserialize, Serialize};

/// Counts and checksums of what a backup wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStats {
    /// Items in the archive (and lines in the index).
    pub items: u64,
    /// Size of `resources.tar.zst`.
    pub archive_bytes: u64,
    /// Hex sha256 of `resources.tar.zst`.
    pub archive_sha256: String,
    /// Size of `index.jsonl.zst`.
    pub index_bytes: u64,
    /// Hex sha256 of `index.jsonl.zst`.
    pub index_sha256: String,
}

/// The content of `backup.json`. Its presence is what makes a backup exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupMetadata {
    /// [`super::FORMAT_VERSION`] of the writer.
    pub format_version: String,
    /// The Backup object as it stood when the backup ended (`apiVersion`, `kind`,
    /// `metadata`, `spec`, `status`).
    pub backup: serde_json::Value,
    /// Counts and checksums.
    pub stats: ArchiveStats,
    /// The Kubernetes version of the cluster backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_version: Option<String>,
}
