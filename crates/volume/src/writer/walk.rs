//! The walk: the source's entries in restic's order (sorted by path, a folder before its
//! contents), turned into the events that build the snapshot's trees, with the parent
//! snapshot consulted for each entry and files to read handed to the file workers.

use std::{
    ffi::OsStr,
    path::{Component, Path, PathBuf},
};

use crossbeam_channel::{Receiver, Sender, bounded};
use rustic_core::{
    ReadSource, ReadSourceEntry, TreeId,
    repofile::{Metadata, Node, NodeType},
};

use super::{
    Shared, WriterError,
    files::{FileJob, FileRead},
    parent::{Change, ParentTrees},
};
use crate::source::RootedSource;

/// How the snapshot's trees are built, in walk order.
#[derive(Debug)]
pub(crate) enum Event {
    /// A folder starts; its entries follow until the matching [`Event::Leave`]. Carries the
    /// parent snapshot's tree of the same folder.
    Enter(Node, Option<TreeId>),
    /// The current folder ends.
    Leave,
    /// An entry of the current folder other than a folder.
    Entry(Node, Change, Content),
}

/// Where an entry's content comes from.
#[derive(Debug)]
pub(crate) enum Content {
    /// Known already: not a file, or a file unchanged since the parent snapshot.
    Ready,
    /// Being read by a file worker.
    Reading(Receiver<Option<FileRead>>),
}

/// Walks `source` to its end, sending events to `events` and files to read to `jobs`.
pub(crate) fn walk(
    source: &RootedSource,
    parent: &mut ParentTrees<'_>,
    shared: &Shared<'_>,
    jobs: &Sender<FileJob>,
    events: &Sender<Event>,
) -> Result<(), WriterError> {
    let send = |event| shared.send(events, event);
    let mut current = PathBuf::new();
    for entry in source.entries() {
        shared.check()?;
        // Entries that cannot be read were recorded as skipped by the source.
        let Ok(ReadSourceEntry {
            path,
            mut node,
            open,
        }) = entry
        else {
            continue;
        };
        let folder = path.parent().unwrap_or(Path::new(""));
        while !folder.starts_with(&current) {
            send(Event::Leave)?;
            parent.leave();
            current.pop();
        }
        // Folders the walk did not name (none, in a plain folder walk): mode 755, as rustic.
        let missing: Vec<_> = folder
            .strip_prefix(&current)
            .map(|rest| rest.components().collect())
            .unwrap_or_default();
        for part in missing {
            if let Component::Normal(name) = part {
                let meta = Metadata {
                    mode: Some(0o755),
                    ..Metadata::default()
                };
                enter(Node::new_node(name, NodeType::Dir, meta), parent, &send)?;
                current.push(name);
            }
        }
        if node.is_dir() {
            let name = path.file_name().unwrap_or(OsStr::new("")).to_owned();
            enter(node, parent, &send)?;
            current.push(name);
            continue;
        }
        let change = parent.compare(&mut node);
        let content = match (&change, node.node_type == NodeType::File, open) {
            (Change::Unchanged, true, _) => {
                // Not read, but done: the progress reaches the total as with rustic.
                shared.progress.add(node.meta.size);
                Content::Ready
            }
            (Change::Unchanged, false, _) | (_, false, _) => Content::Ready,
            (_, true, Some(open)) => {
                let (reply, outcome) = bounded(1);
                let size = node.meta.size;
                shared.send(jobs, FileJob { open, size, reply })?;
                Content::Reading(outcome)
            }
            (_, true, None) => {
                tracing::warn!(path = %path.display(), "a file without a reader is left out");
                continue;
            }
        };
        send(Event::Entry(node, change, content))?;
    }
    while current.pop() {
        send(Event::Leave)?;
        parent.leave();
    }
    Ok(())
}

/// Enters the folder `node`, here and in the parent snapshot.
fn enter(
    node: Node,
    parent: &mut ParentTrees<'_>,
    send: &impl Fn(Event) -> Result<(), WriterError>,
) -> Result<(), WriterError> {
    let previous = parent.subtree(&node.name);
    parent.enter(&node.name);
    send(Event::Enter(node, previous))
}
