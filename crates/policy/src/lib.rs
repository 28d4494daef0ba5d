//! Arca's pure policies, apart from every controller that applies them:
//! - [`cadence`]: when a Schedule runs (5-field cron, descriptors, `@every`, time zones),
//! - [`schedule`]: whether a Schedule runs now, skips, or waits (no catch-up),
//! - [`retention`]: which backups `keepLast`/`keepDaily`/… keep, as restic's `forget`,
//! - [`gc`]: which expired backups are deleted,
//! - [`lock`]: object lock retain-until dates, and whether a deletion waits for them.

pub mod cadence;
pub mod gc;
pub mod lock;
pub mod retention;
pub mod schedule;

/// `<schedule>-YYYYMMDDhhmmss` (UTC): the name of a Backup made by a Schedule.
pub fn scheduled_backup_name(schedule: &str, at: jiff::Timestamp) -> String {
    format!("{schedule}-{}", at.strftime("%Y%m%d%H%M%S"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn backup_names_carry_the_utc_time() {
        let at: jiff::Timestamp = "2026-03-29T01:30:05Z".parse().expect("time");
        assert_eq!(
            super::scheduled_backup_name("nightly", at),
            "nightly-20260329013005"
        );
    }
}
