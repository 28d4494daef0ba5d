//! Arca's pod-volume data mover: file-level backups of pod volumes into restic-format
//! repositories, kept in the location's object store, through `rustic_core`.
//!
//! # Layout
//!
//! Each namespace has one repository at `volumes/<namespace>/` (see
//! [`arca_store::Layout::volume_repository`]), in restic's layout exactly, so that the plain
//! `restic` CLI (0.14 or later: format version 2) can read, check and restore it:
//!
//! ```text
//! volumes/<namespace>/config
//! volumes/<namespace>/keys/<id>
//! volumes/<namespace>/snapshots/<id>
//! volumes/<namespace>/index/<id>
//! volumes/<namespace>/data/<first two hex digits>/<id>
//! ```
//!
//! Backups are written by Arca's own writer (the `writer` module: restic's chunking,
//! pack, index and snapshot formats, with the chunker's tables built once per backup,
//! incompressible blobs stored as they are, and two pack uploads in flight), and restores
//! by Arca's own reader (the `reader` module: trees walked depth first, file contents read
//! in batches of ranged pack reads by four workers, in bounded memory). Forgetting and
//! pruning go through `rustic_core`, which also opens the repository and walks the source
//! folder for the writer. rustic's own archiver stays available ([`BackupWriter::Rustic`])
//! to compare with.
//!
//! [`StoreBackend`] implements rustic's backend traits over [`arca_store::ObjectStore`]
//! (no `rustic_backend`/OpenDAL: Arca's store already knows S3, private CAs and the
//! location's credentials). rustic is synchronous; [`VolumeRepository`] runs it on Tokio's
//! blocking threads and the backend blocks on the store's futures.
//!
//! # Snapshots
//!
//! A snapshot's root tree is the volume folder itself, so a restore into any folder yields
//! the volume's contents; the snapshot's `paths` records a stable
//! `/<namespace>/<pod-or-pvc>/<volume>` instead of the kubelet path, and the parent of a
//! backup is the latest snapshot with the same host name and path: after a pod restart,
//! unchanged files are recognised by size, mtime, ctime and inode and not read again.
//!
//! # Creating the repository once
//!
//! A repository is its `config` plus keys that open it. Two processes creating the same
//! repository at once would each write a key and a `config` (same key in the store, last
//! writer wins): one key would no longer open the config it was made for. So the operator
//! creates the repository ([`VolumeRepository::ensure_initialized`]) once per namespace,
//! before starting the data movers; data movers only open it.
//!
//! # Passwords
//!
//! A [`VolumeRepository`] opens with one password, and optionally a fallback
//! ([`VolumeRepository::with_fallback_password`]). Arca gives each repository its own
//! password; [`VolumeRepository::retire_password`] re-keys a repository made with another
//! one (a restic repository holds several keys: the new one is added before the old one is
//! deleted, so it always opens with one of the two).
//!
//! Opening with a password costs a key derivation (scrypt). A long-lived process shares a
//! [`KeyCache`] ([`VolumeRepository::with_key_cache`]): a password that opened a key file
//! opens the repository again with the master key it found, without a derivation, while
//! that key file is still in the repository.
//!
//! # Forgetting and pruning
//!
//! This crate takes no lock in the store (restic's locks are advisory, and the store has no
//! atomic create). [`VolumeRepository::forget`] deletes snapshots, then prunes in rustic's
//! two phases: packs found unused are only marked, and deleted by a later prune after
//! `keep-delete` (23 hours). `restic check` reports marked packs as "not referenced in any
//! index", which it calls non-critical. A backup running during a prune could deduplicate
//! against a pack being marked; rustic would take it back at the next prune, but until then
//! restic reports the snapshot broken. So the caller must not prune while backups of the
//! repository run: the operator (the only one creating work) holds a per-repository lock,
//! shared by backups and exclusive for a prune. Backups among themselves need no lock.

mod backend;
mod backup;
mod cancel;
mod error;
mod forget;
mod key_cache;
mod progress;
mod reader;
mod repo;
mod restore;
mod source;
mod tree_packs;
mod writer;

pub use backend::{MAX_WHOLE_FILE, StoreBackend, TransferCounters};
pub use backup::{BackupWriter, Compression, SnapshotRequest, SnapshotSummary};
pub use cancel::Cancel;
pub use error::{CREDENTIALS_SECRET, PASSWORD_KEY, Result, VolumeError};
pub use forget::PruneReport;
pub use key_cache::KeyCache;
pub use progress::{BytesProgress, ProgressFn};
pub use repo::{Rekey, SnapshotInfo, VolumeRepository};
pub use restore::RestoreSummary;

/// How many times a backup or restore starts again when a concurrent prune replaced the
/// index under it.
pub const RACE_RETRIES: u32 = 3;
