//! A real local Kubernetes and a real S3 server for Arca's tests.
//!
//! [`Environment::up`] builds the components from Go modules once (cached outside the
//! checkout, see `hack/testenv/build.sh`), then starts etcd, kube-apiserver (RBAC,
//! client-certificate auth), kube-controller-manager, kube-scheduler and kwok through `kwokctl`
//! (binary runtime), one Ready kwok node, and versitygw with a bucket; on request a node run
//! by a real kubelet, and on it a CSI driver with snapshots. Every port is picked
//! free, so several environments run side by side. [`Environment::down`] stops exactly what
//! `up` started, by pid, and removes its folder.
//!
//! [`TestEnv`] is the fixture tests use: the environment named by `ARCA_TESTENV` (started by
//! `make testenv-up NAME=…`), or a fresh one that is torn down when the test process exits;
//! plus a random namespace and a fresh S3 prefix per test, both cleaned up on drop.

mod binaries;
mod cluster;
mod csi;
mod env;
mod error;
mod fixture;
mod node;
mod s3;

pub use csi::{CSI_DRIVER, CSI_NEVER_READY_PARAMETER, CSI_SNAPSHOT_CLASS, CSI_STORAGE_CLASS, Csi};
pub use env::{Environment, RealNode, S3Settings, UpOptions};
pub use error::TestenvError;
pub use fixture::{TestEnv, TestNamespace, TestPrefix};
pub use node::{REAL_NODE_LABEL, REAL_NODE_TAINT_KEY};
pub use s3::LOCKED_BUCKET;

/// The folder that holds every environment: `<workspace>/target/testenv`.
pub fn testenv_root() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("ARCA_TESTENV_ROOT") {
        return dir.into();
    }
    workspace_root().join("target").join("testenv")
}

/// The checkout this crate was built from.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
