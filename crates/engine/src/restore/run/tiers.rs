//! Between tiers: namespaces out of Terminating and present, CRDs served, and the retry
//! pass for items that waited for a dependency.

use super::*;

impl Run<'_> {
    pub(super) async fn namespaces_ready(&self, settings: RestoreSettings) {
        futures::stream::iter(&self.namespaces)
            .for_each_concurrent(NAMESPACE_CHECKS, |ns| async move {
                let target = self.transform.target_namespace(ns);
                if let Err(e) = readiness::namespace_not_terminating(
                    &self.client,
                    target,
                    settings.wait_timeout,
                )
                .await
                {
                    self.log.warn(e);
                }
            })
            .await;
    }

    pub(super) async fn crds_ready(&self, crds: &[String], settings: RestoreSettings) {
        match readiness::crds_served(&self.client, crds, settings.wait_timeout).await {
            Ok(catalogue) => {
                if let Ok(mut current) = self.catalogue.write() {
                    *current = Arc::new(catalogue);
                }
                self.log
                    .info(format!("{} CRDs established and served", crds.len()));
            }
            Err(e) => self.log.warn(format!(
                "{e}; their custom resources will be retried at the end"
            )),
        }
    }

    /// Namespaces with items whose Namespace object is not in the backup (or was filtered
    /// out) are created bare, labelled with the backup and restore. One whose Namespace item
    /// failed is not: the archive (or the apiserver) refused it, and its items fail with it.
    pub(super) async fn ensure_namespaces(&self) {
        let failed = self
            .failed_namespaces
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        let labels = std::collections::BTreeMap::from([
            (
                arca_api::labels::BACKUP_NAME.to_string(),
                label_value(&self.transform.backup_name),
            ),
            (
                arca_api::labels::RESTORE_NAME.to_string(),
                label_value(&self.transform.restore_name),
            ),
        ]);
        let labels = &labels;
        let failed = &failed;
        futures::stream::iter(self.namespaces.iter().filter(|ns| !failed.contains(*ns)))
            .for_each_concurrent(NAMESPACE_CHECKS, |ns| async move {
                let target = self.transform.target_namespace(ns);
                match readiness::ensure_namespace(&self.client, target, labels).await {
                    Ok(true) => self
                        .log
                        .info(format!("created namespace {target} (not in the backup)")),
                    Ok(false) => {}
                    Err(e) => self.log.error(e),
                }
            })
            .await;
    }

    pub(super) async fn retry_pass(&self, settings: RestoreSettings) {
        for round in 1..=3 {
            let pending = self
                .retries
                .lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default();
            if pending.is_empty() {
                return;
            }
            self.log.info(format!(
                "retry {round}: {} items waited for a dependency",
                pending.len()
            ));
            if let Ok(catalogue) = Catalogue::discover(&self.client).await
                && let Ok(mut current) = self.catalogue.write()
            {
                *current = Arc::new(catalogue);
            }
            tokio::time::sleep(std::time::Duration::from_secs(round)).await;
            let last = round == 3;
            futures::stream::iter(pending)
                .for_each_concurrent(settings.apply_concurrency.max(1), |retry| async move {
                    let mut applied = self.write(&retry.entry, retry.object, retry.status).await;
                    if !applied.retry || last {
                        applied.retry = false;
                        self.record(&retry.entry, applied).await;
                    }
                })
                .await;
        }
    }
}
