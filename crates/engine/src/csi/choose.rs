//! Which backed-up claims get a CSI snapshot, and with which VolumeSnapshotClass. Velero's
//! precedence: a pod volume copied by the node agent is not snapshotted too; a matching
//! resource policy decides next; then `snapshotVolumes` (unset means yes); only claims bound
//! to a CSI volume can be snapshotted.

use std::collections::BTreeMap;

use super::SnapshotClass;
use crate::backup::policies::VolumeAction;

/// Claim annotations naming the class, Velero's and Arca's.
pub const CLAIM_CLASS_ANNOTATIONS: [&str; 2] = [
    "velero.io/csi-volumesnapshot-class",
    "backup.arca.dev/csi-volumesnapshot-class",
];
/// Backup annotation prefixes naming the class of one driver: `<prefix>_<driver>`.
pub const BACKUP_CLASS_ANNOTATIONS: [&str; 2] = [
    "velero.io/csi-volumesnapshot-class",
    "backup.arca.dev/csi-volumesnapshot-class",
];
/// Class labels marking the class to use for its driver.
pub const CLASS_LABELS: [&str; 2] = [
    "velero.io/csi-volumesnapshot-class",
    "arca.dev/csi-volumesnapshot-class",
];
/// The external-snapshotter's default-class annotation.
pub const DEFAULT_CLASS_ANNOTATION: &str = "snapshot.storage.kubernetes.io/is-default-class";

/// What a backup knows of one claim it wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    /// The PersistentVolume it is bound to.
    pub volume: Option<String>,
    /// The CSI driver of that volume, when it is a CSI volume.
    pub driver: Option<String>,
}

/// How a claim's data is (not) backed up.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    /// A CSI snapshot, with this VolumeSnapshotClass.
    Snapshot { class: String },
    /// A pod mounting it has the volume's files copied by the node agent.
    FsBackup,
    /// No data is backed up, and nothing asked for it: why (for the log).
    NoData(String),
    /// A snapshot was wanted and cannot be taken: why. `error` when it was asked for
    /// explicitly (`snapshotVolumes: true`, a `snapshot` policy); a warning otherwise.
    Cannot { why: String, error: bool },
}

/// What decides, besides the claim.
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    /// The Backup's `snapshotVolumes`.
    pub snapshot_volumes: Option<bool>,
    /// The Backup's annotations (a class per driver).
    pub backup_annotations: &'a BTreeMap<String, String>,
    /// Every VolumeSnapshotClass of the cluster.
    pub classes: &'a [SnapshotClass],
}

/// The choice for `claim`: `copied_by_pod` when a pod volume mounting it is copied by the
/// node agent, `policy` the action of the first resource policy matching it.
pub fn choose(
    claim: &Claim,
    copied_by_pod: bool,
    policy: Option<VolumeAction>,
    asked: Asked<'_>,
) -> Choice {
    if copied_by_pod {
        return Choice::FsBackup;
    }
    let explicit = match policy {
        Some(VolumeAction::Skip) => {
            return Choice::NoData("skipped by the resource policy".into());
        }
        Some(VolumeAction::FsBackup) => {
            return Choice::NoData(
                "the resource policy asks for a file copy, and no backed-up pod mounts it".into(),
            );
        }
        Some(VolumeAction::Snapshot) => true,
        None if asked.snapshot_volumes == Some(false) => {
            return Choice::NoData("snapshotVolumes is false".into());
        }
        None => asked.snapshot_volumes == Some(true),
    };
    let Some(_) = &claim.volume else {
        return if explicit {
            Choice::Cannot {
                why: "it is not bound to a volume".into(),
                error: true,
            }
        } else {
            Choice::NoData("it is not bound to a volume".into())
        };
    };
    let Some(driver) = &claim.driver else {
        return if explicit {
            Choice::Cannot {
                why: "its volume is not a CSI volume: only CSI volumes can be snapshotted (opt the pod's volume in to a file copy instead)".into(),
                error: true,
            }
        } else {
            Choice::NoData("its volume is not a CSI volume".into())
        };
    };
    match class_for(claim, driver, asked) {
        Ok(class) => Choice::Snapshot { class },
        Err(why) => Choice::Cannot {
            why,
            error: explicit,
        },
    }
}

