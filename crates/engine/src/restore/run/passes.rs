//! The restore's passes over the index. None holds the index: each streams it from storage,
//! checked chunk by chunk against what was verified (`VerifiedIndex`), and keeps only what
//! it is for: the survey its small sets, the plan its counts (recording skipped items as
//! it meets them), a tier the entries of a few frames at a time.

use futures::FutureExt;

use super::*;
use crate::restore::plan::{Decision, FrameBatches, IndexSurvey, decide};

/// What went wrong reading the index again: changed since it was verified, or damaged.
fn index_error(backup: &str, source: arca_store::StoreError) -> RestoreError {
    match source {
        arca_store::StoreError::Changed { .. } => RestoreError::Changed {
            backup: backup.to_string(),
            source,
        },
        source => RestoreError::Corrupt {
            backup: backup.to_string(),
            source,
        },
    }
}

/// The first pass: what is in scope, by type, and the backup's types (for discovery).
pub(super) async fn survey(
    store: &dyn ObjectStore,
    index: &VerifiedIndex,
    scope: &Scope<'_>,
    backup: &str,
) -> Result<(IndexSurvey, Vec<ResourceType>), RestoreError> {
    let mut found = IndexSurvey::default();
    let mut types = Vec::new();
    let mut seen = BTreeSet::new();
    let mut entries = index.read(store).await?;
    while let Some(entry) = entries.recv().await {
        let entry = entry.map_err(|e| index_error(backup, e))?;
        found.add(&entry, scope);
        let gr = entry.group_resource();
        if !seen.contains(&gr) {
            types.push(type_of_entry(&entry));
            seen.insert(gr);
        }
    }
    Ok((found, types))
}

impl Run<'_> {
    /// The second pass: decides every entry, records the skipped ones, counts the rest.
    pub(super) async fn plan(
        &self,
        filters: &PlanFilters<'_>,
        survey: &Survey,
    ) -> Result<Plan, RestoreError> {
        let mut plan = Plan::default();
        let mut entries = self.index.read(self.store).await?;
        while let Some(entry) = entries.recv().await {
            let entry = entry.map_err(|e| index_error(&self.backup, e))?;
            let decision = decide(&entry, filters, survey);
            plan.add(&entry, &decision);
            if let Decision::Skip(why) = decision {
                self.progress.add_total(1);
                self.record(
                    &entry,
                    Applied {
                        outcome: Outcome::Skipped,
                        reason: Some(why.to_string()),
                        warning: None,
                        retry: false,
                    },
                )
                .await;
            }
        }
        Ok(plan)
    }

    /// One tier's pass: its entries, a frame at a time, to the frame workers (at most
    /// `frame_concurrency` frames queued and as many fetched ahead), items created
    /// `apply_concurrency` at a time. If the index changed since it was verified, what was
    /// handed out is finished and the restore stops.
    pub(super) async fn restore_tier(
        &self,
        tier: Tier,
        filters: &PlanFilters<'_>,
        survey: &Survey,
        settings: RestoreSettings,
    ) -> Result<(), RestoreError> {
        let ahead = settings.frame_concurrency.max(1);
        let (frames_tx, frames_rx) = mpsc::channel::<(FrameRef, Vec<IndexEntry>)>(ahead);
        let feed = async move {
            let mut entries = self.index.read(self.store).await?;
            let mut batches = FrameBatches::default();
            while let Some(entry) = entries.recv().await {
                let entry = entry.map_err(|e| index_error(&self.backup, e))?;
                if decide(&entry, filters, survey) != Decision::Restore(tier) {
                    continue;
                }
                if let Some(frame) = batches.push(entry)
                    && frames_tx.send(frame).await.is_err()
                {
                    return Ok(());
                }
            }
            if let Some(frame) = batches.finish() {
                let _ = frames_tx.send(frame).await;
            }
            Ok::<(), RestoreError>(())
        };
        let mut frames_rx = frames_rx;
        let frames = futures::stream::poll_fn(move |cx| frames_rx.poll_recv(cx));
        let work = frames
            .map(|(frame, entries)| async move {
                (entries, read_frame(self.store, &self.backup, frame).await)
            })
            .buffered(ahead)
            .flat_map(|(entries, decoded)| futures::stream::iter(pair(entries, decoded)))
            .for_each_concurrent(
                settings.apply_concurrency.max(1),
                |(entry, json)| async move {
                    let applied = match json {
                        Ok(json) => self.restore_item(&entry, json).await,
                        Err(reason) => Some(Applied {
                            outcome: Outcome::Failed,
                            reason: Some(reason),
                            warning: None,
                            retry: false,
                        }),
                    };
                    match applied {
                        Some(applied) => self.record(&entry, applied).await,
                        None => self.progress.add_done(1),
                    }
                },
            )
            // Boxed: the compiler then proves it Send for this lifetime, not for all.
            .boxed();
        let (fed, ()) = tokio::join!(feed, work);
        fed
    }

    /// What the content skip rules compare items with.
    pub(super) fn restored(&self) -> Restored<'_> {
        Restored {
            workloads: &self.workloads,
            namespaces: &self.namespaces,
            related_roles: &self.related_roles,
            cluster: self.cluster,
        }
    }
}

