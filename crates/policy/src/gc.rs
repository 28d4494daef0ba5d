//! Which backups garbage collection deletes: those past their expiration, except the newest
//! Completed backup of each schedule.

use std::collections::BTreeMap;

use arca_api::BackupPhase;
use jiff::Timestamp;

/// A Backup as garbage collection sees it.
#[derive(Clone, Debug)]
pub struct Expiring {
    pub name: String,
    /// The schedule that made it, if any.
    pub schedule: Option<String>,
    pub phase: BackupPhase,
    pub started: Option<Timestamp>,
    pub expiration: Option<Timestamp>,
}

/// Names of the backups to delete now.
pub fn expired(backups: &[Expiring], now: Timestamp) -> Vec<String> {
    let mut newest: BTreeMap<&str, (&Timestamp, &str)> = BTreeMap::new();
    for b in backups {
        let (Some(schedule), Some(started)) = (&b.schedule, &b.started) else {
            continue;
        };
        if b.phase != BackupPhase::Completed {
            continue;
        }
        let entry = newest.entry(schedule).or_insert((started, &b.name));
        if started > entry.0 {
            *entry = (started, &b.name);
        }
    }
    backups
        .iter()
        .filter(|b| b.phase.is_terminal())
        .filter(|b| b.expiration.is_some_and(|e| e <= now))
        .filter(|b| {
            b.schedule
                .as_deref()
                .and_then(|s| newest.get(s))
                .is_none_or(|(_, name)| *name != b.name)
        })
        .map(|b| b.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn b(
        name: &str,
        schedule: Option<&str>,
        phase: BackupPhase,
        started: &str,
        expires: &str,
    ) -> Expiring {
        Expiring {
            name: name.into(),
            schedule: schedule.map(str::to_string),
            phase,
            started: Some(t(started)),
            expiration: Some(t(expires)),
        }
    }

    #[test]
    fn expired_ones_go_but_the_newest_completed_of_a_schedule_stays() {
        let now = t("2026-11-26T12:00:00Z");
        let all = [
            b(
                "manual-old",
                None,
                BackupPhase::Completed,
                "2026-10-01T00:00:00Z",
                "2026-11-01T00:00:00Z",
            ),
            b(
                "manual-new",
                None,
                BackupPhase::Completed,
                "2026-11-25T00:00:00Z",
                "2026-12-25T00:00:00Z",
            ),
            b(
                "daily-1",
                Some("daily"),
                BackupPhase::Completed,
                "2026-11-20T00:00:00Z",
                "2026-11-21T00:00:00Z",
            ),
            b(
                "daily-2",
                Some("daily"),
                BackupPhase::Completed,
                "2026-11-21T00:00:00Z",
                "2026-11-22T00:00:00Z",
            ),
            b(
                "daily-3",
                Some("daily"),
                BackupPhase::Failed,
                "2026-11-22T00:00:00Z",
                "2026-11-23T00:00:00Z",
            ),
            b(
                "running",
                Some("daily"),
                BackupPhase::InProgress,
                "2026-11-22T00:00:00Z",
                "2026-11-23T00:00:00Z",
            ),
        ];
        assert_eq!(expired(&all, now), ["manual-old", "daily-1", "daily-3"]);
    }
}
