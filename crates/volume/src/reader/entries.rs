//! Entries on disk: folders, files, links and special files made in the restore's private
//! staging folder, and their metadata (mode, owner, times) applied once their contents are
//! written. Nothing here follows a link: files are created with `O_EXCL | O_NOFOLLOW`, and
//! a link's owner and times are set on the link itself.

use std::{
    ffi::OsStr,
    fs::{File, FileTimes, OpenOptions, Permissions},
    io,
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    time::SystemTime,
};

use nix::fcntl::OFlag;
use rustic_core::repofile::{Metadata, Node, NodeType};

// Go's os.FileMode bits that restic records beside the permission bits.
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_STICKY: u32 = 1 << 20;

/// The POSIX permission bits (with setuid, setgid and sticky) of a Go `os.FileMode`.
pub(crate) fn mode_from_go(go: u32) -> u32 {
    let mut mode = go & 0o777;
    if go & GO_SETUID != 0 {
        mode |= 0o4000;
    }
    if go & GO_SETGID != 0 {
        mode |= 0o2000;
    }
    if go & GO_STICKY != 0 {
        mode |= 0o1000;
    }
    mode
}

/// True when `name` is one plain path component: not empty, `.` or `..`, and without `/`
/// or NUL. A tree naming anything else would make the restore write elsewhere.
pub(crate) fn plain_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes != b"."
        && bytes != b".."
        && !bytes.contains(&b'/')
        && !bytes.contains(&0)
}

/// Whether this process may give files away (root): otherwise owners are not restored.
pub(crate) fn can_chown() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Makes the folder `path`, private until [`finish`] gives it its mode.
pub(crate) fn make_folder(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// Creates the empty file `path` with the length `size` (a hole until written).
pub(crate) fn make_file(path: &Path, size: u64) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    if size > 0 {
        file.set_len(size)?;
    }
    Ok(())
}

/// Opens the file `path` made by [`make_file`] for writing its contents.
pub(crate) fn open_for_content(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Makes a link, FIFO or device node for `node` at `path`; `false` for a socket (a socket
/// is made by the program that listens on it, as restic does not restore them either).
pub(crate) fn make_special(path: &Path, node: &Node) -> io::Result<bool> {
    use nix::sys::stat::{Mode, SFlag, mknod};
    let perm = Mode::from_bits_truncate(0o600);
    match &node.node_type {
        NodeType::Symlink {
            linktarget,
            linktarget_raw,
        } => {
            let target: &OsStr = match linktarget_raw {
                Some(raw) => OsStr::from_bytes(raw),
                None => OsStr::new(linktarget),
            };
            std::os::unix::fs::symlink(target, path)?;
        }
        NodeType::Fifo => nix::unistd::mkfifo(path, perm)?,
        NodeType::Dev { device } => mknod(path, SFlag::S_IFBLK, perm, *device)?,
        NodeType::Chardev { device } => mknod(path, SFlag::S_IFCHR, perm, *device)?,
        NodeType::Socket => return Ok(false),
        NodeType::File | NodeType::Dir => {
            return Err(io::Error::other("not a special file"));
        }
    }
    Ok(true)
}

/// Gives the entry at `path` its owner (when root, numeric ids), mode and times from
/// `node`. A link gets only its owner and times: its mode means nothing on Linux.
pub(crate) fn finish(path: &Path, node: &Node) -> io::Result<()> {
    let meta = &node.meta;
    let is_link = matches!(node.node_type, NodeType::Symlink { .. });
    if can_chown() && (meta.uid.is_some() || meta.gid.is_some()) {
        std::os::unix::fs::lchown(path, meta.uid, meta.gid)?;
    }
    if !matches!(node.node_type, NodeType::File | NodeType::Dir) {
        // A link, FIFO or device: never opened (opening a device can act on it). Made by
        // this restore in its private folder; the times are set without following.
        if let (Some(mode), false) = (meta.mode, is_link) {
            std::fs::set_permissions(path, Permissions::from_mode(mode_from_go(mode)))?;
        }
        if let Some((atime, mtime)) = times(meta) {
            filetime::set_symlink_file_times(path, atime.into(), mtime.into())?;
        }
        return Ok(());
    }
    // Opened without following: `path` was made by this restore, but never trust a name.
    let entry = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    if let Some(mode) = meta.mode {
        entry.set_permissions(Permissions::from_mode(mode_from_go(mode)))?;
    }
    if let Some((atime, mtime)) = times(meta) {
        entry.set_times(FileTimes::new().set_accessed(atime).set_modified(mtime))?;
    }
    Ok(())
}

/// The access and modification times to set, if the snapshot has a modification time.
fn times(meta: &Metadata) -> Option<(SystemTime, SystemTime)> {
    let mtime = SystemTime::from(meta.mtime?);
    let atime = meta.atime.map_or(mtime, SystemTime::from);
    Some((atime, mtime))
}

/// `dir/name`, or `None` when `name` is not a plain name ([`plain_name`]).
pub(crate) fn child(dir: &Path, name: &OsStr) -> Option<PathBuf> {
    plain_name(name).then(|| dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modes_map_to_posix_bits() {
        assert_eq!(mode_from_go(0o644), 0o644);
        // Go: ModeDir | 0755.
        assert_eq!(mode_from_go((1 << 31) | 0o755), 0o755);
        assert_eq!(
            mode_from_go(GO_SETUID | GO_SETGID | GO_STICKY | 0o750),
            0o7750
        );
    }

    #[test]
    fn only_plain_names_are_accepted() {
        for bad in ["", ".", "..", "a/b", "../x", "/etc", "a\0b"] {
            assert!(!plain_name(OsStr::new(bad)), "{bad:?} accepted");
        }
        for good in ["a", ".hidden", "..a", "a b", "ü"] {
            assert!(plain_name(OsStr::new(good)), "{good:?} refused");
        }
        assert_eq!(child(Path::new("/s"), OsStr::new("..")), None);
        assert_eq!(
            child(Path::new("/s"), OsStr::new("f")),
            Some(PathBuf::from("/s/f"))
        );
    }
}
