//! At start, once leading: what runs left behind in the operator's namespace for Backups
//! that no longer exist. A backup deleted while it ran is cleaned up by the run itself
//! (`backup_controller::cancel`); if the operator stopped in the middle of that, or of a
//! run whose Backup was then deleted, nothing would look at its leftovers again: the node
//! agent's work items (PodVolumeBackups) and the data mover's objects (pods, claims,
//! VolumeSnapshots and contents labelled with the backup's uid). They are removed here.
//!
//! Never the data: a work item's snapshot may belong to a backup in storage whose object was
//! deleted and will be synced back with a new uid, so no snapshot is forgotten here.

use std::collections::BTreeSet;

use arca_api::{Backup, PodVolumeBackup, labels};
use arca_engine::csi::expose::{DATA_MOVER_LABEL, clean_up_leftovers};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{Api, ResourceExt, api::ListParams};

use crate::{context::Context, deletion::delete_work_items};

/// Removes the leftovers of every Backup uid found in the operator's namespace that no
/// Backup has. Problems are logged: the sweep runs again at the next start.
pub async fn sweep(ctx: &Context) {
    match sweep_once(ctx).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed what {n} deleted backup run(s) had left"),
        Err(e) => tracing::warn!("looking for what deleted backups left: {e}"),
    }
}

async fn sweep_once(ctx: &Context) -> Result<usize, kube::Error> {
    // The leftovers first, the Backups second: a Backup made in between has no leftovers in
    // the first list, so nothing of a live run is ever taken for an orphan.
    let found = leftover_uids(ctx).await?;
    if found.is_empty() {
        return Ok(0);
    }
    let backups: Api<Backup> = ctx.settings.watched(&ctx.client);
    let live: BTreeSet<String> = backups
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|b| b.metadata.uid)
        .collect();
    let gone = orphans(&found, &live);
    let log = arca_engine::runlog::RunLog::detached("orphans");
    for uid in &gone {
        tracing::info!(backup_uid = %uid, "removing what a deleted backup's run left");
        delete_work_items(ctx, "(deleted backup)", uid).await;
        if let Err(e) = clean_up_leftovers(&ctx.client, &ctx.settings.namespace, uid, &log).await {
            tracing::warn!(backup_uid = %uid, "removing the data mover's leftovers: {e}");
        }
    }
    Ok(gone.len())
}

/// The Backup uids named by the work items and data mover objects of the operator's
/// namespace.
async fn leftover_uids(ctx: &Context) -> Result<BTreeSet<String>, kube::Error> {
    let ns = &ctx.settings.namespace;
    let mut uids = BTreeSet::new();
    let work: Api<PodVolumeBackup> = Api::namespaced(ctx.client.clone(), ns);
    for item in work.list_metadata(&ListParams::default()).await?.items {
        uids.extend(item.labels().get(labels::BACKUP_UID).cloned());
    }
    let movers = ListParams::default().labels(DATA_MOVER_LABEL);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for pod in pods.list_metadata(&movers).await?.items {
        uids.extend(pod.labels().get(DATA_MOVER_LABEL).cloned());
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    for claim in claims.list_metadata(&movers).await?.items {
        uids.extend(claim.labels().get(DATA_MOVER_LABEL).cloned());
    }
    Ok(uids)
}

/// The uids of `found` that no live Backup has (compared as label values, which is how the
/// data mover's objects carry them). Pure.
fn orphans(found: &BTreeSet<String>, live: &BTreeSet<String>) -> BTreeSet<String> {
    let live: BTreeSet<String> = live
        .iter()
        .map(|uid| arca_engine::csi::backup::label_value(uid))
        .collect();
    found
        .iter()
        .filter(|uid| !uid.is_empty() && !live.contains(*uid))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_uids_no_backup_has_are_orphans() {
        let found = set(&["uid-a", "uid-b", ""]);
        let live = set(&["uid-a", "uid-c"]);
        assert_eq!(orphans(&found, &live), set(&["uid-b"]));
        assert!(orphans(&set(&["uid-a"]), &live).is_empty());
        assert!(orphans(&BTreeSet::new(), &live).is_empty());
    }
}
