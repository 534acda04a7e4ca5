//! Flattens image layers into one file system tree while reading them from the TOP layer down,
//! so each entry's fate is known when it is seen: an entry is shadowed when a higher layer has
//! the same path (directories merge: the higher one's metadata wins), a non-directory at an
//! ancestor path, a whiteout (`.wh.NAME`) for it or an ancestor, or an opaque marker
//! (`.wh..wh..opq`) on an ancestor. Within one layer a later entry replaces an earlier one, as
//! tar extraction does. Only metadata is kept here; file contents go to the squashfs data area
//! as they are read, and inodes refer to them by [`FileId`].
//!
//! Hard links are resolved to shared inodes. A link whose target was shadowed (its contents
//! were skipped) asks for a second read of its layer ([`Merger::end_layer`]); a link to a path
//! of a lower layer is filled when that layer is read.

use crate::error::{Error, Result};
use crate::squashfs::{Dir, FileId, FsTree, Inode, InodeKind, Meta, Target};
use crate::tar::{Header, Kind};
use std::collections::{BTreeMap, HashMap};

const ROOT: u32 = 0;

/// What the caller must do with the entry it just handed to [`Merger::entry`] or [`Merger::fill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing more (directory, link, device, shadowed entry): skip its data.
    Skip,
    /// Write the entry's contents to the data area, then call [`Merger::set_file`] for this inode.
    Data(u32),
}

#[derive(Debug, Clone)]
enum Rec {
    File(Option<FileId>),
    Other(InodeKind),
    /// Filled later from a re-read or a lower layer.
    Pending,
    /// The same inode as another.
    Alias(u32),
}

