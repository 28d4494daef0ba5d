//! Arca as a contestant: a pod whose volume holds the data, a Backup of its namespace timed
//! from creation to Completed (the node agent moves the data), twice, then a Restore of the
//! first into another namespace, timed from creation to Completed, the agent writing the
//! data into the restored pod's volume folder (made by the bench, as kubelet would, once
//! the pod is scheduled).
//!
//! A variant of Arca is another [`Arca`]: with a location of its own ([`Arca::variant`]),
//! or with settings of its Backups ([`Arca::compression_off`]).

use std::time::Duration;

use arca_api::{
    Backup, BackupPhase, BackupStorageLocation, LocationPhase, PodVolumeBackup, PodVolumeRestore,
    Restore, RestorePhase,
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};

use super::{
    Ctx,
    measure::{Phase, Probe, reset_peak, resident_kib},
    pod,
    timeline::Timeline,
};
use crate::steps::{ARCA_NS, finished, peak_rss_kib};

/// The issue's target for Arca's first backup: 1.2x kopia's throughput, 1.3x with
/// compression off.
pub(super) const FIRST_VS_KOPIA: f64 = 1.2;
pub(super) const FIRST_VS_KOPIA_UNCOMPRESSED: f64 = 1.3;

/// The longest a Backup or Restore may take before the bench gives up.
pub(super) const RUN_LIMIT: Duration = Duration::from_secs(1800);

/// An Arca contestant: its backups go to one location.
#[derive(Debug)]
pub(super) struct Arca {
    /// Its name in the report.
    pub label: String,
    /// Short, in names of namespaces and backups.
    tag: String,
    /// Its BackupStorageLocation.
    location: String,
    /// The location's prefix in the bucket.
    prefix: String,
    /// The location's spec, when the bench makes it (None: the bench's `default`).
    spec: Option<Value>,
    /// Merged into each Backup's spec (e.g. a compression setting).
    backup_changes: Value,
    /// The issue's target for its first backup, as a multiple of kopia's throughput.
    pub first_vs_kopia: f64,
}

impl Arca {
    /// Arca on the bench's `default` location (made by `steps::install`, prefix `bench`).
    pub fn default_location() -> Self {
        Self {
            label: "Arca".into(),
            tag: "arca".into(),
            location: "default".into(),
            prefix: "bench".into(),
            spec: None,
            backup_changes: json!({}),
            first_vs_kopia: FIRST_VS_KOPIA,
        }
    }

    /// Arca on the `default` location, its Backups with `uploaderConfig.compression: Off`
    /// (data stored as it is).
    pub fn compression_off() -> Self {
        Self {
            label: "Arca, compression off".into(),
            tag: "nocomp".into(),
            backup_changes: json!({"uploaderConfig": {"compression": "Off"}}),
            first_vs_kopia: FIRST_VS_KOPIA_UNCOMPRESSED,
            ..Self::default_location()
        }
    }

    /// Arca on a location of its own (prefix `bench-<tag>` of the same bucket), whose spec
    /// is the default location's with `changes` merged in, e.g. a compression setting.
    #[allow(dead_code)] // until a variant is listed in `contestants()`
    pub fn variant(label: &str, tag: &str, changes: Value) -> Self {
        Self {
            label: label.into(),
            tag: tag.into(),
            location: format!("vol-{tag}"),
            prefix: format!("bench-{tag}"),
            spec: Some(changes),
            backup_changes: json!({}),
            first_vs_kopia: FIRST_VS_KOPIA,
        }
    }

    /// Makes the location of a variant and waits until it is Available.
    pub async fn install(&self, ctx: &Ctx<'_>) -> anyhow::Result<()> {
        let Some(changes) = &self.spec else {
            return Ok(());
        };
        let s3 = &ctx.env.s3;
        let mut spec = json!({
            "provider": "aws", "objectStorage": {"bucket": s3.bucket, "prefix": self.prefix},
            "config": {"region": s3.region, "s3Url": s3.endpoint, "s3ForcePathStyle": "true"},
            "credential": {"name": "s3", "key": "cloud"}
        });
        merge(&mut spec, changes);
        let location: BackupStorageLocation = serde_json::from_value(json!({
            "apiVersion": "arca.dev/v1alpha1", "kind": "BackupStorageLocation",
            "metadata": {"name": self.location}, "spec": spec
        }))?;
        let api: Api<BackupStorageLocation> = Api::namespaced(ctx.client.clone(), ARCA_NS);
        api.create(&PostParams::default(), &location).await?;
        let available = finished(&api, &self.location, |l: &BackupStorageLocation| {
            l.status.as_ref().and_then(|s| s.phase) == Some(LocationPhase::Available)
        });
        tokio::time::timeout(Duration::from_secs(60), available)
            .await
            .map_err(|_| anyhow::anyhow!("location {} not Available after 60s", self.location))??;
        Ok(())
    }

