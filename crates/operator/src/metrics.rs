//! Prometheus metrics. Labels carry names and outcomes only: never Secret data.

use std::{collections::BTreeSet, sync::Mutex};

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

/// One Schedule.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ScheduleKey {
    pub namespace: String,
    pub schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
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
    /// Reconciles that ended in an error, per controller.
    pub reconcile_failures: Family<ControllerLabels, Counter>,
    /// Per enabled schedule: when its newest Completed backup finished (absent until one has).
    schedule_last_success: Family<ScheduleKey, Gauge>,
    /// Per enabled schedule: when it was created (what "no success yet" is measured from).
    schedule_created: Family<ScheduleKey, Gauge>,
    /// The schedules with series, so deleted and paused ones can be dropped.
    schedules_published: Mutex<BTreeSet<ScheduleKey>>,
    /// The sample names of every family (`arca_backups_total`, ...), for tests and docs.
    names: Vec<String>,
}

fn duration_buckets() -> Histogram {
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("arca");
        let mut names = Vec::new();
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
            reconcile_failures: Family::default(),
            schedule_last_success: Family::default(),
            schedule_created: Family::default(),
            schedules_published: Mutex::default(),
            names: Vec::new(),
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
            "reconcile_failures",
            "Reconciles that ended in an error (retried with backoff), by controller",
            m.reconcile_failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease and works, else 0",
            m.leader.clone(),
        );
        registry.register(
            "schedule_last_success_timestamp_seconds",
            "When the newest Completed backup of an enabled schedule finished (absent until it has one)",
            m.schedule_last_success.clone(),
        );
        registry.register(
            "schedule_created_timestamp_seconds",
            "When an enabled schedule was created (paused and deleted schedules have no series)",
            m.schedule_created.clone(),
        );
        names.push("arca_backups_total".to_string());
        names.push("arca_backup_duration_seconds".to_string());
        names.push("arca_backup_items_total".to_string());
        names.push("arca_backup_bytes_total".to_string());
        names.push("arca_backup_last_success_timestamp_seconds".to_string());
        names.push("arca_backups_in_progress".to_string());
        names.push("arca_restores_total".to_string());
        names.push("arca_restore_duration_seconds".to_string());
        names.push("arca_restore_items_total".to_string());
        names.push("arca_location_available".to_string());
        names.push("arca_reconcile_failures_total".to_string());
        names.push("arca_leader".to_string());
        names.push("arca_schedule_last_success_timestamp_seconds".to_string());
        names.push("arca_schedule_created_timestamp_seconds".to_string());
        Self {
            registry,
            names,
            ..m
        }
    }
}

impl Metrics {
    /// The sample names of every family the operator exports (counters with `_total`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Publishes an enabled schedule: its creation and, once it has one, its last success.
    pub fn publish_schedule(&self, key: ScheduleKey, created: i64, last_success: Option<i64>) {
        self.schedule_created.get_or_create(&key).set(created);
        match last_success {
            Some(at) => {
                self.schedule_last_success.get_or_create(&key).set(at);
            }
            None => {
                self.schedule_last_success.remove(&key);
            }
        }
        if let Ok(mut published) = self.schedules_published.lock() {
            published.insert(key);
        }
    }

    /// Drops the series of a schedule that is paused, invalid or gone.
    pub fn forget_schedule(&self, key: &ScheduleKey) {
        self.schedule_created.remove(key);
        self.schedule_last_success.remove(key);
        if let Ok(mut published) = self.schedules_published.lock() {
            published.remove(key);
        }
    }

    /// Drops the series of every published schedule `exists` says is gone.
    pub fn retain_schedules(&self, exists: impl Fn(&ScheduleKey) -> bool) {
        let gone: Vec<ScheduleKey> = match self.schedules_published.lock() {
            Ok(published) => published.iter().filter(|k| !exists(k)).cloned().collect(),
            Err(_) => return,
        };
        for key in &gone {
            self.forget_schedule(key);
        }
    }

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

    #[test]
    fn names_are_the_exported_families() {
        let m = Metrics::default();
        let o = OutcomeLabels {
            outcome: "Completed".into(),
        };
        m.backups.get_or_create(&o).inc();
        m.backup_duration.observe(1.0);
        m.backup_items.inc();
        m.backup_bytes.inc();
        m.backup_last_success
            .get_or_create(&ScheduleLabels {
                schedule: String::new(),
            })
            .set(1);
        m.backups_in_progress.set(1);
        m.restores.get_or_create(&o).inc();
        m.restore_duration.observe(1.0);
        m.restore_items.inc();
        m.location_available
            .get_or_create(&LocationLabels {
                namespace: "n".into(),
                location: "l".into(),
            })
            .set(1);
        m.leader.set(1);
        m.reconcile_failures
            .get_or_create(&ControllerLabels {
                controller: "backup".into(),
            })
            .inc();
        let key = ScheduleKey {
            namespace: "n".into(),
            schedule: "s".into(),
        };
        m.publish_schedule(key, 1, Some(2));
        let text = m.render();
        let families: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| {
                let (name, kind) = l.split_once(' ')?;
                Some(if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_string()
                })
            })
            .collect();
        let names: BTreeSet<String> = m.names().iter().cloned().collect();
        assert_eq!(families, names);
    }

    #[test]
    fn schedules_publish_and_are_forgotten() {
        let m = Metrics::default();
        let key = |s: &str| ScheduleKey {
            namespace: "ns".into(),
            schedule: s.into(),
        };
        m.publish_schedule(key("new"), 100, None);
        m.publish_schedule(key("ok"), 100, Some(200));
        let text = m.render();
        assert!(
            text.contains(
                "arca_schedule_created_timestamp_seconds{namespace=\"ns\",schedule=\"new\"} 100"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "arca_schedule_last_success_timestamp_seconds{namespace=\"ns\",schedule=\"ok\"} 200"
            ),
            "{text}"
        );
        assert!(
            !text.contains(
                "arca_schedule_last_success_timestamp_seconds{namespace=\"ns\",schedule=\"new\"}"
            ),
            "{text}"
        );
        m.retain_schedules(|k| k.schedule == "new");
        let text = m.render();
        assert!(!text.contains("schedule=\"ok\""), "{text}");
        m.forget_schedule(&key("new"));
        assert!(!m.render().contains("schedule=\"new\""));
    }
}