#[derive(Debug, Clone)]
struct InodeRec {
    meta: Meta,
    rec: Rec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeKind {
    /// Only carries whiteout/opaque markers, or was removed.
    Placeholder,
    /// A directory; `meta` is `None` while only implied by paths below it.
    Dir { meta: Option<Meta>, meta_layer: Option<u32> },
    /// A non-directory.
    Leaf(u32),
}

#[derive(Debug, Clone)]
struct Node {
    children: BTreeMap<Box<[u8]>, u32>,
    /// The highest layer that has this path (or a path below it); `None` for placeholders.
    exists: Option<u32>,
    kind: NodeKind,
    /// Layer whose `.wh.NAME` removes this path from the layers below it.
    whiteout: Option<u32>,
    /// Layer whose `.wh..wh..opq` hides this directory's lower-layer children.
    opaque: Option<u32>,
}

impl Node {
    fn placeholder() -> Self {
        Node {
            children: BTreeMap::new(),
            exists: None,
            kind: NodeKind::Placeholder,
            whiteout: None,
            opaque: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Slot {
    /// Index of the entry (in its layer) that holds the contents.
    index: Option<u64>,
    inode: Option<u32>,
    /// A path of a lower layer the contents come from.
    lower: Option<Vec<u8>>,
}

/// Merges layers into a tree. Layers are numbered bottom (0) to top; feed them top first.
pub struct Merger {
    nodes: Vec<Node>,
    inodes: Vec<InodeRec>,
    layer: u32,
    default_dir: Meta,
    local: HashMap<Vec<u8>, usize>,
    slots: Vec<Slot>,
    refetch: BTreeMap<u64, u32>,
    lower_wanted: HashMap<Vec<u8>, Vec<(u32, u32)>>,
    dropped_xattrs: usize,
}

/// The components of a tar path: no empty or `.` parts; `..` is refused.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::InvalidInput(format!(
                    "path {:?} leaves the root",
                    String::from_utf8_lossy(path)
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn later(marker: Option<u32>, layer: u32) -> bool {
    marker.is_some_and(|m| m > layer)
}

impl Merger {
    /// An empty tree; directories that only exist because of paths below them get `default_dir`.
    pub fn new(default_dir: Meta) -> Self {
        let root = Node {
            exists: Some(u32::MAX),
            kind: NodeKind::Dir {
                meta: None,
                meta_layer: None,
            },
            ..Node::placeholder()
        };
        Merger {
            nodes: vec![root],
            inodes: Vec::new(),
            layer: u32::MAX,
            default_dir,
            local: HashMap::new(),
            slots: Vec::new(),
            refetch: BTreeMap::new(),
            lower_wanted: HashMap::new(),
            dropped_xattrs: 0,
        }
    }

    /// Start layer `layer`; it must be below every layer fed so far.
    pub fn begin_layer(&mut self, layer: u32) -> Result<()> {
        if layer >= self.layer {
            return Err(Error::Internal(format!("layer {layer} fed after layer {}", self.layer)));
        }
        self.layer = layer;
        self.local.clear();
        self.slots.clear();
        self.refetch.clear();
        Ok(())
    }

    /// Extended attributes seen (and dropped) so far.
    pub fn dropped_xattrs(&self) -> usize {
        self.dropped_xattrs
    }

    fn child(&self, node: u32, name: &[u8]) -> Option<u32> {
        self.nodes[node as usize].children.get(name).copied()
    }

    fn child_or_create(&mut self, node: u32, name: &[u8]) -> u32 {
        if let Some(c) = self.child(node, name) {
            return c;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(Node::placeholder());
        self.nodes[node as usize].children.insert(name.into(), id);
        id
    }

    /// Whether an ancestor hides a lower-layer path below it.
    fn ancestor_hides(&self, node: u32, layer: u32, path: &[u8]) -> Result<bool> {
        let n = &self.nodes[node as usize];
        if later(n.whiteout, layer) || later(n.opaque, layer) {
            return Ok(true);
        }
        if let (Some(h), NodeKind::Leaf(_)) = (n.exists, &n.kind) {
            if h > layer {
                return Ok(true);
            }
            return Err(Error::InvalidInput(format!(
                "{} is below a non-directory of the same layer",
                show(path)
            )));
        }
        Ok(false)
    }

    /// Walk to the parent of `comps`, checking every ancestor; `None` if hidden. When
    /// `imply`, missing ancestors become directories of the current layer.
    fn parent(&mut self, comps: &[&[u8]], path: &[u8], imply: bool) -> Result<Option<u32>> {
        let layer = self.layer;
        let mut cur = ROOT;
        for c in &comps[..comps.len() - 1] {
            if self.ancestor_hides(cur, layer, path)? {
                return Ok(None);
            }
            cur = self.child_or_create(cur, c);
        }
        if self.ancestor_hides(cur, layer, path)? {
            return Ok(None);
        }
        if imply {
            let mut cur = ROOT;
            for c in &comps[..comps.len() - 1] {
                cur = self.child(cur, c).expect("created above");
                let n = &mut self.nodes[cur as usize];
                if n.exists.is_none() {
                    n.exists = Some(layer);
                    n.kind = NodeKind::Dir {
                        meta: None,
                        meta_layer: None,
                    };
                }
            }
        }
        Ok(Some(cur))
    }

    fn new_inode(&mut self, meta: Meta, rec: Rec) -> u32 {
        self.inodes.push(InodeRec { meta, rec });
        self.inodes.len() as u32 - 1
    }

    /// Take in one entry of the current layer; `index` counts entries from 0 in stream order
    /// and `meta` is the entry's metadata as it should appear in the image.
    pub fn entry(&mut self, index: u64, h: &Header, meta: Meta) -> Result<Decision> {
        let layer = self.layer;
        let comps = components(&h.path)?;
        self.dropped_xattrs += h.xattrs;
        if let Some(last) = comps.last()
            && last.starts_with(b".wh.")
        {
            self.marker(&comps, &h.path)?;
            return Ok(Decision::Skip);
        }
        if comps.is_empty() {
            if h.kind != Kind::Dir {
                return Err(Error::InvalidInput(format!(
                    "the root entry {:?} is not a directory",
                    show(&h.path)
                )));
            }
            if let NodeKind::Dir { meta: m, meta_layer } = &mut self.nodes[ROOT as usize].kind
                && meta_layer.is_none_or(|l| l == layer)
            {
                *m = Some(meta);
                *meta_layer = Some(layer);
            }
            return Ok(Decision::Skip);
        }
        let path = h.path.clone();
        let key = comps.join(&b'/');
        let place = match self.parent(&comps, &path, true)? {
            None => None,
            Some(parent) => self.place(parent, comps[comps.len() - 1], h.kind == Kind::Dir, meta)?,
        };
        if h.kind == Kind::Dir {
            return Ok(Decision::Skip);
        }
        let wanted = self.take_wanted(&key);
        let (inode, decision) = if h.kind == Kind::Hardlink {
            (self.hardlink(h, &key, place.is_some() || !wanted.is_empty())?, Decision::Skip)
        } else if place.is_some() || !wanted.is_empty() {
            let x = self.new_inode(meta, Rec::Pending);
            let d = self.fill(x, h, meta)?;
            self.slots.push(Slot {
                index: Some(index),
                inode: Some(x),
                lower: None,
            });
            self.local.insert(key, self.slots.len() - 1);
            (Some(x), d)
        } else {
            self.slots.push(Slot {
                index: Some(index),
                inode: None,
                lower: None,
            });
            self.local.insert(key, self.slots.len() - 1);
            (None, Decision::Skip)
        };
        if let Some(x) = inode {
            for (w, _) in wanted {
                self.inodes[w as usize].rec = Rec::Alias(x);
            }
            if let Some(node) = place {
                self.nodes[node as usize].kind = NodeKind::Leaf(x);
            }
        }
        Ok(decision)
    }

    /// Pending inodes of higher layers waiting for `key`'s contents in this layer.
    fn take_wanted(&mut self, key: &[u8]) -> Vec<(u32, u32)> {
        let layer = self.layer;
        let Some(list) = self.lower_wanted.get_mut(key) else {
            return Vec::new();
        };
        let (mine, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|&(_, l)| l > layer);
        if keep.is_empty() {
            self.lower_wanted.remove(key);
        } else {
            *list = keep;
        }
        mine
    }

    /// Resolve a hard link entry to an inode (created pending if its contents come later).
    fn hardlink(&mut self, h: &Header, key: &[u8], needed: bool) -> Result<Option<u32>> {
        let target = components(&h.link)?.join(&b'/');
        if target.is_empty() {
            return Err(Error::InvalidInput(format!("hard link {} has no target", show(&h.path))));
        }
        let slot = match self.local.get(&target) {
            Some(&s) => s,
            None => {
                self.slots.push(Slot {
                    index: None,
                    inode: None,
                    lower: Some(target),
                });
                self.slots.len() - 1
            }
        };
        self.local.insert(key.to_vec(), slot);
        if !needed {
            return Ok(None);
        }
        if let Some(x) = self.slots[slot].inode {
            return Ok(Some(x));
        }
        let x = self.new_inode(Meta::default(), Rec::Pending);
        self.slots[slot].inode = Some(x);
        let s = self.slots[slot].clone();
        match (s.index, s.lower) {
            (Some(i), _) => {
                self.refetch.insert(i, x);
            }
            (None, Some(lower)) => self.lower_wanted.entry(lower).or_default().push((x, self.layer)),
            (None, None) => return Err(Error::Internal("hard link slot without a source".into())),
        }
        Ok(Some(x))
    }

    /// Place a (non-marker) entry at `name` under `parent`; `None` when it is shadowed.
    fn place(&mut self, parent: u32, name: &[u8], is_dir: bool, meta: Meta) -> Result<Option<u32>> {
        let layer = self.layer;
        let node = self.child_or_create(parent, name);
        let n = &mut self.nodes[node as usize];
        if later(n.whiteout, layer) {
            return Ok(None);
        }
        let new_kind = if is_dir {
            NodeKind::Dir {
                meta: Some(meta),
                meta_layer: Some(layer),
            }
        } else {
            NodeKind::Placeholder
        };
        match (n.exists, &mut n.kind) {
            (None, _) => {
                n.exists = Some(layer);
                n.kind = new_kind;
                Ok(Some(node))
            }
            (Some(h), NodeKind::Dir { meta: m, meta_layer }) if is_dir => {
                if h > layer && meta_layer.is_some() {
                    return Ok(None);
                }
                if meta_layer.is_none_or(|l| l == layer) {
                    *m = Some(meta);
                    *meta_layer = Some(layer);
                }
                Ok(Some(node))
            }
            (Some(h), _) if h > layer => Ok(None),
            (Some(_), _) => {
                // The same layer replaces what it wrote earlier (a directory with its contents).
                n.children.clear();
                n.kind = new_kind;
                Ok(Some(node))
            }
        }
    }

    /// A whiteout or opaque marker.
    fn marker(&mut self, comps: &[&[u8]], path: &[u8]) -> Result<()> {
        let layer = self.layer;
        let last = comps[comps.len() - 1];
        if last == b".wh..wh..opq" {
            let parent = if comps.len() == 1 {
                Some(ROOT)
            } else {
                self.parent(&comps[..comps.len() - 1], path, false)?
                    .map(|p| self.child_or_create(p, comps[comps.len() - 2]))
            };
            if let Some(d) = parent {
                let n = &mut self.nodes[d as usize];
                n.opaque.get_or_insert(layer);
            }
            return Ok(());
        }
        if last.starts_with(b".wh..wh.") {
            return Ok(());
        }
        let name = &last[4..];
        if name.is_empty() || name == b"." || name == b".." {
            return Err(Error::InvalidInput(format!("bad whiteout {}", show(path))));
        }
        if let Some(p) = self.parent(comps, path, false)? {
            let node = self.child_or_create(p, name);
            self.nodes[node as usize].whiteout.get_or_insert(layer);
        }
        Ok(())
    }

    /// Give a pending inode its metadata and type from `h` (a non-directory, non-hardlink entry).
    pub fn fill(&mut self, inode: u32, h: &Header, meta: Meta) -> Result<Decision> {
        let kind = match h.kind {
            Kind::File => {
                self.inodes[inode as usize] = InodeRec {
                    meta,
                    rec: Rec::File(None),
                };
                return Ok(Decision::Data(inode));
            }
            Kind::Symlink => InodeKind::Symlink(h.link.clone()),
            Kind::CharDevice => InodeKind::CharDevice {
                major: h.dev_major,
                minor: h.dev_minor,
            },
            Kind::BlockDevice => InodeKind::BlockDevice {
                major: h.dev_major,
                minor: h.dev_minor,
            },
            Kind::Fifo => InodeKind::Fifo,
            Kind::Dir | Kind::Hardlink => {
                return Err(Error::InvalidInput(format!(
                    "{} is not something a hard link can point at",
                    show(&h.path)
                )));
            }
        };
        self.inodes[inode as usize] = InodeRec {
            meta,
            rec: Rec::Other(kind),
        };
        Ok(Decision::Skip)
    }

    /// Record where the contents of file inode `inode` went.
    pub fn set_file(&mut self, inode: u32, file: FileId) {
        self.inodes[inode as usize].rec = Rec::File(Some(file));
    }

    /// Finish the current layer: entries (by index) whose contents must be read again because
    /// a hard link of this layer needs them, with the inode each one fills.
    pub fn end_layer(&mut self) -> Vec<(u64, u32)> {
        std::mem::take(&mut self.refetch).into_iter().collect()
    }

    /// Resolve `path` to an existing node, following no symlinks.
    fn lookup(&self, comps: &[&[u8]]) -> Option<u32> {
        let mut cur = ROOT;
        for c in comps {
            cur = self.child(cur, c)?;
            let n = &self.nodes[cur as usize];
            if n.exists.is_none() || n.kind == NodeKind::Placeholder {
                return None;
            }
        }
        Some(cur)
    }

    /// Whether `path` exists in the merged tree.
    pub fn exists(&self, path: &str) -> bool {
        components(path.as_bytes()).ok().and_then(|c| self.lookup(&c)).is_some()
    }

    /// Walk to `path`'s parent, creating missing directories with `dir_meta`; `None` when an
    /// ancestor is not a directory.
    fn parent_for_insert(&mut self, comps: &[&[u8]], dir_meta: Meta) -> Option<u32> {
        let mut cur = ROOT;
        for c in &comps[..comps.len() - 1] {
            cur = self.child_or_create(cur, c);
            let n = &mut self.nodes[cur as usize];
            match (&n.exists, &n.kind) {
                (Some(_), NodeKind::Dir { .. }) => {}
                (Some(_), NodeKind::Leaf(_)) => return None,
                _ => {
                    n.exists = Some(u32::MAX);
                    n.children.clear();
                    n.kind = NodeKind::Dir {
                        meta: Some(dir_meta),
                        meta_layer: Some(u32::MAX),
                    };
                }
            }
        }
        Some(cur)
    }

    /// Create directory `path` with `meta` unless something exists there; parents as needed.
    /// Returns false when an ancestor is not a directory.
    pub fn ensure_dir(&mut self, path: &str, meta: Meta) -> bool {
        let Ok(comps) = components(path.as_bytes()) else { return false };
        if comps.is_empty() {
            return true;
        }
        let Some(parent) = self.parent_for_insert(&comps, self.default_dir) else {
            return false;
        };
        let node = self.child_or_create(parent, comps[comps.len() - 1]);
        let n = &mut self.nodes[node as usize];
        if n.exists.is_none() || n.kind == NodeKind::Placeholder {
            n.exists = Some(u32::MAX);
            n.children.clear();
            n.kind = NodeKind::Dir {
                meta: Some(meta),
                meta_layer: Some(u32::MAX),
            };
        }
        true
    }

    /// Put a non-directory at `path`, replacing any non-directory there (`replace`) or only
    /// when nothing is there. Returns false when it was not placed (a directory is there, an
    /// ancestor is not a directory, or `replace` is false and the path exists).
    pub fn put(&mut self, path: &str, meta: Meta, kind: InodeKind, file: Option<FileId>, replace: bool) -> bool {
        let Ok(comps) = components(path.as_bytes()) else { return false };
        if comps.is_empty() {
            return false;
        }
        let Some(parent) = self.parent_for_insert(&comps, self.default_dir) else {
            return false;
        };
        let node = self.child_or_create(parent, comps[comps.len() - 1]);
        let present = {
            let n = &self.nodes[node as usize];
            match (&n.exists, &n.kind) {
                (Some(_), NodeKind::Dir { .. }) => return false,
                (Some(_), NodeKind::Leaf(_)) => true,
                _ => false,
            }
        };
        if present && !replace {
            return false;
        }
        let rec = match (kind, file) {
            (InodeKind::File(_), Some(f)) => Rec::File(Some(f)),
            (k, _) => Rec::Other(k),
        };
        let x = self.new_inode(meta, rec);
        let n = &mut self.nodes[node as usize];
        n.exists = Some(u32::MAX);
        n.children.clear();
        n.kind = NodeKind::Leaf(x);
        true
    }

    fn resolve(&self, mut x: u32) -> Result<u32> {
        for _ in 0..self.inodes.len() + 1 {
            match self.inodes[x as usize].rec {
                Rec::Alias(y) => x = y,
                _ => return Ok(x),
            }
        }
        Err(Error::Internal("hard link alias cycle".into()))
    }

    /// The final tree. Fails if a hard link's target was never found.
    pub fn finish(self) -> Result<FsTree> {
        if let Some((path, _)) = self.lower_wanted.iter().next() {
            return Err(Error::InvalidInput(format!(
                "a hard link points at {}, which no layer has",
                show(path)
            )));
        }
        let mut tree = FsTree::default();
        let mut inode_index: HashMap<u32, u32> = HashMap::new();
        let root_meta = self.dir_meta(ROOT);
        tree.dirs.push(Dir {
            meta: root_meta,
            entries: Vec::new(),
        });
        let mut stack = vec![(ROOT, 0u32)];
        while let Some((node, dir)) = stack.pop() {
            let mut entries = Vec::new();
            for (name, &c) in &self.nodes[node as usize].children {
                let n = &self.nodes[c as usize];
                if n.exists.is_none() {
                    continue;
                }
                match n.kind {
                    NodeKind::Placeholder => {}
                    NodeKind::Dir { .. } => {
                        tree.dirs.push(Dir {
                            meta: self.dir_meta(c),
                            entries: Vec::new(),
                        });
                        let d = tree.dirs.len() as u32 - 1;
                        entries.push((name.to_vec(), Target::Dir(d)));
                        stack.push((c, d));
                    }
                    NodeKind::Leaf(x) => {
                        let x = self.resolve(x)?;
                        let idx = match inode_index.get(&x) {
                            Some(&i) => i,
                            None => {
                                let r = &self.inodes[x as usize];
                                let kind = match &r.rec {
                                    Rec::File(Some(f)) => InodeKind::File(*f),
                                    Rec::Other(k) => k.clone(),
                                    Rec::File(None) | Rec::Pending | Rec::Alias(_) => {
                                        return Err(Error::Internal(format!("{} has no contents", show(name))));
                                    }
                                };
                                tree.inodes.push(Inode { meta: r.meta, kind });
                                let i = tree.inodes.len() as u32 - 1;
                                inode_index.insert(x, i);
                                i
                            }
                        };
                        entries.push((name.to_vec(), Target::Inode(idx)));
                    }
                }
            }
            tree.dirs[dir as usize].entries = entries;
        }
        Ok(tree)
    }

    fn dir_meta(&self, node: u32) -> Meta {
        match &self.nodes[node as usize].kind {
            NodeKind::Dir { meta: Some(m), .. } => *m,
            _ => self.default_dir,
        }
    }
}
