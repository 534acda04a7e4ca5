//! Applying an uncompressed OCI layer tar onto a flattened rootfs directory: whiteouts, hardlinks, devices, xattrs,
//! ownership and times, with every path resolved beneath the destination without following symlinks.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use tar::EntryType;

use crate::error::{LayerError, Result};
use crate::sys::{self, Timestamp};

/// Name prefix of an OCI whiteout entry.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker entry.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Most warnings kept in [`ApplyStats::warnings`]; further ones are only counted.
const MAX_WARNINGS: usize = 100;

/// How [`apply_layer`] treats ownership, xattrs and device nodes.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Set the uid/gid recorded in the tar (`lchown`). A refusal (`EPERM`, `EINVAL` for an unmapped id) is counted
    /// in [`ApplyStats::chown_failed`] unless [`ApplyOptions::strict_owner`] is set. Default: true.
    pub preserve_owner: bool,
    /// Make a refused `lchown` an error instead of a counted warning. Default: false.
    pub strict_owner: bool,
    /// Apply extended attributes recorded as `SCHILY.xattr.*` PAX records. Failures are counted in
    /// [`ApplyStats::xattr_failed`]. Default: true.
    pub xattrs: bool,
    /// Create character and block device nodes. When false, or when `mknod` is refused, they are skipped and
    /// counted in [`ApplyStats::devices_skipped`]. Default: true.
    pub devices: bool,
    /// Read entry names (and hardlink targets) as Docker's untar does for `ADD`: an absolute name is taken
    /// below `dest` and `..` cancels the component before it; a name that still leaves `dest` is refused.
    /// Default: false (a layer with such names is refused, as a hostile one).
    pub clean_names: bool,
    /// Give every entry this owner (uid, gid) instead of the one its header records (`ADD --chown` of an
    /// archive). Default: none.
    pub owner: Option<(u32, u32)>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            preserve_owner: true,
            strict_owner: false,
            xattrs: true,
            devices: true,
            clean_names: false,
            owner: None,
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries processed (excluding PAX/GNU extension headers).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// Character and block devices created.
    pub devices: u64,
    /// FIFOs created.
    pub fifos: u64,
    /// `.wh.NAME` whiteouts seen.
    pub whiteouts: u64,
    /// `.wh..wh..opq` markers seen.
    pub opaque_dirs: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Device nodes not created (not permitted, or [`ApplyOptions::devices`] is false).
    pub devices_skipped: u64,
    /// Ownership changes refused by the kernel.
    pub chown_failed: u64,
    /// Extended attributes that could not be set.
    pub xattr_failed: u64,
    /// Entries of types a rootfs cannot hold (sockets, tape volumes, unknown types), skipped.
    pub other_skipped: u64,
    /// Human-readable warnings naming the entry, at most 100.
    pub warnings: Vec<String>,
}

impl ApplyStats {
    fn warn(&mut self, msg: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(msg);
        }
    }
}

/// Extracts an uncompressed OCI layer tar onto `dest`, which already holds the lower layers flattened.
///
/// Whiteouts (`.wh.NAME`, `.wh..wh..opq`) remove lower content; entries of this layer itself are never removed by
/// them. A non-directory replaces whatever was at its path, a directory replaces a non-directory and merges into
/// an existing directory. Every parent component is resolved beneath `dest` without following symlinks: entries
/// with absolute paths, `..`, a symlinked parent, or a hardlink target of that kind are refused with
/// [`LayerError::Unsafe`] before anything is written for them. Directory modes and mtimes are set after all entries.
pub fn apply_layer(tar: impl Read, dest: &Path, opts: &ApplyOptions) -> Result<ApplyStats> {
    let root = sys::open_dir_path(dest).map_err(|source| LayerError::Path {
        path: dest.to_path_buf(),
        op: "open destination",
        source,
    })?;
    let mut ap = Applier {
        root: Rc::new(root),
        opts,
        stats: ApplyStats::default(),
        written: HashSet::new(),
        dirs: HashMap::new(),
        cache: None,
        buf: vec![0u8; 256 * 1024],
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|source| LayerError::Tar {
        after: None,
        source,
    })?;
    let mut last: Option<String> = None;
    for entry in entries {
        let mut entry = entry.map_err(|source| LayerError::Tar {
            after: last.clone(),
            source,
        })?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        ap.entry(&mut entry, &name)?;
        last = Some(name);
    }
    ap.finish_dirs()?;
    Ok(ap.stats)
}

