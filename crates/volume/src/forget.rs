//! Deleting snapshots and pruning the data only they used.

use std::collections::BTreeSet;

use rustic_core::{NoProgressBars, PruneOptions, ReadBackend, RusticError, repofile::SnapshotId};

use crate::{
    VolumeRepository,
    error::{Result, VolumeError},
};

/// What a forget (and the prune after it) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Snapshots deleted (ids asked for that were not there are not counted).
    pub snapshots_removed: u64,
    /// Pack files no longer used, now marked for deletion: a later prune deletes them once
    /// they have been marked for rustic's `keep-delete` (23 hours).
    pub packs_marked: u64,
    /// Partly used pack files rewritten without their unused blobs.
    pub packs_repacked: u64,
    /// Pack files marked by an earlier prune, deleted now.
    pub packs_deleted: u64,
    /// Bytes of those deleted pack files.
    pub bytes_deleted: u64,
    /// Bytes of unused blobs this prune dropped from the index.
    pub bytes_unused_dropped: u64,
}

impl VolumeRepository {
    /// Deletes the snapshots `snapshot_ids` (full ids; ids not in the repository are
    /// fine), then prunes with rustic's default, two-phase prune.
    ///
    /// Two phases because no lock is taken and backups of other volumes of the namespace
    /// may run meanwhile: a backup may have uploaded packs it has not yet indexed, or may
    /// reuse a blob this prune finds unused. So prune never deletes a pack it just found
    /// unused: it marks it (in a new index), and a later prune deletes it only after
    /// `keep-delete` (23 hours) has passed, or takes it back if an index written in between
    /// uses it. A backup must therefore not run longer than 23 hours.
    pub async fn forget(&self, snapshot_ids: &[String]) -> Result<PruneReport> {
        let mut wanted = BTreeSet::new();
        for id in snapshot_ids {
            let parsed: SnapshotId = id.parse().map_err(|_| {
                VolumeError::InvalidRequest(format!(
                    "{id:?} is not a snapshot id: give the full 64-hex-digit id"
                ))
            })?;
            wanted.insert(parsed);
        }
        let this = self.clone();
        let operation = format!("deleting {} volume snapshots", wanted.len());
        self.run(&operation.clone(), move |be| {
            let location = be.location();
            let failed =
                |e: Box<RusticError>| VolumeError::rustic(operation.clone(), &location, &e);
            let repo = this.open(be, NoProgressBars)?;
            let present: Vec<SnapshotId> = repo
                .list::<SnapshotId>()
                .map_err(failed)?
                .filter(|id| wanted.contains(id))
                .collect();
            repo.delete_snapshots(&present).map_err(failed)?;
            let opts = PruneOptions::default();
            let plan = repo.prune_plan(&opts).map_err(failed)?;
            let stats = &plan.stats;
            let sizes = stats.size_sum();
            let report = PruneReport {
                snapshots_removed: present.len() as u64,
                packs_marked: stats.packs.unused + stats.packs_unref,
                packs_repacked: stats.packs.repack,
                packs_deleted: stats.packs_to_delete.remove,
                bytes_deleted: stats.size_to_delete.remove,
                bytes_unused_dropped: sizes.remove + sizes.repackrm,
            };
            repo.prune(&opts, plan).map_err(failed)?;
            tracing::info!(?report, "volume snapshots forgotten and repository pruned");
            Ok(report)
        })
        .await
    }
}
