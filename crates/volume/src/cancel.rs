//! Stopping a backup in the middle: a flag the caller sets and the writer's stages read.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// Set once to stop the operations of the [`crate::VolumeRepository`] it was given to
/// ([`crate::VolumeRepository::with_cancel`]): the writer's stages stop at their next
/// chunk or queue wait, the backend refuses further writes, and the operation ends with
/// [`crate::VolumeError::Canceled`]. A backup stopped so writes no snapshot: the packs
/// it uploaded are named by no index, and the next prune removes them.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag (from any thread; setting it again does nothing more).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
