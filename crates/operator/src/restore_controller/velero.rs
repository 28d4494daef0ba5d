//! A restore of a backup Velero made: its tarball is read in place (read-only) and
//! rewritten as Arca's archive and index in a scratch folder of the operator's
//! (`--scratch-dir`, at most `--scratch-bytes`), which Arca's restore engine then reads as
//! any backup. The folder is removed when the restore ends, and again when the Restore is
//! deleted or found abandoned after a restart.
//!
//! What Arca cannot restore from it is told to the run as notices (warnings per namespace):
//! items the reader refused, and each volume whose data Velero holds (file copies, CSI
//! snapshots, moved snapshot data, native snapshots).

use std::path::{Path, PathBuf};

use arca_engine::restore::Notice;
use arca_store::{
    FsStore,
    archive::{BackupMetadata, FORMAT_VERSION},
};
use arca_velero::{PodVolumeData, Transcoded, VeleroLocation, VolumeInfo, VolumeMethod};

use crate::context::Context;

/// A restore's scratch folder, removed when dropped.
pub(super) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// An empty folder for the restore with uid `uid` (a leftover of an earlier attempt is
    /// removed first).
    fn create(root: &Path, uid: &str) -> Result<Self, String> {
        let dir = scratch_of(root, uid)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("removing the old scratch folder {}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "creating the scratch folder {} (`arca server --scratch-dir`): {e}",
                dir.display()
            )
        })?;
        Ok(Self { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(folder = %self.dir.display(), "removing a restore's scratch folder: {e}");
        }
    }
}

/// `<root>/restore-<uid>`; refuses a uid that is not a plain name (the apiserver sets
/// uids, but a path is only built from what is checked).
fn scratch_of(root: &Path, uid: &str) -> Result<PathBuf, String> {
    let plain = !uid.is_empty() && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !plain {
        return Err(format!("the Restore's uid {uid:?} is not a plain name"));
    }
    Ok(root.join(format!("restore-{uid}")))
}

/// Removes what a restore with uid `uid` may have left in the scratch space (after a crash).
pub(super) fn remove_scratch(ctx: &Context, uid: &str) {
    if let Ok(dir) = scratch_of(&ctx.settings.scratch_dir, uid)
        && dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(folder = %dir.display(), "removing a restore's scratch folder: {e}");
    }
}

/// A Velero backup made ready for the engine: the store holding its rewritten items, the
/// metadata the engine checks them against, and the warnings to report.
pub(super) struct Prepared {
    pub store: FsStore,
    pub metadata: BackupMetadata,
    pub notices: Vec<Notice>,
    /// Keeps the folder until the restore ends.
    pub _scratch: Scratch,
}

/// Rewrites Velero backup `backup` (the Arca Backup object synced for it) into scratch
/// space for the restore with uid `uid`.
pub(super) async fn prepare(
    ctx: &Context,
    location: &VeleroLocation,
    backup: &arca_api::Backup,
    uid: &str,
) -> Result<Prepared, String> {
    let name = kube::ResourceExt::name_any(backup);
    let scratch = Scratch::create(&ctx.settings.scratch_dir, uid)?;
    let store = FsStore::new(&scratch.dir, "velero", "").map_err(|e| e.to_string())?;
    let transcoded = arca_velero::transcode(location, &name, &store, ctx.settings.scratch_bytes)
        .await
        .map_err(|e| format!("reading Velero backup {name}: {e}"))?;
    let mut notices = refused_items(&transcoded);
    notices.extend(volume_notices(location, &name).await);
    let metadata = BackupMetadata {
        format_version: FORMAT_VERSION.into(),
        backup: serde_json::to_value(backup).map_err(|e| e.to_string())?,
        stats: transcoded.stats,
        cluster_version: None,
        encryption: None,
    };
    Ok(Prepared {
        store,
        metadata,
        notices,
        _scratch: scratch,
    })
}

/// Notices published as Events on the Restore: the restore's results and log are not
/// stored for a Velero backup (nothing is written into Velero's prefix), so this is where
/// they are read (`kubectl describe restore`), beside the warning count of the status.
const NOTICE_EVENTS: usize = 20;

/// Publishes the first [`NOTICE_EVENTS`] notices as Warning Events, and one for the rest.
pub(super) async fn publish(ctx: &Context, restore: &arca_api::Restore, notices: &[Notice]) {
    for notice in notices.iter().take(NOTICE_EVENTS) {
        ctx.event(restore, true, "NotRestored", notice.message.clone())
            .await;
    }
    if notices.len() > NOTICE_EVENTS {
        ctx.event(
            restore,
            true,
            "NotRestored",
            format!(
                "{} more things of the Velero backup are not restored (the status counts them as warnings)",
                notices.len() - NOTICE_EVENTS
            ),
        )
        .await;
    }
}