    /// One round: a fresh namespace (so a fresh repository), two backups, a restore.
    pub async fn round(&self, ctx: &Ctx<'_>, round: usize) -> anyhow::Result<[Phase; 3]> {
        let ns = format!("bench-vol-{}-r{round}", self.tag);
        let names = [
            format!("vol-{}-r{round}-first", self.tag),
            format!("vol-{}-r{round}-unchanged", self.tag),
        ];
        let prefixes = [
            format!("{}/volumes/{ns}/", self.prefix),
            format!("{}/backups/{}/", self.prefix, names[0]),
            format!("{}/backups/{}/", self.prefix, names[1]),
        ];
        pod::create(&ctx.client, &ns).await?;
        let (folder, _, _) = pod::mounted(
            ctx.client.clone(),
            ns.clone(),
            ctx.pods_dir.clone(),
            false,
            None,
        )
        .await?;
        // The data moves into the pod's volume for the backups, and back after.
        std::fs::rename(&ctx.data.home, &folder)?;
        let backups = async {
            let mut first = self.backup(ctx, &ns, &names[0]).await?;
            first.uploaded = Some(ctx.bucket.bytes(&prefixes).await?);
            let mut unchanged = self.backup(ctx, &ns, &names[1]).await?;
            unchanged.uploaded =
                Some(ctx.bucket.bytes(&prefixes).await? - first.uploaded.unwrap_or(0));
            anyhow::Ok((first, unchanged))
        }
        .await;
        std::fs::rename(&folder, &ctx.data.home)?;
        let (first, unchanged) = backups?;

        let restore = self.restore(ctx, &ns, &names[0], round).await?;
        ctx.bucket.remove(&prefixes[0]).await?;
        Ok([first, unchanged, restore])
    }

    /// A Backup of `ns` to this location, timed from creation to Completed.
    async fn backup(&self, ctx: &Ctx<'_>, ns: &str, name: &str) -> anyhow::Result<Phase> {
        let api: Api<Backup> = Api::namespaced(ctx.client.clone(), ARCA_NS);
        let mut spec = json!({"includedNamespaces": [ns], "storageLocation": self.location});
        merge(&mut spec, &self.backup_changes);
        let backup: Backup = serde_json::from_value(json!({
            "apiVersion": "arca.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name},
            "spec": spec
        }))?;
        let items: Api<PodVolumeBackup> = Api::namespaced(ctx.client.clone(), ARCA_NS);
        let timeline = Timeline::start(api.clone(), items.clone(), name);
        let sent = std::sync::OnceLock::new();
        let mut phase = self
            .measured(ctx, async {
                let _ = sent.set(tokio::time::Instant::now());
                api.create(&PostParams::default(), &backup).await?;
                let done = finished(&api, name, |b: &Backup| {
                    b.status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .is_some_and(|p| p.is_terminal())
                });
                within(name, done).await
            })
            .await?;
        eprintln!(
            "bench: {} {name}: {}",
            self.label,
            timeline.finish(sent.get().copied()).await
        );
        let done = phase.1;
        let status = done.status.unwrap_or_default();
        anyhow::ensure!(
            status.phase == Some(BackupPhase::Completed),
            "backup {name} ended {:?}: {:?} (see the agent's log)",
            status.phase,
            status.failure_reason
        );
        phase.0.reported = Some(
            items
                .list(&ListParams::default().labels(&format!("arca.dev/backup-name={name}")))
                .await?
                .items
                .iter()
                .filter_map(|i| i.status.as_ref()?.bytes_uploaded)
                .sum(),
        );
        Ok(phase.0)
    }

