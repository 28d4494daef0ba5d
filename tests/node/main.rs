//! End-to-end tests on a real node: Arca installed the way its users install it (`arca
//! install`, Helm), running as pods of its own image on a kubelet over containerd and runc,
//! backing up and restoring a pod's data written from inside its container.
//!
//! One environment with a real node (`make testenv-up NODE=real`, or started here), the image
//! of `make image` imported into the node's containerd. The tests install Arca cluster-wide,
//! so they run one at a time (`--test-threads=1`) and each removes what it installed.

mod csi;
mod data_mover;
mod helpers;
mod install;
mod parked_claim;
mod upgrade;
mod velero_agent;
