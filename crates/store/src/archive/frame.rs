//! Frames: whole tar entries of one resource type, compressed as one zstd frame.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// Frames are cut at this much uncompressed data, so memory per frame stays bounded
/// whatever the size of a listed page.
pub const FRAME_TARGET_BYTES: usize = 4 * 1024 * 1024;
const ZSTD_LEVEL: i32 = 3;

/// An item to archive: identity and the object's JSON (with apiVersion and kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    pub json: Bytes,
}

/// Where a frame lies in `resources.tar.zst`: `[offset, length]` in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FrameRef(pub u64, pub u64);

impl FrameRef {
    pub fn range(&self) -> std::ops::Range<u64> {
        self.0..self.0 + self.1
    }
}

/// A compressed frame and the index entries of its items (their frame offset not yet known).
#[derive(Debug)]
pub struct EncodedFrame {
    pub bytes: Bytes,
    pub entries: Vec<super::IndexEntry>,
}

/// An entry read back from a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedItem {
    pub path: String,
    pub json: Bytes,
}

/// The path of an item inside the tar stream, as Velero writes it:
/// `resources/<resource>[.<group>]/namespaces/<ns>/<name>.json` or `…/cluster/<name>.json`.
pub fn item_path(resource: &str, group: &str, namespace: Option<&str>, name: &str) -> String {
    let group_resource = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    match namespace {
        Some(ns) => format!("resources/{group_resource}/namespaces/{ns}/{name}.json"),
        None => format!("resources/{group_resource}/cluster/{name}.json"),
    }
}

/// Encodes items as one or more frames of at most about [`FRAME_TARGET_BYTES`] each.
/// CPU-bound: call it off the async runtime's threads for big pages.
pub fn encode_frames(items: &[Item], mtime: u64) -> Result<Vec<EncodedFrame>, StoreError> {
    let mut frames = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut bytes = 0usize;
        while end < items.len()
            && (end == start || bytes + items[end].json.len() <= FRAME_TARGET_BYTES)
        {
            bytes += items[end].json.len() + 1024;
            end += 1;
        }
        frames.push(encode_one(&items[start..end], mtime)?);
        start = end;
    }
    Ok(frames)
}

fn encode_one(items: &[Item], mtime: u64) -> Result<EncodedFrame, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        key: "frame".into(),
        detail,
    };
    let mut builder = tar::Builder::new(Vec::with_capacity(
        items.iter().map(|i| i.json.len() + 1024).sum(),
    ));
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let path = item_path(
            &item.resource,
            &item.group,
            item.namespace.as_deref(),
            &item.name,
        );
        let mut header = tar::Header::new_gnu();
        header.set_size(item.json.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, &path, &item.json[..])
            .map_err(|e| corrupt(format!("writing tar entry {path}: {e}")))?;
        entries.push(super::IndexEntry {
            group: item.group.clone(),
            version: item.version.clone(),
            kind: item.kind.clone(),
            resource: item.resource.clone(),
            namespace: item.namespace.clone(),
            name: item.name.clone(),
            path,
            size: item.json.len() as u64,
            sha256: hex::encode(Sha256::digest(&item.json)),
            frame: FrameRef(0, 0),
        });
    }
    // Take the entries without the end-of-archive blocks, which the builder would add.
    let tar_bytes = std::mem::take(builder.get_mut());
    drop(builder);
    let bytes = compress(&tar_bytes).map_err(|e| corrupt(format!("compressing: {e}")))?;
    Ok(EncodedFrame {
        bytes: Bytes::from(bytes),
        entries,
    })
}

/// The last frame: tar's end-of-archive marker (two zero blocks).
pub fn end_frame() -> Result<Bytes, StoreError> {
    compress(&[0u8; 1024])
        .map(Bytes::from)
        .map_err(|e| StoreError::Corrupt {
            key: "frame".into(),
            detail: format!("compressing: {e}"),
        })
}

