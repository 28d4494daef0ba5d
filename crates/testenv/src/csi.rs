//! The real node's CSI stack (`CSI=1`, `arca-testenv up --node real --csi`): our own hostpath
//! driver (`hack/testenv/csi-hostpath`) and Kubernetes' sidecars (external-provisioner,
//! external-snapshotter's snapshot-controller and csi-snapshotter), all host processes that
//! `hack/testenv/node.sh` starts in the node's namespaces; the snapshot CRDs and the
//! cluster's objects for them (CSIDriver, StorageClass, VolumeSnapshotClass) applied here.
//!
//! The objects and CRDs go in before the processes start: the snapshot controller exits when
//! the CRDs are missing, and the provisioner looks for them once, at start. `up` returns when
//! kubelet lists the driver in the node's CSINode (it registered and answered NodeGetInfo)
//! and every process still runs.

use std::path::{Path, PathBuf};

use k8s_openapi::{
    api::storage::v1::{CSIDriver, CSINode, StorageClass},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::wait::Condition,
};

use crate::{TestenvError, error::io, node::REAL_NODE_NAME};

/// The driver's name: the CSIDriver's, the StorageClass's provisioner, the snapshot class's
/// driver.
pub const CSI_DRIVER: &str = "hostpath.csi.arca.dev";
/// The StorageClass of the driver (WaitForFirstConsumer, reclaim policy Delete).
pub const CSI_STORAGE_CLASS: &str = "csi-hostpath";
/// The node label (a CSI topology segment the driver reports, kubelet sets it) saying which
/// node holds the driver's volumes: the real node (`hack/testenv/csi-hostpath/main.go`).
pub const CSI_TOPOLOGY_KEY: &str = "topology.hostpath.csi.arca.dev/node";
/// The default VolumeSnapshotClass of the driver (deletion policy Delete).
pub const CSI_SNAPSHOT_CLASS: &str = "csi-hostpath-snapclass";
/// A VolumeSnapshotClass parameter for the fault tests: with `"true"`, every snapshot of
/// the class stays not ready to use.
pub const CSI_NEVER_READY_PARAMETER: &str = "arca.dev/test-never-ready";

/// The snapshot CRDs, as `build.sh` copies them from external-snapshotter's client module.
const CRDS: [&str; 3] = [
    "volumesnapshotclasses",
    "volumesnapshotcontents",
    "volumesnapshots",
];
/// The host processes of the stack, by the name of their pid file and log.
const PROCESSES: [&str; 4] = [
    "csi-hostpath",
    "csi-provisioner",
    "csi-snapshotter",
    "snapshot-controller",
];

/// The CSI stack of an environment started with `CSI=1`; written to `testenv.env`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csi {
    /// The driver's name (`CSI_DRIVER`).
    pub driver: String,
    /// Its StorageClass (`CSI_STORAGE_CLASS`).
    pub storage_class: String,
    /// Its default VolumeSnapshotClass (`CSI_SNAPSHOT_CLASS`).
    pub snapshot_class: String,
    /// The driver's state (`CSI_STATE_DIR`): `volumes/<volume handle>/` and
    /// `snapshots/<snapshot handle>.tar`.
    pub state_dir: PathBuf,
}

impl Csi {
    pub(crate) fn new(state_dir: PathBuf) -> Self {
        Self {
            driver: CSI_DRIVER.into(),
            storage_class: CSI_STORAGE_CLASS.into(),
            snapshot_class: CSI_SNAPSHOT_CLASS.into(),
            state_dir,
        }
    }

    /// The tar that holds the data of the snapshot whose handle (a VolumeSnapshotContent's
    /// `status.snapshotHandle`) is `handle`.
    pub fn snapshot_file(&self, handle: &str) -> PathBuf {
        self.state_dir
            .join("snapshots")
            .join(format!("{handle}.tar"))
    }

    /// The folder that holds the data of the volume whose handle (a PersistentVolume's
    /// `spec.csi.volumeHandle`) is `handle`.
    pub fn volume_dir(&self, handle: &str) -> PathBuf {
        self.state_dir.join("volumes").join(handle)
    }
}

