//! Arca's engines: what a backup and a restore do, apart from the reconcile loops that
//! drive them. Pure logic (catalogue resolution, filters, ordering, transforms) lives in
//! modules of its own and is unit-tested without a cluster.

pub mod backup;
pub mod catalogue;
pub mod csi;
pub mod exec;
pub mod filters;
pub mod hooks;
pub mod pod_volumes;
pub mod progress;
pub mod protocol;
pub mod restore;
pub mod rules;
pub mod runlog;
pub mod scoped;