/// One zstd frame with a content checksum, so damage is caught when it is read.
pub(crate) fn compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
    compressor.include_checksum(true)?;
    compressor.compress(data)
}

/// The most one frame may hold, compressed or not, when read back. Arca writes frames of
/// about [`FRAME_TARGET_BYTES`], or one item when an item is larger; no item the apiserver
/// accepts comes near [`ITEM_LIMIT`].
pub const FRAME_LIMIT: u64 = 64 * 1024 * 1024;
/// The most one archived item may hold when read back (the apiserver refuses requests of
/// more than 3 MiB, etcd values of more than 1.5 MiB by default).
pub const ITEM_LIMIT: u64 = 32 * 1024 * 1024;

/// Decodes one frame into its entries. CPU-bound. Bounded: a frame that decompresses to more
/// than [`FRAME_LIMIT`] (a decompression bomb), or an entry larger than [`ITEM_LIMIT`], is
/// refused as corrupt after reading at most that much.
pub fn decode_frame(compressed: &[u8], key: &str) -> Result<Vec<ArchivedItem>, StoreError> {
    use std::io::Read as _;
    let corrupt = |detail: String| StoreError::Corrupt {
        key: key.into(),
        detail,
    };
    let decoder = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| corrupt(format!("the frame does not decompress: {e}")))?;
    let mut tar_bytes = Vec::new();
    decoder
        .take(FRAME_LIMIT + 1)
        .read_to_end(&mut tar_bytes)
        .map_err(|e| corrupt(format!("the frame does not decompress: {e}")))?;
    if tar_bytes.len() as u64 > FRAME_LIMIT {
        return Err(corrupt(format!(
            "the frame decompresses to more than {FRAME_LIMIT} bytes, more than Arca ever writes in one: refused"
        )));
    }
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut out = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| corrupt(format!("the frame is not a tar stream: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(format!("bad tar entry: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| corrupt(format!("bad tar path: {e}")))?
            .to_string_lossy()
            .into_owned();
        // The header's size is the bucket's word: checked, never allocated up front.
        if entry.size() > ITEM_LIMIT {
            return Err(corrupt(format!(
                "{path} claims {} bytes, more than any item the apiserver accepts: refused",
                entry.size()
            )));
        }
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut (&mut entry).take(ITEM_LIMIT), &mut json)
            .map_err(|e| corrupt(format!("reading {path}: {e}")))?;
        out.push(ArchivedItem {
            path,
            json: Bytes::from(json),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(ns: Option<&str>, name: &str, size: usize) -> Item {
        Item {
            group: if ns.is_some() {
                String::new()
            } else {
                "apiextensions.k8s.io".into()
            },
            version: "v1".into(),
            kind: "ConfigMap".into(),
            resource: "configmaps".into(),
            namespace: ns.map(str::to_string),
            name: name.into(),
            json: Bytes::from(format!("{{\"data\":\"{}\"}}", "x".repeat(size))),
        }
    }

    #[test]
    fn paths_match_velero() {
        assert_eq!(
            item_path("configmaps", "", Some("app"), "cfg"),
            "resources/configmaps/namespaces/app/cfg.json"
        );
        assert_eq!(
            item_path("deployments", "apps", Some("app"), "web"),
            "resources/deployments.apps/namespaces/app/web.json"
        );
        assert_eq!(
            item_path(
                "customresourcedefinitions",
                "apiextensions.k8s.io",
                None,
                "a.b.c"
            ),
            "resources/customresourcedefinitions.apiextensions.k8s.io/cluster/a.b.c.json"
        );
    }

    #[test]
    fn frames_round_trip_with_checksums() -> Result<(), StoreError> {
        let long_name = "n".repeat(240);
        let items = vec![
            item(Some("a"), "one", 10),
            item(Some("a"), &long_name, 20),
            item(None, "crd", 5),
        ];
        let frames = encode_frames(&items, 1_700_000_000)?;
        assert_eq!(frames.len(), 1);
        let decoded = decode_frame(&frames[0].bytes, "test")?;
        assert_eq!(decoded.len(), 3);
        for ((entry, archived), original) in frames[0].entries.iter().zip(&decoded).zip(&items) {
            assert_eq!(entry.path, archived.path, "long paths survive");
            assert_eq!(archived.json, original.json);
            assert_eq!(entry.sha256, hex::encode(Sha256::digest(&archived.json)));
        }
        Ok(())
    }

    #[test]
    fn big_pages_are_cut_into_bounded_frames() -> Result<(), StoreError> {
        let items: Vec<_> = (0..12)
            .map(|i| item(Some("a"), &format!("big{i}"), 1024 * 1024))
            .collect();
        let frames = encode_frames(&items, 0)?;
        assert!(
            frames.len() >= 3,
            "12 MiB in frames of at most 4 MiB: {}",
            frames.len()
        );
        assert_eq!(frames.iter().map(|f| f.entries.len()).sum::<usize>(), 12);
        Ok(())
    }

    #[test]
    fn concatenated_frames_are_one_standard_tarball() -> Result<(), StoreError> {
        let a = encode_frames(&[item(Some("a"), "one", 3)], 0)?;
        let b = encode_frames(&[item(Some("b"), "two", 4)], 0)?;
        let mut whole = Vec::new();
        whole.extend_from_slice(&a[0].bytes);
        whole.extend_from_slice(&b[0].bytes);
        whole.extend_from_slice(&end_frame()?);
        let tar_bytes =
            zstd::stream::decode_all(&whole[..]).map_err(|e| StoreError::Config(e.to_string()))?;
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .map_err(|e| StoreError::Config(e.to_string()))?
            .filter_map(|e| {
                e.ok()?
                    .path()
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .collect();
        assert_eq!(
            names,
            [
                "resources/configmaps/namespaces/a/one.json",
                "resources/configmaps/namespaces/b/two.json"
            ]
        );
        Ok(())
    }

    #[test]
    fn a_damaged_frame_is_reported() {
        let frames = encode_frames(&[item(Some("a"), "one", 100)], 0).expect("frames");
        let mut damaged = frames[0].bytes.to_vec();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0xff;
        let err = decode_frame(&damaged, "resources.tar.zst").expect_err("damage must be detected");
        assert!(
            err.to_string()
                .contains("corrupt data in resources.tar.zst"),
            "{err}"
        );
    }
}

/// Hostile frames: what a bucket writer can put in an archive never makes the reader hold
/// more than the limits.
#[cfg(test)]
mod hostile {
    use super::*;

    #[test]
    fn a_decompression_bomb_is_refused_after_the_limit() -> std::io::Result<()> {
        // 200 MiB of zeros compress to a few hundred KB: a tar stream that never ends.
        let bomb = zstd::stream::encode_all(
            std::io::Read::take(std::io::repeat(0), 200 * 1024 * 1024),
            19,
        )?;
        assert!(bomb.len() < 1024 * 1024, "{} bytes", bomb.len());
        let err = decode_frame(&bomb, "resources.tar.zst").expect_err("a bomb");
        assert!(
            err.to_string().contains("decompresses to more than"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn an_entry_claiming_a_huge_size_is_refused_without_allocating_it() -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_path("resources/configmaps/namespaces/a/x.json")?;
        header.set_size(10 * 1024 * 1024 * 1024);
        header.set_cksum();
        let mut tar_bytes = header.as_bytes().to_vec();
        tar_bytes.extend_from_slice(&[b'{'; 512]);
        let frame = compress(&tar_bytes)?;
        let err = decode_frame(&frame, "resources.tar.zst").expect_err("a lying header");
        assert!(err.to_string().contains("more than any item"), "{err}");
        Ok(())
    }
}
