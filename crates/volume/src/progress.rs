//! Byte progress from rustic to the caller.
//!
//! rustic asks its [`ProgressBars`] for a progress per phase; only the byte-counting ones
//! ("backing up...", "restoring file contents...") are forwarded, the rest are hidden.
//! The callback is called from rustic's worker threads on every increment: throttling
//! (status at most once a second) is the caller's concern.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

/// How far a backup or restore is, in bytes of file contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BytesProgress {
    /// Bytes read (backup) or written (restore) so far.
    pub done: u64,
    /// Bytes expected in all; 0 while unknown (a backup scans the folder in parallel).
    pub total: u64,
}

/// Receives [`BytesProgress`] updates, from many threads.
pub type ProgressFn = Arc<dyn Fn(BytesProgress) + Send + Sync>;

/// rustic's progress bars, forwarding byte progress to a [`ProgressFn`].
#[derive(Clone)]
pub(crate) struct ForwardBars {
    callback: ProgressFn,
}

impl ForwardBars {
    pub(crate) fn new(callback: ProgressFn) -> Self {
        Self { callback }
    }
}

impl fmt::Debug for ForwardBars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardBars")
    }
}

impl ProgressBars for ForwardBars {
    fn progress(&self, progress_type: ProgressType, _prefix: &str) -> Progress {
        match progress_type {
            ProgressType::Bytes => Progress::new(ForwardProgress {
                callback: self.callback.clone(),
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
            }),
            ProgressType::Spinner | ProgressType::Counter => Progress::hidden(),
        }
    }
}

struct ForwardProgress {
    callback: ProgressFn,
    done: AtomicU64,
    total: AtomicU64,
}

impl fmt::Debug for ForwardProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardProgress")
            .field("done", &self.done)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl ForwardProgress {
    fn report(&self, done: u64) {
        (self.callback)(BytesProgress {
            done,
            total: self.total.load(Ordering::Relaxed),
        });
    }
}

impl RusticProgress for ForwardProgress {
    // Not hidden: rustic only scans a backup's size for progresses that are shown.
    fn is_hidden(&self) -> bool {
        false
    }

    fn set_length(&self, len: u64) {
        self.total.store(len, Ordering::Relaxed);
        self.report(self.done.load(Ordering::Relaxed));
    }

    fn set_title(&self, _title: &str) {}

    fn inc(&self, inc: u64) {
        let done = self.done.fetch_add(inc, Ordering::Relaxed) + inc;
        self.report(done);
    }

    fn finish(&self) {
        self.report(self.done.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn forwards_bytes_and_hides_the_rest() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let bars = ForwardBars::new(Arc::new(move |p| {
            sink.lock().expect("lock").push(p);
        }));
        assert!(bars.progress(ProgressType::Counter, "x").is_hidden());
        let p = bars.progress(ProgressType::Bytes, "backing up...");
        assert!(!p.is_hidden());
        p.set_length(10);
        p.inc(4);
        p.inc(6);
        let seen = seen.lock().expect("lock");
        assert_eq!(
            seen.last(),
            Some(&BytesProgress {
                done: 10,
                total: 10
            })
        );
    }
}
