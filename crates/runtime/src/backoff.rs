//! How long a controller waits before trying an object again after its reconcile failed:
//! 5 s, doubling with each consecutive failure of that object, at most 5 minutes; forgotten
//! when a reconcile of it succeeds. A broken apiserver or store is not hammered, and one
//! failing object does not slow the others.

use std::{collections::HashMap, sync::Mutex, time::Duration};

const FIRST: Duration = Duration::from_secs(5);
const MOST: Duration = Duration::from_secs(300);

/// The wait after `failures` consecutive failures (1 or more).
pub fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST.saturating_mul(1 << doublings).min(MOST)
}

/// Consecutive failures per object (`controller/namespace/name`).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key`; returns how long to wait before the next try.
    pub fn failed(&self, key: &str) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return MOST;
        };
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        delay(*n)
    }

    /// `key` reconciled: its next failure starts from the first delay again.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

/// The key of an object of `controller`.
pub fn key<K: kube::Resource>(controller: &str, object: &K) -> String {
    format!(
        "{controller}/{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_five_minutes_and_reset_on_success() {
        let secs: Vec<u64> = (1..=9).map(|n| delay(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(delay(u32::MAX), MOST);
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("b/ns/x").as_secs(), 5);
        assert_eq!(backoff.failed("b/ns/x").as_secs(), 10);
        assert_eq!(backoff.failed("b/ns/y").as_secs(), 5, "per object");
        backoff.succeeded("b/ns/x");
        assert_eq!(backoff.failed("b/ns/x").as_secs(), 5);
    }
}
