//! Volume errors, with messages that say what to do.

use rustic_core::RusticError;

/// The Secret holding the repository password, and its key; named in error messages.
pub const CREDENTIALS_SECRET: &str = "arca-repo-credentials";
/// The key in [`CREDENTIALS_SECRET`] that holds the repository password.
pub const PASSWORD_KEY: &str = "repository-password";

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The password (and the fallback, if any) opens none of the repository's keys.
    #[error(
        "the password does not open the volume repository at {location}: each repository opens with its own password, derived from Secret `{CREDENTIALS_SECRET}` key `{PASSWORD_KEY}` (or, until the operator re-keys it, with that value itself); put back the value the repository was made with (a migration to another cluster copies Secret `{CREDENTIALS_SECRET}`; changing the Secret does not re-key repositories)"
    )]
    WrongPassword {
        /// Where the repository is.
        location: String,
    },
    /// There is no repository yet.
    #[error(
        "there is no volume repository at {location}: the operator creates it before the first pod volume backup; check the location's bucket and prefix"
    )]
    NotInitialized {
        /// Where the repository should be.
        location: String,
    },
    /// The repository has no snapshot with this id.
    #[error(
        "volume snapshot {id} is not in the repository at {location}: the backup that recorded it may have been deleted, or the location points elsewhere"
    )]
    SnapshotNotFound {
        /// The id asked for.
        id: String,
        /// Where the repository is.
        location: String,
    },
    /// A folder to back up from or restore into is unusable.
    #[error("{path}: {detail}")]
    Path {
        /// The folder.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The caller asked for something that cannot be recorded (a tag with a comma, a
    /// relative snapshot path).
    #[error("invalid volume request: {0}")]
    InvalidRequest(String),
    /// The repository library (rustic) failed; `detail` carries the store's own message
    /// when the store was the cause.
    #[error("{operation} failed: {detail}")]
    Repository {
        /// What was being done (`backing up /data`, `opening the repository at …`).
        operation: String,
        /// rustic's one-line report, including its cause.
        detail: String,
    },
    /// The blocking task running rustic died (a panic inside rustic, usually after a failed
    /// read from the store, which rustic does not turn into an error while restoring).
    #[error(
        "{operation} stopped unexpectedly: {detail}. Retry; if it fails again, run `restic check` on the repository"
    )]
    Aborted {
        /// What was being done.
        operation: String,
        /// The last store error seen, or the panic message.
        detail: String,
    },
    /// The caller stopped the operation ([`crate::Cancel`]); a backup stopped so wrote no
    /// snapshot.
    #[error("{operation} was canceled: {reason}")]
    Canceled {
        /// What was being done.
        operation: String,
        /// Who stopped it, as the caller said ([`crate::VolumeRepository::with_cancel`]).
        reason: String,
    },
}

impl VolumeError {
    /// Wraps a rustic error: a wrong password becomes [`VolumeError::WrongPassword`].
    pub(crate) fn rustic(operation: impl Into<String>, location: &str, err: &RusticError) -> Self {
        if err.is_incorrect_password() {
            return Self::WrongPassword {
                location: location.to_string(),
            };
        }
        Self::Repository {
            operation: operation.into(),
            detail: err.display_log().trim_start_matches("Error: ").to_string(),
        }
    }
}

/// A volume result.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

impl VolumeError {
    /// True when an index file listed a moment before was gone when read: a prune replaced
    /// it (deletions prune while backups may run). Starting again reads the new index.
    pub fn is_index_replaced(&self) -> bool {
        match self {
            Self::Repository { detail, .. } | Self::Aborted { detail, .. } => {
                detail.contains("/index/") && detail.contains("no object at")
            }
            _ => false,
        }
    }
}