/// Where the snapshot CRDs are in the component cache (`<cache>/csi/crds`, next to `bin`).
fn crds_dir(bin: &Path) -> PathBuf {
    bin.parent().unwrap_or(bin).join("csi/crds")
}

fn crd_file(bin: &Path, plural: &str) -> PathBuf {
    crds_dir(bin).join(format!("snapshot.storage.k8s.io_{plural}.yaml"))
}

/// The stack's binaries and CRDs, which `build.sh` makes.
pub(crate) fn check_built(bin: &Path) -> Result<(), TestenvError> {
    let binaries = [
        "arca-csi-hostpath",
        "csi-provisioner",
        "csi-snapshotter",
        "snapshot-controller",
    ]
    .map(|b| bin.join(b));
    let crds = CRDS.map(|plural| crd_file(bin, plural));
    for path in binaries.iter().chain(crds.iter()) {
        if !path.is_file() {
            return Err(TestenvError::Missing {
                program: path.display().to_string(),
                hint: "run hack/testenv/build.sh (it builds the CSI driver and sidecars and \
                       copies the snapshot CRDs)"
                    .into(),
            });
        }
    }
    Ok(())
}

/// The snapshot CRDs (until Established), then the CSIDriver, StorageClass and
/// VolumeSnapshotClass. `kubectl` is the environment's, pointed at it.
pub(crate) async fn install(
    client: &Client,
    mut kubectl: std::process::Command,
    bin: &Path,
    log: &Path,
) -> Result<(), TestenvError> {
    let dir = crds_dir(bin);
    let out = kubectl
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(&dir)
        .output()
        .map_err(io("kubectl"))?;
    if !out.status.success() {
        return Err(TestenvError::Command {
            command: format!("kubectl apply --server-side -f {}", dir.display()),
            code: out.status.code(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let established = || async {
        for plural in CRDS {
            let crd = crds
                .get_opt(&format!("{plural}.snapshot.storage.k8s.io"))
                .await
                .ok()?;
            kube::runtime::wait::conditions::is_crd_established()
                .matches_object(crd.as_ref())
                .then_some(())?;
        }
        Some(())
    };
    crate::cluster::wait_for("the snapshot CRDs to be Established", 60, log, established).await?;

    let apply = PatchParams::apply("arca-testenv").force();
    let driver = serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": CSI_DRIVER},
        "spec": {
            // No ControllerPublish: a volume is a folder on the node, nothing to attach.
            "attachRequired": false,
            "podInfoOnMount": true,
            "volumeLifecycleModes": ["Persistent"]
        }
    });
    Api::<CSIDriver>::all(client.clone())
        .patch(CSI_DRIVER, &apply, &Patch::Apply(&driver))
        .await?;
    let class = serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CSI_STORAGE_CLASS},
        "provisioner": CSI_DRIVER,
        // The scheduler picks the node first; the provisioner then makes the volume there.
        "volumeBindingMode": "WaitForFirstConsumer",
        // Only the real node holds the driver's volumes: the scheduler keeps a pod of an
        // unbound claim off the kwok nodes (their pods, node agents included, are pretend),
        // as a zonal class keeps pods in its zones.
        "allowedTopologies": [{"matchLabelExpressions": [
            {"key": CSI_TOPOLOGY_KEY, "values": [REAL_NODE_NAME]}
        ]}],
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": false
    });
    Api::<StorageClass>::all(client.clone())
        .patch(CSI_STORAGE_CLASS, &apply, &Patch::Apply(&class))
        .await?;
    let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "volumesnapshotclasses");
    let snapshot_class = serde_json::json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {
            "name": CSI_SNAPSHOT_CLASS,
            "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}
        },
        "driver": CSI_DRIVER,
        "deletionPolicy": "Delete"
    });
    Api::<DynamicObject>::all_with(client.clone(), &resource)
        .patch(CSI_SNAPSHOT_CLASS, &apply, &Patch::Apply(&snapshot_class))
        .await?;
    Ok(())
}

