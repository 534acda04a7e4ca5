//! The diff half of the copy-based (`vfs`) working rootfs: [`diff_tree`] compares a lower tree with a copy of it
//! that a step changed and writes the changes as an OCI layer tar, as [`crate::diff_overlay_upper`] does for an
//! overlay upper dir: added and changed entries, `.wh.NAME` for deleted ones, `.wh..wh..opq` for a directory that
//! was deleted and made again, hardlinks as hardlinks, xattrs kept, excluded paths (mount points) left out.
//!
//! With the [`CopyStamp`] of the copy, an entry whose ctime is before the stamp's boundary is unchanged without
//! looking further, and a directory whose ctime is before it has the lower's names, so only entries the step
//! touched are compared (metadata, then content only when all metadata is equal).

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::apply::WHITEOUT_PREFIX;
use crate::diff::{
    Child, DiffOptions, DiffStats, Emitter, lookup, normalize_excludes, open_dir, open_root,
    rel_join, same_content, same_dir_meta,
};
use crate::error::{LayerError, Result};
use crate::sys;
use crate::tarw::TarWriter;
use crate::treecopy::CopyStamp;

/// Compares `lower` with `upper`, a copy of it made by [`crate::copy_tree`] (whose result `stamp` is) and then
/// changed, and writes the layer tar to `out`. Entries are written when added, or when type, mode, owner,
/// xattrs, mtime, size, symlink target, device number or content differ from the lower's (a file linked more
/// than once that the step touched is always written, so its links stay together); a name the lower has and
/// the upper lacks becomes `.wh.NAME`; a directory made after the copy where the lower has one (deleted and
/// recreated) is written with `.wh..wh..opq` and all its entries. Parent directories are written when an entry
/// below them is, or when their own metadata changed. `exclude` names rootfs paths (mount points) left out with
/// everything below them, in both trees. Without a stamp every entry is compared, and a recreated directory is
/// written as whiteouts of what it lost. Output is sorted by name and reproducible.
pub fn diff_tree<W: Write>(
    lower: &Path,
    upper: &Path,
    stamp: Option<&CopyStamp>,
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
        links: std::collections::HashMap::new(),
        root: upper.to_path_buf(),
        excludes: normalize_excludes(exclude),
    };
    let ctx = Ctx {
        lower_root: lower.to_path_buf(),
        stamp,
    };
    let root_touched = match stamp {
        Some(s) => {
            let st = sys::fstat(uroot.as_fd()).map_err(|e| em.perr(b"", "stat", e))?;
            s.touched(&st)
        }
        None => true,
    };
    walk(
        &mut em,
        &ctx,
        lroot.as_fd(),
        uroot.as_fd(),
        b"",
        root_touched,
    )?;
    em.tar.finish().map_err(|source| LayerError::Write {
        path: PathBuf::from("<end of archive>"),
        source,
    })?;
    Ok(em.stats)
}

struct Ctx<'a> {
    lower_root: PathBuf,
    stamp: Option<&'a CopyStamp>,
}

impl Ctx<'_> {
    fn touched(&self, st: &libc::stat) -> bool {
        self.stamp.is_none_or(|s| s.touched(st))
    }

    fn labs(&self, rel: &[u8]) -> PathBuf {
        self.lower_root.join(OsStr::from_bytes(rel))
    }
}

/// A name of a directory with what each tree has there (stat only; xattrs are read when needed).
struct Pair {
    /// The name as written to the tar (`.wh.NAME` for a deletion), for ordering.
    key: Vec<u8>,
    name: OsString,
    lower: Option<libc::stat>,
    upper: Option<libc::stat>,
}

fn stat_names(dir: BorrowedFd<'_>, names: &[OsString]) -> io::Result<Vec<(OsString, libc::stat)>> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let c = sys::cstr(n)?;
        if let Some(st) = sys::lstat_at(dir, &c)? {
            out.push((n.clone(), st));
        }
    }
    Ok(out)
}

