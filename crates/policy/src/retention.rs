//! Which backups of a schedule its `retention` keeps, with restic's `forget` rules: keep the
//! newest N; keep the newest backup of each of the last N hours, days, weeks (ISO), months,
//! years that have one. A backup kept by any rule is kept. The newest Completed backup is
//! always kept.

use std::collections::BTreeSet;

use arca_api::Retention;
use chrono::{Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use jiff::Timestamp;

/// A backup of the schedule that holds data (Completed or PartiallyFailed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub name: String,
    /// When it started.
    pub time: Timestamp,
    /// Completed (not PartiallyFailed).
    pub completed: bool,
}

/// The names `retention` lets go, oldest first. No rule at all keeps everything.
pub fn to_forget(backups: &[Kept], retention: &Retention, zone: Tz) -> Vec<String> {
    let rules = [
        retention.keep_hourly,
        retention.keep_daily,
        retention.keep_weekly,
        retention.keep_monthly,
        retention.keep_yearly,
    ];
    if retention.keep_last.is_none() && rules.iter().all(Option::is_none) {
        return Vec::new();
    }
    let mut newest_first: Vec<&Kept> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    if let Some(newest) = newest_first.iter().find(|b| b.completed) {
        keep.insert(&newest.name);
    }
    for b in newest_first
        .iter()
        .take(retention.keep_last.unwrap_or(0) as usize)
    {
        keep.insert(&b.name);
    }
    for (rule, count) in rules.iter().enumerate() {
        let Some(count) = count else { continue };
        let mut last_bucket = None;
        let mut used = 0;
        for b in &newest_first {
            if used >= *count {
                break;
            }
            let bucket = bucket_of(b.time, zone, rule);
            if last_bucket != Some(bucket) {
                keep.insert(&b.name);
                last_bucket = Some(bucket);
                used += 1;
            }
        }
    }
    let mut forget: Vec<&&Kept> = newest_first
        .iter()
        .filter(|b| !keep.contains(b.name.as_str()))
        .collect();
    forget.sort_by_key(|b| b.time);
    forget.into_iter().map(|b| b.name.clone()).collect()
}

/// The hour, day, ISO week, month or year (rule 0..=4) of a time, in `zone`.
fn bucket_of(time: Timestamp, zone: Tz, rule: usize) -> (i32, u32, u32, u32) {
    let local = Utc
        .timestamp_opt(time.as_second(), 0)
        .single()
        .unwrap_or_default()
        .with_timezone(&zone);
    match rule {
        0 => (local.year(), local.ordinal(), local.hour(), 0),
        1 => (local.year(), local.ordinal(), 0, 0),
        2 => (local.iso_week().year(), local.iso_week().week(), 0, 0),
        3 => (local.year(), local.month(), 0, 0),
        _ => (local.year(), 0, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backups(times: &[&str]) -> Vec<Kept> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| Kept {
                name: format!("b{i}"),
                time: t.parse().expect("time"),
                completed: true,
            })
            .collect()
    }

    #[test]
    fn keep_last() {
        let b = backups(&[
            "2026-11-26T01:00:00Z",
            "2026-11-26T02:00:00Z",
            "2026-11-26T03:00:00Z",
            "2026-11-26T04:00:00Z",
        ]);
        let r = Retention {
            keep_last: Some(2),
            ..Default::default()
        };
        assert_eq!(to_forget(&b, &r, Tz::UTC), ["b0", "b1"]);
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_day() {
        let b = backups(&[
            "2026-11-24T01:00:00Z",
            "2026-11-24T23:00:00Z",
            "2026-11-25T05:00:00Z",
            "2026-11-25T06:00:00Z",
            "2026-11-26T01:00:00Z",
        ]);
        let r = Retention {
            keep_daily: Some(2),
            ..Default::default()
        };
        assert_eq!(
            to_forget(&b, &r, Tz::UTC),
            ["b0", "b1", "b2"],
            "b4 (26th) and b3 (newest of the 25th)"
        );
        // In Paris, 2026-11-24T23:00Z is already the 25th.
        let paris: Tz = "Europe/Paris".parse().expect("zone");
        assert_eq!(to_forget(&b, &r, paris), ["b0", "b1", "b2"]);
        let r3 = Retention {
            keep_daily: Some(3),
            ..Default::default()
        };
        assert_eq!(to_forget(&b, &r3, Tz::UTC), ["b0", "b2"]);
        // In Paris b1 (23:00Z) falls on the 25th with b2 and b3, and b0 on the 24th.
        assert_eq!(to_forget(&b, &r3, paris), ["b1", "b2"]);
    }

    #[test]
    fn rules_add_up_and_weeks_months_years_work() {
        let b = backups(&[
            "2025-12-31T12:00:00Z",
            "2026-01-15T12:00:00Z",
            "2026-02-01T12:00:00Z",
            "2026-11-23T12:00:00Z",
            "2026-11-26T12:00:00Z",
        ]);
        let r = Retention {
            keep_last: Some(1),
            keep_weekly: Some(2),
            keep_monthly: Some(3),
            keep_yearly: Some(2),
            ..Default::default()
        };
        // last: b4; weekly: b4 (2026-W48; b3 shares it), b2 (W05); monthly: b4 (Nov), b2 (Feb),
        // b1 (Jan); yearly: b4 (2026), b0 (2025). Only b3 is kept by no rule.
        assert_eq!(to_forget(&b, &r, Tz::UTC), ["b3"]);
        let weekly = Retention {
            keep_weekly: Some(1),
            ..Default::default()
        };
        assert_eq!(to_forget(&b, &weekly, Tz::UTC), ["b0", "b1", "b2", "b3"]);
    }

    #[test]
    fn the_newest_completed_backup_is_always_kept() {
        let mut b = backups(&["2026-11-25T01:00:00Z", "2026-11-26T01:00:00Z"]);
        b[1].completed = false; // the newest only PartiallyFailed
        let r = Retention {
            keep_hourly: Some(0),
            keep_last: Some(0),
            ..Default::default()
        };
        assert_eq!(
            to_forget(&b, &r, Tz::UTC),
            ["b1"],
            "b0 is the newest Completed"
        );
    }

    #[test]
    fn no_rules_keep_everything() {
        let b = backups(&["2026-11-25T01:00:00Z", "2026-11-26T01:00:00Z"]);
        assert!(to_forget(&b, &Retention::default(), Tz::UTC).is_empty());
    }
}
