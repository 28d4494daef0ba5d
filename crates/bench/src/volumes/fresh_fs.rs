//! Every restore writes into a filesystem of its own: an ext4 image with its journal (as a
//! node's disk has), loop-mounted for that one restore, then unmounted and removed.
//!
//! Why: a restore creates 32,733 files, and the bench deletes each restore before the next.
//! On an ext4 without a journal (this machine's root filesystem), the kernel then checks,
//! for each new inode, whether a free one was deleted recently (`recently_deleted`, while
//! its inode table block is dirty, up to 5 minutes): profiled, that scan was 55% of a
//! restore's CPU, and it charged each restore with whatever the previous one deleted, so the
//! results depended on the order of the tools. A fresh filesystem per restore gives every
//! tool the same start.
//!
//! Needs root, `mkfs.ext4` and loop devices. Where those are missing, restores run on the
//! work folder's filesystem and the report says so ([`probe`]).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A loop-mounted ext4 image, and the bind mounts made from it; all undone by
/// [`FreshFs::remove`] (or, failing that, on drop).
#[derive(Debug)]
pub(super) struct FreshFs {
    image: PathBuf,
    mount: PathBuf,
    binds: Vec<PathBuf>,
    mounted: bool,
}

impl FreshFs {
    /// A new filesystem of `bytes` (sparse image `<at>.img`), mounted at `at`.
    pub fn create(at: &Path, bytes: u64) -> anyhow::Result<Self> {
        let image = at.with_extension("img");
        std::fs::create_dir_all(at)?;
        let file = std::fs::File::create(&image)?;
        file.set_len(bytes)?;
        drop(file);
        let mut fs = Self {
            image,
            mount: at.to_path_buf(),
            binds: Vec::new(),
            mounted: false,
        };
        // Inode tables and journal written now, not by a kernel thread during the restore.
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg(&fs.image))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&fs.image)
            .arg(&fs.mount))?;
        fs.mounted = true;
        Ok(fs)
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Makes its folder `name` appear at `target` (an existing empty folder), as kubelet
    /// mounts a volume into a pod's folder.
    pub fn bind(&mut self, name: &str, target: &Path) -> anyhow::Result<()> {
        let source = self.mount.join(name);
        std::fs::create_dir_all(&source)?;
        run(Command::new("mount").arg("--bind").arg(&source).arg(target))?;
        self.binds.push(target.to_path_buf());
        Ok(())
    }

    /// Unmounts (binds first) and removes the image and the mount point.
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.undo()
    }

    fn undo(&mut self) -> anyhow::Result<()> {
        while let Some(target) = self.binds.pop() {
            run(Command::new("umount").arg(&target))?;
        }
        if self.mounted {
            run(Command::new("umount").arg(&self.mount))?;
            self.mounted = false;
            std::fs::remove_dir(&self.mount)?;
        }
        if self.image.exists() {
            std::fs::remove_file(&self.image)?;
        }
        Ok(())
    }
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        if let Err(e) = self.undo() {
            eprintln!(
                "bench: could not unmount or remove {}: {e}",
                self.mount.display()
            );
        }
    }
}

/// Whether fresh filesystems can be made here; the reason when not (the report shows it).
pub(super) fn probe(work: &Path) -> Result<(), String> {
    FreshFs::create(&work.join("probe-fs"), 64 << 20)
        .and_then(FreshFs::remove)
        .map_err(|e| format!("{e:#}"))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
