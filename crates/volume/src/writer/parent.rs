//! The parent snapshot's trees, followed along the walk: an unchanged file (restic's rule:
//! same type, size, mtime, ctime and inode) takes the parent's content and is not read.

use std::collections::HashMap;

use rustic_core::{
    TreeId,
    repofile::{Node, Tree},
};

use super::{index::KnownBlobs, index::id_bytes, store::RepoFiles};

/// What the parent snapshot says about an entry.
#[derive(Debug)]
pub(crate) enum Change {
    /// No entry of that name in the parent.
    New,
    /// An entry of that name, with other metadata.
    Changed,
    /// The same file: its content is reused.
    Unchanged,
}

/// The parent's folder at each level of the walk (`None` where it has none).
#[derive(Debug)]
pub(crate) struct ParentTrees<'a> {
    files: &'a RepoFiles,
    known: &'a KnownBlobs,
    current: Option<HashMap<String, Node>>,
    stack: Vec<Option<HashMap<String, Node>>>,
}

impl<'a> ParentTrees<'a> {
    /// Starts at the parent snapshot's root tree, if there is a parent.
    pub(crate) fn new(files: &'a RepoFiles, known: &'a KnownBlobs, root: Option<TreeId>) -> Self {
        let mut this = Self {
            files,
            known,
            current: None,
            stack: Vec::new(),
        };
        this.current = root.and_then(|id| this.load(id));
        this
    }

    /// The tree `id` by node name; `None` (with a warning: the files are then read again)
    /// when it cannot be read.
    fn load(&self, id: TreeId) -> Option<HashMap<String, Node>> {
        let hash = id_bytes(&id);
        let Some(at) = self.known.tree(&hash) else {
            tracing::warn!(tree = %id, "the parent snapshot's tree is not in the index; its files are read again");
            return None;
        };
        match self.files.read_tree(&hash, &at) {
            Ok(Tree { nodes }) => Some(nodes.into_iter().map(|n| (n.name.clone(), n)).collect()),
            Err(e) => {
                tracing::warn!(tree = %id, "cannot read the parent snapshot's tree ({e}); its files are read again");
                None
            }
        }
    }

    /// The parent's subtree id of the folder `name` here, if any.
    pub(crate) fn subtree(&self, name: &str) -> Option<TreeId> {
        self.current.as_ref()?.get(name)?.subtree
    }

    /// Goes into the folder `name`.
    pub(crate) fn enter(&mut self, name: &str) {
        let next = self.subtree(name).and_then(|id| self.load(id));
        self.stack.push(std::mem::replace(&mut self.current, next));
    }

    /// Goes back to the enclosing folder.
    pub(crate) fn leave(&mut self) {
        self.current = self.stack.pop().flatten();
    }

    /// Compares `node` with the parent's entry of the same name; an unchanged file gets the
    /// parent's content when all of its blobs are in the index.
    pub(crate) fn compare(&self, node: &mut Node) -> Change {
        let Some(old) = self.current.as_ref().and_then(|t| t.get(&node.name)) else {
            return Change::New;
        };
        let (a, b) = (&old.meta, &node.meta);
        let same = old.node_type == node.node_type
            && a.size == b.size
            && a.mtime == b.mtime
            && a.ctime.zip(b.ctime).is_none_or(|(x, y)| x == y)
            && (a.inode == 0 || b.inode == 0 || a.inode == b.inode);
        let complete = old.content.iter().flatten().all(|id| {
            self.known
                .indexed(rustic_core::repofile::BlobType::Data, &id_bytes(id))
        });
        if same && complete {
            node.content.clone_from(&old.content);
            Change::Unchanged
        } else {
            Change::Changed
        }
    }
}
