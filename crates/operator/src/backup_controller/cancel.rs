//! A Backup deleted while its run is in progress: the run is told to stop (its cancel token,
//! set by [`watch_deletion`]), and once it has, [`discard`] removes what it made: the volume
//! snapshots its copies wrote, the CSI snapshots it took, its work items and its folder in
//! storage. Nothing of the run is left to come back with the storage sync.

use std::sync::Arc;

use arca_api::Backup;
use arca_engine::backup::Leftovers;
use arca_store::{
    ObjectStore,
    archive::{CsiSnapshots, VolumeSnapshots},
};
use kube::{
    Api, ResourceExt,
    runtime::wait::{await_condition, conditions::is_deleted},
};
use tokio_util::sync::CancellationToken;

use crate::{context::Context, deletion, metrics::OutcomeLabels};

/// How long to wait before watching the Backup again after the watch failed.
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// A task that sets `cancel` once `backup` is gone from the apiserver (deleted, or replaced
/// by another Backup of the same name). Abort it when the run ends.
pub(super) fn watch_deletion(
    ctx: &Context,
    backup: &Backup,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Backup> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    let name = backup.name_any();
    let uid = backup.uid().unwrap_or_default();
    tokio::spawn(async move {
        loop {
            match await_condition(api.clone(), &name, is_deleted(&uid)).await {
                Ok(_) => {
                    tracing::info!(backup = %name, "the Backup was deleted while in progress: stopping its run");
                    cancel.cancel();
                    return;
                }
                // Watched again from the current state: a deletion meanwhile is seen then.
                Err(e) => {
                    tracing::debug!(backup = %name, "watching for the deletion of the Backup: {e}");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    })
}

/// Removes what the canceled run of `backup` made (`leftovers`, its work items, its folder
/// in `store`), then tells it: an Event on the deleted Backup, the `Canceled` outcome in the
/// metrics. The folder is kept when another Backup of the same name exists by then (its run
/// writes there).
pub(super) async fn discard(
    ctx: &Context,
    backup: &Backup,
    location: &arca_api::BackupStorageLocation,
    store: &Arc<dyn ObjectStore>,
    leftovers: Leftovers,
) {
    let name = backup.name_any();
    let namespace = backup.namespace().unwrap_or_default();
    let uid = backup.uid().unwrap_or_default();
    deletion::delete_work_items(ctx, &name, &uid).await;
    let volumes = VolumeSnapshots {
        snapshots: leftovers.volume_snapshots,
    };
    let csi = CsiSnapshots {
        snapshots: leftovers.csi_snapshots,
    };
    let mut problems = deletion::forget_volumes(ctx, location, &volumes).await;
    problems.extend(deletion::delete_csi_snapshots(ctx, backup, &csi).await);
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let folder = match api.get_opt(&name).await {
        Ok(None) => match arca_store::BackupStore::new(store.as_ref())
            .delete_files(&name)
            .await
        {
            Ok(n) => format!("its folder in storage deleted ({n} objects)"),
            Err(e) => {
                problems.push(format!("deleting its folder in storage: {e}"));
                "its folder in storage not deleted".into()
            }
        },
        Ok(Some(_)) => {
            "its folder in storage kept: a new Backup of the same name writes there".into()
        }
        Err(e) => {
            problems.push(format!("checking for a new Backup of the same name: {e}"));
            "its folder in storage kept".into()
        }
    };
    let note = canceled_note(
        volumes.snapshots.len(),
        csi.snapshots.len(),
        &folder,
        &problems,
    );
    if problems.is_empty() {
        tracing::info!(backup = %name, "{note}");
    } else {
        tracing::warn!(backup = %name, "{note}");
    }
    ctx.metrics
        .backups
        .get_or_create(&OutcomeLabels {
            outcome: "Canceled".into(),
        })
        .inc();
    ctx.event(backup, !problems.is_empty(), "BackupCanceled", note)
        .await;
}

/// What the Event of a canceled backup says. Pure.
fn canceled_note(volumes: usize, csi: usize, folder: &str, problems: &[String]) -> String {
    let mut note = format!(
        "deleted while in progress: the run stopped; {volumes} volume snapshots forgotten, {csi} CSI snapshots deleted, {folder}"
    );
    if !problems.is_empty() {
        note.push_str(&format!(
            "; not removed: {} (delete by hand)",
            problems.join("; ")
        ));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_counts_what_was_removed_and_names_what_was_not() {
        let clean = canceled_note(2, 1, "its folder in storage deleted (5 objects)", &[]);
        assert_eq!(
            clean,
            "deleted while in progress: the run stopped; 2 volume snapshots forgotten, 1 CSI snapshots deleted, its folder in storage deleted (5 objects)"
        );
        let left = canceled_note(
            0,
            0,
            "its folder in storage kept",
            &["the CSI snapshot of claim a/b: refused".into()],
        );
        assert!(
            left.ends_with(
                "; not removed: the CSI snapshot of claim a/b: refused (delete by hand)"
            ),
            "{left}"
        );
    }
}
