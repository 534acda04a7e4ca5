//! Turning file-system changes into an OCI layer tar: an overlayfs upper directory (`diff_overlay_upper`) or two
//! full trees compared entry by entry (`diff_dirs`). Output is sorted by name and reproducible.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::apply::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::error::{LayerError, Result};
use crate::sys;
use crate::tarw::{Kind, Node, TarWriter};

/// How a diff is written.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// `SOURCE_DATE_EPOCH`: every mtime later than this is written as this.
    pub source_date_epoch: Option<i64>,
    /// For [`diff_overlay_upper`]: the overlay's lower directories, topmost first, as given to `lowerdir=` (one
    /// flattened rootfs, or a stack of earlier uppers with their whiteouts and opaque directories). With them, a
    /// directory the overlay copied up only because something below it changed (or an excluded mount point was
    /// created in it), and whose mode, owner and xattrs equal the merged lower one's, is written only when an
    /// entry below it is. Empty: every directory of the upper is written.
    pub lower: Vec<PathBuf>,
    /// For [`diff_dirs`]: compare file content whenever type, mode, owner, size and xattrs match, even when the
    /// mtimes match too. Without it, equal mtimes (to the nanosecond) mean unchanged.
    pub always_compare_content: bool,
    /// Rootless builds: how the owners seen on the host map back to the image's owners (the
    /// inverse of the run's user-namespace mapping). Empty: owners are written as they are.
    pub owners: OwnerMap,
}

/// Host → image owner translation, as `(image id, host id, count)` ranges for uids and gids. A
/// host id outside every range is written as 65534 (the kernel's overflow id, "nobody"); with no
/// ranges at all, ids are written unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerMap {
    /// uid ranges: (first id in the image, first id on the host, count).
    pub uids: Vec<(u32, u32, u32)>,
    /// gid ranges: (first id in the image, first id on the host, count).
    pub gids: Vec<(u32, u32, u32)>,
}

impl OwnerMap {
    fn translate(ranges: &[(u32, u32, u32)], host: u32) -> u32 {
        if ranges.is_empty() {
            return host;
        }
        ranges
            .iter()
            .find(|&&(_, h, n)| host >= h && host - h < n)
            .map(|&(c, h, _)| c + (host - h))
            .unwrap_or(65534)
    }

    /// The image uid of host uid `host`.
    pub fn uid(&self, host: u32) -> u32 {
        Self::translate(&self.uids, host)
    }

    /// The image gid of host gid `host`.
    pub fn gid(&self, host: u32) -> u32 {
        Self::translate(&self.gids, host)
    }
}

/// What a diff wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Tar entries written (whiteouts and opaque markers included).
    pub entries: u64,
    /// Regular files written with content.
    pub files: u64,
    /// Directories written.
    pub dirs: u64,
    /// Symlinks written.
    pub symlinks: u64,
    /// Hardlink entries written.
    pub hardlinks: u64,
    /// Device nodes and FIFOs written.
    pub specials: u64,
    /// `.wh.NAME` whiteouts written.
    pub whiteouts: u64,
    /// `.wh..wh..opq` markers written.
    pub opaque_dirs: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Sockets and other files a tar cannot hold, skipped.
    pub skipped: u64,
}

impl DiffStats {
    /// True when the diff has no entries: the caller should not make a layer of it.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Xattr names never written: overlay bookkeeping and host SELinux labels.
pub(crate) fn skip_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name == b"security.selinux"
}

fn overlay_xattr(xattrs: &[(Vec<u8>, Vec<u8>)], suffix: &str) -> Option<Vec<u8>> {
    for prefix in ["trusted.overlay.", "user.overlay."] {
        let key = format!("{prefix}{suffix}");
        if let Some((_, v)) = xattrs.iter().find(|(k, _)| k == key.as_bytes()) {
            return Some(v.clone());
        }
    }
    None
}

