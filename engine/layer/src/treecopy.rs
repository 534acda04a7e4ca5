//! The copy half of the copy-based (`vfs`) working rootfs: [`copy_tree`] copies a flattened rootfs to a fresh
//! directory with owners, modes, xattrs, hardlinks, device nodes and times kept (reflinks or `copy_file_range`
//! where the file system allows), and returns a [`CopyStamp`] that lets [`crate::diff_tree`] tell what a step
//! changed in the copy afterwards without comparing every file.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::diff::{open_root, rel_join, skip_xattr};
use crate::error::{LayerError, Result};
use crate::sys::{self, Timestamp};

/// What a fresh copy looked like when [`copy_tree`] finished: every change made to the copy afterwards has a
/// ctime at or after [`CopyStamp::boundary`], and a directory the copy did not create is not among
/// [`CopyStamp::dir_inodes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStamp {
    /// A ctime of the copy's file system strictly later than the ctime of every entry the copy wrote.
    pub boundary: Timestamp,
    /// Inode numbers of the directories the copy created.
    pub dir_inodes: HashSet<u64>,
}

impl CopyStamp {
    /// Whether an entry with this stat may have been changed since the copy (ctime at or after the boundary).
    pub fn touched(&self, st: &libc::stat) -> bool {
        sys::ctime_of(st) >= self.boundary
    }

    /// The stamp as bytes (for a working container that outlives the process): boundary, then inode numbers.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut inodes: Vec<u64> = self.dir_inodes.iter().copied().collect();
        inodes.sort_unstable();
        let mut out = Vec::with_capacity(24 + inodes.len() * 8);
        out.extend_from_slice(b"kilnstp1");
        out.extend_from_slice(&self.boundary.secs.to_le_bytes());
        out.extend_from_slice(&self.boundary.nsecs.to_le_bytes());
        for i in inodes {
            out.extend_from_slice(&i.to_le_bytes());
        }
        out
    }

    /// Reads what [`CopyStamp::to_bytes`] wrote; `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<CopyStamp> {
        let rest = b.strip_prefix(b"kilnstp1")?;
        if rest.len() < 16 || !(rest.len() - 16).is_multiple_of(8) {
            return None;
        }
        let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8 bytes"));
        let boundary = Timestamp {
            secs: word(&rest[..8]) as i64,
            nsecs: word(&rest[8..16]) as i64,
        };
        let dir_inodes = rest[16..].chunks_exact(8).map(word).collect();
        Some(CopyStamp {
            boundary,
            dir_inodes,
        })
    }
}

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Entries created (the root not counted).
    pub entries: u64,
    /// Regular files whose content was copied.
    pub files: u64,
    /// Of those, files cloned by reflink (no data copied).
    pub reflinked: u64,
    /// Additional hardlinks made to an already copied file.
    pub hardlinks: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
    /// Ownership changes the kernel refused (rootless copies of files owned by other ids).
    pub chown_failed: u64,
    /// Extended attributes that could not be set.
    pub xattr_failed: u64,
    /// Device nodes the kernel refused to create.
    pub devices_skipped: u64,
}

/// What the walking thread and the file-copying threads share.
struct Shared {
    src_path: PathBuf,
    dst_path: PathBuf,
    /// Whether FICLONE is worth trying (cleared after the first refusal).
    try_clone: AtomicBool,
    /// Whether copy_file_range is worth trying.
    try_range: AtomicBool,
    reflinked: AtomicU64,
    chown_failed: AtomicU64,
    xattr_failed: AtomicU64,
    /// The first error of a file-copying thread.
    error: Mutex<Option<LayerError>>,
}

/// A regular file created (empty) by the walk, to be filled and finished by a copying thread.
struct FileJob {
    src: OwnedFd,
    dst: OwnedFd,
    st: libc::stat,
    rel: Vec<u8>,
}

struct Copier<'s> {
    dst_root: OwnedFd,
    sh: &'s Shared,
    /// Where regular files go to be filled (none: filled by the walking thread).
    jobs: Option<SyncSender<FileJob>>,
    /// (dev, ino) of a source file linked more than once → its path in the copy.
    links: HashMap<(u64, u64), CString>,
    dir_inodes: HashSet<u64>,
    stats: CopyStats,
}