/// Waits until kubelet lists the driver in the real node's CSINode, with every process of
/// the stack running; fails at once, with their logs' last errors, when one has exited.
pub(crate) async fn wait_ready(client: &Client, dir: &Path) -> Result<(), TestenvError> {
    let csinodes: Api<CSINode> = Api::all(client.clone());
    let logs = dir.join("logs");
    let registered = || async {
        if !exited(dir).is_empty() {
            return Some(()); // nothing to wait for: said below
        }
        let node = csinodes.get_opt(REAL_NODE_NAME).await.ok()??;
        node.spec
            .drivers
            .iter()
            .any(|d| d.name == CSI_DRIVER)
            .then_some(())
    };
    let waited = crate::cluster::wait_for(
        "kubelet to register the CSI driver (the real node's CSINode)",
        120,
        &logs,
        registered,
    )
    .await;
    let evidence = || {
        let mut files: Vec<PathBuf> = PROCESSES
            .iter()
            .map(|p| logs.join(format!("{p}.log")))
            .collect();
        files.push(logs.join("kubelet.log"));
        crate::cluster::last_errors(&files)
    };
    let exited = exited(dir);
    if !exited.is_empty() {
        return Err(TestenvError::ComponentFailed {
            what: format!("the CSI stack's {} exited", exited.join(", ")),
            evidence: evidence(),
        });
    }
    match waited {
        Ok(()) => Ok(()),
        Err(TestenvError::Timeout { what, seconds, .. }) => Err(TestenvError::ComponentFailed {
            what: format!("{what} within {seconds}s"),
            evidence: evidence(),
        }),
        Err(e) => Err(e),
    }
}

/// The processes of the stack that are not running (their pid file is missing too soon
/// after the start is read as not started yet, so only a pid that is gone counts).
fn exited(dir: &Path) -> Vec<&'static str> {
    PROCESSES
        .into_iter()
        .filter(
            |p| match std::fs::read_to_string(dir.join(format!("pids/{p}.pid"))) {
                Ok(pid) => !running(pid.trim()),
                Err(_) => false,
            },
        )
        .collect()
}

/// Whether the process `pid` exists and is not a zombie (`/proc/<pid>/stat`'s state).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Whether every process of the stack has a pid file and runs: `up` checks it last, so an
/// environment said to have CSI has all of it.
pub(crate) fn all_running(dir: &Path) -> Result<(), TestenvError> {
    for p in PROCESSES {
        let path = dir.join(format!("pids/{p}.pid"));
        let pid = std::fs::read_to_string(&path).map_err(io(&path))?;
        if !running(pid.trim()) {
            return Err(TestenvError::ComponentFailed {
                what: format!("the CSI stack's {p} (pid {}) is not running", pid.trim()),
                evidence: crate::cluster::last_errors(&[dir.join(format!("logs/{p}.log"))]),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_runs_while_its_pid_does_and_a_missing_one_is_not_counted_as_exited()
    -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("arca-csi-pids-{}", rand::random::<u32>()));
        std::fs::create_dir_all(dir.join("pids"))?;
        assert!(running(&std::process::id().to_string()));
        assert!(!running("0") && !running("not-a-pid"));
        // No pid files yet: nothing has exited (node.sh has not started them).
        assert!(exited(&dir).is_empty());
        std::fs::write(
            dir.join("pids/csi-hostpath.pid"),
            std::process::id().to_string(),
        )?;
        std::fs::write(dir.join("pids/csi-provisioner.pid"), "999999999")?;
        assert_eq!(exited(&dir), vec!["csi-provisioner"]);
        let all = all_running(&dir);
        std::fs::remove_dir_all(&dir)?;
        assert!(all.is_err(), "{all:?}");
        Ok(())
    }

    #[test]
    fn the_snapshot_s_data_is_named_by_its_handle() {
        let csi = Csi::new("/env/node/csi".into());
        assert_eq!(
            csi.snapshot_file("snap-0123456789abcdef0123"),
            Path::new("/env/node/csi/snapshots/snap-0123456789abcdef0123.tar")
        );
        assert_eq!(
            csi.volume_dir("vol-0123456789abcdef0123"),
            Path::new("/env/node/csi/volumes/vol-0123456789abcdef0123")
        );
    }
}
