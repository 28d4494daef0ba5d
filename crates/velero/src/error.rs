//! Errors, with messages that say what happened and what to do.

use arca_store::StoreError;

/// Why reading a Velero location, or one of its backups, failed.
#[derive(Debug, thiserror::Error)]
pub enum VeleroError {
    /// The store failed (unreachable, credentials, ...); its message says what to do.
    #[error("reading the Velero location: {0}")]
    Store(#[from] StoreError),

    /// An object a backup needs is not in the store.
    #[error(
        "backup {backup} has no {what} ({key}): it is not a complete Velero backup (Velero may still be writing it, or it was deleted); list the location's backups again"
    )]
    Missing {
        /// The backup's name.
        backup: String,
        /// What is missing, in words.
        what: &'static str,
        /// The key looked for, relative to the location's prefix.
        key: String,
    },

    /// A name that cannot be a Velero backup's (Velero names backups as Kubernetes objects).
    #[error(
        "{name:?} is not a Velero backup name ({reason}): Velero's backups are named as Kubernetes objects (lowercase letters, digits, '-' and '.', at most 253 characters)"
    )]
    InvalidName {
        /// The name given or found in the bucket.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// `velero-backup.json` (or another JSON object of the backup) is not what Velero writes.
    #[error(
        "{key} is not what Velero writes there: {detail}. It was damaged or changed in the bucket, or written by another tool; nothing of it is used"
    )]
    Metadata {
        /// The object's key.
        key: String,
        /// What is wrong.
        detail: String,
    },

    /// The tarball (or the Backup object) says a format version this crate does not read.
    #[error(
        "backup {backup} is in Velero's tarball format {version:?}, which Arca does not read (it reads {known}, written by Velero 1.4 and later): restore this backup with Velero itself"
    )]
    UnknownFormat {
        /// The backup's name.
        backup: String,
        /// The version found (`metadata/version` or `status.formatVersion`).
        version: String,
        /// The versions read, comma-separated.
        known: String,
    },

    /// A tar entry no Velero writes: refused, and nothing after it is read.
    #[error(
        "{key}: tar entry {path:?} refused: {detail}. Velero never writes such an entry: the tarball was changed in the bucket or made by another tool; nothing after it was read"
    )]
    Hostile {
        /// The tarball's key.
        key: String,
        /// The entry's path as far as it could be read (lossy for names that are not UTF-8).
        path: String,
        /// What is wrong with it.
        detail: String,
    },

    /// More bytes than a limit allows: a decompression bomb, or a backup beyond the limits.
    #[error(
        "{key}: {what} exceeds the limit of {limit} bytes (a decompression bomb, or data far larger than Velero writes there): refused after reading at most that much. If the backup is genuine, raise the limit (arca_velero::Limits)"
    )]
    TooLarge {
        /// The object's key.
        key: String,
        /// What grew too large, in words.
        what: String,
        /// The limit, in bytes.
        limit: u64,
    },

    /// The gzip or tar stream is damaged (not a decompression bomb, not hostile names).
    #[error("{key} is damaged: {detail}. Nothing after the damage was read")]
    Corrupt {
        /// The object's key.
        key: String,
        /// What the decoder said.
        detail: String,
    },

    /// A transcoded backup grew past the space the caller gave it.
    #[error(
        "backup {backup}: its items, rewritten for Arca's restore engine, take more than the {limit} bytes of scratch space the operator allows (`arca server --scratch-bytes`; the operator's /tmp volume must hold that much): nothing was restored. Raise both, or restore this backup with Velero"
    )]
    ScratchFull {
        /// The backup's name.
        backup: String,
        /// The limit, in bytes.
        limit: u64,
    },

    /// A task of the reader failed (a bug, or the runtime shutting down).
    #[error("the Velero reader's task failed: {0}")]
    Internal(String),
}
