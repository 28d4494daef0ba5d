//! A duration written as Go and Velero write them: `30s`, `15m`, `1h30m`, `720h`.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration in Go's notation (`1h30m`, `90s`, `500ms`), as Velero's
/// `metav1.Duration` fields. Parsed on deserialization, so a bad value never gets in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration: write it like 30s, 15m, 1h30m or 720h")]
    Format(String),
    #[error("{0:?} is negative: a duration must be zero or more")]
    Negative(String),
}

impl Duration {
    pub const fn from_std(d: std::time::Duration) -> Self {
        Self(d)
    }
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
    pub const fn as_std(&self) -> std::time::Duration {
        self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.starts_with('-') {
            return Err(DurationError::Negative(s.to_string()));
        }
        let text = text.strip_prefix('+').unwrap_or(text);
        if text == "0" {
            return Ok(Self::default());
        }
        let bad = || DurationError::Format(s.to_string());
        if text.is_empty() {
            return Err(bad());
        }
        let mut nanos: u128 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let (number, tail) = rest.split_at(number_len);
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(bad()),
            };
            nanos += scaled(number, unit_nanos).ok_or_else(bad)?;
            rest = tail;
        }
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad())?;
        let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| bad())?;
        Ok(Self(std::time::Duration::new(secs, sub)))
    }
}

/// `number` (like `1.5`) times `unit_nanos`, or None when it is not a number.
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = whole.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in frac.chars() {
        scale /= 10;
        total += u128::from(digit.to_digit(10)?) * scale;
    }
    Some(total)
}

impl fmt::Display for Duration {
    /// Go's own formatting: `1h30m0s`, `45s`, `1.5s`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if total == 0 && nanos == 0 {
            return f.write_str("0s");
        }
        if total == 0 {
            return if nanos.is_multiple_of(1_000_000) {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos.is_multiple_of(1_000) {
                write!(f, "{}us", nanos / 1_000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if h > 0 || m > 0 {
            write!(f, "{m}m")?;
        }
        if nanos == 0 {
            write!(f, "{s}s")
        } else {
            let frac = format!("{nanos:09}");
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [
                {
                    "rule": "self.matches('^[-+]?(0|([0-9]*[.]?[0-9]+(ns|us|µs|ms|s|m|h))+)$')",
                    "message": "must be a duration such as 30s, 15m, 1h30m or 720h"
                },
                {
                    "rule": "!self.startsWith('-')",
                    "message": "must not be negative"
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<std::time::Duration, DurationError> {
        s.parse::<Duration>().map(|d| d.as_std())
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(
            parse("720h"),
            Ok(std::time::Duration::from_secs(720 * 3600))
        );
        assert_eq!(parse("1h30m"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(parse("1.5s"), Ok(std::time::Duration::from_millis(1500)));
        assert_eq!(parse("500ms"), Ok(std::time::Duration::from_millis(500)));
        assert_eq!(parse("0"), Ok(std::time::Duration::ZERO));
        assert_eq!(
            parse("2m3s4ms"),
            Ok(std::time::Duration::from_millis(123_004))
        );
        assert_eq!(parse(".5h"), Ok(std::time::Duration::from_secs(1800)));
    }

    #[test]
    fn refuses_garbage_and_negatives() {
        for bad in ["", "h", "5", "5x", "1h-3m", "1..2s", "abc", "."] {
            assert!(
                matches!(parse(bad), Err(DurationError::Format(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(parse("-1h"), Err(DurationError::Negative(_))));
        let message = parse("1 day")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("30s, 15m, 1h30m or 720h"), "{message}");
    }

    #[test]
    fn displays_like_go() {
        let show = |s: &str| s.parse::<Duration>().map(|d| d.to_string());
        assert_eq!(show("90m"), Ok("1h30m0s".into()));
        assert_eq!(show("45s"), Ok("45s".into()));
        assert_eq!(show("1.25s"), Ok("1.25s".into()));
        assert_eq!(show("250ms"), Ok("250ms".into()));
        assert_eq!(show("0s"), Ok("0s".into()));
        assert_eq!(show("720h"), Ok("720h0m0s".into()));
    }

    #[test]
    fn round_trips_through_json() -> Result<(), serde_json::Error> {
        let d: Duration = serde_json::from_str("\"1h\"")?;
        assert_eq!(serde_json::to_string(&d)?, "\"1h0m0s\"");
        assert!(serde_json::from_str::<Duration>("\"-5m\"").is_err());
        Ok(())
    }
}