/// The VolumeSnapshotClass for `claim` of `driver`, or why there is none.
fn class_for(claim: &Claim, driver: &str, asked: Asked<'_>) -> Result<String, String> {
    let of_driver: Vec<&SnapshotClass> = asked
        .classes
        .iter()
        .filter(|c| c.driver == driver)
        .collect();
    let named = |name: &str, by: &str| -> Result<String, String> {
        match asked
            .classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
        {
            Some(c) if c.driver == driver => Ok(name.to_string()),
            Some(c) => Err(format!(
                "{by} names VolumeSnapshotClass {name}, which is for driver {}, not {driver}",
                c.driver
            )),
            None => Err(format!(
                "{by} names VolumeSnapshotClass {name}, which does not exist"
            )),
        }
    };
    for key in CLAIM_CLASS_ANNOTATIONS {
        if let Some(name) = claim.annotations.get(key) {
            return named(name, &format!("its annotation {key}"));
        }
    }
    for prefix in BACKUP_CLASS_ANNOTATIONS {
        let key = format!("{prefix}_{driver}");
        if let Some(name) = asked.backup_annotations.get(&key) {
            return named(name, &format!("the Backup's annotation {key}"));
        }
    }
    let one = |found: Vec<&SnapshotClass>, what: &str| -> Option<Result<String, String>> {
        match found.as_slice() {
            [] => None,
            [one] => Some(Ok(one.metadata.name.clone().unwrap_or_default())),
            several => Some(Err(format!(
                "driver {driver} has {} VolumeSnapshotClasses {what} ({}): keep it on one",
                several.len(),
                several
                    .iter()
                    .filter_map(|c| c.metadata.name.as_deref())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    };
    let labelled: Vec<&SnapshotClass> = of_driver
        .iter()
        .copied()
        .filter(|c| {
            let labels = c.metadata.labels.as_ref();
            CLASS_LABELS
                .iter()
                .any(|l| labels.and_then(|m| m.get(*l)).map(String::as_str) == Some("true"))
        })
        .collect();
    if let Some(found) = one(
        labelled,
        "labelled velero.io/csi-volumesnapshot-class: \"true\"",
    ) {
        return found;
    }
    let defaults: Vec<&SnapshotClass> = of_driver
        .iter()
        .copied()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|m| m.get(DEFAULT_CLASS_ANNOTATION))
                .map(String::as_str)
                == Some("true")
        })
        .collect();
    if let Some(found) = one(defaults, "marked default") {
        return found;
    }
    Err(format!(
        "driver {driver} has no VolumeSnapshotClass to use: label one `velero.io/csi-volumesnapshot-class: \"true\"` (or mark it `{DEFAULT_CLASS_ANNOTATION}: \"true\"`), name one in the claim's annotation velero.io/csi-volumesnapshot-class, or set snapshotVolumes: false"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, driver: &str, label: bool, default: bool) -> SnapshotClass {
        let mut c = SnapshotClass {
            driver: driver.into(),
            ..SnapshotClass::default()
        };
        c.metadata.name = Some(name.into());
        if label {
            c.metadata.labels = Some(BTreeMap::from([(CLASS_LABELS[0].into(), "true".into())]));
        }
        if default {
            c.metadata.annotations = Some(BTreeMap::from([(
                DEFAULT_CLASS_ANNOTATION.into(),
                "true".into(),
            )]));
        }
        c
    }

    fn csi_claim() -> Claim {
        Claim {
            namespace: "shop".into(),
            name: "data-0".into(),
            volume: Some("pvc-1".into()),
            driver: Some("disk.csi".into()),
            ..Claim::default()
        }
    }

    fn asked<'a>(
        snapshot_volumes: Option<bool>,
        annotations: &'a BTreeMap<String, String>,
        classes: &'a [SnapshotClass],
    ) -> Asked<'a> {
        Asked {
            snapshot_volumes,
            backup_annotations: annotations,
            classes,
        }
    }

    #[test]
    fn a_pod_copy_wins_then_the_policy_then_snapshot_volumes() {
        let none = BTreeMap::new();
        let classes = [class("fast", "disk.csi", false, true)];
        let claim = csi_claim();
        let a = asked(None, &none, &classes);
        assert_eq!(
            choose(&claim, true, Some(VolumeAction::Snapshot), a),
            Choice::FsBackup
        );
        assert!(matches!(
            choose(&claim, false, Some(VolumeAction::Skip), a),
            Choice::NoData(_)
        ));
        let off = asked(Some(false), &none, &classes);
        assert!(matches!(
            choose(&claim, false, None, off),
            Choice::NoData(_)
        ));
        assert_eq!(
            choose(&claim, false, Some(VolumeAction::Snapshot), off),
            Choice::Snapshot {
                class: "fast".into()
            }
        );
        assert_eq!(
            choose(&claim, false, None, a),
            Choice::Snapshot {
                class: "fast".into()
            }
        );
    }

    #[test]
    fn a_volume_that_cannot_be_snapshotted_is_an_error_only_when_asked_for() {
        let none = BTreeMap::new();
        let mut nfs = csi_claim();
        nfs.driver = None;
        assert!(matches!(
            choose(&nfs, false, None, asked(None, &none, &[])),
            Choice::NoData(_)
        ));
        assert!(matches!(
            choose(&nfs, false, None, asked(Some(true), &none, &[])),
            Choice::Cannot { error: true, .. }
        ));
        let claim = csi_claim();
        match choose(&claim, false, None, asked(None, &none, &[])) {
            Choice::Cannot { why, error: false } => {
                assert!(why.contains("no VolumeSnapshotClass"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            choose(&claim, false, None, asked(Some(true), &none, &[])),
            Choice::Cannot { error: true, .. }
        ));
    }

    #[test]
    fn the_class_comes_from_the_claim_then_the_backup_then_the_label_then_the_default() {
        let classes = [
            class("default", "disk.csi", false, true),
            class("labelled", "disk.csi", true, false),
            class("by-backup", "disk.csi", false, false),
            class("by-claim", "disk.csi", false, false),
            class("other-driver", "nfs.csi", true, true),
        ];
        let backup = BTreeMap::from([(
            "velero.io/csi-volumesnapshot-class_disk.csi".to_string(),
            "by-backup".to_string(),
        )]);
        let none = BTreeMap::new();
        let mut claim = csi_claim();
        let pick = |claim: &Claim, b: &BTreeMap<String, String>, classes: &[SnapshotClass]| {
            choose(claim, false, None, asked(None, b, classes))
        };
        assert_eq!(
            pick(&claim, &none, &classes),
            Choice::Snapshot {
                class: "labelled".into()
            }
        );
        assert_eq!(
            pick(&claim, &none, &[classes[0].clone(), classes[4].clone()]),
            Choice::Snapshot {
                class: "default".into()
            }
        );
        assert_eq!(
            pick(&claim, &backup, &classes),
            Choice::Snapshot {
                class: "by-backup".into()
            }
        );
        claim
            .annotations
            .insert(CLAIM_CLASS_ANNOTATIONS[0].into(), "by-claim".into());
        assert_eq!(
            pick(&claim, &backup, &classes),
            Choice::Snapshot {
                class: "by-claim".into()
            }
        );
        claim
            .annotations
            .insert(CLAIM_CLASS_ANNOTATIONS[0].into(), "other-driver".into());
        match pick(&claim, &none, &classes) {
            Choice::Cannot { why, .. } => assert!(why.contains("not disk.csi"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_default_classes_for_a_driver_are_named_not_guessed() {
        let classes = [
            class("a", "disk.csi", false, true),
            class("b", "disk.csi", false, true),
        ];
        let none = BTreeMap::new();
        match choose(&csi_claim(), false, None, asked(None, &none, &classes)) {
            Choice::Cannot { why, .. } => assert!(why.contains("a, b"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
