//! Immutable backups (S3 Object Lock): until when a backup's objects are retained, and
//! whether a deletion must wait.

use jiff::{SignedDuration, Timestamp};

/// The retain-until date of every object of a backup that started at `started`: its
/// `expiration` (start + ttl), and not before `started + retain` (the location's minimum).
/// Rounded up to the second (S3 keeps whole seconds), so it never falls before either.
pub fn retain_until(
    started: Timestamp,
    expiration: Option<Timestamp>,
    retain: Option<std::time::Duration>,
) -> Timestamp {
    let minimum = retain
        .and_then(|r| SignedDuration::try_from(r).ok())
        .and_then(|r| started.checked_add(r).ok())
        .unwrap_or(started);
    let until = expiration.map_or(minimum, |e| e.max(minimum));
    if until.subsec_nanosecond() == 0 {
        return until;
    }
    Timestamp::from_second(until.as_second().saturating_add(1)).unwrap_or(until)
}

/// The latest of the objects' retain-until dates that is still ahead of `now`: the date a
/// deletion must wait for. None when no object is retained any more.
pub fn locked_until(
    retained_until: impl IntoIterator<Item = Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    retained_until.into_iter().filter(|u| *u > now).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn objects_are_retained_until_expiration_and_at_least_the_minimum() {
        let started = t("2026-11-27T10:00:00Z");
        let hour = std::time::Duration::from_secs(3600);
        // ttl 24h, no minimum: the expiration.
        assert_eq!(
            retain_until(started, Some(t("2026-11-28T10:00:00Z")), None),
            t("2026-11-28T10:00:00Z")
        );
        // A minimum longer than the ttl wins.
        assert_eq!(
            retain_until(
                started,
                Some(t("2026-11-27T11:00:00Z")),
                Some(30 * 24 * hour)
            ),
            t("2026-12-27T10:00:00Z")
        );
        // A minimum shorter than the ttl changes nothing.
        assert_eq!(
            retain_until(started, Some(t("2026-11-28T10:00:00Z")), Some(hour)),
            t("2026-11-28T10:00:00Z")
        );
        // No expiration: the minimum.
        assert_eq!(
            retain_until(started, None, Some(hour)),
            t("2026-11-27T11:00:00Z")
        );
        // Rounded up to the second, never down.
        assert_eq!(
            retain_until(t("2026-11-27T10:00:00.25Z"), None, Some(hour)),
            t("2026-11-27T11:00:01Z")
        );
    }

    #[test]
    fn a_deletion_waits_for_the_latest_retention_still_ahead() {
        let now = t("2026-11-27T10:00:00Z");
        assert_eq!(locked_until([], now), None);
        assert_eq!(
            locked_until([t("2026-11-27T09:00:00Z"), now], now),
            None,
            "past and ending now: nothing waits"
        );
        assert_eq!(
            locked_until(
                [
                    t("2026-11-27T09:00:00Z"),
                    t("2026-11-28T10:00:00Z"),
                    t("2026-11-27T11:00:00Z")
                ],
                now
            ),
            Some(t("2026-11-28T10:00:00Z"))
        );
    }
}