/// A directory entry: its name, stat and all its xattrs (overlay ones included), read without following symlinks.
pub(crate) struct Child {
    pub(crate) name: OsString,
    pub(crate) st: libc::stat,
    pub(crate) all_xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Child {
    pub(crate) fn ftype(&self) -> u32 {
        sys::file_type(self.st.st_mode)
    }

    pub(crate) fn kept_xattrs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.all_xattrs
            .iter()
            .filter(|(k, _)| !skip_xattr(k))
            .cloned()
            .collect()
    }

    fn is_overlay_whiteout(&self) -> bool {
        match self.ftype() {
            libc::S_IFCHR => self.st.st_rdev == 0,
            libc::S_IFREG => {
                self.st.st_size == 0 && overlay_xattr(&self.all_xattrs, "whiteout").is_some()
            }
            _ => false,
        }
    }

    fn is_opaque(&self) -> bool {
        self.ftype() == libc::S_IFDIR
            && overlay_xattr(&self.all_xattrs, "opaque").as_deref() == Some(b"y")
    }
}

fn read_xattrs(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let p = sys::proc_path(dir.as_raw_fd(), name)?;
    let mut names = sys::llistxattr(&p)?;
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        if let Some(v) = sys::lgetxattr(&p, &n)? {
            out.push((n.as_bytes().to_vec(), v));
        }
    }
    Ok(out)
}

/// Reads and stats the entries of an open directory, sorted by name.
pub(crate) fn list_dir(dir: BorrowedFd<'_>, abs: &Path) -> Result<Vec<Child>> {
    let names = sys::read_dir_names(dir).map_err(|source| LayerError::Path {
        path: abs.to_path_buf(),
        op: "read directory",
        source,
    })?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path_err = |op, source| LayerError::Path {
            path: abs.join(&name),
            op,
            source,
        };
        let cname = sys::cstr(&name).map_err(|s| path_err("name", s))?;
        let Some(st) = sys::lstat_at(dir, &cname).map_err(|s| path_err("stat", s))? else {
            continue;
        };
        let all_xattrs = read_xattrs(dir, &name).map_err(|s| path_err("read xattrs", s))?;
        out.push(Child {
            name,
            st,
            all_xattrs,
        });
    }
    out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(out)
}

pub(crate) fn rel_join(rel: &[u8], name: &OsStr) -> Vec<u8> {
    let mut p = rel.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name.as_bytes());
    p
}

