//! Status conditions (the Kubernetes API conventions' `type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`), set from a phase. Pure: the time is given.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_` to `ok` with `reason` and `message`. Its `lastTransitionTime`
/// moves only when its status changes.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Time,
) {
    let status = if ok { "True" } else { "False" };
    let since = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.chars().take(32_768).collect(),
        observed_generation: generation,
        last_transition_time: since,
    });
}

/// A status whose `Completed` condition follows from its phase (Backups, Restores).
pub trait CompletedByPhase {
    /// (holds, reason, message) of the `Completed` condition.
    fn completed(&self) -> (bool, String, String);
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
}

/// Sets the `Completed` condition of `status` from its phase.
pub fn set_completed<S: CompletedByPhase>(status: &mut S, generation: Option<i64>, now: Time) {
    let (ok, reason, message) = status.completed();
    set(
        status.conditions_mut(),
        "Completed",
        ok,
        &reason,
        &message,
        generation,
        now,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).expect("time"))
    }

    #[test]
    fn the_transition_time_moves_only_with_the_status() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            "Completed",
            false,
            "InProgress",
            "",
            Some(1),
            at(10),
        );
        set(
            &mut conditions,
            "Completed",
            false,
            "PartiallyFailed",
            "2 errors",
            Some(1),
            at(20),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason, "PartiallyFailed");
        assert_eq!(conditions[0].last_transition_time, at(10), "still False");
        set(
            &mut conditions,
            "Completed",
            true,
            "Completed",
            "",
            Some(2),
            at(30),
        );
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert_eq!(conditions[0].observed_generation, Some(2));
    }
}
