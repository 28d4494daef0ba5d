//! `results.json`: warnings and errors of a backup or restore, grouped as Velero groups them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// At most this many messages are kept per group; the rest are counted.
pub const MESSAGES_PER_GROUP: usize = 1000;

/// Messages of one severity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Messages {
    /// About Arca itself (storage, hooks that are not tied to a namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arca: Vec<String>,
    /// About cluster-scoped items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<String>,
    /// About items of each namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, Vec<String>>,
    /// Messages dropped past the per-group limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Messages {
    /// Records a message about `namespace` (None: cluster-scoped; Some(""): Arca itself).
    pub fn add(&mut self, namespace: Option<&str>, message: impl Into<String>) {
        let group = match namespace {
            None => &mut self.cluster,
            Some("") => &mut self.arca,
            Some(ns) => self.namespaces.entry(ns.to_string()).or_default(),
        };
        if group.len() < MESSAGES_PER_GROUP {
            group.push(message.into());
        } else {
            self.dropped += 1;
        }
    }

    /// How many messages were recorded, dropped ones included.
    pub fn count(&self) -> u64 {
        (self.arca.len()
            + self.cluster.len()
            + self.namespaces.values().map(Vec::len).sum::<usize>()) as u64
            + self.dropped
    }
}

/// Warnings and errors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    #[serde(default)]
    pub warnings: Messages,
    #[serde(default)]
    pub errors: Messages,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_bounds_messages() {
        let mut m = Messages::default();
        m.add(Some("app"), "a");
        m.add(None, "pv");
        m.add(Some(""), "store");
        for i in 0..MESSAGES_PER_GROUP + 5 {
            m.add(Some("noisy"), format!("{i}"));
        }
        assert_eq!(m.namespaces["app"], ["a"]);
        assert_eq!(m.cluster, ["pv"]);
        assert_eq!(m.arca, ["store"]);
        assert_eq!(m.namespaces["noisy"].len(), MESSAGES_PER_GROUP);
        assert_eq!(m.dropped, 5);
        assert_eq!(m.count(), 3 + MESSAGES_PER_GROUP as u64 + 5);
    }
}