/// Splits a tar path into its components, refusing absolute paths and `..` (with `clean`: taking an absolute
/// path below the root and letting `..` cancel the component before it, refusing only a path that leaves the
/// root); `.` and empty components vanish.
fn components<'a>(
    raw: &'a [u8],
    what: &str,
    clean: bool,
) -> std::result::Result<Vec<&'a [u8]>, String> {
    if raw.is_empty() {
        return Err(format!("empty {what}"));
    }
    if raw[0] == b'/' && !clean {
        return Err(format!("absolute {what}"));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if clean => {
                if out.pop().is_none() {
                    return Err(format!("{what} leaves the destination"));
                }
            }
            b".." => return Err(format!("{what} contains '..'")),
            c if c.contains(&0) => return Err(format!("{what} contains a NUL byte")),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// Metadata of one entry that is not in the plain header.
struct EntryMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timestamp,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Mode and mtime of a directory, applied after all entries.
struct DirMeta {
    mode: u32,
    mtime: Timestamp,
}

struct Applier<'o> {
    root: Rc<OwnedFd>,
    opts: &'o ApplyOptions,
    stats: ApplyStats,
    /// Paths this layer created or touched, and their ancestors: whiteouts never remove them.
    written: HashSet<Vec<u8>>,
    /// Directories whose mode and mtime are set at the end, keyed by path ("" is the root).
    dirs: HashMap<Vec<u8>, DirMeta>,
    /// Last resolved parent directory.
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    buf: Vec<u8>,
}

fn parse_pax_time(v: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(v).ok()?;
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let secs: i64 = int.parse().ok()?;
    let mut nsecs: i64 = 0;
    let digits: String = frac.chars().take(9).collect();
    if !digits.is_empty() {
        nsecs = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
        if secs < 0 || int.starts_with('-') {
            nsecs = -nsecs;
        }
    }
    let (secs, nsecs) = if nsecs < 0 {
        (secs - 1, nsecs + 1_000_000_000)
    } else {
        (secs, nsecs)
    };
    Some(Timestamp { secs, nsecs })
}

impl<'o> Applier<'o> {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, name: &str) -> Result<()> {
        let kind = e.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        self.stats.entries += 1;
        let raw = e.path_bytes().into_owned();
        let comps = components(&raw, "path", self.opts.clean_names)
            .map_err(|reason| unsafe_entry(name, reason))?;
        let meta = self.entry_meta(e, name)?;

