//! Building the snapshot's trees from the walk's events, in order: a folder's tree is
//! complete when the walk leaves it, once each of its files has been read.

use std::sync::atomic::Ordering::Relaxed;

use crossbeam_channel::{Receiver, Sender};
use rustic_core::{
    TreeId,
    repofile::{BlobType, Node, Tree},
};

use super::{
    Shared, WriterError,
    blob::Blob,
    index::id_bytes,
    parent::Change,
    walk::{Content, Event},
};

/// A folder being built: its node, the parent snapshot's tree of it, and its entries.
type Open = (Node, Option<TreeId>, Tree);

/// Builds every tree from `events`, sending the new ones to `blobs`; returns the root tree.
/// `previous_root` is the parent snapshot's root tree.
pub(crate) fn assemble(
    events: &Receiver<Event>,
    previous_root: Option<TreeId>,
    shared: &Shared<'_>,
    blobs: &Sender<Blob>,
) -> Result<TreeId, WriterError> {
    let stats = &shared.stats;
    let mut stack: Vec<Open> = Vec::new();
    let mut tree = Tree::default();
    for event in events {
        match event {
            Event::Enter(node, previous) => {
                stack.push((node, previous, std::mem::take(&mut tree)));
            }
            Event::Leave => {
                let (mut node, previous, outer) = stack.pop().ok_or(WriterError::Internal(
                    "the walk left a folder it had not entered",
                ))?;
                node.subtree = Some(store_tree(&tree, previous, shared, blobs)?);
                tree = outer;
                tree.nodes.push(node);
            }
            Event::Entry(mut node, change, content) => {
                let bytes = match content {
                    Content::Ready if node.node_type == rustic_core::repofile::NodeType::File => {
                        node.meta.size
                    }
                    Content::Ready => 0,
                    Content::Reading(outcome) => {
                        match shared.recv(&outcome)? {
                            Some(read) => {
                                node.content = Some(read.content);
                                read.bytes
                            }
                            // Skipped: recorded by the source, left out of the snapshot.
                            None => continue,
                        }
                    }
                };
                let counter = match change {
                    Change::New => &stats.files_new,
                    Change::Changed => &stats.files_changed,
                    Change::Unchanged => &stats.files_unmodified,
                };
                counter.fetch_add(1, Relaxed);
                stats.files.fetch_add(1, Relaxed);
                stats.bytes.fetch_add(bytes, Relaxed);
                tree.nodes.push(node);
            }
        }
    }
    if !stack.is_empty() {
        return Err(WriterError::Stopped);
    }
    store_tree(&tree, previous_root, shared, blobs)
}

/// Serializes `tree` and sends it to be stored unless the repository has it.
fn store_tree(
    tree: &Tree,
    previous: Option<TreeId>,
    shared: &Shared<'_>,
    blobs: &Sender<Blob>,
) -> Result<TreeId, WriterError> {
    let stats = &shared.stats;
    let (data, id) = tree
        .serialize()
        .map_err(|_| WriterError::Internal("a tree could not be serialized"))?;
    stats.dirs.fetch_add(1, Relaxed);
    stats.dirsize.fetch_add(data.len() as u64, Relaxed);
    let counter = match previous {
        Some(p) if p == id => &stats.dirs_unmodified,
        Some(_) => &stats.dirs_changed,
        None => &stats.dirs_new,
    };
    counter.fetch_add(1, Relaxed);
    let hash = id_bytes(&id);
    if shared.known.claim(BlobType::Tree, hash) {
        let tree = Blob {
            tpe: BlobType::Tree,
            id: hash,
            data,
        };
        shared.send(blobs, tree)?;
    }
    Ok(id)
}
