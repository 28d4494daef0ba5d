//! Shared fixtures: a store on a temporary folder, a realistic volume tree, tree
//! comparison, and the plain `restic` CLI.

#![allow(dead_code)]

use std::{
    fs::{self, File, FileTimes},
    io::{Seek, SeekFrom, Write},
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use arca_store::{FsStore, ObjectStore};
use arca_volume::{BytesProgress, ProgressFn};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

pub const PASSWORD: &str = "correct horse battery staple";
pub const NAMESPACE: &str = "shop";

/// A store in a temporary folder, and where the namespace's repository lands on disk.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn ObjectStore>,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            FsStore::new(&dir.path().join("objects"), "bucket", "cluster-a").expect("store");
        Self {
            dir,
            store: Arc::new(store),
        }
    }

    /// The folder FsStore writes `volumes/<namespace>/` to: a restic repository.
    pub fn repository_dir(&self) -> PathBuf {
        self.dir
            .path()
            .join("objects/bucket/cluster-a/volumes")
            .join(NAMESPACE)
    }

    /// A new empty folder in the fixture.
    pub fn folder(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir_all(&path).expect("create folder");
        path
    }
}

/// A progress callback that keeps the last update.
pub fn recorder() -> (ProgressFn, Arc<Mutex<Vec<BytesProgress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (Arc::new(move |p| sink.lock().expect("lock").push(p)), seen)
}

pub fn no_progress() -> ProgressFn {
    Arc::new(|_| {})
}

/// 2020-01-02T03:04:05.123456789Z plus `offset` seconds.
pub fn known_time(offset: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(1_577_934_245 + offset, 123_456_789)
}

fn set_mtime(path: &Path, time: SystemTime) {
    File::open(path)
        .expect("open for times")
        .set_times(FileTimes::new().set_modified(time).set_accessed(time))
        .expect("set times");
}

pub const SPARSE_LEN: u64 = 32 << 20;

/// A volume: nested folders, hundreds of small files (some compressible), a few MB of
/// random data, an empty file and folder, a relative symlink, a 0640 file, a sparse file
/// with two islands of data, and known mtimes everywhere.
pub fn make_tree(root: &Path) {
    let mut rng = StdRng::seed_from_u64(7);
    let mut dirs = vec![root.to_path_buf()];
    for a in 0..4 {
        for b in 0..3 {
            let dir = root.join(format!("dir-{a}")).join(format!("sub-{b}"));
            fs::create_dir_all(&dir).expect("mkdir");
            dirs.push(dir.parent().expect("parent").to_path_buf());
            dirs.push(dir);
        }
    }
    dirs.sort();
    dirs.dedup();
    let mut n = 0u64;
    for dir in &dirs {
        for i in 0..25 {
            let path = dir.join(format!("file-{i:03}.txt"));
            let len = rng.random_range(0..4096usize);
            let body: Vec<u8> = if i % 2 == 0 {
                format!("line {i} of {}\n", dir.display())
                    .into_bytes()
                    .into_iter()
                    .cycle()
                    .take(len)
                    .collect()
            } else {
                let mut b = vec![0u8; len];
                rng.fill_bytes(&mut b);
                b
            };
            fs::write(&path, body).expect("write small file");
            set_mtime(&path, known_time(n));
            n += 1;
        }
    }
    let mut big = vec![0u8; 3 << 20];
    rng.fill_bytes(&mut big);
    let big_path = root.join("dir-0/big.bin");
    fs::write(&big_path, &big).expect("write big");
    set_mtime(&big_path, known_time(1000));

    let empty = root.join("empty.txt");
    File::create(&empty).expect("empty file");
    set_mtime(&empty, known_time(1001));
    fs::create_dir(root.join("empty-dir")).expect("empty dir");

    let secret = root.join("dir-1/secret.txt");
    fs::write(&secret, b"not for everyone\n").expect("secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o640)).expect("chmod");
    set_mtime(&secret, known_time(1002));

    symlink("dir-0/sub-0/file-000.txt", root.join("link")).expect("symlink");

    let sparse = root.join("sparse.img");
    let mut file = File::create(&sparse).expect("sparse");
    let mut island = vec![0u8; 64 << 10];
    rng.fill_bytes(&mut island);
    file.write_all(&island).expect("island 1");
    file.seek(SeekFrom::Start(16 << 20)).expect("seek");
    file.write_all(&island).expect("island 2");
    file.set_len(SPARSE_LEN).expect("set_len");
    drop(file);
    set_mtime(&sparse, known_time(1003));

    // Folders last, deepest first: writing into a folder changes its mtime.
    dirs.push(root.join("empty-dir"));
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for (i, dir) in dirs.iter().enumerate() {
        if dir != root {
            set_mtime(dir, known_time(2000 + i as u64));
        }
    }
}

/// Every difference between two trees (contents, type, mode, mtime, symlink target),
/// ignoring the roots' own metadata.
pub fn differences(a: &Path, b: &Path) -> Vec<String> {
    let mut out = Vec::new();
    compare(a, b, Path::new(""), &mut out);
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn compare(a: &Path, b: &Path, rel: &Path, out: &mut Vec<String>) {
    let (na, nb) = (names(&a.join(rel)), names(&b.join(rel)));
    if na != nb {
        out.push(format!("{}: entries {na:?} != {nb:?}", rel.display()));
        return;
    }
    for name in na {
        let rel = rel.join(&name);
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).expect("meta a"),
            fs::symlink_metadata(&pb).expect("meta b"),
        );
        let what = rel.display().to_string();
        if ma.file_type() != mb.file_type() {
            out.push(format!("{what}: type differs"));
            continue;
        }
        if ma.file_type().is_symlink() {
            if fs::read_link(&pa).ok() != fs::read_link(&pb).ok() {
                out.push(format!("{what}: symlink target differs"));
            }
            continue;
        }
        if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            out.push(format!(
                "{what}: mode {:o} != {:o}",
                ma.mode() & 0o7777,
                mb.mode() & 0o7777
            ));
        }
        if ma.modified().ok() != mb.modified().ok() {
            out.push(format!(
                "{what}: mtime {:?} != {:?}",
                ma.modified().ok(),
                mb.modified().ok()
            ));
        }
        if ma.is_dir() {
            compare(a, b, &rel, out);
        } else if fs::read(&pa).expect("read a") != fs::read(&pb).expect("read b") {
            out.push(format!("{what}: contents differ"));
        }
    }
}

/// Runs the plain `restic` CLI on `repo`; panics (fails the test) if it is not installed.
pub fn restic(repo: &Path, password: &str, args: &[&str]) -> Output {
    Command::new("restic")
        .arg("--repo")
        .arg(repo)
        .arg("--no-cache")
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .expect("the restic CLI (0.14 or later) must be on PATH for these tests: install it (apt-get install restic)")
}

/// Like [`restic`], asserting success; returns stdout.
pub fn restic_ok(repo: &Path, args: &[&str]) -> String {
    let output = restic(repo, PASSWORD, args);
    assert!(
        output.status.success(),
        "restic {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The ids `restic snapshots --json` lists.
pub fn restic_snapshot_ids(repo: &Path) -> Vec<String> {
    let out = restic_ok(repo, &["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("snapshots json");
    list.as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}