/// Threads filling regular files while the walk goes on: `KILN_COPY_THREADS` when set (0 or 1:
/// the walking thread fills them itself), else the cores available, at most 4.
fn copy_threads() -> usize {
    if let Some(n) = std::env::var("KILN_COPY_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.min(16);
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// Copies the tree at `src` into `dst`, an existing empty directory on the file system the copy should live on
/// (the root directory's owner, mode, xattrs and times are copied onto `dst`). Regular files are cloned with
/// `FICLONE` where the file system shares extents (btrfs, XFS), else copied in the kernel with
/// `copy_file_range`, else read and written in 256 KiB chunks; no file is ever held in memory. Files linked
/// more than once stay linked, symlinks, device nodes, FIFOs and sockets are recreated, owners (refusals are
/// counted, not errors), modes (with setuid/setgid after the owner), xattrs (except overlay bookkeeping and
/// `security.selinux`) and atime/mtime to the nanosecond are kept.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(CopyStamp, CopyStats)> {
    let sroot = open_root(src)?;
    let droot = open_root(dst)?;
    let sh = Shared {
        src_path: src.to_path_buf(),
        dst_path: dst.to_path_buf(),
        try_clone: AtomicBool::new(true),
        try_range: AtomicBool::new(true),
        reflinked: AtomicU64::new(0),
        chown_failed: AtomicU64::new(0),
        xattr_failed: AtomicU64::new(0),
        error: Mutex::new(None),
    };
    let mut c = Copier {
        dst_root: droot.try_clone().map_err(|source| LayerError::Path {
            path: dst.to_path_buf(),
            op: "duplicate descriptor",
            source,
        })?,
        sh: &sh,
        jobs: None,
        links: HashMap::new(),
        dir_inodes: HashSet::new(),
        stats: CopyStats::default(),
    };
    if let Ok(st) = sys::fstat(droot.as_fd()) {
        c.dir_inodes.insert(st.st_ino);
    }
    let threads = copy_threads();
    let walked = std::thread::scope(|scope| {
        if threads > 1 {
            let (tx, rx) = sync_channel::<FileJob>(64);
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..threads {
                let rx = rx.clone();
                let sh = &sh;
                std::thread::Builder::new()
                    .name(format!("kiln-copy-{i}"))
                    .spawn_scoped(scope, move || fill_files(sh, &rx))
                    .map_err(|source| LayerError::Path {
                        path: dst.to_path_buf(),
                        op: "start a copying thread",
                        source,
                    })?;
            }
            c.jobs = Some(tx);
        }
        let r = c.copy_dir(sroot.as_fd(), droot.as_fd(), b"");
        // Closing the queue ends the copying threads; the scope waits for them.
        c.jobs = None;
        r
    });
    walked?;
    if let Some(e) = sh.error.lock().expect("no panics while held").take() {
        return Err(e);
    }
    let sst = sys::fstat(sroot.as_fd()).map_err(|s| c.serr(b"", "stat", s))?;
    c.finish_dir(sroot.as_fd(), droot.as_fd(), &sst, b"")?;
    let boundary = boundary_after(droot.as_fd()).map_err(|source| LayerError::Path {
        path: dst.to_path_buf(),
        op: "take a ctime stamp",
        source,
    })?;
    let mut stats = c.stats;
    stats.reflinked = sh.reflinked.load(Ordering::Relaxed);
    stats.chown_failed += sh.chown_failed.load(Ordering::Relaxed);
    stats.xattr_failed += sh.xattr_failed.load(Ordering::Relaxed);
    Ok((
        CopyStamp {
            boundary,
            dir_inodes: c.dir_inodes,
        },
        stats,
    ))
}

/// A copying thread: fills and finishes the files of the queue until it is closed. After an
/// error (the first is kept) the rest of the queue is only drained.
fn fill_files(sh: &Shared, rx: &Mutex<Receiver<FileJob>>) {
    loop {
        let job = match rx.lock().expect("no panics while held").recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let failed = sh.error.lock().expect("no panics while held").is_some();
        if failed {
            continue;
        }
        if let Err(e) = sh.fill_file(&job) {
            let mut slot = sh.error.lock().expect("no panics while held");
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }
}

/// A ctime of `dir`'s file system later than every ctime already handed out there: an unnamed temporary file is
/// created and its mode changed until its ctime moves past the one it was created with (one clock tick at most
/// on file systems with coarse timestamps; at once with fine-grained ones).
fn boundary_after(dir: BorrowedFd<'_>) -> io::Result<Timestamp> {
    let dot = c".";
    let fd = match sys::openat(dir, dot, libc::O_TMPFILE | libc::O_RDWR, 0o600) {
        Ok(fd) => fd,
        Err(_) => {
            // No O_TMPFILE: a named file, unlinked at once.
            let name = CString::new(format!(".kiln-stamp-{}", std::process::id())).expect("no NUL");
            let fd = sys::openat(
                dir,
                &name,
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600,
            )?;
            sys::unlinkat(dir, &name, 0)?;
            fd
        }
    };
    let start = sys::ctime_of(&sys::fstat(fd.as_fd())?);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut mode = 0o600;
    loop {
        mode ^= 0o044;
        sys::fchmod(fd.as_fd(), mode)?;
        let now = sys::ctime_of(&sys::fstat(fd.as_fd())?);
        if now > start {
            return Ok(now);
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::other("the file system's ctime does not advance"));
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

impl Shared {
    fn serr(&self, rel: &[u8], op: &'static str, source: io::Error) -> LayerError {
        LayerError::Path {
            path: self.src_path.join(OsStr::from_bytes(rel)),
            op,
            source,
        }
    }

    fn derr(&self, rel: &[u8], op: &'static str, source: io::Error) -> LayerError {
        LayerError::Path {
            path: self.dst_path.join(OsStr::from_bytes(rel)),
            op,
            source,
        }
    }

    /// Content, owner, mode, xattrs and times of a regular file the walk created.
    fn fill_file(&self, j: &FileJob) -> Result<()> {
        let (s, d, st, rel) = (j.src.as_fd(), j.dst.as_fd(), &j.st, &j.rel[..]);
        self.copy_data(&j.src, &j.dst, st.st_size as u64)
            .map_err(|e| self.derr(rel, "copy content", e))?;
        self.own(sys::fchown(d, st.st_uid, st.st_gid))
            .map_err(|e| self.derr(rel, "chown", e))?;
        sys::fchmod(d, st.st_mode & 0o7777).map_err(|e| self.derr(rel, "chmod", e))?;
        self.copy_xattrs_fd(s, d, rel)?;
        sys::futimens2(d, sys::atime_of(st), sys::mtime_of(st))
            .map_err(|e| self.derr(rel, "set times", e))
    }

    fn own(&self, r: io::Result<()>) -> io::Result<()> {
        match r {
            Err(e) if sys::is_permission(&e) => {
                self.chown_failed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            r => r,
        }
    }

    /// [`Copier::copy_xattrs`] for open files and directories (no path lookups).
    fn copy_xattrs_fd(&self, s: BorrowedFd<'_>, d: BorrowedFd<'_>, rel: &[u8]) -> Result<()> {
        let names = sys::flistxattr(s).map_err(|e| self.serr(rel, "list xattrs", e))?;
        for n in names {
            if skip_xattr(n.as_bytes()) {
                continue;
            }
            let Some(v) = sys::fgetxattr(s, &n).map_err(|e| self.serr(rel, "read xattr", e))?
            else {
                continue;
            };
            if sys::fsetxattr(d, &n, &v).is_err() {
                self.xattr_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn copy_data(&self, src: &OwnedFd, dst: &OwnedFd, size: u64) -> io::Result<()> {
        if size == 0 {
            return Ok(());
        }
        if self.try_clone.load(Ordering::Relaxed) {
            match sys::ficlone(dst.as_fd(), src.as_fd()) {
                Ok(()) => {
                    self.reflinked.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(_) => self.try_clone.store(false, Ordering::Relaxed),
            }
        }
        let mut done = 0u64;
        if self.try_range.load(Ordering::Relaxed) {
            loop {
                match sys::copy_file_range(
                    src.as_fd(),
                    dst.as_fd(),
                    size.saturating_sub(done).max(1 << 20),
                ) {
                    Ok(0) => return Ok(()),
                    Ok(n) => done += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e)
                        if done == 0
                            && matches!(
                                e.raw_os_error(),
                                Some(libc::EXDEV)
                                    | Some(libc::ENOSYS)
                                    | Some(libc::EOPNOTSUPP)
                                    | Some(libc::EINVAL)
                            ) =>
                    {
                        self.try_range.store(false, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // Plain read/write from where copy_file_range stopped (offsets of both files are at `done`).
        let mut s = File::from(src.try_clone()?);
        let mut d = File::from(dst.try_clone()?);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            d.write_all(&buf[..n])?;
        }
    }
}

impl Copier<'_> {
    fn serr(&self, rel: &[u8], op: &'static str, source: io::Error) -> LayerError {
        self.sh.serr(rel, op, source)
    }

    fn derr(&self, rel: &[u8], op: &'static str, source: io::Error) -> LayerError {
        self.sh.derr(rel, op, source)
    }

    fn own(&mut self, r: io::Result<()>) -> io::Result<()> {
        self.sh.own(r)
    }

    fn copy_xattrs_fd(&mut self, s: BorrowedFd<'_>, d: BorrowedFd<'_>, rel: &[u8]) -> Result<()> {
        self.sh.copy_xattrs_fd(s, d, rel)
    }

    fn copy_dir(&mut self, sdir: BorrowedFd<'_>, ddir: BorrowedFd<'_>, rel: &[u8]) -> Result<()> {
        let mut names =
            sys::read_dir_names(sdir).map_err(|s| self.serr(rel, "read directory", s))?;
        names.sort();
        for name in names {
            let crel = rel_join(rel, &name);
            let cname = sys::cstr(&name).map_err(|s| self.serr(&crel, "name", s))?;
            let Some(st) = sys::lstat_at(sdir, &cname).map_err(|s| self.serr(&crel, "stat", s))?
            else {
                continue;
            };
            self.copy_entry(sdir, ddir, &cname, &crel, &st)?;
        }
        Ok(())
    }

    fn copy_entry(
        &mut self,
        sdir: BorrowedFd<'_>,
        ddir: BorrowedFd<'_>,
        name: &CString,
        rel: &[u8],
        st: &libc::stat,
    ) -> Result<()> {
        self.stats.entries += 1;
        let ftype = sys::file_type(st.st_mode);
        if ftype != libc::S_IFDIR && st.st_nlink > 1 {
            if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                sys::linkat(self.dst_root.as_fd(), first, ddir, name)
                    .map_err(|s| self.derr(rel, "link", s))?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            let crel = CString::new(rel.to_vec()).expect("names have no NUL");
            self.links.insert((st.st_dev, st.st_ino), crel);
        }
        match ftype {
            libc::S_IFDIR => {
                sys::mkdirat(ddir, name, 0o700).map_err(|s| self.derr(rel, "mkdir", s))?;
                let s = sys::open_subdir_read(sdir, name).map_err(|e| self.serr(rel, "open", e))?;
                let d = sys::open_subdir_read(ddir, name).map_err(|e| self.derr(rel, "open", e))?;
                if let Ok(dst) = sys::fstat(d.as_fd()) {
                    self.dir_inodes.insert(dst.st_ino);
                }
                self.copy_dir(s.as_fd(), d.as_fd(), rel)?;
                self.finish_dir(s.as_fd(), d.as_fd(), st, rel)
            }
            libc::S_IFREG => {
                let s = sys::openat(sdir, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
                    .map_err(|e| self.serr(rel, "open", e))?;
                let d = sys::openat(
                    ddir,
                    name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )
                .map_err(|e| self.derr(rel, "create", e))?;
                self.stats.files += 1;
                self.stats.bytes += st.st_size as u64;
                let job = FileJob {
                    src: s,
                    dst: d,
                    st: *st,
                    rel: rel.to_vec(),
                };
                match &self.jobs {
                    Some(tx) => tx.send(job).map_err(|_| {
                        self.derr(rel, "hand to a copying thread", io::Error::other("stopped"))
                    }),
                    None => self.sh.fill_file(&job),
                }
            }
            libc::S_IFLNK => {
                let target =
                    sys::readlink_at(sdir, name).map_err(|e| self.serr(rel, "readlink", e))?;
                let t = sys::cstr(&target).map_err(|e| self.serr(rel, "readlink", e))?;
                sys::symlinkat(&t, ddir, name).map_err(|e| self.derr(rel, "symlink", e))?;
                self.finish_node(sdir, ddir, name, rel, st, false)
            }
            _ => {
                // Character and block devices, FIFOs, sockets.
                match sys::mknodat(ddir, name, ftype | 0o600, st.st_rdev) {
                    Ok(()) => {}
                    Err(e)
                        if sys::is_permission(&e)
                            && matches!(ftype, libc::S_IFCHR | libc::S_IFBLK) =>
                    {
                        self.stats.devices_skipped += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(self.derr(rel, "mknod", e)),
                }
                self.finish_node(sdir, ddir, name, rel, st, true)
            }
        }
    }

    /// Owner, mode (not for symlinks), xattrs and times of a non-directory, non-regular entry just created.
    fn finish_node(
        &mut self,
        sdir: BorrowedFd<'_>,
        ddir: BorrowedFd<'_>,
        name: &CString,
        rel: &[u8],
        st: &libc::stat,
        chmod: bool,
    ) -> Result<()> {
        self.own(sys::lchown_at(ddir, name, st.st_uid, st.st_gid))
            .map_err(|e| self.derr(rel, "chown", e))?;
        if chmod {
            sys::fchmodat(ddir, name, st.st_mode & 0o7777)
                .map_err(|e| self.derr(rel, "chmod", e))?;
        }
        self.copy_xattrs(sdir, ddir, name, rel)?;
        sys::lutimens2_at(ddir, name, sys::atime_of(st), sys::mtime_of(st))
            .map_err(|e| self.derr(rel, "set times", e))
    }

    /// Owner, mode, xattrs and times of a directory, after its entries (which change its mtime).
    fn finish_dir(
        &mut self,
        sdir: BorrowedFd<'_>,
        ddir: BorrowedFd<'_>,
        st: &libc::stat,
        rel: &[u8],
    ) -> Result<()> {
        self.own(sys::fchown(ddir, st.st_uid, st.st_gid))
            .map_err(|e| self.derr(rel, "chown", e))?;
        sys::fchmod(ddir, st.st_mode & 0o7777).map_err(|e| self.derr(rel, "chmod", e))?;
        self.copy_xattrs_fd(sdir, ddir, rel)?;
        sys::futimens2(ddir, sys::atime_of(st), sys::mtime_of(st))
            .map_err(|e| self.derr(rel, "set times", e))
    }

    fn copy_xattrs(
        &mut self,
        sdir: BorrowedFd<'_>,
        ddir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        rel: &[u8],
    ) -> Result<()> {
        let name = OsStr::from_bytes(name.to_bytes());
        let sp = sys::proc_path(sdir.as_raw_fd(), name).map_err(|e| self.serr(rel, "xattrs", e))?;
        let names = sys::llistxattr(&sp).map_err(|e| self.serr(rel, "list xattrs", e))?;
        if names.is_empty() {
            return Ok(());
        }
        let dp = sys::proc_path(ddir.as_raw_fd(), name).map_err(|e| self.derr(rel, "xattrs", e))?;
        for n in names {
            if skip_xattr(n.as_bytes()) {
                continue;
            }
            let Some(v) = sys::lgetxattr(&sp, &n).map_err(|e| self.serr(rel, "read xattr", e))?
            else {
                continue;
            };
            if sys::lsetxattr(&dp, &n, &v).is_err() {
                self.sh.xattr_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
