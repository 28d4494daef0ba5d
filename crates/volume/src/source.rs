//! The folder to back up, as a rustic source whose snapshot tree is the folder itself.
//!
//! rustic (like restic) records a backed-up folder under its full path (`var/lib/…/data/…`)
//! and `as_path` only renames that path (`ns/pod/volume/…`). A pod volume is restored into
//! another folder, so the snapshot's root tree must be the folder's contents: this source
//! hands rustic paths relative to the folder, while the snapshot still records the stable
//! `as_path` in `paths` (which is how the parent snapshot is found).
//!
//! rustic logs and skips entries it cannot read (a walk error, a file that cannot be
//! opened or read) and still writes the snapshot; this source counts them so the caller can
//! report a partial backup.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use rustic_core::{
    LocalSource, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticError, RusticResult,
};

/// How many skipped entries are described by name.
const SAMPLE: usize = 10;

/// Entries rustic skipped: a count, and the first few reasons.
#[derive(Debug, Default)]
pub(crate) struct Skipped {
    count: AtomicU64,
    sample: Mutex<Vec<String>>,
}

impl Skipped {
    fn record(&self, what: String) {
        tracing::warn!("pod volume backup skips {what}");
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut sample) = self.sample.lock()
            && sample.len() < SAMPLE
        {
            sample.push(what);
        }
    }

    fn record_rustic(&self, err: &RusticError) {
        self.record(err.display_log().trim_start_matches("Error: ").to_string());
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn sample(&self) -> Vec<String> {
        self.sample.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

type Inner = <LocalSource as ReadSource>::Open;
type InnerIter = <LocalSource as ReadSource>::Iter;

/// A local folder whose entries are named relative to the folder.
pub(crate) struct RootedSource {
    inner: LocalSource,
    root: PathBuf,
    skipped: Arc<Skipped>,
}

impl RootedSource {
    pub(crate) fn new(inner: LocalSource, root: PathBuf, skipped: Arc<Skipped>) -> Self {
        Self {
            inner,
            root,
            skipped,
        }
    }
}

impl ReadSource for RootedSource {
    type Open = CountingOpen;
    type Iter = RootedEntries;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        RootedEntries {
            inner: self.inner.entries(),
            root: self.root.clone(),
            skipped: self.skipped.clone(),
        }
    }
}

pub(crate) struct RootedEntries {
    inner: InnerIter,
    root: PathBuf,
    skipped: Arc<Skipped>,
}

impl Iterator for RootedEntries {
    type Item = RusticResult<ReadSourceEntry<CountingOpen>>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next()?;
        Some(match item {
            Err(err) => {
                self.skipped.record_rustic(&err);
                Err(err)
            }
            Ok(ReadSourceEntry { path, node, open }) => {
                let relative = path
                    .strip_prefix(&self.root)
                    .map_or_else(|_| path.clone(), Path::to_path_buf);
                Ok(ReadSourceEntry {
                    open: open.map(|inner| CountingOpen {
                        inner,
                        path: relative.clone(),
                        skipped: self.skipped.clone(),
                    }),
                    path: relative,
                    node,
                })
            }
        })
    }
}

/// Opens a file, counting a failure to open or read it as a skipped entry.
pub(crate) struct CountingOpen {
    inner: Inner,
    path: PathBuf,
    skipped: Arc<Skipped>,
}

impl ReadSourceOpen for CountingOpen {
    type Reader = CountingReader<<Inner as ReadSourceOpen>::Reader>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self.inner.open() {
            Ok(inner) => Ok(CountingReader {
                inner,
                path: self.path,
                skipped: self.skipped,
                failed: false,
            }),
            Err(err) => {
                self.skipped.record_rustic(&err);
                Err(err)
            }
        }
    }
}

pub(crate) struct CountingReader<R> {
    inner: R,
    path: PathBuf,
    skipped: Arc<Skipped>,
    failed: bool,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let result = self.inner.read(buf);
        if let Err(err) = &result
            && err.kind() != std::io::ErrorKind::Interrupted
            && !self.failed
        {
            self.failed = true;
            self.skipped
                .record(format!("{}: reading failed: {err}", self.path.display()));
        }
        result
    }
}
