//! Thin, fd-relative wrappers over the Linux file-system calls the layer code needs (`*at` calls, xattrs, times).

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// A file timestamp with nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nsecs: i64,
}

impl Timestamp {
    fn to_timespec(self) -> libc::timespec {
        libc::timespec {
            tv_sec: self.secs as libc::time_t,
            tv_nsec: self.nsecs as _,
        }
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cvt_size(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// Turns a path component or path into a C string; interior NULs are an `InvalidInput` error.
pub fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// Opens `path` as a directory handle (`O_PATH | O_DIRECTORY`), following symlinks in `path` itself.
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(2)` with `O_CLOEXEC` added.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the child directory `name` of `dir` without following a symlink (`O_PATH`).
pub fn open_subdir_path(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    openat(
        dir,
        name,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// Opens the child directory `name` of `dir` for reading its entries, without following a symlink.
pub fn open_subdir_read(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// `fstatat(2)` with `AT_SYMLINK_NOFOLLOW`; `Ok(None)` when the name does not exist.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(st))
}

/// File-type bits of a `st_mode`.
pub fn file_type(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

/// `mkdirat(2)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// `symlinkat(2)`: creates `dir/name` pointing at `target`.
pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// `linkat(2)` without following a symlink at the source.
pub fn linkat(
    odir: BorrowedFd<'_>,
    oname: &CStr,
    ndir: BorrowedFd<'_>,
    nname: &CStr,
) -> io::Result<()> {
    cvt(unsafe {
        libc::linkat(
            odir.as_raw_fd(),
            oname.as_ptr(),
            ndir.as_raw_fd(),
            nname.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// `mknodat(2)`.
pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, dev: u64) -> io::Result<()> {
    cvt(unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            name.as_ptr(),
            mode as libc::mode_t,
            dev as libc::dev_t,
        )
    })
    .map(drop)
}

/// `unlinkat(2)`.
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// `fchownat(2)` with `AT_SYMLINK_NOFOLLOW`.
pub fn lchown_at(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    cvt(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// `fchown(2)`.
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

/// `fchmod(2)`.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

/// `fchmodat(2)`; callers only use it on names they just created as non-symlinks.
pub fn fchmodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t, 0) })
        .map(drop)
}

/// Sets atime and mtime of an open file.
pub fn futimens(fd: BorrowedFd<'_>, t: Timestamp) -> io::Result<()> {
    let ts = [t.to_timespec(), t.to_timespec()];
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) }).map(drop)
}

/// Sets atime and mtime of `dir/name` without following a symlink.
pub fn lutimens_at(dir: BorrowedFd<'_>, name: &CStr, t: Timestamp) -> io::Result<()> {
    let ts = [t.to_timespec(), t.to_timespec()];
    cvt(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// `readlinkat(2)`.
pub fn readlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OsString> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = cvt_size(unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
            )
        })?;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(OsString::from_vec(buf));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The names in an open directory (`O_RDONLY`), without `.` and `..`, in directory order.
pub fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let dup = cvt(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    let dirp = unsafe { libc::fdopendir(dup) };
    if dirp.is_null() {
        let e = io::Error::last_os_error();
        unsafe { libc::close(dup) };
        return Err(e);
    }
    unsafe { libc::rewinddir(dirp) };
    let mut names = Vec::new();
    let result = loop {
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir64(dirp) };
        if ent.is_null() {
            let errno = unsafe { *libc::__errno_location() };
            break if errno != 0 {
                Err(io::Error::from_raw_os_error(errno))
            } else {
                Ok(())
            };
        }
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    };
    unsafe { libc::closedir(dirp) };
    result.map(|()| names)
}

/// Removes `dir/name` whatever it is; a directory is removed with everything below it. A missing name is fine.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match unlinkat(dir, name, 0) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::EISDIR) || e.raw_os_error() == Some(libc::EPERM) =>
        {
            // EPERM is what unlink of a directory reports on some file systems.
            match lstat_at(dir, name)? {
                Some(st) if file_type(st.st_mode) == libc::S_IFDIR => {}
                Some(_) => return Err(e),
                None => return Ok(()),
            }
        }
        Err(e) => return Err(e),
    }
    let sub = open_subdir_read(dir, name)?;
    for child in read_dir_names(sub.as_fd())? {
        remove_all_at(sub.as_fd(), &cstr(&child)?)?;
    }
    drop(sub);
    match unlinkat(dir, name, libc::AT_REMOVEDIR) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// A path through `/proc/self/fd` naming `name` inside the directory open as `dir`, for calls that only take paths
