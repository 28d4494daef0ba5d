//! The backup's CSI snapshots: which claims written get one ([`crate::csi::choose`]), taking
//! them ([`crate::csi::backup`]) and `csi-snapshots.json`.

use std::collections::BTreeSet;

use arca_store::{
    Layout, ObjectStore,
    archive::{CsiSnapshot, CsiSnapshots},
};
use bytes::Bytes;
use futures::StreamExt;

use super::{
    BackupError, BackupRequest, collect::Collector, policies::ResourcePolicies, volume_policy,
};
use crate::{
    csi::{
        backup::{DEFAULT_TIMEOUT, SnapshotJob, list_classes, take},
        choose::{Asked, Choice, Claim, choose},
    },
    runlog::RunLog,
};

/// Claims read at once.
const READS: usize = 8;

/// What the snapshots left for `backup.json` and the status.
#[derive(Clone, Debug, Default)]
pub struct SnapshotsWritten {
    /// Size and sha256 of `csi-snapshots.json`, when one was written.
    pub file: Option<(u64, String)>,
    pub attempted: u32,
    pub completed: u32,
}

/// The snapshots taken, before any is moved ([`super::data_mover`]) or recorded.
#[derive(Clone, Debug, Default)]
pub struct Taken {
    /// VolumeSnapshots created.
    pub attempted: u32,
    /// Ready and kept, one per claim.
    pub snapshots: Vec<CsiSnapshot>,
}

/// The claims of a backup, by (namespace, name).
#[derive(Debug, Default)]
pub struct Claims {
    /// Written into the archive.
    pub written: BTreeSet<(String, String)>,
    /// Mounted by pod volumes whose files the node agent copies.
    pub copied: BTreeSet<(String, String)>,
}

/// Snapshots the claims written that the spec, the policies and the classes choose (not
/// those whose files a pod volume copy takes).
pub async fn snapshot_claims(
    client: &kube::Client,
    request: &BackupRequest,
    claims: Claims,
    policies: Option<&ResourcePolicies>,
    collector: &Collector,
    log: &RunLog,
) -> Taken {
    let spec = &request.spec;
    if !spec.volume_snapshot_locations.is_empty() {
        collector.record_warning(
            Some(""),
            format!(
                "volumeSnapshotLocations {:?} name Velero's provider snapshot locations, which Arca does not use: claims are snapshotted through CSI where they can be",
                spec.volume_snapshot_locations
            ),
        );
    }
    let asked_for = spec.snapshot_volumes != Some(false) || policies.is_some();
    let Claims { written, copied } = claims;
    if !asked_for || written.is_empty() {
        return Taken::default();
    }
    let classes = match list_classes(&request.operator_client.0).await {
        Ok(classes) => classes,
        Err(e) => {
            collector.record_error(Some(""), format!("{e}: no CSI snapshot was taken"));
            return Taken::default();
        }
    };
    if classes.is_empty() && spec.snapshot_volumes.is_none() && policies.is_none() {
        log.info("the cluster has no VolumeSnapshotClass: no CSI snapshot is taken");
        return Taken::default();
    }
    let operator = &request.operator_client.0;
    let mut reads = futures::stream::iter(written)
        .map(|(ns, name)| async move {
            let read = volume_policy::read_claim(client, operator, &ns, &name).await;
            (ns, name, read)
        })
        .buffer_unordered(READS);
    let mut chosen = Vec::new();
    let asked = Asked {
        snapshot_volumes: spec.snapshot_volumes,
        backup_annotations: &request.annotations,
        classes: &classes,
    };
    while let Some((ns, name, read)) = reads.next().await {
        let what = format!("claim {ns}/{name}");
        let (object, volume) = match read {
            Ok(read) => read,
            Err(e) => {
                if spec.snapshot_volumes == Some(true) {
                    collector.record_error(Some(&ns), format!("{what}: no CSI snapshot: {e}"));
                }
                continue;
            }
        };
        let policy = match policies {
            Some(policies) => {
                match volume_policy::facts_of(&object, volume.as_ref()) {
                    Ok(facts) => policies.action_for(&facts),
                    Err(e) => {
                        collector.record_error(
                        Some(&ns),
                        format!("{what}: the resource policies cannot be applied ({e}); no CSI snapshot"),
                    );
                        continue;
                    }
                }
            }
            None => None,
        };
        let claim = Claim {
            namespace: ns.clone(),
            name: name.clone(),
            annotations: object.metadata.annotations.clone().unwrap_or_default(),
            volume: volume.as_ref().and_then(|v| v.metadata.name.clone()),
            driver: volume
                .as_ref()
                .and_then(|v| v.spec.as_ref())
                .and_then(|s| s.csi.as_ref())
                .map(|c| c.driver.clone()),
        };
        let copied_by_pod = copied.contains(&(ns.clone(), name.clone()));
        match choose(&claim, copied_by_pod, policy, asked) {
            Choice::Snapshot { class } => chosen.push((claim, class)),
            Choice::FsBackup => {}
            Choice::NoData(why) => log.info(format!("{what}: no CSI snapshot: {why}")),
            Choice::Cannot { why, error: true } => {
                collector.record_error(Some(&ns), format!("{what}: no CSI snapshot: {why}"))
            }
            Choice::Cannot { why, error: false } => {
                collector.record_warning(Some(&ns), format!("{what}: no CSI snapshot: {why}"))
            }
        }
    }
    if chosen.is_empty() {
        return Taken::default();
    }
    let job = SnapshotJob {
        run_client: client,
        operator,
        backup: &request.name,
        backup_namespace: &request.namespace,
        backup_uid: &request.uid,
        timeout: spec
            .csi_snapshot_timeout
            .map(std::time::Duration::from)
            .unwrap_or(DEFAULT_TIMEOUT),
        cancel: &request.cancel,
    };
    let outcome = take(job, chosen, log).await;
    for (ns, message) in outcome.errors {
        collector.record_error(Some(&ns), message);
    }
    Taken {
        attempted: outcome.attempted,
        snapshots: outcome.snapshots,
    }
}

/// Writes `csi-snapshots.json` with the snapshots the backup keeps (none: no file).
/// `completed` counts the snapshots taken and ready (kept, or moved to the bucket).
pub async fn write_file(
    store: &dyn ObjectStore,
    request: &BackupRequest,
    attempted: u32,
    completed: u32,
    kept: Vec<CsiSnapshot>,
) -> Result<SnapshotsWritten, BackupError> {
    let mut written = SnapshotsWritten {
        file: None,
        attempted,
        completed,
    };
    if kept.is_empty() {
        return Ok(written);
    }
    let json = serde_json::to_vec_pretty(&CsiSnapshots { snapshots: kept })
        .map_err(|e| BackupError::Internal(e.to_string()))?;
    written.file = Some((
        json.len() as u64,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json)),
    ));
    store
        .put(
            &Layout::backup_csi_snapshots(&request.name),
            Bytes::from(json),
        )
        .await?;
    Ok(written)
}
