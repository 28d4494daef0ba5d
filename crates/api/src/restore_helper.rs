//! The contract between a restored pod's `arca-restore-wait` init container, the node agent
//! and the restore engine: where the helper sees each volume, and the files by which the
//! agent says it is done with one. Pure names; no I/O.
//!
//! A restored pod whose volumes have snapshots gets the init container first, before its
//! own init containers: it mounts each such volume at `<MOUNT_ROOT>/<volume>` and waits until
//! every one holds [`done_marker`] (the agent writes it after the data) or any holds
//! [`failed_marker`] (it then fails, with the agent's reason in its log). So the workload's
//! own containers never start on an empty or half-written volume.

/// The init container's name (Velero's is `restore-wait`).
pub const INIT_CONTAINER_NAME: &str = "arca-restore-wait";
/// Where the init container mounts the volumes: `<it>/<volume name>`.
pub const MOUNT_ROOT: &str = "/restores";
/// The `arca` subcommand the init container runs.
pub const SUBCOMMAND: &str = "restore-helper";

/// The file the agent writes at a volume's root once the restore `restore_uid` has put its
/// data there. Hidden, and named after the restore so two restores never mix.
pub fn done_marker(restore_uid: &str) -> String {
    format!(".arca-restore-{restore_uid}")
}

/// The file the agent writes instead when the volume could not be restored; it holds why.
pub fn failed_marker(restore_uid: &str) -> String {
    format!(".arca-restore-{restore_uid}.failed")
}

/// Where the init container sees the volume `volume`.
pub fn mount_path(volume: &str) -> String {
    format!("{MOUNT_ROOT}/{volume}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_hidden_distinct_and_named_after_the_restore() {
        assert_eq!(done_marker("u1"), ".arca-restore-u1");
        assert_eq!(failed_marker("u1"), ".arca-restore-u1.failed");
        assert_ne!(done_marker("u1"), done_marker("u2"));
        assert_eq!(mount_path("data"), "/restores/data");
    }
}