/// (`l*xattr`). The walk through the magic link lands in the directory itself; `name` is not followed by `l*` calls.
pub fn proc_path(dir: RawFd, name: &OsStr) -> io::Result<CString> {
    let mut v = format!("/proc/self/fd/{dir}/").into_bytes();
    v.extend_from_slice(name.as_bytes());
    CString::new(v)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

fn split_xattr_names(buf: &[u8]) -> Vec<OsString> {
    buf.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect()
}

/// Lists the extended attribute names of the file at `path` without following a final symlink.
pub fn llistxattr(path: &CStr) -> io::Result<Vec<OsString>> {
    // SAFETY: a NUL-terminated path; the buffer is `len` bytes (or null with 0).
    list_xattrs(|buf, len| unsafe { libc::llistxattr(path.as_ptr(), buf, len) })
}

/// The size-then-read dance of the listxattr calls: `list(buf, len)` is one call; a list that
/// grew in between is read again; unsupported means no names.
fn list_xattrs(mut list: impl FnMut(*mut libc::c_char, usize) -> isize) -> io::Result<Vec<OsString>> {
    loop {
        let n = match cvt_size(list(std::ptr::null_mut(), 0)) {
            Ok(n) => n,
            Err(e) if is_unsupported(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n];
        match cvt_size(list(buf.as_mut_ptr() as *mut libc::c_char, n)) {
            Ok(m) => {
                buf.truncate(m);
                return Ok(split_xattr_names(&buf));
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads one extended attribute of `path` without following a final symlink; `Ok(None)` when it is absent.
pub fn lgetxattr(path: &CStr, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let cname = cstr(name)?;
    // SAFETY: NUL-terminated path and name; the buffer is `len` bytes (or null with 0).
    read_xattr(|buf, len| unsafe { libc::lgetxattr(path.as_ptr(), cname.as_ptr(), buf, len) })
}

/// The size-then-read dance of the getxattr calls: `get(buf, len)` is one call; a value that grew
/// in between is read again; absent (or unsupported) is `Ok(None)`.
fn read_xattr(mut get: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Option<Vec<u8>>> {
    loop {
        let n = match cvt_size(get(std::ptr::null_mut(), 0)) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) || is_unsupported(&e) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; n];
        match cvt_size(get(buf.as_mut_ptr() as *mut libc::c_void, n)) {
            Ok(m) => {
                buf.truncate(m);
                return Ok(Some(buf));
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Sets an extended attribute on `path` without following a final symlink.
pub fn lsetxattr(path: &CStr, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let cname = cstr(name)?;
    cvt(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            cname.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// Sets an extended attribute on an open file or directory.
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let cname = cstr(name)?;
    cvt(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// Whether an error means "this file system or file type does not do xattrs".
pub fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}

/// Whether an error is a permission refusal (`EPERM`, `EACCES`, or `EINVAL` for an id the user namespace cannot map).
pub fn is_permission(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::EINVAL)
    )
}

/// The mtime of a `stat` result.
pub fn mtime_of(st: &libc::stat) -> Timestamp {
    Timestamp {
        secs: st.st_mtime,
        nsecs: st.st_mtime_nsec,
    }
}

/// `makedev(3)`.
pub fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

/// Major and minor numbers of a device number.
pub fn major_minor(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

/// `fstat(2)`.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The ctime of a `stat` result.
pub fn ctime_of(st: &libc::stat) -> Timestamp {
    Timestamp {
        secs: st.st_ctime,
        nsecs: st.st_ctime_nsec,
    }
}

/// The atime of a `stat` result.
pub fn atime_of(st: &libc::stat) -> Timestamp {
    Timestamp {
        secs: st.st_atime,
        nsecs: st.st_atime_nsec,
    }
}

/// Sets atime and mtime of an open file separately.
pub fn futimens2(fd: BorrowedFd<'_>, atime: Timestamp, mtime: Timestamp) -> io::Result<()> {
    let ts = [atime.to_timespec(), mtime.to_timespec()];
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) }).map(drop)
}

/// Sets atime and mtime of `dir/name` separately, without following a symlink.
pub fn lutimens2_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    atime: Timestamp,
    mtime: Timestamp,
) -> io::Result<()> {
    let ts = [atime.to_timespec(), mtime.to_timespec()];
    cvt(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// `ioctl(dst, FICLONE, src)`: makes `dst` share all of `src`'s extents (btrfs, XFS with reflink).
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    cvt(unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) }).map(drop)
}

/// `copy_file_range(2)` from the current offset of `src` to the current offset of `dst`, at most `len` bytes.
pub fn copy_file_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: u64) -> io::Result<usize> {
    cvt_size(unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            std::ptr::null_mut(),
            dst.as_raw_fd(),
            std::ptr::null_mut(),
            len as usize,
            0,
        )
    })
}

/// The birth time of `dir/name` (not following a symlink), when the file system records one.
pub fn btime_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Timestamp>> {
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    cvt(unsafe {
        libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BTIME,
            &mut stx,
        )
    })?;
    if stx.stx_mask & libc::STATX_BTIME == 0 {
        return Ok(None);
    }
    Ok(Some(Timestamp {
        secs: stx.stx_btime.tv_sec,
        nsecs: stx.stx_btime.tv_nsec as i64,
    }))
}

/// Lists the extended attribute names of an open file or directory.
pub fn flistxattr(fd: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // SAFETY: an open descriptor; the buffer is `len` bytes (or null with 0).
    list_xattrs(|buf, len| unsafe { libc::flistxattr(fd.as_raw_fd(), buf, len) })
}

/// Reads one extended attribute of an open file or directory; `Ok(None)` when it is absent.
pub fn fgetxattr(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let cname = cstr(name)?;
    // SAFETY: an open descriptor and a NUL-terminated name; the buffer is `len` bytes.
    read_xattr(|buf, len| unsafe { libc::fgetxattr(fd.as_raw_fd(), cname.as_ptr(), buf, len) })
}
