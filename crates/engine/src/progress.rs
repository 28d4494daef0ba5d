//! Counters a running backup or restore updates and the operator samples for status.

use std::sync::atomic::{AtomicU64, Ordering};

/// Items found and items done. Cheap to update from many tasks.
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicU64,
    done: AtomicU64,
}

impl Progress {
    pub fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    /// Sets both counts (for a mover that reports absolute figures).
    pub fn set(&self, total: u64, done: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(done, Ordering::Relaxed);
    }
    /// (total, done).
    pub fn get(&self) -> (u64, u64) {
        (
            self.total.load(Ordering::Relaxed),
            self.done.load(Ordering::Relaxed),
        )
    }
}
