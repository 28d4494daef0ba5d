//! Where each object lives: the one place keys are spelled (format 1).
//!
//! ```text
//! backups/<name>/backup.json          written last: a backup without it does not exist
//! backups/<name>/resources.tar.zst    the items
//! backups/<name>/index.jsonl.zst      one line per item
//! backups/<name>/logs.jsonl.zst       the backup's log
//! backups/<name>/results.json         warnings and errors
//! backups/<name>/volumes.json         pod volume snapshots taken
//! restores/<name>/results.json        summary of a restore
//! restores/<name>/items.jsonl.zst     the outcome of every item of a restore
//! restores/<name>/logs.jsonl.zst      the restore's log
//! volumes/<namespace>/                restic-format repository of a namespace's volumes
//! tenants/<namespace>/                a tenant's folder in the operator's location: the same
//!                                     layout again, for that namespace's backups
//! ```

/// Keys of every object Arca writes, relative to the location's prefix.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout;

impl Layout {
    pub const BACKUPS: &'static str = "backups/";
    pub const RESTORES: &'static str = "restores/";
    pub const TENANTS: &'static str = "tenants/";

    /// A tenant's folder in the operator's location (no trailing slash: a sub-prefix).
    pub fn tenant_root(namespace: &str) -> String {
        format!("tenants/{namespace}")
    }

    pub fn backup_dir(name: &str) -> String {
        format!("backups/{name}/")
    }
    pub fn backup_metadata(name: &str) -> String {
        format!("backups/{name}/backup.json")
    }
    pub fn backup_archive(name: &str) -> String {
        format!("backups/{name}/resources.tar.zst")
    }
    pub fn backup_index(name: &str) -> String {
        format!("backups/{name}/index.jsonl.zst")
    }
    pub fn backup_logs(name: &str) -> String {
        format!("backups/{name}/logs.jsonl.zst")
    }
    pub fn backup_results(name: &str) -> String {
        format!("backups/{name}/results.json")
    }
    pub fn backup_volumes(name: &str) -> String {
        format!("backups/{name}/volumes.json")
    }
    pub fn backup_csi_snapshots(name: &str) -> String {
        format!("backups/{name}/csi-snapshots.json")
    }
    pub fn restore_dir(name: &str) -> String {
        format!("restores/{name}/")
    }
    pub fn restore_results(name: &str) -> String {
        format!("restores/{name}/results.json")
    }
    pub fn restore_items(name: &str) -> String {
        format!("restores/{name}/items.jsonl.zst")
    }
    pub fn restore_logs(name: &str) -> String {
        format!("restores/{name}/logs.jsonl.zst")
    }
    pub fn volume_repository(namespace: &str) -> String {
        format!("volumes/{namespace}/")
    }
}

impl Layout {
    /// Whether a location with an encryption key encrypts the object at `key`: every object of
    /// a backup or a restore but `backup.json` (sealed, read by the sync without the key) and
    /// `volumes.json` (authenticated through `backup.json`; its snapshots are encrypted by
    /// their repositories). Volume repositories encrypt themselves.
    pub fn is_encrypted(key: &str) -> bool {
        let in_backup_or_restore =
            key.starts_with(Self::BACKUPS) || key.starts_with(Self::RESTORES);
        in_backup_or_restore && !key.ends_with("/backup.json") && !key.ends_with("/volumes.json")
    }
}