        if comps.is_empty() {
            return self.root_entry(kind, meta, name);
        }
        let base = *comps.last().unwrap();
        let parent_comps = &comps[..comps.len() - 1];
        if base == OPAQUE_MARKER.as_bytes() {
            self.stats.opaque_dirs += 1;
            return self.opaque(parent_comps, name);
        }
        if let Some(target) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            self.stats.whiteouts += 1;
            return self.whiteout(parent_comps, target, name);
        }

        let kind = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => EntryType::Regular,
            EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => kind,
            other => {
                self.stats.other_skipped += 1;
                self.stats.warn(format!(
                    "{name}: skipped entry of unsupported type {other:?}"
                ));
                return Ok(());
            }
        };
        if (kind == EntryType::Char || kind == EntryType::Block) && !self.opts.devices {
            self.stats.devices_skipped += 1;
            self.stats.warn(format!("{name}: device node skipped"));
            return Ok(());
        }

        // Hardlink targets are resolved before anything at the entry's own path changes.
        let link_target = if kind == EntryType::Link {
            let lraw = e
                .link_name_bytes()
                .map(|c| c.into_owned())
                .unwrap_or_default();
            let lcomps = components(&lraw, "hardlink target", self.opts.clean_names)
                .map_err(|reason| unsafe_entry(name, reason))?;
            if lcomps.is_empty() {
                return Err(unsafe_entry(
                    name,
                    "hardlink target is the root directory".into(),
                ));
            }
            let lbase = *lcomps.last().unwrap();
            let lparent = self
                .resolve(&lcomps[..lcomps.len() - 1], false, name, "hardlink target")?
                .ok_or_else(|| {
                    bad_entry(
                        name,
                        format!("hardlink target {:?} does not exist", os(&lraw)),
                    )
                })?;
            let lc = sys::cstr(os(lbase)).map_err(|s| io_entry(name, "hardlink target", s))?;
            let lst = sys::lstat_at(lparent.as_fd(), &lc)
                .map_err(|s| io_entry(name, "stat hardlink target", s))?
                .ok_or_else(|| {
                    bad_entry(
                        name,
                        format!("hardlink target {:?} does not exist", os(&lraw)),
                    )
                })?;
            if sys::file_type(lst.st_mode) == libc::S_IFDIR {
                return Err(bad_entry(
                    name,
                    format!("hardlink target {:?} is a directory", os(&lraw)),
                ));
            }
            Some((lparent, lc, lst))
        } else {
            None
        };

        let parent = self
            .resolve(parent_comps, true, name, "parent")?
            .expect("created parents exist");
        let pfd = parent.as_fd();
        let cname = sys::cstr(os(base)).map_err(|s| io_entry(name, "name", s))?;
        let existing = sys::lstat_at(pfd, &cname).map_err(|s| io_entry(name, "stat", s))?;
        let path_key = join(&comps);
        let rewritten = self.written.contains(&path_key);
        self.mark_written(&comps);

        if let Some(ex) = existing {
            let ex_dir = sys::file_type(ex.st_mode) == libc::S_IFDIR;
            let same_inode = link_target
                .as_ref()
                .is_some_and(|(_, _, lst)| lst.st_dev == ex.st_dev && lst.st_ino == ex.st_ino);
            if same_inode {
                self.stats.hardlinks += 1;
                return Ok(());
            }
            if !(ex_dir && kind == EntryType::Directory) {
                sys::remove_all_at(pfd, &cname)
                    .map_err(|s| io_entry(name, "remove existing", s))?;
                if ex_dir {
                    self.cache = None;
                    if rewritten {
                        // A directory of this very layer is replaced: forget its pending metadata.
                        self.dirs.retain(|k, _| !is_under(k, &path_key));
                    }
                }
            }
        }

        match kind {
            EntryType::Regular => {
                let fd = sys::openat(
                    pfd,
                    &cname,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )
                .map_err(|s| io_entry(name, "create file", s))?;
                let mut file = File::from(fd);
                let mut written = 0u64;
                loop {
                    let n = match e.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(source) => {
                            return Err(LayerError::Tar {
                                after: Some(name.to_string()),
                                source,
                            });
                        }
                    };
                    file.write_all(&self.buf[..n])
                        .map_err(|s| io_entry(name, "write file", s))?;
                    written += n as u64;
                }
                self.stats.bytes += written;
                self.stats.files += 1;
                let fd = file.as_fd();
                if self.opts.preserve_owner {
                    let r = sys::fchown(fd, meta.uid, meta.gid);
                    self.chown_result(r, name)?;
                }
                sys::fchmod(fd, meta.mode).map_err(|s| io_entry(name, "chmod", s))?;
                self.set_xattrs_fd(fd, &meta.xattrs, name);
                sys::futimens(fd, meta.mtime).map_err(|s| io_entry(name, "set mtime", s))?;
            }
            EntryType::Directory => {
                if existing.is_none_or(|ex| sys::file_type(ex.st_mode) != libc::S_IFDIR) {
                    sys::mkdirat(pfd, &cname, 0o700).map_err(|s| io_entry(name, "mkdir", s))?;
                }
                let dfd = sys::open_subdir_read(pfd, &cname)
                    .map_err(|s| io_entry(name, "open directory", s))?;
                if self.opts.preserve_owner {
                    let r = sys::fchown(dfd.as_fd(), meta.uid, meta.gid);
                    self.chown_result(r, name)?;
                }
                self.set_xattrs_fd(dfd.as_fd(), &meta.xattrs, name);
                self.dirs.insert(
                    path_key,
                    DirMeta {
                        mode: meta.mode,
                        mtime: meta.mtime,
                    },
                );
                self.stats.dirs += 1;
            }
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                if target.is_empty() {
                    return Err(bad_entry(name, "symlink with an empty target".into()));
                }
                let ctarget =
                    sys::cstr(os(&target)).map_err(|s| io_entry(name, "symlink target", s))?;
                sys::symlinkat(&ctarget, pfd, &cname).map_err(|s| io_entry(name, "symlink", s))?;
                self.node_meta(pfd, base, &cname, &meta, name, false)?;
                self.stats.symlinks += 1;
            }
            EntryType::Link => {
                let (lparent, lc, _) = link_target.expect("resolved above");
                sys::linkat(lparent.as_fd(), &lc, pfd, &cname)
                    .map_err(|s| io_entry(name, "hardlink", s))?;
                self.stats.hardlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ftype, dev) = match kind {
                    EntryType::Fifo => (libc::S_IFIFO, 0),
                    _ => {
                        let h = e.header();
                        let major = h.device_major().ok().flatten().unwrap_or(0);
                        let minor = h.device_minor().ok().flatten().unwrap_or(0);
                        let t = if kind == EntryType::Char {
                            libc::S_IFCHR
                        } else {
                            libc::S_IFBLK
                        };
                        (t, sys::makedev(major, minor))
                    }
                };
                match sys::mknodat(pfd, &cname, ftype | (meta.mode & 0o777), dev) {
                    Ok(()) => {}
                    Err(err) if ftype != libc::S_IFIFO && sys::is_permission(&err) => {
                        self.stats.devices_skipped += 1;
                        self.stats
                            .warn(format!("{name}: device node not created: {err}"));
                        return Ok(());
                    }
                    Err(s) => return Err(io_entry(name, "mknod", s)),
                }
                self.node_meta(pfd, base, &cname, &meta, name, true)?;
                if ftype == libc::S_IFIFO {
                    self.stats.fifos += 1;
                } else {
                    self.stats.devices += 1;
                }
            }
            _ => unreachable!("filtered above"),
        }
        Ok(())
    }

    /// Reads mode, owner, mtime (with PAX sub-second precision) and xattrs of an entry.
    fn entry_meta<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, name: &str) -> Result<EntryMeta> {
        let h = e.header();
        let bad = |what: &str, s: io::Error| bad_entry(name, format!("bad {what} field: {s}"));
        let mode = h.mode().map_err(|s| bad("mode", s))? & 0o7777;
        let uid = h.uid().map_err(|s| bad("uid", s))?;
        let gid = h.gid().map_err(|s| bad("gid", s))?;
        let mut mtime = Timestamp {
            secs: h.mtime().map_err(|s| bad("mtime", s))? as i64,
            nsecs: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().map_err(|s| bad("pax", s))? {
            for rec in pax {
                let rec = rec.map_err(|s| bad("pax", s))?;
                let key = rec.key_bytes();
                if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((os(x).to_os_string(), rec.value_bytes().to_vec()));
                } else if key == b"mtime"
                    && let Some(t) = parse_pax_time(rec.value_bytes())
                {
                    mtime = t;
                }
            }
        }
        let uid =
            u32::try_from(uid).map_err(|_| bad_entry(name, format!("uid {uid} out of range")))?;
        let gid =
            u32::try_from(gid).map_err(|_| bad_entry(name, format!("gid {gid} out of range")))?;
        let (uid, gid) = self.opts.owner.unwrap_or((uid, gid));
        Ok(EntryMeta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn root_entry(&mut self, kind: EntryType, meta: EntryMeta, name: &str) -> Result<()> {
        if kind != EntryType::Directory {
            return Err(bad_entry(name, "the root entry is not a directory".into()));
        }
        let dot = sys::cstr(OsStr::new(".")).expect("no NUL");
        let dfd = sys::open_subdir_read(self.root.as_fd(), &dot)
            .map_err(|s| io_entry(name, "open root", s))?;
        if self.opts.preserve_owner {
            let r = sys::fchown(dfd.as_fd(), meta.uid, meta.gid);
            self.chown_result(r, name)?;
        }
        self.set_xattrs_fd(dfd.as_fd(), &meta.xattrs, name);
        self.dirs.insert(
            Vec::new(),
            DirMeta {
                mode: meta.mode,
                mtime: meta.mtime,
            },
        );
        self.stats.dirs += 1;
        Ok(())
    }

    /// Owner, mode, xattrs and mtime of a node that has no open descriptor (symlink, device, fifo).
    fn node_meta(
        &mut self,
        pfd: BorrowedFd<'_>,
        base: &[u8],
        cname: &std::ffi::CStr,
        meta: &EntryMeta,
        name: &str,
        chmod: bool,
    ) -> Result<()> {
        if self.opts.preserve_owner {
            let r = sys::lchown_at(pfd, cname, meta.uid, meta.gid);
            self.chown_result(r, name)?;
        }
        if chmod {
            sys::fchmodat(pfd, cname, meta.mode).map_err(|s| io_entry(name, "chmod", s))?;
        }
        if self.opts.xattrs && !meta.xattrs.is_empty() {
            match sys::proc_path(pfd.as_raw_fd(), os(base)) {
                Ok(p) => {
                    for (k, v) in &meta.xattrs {
                        if let Err(err) = sys::lsetxattr(&p, k, v) {
                            self.xattr_failed(name, k, err);
                        }
                    }
                }
                Err(err) => self.xattr_failed(name, OsStr::new("*"), err),
            }
        }
        sys::lutimens_at(pfd, cname, meta.mtime).map_err(|s| io_entry(name, "set mtime", s))
    }

    fn set_xattrs_fd(&mut self, fd: BorrowedFd<'_>, xattrs: &[(OsString, Vec<u8>)], name: &str) {
        if !self.opts.xattrs {
            return;
        }
        for (k, v) in xattrs {
            if let Err(err) = sys::fsetxattr(fd, k, v) {
                self.xattr_failed(name, k, err);
            }
        }
    }

    fn xattr_failed(&mut self, name: &str, key: &OsStr, err: io::Error) {
        self.stats.xattr_failed += 1;
        self.stats.warn(format!(
            "{name}: xattr {} not set: {err}",
            key.to_string_lossy()
        ));
    }

    fn chown_result(&mut self, r: io::Result<()>, name: &str) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            Err(err) if sys::is_permission(&err) && !self.opts.strict_owner => {
                self.stats.chown_failed += 1;
                self.stats.warn(format!("{name}: owner not set: {err}"));
                Ok(())
            }
            Err(s) => Err(io_entry(name, "chown", s)),
        }
    }

    fn mark_written(&mut self, comps: &[&[u8]]) {
        for i in (1..=comps.len()).rev() {
            if !self.written.insert(join(&comps[..i])) {
                break;
            }
        }
    }

    /// Opens the directory named by `comps` beneath the root without following symlinks. With `create`, missing
    /// directories are made (mode 0755); without it, a missing component gives `Ok(None)`.
    fn resolve(
        &mut self,
        comps: &[&[u8]],
        create: bool,
        name: &str,
        what: &str,
    ) -> Result<Option<Rc<OwnedFd>>> {
        if comps.is_empty() {
            return Ok(Some(self.root.clone()));
        }
        let key = join(comps);
        if let Some((k, fd)) = &self.cache
            && *k == key
        {
            return Ok(Some(fd.clone()));
        }
        let mut cur = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            let cc = sys::cstr(os(c)).map_err(|s| io_entry(name, "path", s))?;
            let next = match sys::open_subdir_path(cur.as_fd(), &cc) {
                Ok(fd) => fd,
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    if !create {
                        return Ok(None);
                    }
                    match sys::mkdirat(cur.as_fd(), &cc, 0o755) {
                        Ok(()) => {}
                        Err(e2) if e2.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(s) => return Err(io_entry(name, "create parent directory", s)),
                    }
                    sys::open_subdir_path(cur.as_fd(), &cc)
                        .map_err(|s| io_entry(name, "open parent directory", s))?
                }
                Err(err)
                    if matches!(err.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) =>
                {
                    let prefix = String::from_utf8_lossy(&join(&comps[..=i])).into_owned();
                    let st = sys::lstat_at(cur.as_fd(), &cc)
                        .map_err(|s| io_entry(name, "stat parent", s))?;
                    return Err(match st {
                        Some(st) if sys::file_type(st.st_mode) == libc::S_IFLNK => {
                            unsafe_entry(name, format!("{what} component {prefix:?} is a symlink"))
                        }
                        _ => bad_entry(
                            name,
                            format!("{what} component {prefix:?} is not a directory"),
                        ),
                    });
                }
                Err(s) => return Err(io_entry(name, "open parent directory", s)),
            };
            cur = Rc::new(next);
        }
        self.cache = Some((key, cur.clone()));
        Ok(Some(cur))
    }

    fn whiteout(&mut self, parent_comps: &[&[u8]], target: &[u8], name: &str) -> Result<()> {
        if target.is_empty() || target == b"." || target == b".." {
            return Err(unsafe_entry(name, "whiteout of an invalid name".into()));
        }
        let mut full: Vec<&[u8]> = parent_comps.to_vec();
        full.push(target);
        let key = join(&full);
        let Some(parent) = self.resolve(parent_comps, false, name, "whiteout parent")? else {
            return Ok(());
        };
        let cname = sys::cstr(os(target)).map_err(|s| io_entry(name, "name", s))?;
        let existed =
            sys::lstat_at(parent.as_fd(), &cname).map_err(|s| io_entry(name, "stat", s))?;
        if self.written.contains(&key) {
            // Whiteouts hide lower layers only, never entries of the same layer: of a directory this layer
            // wrote into, only the lower content goes.
            if existed.is_some_and(|st| sys::file_type(st.st_mode) == libc::S_IFDIR) {
                let dfd = sys::open_subdir_read(parent.as_fd(), &cname)
                    .map_err(|s| io_entry(name, "open directory", s))?;
                self.clear_lower(dfd.as_fd(), &key, name)?;
                self.cache = None;
            }
            return Ok(());
        }
        if let Some(st) = existed {
            sys::remove_all_at(parent.as_fd(), &cname)
                .map_err(|s| io_entry(name, "remove whited-out path", s))?;
            if sys::file_type(st.st_mode) == libc::S_IFDIR {
                self.cache = None;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir_comps: &[&[u8]], name: &str) -> Result<()> {
        let Some(dir) = self.resolve(dir_comps, false, name, "opaque directory")? else {
            return Ok(());
        };
        let dot = sys::cstr(OsStr::new(".")).expect("no NUL");
        let dfd = sys::open_subdir_read(dir.as_fd(), &dot)
            .map_err(|s| io_entry(name, "open opaque directory", s))?;
        let prefix = join(dir_comps);
        self.clear_lower(dfd.as_fd(), &prefix, name)?;
        self.cache = None;
        Ok(())
    }

    /// Removes everything below the open directory `dfd` (path `prefix`) that this layer did not write.
    fn clear_lower(&mut self, dfd: BorrowedFd<'_>, prefix: &[u8], name: &str) -> Result<()> {
        let names =
            sys::read_dir_names(dfd).map_err(|s| io_entry(name, "read opaque directory", s))?;
        for child in names {
            let mut key = prefix.to_vec();
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(child.as_bytes());
            let cc = sys::cstr(&child).map_err(|s| io_entry(name, "name", s))?;
            if self.written.contains(&key) {
                let st = sys::lstat_at(dfd, &cc).map_err(|s| io_entry(name, "stat", s))?;
                if st.is_some_and(|st| sys::file_type(st.st_mode) == libc::S_IFDIR) {
                    let sub = sys::open_subdir_read(dfd, &cc)
                        .map_err(|s| io_entry(name, "open directory", s))?;
                    self.clear_lower(sub.as_fd(), &key, name)?;
                }
            } else {
                sys::remove_all_at(dfd, &cc)
                    .map_err(|s| io_entry(name, "remove lower content", s))?;
            }
        }
        Ok(())
    }

    /// Sets directory modes and mtimes, deepest first, after their contents are in place.
    fn finish_dirs(&mut self) -> Result<()> {
        let mut dirs: Vec<(Vec<u8>, DirMeta)> = self.dirs.drain().collect();
        dirs.sort_by(|a, b| {
            let da = a.0.iter().filter(|c| **c == b'/').count() + usize::from(!a.0.is_empty());
            let db = b.0.iter().filter(|c| **c == b'/').count() + usize::from(!b.0.is_empty());
            db.cmp(&da).then_with(|| a.0.cmp(&b.0))
        });
        self.cache = None;
        for (path, meta) in dirs {
            let name = String::from_utf8_lossy(&path).into_owned();
            let comps: Vec<&[u8]> = path
                .split(|b| *b == b'/')
                .filter(|c| !c.is_empty())
                .collect();
            let (parent, base): (Rc<OwnedFd>, &[u8]) = if comps.is_empty() {
                (self.root.clone(), b".")
            } else {
                match self.resolve(&comps[..comps.len() - 1], false, &name, "parent") {
                    Ok(Some(p)) => (p, comps[comps.len() - 1]),
                    Ok(None)
                    | Err(LayerError::BadEntry { .. })
                    | Err(LayerError::Unsafe { .. }) => continue,
                    Err(e) => return Err(e),
                }
            };
            let cc = sys::cstr(os(base)).map_err(|s| io_entry(&name, "name", s))?;
            let dfd = match sys::open_subdir_read(parent.as_fd(), &cc) {
                Ok(fd) => fd,
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue;
                }
                Err(s) => return Err(io_entry(&name, "open directory", s)),
            };
            sys::fchmod(dfd.as_fd(), meta.mode).map_err(|s| io_entry(&name, "chmod", s))?;
            sys::futimens(dfd.as_fd(), meta.mtime).map_err(|s| io_entry(&name, "set mtime", s))?;
        }
        Ok(())
    }
}

