//! How much of anything the reader accepts: every size read from the bucket is capped.

/// Caps on what the reader reads. Whoever can write to the bucket controls every byte, so
/// each is bounded, and the reader holds at most about `item_bytes` (times the stream's
/// small queue) of the tarball in memory whatever its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest tar entry (one item's JSON). Kubernetes objects are at most about
    /// 1.5 MiB (etcd's default request limit); larger entries are refused.
    pub item_bytes: u64,
    /// The most decompressed bytes of one tarball (tar headers and padding included): a
    /// gzip bomb stops here.
    pub tarball_bytes: u64,
    /// The most items of one tarball (the reader keeps a 16-byte digest of each item's
    /// identity to refuse duplicates).
    pub items: u64,
    /// The largest `velero-backup.json`.
    pub metadata_bytes: u64,
    /// The largest compressed `-podvolumebackups.json.gz` or `-resource-list.json.gz`.
    pub list_compressed_bytes: u64,
    /// The most decompressed bytes of either of those.
    pub list_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            item_bytes: 16 * 1024 * 1024,
            tarball_bytes: 32 * 1024 * 1024 * 1024,
            items: 4_000_000,
            metadata_bytes: arca_store::METADATA_LIMIT,
            list_compressed_bytes: 64 * 1024 * 1024,
            list_bytes: 512 * 1024 * 1024,
        }
    }
}

/// The most bytes of `metadata/version` read (it holds `1.1.0\n`).
pub(crate) const VERSION_FILE_BYTES: u64 = 64;

/// How many names of ignored entries a summary keeps (it counts them all).
pub(crate) const IGNORED_NAMES_KEPT: usize = 100;
