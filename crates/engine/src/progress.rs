//! Counters a running backup or restore updates and the operator samples for status.

use std::sync::atomic::{AtomicU64, Ordering};

/// Items found and items done, and bytes of pod volume data. Cheap to update from many
/// tasks.
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicU64,
    done: AtomicU64,
    volume_total: AtomicU64,
    volume_done: AtomicU64,
}

/// What a [`Progress`] says at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Items found (or, for a node agent, bytes to move).
    pub total: u64,
    /// Items done (or bytes moved).
    pub done: u64,
    /// Bytes of pod volume data the run's work items move in all.
    pub volume_total: u64,
    /// Of those, bytes moved so far.
    pub volume_done: u64,
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
    /// Sets the bytes of pod volume data (total, done), as summed over the work items.
    pub fn set_volume(&self, total: u64, done: u64) {
        self.volume_total.store(total, Ordering::Relaxed);
        self.volume_done.store(done, Ordering::Relaxed);
    }
    /// Bytes of pod volume data (total, done).
    pub fn volume(&self) -> (u64, u64) {
        (
            self.volume_total.load(Ordering::Relaxed),
            self.volume_done.load(Ordering::Relaxed),
        )
    }
    /// Every count at once.
    pub fn counts(&self) -> Counts {
        let (total, done) = self.get();
        let (volume_total, volume_done) = self.volume();
        Counts {
            total,
            done,
            volume_total,
            volume_done,
        }
    }
}
