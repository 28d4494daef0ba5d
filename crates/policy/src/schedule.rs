//! Whether a Schedule backs up now, skips, or waits. No catch-up: however long the operator
//! was away, a due schedule makes one backup, then counts from now.

use jiff::Timestamp;

use crate::cadence::Cadence;

/// What the controller knows of a Schedule.
#[derive(Clone, Debug, Default)]
pub struct ScheduleState {
    pub now: Timestamp,
    /// When the Schedule was created.
    pub created: Timestamp,
    pub paused: bool,
    pub skip_immediately: bool,
    pub last_backup: Option<Timestamp>,
    pub last_skipped: Option<Timestamp>,
    /// It was paused when last handled and is not any more.
    pub resumed: bool,
    /// A backup of this schedule is New or InProgress.
    pub in_flight: bool,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Paused: nothing runs, no next run.
    Paused,
    /// Back up now; the next run after that.
    Run { next: Option<Timestamp> },
    /// Due, but the previous backup has not finished: record the skip.
    Skip { next: Option<Timestamp> },
    /// Unpaused with `skipImmediately`: record a skip now, wait for the next run.
    Resume { next: Option<Timestamp> },
    /// Not due until `next`.
    Wait { next: Timestamp },
}

pub fn decide(cadence: &Cadence, s: &ScheduleState) -> Decision {
    if s.paused {
        return Decision::Paused;
    }
    if s.resumed && s.skip_immediately {
        return Decision::Resume {
            next: cadence.next_after(s.now),
        };
    }
    let anchor = match (s.last_backup, s.last_skipped) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let due = match anchor {
        Some(anchor) => cadence.next_after(anchor),
        None if s.skip_immediately => cadence.next_after(s.created),
        None => Some(s.created),
    };
    let Some(due) = due else {
        return Decision::Paused;
    };
    if s.now < due {
        return Decision::Wait { next: due };
    }
    let next = cadence.next_after(s.now);
    if s.in_flight {
        Decision::Skip { next }
    } else {
        Decision::Run { next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn hourly() -> Cadence {
        Cadence::parse("@hourly", None).expect("valid")
    }

    fn state(now: &str) -> ScheduleState {
        ScheduleState {
            now: t(now),
            created: t("2026-11-26T10:10:00Z"),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_schedule_backs_up_at_once_unless_told_to_wait() {
        let d = decide(&hourly(), &state("2026-11-26T10:10:01Z"));
        assert_eq!(
            d,
            Decision::Run {
                next: Some(t("2026-11-26T11:00:00Z"))
            }
        );
        let wait = ScheduleState {
            skip_immediately: true,
            ..state("2026-11-26T10:10:01Z")
        };
        assert_eq!(
            decide(&hourly(), &wait),
            Decision::Wait {
                next: t("2026-11-26T11:00:00Z")
            }
        );
    }

    #[test]
    fn waits_then_runs_when_due() {
        let s = ScheduleState {
            last_backup: Some(t("2026-11-26T10:10:01Z")),
            ..state("2026-11-26T10:30:00Z")
        };
        assert_eq!(
            decide(&hourly(), &s),
            Decision::Wait {
                next: t("2026-11-26T11:00:00Z")
            }
        );
        let due = ScheduleState {
            now: t("2026-11-26T11:00:00Z"),
            ..s
        };
        assert_eq!(
            decide(&hourly(), &due),
            Decision::Run {
                next: Some(t("2026-11-26T12:00:00Z"))
            }
        );
    }

    #[test]
    fn no_catch_up_after_downtime() {
        // Down for three days: one backup now, the next at the next hour.
        let s = ScheduleState {
            last_backup: Some(t("2026-11-23T10:00:00Z")),
            ..state("2026-11-26T10:42:00Z")
        };
        assert_eq!(
            decide(&hourly(), &s),
            Decision::Run {
                next: Some(t("2026-11-26T11:00:00Z"))
            }
        );
        let after = ScheduleState {
            last_backup: Some(t("2026-11-26T10:42:00Z")),
            ..s
        };
        assert_eq!(
            decide(&hourly(), &after),
            Decision::Wait {
                next: t("2026-11-26T11:00:00Z")
            }
        );
    }

    #[test]
    fn skips_while_the_previous_backup_runs() {
        let s = ScheduleState {
            last_backup: Some(t("2026-11-26T10:00:00Z")),
            in_flight: true,
            ..state("2026-11-26T11:00:01Z")
        };
        assert_eq!(
            decide(&hourly(), &s),
            Decision::Skip {
                next: Some(t("2026-11-26T12:00:00Z"))
            }
        );
        let recorded = ScheduleState {
            last_skipped: Some(t("2026-11-26T11:00:01Z")),
            in_flight: false,
            ..s
        };
        assert_eq!(
            decide(&hourly(), &recorded),
            Decision::Wait {
                next: t("2026-11-26T12:00:00Z")
            },
            "counts from the skip"
        );
    }

    #[test]
    fn pause_and_unpause() {
        let paused = ScheduleState {
            paused: true,
            last_backup: Some(t("2026-11-26T10:00:00Z")),
            ..state("2026-11-26T12:30:00Z")
        };
        assert_eq!(decide(&hourly(), &paused), Decision::Paused);
        let resumed = ScheduleState {
            paused: false,
            resumed: true,
            ..paused.clone()
        };
        assert_eq!(
            decide(&hourly(), &resumed),
            Decision::Run {
                next: Some(t("2026-11-26T13:00:00Z"))
            },
            "due: runs"
        );
        let quiet = ScheduleState {
            skip_immediately: true,
            ..resumed
        };
        assert_eq!(
            decide(&hourly(), &quiet),
            Decision::Resume {
                next: Some(t("2026-11-26T13:00:00Z"))
            }
        );
    }

    #[test]
    fn every_counts_from_the_last_run() {
        let every = Cadence::parse("@every 15s", None).expect("valid");
        let s = ScheduleState {
            last_backup: Some(t("2026-11-26T10:00:00Z")),
            ..state("2026-11-26T10:00:10Z")
        };
        assert_eq!(
            decide(&every, &s),
            Decision::Wait {
                next: t("2026-11-26T10:00:15Z")
            }
        );
    }
}
