//! When a Schedule runs: standard 5-field cron, the descriptors `@hourly`, `@daily`,
//! `@weekly`, `@monthly`, `@yearly` (and `@midnight`, `@annually`), or `@every <duration>`,
//! read in an IANA time zone (UTC by default).

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CadenceError {
    #[error(
        "schedule {0:?} is empty: write a cron expression such as \"0 3 * * *\" or \"@every 6h\""
    )]
    Empty(String),
    #[error(
        "schedule {expression:?} is not a valid cron expression ({detail}): use 5 fields, minute hour day-of-month month day-of-week, such as \"0 3 * * *\", or @hourly, @daily, @weekly, @monthly, @yearly, @every 6h"
    )]
    Cron { expression: String, detail: String },
    #[error("schedule {expression:?}: {detail}")]
    Every { expression: String, detail: String },
    #[error("timeZone {0:?} is not an IANA time zone name such as \"Europe/Paris\" or \"UTC\"")]
    TimeZone(String),
}

#[derive(Clone, Debug)]
enum Rule {
    Cron(Box<cron::Schedule>),
    Every(std::time::Duration),
}

/// A parsed `schedule` and `timeZone`.
#[derive(Clone, Debug)]
pub struct Cadence {
    rule: Rule,
    zone: Tz,
}

impl Cadence {
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Self, CadenceError> {
        let zone = match time_zone.map(str::trim).filter(|z| !z.is_empty()) {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| CadenceError::TimeZone(name.into()))?,
        };
        let text = expression.trim();
        if text.is_empty() {
            return Err(CadenceError::Empty(expression.into()));
        }
        let rule = if let Some(every) = text.strip_prefix("@every") {
            let every = every.trim();
            let duration: arca_api::Duration =
                every
                    .parse()
                    .map_err(|e: arca_api::DurationError| CadenceError::Every {
                        expression: expression.into(),
                        detail: e.to_string(),
                    })?;
            if duration.as_std() < std::time::Duration::from_secs(1) {
                return Err(CadenceError::Every {
                    expression: expression.into(),
                    detail: "the interval must be at least 1s".into(),
                });
            }
            Rule::Every(duration.as_std())
        } else {
            let six_fields = to_cron_crate(text).map_err(|detail| CadenceError::Cron {
                expression: expression.into(),
                detail,
            })?;
            let schedule =
                cron::Schedule::from_str(&six_fields).map_err(|e| CadenceError::Cron {
                    expression: expression.into(),
                    // The crate's message echoes its own six-field form: keep its explanation.
                    detail: e
                        .to_string()
                        .rsplit('^')
                        .next()
                        .unwrap_or("invalid")
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                })?;
            Rule::Cron(Box::new(schedule))
        };
        Ok(Self { rule, zone })
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
        match &self.rule {
            Rule::Every(interval) => after
                .checked_add(jiff::SignedDuration::try_from(*interval).ok()?)
                .ok(),
            Rule::Cron(schedule) => {
                let utc = Utc
                    .timestamp_opt(after.as_second(), after.subsec_nanosecond().max(0) as u32)
                    .single()?;
                let local = utc.with_timezone(&self.zone);
                let next = schedule.after(&local).next()?;
                jiff::Timestamp::from_second(next.timestamp()).ok()
            }
        }
    }

    /// The time zone the expression is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }
}

/// Turns a standard expression into the `cron` crate's (seconds first; days of week 1-7 from
/// Sunday). Descriptors pass through.
fn to_cron_crate(expression: &str) -> Result<String, String> {
    let descriptor = match expression {
        "@midnight" => Some("@daily"),
        "@annually" => Some("@yearly"),
        d @ ("@hourly" | "@daily" | "@weekly" | "@monthly" | "@yearly") => Some(d),
        _ => None,
    };
    if let Some(d) = descriptor {
        return Ok(d.to_string());
    }
    if expression.starts_with('@') {
        return Err(format!("unknown descriptor {expression}"));
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("it has {} fields, not 5", fields.len()));
    }
    let day_of_week = day_of_week_names(fields[4])?;
    Ok(format!(
        "0 {} {} {} {} {day_of_week}",
        fields[0], fields[1], fields[2], fields[3]
    ))
}

const DAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// Standard day-of-week numbers (0-7, 0 and 7 Sunday) as names, which both notations share.
fn day_of_week_names(field: &str) -> Result<String, String> {
    let number = |s: &str| -> Result<Option<usize>, String> {
        if s.chars().all(|c| c.is_ascii_digit()) {
            let n: usize = s.parse().map_err(|_| format!("bad day of week {s:?}"))?;
            if n > 7 {
                return Err(format!("day of week {n} is out of 0-7"));
            }
            Ok(Some(n))
        } else {
            Ok(None)
        }
    };
    let mut parts = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<usize>()
                        .map_err(|_| format!("bad step in {part:?}"))?,
                ),
            ),
            None => (part, None),
        };
        match (range.split_once('-'), step) {
            (None, None) => match number(range)? {
                Some(n) => parts.push(DAYS[n].to_string()),
                None => parts.push(range.to_string()),
            },
            (Some((a, b)), _) => match (number(a)?, number(b)?) {
                (Some(a), Some(b)) => {
                    if a > b {
                        return Err(format!("day-of-week range {part:?} runs backwards"));
                    }
                    let step = step.unwrap_or(1).max(1);
                    parts.extend((a..=b).step_by(step).map(|d| DAYS[d].to_string()));
                }
                _ => parts.push(part.to_string()),
            },
            (None, Some(_)) => parts.push(part.to_string()),
        }
    }
    parts.dedup();
    Ok(parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(expression: &str, zone: Option<&str>, after: &str) -> String {
        Cadence::parse(expression, zone)
            .expect("valid")
            .next_after(t(after))
            .map(|x| x.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn five_field_cron_in_utc() {
        assert_eq!(
            next("0 3 * * *", None, "2026-11-26T10:00:00Z"),
            "2026-11-27T03:00:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", None, "2026-11-26T10:07:00Z"),
            "2026-11-26T10:15:00Z"
        );
        assert_eq!(
            next("0 3 * * *", None, "2026-11-27T03:00:00Z"),
            "2026-11-28T03:00:00Z",
            "strictly after"
        );
    }

    #[test]
    fn days_of_week_are_standard() {
        // 2026-11-26 is a Thursday.
        assert_eq!(
            next("0 9 * * 1-5", None, "2026-11-27T10:00:00Z"),
            "2026-11-30T09:00:00Z",
            "Friday 10:00 -> Monday"
        );
        assert_eq!(
            next("0 9 * * 0", None, "2026-11-26T10:00:00Z"),
            "2026-11-29T09:00:00Z",
            "0 is Sunday"
        );
        assert_eq!(
            next("0 9 * * 7", None, "2026-11-26T10:00:00Z"),
            "2026-11-29T09:00:00Z",
            "7 is Sunday"
        );
        assert_eq!(
            next("0 9 * * 5-7", None, "2026-11-26T10:00:00Z"),
            "2026-11-27T09:00:00Z"
        );
        assert_eq!(
            next("0 9 * * SAT", None, "2026-11-26T10:00:00Z"),
            "2026-11-28T09:00:00Z"
        );
    }

    #[test]
    fn descriptors_and_every() {
        assert_eq!(
            next("@hourly", None, "2026-11-26T10:07:00Z"),
            "2026-11-26T11:00:00Z"
        );
        assert_eq!(
            next("@daily", None, "2026-11-26T10:07:00Z"),
            "2026-11-27T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", None, "2026-11-26T10:07:00Z"),
            "2026-11-29T00:00:00Z",
            "Sunday"
        );
        assert_eq!(
            next("@monthly", None, "2026-11-26T10:07:00Z"),
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", None, "2026-11-26T10:07:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@every 15s", None, "2026-11-26T10:07:00Z"),
            "2026-11-26T10:07:15Z"
        );
        assert_eq!(
            next("@every 1h30m", None, "2026-11-26T10:00:00Z"),
            "2026-11-26T11:30:00Z"
        );
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        assert_eq!(
            next("0 3 * * *", Some("Europe/Paris"), "2026-11-26T10:00:00Z"),
            "2026-11-27T02:00:00Z",
            "03:00 CET"
        );
        assert_eq!(
            next("0 3 * * *", Some("Europe/Paris"), "2026-07-01T10:00:00Z"),
            "2026-07-02T01:00:00Z",
            "03:00 CEST"
        );
        // 2026-03-29: Paris skips 02:00-03:00. 02:30 does not exist that day: it is not run.
        assert_eq!(
            next("30 2 * * *", Some("Europe/Paris"), "2026-03-28T12:00:00Z"),
            "2026-03-30T00:30:00Z"
        );
        // 2026-10-25: 02:30 happens twice in Paris; it runs once.
        let first = next("30 2 * * *", Some("Europe/Paris"), "2026-10-24T12:00:00Z");
        assert_eq!(first, "2026-10-25T00:30:00Z");
        assert_eq!(
            next("30 2 * * *", Some("Europe/Paris"), &first),
            "2026-10-26T01:30:00Z",
            "not again an hour later"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |e: &str, z: Option<&str>| Cadence::parse(e, z).expect_err("invalid").to_string();
        assert!(err("0 3 * *", None).contains("it has 4 fields, not 5"));
        assert!(err("61 3 * * *", None).contains("not a valid cron expression"));
        assert!(err("0 3 * * 8", None).contains("day of week 8 is out of 0-7"));
        assert!(err("@fortnightly", None).contains("unknown descriptor"));
        assert!(err("@every soon", None).contains("is not a duration"));
        assert!(err("@every 0s", None).contains("at least 1s"));
        assert!(err("", None).contains("is empty"));
        assert_eq!(
            err("0 3 * * *", Some("Mars/Olympus")),
            "timeZone \"Mars/Olympus\" is not an IANA time zone name such as \"Europe/Paris\" or \"UTC\""
        );
    }
}
