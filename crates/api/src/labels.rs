//! Label, annotation and finalizer keys: the one place they are spelled.

/// On a Backup made by a Schedule: the schedule's name.
pub const SCHEDULE_NAME: &str = "arca.dev/schedule-name";
/// On a Backup: the storage location it is written to.
pub const STORAGE_LOCATION: &str = "arca.dev/storage-location";
/// On every restored object: the backup it came from.
pub const BACKUP_NAME: &str = "arca.dev/backup-name";
/// On every restored object: the restore that created it.
pub const RESTORE_NAME: &str = "arca.dev/restore-name";
/// On a DeleteBackupRequest: the backup it deletes.
pub const DELETE_BACKUP_NAME: &str = "arca.dev/backup-name";
/// Objects labelled `arca.dev/exclude-from-backup=true` are never backed up.
pub const EXCLUDE_FROM_BACKUP: &str = "arca.dev/exclude-from-backup";
/// Velero's spelling of [`EXCLUDE_FROM_BACKUP`], honoured too.
pub const VELERO_EXCLUDE_FROM_BACKUP: &str = "velero.io/exclude-from-backup";
/// On a Backup created by the storage sync from a `backup.json`: it is not to be run.
pub const SYNCED_FROM_STORAGE: &str = "arca.dev/synced-from-storage";
/// On a Backup the storage sync made from a backup another tool wrote: which tool
/// ([`MADE_BY_VELERO`]). Arca never writes, changes or deletes anything of such a backup in
/// storage: garbage collection leaves it alone and a DeleteBackupRequest for it is refused.
pub const MADE_BY: &str = "arca.dev/made-by";
/// The value of [`MADE_BY`] on a Backup synced from a Velero folder (`velero-backup.json`).
pub const MADE_BY_VELERO: &str = "velero";
/// Why garbage collection could not delete an expired backup.
pub const GC_FAILURE: &str = "arca.dev/gc-failure";
/// The field manager every Arca controller writes with.
pub const FIELD_MANAGER: &str = "arca";
/// On a PodVolumeBackup: the uid of the Backup it belongs to.
pub const BACKUP_UID: &str = "arca.dev/backup-uid";
/// On a PodVolumeRestore: the uid of the Restore it belongs to.
pub const RESTORE_UID: &str = "arca.dev/restore-uid";
/// Annotation the operator sets (`"true"`) on a PodVolumeBackup whose Backup was deleted
/// while it ran: the agent stops the copy (or never starts it) and marks it Failed with a
/// message starting [`CANCELED_MESSAGE`]. Velero's DataUpload says the same with
/// `spec.cancel`; a work item's spec never changes, so here it is an annotation.
pub const CANCEL: &str = "arca.dev/cancel";
/// How the message of a work item stopped through [`CANCEL`] starts.
pub const CANCELED_MESSAGE: &str = "canceled";

/// The finalizer the operator holds on every Restore until its files under
/// `restores/<name>/` and its PodVolumeRestores are removed.
pub const RESTORE_FINALIZER: &str = "arca.dev/restore-cleanup";
/// The labels of the node agent's pods (`arca install --use-node-agent`), as a label
/// selector: the operator places the pods it makes for the agent (the data mover's) on the
/// nodes where one of these runs.
pub const NODE_AGENT_POD_SELECTOR: &str =
    "app.kubernetes.io/name=arca,app.kubernetes.io/component=node-agent";
