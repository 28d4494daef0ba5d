//! The data every tool backs up, made once per run, and the check that a restore brought it
//! back: a restore that wrote nothing, or the wrong bytes, cannot pass.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use sha2::{Digest, Sha256};

/// How many files of the data set have their sha256 checked after each restore (spread
/// evenly over the sorted list, the largest files included).
const CHECKED_FILES: usize = 8;

/// The generated data set: where it lives between runs, and what a restore must match.
#[derive(Debug)]
pub(super) struct DataSet {
    /// Its folder while no tool uses it (Arca's runs move it into the pod's volume folder).
    pub home: PathBuf,
    /// Bytes in regular files.
    pub bytes: u64,
    /// Regular files.
    pub files: u64,
    /// (relative path, sha256) of the files checked after a restore.
    checked: Vec<(PathBuf, [u8; 32])>,
}

impl DataSet {
    /// Makes `gib` GiB of data in `home` (which must not exist): half the bytes in 64 MiB
    /// files (random, and text-like that compresses), half in small files of 4-60 KiB in
    /// nested folders (same mix). Fixed seed: the same data in every run.
    pub fn generate(home: &Path, gib: f64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(home)?;
        let total = (gib * (1u64 << 30) as f64) as u64;
        generate(home, total)?;
        let listed = walk(home)?;
        let bytes = listed.iter().map(|(_, size)| size).sum();
        // The largest files first (the 64 MiB ones), then an even spread of the rest.
        let mut by_size = listed.clone();
        by_size.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut picked: Vec<PathBuf> = by_size.iter().take(2).map(|(p, _)| p.clone()).collect();
        let step = (listed.len() / CHECKED_FILES).max(1);
        for (path, _) in listed.iter().step_by(step) {
            if picked.len() >= CHECKED_FILES {
                break;
            }
            if !picked.contains(path) {
                picked.push(path.clone());
            }
        }
        let checked = picked
            .into_iter()
            .map(|p| Ok((p.clone(), sha256(&home.join(&p))?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            home: home.to_path_buf(),
            bytes,
            files: listed.len() as u64,
            checked,
        })
    }

    /// Checks that `root` holds the data set: as many regular files, as many bytes, and the
    /// checked files' sha256. The restore helper's markers (`.arca-restore-*`) are ignored.
    pub fn verify(&self, root: &Path, who: &str) -> anyhow::Result<()> {
        let listed = walk(root)?;
        let bytes: u64 = listed.iter().map(|(_, size)| size).sum();
        anyhow::ensure!(
            listed.len() as u64 == self.files && bytes == self.bytes,
            "{who}: restored {} files, {bytes} bytes into {}; the data has {} files, {} bytes",
            listed.len(),
            root.display(),
            self.files,
            self.bytes
        );
        for (path, sum) in &self.checked {
            anyhow::ensure!(
                sha256(&root.join(path))? == *sum,
                "{who}: {} differs from the original after the restore",
                path.display()
            );
        }
        Ok(())
    }
}

fn generate(dir: &Path, total: u64) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(42);
    let words: Vec<String> = (0..4096)
        .map(|i| format!("{:x}{} ", rng.random::<u32>(), i % 97))
        .collect();
    let fill = |rng: &mut StdRng, buf: &mut Vec<u8>, random: bool| {
        if random {
            rng.fill_bytes(buf);
        } else {
            let mut at = 0;
            while at < buf.len() {
                let w = words[rng.random_range(0..words.len())].as_bytes();
                let n = w.len().min(buf.len() - at);
                buf[at..at + n].copy_from_slice(&w[..n]);
                at += n;
            }
        }
    };
    let (mut written, mut files) = (0u64, 0u64);
    let mut chunk = vec![0u8; 1 << 20];
    while written + (64 << 20) <= total / 2 || (files == 0 && total >= 64 << 20) {
        let mut f = std::fs::File::create(dir.join(format!("large-{files}.bin")))?;
        for _ in 0..64 {
            fill(&mut rng, &mut chunk, files % 2 == 0);
            f.write_all(&chunk)?;
        }
        written += 64 << 20;
        files += 1;
    }
    while written < total {
        let sub = dir.join(format!("small/{}/{}", files % 64, files % 7));
        std::fs::create_dir_all(&sub)?;
        let mut body = vec![0u8; rng.random_range(4096..61440)];
        fill(&mut rng, &mut body, files % 2 == 0);
        std::fs::write(sub.join(format!("f{files}")), &body)?;
        written += body.len() as u64;
        files += 1;
    }
    Ok(())
}

/// Every regular file under `root` (relative path, size), sorted; markers left by Arca's
/// restore helper are not data.
fn walk(root: &Path) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file()
                && !entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".arca-restore-")
            {
                let path = entry.path();
                let relative = path.strip_prefix(root)?.to_path_buf();
                out.push((relative, entry.metadata()?.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sha256(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().into())
}
