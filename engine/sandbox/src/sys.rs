//! Thin wrappers over Linux syscalls that `nix` does not cover: the new mount API (`open_tree`,
//! `move_mount`, `mount_setattr`, `fsopen`/`fsconfig`/`fsmount`), `pidfd_open` and `close_range`.
//!
//! Every wrapper here is allocation-free, so it may be called in a forked child.

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::errno::Errno;

pub const OPEN_TREE_CLONE: u32 = 1;
pub const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
pub const AT_RECURSIVE: u32 = 0x8000;
pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const FSOPEN_CLOEXEC: u32 = 1;
const FSMOUNT_CLOEXEC: u32 = 1;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cvt(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

fn cvt_int(r: libc::c_int) -> Result<libc::c_int, Errno> {
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC [| AT_RECURSIVE])`: a detached
/// copy of the mount at `path`, returned as a file descriptor.
pub fn open_tree_clone(path: &CStr, recursive: bool) -> Result<RawFd, Errno> {
    let mut flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: path is a valid NUL-terminated string for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    cvt(r).map(|fd| fd as RawFd)
}

/// Attaches the detached mount `fd` at `target`.
pub fn move_mount_to(fd: RawFd, target: &CStr) -> Result<(), Errno> {
    // SAFETY: both strings are valid NUL-terminated strings for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    cvt(r).map(drop)
}

/// Sets mount attributes (`MOUNT_ATTR_*`) on the mount `fd` refers to, and on its children when
/// `recursive`.
pub fn mount_setattr_fd(fd: RawFd, attr_set: u64, recursive: bool) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: attr outlives the call and its size is passed alongside.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    cvt(r).map(drop)
}

/// `fsopen(fstype, FSOPEN_CLOEXEC)`.
pub fn fsopen(fstype: &CStr) -> Result<RawFd, Errno> {
    // SAFETY: fstype is a valid NUL-terminated string.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    cvt(r).map(|fd| fd as RawFd)
}

/// `fsconfig(fd, FSCONFIG_SET_STRING, key, value, 0)`.
pub fn fsconfig_string(fd: RawFd, key: &CStr, value: &CStr) -> Result<(), Errno> {
    // SAFETY: key and value are valid NUL-terminated strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd,
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    cvt(r).map(drop)
}

/// `fsconfig(fd, FSCONFIG_SET_FLAG, key, NULL, 0)`.
pub fn fsconfig_flag(fd: RawFd, key: &CStr) -> Result<(), Errno> {
    // SAFETY: key is a valid NUL-terminated string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd,
            FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<u8>(),
            0,
        )
    };
    cvt(r).map(drop)
}

/// `fsconfig(fd, FSCONFIG_CMD_CREATE)` then `fsmount(fd, FSMOUNT_CLOEXEC, attrs)`: the new,
/// detached mount with `MOUNT_ATTR_*` flags `attrs`.
pub fn fs_create_and_mount(fd: RawFd, attrs: u64) -> Result<RawFd, Errno> {
    // SAFETY: no pointers are passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd,
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    };
    cvt(r)?;
    // SAFETY: plain integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fd,
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    };
    cvt(r).map(|fd| fd as RawFd)
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: libc::pid_t) -> Result<RawFd, Errno> {
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    cvt(r).map(|fd| fd as RawFd)
}

/// `close_range(first, last, flags)`.
pub fn close_range(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    cvt(r).map(drop)
}

/// `lstat` without allocating.
pub fn lstat(path: &CStr) -> Result<libc::stat, Errno> {
    // SAFETY: st is plain data written by the kernel; path is NUL-terminated.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt_int(libc::lstat(path.as_ptr(), &mut st))?;
        Ok(st)
    }
}

/// Sets `path`'s access and modification times to those of `st` (not following a symlink);
/// without allocating. Best effort: an error is ignored.
pub fn restore_times(path: &CStr, st: &libc::stat) {
    let ts = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: NUL-terminated path and two timespecs on the stack.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
}

/// `fstatat(dirfd, path, AT_SYMLINK_NOFOLLOW)` without allocating.
pub fn fstatat_nofollow(dirfd: RawFd, path: &CStr) -> Result<libc::stat, Errno> {
    // SAFETY: as for lstat.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt_int(libc::fstatat(
            dirfd,
            path.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        ))?;
        Ok(st)
    }
}

/// Whether a stat result is an overlayfs whiteout (a character device 0:0).
pub fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Result of a raw libc call returning an int.
pub fn check(r: libc::c_int) -> Result<libc::c_int, Errno> {
    cvt_int(r)
}