fn child(dir: BorrowedFd<'_>, name: &OsStr, em_abs: &Path) -> Result<Child> {
    match lookup(Some(dir), name) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(LayerError::Path {
            path: em_abs.to_path_buf(),
            op: "stat",
            source: io::Error::from_raw_os_error(libc::ENOENT),
        }),
        Err(source) => Err(LayerError::Path {
            path: em_abs.to_path_buf(),
            op: "stat",
            source,
        }),
    }
}

fn walk<W: Write>(
    em: &mut Emitter<W>,
    ctx: &Ctx<'_>,
    ldir: BorrowedFd<'_>,
    udir: BorrowedFd<'_>,
    rel: &[u8],
    dir_touched: bool,
) -> Result<()> {
    let unames = sys::read_dir_names(udir).map_err(|s| em.perr(rel, "read directory", s))?;
    let ups = stat_names(udir, &unames).map_err(|s| em.perr(rel, "stat", s))?;
    let mut pairs: Vec<Pair> = Vec::with_capacity(ups.len());
    if dir_touched {
        // Names may have come and gone: list the lower too.
        let lnames = sys::read_dir_names(ldir).map_err(|source| LayerError::Path {
            path: ctx.labs(rel),
            op: "read directory",
            source,
        })?;
        let lows = stat_names(ldir, &lnames).map_err(|source| LayerError::Path {
            path: ctx.labs(rel),
            op: "stat",
            source,
        })?;
        let mut lmap: std::collections::HashMap<OsString, libc::stat> = lows.into_iter().collect();
        for (name, st) in ups {
            let l = lmap.remove(&name);
            pairs.push(Pair {
                key: name.as_bytes().to_vec(),
                name,
                lower: l,
                upper: Some(st),
            });
        }
        for (name, st) in lmap {
            let mut key = WHITEOUT_PREFIX.as_bytes().to_vec();
            key.extend_from_slice(name.as_bytes());
            pairs.push(Pair {
                key,
                name,
                lower: Some(st),
                upper: None,
            });
        }
    } else {
        // The directory's names are the lower's: look a lower entry up only where it matters.
        for (name, st) in ups {
            let need_lower = sys::file_type(st.st_mode) == libc::S_IFDIR || ctx.touched(&st);
            let lower = if need_lower {
                let c = sys::cstr(&name).map_err(|s| em.perr(rel, "name", s))?;
                sys::lstat_at(ldir, &c).map_err(|source| LayerError::Path {
                    path: ctx.labs(&rel_join(rel, &name)),
                    op: "stat",
                    source,
                })?
            } else {
                // Untouched since the copy: equal to the lower entry.
                Some(st)
            };
            pairs.push(Pair {
                key: name.as_bytes().to_vec(),
                name,
                lower,
                upper: Some(st),
            });
        }
    }
    pairs.sort_by(|a, b| a.key.cmp(&b.key));

    for p in pairs {
        let crel = rel_join(rel, &p.name);
        if em.excluded(&crel) {
            continue;
        }
        let (l, u) = match (p.lower, p.upper) {
            (Some(l), None) => {
                em.whiteout(rel, &p.name, l.st_mtime)?;
                continue;
            }
            (None, Some(_)) => {
                let c = child(udir, &p.name, &em.abs(&crel))?;
                em.emit_subtree(udir, &crel, &c)?;
                continue;
            }
            (Some(l), Some(u)) => (l, u),
            (None, None) => unreachable!("one side exists"),
        };
        let (lt, ut) = (sys::file_type(l.st_mode), sys::file_type(u.st_mode));
        if lt != ut {
            let c = child(udir, &p.name, &em.abs(&crel))?;
            em.emit_subtree(udir, &crel, &c)?;
            continue;
        }
        if ut == libc::S_IFDIR {
            dir_pair(em, ctx, ldir, udir, &crel, &p.name, &u)?;
            continue;
        }
        if !ctx.touched(&u) {
            continue;
        }
        let uc = child(udir, &p.name, &em.abs(&crel))?;
        let lc = child(ldir, &p.name, &ctx.labs(&crel))?;
        let same =
            unchanged(ldir, udir, &lc, &uc).map_err(|s| em.perr(&crel, "compare with lower", s))?;
        // A touched file with several links is written whole, so that its links (new ones too) stay one file.
        let linked = ctx.stamp.is_some() && u.st_nlink > 1;
        if same && !linked {
            if u.st_nlink > 1 {
                em.links
                    .entry((u.st_dev, u.st_ino))
                    .or_insert_with(|| crel.clone());
            }
            continue;
        }
        let Some(node) = em.node_of(udir, &crel, &uc)? else {
            continue;
        };
        em.emit_leaf(udir, &crel, &uc, node)?;
    }
    Ok(())
}