/// One notice per item the tarball reader refused (the first `REFUSED_KEPT`), and one for
/// the rest; one for entries that are not items.
fn refused_items(transcoded: &Transcoded) -> Vec<Notice> {
    let backup_wide = |message: String| Notice {
        namespace: None,
        message,
    };
    let mut notices: Vec<Notice> = transcoded
        .refused
        .iter()
        .map(|item| {
            backup_wide(format!(
                "Velero backup item {} not restored: {}",
                item.path, item.reason
            ))
        })
        .collect();
    let unnamed = transcoded
        .refused_count
        .saturating_sub(transcoded.refused.len() as u64);
    if unnamed > 0 {
        notices.push(backup_wide(format!(
            "{unnamed} more items of the Velero backup were refused and not restored"
        )));
    }
    let summary = &transcoded.summary;
    if summary.ignored > 0 {
        notices.push(backup_wide(format!(
            "{} entries of the Velero backup's tarball are not Kubernetes items and were not read (first: {})",
            summary.ignored,
            summary.ignored_names.join(", ")
        )));
    }
    notices
}

/// One notice per volume whose data Velero holds: from `-volumeinfo.json.gz` (Velero 1.13
/// and later), else from the PodVolumeBackups list.
async fn volume_notices(location: &VeleroLocation, name: &str) -> Vec<Notice> {
    let backup_wide = |message: String| {
        vec![Notice {
            namespace: None,
            message,
        }]
    };
    match location.volume_infos(name).await {
        Ok(Some(infos)) => infos.iter().filter_map(volume_info_notice).collect(),
        Ok(None) => match location.pod_volume_backups(name).await {
            Ok(list) => list
                .unwrap_or_default()
                .iter()
                .filter(|v| v.snapshot_id.is_some())
                .map(pod_volume_notice)
                .collect(),
            Err(e) => backup_wide(format!(
                "which volumes of the Velero backup hold data could not be read ({e}): none of Velero's volume data is restored"
            )),
        },
        Err(e) => backup_wide(format!(
            "which volumes of the Velero backup hold data could not be read ({e}): none of Velero's volume data is restored"
        )),
    }
}

const NOT_RESTORED: &str = "this version of Arca does not restore Velero's volume data: the objects are restored, the data is not";

fn volume_info_notice(info: &VolumeInfo) -> Option<Notice> {
    if info.skipped {
        return None;
    }
    let how = match &info.method {
        VolumeMethod::FileCopy => "Velero copied its files (file system backup)",
        VolumeMethod::CsiSnapshot if info.data_moved => {
            "Velero moved a CSI snapshot of it to the bucket (data mover)"
        }
        VolumeMethod::CsiSnapshot => "Velero took a CSI snapshot of it",
        VolumeMethod::NativeSnapshot => {
            "Velero took a snapshot of it with a volume snapshotter plugin"
        }
        VolumeMethod::Other(_) => return None,
    };
    let (namespace, what) = if info.pvc_name.is_empty() {
        (None, format!("PersistentVolume {}", info.pv_name))
    } else {
        (
            Some(info.pvc_namespace.clone()),
            format!(
                "PersistentVolumeClaim {}/{}",
                info.pvc_namespace, info.pvc_name
            ),
        )
    };
    Some(Notice {
        namespace,
        message: format!("{what}: {how}; {NOT_RESTORED}"),
    })
}

fn pod_volume_notice(volume: &PodVolumeData) -> Notice {
    Notice {
        namespace: Some(volume.pod_namespace.clone()),
        message: format!(
            "volume {} of pod {}/{}: Velero copied its files ({:?}); {NOT_RESTORED}",
            volume.volume, volume.pod_namespace, volume.pod_name, volume.uploader
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_folder_is_only_ever_a_plain_child_of_the_root() {
        let root = Path::new("/scratch");
        assert_eq!(
            scratch_of(root, "5d1c-9a").expect("plain"),
            Path::new("/scratch/restore-5d1c-9a")
        );
        for hostile in ["", "../x", "a/b", "..", "a b"] {
            assert!(scratch_of(root, hostile).is_err(), "{hostile:?}");
        }
    }

    #[test]
    fn a_scratch_folder_is_emptied_and_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let leftover = root.path().join("restore-u1");
        std::fs::create_dir_all(&leftover).expect("leftover");
        std::fs::write(leftover.join("old"), b"x").expect("written");
        let scratch = Scratch::create(root.path(), "u1").expect("created");
        assert!(!leftover.join("old").exists(), "the leftover was kept");
        std::fs::write(scratch.dir.join("new"), b"y").expect("written");
        drop(scratch);
        assert!(!leftover.exists(), "the folder outlived its restore");
    }

    #[test]
    fn every_volume_with_data_is_named_and_skipped_ones_are_not() {
        let info = |method, pvc: &str, moved, skipped| VolumeInfo {
            pvc_namespace: "shop".into(),
            pvc_name: pvc.into(),
            pv_name: "pv-1".into(),
            method,
            data_moved: moved,
            skipped,
        };
        let moved =
            volume_info_notice(&info(VolumeMethod::CsiSnapshot, "db", true, false)).expect("named");
        assert_eq!(moved.namespace.as_deref(), Some("shop"));
        assert!(moved.message.contains("PersistentVolumeClaim shop/db"));
        assert!(moved.message.contains("data mover"));
        let native = volume_info_notice(&info(VolumeMethod::NativeSnapshot, "", false, false))
            .expect("named");
        assert_eq!(native.namespace, None);
        assert!(native.message.starts_with("PersistentVolume pv-1:"));
        assert!(volume_info_notice(&info(VolumeMethod::FileCopy, "db", false, true)).is_none());
    }
}
