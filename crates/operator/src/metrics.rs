//! Prometheus metrics. Labels carry names and outcomes only: never Secret data.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduleLabels {
    /// The schedule that made the backup; empty for backups made by hand.
    pub schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LocationLabels {
    pub namespace: String,
    pub location: String,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub backups: Family<OutcomeLabels, Counter>,
    pub backup_duration: Histogram,
    pub backup_items: Counter,
    pub backup_bytes: Counter,
    pub backup_last_success: Family<ScheduleLabels, Gauge>,
    pub backups_in_progress: Gauge,
    pub restores: Family<OutcomeLabels, Counter>,
    pub restore_duration: Histogram,
    pub restore_items: Counter,
    pub location_available: Family<LocationLabels, Gauge>,
    pub leader: Gauge,
}

fn duration_buckets() -> Histogram {
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("arca");
        let m = Self {
            backups: Family::default(),
            backup_duration: duration_buckets(),
            backup_items: Counter::default(),
            backup_bytes: Counter::default(),
            backup_last_success: Family::default(),
            backups_in_progress: Gauge::default(),
            restores: Family::default(),
            restore_duration: duration_buckets(),
            restore_items: Counter::default(),
            location_available: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "backups",
            "Backups finished, by outcome (phase)",
            m.backups.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "Time from start to end of a backup",
            m.backup_duration.clone(),
        );
        registry.register(
            "backup_items",
            "Items written by backups",
            m.backup_items.clone(),
        );
        registry.register(
            "backup_bytes",
            "Compressed bytes of manifests written by backups",
            m.backup_bytes.clone(),
        );
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the last Completed backup of a schedule ended (schedule=\"\" for backups made by hand)",
            m.backup_last_success.clone(),
        );
        registry.register(
            "backups_in_progress",
            "Backups running now",
            m.backups_in_progress.clone(),
        );
        registry.register(
            "restores",
            "Restores finished, by outcome (phase)",
            m.restores.clone(),
        );
        registry.register(
            "restore_duration_seconds",
            "Time from start to end of a restore",
            m.restore_duration.clone(),
        );
        registry.register(
            "restore_items",
            "Items handled by restores",
            m.restore_items.clone(),
        );
        registry.register(
            "location_available",
            "1 when the last check of a BackupStorageLocation succeeded, else 0",
            m.location_available.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease and works, else 0",
            m.leader.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let m = Metrics::default();
        m.backups
            .get_or_create(&OutcomeLabels {
                outcome: "Completed".into(),
            })
            .inc();
        m.backup_last_success
            .get_or_create(&ScheduleLabels {
                schedule: "daily".into(),
            })
            .set(1_700_000_000);
        let text = m.render();
        assert!(
            text.contains("arca_backups_total{outcome=\"Completed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "arca_backup_last_success_timestamp_seconds{schedule=\"daily\"} 1700000000"
            ),
            "{text}"
        );
        assert!(text.contains("# EOF"));
    }
}
