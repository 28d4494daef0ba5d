//! What Arca's two processes share against the apiserver: the operator (`arca server`) and
//! the node agent (`arca agent`) both write status by server-side apply, back off failing
//! reconciles, tick progress into status, open a BackupStorageLocation's store and read the
//! volume repositories' password. The protocol between them (work item names, labels,
//! repository identifiers, the Secret's name) is [`arca_api::protocol`].

pub mod backoff;
pub mod keys;
pub mod locations;
pub mod progress;
pub mod repository;
pub mod secrets;
pub mod status;
pub mod tenant_storage;