pub(crate) fn normalize_excludes(exclude: &[PathBuf]) -> Vec<Vec<u8>> {
    exclude
        .iter()
        .map(|p| {
            let comps: Vec<&[u8]> = p
                .as_os_str()
                .as_bytes()
                .split(|b| *b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .collect();
            comps.join(&b'/')
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// Shared writer state of both diff kinds: the tar, pending directory headers, hardlink memory, statistics.
pub(crate) struct Emitter<W: Write> {
    pub(crate) tar: TarWriter<W>,
    pub(crate) stats: DiffStats,
    pub(crate) epoch: Option<i64>,
    pub(crate) owners: OwnerMap,
    /// One slot per directory level being walked: `Some` while its header waits for a first entry below it.
    pub(crate) pending: Vec<Option<Node>>,
    /// (dev, ino) of multiply-linked files → the path a later link points at.
    pub(crate) links: HashMap<(u64, u64), Vec<u8>>,
    pub(crate) root: PathBuf,
    pub(crate) excludes: Vec<Vec<u8>>,
}

impl<W: Write> Emitter<W> {
    fn clamp(&self, t: i64) -> i64 {
        match self.epoch {
            Some(e) if t > e => e,
            _ => t,
        }
    }

    pub(crate) fn excluded(&self, rel: &[u8]) -> bool {
        self.excludes.iter().any(|e| e.as_slice() == rel)
    }

    fn werr(&self, rel: &[u8], source: io::Error) -> LayerError {
        LayerError::Write {
            path: PathBuf::from(OsStr::from_bytes(rel)),
            source,
        }
    }

    pub(crate) fn abs(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    /// Writes pending ancestor directories, then `node`.
    pub(crate) fn emit(&mut self, node: &Node, data: Option<&mut dyn Read>) -> Result<()> {
        for i in 0..self.pending.len() {
            if let Some(dir) = self.pending[i].take() {
                self.tar
                    .append(&dir, None)
                    .map_err(|s| self.werr(&dir.path, s))?;
                self.count(&dir);
            }
        }
        self.tar
            .append(node, data)
            .map_err(|s| self.werr(&node.path, s))?;
        self.count(node);
        Ok(())
    }

    fn count(&mut self, node: &Node) {
        self.stats.entries += 1;
        match node.kind {
            Kind::File => {
                self.stats.files += 1;
                self.stats.bytes += node.size;
            }
            Kind::Dir => self.stats.dirs += 1,
            Kind::Symlink(_) => self.stats.symlinks += 1,
            Kind::Link(_) => self.stats.hardlinks += 1,
            Kind::Char(..) | Kind::Block(..) | Kind::Fifo => self.stats.specials += 1,
        }
    }

    pub(crate) fn whiteout(&mut self, dir_rel: &[u8], name: &OsStr, mtime: i64) -> Result<()> {
        let mut wname = OsString::from(WHITEOUT_PREFIX);
        wname.push(name);
        let node = Node {
            path: rel_join(dir_rel, &wname),
            kind: Kind::File,
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime: self.clamp(mtime),
            size: 0,
            xattrs: Vec::new(),
        };
        self.emit(&node, None)?;
        self.stats.files -= 1;
        self.stats.whiteouts += 1;
        Ok(())
    }

    pub(crate) fn opaque_marker(&mut self, dir_rel: &[u8], dir: &libc::stat) -> Result<()> {
        let node = Node {
            path: rel_join(dir_rel, OsStr::new(OPAQUE_MARKER)),
            kind: Kind::File,
            mode: dir.st_mode & 0o777,
            uid: self.owners.uid(dir.st_uid),
            gid: self.owners.gid(dir.st_gid),
            mtime: self.clamp(dir.st_mtime),
            size: 0,
            xattrs: Vec::new(),
        };
        self.emit(&node, None)?;
        self.stats.files -= 1;
        self.stats.opaque_dirs += 1;
        Ok(())
    }

    /// The tar node of `c` (not for whiteouts); `None` for sockets.
    pub(crate) fn node_of(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        c: &Child,
    ) -> Result<Option<Node>> {
        let st = &c.st;
        let kind = match c.ftype() {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => {
                let cname = sys::cstr(&c.name).map_err(|s| self.perr(rel, "name", s))?;
                let t = sys::readlink_at(dir, &cname).map_err(|s| self.perr(rel, "readlink", s))?;
                Kind::Symlink(t.into_encoded_bytes())
            }
            libc::S_IFCHR => {
                let (ma, mi) = sys::major_minor(st.st_rdev);
                Kind::Char(ma, mi)
            }
            libc::S_IFBLK => {
                let (ma, mi) = sys::major_minor(st.st_rdev);
                Kind::Block(ma, mi)
            }
            libc::S_IFIFO => Kind::Fifo,
            _ => {
                self.stats.skipped += 1;
                return Ok(None);
            }
        };
        let size = if kind == Kind::File {
            st.st_size as u64
        } else {
            0
        };
        Ok(Some(Node {
            path: rel.to_vec(),
            kind,
            mode: st.st_mode & 0o7777,
            uid: self.owners.uid(st.st_uid),
            gid: self.owners.gid(st.st_gid),
            mtime: self.clamp(st.st_mtime),
            size,
            xattrs: c.kept_xattrs(),
        }))
    }

    pub(crate) fn perr(&self, rel: &[u8], op: &'static str, source: io::Error) -> LayerError {
        LayerError::Path {
            path: self.abs(rel),
            op,
            source,
        }
    }

    /// Writes a non-directory node: a hardlink to an earlier path of the same inode, or the node with its content.
    pub(crate) fn emit_leaf(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        c: &Child,
        mut node: Node,
    ) -> Result<()> {
        if c.st.st_nlink > 1 {
            let key = (c.st.st_dev, c.st.st_ino);
            if let Some(first) = self.links.get(&key) {
                node.kind = Kind::Link(first.clone());
                node.size = 0;
                node.xattrs.clear();
                return self.emit(&node, None);
            }
            self.links.insert(key, rel.to_vec());
        }
        if node.kind == Kind::File && node.size > 0 {
            let cname = sys::cstr(&c.name).map_err(|s| self.perr(rel, "name", s))?;
            let fd = sys::openat(dir, &cname, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
                .map_err(|s| self.perr(rel, "open", s))?;
            let mut file = File::from(fd);
            return self.emit(&node, Some(&mut file));
        }
        self.emit(&node, None)
    }

    /// Writes `c` and, for a directory, everything below it (an added subtree).
    pub(crate) fn emit_subtree(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        c: &Child,
    ) -> Result<()> {
        let Some(node) = self.node_of(dir, rel, c)? else {
            return Ok(());
        };
        if node.kind != Kind::Dir {
            return self.emit_leaf(dir, rel, c, node);
        }
        self.emit(&node, None)?;
        let sub = open_dir(dir, &c.name, &self.abs(rel))?;
        let children = list_dir(sub.as_fd(), &self.abs(rel))?;
        self.pending.push(None);
        for ch in &children {
            let crel = rel_join(rel, &ch.name);
            if self.excluded(&crel) {
                continue;
            }
            self.emit_subtree(sub.as_fd(), &crel, ch)?;
        }
        self.pending.pop();
        Ok(())
    }
}

pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &OsStr, abs: &Path) -> Result<OwnedFd> {
    let perr = |source| LayerError::Path {
        path: abs.to_path_buf(),
        op: "open directory",
        source,
    };
    let c = sys::cstr(name).map_err(perr)?;
    sys::open_subdir_read(dir, &c).map_err(perr)
}

pub(crate) fn open_root(path: &Path) -> Result<OwnedFd> {
    let dot = sys::cstr(OsStr::new(".")).expect("no NUL");
    let p = sys::open_dir_path(path).map_err(|source| LayerError::Path {
        path: path.to_path_buf(),
        op: "open directory",
        source,
    })?;
    sys::open_subdir_read(p.as_fd(), &dot).map_err(|source| LayerError::Path {
        path: path.to_path_buf(),
        op: "open directory",
        source,
    })
}

pub(crate) fn lookup(dir: Option<BorrowedFd<'_>>, name: &OsStr) -> io::Result<Option<Child>> {
    let Some(dir) = dir else { return Ok(None) };
    let cname = sys::cstr(name)?;
    let Some(st) = sys::lstat_at(dir, &cname)? else {
        return Ok(None);
    };
    let all_xattrs = read_xattrs(dir, name)?;
    Ok(Some(Child {
        name: name.to_os_string(),
        st,
        all_xattrs,
    }))
}

pub(crate) fn same_dir_meta(a: &Child, b: &Child) -> bool {
    a.st.st_mode == b.st.st_mode
        && a.st.st_uid == b.st.st_uid
        && a.st.st_gid == b.st.st_gid
        && sys::mtime_of(&a.st) == sys::mtime_of(&b.st)
        && a.kept_xattrs() == b.kept_xattrs()
}

/// Walks an overlayfs upper directory and writes the layer tar to `out`.
///
/// Overlay whiteouts (character device 0:0, or a zero-size file with a `trusted.overlay.whiteout` /
/// `user.overlay.whiteout` xattr) become `.wh.NAME`; directories with `overlay.opaque=y` are followed by a
/// `.wh..wh..opq` entry; files linked more than once inside the upper become hardlink entries; xattrs are kept
/// except `*.overlay.*` and `security.selinux`; uid, gid and mode are exact; entries are sorted by name.
/// `exclude` names rootfs paths (like `/etc/resolv.conf`) that are skipped with everything below them.
/// An upper using overlay redirect_dir or metacopy is refused with [`LayerError::UnsupportedOverlay`].
pub fn diff_overlay_upper<W: Write>(
    upper: &Path,
    exclude: &[PathBuf],
    opts: &DiffOptions,
    out: W,
) -> Result<DiffStats> {
    let root = open_root(upper)?;
    let lowers = opts
        .lower
        .iter()
        .map(|l| open_root(l))
        .collect::<Result<Vec<_>>>()?;
    let mut em = Emitter {
        tar: TarWriter::new(out),
        stats: DiffStats::default(),
        epoch: opts.source_date_epoch,
        owners: opts.owners.clone(),
        pending: Vec::new(),
        links: HashMap::new(),
        root: upper.to_path_buf(),
        excludes: normalize_excludes(exclude),
    };
    overlay_walk(&mut em, root.as_fd(), &lowers, b"")?;
    em.tar.finish().map_err(|source| LayerError::Write {
        path: PathBuf::from("<end of archive>"),
        source,
    })?;
    Ok(em.stats)
}

fn overlay_walk<W: Write>(
    em: &mut Emitter<W>,
    dir: BorrowedFd<'_>,
    lowers: &[OwnedFd],
    rel: &[u8],
) -> Result<()> {
    let children = list_dir(dir, &em.abs(rel))?;
    // Sort by the name written to the tar, so whiteouts take the place of their `.wh.` name.
    let mut order: Vec<(Vec<u8>, &Child, bool)> = children
        .iter()
        .map(|c| {
            let wo = c.is_overlay_whiteout();
            let mut n = if wo {
                WHITEOUT_PREFIX.as_bytes().to_vec()
            } else {
                Vec::new()
            };
            n.extend_from_slice(c.name.as_bytes());
            (n, c, wo)
        })
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, c, is_whiteout) in order {
        let crel = rel_join(rel, &c.name);
        if em.excluded(&crel) {
            continue;
        }
        if is_whiteout {
            em.whiteout(rel, &c.name, c.st.st_mtime)?;
            continue;
        }
        if overlay_xattr(&c.all_xattrs, "redirect").is_some() {
            return Err(LayerError::UnsupportedOverlay {
                path: em.abs(&crel),
                feature: "redirect_dir",
            });
        }
        if overlay_xattr(&c.all_xattrs, "metacopy").is_some() {
            return Err(LayerError::UnsupportedOverlay {
                path: em.abs(&crel),
                feature: "metacopy",
            });
        }
        let Some(node) = em.node_of(dir, &crel, c)? else {
            continue;
        };
        if node.kind != Kind::Dir {
            em.emit_leaf(dir, &crel, c, node)?;
            continue;
        }
        let opaque = c.is_opaque();
        let (lower_top, lower_subs) = if opaque {
            (None, Vec::new())
        } else {
            merged_lower_dir(lowers, &c.name, &em.abs(&crel))?
        };
        let lower_same = lower_top.as_ref().is_some_and(|l| same_dir_meta(l, c));
        if lower_same {
            em.pending.push(Some(node));
        } else {
            em.emit(&node, None)?;
            em.pending.push(None);
        }
        if opaque {
            em.opaque_marker(&crel, &c.st)?;
        }
        let sub = open_dir(dir, &c.name, &em.abs(&crel))?;
        overlay_walk(em, sub.as_fd(), &lower_subs, &crel)?;
        em.pending.pop();
    }
    Ok(())
}

/// How `name` looks in the merged view of a stack of lower directories (topmost first): the topmost directory
/// of that name (its metadata counts) and the directories of that name that merge below it, or nothing when the
/// name is not a directory there (absent, whited out, or hidden by a non-directory).
fn merged_lower_dir(
    lowers: &[OwnedFd],
    name: &OsStr,
    abs: &Path,
) -> Result<(Option<Child>, Vec<OwnedFd>)> {
    let perr = |source| LayerError::Path {
        path: abs.to_path_buf(),
        op: "stat lower",
        source,
    };
    let mut top = None;
    let mut subs = Vec::new();
    for l in lowers {
        let Some(found) = lookup(Some(l.as_fd()), name).map_err(perr)? else {
            continue;
        };
        if found.ftype() != libc::S_IFDIR {
            break;
        }
        subs.push(open_dir(l.as_fd(), name, abs)?);
        let opaque = found.is_opaque();
        if top.is_none() {
            top = Some(found);
        }
        if opaque {
            break;
        }
    }
    Ok((top, subs))
}

/// Compares a lower tree with a full copy of it that was changed (`upper`) and writes the layer tar to `out`:
/// added and changed entries (type, mode, owner, size, xattrs, symlink target, device number, and mtime — a
/// differing mtime with equal everything else is settled by comparing content), `.wh.NAME` for deleted ones, and
/// the parent directories of every written entry. Files linked more than once in `upper` become hardlink entries,
/// to an earlier written path or to an unchanged path the lower tree already has. `exclude` as for
/// [`diff_overlay_upper`], applied to both trees.
pub fn diff_dirs<W: Write>(
    lower: &Path,
    upper: &Path,
    exclude: &[PathBuf],
    opts: &DiffOptions,
    out: W,
) -> Result<DiffStats> {
    let lroot = open_root(lower)?;
    let uroot = open_root(upper)?;
    let mut em = Emitter {
        tar: TarWriter::new(out),
        stats: DiffStats::default(),
        epoch: opts.source_date_epoch,
        owners: opts.owners.clone(),
        pending: Vec::new(),
        links: HashMap::new(),
        root: upper.to_path_buf(),
        excludes: normalize_excludes(exclude),
    };
    let ctx = DirsCtx {
        lower_root: lower.to_path_buf(),
        always_compare: opts.always_compare_content,
    };
    dirs_walk(&mut em, &ctx, lroot.as_fd(), uroot.as_fd(), b"")?;
    em.tar.finish().map_err(|source| LayerError::Write {
        path: PathBuf::from("<end of archive>"),
        source,
    })?;
    Ok(em.stats)
}

struct DirsCtx {
    lower_root: PathBuf,
    always_compare: bool,
}

fn dirs_walk<W: Write>(
    em: &mut Emitter<W>,
    ctx: &DirsCtx,
    ldir: BorrowedFd<'_>,
    udir: BorrowedFd<'_>,
    rel: &[u8],
) -> Result<()> {
    let lchildren = list_dir(ldir, &ctx.lower_root.join(OsStr::from_bytes(rel)))?;
    let uchildren = list_dir(udir, &em.abs(rel))?;
    let mut lmap: HashMap<&[u8], &Child> =
        lchildren.iter().map(|c| (c.name.as_bytes(), c)).collect();
    // (name written to the tar, lower, upper)
    let mut order: Vec<(Vec<u8>, Option<&Child>, Option<&Child>)> = Vec::new();
    for u in &uchildren {
        let l = lmap.remove(u.name.as_bytes());
        order.push((u.name.as_bytes().to_vec(), l, Some(u)));
    }
    for l in lmap.into_values() {
        let mut n = WHITEOUT_PREFIX.as_bytes().to_vec();
        n.extend_from_slice(l.name.as_bytes());
        order.push((n, Some(l), None));
    }
    order.sort_by(|a, b| a.0.cmp(&b.0));

    for (_, l, u) in order {
        let name = u.or(l).map(|c| c.name.clone()).expect("one side exists");
        let crel = rel_join(rel, &name);
        if em.excluded(&crel) {
            continue;
        }
        let (l, u) = match (l, u) {
            (Some(l), None) => {
                em.whiteout(rel, &name, l.st.st_mtime)?;
                continue;
            }
            (None, Some(u)) => {
                em.emit_subtree(udir, &crel, u)?;
                continue;
            }
            (Some(l), Some(u)) => (l, u),
            (None, None) => unreachable!(),
        };
        if l.ftype() != u.ftype() {
            em.emit_subtree(udir, &crel, u)?;
            continue;
        }
        if u.ftype() == libc::S_IFDIR {
            let Some(node) = em.node_of(udir, &crel, u)? else {
                continue;
            };
            if same_dir_meta(l, u) {
                em.pending.push(Some(node));
            } else {
                em.emit(&node, None)?;
                em.pending.push(None);
            }
            let lsub = open_dir(ldir, &name, &ctx.lower_root.join(OsStr::from_bytes(&crel)))?;
            let usub = open_dir(udir, &name, &em.abs(&crel))?;
            dirs_walk(em, ctx, lsub.as_fd(), usub.as_fd(), &crel)?;
            em.pending.pop();
            continue;
        }
        if unchanged(ctx, ldir, udir, l, u).map_err(|s| em.perr(&crel, "compare with lower", s))? {
            if u.st.st_nlink > 1 {
                em.links
                    .entry((u.st.st_dev, u.st.st_ino))
                    .or_insert_with(|| crel.clone());
            }
            continue;
        }
        let Some(node) = em.node_of(udir, &crel, u)? else {
            continue;
        };
        em.emit_leaf(udir, &crel, u, node)?;
    }
    Ok(())
}

/// Whether a non-directory of the same type in both trees is unchanged.
fn unchanged(
    ctx: &DirsCtx,
    ldir: BorrowedFd<'_>,
    udir: BorrowedFd<'_>,
    l: &Child,
    u: &Child,
) -> io::Result<bool> {
    let (ls, us) = (&l.st, &u.st);
    if ls.st_mode != us.st_mode || ls.st_uid != us.st_uid || ls.st_gid != us.st_gid {
        return Ok(false);
    }
    if l.kept_xattrs() != u.kept_xattrs() {
        return Ok(false);
    }
    match u.ftype() {
        libc::S_IFLNK => {
            let ln = sys::cstr(&l.name)?;
            let un = sys::cstr(&u.name)?;
            Ok(sys::readlink_at(ldir, &ln)? == sys::readlink_at(udir, &un)?)
        }
        libc::S_IFCHR | libc::S_IFBLK => Ok(ls.st_rdev == us.st_rdev),
        libc::S_IFREG => {
            if ls.st_size != us.st_size {
                return Ok(false);
            }
            let same_mtime = sys::mtime_of(ls) == sys::mtime_of(us);
            if same_mtime && !ctx.always_compare {
                return Ok(true);
            }
            same_content(ldir, &l.name, udir, &u.name)
        }
        _ => Ok(true),
    }
}

pub(crate) fn same_content(
    ldir: BorrowedFd<'_>,
    lname: &OsStr,
    udir: BorrowedFd<'_>,
    uname: &OsStr,
) -> io::Result<bool> {
    let open = |d: BorrowedFd<'_>, n: &OsStr| -> io::Result<File> {
        let c: std::ffi::CString = sys::cstr(n)?;
        let c: &CStr = &c;
        Ok(File::from(sys::openat(
            d,
            c,
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        )?))
    };
    let mut a = open(ldir, lname)?;
    let mut b = open(udir, uname)?;
    let mut ba = vec![0u8; 128 * 1024];
    let mut bb = vec![0u8; 128 * 1024];
    loop {
        let n = read_full(&mut a, &mut ba)?;
        let m = read_full(&mut b, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
