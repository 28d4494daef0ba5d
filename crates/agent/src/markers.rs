//! The files by which the agent tells a restored pod's `arca-restore-wait` init container
//! that a volume is done (or failed): see `arca_api::restore_helper`. The volume belongs to
//! the pod, whose containers may have planted anything there, so a marker is written without
//! following links: an existing entry of that name is removed (a link is removed, never
//! followed), then the file is created exclusively (`O_CREAT|O_EXCL` does not follow a link
//! planted in between; it fails instead).

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use arca_api::restore_helper::{done_marker, failed_marker};

/// Marks `folder` done (`outcome` Ok) or failed, for the restore `restore_uid`.
pub fn write(folder: &Path, restore_uid: &str, outcome: &Result<(), String>) -> Result<(), String> {
    let (name, text) = match outcome {
        Ok(()) => (done_marker(restore_uid), String::new()),
        Err(why) => (failed_marker(restore_uid), format!("{why}\n")),
    };
    let path = folder.join(&name);
    let write = || -> std::io::Result<()> {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        file.write_all(text.as_bytes())
    };
    write().map_err(|e| {
        format!(
            "writing {} for the pod's restore helper: {e}; the pod waits until it is there",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_and_failed_markers() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        write(dir.path(), "u1", &Ok(()))?;
        assert!(dir.path().join(".arca-restore-u1").is_file());
        write(dir.path(), "u2", &Err("no snapshot".into()))?;
        let text = std::fs::read_to_string(dir.path().join(".arca-restore-u2.failed"))
            .map_err(|e| e.to_string())?;
        assert_eq!(text, "no snapshot\n");
        // Written again (a retried item): replaced, not refused.
        write(dir.path(), "u1", &Ok(()))?;
        Ok(())
    }

    #[test]
    fn a_planted_link_is_replaced_never_followed() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let outside = tempfile::tempdir().map_err(|e| e.to_string())?;
        let target = outside.path().join("victim");
        std::fs::write(&target, "precious").map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(&target, dir.path().join(".arca-restore-u1.failed"))
            .map_err(|e| e.to_string())?;
        write(dir.path(), "u1", &Err("boom".into()))?;
        assert_eq!(
            std::fs::read_to_string(&target).map_err(|e| e.to_string())?,
            "precious",
            "the link's target is untouched"
        );
        let marker = dir.path().join(".arca-restore-u1.failed");
        assert!(
            !std::fs::symlink_metadata(&marker)
                .map_err(|e| e.to_string())?
                .file_type()
                .is_symlink()
        );
        Ok(())
    }
}