/// A directory both trees have at `crel`.
fn dir_pair<W: Write>(
    em: &mut Emitter<W>,
    ctx: &Ctx<'_>,
    ldir: BorrowedFd<'_>,
    udir: BorrowedFd<'_>,
    crel: &[u8],
    name: &OsStr,
    u: &libc::stat,
) -> Result<()> {
    let touched = ctx.touched(u);
    let usub = open_dir(udir, name, &em.abs(crel))?;
    if touched && recreated(ctx, udir, name, u).map_err(|s| em.perr(crel, "stat", s))? {
        // Deleted and made again: opaque, with everything now in it.
        let uc = child(udir, name, &em.abs(crel))?;
        let Some(node) = em.node_of(udir, crel, &uc)? else {
            return Ok(());
        };
        em.emit(&node, None)?;
        em.opaque_marker(crel, u)?;
        let children = crate::diff::list_dir(usub.as_fd(), &em.abs(crel))?;
        em.pending.push(None);
        for ch in &children {
            let grel = rel_join(crel, &ch.name);
            if em.excluded(&grel) {
                continue;
            }
            em.emit_subtree(usub.as_fd(), &grel, ch)?;
        }
        em.pending.pop();
        return Ok(());
    }
    let uc = child(udir, name, &em.abs(crel))?;
    // Untouched since the copy: the lower's metadata.
    let same_meta = !touched || same_dir_meta(&child(ldir, name, &ctx.labs(crel))?, &uc);
    let Some(node) = em.node_of(udir, crel, &uc)? else {
        return Ok(());
    };
    if same_meta {
        em.pending.push(Some(node));
    } else {
        em.emit(&node, None)?;
        em.pending.push(None);
    }
    let lsub = open_dir(ldir, name, &ctx.labs(crel))?;
    let r = walk(em, ctx, lsub.as_fd(), usub.as_fd(), crel, touched);
    em.pending.pop();
    r
}

/// Whether the upper directory `name` was made after the copy (the lower has a directory of that name too).
fn recreated(
    ctx: &Ctx<'_>,
    udir: BorrowedFd<'_>,
    name: &OsStr,
    u: &libc::stat,
) -> io::Result<bool> {
    let Some(stamp) = ctx.stamp else {
        return Ok(false);
    };
    if !stamp.dir_inodes.contains(&u.st_ino) {
        return Ok(true);
    }
    // The same inode number can be handed out again after a deletion: the birth time tells.
    let c = sys::cstr(name)?;
    Ok(sys::btime_at(udir, &c)?.is_some_and(|b| b >= stamp.boundary))
}

/// Whether a non-directory of the same type in both trees is unchanged: type, mode, owner, xattrs, mtime, and
/// size and content, symlink target or device number.
fn unchanged(ldir: BorrowedFd<'_>, udir: BorrowedFd<'_>, l: &Child, u: &Child) -> io::Result<bool> {
    let (ls, us) = (&l.st, &u.st);
    if ls.st_mode != us.st_mode || ls.st_uid != us.st_uid || ls.st_gid != us.st_gid {
        return Ok(false);
    }
    if sys::mtime_of(ls) != sys::mtime_of(us) {
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
            same_content(ldir, &l.name, udir, &u.name)
        }
        _ => Ok(true),
    }
}