/// Whether `path` equals `dir` or lies below it.
fn is_under(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/')
}

fn unsafe_entry(name: &str, reason: String) -> LayerError {
    LayerError::Unsafe {
        entry: name.to_string(),
        reason,
    }
}

fn bad_entry(name: &str, reason: String) -> LayerError {
    LayerError::BadEntry {
        entry: name.to_string(),
        reason,
    }
}

fn io_entry(name: &str, op: &'static str, source: io::Error) -> LayerError {
    LayerError::Entry {
        entry: name.to_string(),
        op,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_escape() {
        assert!(components(b"/etc/passwd", "path", false).is_err());
        assert!(components(b"a/../../x", "path", false).is_err());
        assert!(components(b"", "path", false).is_err());
        assert_eq!(
            components(b"./a//b/./c/", "path", false).unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(components(b"./", "path", false).unwrap().is_empty());
        // As Docker's untar reads ADD's archives.
        assert_eq!(
            components(b"/abs/x", "path", true).unwrap(),
            vec![b"abs".as_slice(), b"x"]
        );
        assert_eq!(
            components(b"a/../b", "path", true).unwrap(),
            vec![b"b".as_slice()]
        );
        assert!(components(b"a/../../x", "path", true).is_err());
        assert!(components(b"../x", "path", true).is_err());
    }

    #[test]
    fn pax_time_parses_fractions() {
        assert_eq!(
            parse_pax_time(b"12.5"),
            Some(Timestamp {
                secs: 12,
                nsecs: 500_000_000
            })
        );
        assert_eq!(parse_pax_time(b"7"), Some(Timestamp { secs: 7, nsecs: 0 }));
        assert_eq!(
            parse_pax_time(b"-1.25"),
            Some(Timestamp {
                secs: -2,
                nsecs: 750_000_000
            })
        );
    }

    #[test]
    fn is_under_matches_components() {
        assert!(is_under(b"a/b", b"a"));
        assert!(is_under(b"a", b"a"));
        assert!(!is_under(b"ab", b"a"));
    }
}
