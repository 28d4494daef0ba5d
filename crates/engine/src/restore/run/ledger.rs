//! The ledger of a restore: every item's outcome counted, recorded in the results and
//! streamed to `restores/<name>/items.jsonl.zst`.

use super::*;

impl Run<'_> {
    pub(super) async fn record(&self, entry: &IndexEntry, applied: Applied) {
        if applied.retry {
            return; // decided in the retry pass
        }
        let target_ns = entry
            .namespace
            .as_deref()
            .map(|ns| self.transform.target_namespace(ns).to_string());
        if let Ok(mut counts) = self.counts.lock() {
            match applied.outcome {
                Outcome::Created => counts.created += 1,
                Outcome::Updated => counts.updated += 1,
                Outcome::Existing => counts.existing += 1,
                Outcome::Skipped => counts.skipped += 1,
                Outcome::Failed => counts.failed += 1,
            }
        }
        if let Ok(mut results) = self.results.lock() {
            let group = Some(target_ns.as_deref().unwrap_or_default()).filter(|ns| !ns.is_empty());
            if let Some(warning) = &applied.warning {
                results.warnings.add(group, warning.clone());
            }
            if applied.outcome == Outcome::Failed {
                if entry.namespace.is_none()
                    && entry.group_resource() == "namespaces"
                    && let Ok(mut failed) = self.failed_namespaces.lock()
                {
                    failed.insert(entry.name.clone());
                }
                let reason = applied.reason.clone().unwrap_or_default();
                self.log.error(reason.clone());
                results.errors.add(group, reason);
            }
        }
        self.progress.add_done(1);
        let _ = self
            .items
            .send(ItemRecord {
                resource: entry.group_resource(),
                namespace: entry.namespace.clone(),
                name: entry.name.clone(),
                target_namespace: target_ns.filter(|t| Some(t) != entry.namespace.as_ref()),
                outcome: applied.outcome,
                reason: applied.reason,
            })
            .await;
    }

    pub(super) fn warn(&self, namespace: &str, message: String) {
        self.log.warn(message.clone());
        if let Ok(mut results) = self.results.lock() {
            results.warnings.add(Some(namespace), message);
        }
    }
}