    /// A Restore of `backup` into `<ns>-restored`, timed from creation to Completed; the
    /// restored volume is checked against the data, then removed.
    async fn restore(
        &self,
        ctx: &Ctx<'_>,
        ns: &str,
        backup: &str,
        round: usize,
    ) -> anyhow::Result<Phase> {
        let name = format!("vol-{}-r{round}-restore", self.tag);
        let target = format!("{ns}-restored");
        let api: Api<Restore> = Api::namespaced(ctx.client.clone(), ARCA_NS);
        let restore: Restore = serde_json::from_value(json!({
            "apiVersion": "arca.dev/v1alpha1", "kind": "Restore",
            "metadata": {"name": name},
            "spec": {"backupName": backup, "namespaceMapping": {ns: target}}
        }))?;
        // "kubelet": the restored pod's volume folder, as soon as the pod is scheduled.
        let fs = ctx.restore_fs(&format!("{}-r{round}-fs", self.tag))?;
        let mount = tokio::spawn(pod::mounted(
            ctx.client.clone(),
            target.clone(),
            ctx.pods_dir.clone(),
            true,
            fs,
        ));
        let items: Api<PodVolumeRestore> = Api::namespaced(ctx.client.clone(), ARCA_NS);
        let timeline = Timeline::start_restore(api.clone(), items, &name);
        let sent = std::sync::OnceLock::new();
        let result = self
            .measured(ctx, async {
                let _ = sent.set(tokio::time::Instant::now());
                api.create(&PostParams::default(), &restore).await?;
                let done = finished(&api, &name, |r: &Restore| {
                    r.status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .is_some_and(|p| p.is_terminal())
                });
                within(&name, done).await
            })
            .await;
        let (phase, done) = match result {
            Ok(r) => r,
            Err(e) => {
                mount.abort();
                return Err(e);
            }
        };
        let status = done.status.unwrap_or_default();
        if status.phase != Some(RestorePhase::Completed) {
            mount.abort();
            anyhow::bail!(
                "restore {name} ended {:?}: {:?} {:?} (see the agent's log)",
                status.phase,
                status.failure_reason,
                status.outcomes
            );
        }
        let (folder, scheduled, fs) =
            tokio::time::timeout(Duration::from_secs(10), mount).await???;
        timeline
            .mark(scheduled, "pod scheduled and its folder made")
            .await;
        eprintln!(
            "bench: {} {name}: {}",
            self.label,
            timeline.finish(sent.get().copied()).await
        );
        ctx.data.verify(&folder, &self.label)?;
        if let Some(fs) = fs {
            fs.remove()?;
        }
        if let Some(pod_dir) = folder.ancestors().nth(3) {
            std::fs::remove_dir_all(pod_dir)?;
        }
        Ok(phase)
    }

    /// Runs `work` as a measured phase of Arca: the agent's peak reset before, read after;
    /// CPU of the agent and the operator.
    async fn measured<T>(
        &self,
        ctx: &Ctx<'_>,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(Phase, T)> {
        let reset = reset_peak(ctx.agent_pid);
        let at_start = resident_kib(ctx.agent_pid);
        let probe = Probe::start(ctx.s3_pid, &[ctx.agent_pid, ctx.operator_pid]).await;
        let out = work.await?;
        let mut phase = probe.stop();
        // Without the reset, the peak is the agent's since it started.
        phase.peak_kib = peak_rss_kib(ctx.agent_pid).filter(|_| reset);
        phase.resident_at_start_kib = at_start;
        Ok((phase, out))
    }
}

/// Waits for `done` (a Backup or Restore finishing) at most [`RUN_LIMIT`].
async fn within<T>(name: &str, done: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(RUN_LIMIT, done)
        .await
        .map_err(|_| anyhow::anyhow!("{name} not finished after {}s", RUN_LIMIT.as_secs()))?
}

/// Merges `changes` into `base`, objects key by key (a location's spec and a variant's).
fn merge(base: &mut Value, changes: &Value) {
    match (base, changes) {
        (Value::Object(base), Value::Object(changes)) => {
            for (key, value) in changes {
                merge(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, changes) => *base = changes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_variant_s_changes_merge_into_the_location_spec() {
        let mut spec = json!({"provider": "aws", "config": {"region": "r", "s3Url": "u"}});
        super::merge(
            &mut spec,
            &json!({"config": {"compression": "off"}, "x": 1}),
        );
        assert_eq!(
            spec,
            json!({"provider": "aws", "config": {"region": "r", "s3Url": "u", "compression": "off"}, "x": 1})
        );
    }
}
