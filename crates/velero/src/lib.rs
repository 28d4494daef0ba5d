//! Reading what Velero wrote to a backup storage location, so Arca can list and restore
//! Velero's backups in place. One concern: reading Velero's layout. Nothing here writes,
//! changes or deletes anything in the store: the reader holds a [`ReadOnlyStore`], which
//! offers read operations only (see its documentation).
//!
//! Velero's layout under a location's prefix (what this crate reads):
//!
//! ```text
//! backups/<name>/velero-backup.json               the Backup object (velero.io/v1)
//! backups/<name>/<name>.tar.gz                    the items, tarball format 1.1.0
//! backups/<name>/<name>-podvolumebackups.json.gz  the PodVolumeBackups (file-level volume data)
//! backups/<name>/<name>-resource-list.json.gz     every item backed up, by apiVersion/kind
//! backups/<name>/<name>-volumeinfo.json.gz        how each volume was backed up (1.13+)
//! ```
//!
//! Inside the tarball (format 1.1.0, Velero 1.4 and later):
//!
//! ```text
//! metadata/version                                             "1.1.0\n", first
//! resources/<resource>.<group>/namespaces/<ns>/<name>.json     preferred version (legacy copy)
//! resources/<resource>.<group>/cluster/<name>.json             preferred version (legacy copy)
//! resources/<resource>.<group>/<v>-preferredversion/namespaces/<ns>/<name>.json
//! resources/<resource>.<group>/<v>-preferredversion/cluster/<name>.json
//! resources/<resource>.<group>/<v>/namespaces/<ns>/<name>.json other versions (API group
//!                                                              versions feature)
//! ```
//! (`<resource>` alone for the core group.) [`ItemStream`] yields each item once, from its
//! `<v>-preferredversion` copy, streaming: one entry in memory at a time.
//!
//! Every byte is treated as hostile ([`Limits`]): sizes are capped (a gzip bomb is refused
//! naming the limit), tar entries with absolute paths, `..`, links, devices or names that
//! are not UTF-8 are refused, and an item whose JSON names another kind, name or namespace
//! than its path is refused.
//!
//! Entry points: [`VeleroLocation`] (list backup folders, read one backup's parts),
//! [`read_tarball`] (the synchronous tarball reader underneath) and [`transcode`] (a
//! backup's items rewritten as Arca's archive in a scratch store, for Arca's restore engine).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backup;
mod error;
mod item;
mod limits;
mod location;
mod names;
mod path;
mod read_only;
mod resource_list;
mod tarball;
mod transcode;
mod volume_info;
mod volumes;

pub use backup::{BackupPhase, ScopedResources, VeleroBackup};
pub use error::VeleroError;
pub use item::{Entry, RefusedItem, VeleroItem};
pub use limits::Limits;
pub use location::{BackupFolder, FolderLayout, ItemStream, VeleroLayout, VeleroLocation};
pub use read_only::ReadOnlyStore;
pub use resource_list::{ResourceList, ResourceListEntry};
pub use tarball::{TarballSummary, read_tarball};
pub use transcode::{REFUSED_KEPT, Transcoded, transcode};
pub use volume_info::{VolumeInfo, VolumeMethod};
pub use volumes::{PodVolumeData, Uploader};

/// The tarball format versions this crate reads (`metadata/version` of the tarball,
/// `status.formatVersion` of the Backup): Velero 1.4 and later write 1.1.0.
pub const KNOWN_FORMATS: [&str; 1] = ["1.1.0"];
