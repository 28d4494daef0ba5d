//! A restore of a backup Velero made: its tarball is read in place (read-only) and
//! rewritten as Arca's archive and index in a scratch folder of the operator's
//! (`--scratch-dir`, at most `--scratch-bytes`), which Arca's restore engine then reads as
//! any backup. The folder is removed when the restore ends, and again when the Restore is
//! deleted or found abandoned after a restart.
//!
//! Volume data Velero copied with restic (Velero before 1.15, `restic/<namespace>`
//! repositories) is restored by the node agents, as Arca's own: the scratch folder gets a
//! `volumes.json` naming those snapshots. What Arca cannot restore is told to the run as
//! notices (warnings per namespace): items the reader refused, and each other volume whose
//! data Velero holds (kopia file copies, CSI snapshots, moved snapshot data, native
//! snapshots).

use std::path::{Path, PathBuf};

use arca_engine::{protocol::RepositoryId, restore::Notice};
use arca_store::{
    FsStore, Layout, ObjectStore,
    archive::{BackupMetadata, FORMAT_VERSION, VolumeSnapshot, VolumeSnapshots},
};
use arca_velero::{
    PodVolumeData, Transcoded, Uploader, VeleroError, VeleroLocation, VolumeInfo, VolumeMethod,
};
use bytes::Bytes;
use sha2::{Digest, Sha256};

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
    let volumes = plan_volumes(
        location.volume_infos(&name).await,
        location.pod_volume_backups(&name).await,
    );
    notices.extend(volumes.notices);
    let mut stats = transcoded.stats;
    if !volumes.snapshots.is_empty() {
        let json = serde_json::to_vec_pretty(&VolumeSnapshots {
            snapshots: volumes.snapshots,
        })
        .map_err(|e| e.to_string())?;
        stats.volumes_bytes = Some(json.len() as u64);
        stats.volumes_sha256 = Some(hex::encode(Sha256::digest(&json)));
        store
            .put(&Layout::backup_volumes(&name), Bytes::from(json))
            .await
            .map_err(|e| format!("writing the scratch folder: {e}"))?;
    }
    let metadata = BackupMetadata {
        format_version: FORMAT_VERSION.into(),
        backup: serde_json::to_value(backup).map_err(|e| e.to_string())?,
        stats,
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

/// Velero's volume data: what the agents restore, and a notice for each volume they do not.
#[derive(Debug, Default)]
struct VolumePlan {
    snapshots: Vec<VolumeSnapshot>,
    notices: Vec<Notice>,
}

/// Plans the volume data of a Velero backup from its two records: the PodVolumeBackups list
/// (every file copy, of claims and of pod volumes such as emptyDirs alike) and
/// `-volumeinfo.json.gz` (Velero 1.13 and later: every persistent volume, however it was
/// backed up). A restic copy that completed is restored; any other file copy, and every
/// snapshot, is named in a notice. Either record may be missing (older Velero, or none
/// written); one that cannot be read is said so.
fn plan_volumes(
    infos: Result<Option<Vec<VolumeInfo>>, VeleroError>,
    copies: Result<Option<Vec<PodVolumeData>>, VeleroError>,
) -> VolumePlan {
    let mut plan = VolumePlan::default();
    let unreadable = |what: &str, e: &VeleroError| Notice {
        namespace: None,
        message: format!(
            "{what} of the Velero backup could not be read ({e}): the data they name is not restored"
        ),
    };
    let copies_listed = match copies {
        Ok(Some(list)) => {
            for copy in &list {
                match restic_snapshot(copy) {
                    Ok(Some(snapshot)) => plan.snapshots.push(snapshot),
                    Ok(None) => {}
                    Err(why) => plan.notices.push(Notice {
                        namespace: Some(copy.pod_namespace.clone()),
                        message: format!(
                            "volume {} of pod {}/{}: {why}",
                            copy.volume, copy.pod_namespace, copy.pod_name
                        ),
                    }),
                }
            }
            true
        }
        Ok(None) => false,
        Err(e) => {
            plan.notices
                .push(unreadable("the PodVolumeBackups (file copies)", &e));
            // Said once: file copies named by the volume infos are not named again.
            true
        }
    };
    match infos {
        Ok(infos) => plan.notices.extend(
            infos
                .unwrap_or_default()
                .iter()
                // File copies are the PodVolumeBackups list's, when there is one.
                .filter(|i| !(copies_listed && i.method == VolumeMethod::FileCopy))
                .filter_map(volume_info_notice),
        ),
        Err(e) => plan.notices.push(unreadable("the volume infos", &e)),
    }
    plan
}

/// The snapshot the agents restore for a Velero file copy: Some for a completed restic copy,
/// None for a copy that holds no data (never started, or skipped), else why it is not
/// restored.
fn restic_snapshot(copy: &PodVolumeData) -> Result<Option<VolumeSnapshot>, String> {
    let Some(snapshot_id) = &copy.snapshot_id else {
        return Ok(None);
    };
    if copy.uploader == Uploader::Kopia {
        // Where the data is, and how to read it without Arca.
        return Err(format!(
            "Velero copied its files with Kopia (snapshot {snapshot_id} of Velero's repository kopia/{ns}/ under the location's prefix); Arca restores Velero's restic copies only, the objects are restored, the data is not: restore it with Velero, or with the kopia CLI (`kopia repository connect s3 --prefix=<prefix>/kopia/{ns}/` with Velero's repository password, then `kopia snapshot restore {snapshot_id} <folder>`)",
            ns = copy.pod_namespace
        ));
    }
    if copy.uploader != Uploader::Restic {
        return Err(format!(
            "Velero copied its files with {:?}; Arca restores Velero's restic copies only, the objects are restored, the data is not",
            copy.uploader
        ));
    }
    if copy.phase != "Completed" {
        return Err(format!(
            "Velero's copy of its files ended {:?}: its data is not restored",
            copy.phase
        ));
    }
    let hex_id = !snapshot_id.is_empty() && snapshot_id.chars().all(|c| c.is_ascii_hexdigit());
    if !hex_id {
        return Err(format!(
            "Velero recorded the snapshot id {snapshot_id:?}, which is not a restic snapshot id: its data is not restored"
        ));
    }
    Ok(Some(VolumeSnapshot {
        namespace: copy.pod_namespace.clone(),
        pod: copy.pod_name.clone(),
        volume: copy.volume.clone(),
        claim: None,
        repository: RepositoryId::velero_restic(&copy.pod_namespace).to_string(),
        snapshot_id: snapshot_id.to_ascii_lowercase(),
        snapshot_path: String::new(),
        total_bytes: copy.total_bytes.unwrap_or_default(),
        bytes_uploaded: 0,
    }))
}

const NOT_RESTORED: &str = "Arca does not restore it: the objects are restored, the data is not";

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

    fn copy(uploader: Uploader, phase: &str, id: Option<&str>) -> PodVolumeData {
        PodVolumeData {
            name: "b1-x".into(),
            pod_namespace: "shop".into(),
            pod_name: "db-0".into(),
            pod_uid: Some("u1".into()),
            volume: "data".into(),
            uploader,
            phase: phase.into(),
            snapshot_id: id.map(str::to_string),
            repository: "s3:http://s3/bucket/restic/shop".into(),
            node: Some("n1".into()),
            total_bytes: Some(4096),
            message: None,
        }
    }

    fn info(method: VolumeMethod, moved: bool) -> VolumeInfo {
        VolumeInfo {
            pvc_namespace: "shop".into(),
            pvc_name: "data-db-0".into(),
            pv_name: "pv-1".into(),
            method,
            data_moved: moved,
            skipped: false,
        }
    }

    #[test]
    fn a_completed_restic_copy_is_restored_from_velero_s_repository_of_its_namespace() {
        let plan = plan_volumes(
            Ok(None),
            Ok(Some(vec![copy(
                Uploader::Restic,
                "Completed",
                Some("3F9A1b2C"),
            )])),
        );
        assert!(plan.notices.is_empty(), "{:?}", plan.notices);
        let [snapshot] = plan.snapshots.as_slice() else {
            panic!("one snapshot: {:?}", plan.snapshots)
        };
        assert_eq!(snapshot.repository, "restic/shop/");
        assert_eq!(snapshot.snapshot_id, "3f9a1b2c");
        assert_eq!(
            (
                snapshot.namespace.as_str(),
                snapshot.pod.as_str(),
                snapshot.volume.as_str()
            ),
            ("shop", "db-0", "data")
        );
        assert_eq!(snapshot.total_bytes, 4096);
    }

    #[test]
    fn every_copy_not_restored_is_named_with_why() {
        let plan = plan_volumes(
            Ok(None),
            Ok(Some(vec![
                copy(Uploader::Kopia, "Completed", Some("k1")),
                copy(Uploader::Restic, "Failed", Some("ab12")),
                copy(Uploader::Restic, "Completed", Some("../../volumes/bank")),
                // No snapshot: Velero copied nothing (an empty or skipped volume).
                copy(Uploader::Restic, "Completed", None),
            ])),
        );
        assert!(plan.snapshots.is_empty(), "{:?}", plan.snapshots);
        let messages: Vec<&str> = plan.notices.iter().map(|n| n.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("Kopia") && messages[0].contains("restic copies only"));
        assert!(
            messages[0].contains("snapshot k1 of Velero's repository kopia/shop/")
                && messages[0].contains("kopia snapshot restore k1"),
            "{}",
            messages[0]
        );
        assert!(messages[1].contains("\"Failed\""), "{}", messages[1]);
        assert!(
            messages[2].contains("not a restic snapshot id"),
            "{}",
            messages[2]
        );
        assert!(
            plan.notices
                .iter()
                .all(|n| n.namespace.as_deref() == Some("shop"))
        );
    }

    #[test]
    fn file_copies_are_named_once_and_snapshots_always() {
        let infos = || {
            Ok(Some(vec![
                info(VolumeMethod::FileCopy, false),
                info(VolumeMethod::CsiSnapshot, true),
            ]))
        };
        // The copies list covers the file copy (restored): only the snapshot is named.
        let listed = plan_volumes(
            infos(),
            Ok(Some(vec![copy(
                Uploader::Restic,
                "Completed",
                Some("ab12"),
            )])),
        );
        assert_eq!(listed.snapshots.len(), 1);
        assert_eq!(listed.notices.len(), 1, "{:?}", listed.notices);
        assert!(listed.notices[0].message.contains("data mover"));
        // No copies list (none written): the volume infos name the file copy too.
        let unlisted = plan_volumes(infos(), Ok(None));
        assert_eq!(unlisted.notices.len(), 2, "{:?}", unlisted.notices);
        assert!(unlisted.notices[0].message.contains("copied its files"));
        // A list that cannot be read is said once, and nothing of it is restored.
        let unreadable = plan_volumes(
            infos(),
            Err(VeleroError::Metadata {
                key: "backups/b1/b1-podvolumebackups.json.gz".into(),
                detail: "not JSON".into(),
            }),
        );
        assert!(unreadable.snapshots.is_empty());
        assert_eq!(unreadable.notices.len(), 2, "{:?}", unreadable.notices);
        assert!(unreadable.notices[0].message.contains("could not be read"));
    }
}