#[cfg(test)]
mod hostile {
    use arca_store::{
        FsStore, StoreError,
        archive::{ArchiveStats, ArchiveWriter, Item, encode_frames},
    };

    use super::*;

    /// A backup of `items` ConfigMaps over three namespaces, 100 a frame; `seed` changes
    /// their content (and so the index's checksums).
    async fn write_backup(
        store: &FsStore,
        name: &str,
        seed: usize,
        items: usize,
    ) -> Result<ArchiveStats, StoreError> {
        let mut writer = ArchiveWriter::create(store, name).await?;
        let all: Vec<Item> = (0..items)
            .map(|i| Item {
                group: String::new(),
                version: "v1".into(),
                kind: "ConfigMap".into(),
                resource: "configmaps".into(),
                namespace: Some(format!("ns-{}", i % 3)),
                name: format!("cm-{i}"),
                json: Bytes::from(format!("{{\"metadata\":{{\"name\":\"cm-{i}-{seed}\"}}}}")),
            })
            .collect();
        for page in all.chunks(100) {
            for frame in encode_frames(page, 0)? {
                writer.append(frame).await?;
            }
        }
        writer.finish().await
    }

    /// The index swapped in the bucket between the verification and a later pass (a bucket
    /// writer, or a second backup of the same name): the pass fails the restore with an
    /// error that says so, and does not survey the swapped entries.
    #[tokio::test]
    async fn an_index_swapped_between_passes_stops_the_restore() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = FsStore::new(dir.path(), "b", "")?;
        let stats = write_backup(&store, "b1", 0, 20_000).await?;
        write_backup(&store, "swapped", 1, 20_000).await?;
        let index = verify_index(&store, "b1", stats.index_bytes, &stats.index_sha256).await?;
        let namespaces =
            NamespaceFilter::new(&[], &[]).map_err(|e| StoreError::Config(e.to_string()))?;
        let scope = Scope {
            namespaces: &namespaces,
            tenant: None,
            target: &|ns| ns.to_string(),
        };
        let (found, types) = survey(&store, &index, &scope, "b1")
            .await
            .map_err(|e| StoreError::Config(e.to_string()))?;
        assert_eq!(types.len(), 1, "the first pass reads the verified index");
        assert_eq!(found.finish(&|_| true).namespaces.len(), 3);

        let swapped = store.get(&Layout::backup_index("swapped")).await?;
        store.put(&Layout::backup_index("b1"), swapped).await?;
        let err = survey(&store, &index, &scope, "b1")
            .await
            .expect_err("a swapped index");
        assert!(matches!(err, RestoreError::Changed { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("backup b1 changed in storage during the restore"),
            "{message}"
        );
        Ok(())
    }
}
