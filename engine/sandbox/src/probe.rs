//! [`probe_overlay`]: whether this kernel lets kiln mount the overlay a RUN step would get, with upper and work
//! directories on a given file system — asked by mounting a tiny one in a throw-away child process.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::{Error, UserNs, sys};

/// Mounts a small overlay whose lower, upper and work directories live in a fresh directory under `dir` (use a
/// directory on the file system RUN steps' upper directories will be on), the way the sandbox mounts a step's
/// rootfs: in a new user namespace with `userxattr` for [`UserNs::Auto`] (the caller mapped to root), in a new
/// mount namespace only for [`UserNs::Disabled`]. The mount is made by a forked child and never attached to any
/// mount tree (`fsopen`/`fsconfig`; `mount(2)` in the child's private namespace on kernels without them), so
/// nothing outside the child sees it. `Ok` when the mount works; the kernel's refusal otherwise.
pub fn probe_overlay(dir: &Path, userns: UserNs) -> Result<(), Error> {
    let base = dir.join(format!(
        ".kiln-overlay-probe-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let io = |what: &str| {
        let what = format!("{what} {}", base.display());
        move |source| Error::Io { what, source }
    };
    let _ = std::fs::remove_dir_all(&base);
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(base.join(d)).map_err(io("create the probe directory"))?;
    }
    std::fs::write(base.join("lower/f"), b"").map_err(io("write in the probe directory"))?;
    let r = probe_in(&base, userns);
    let _ = std::fs::remove_dir_all(&base);
    r.map_err(|errno| Error::Sys {
        what: format!("mount overlay (upper and work dirs in {})", dir.display()),
        errno,
    })
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

fn probe_in(base: &Path, userns: UserNs) -> Result<(), Errno> {
    // Everything the child needs, made before forking (the child only makes syscalls).
    let (lower, upper, work, merged) = (
        cpath(&base.join("lower")),
        cpath(&base.join("upper")),
        cpath(&base.join("work")),
        cpath(&base.join("merged")),
    );
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("0 {uid} 1\n");
    let gid_map = format!("0 {gid} 1\n");
    let in_userns = userns == UserNs::Auto;
    let mut legacy = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.join("lower").display(),
        base.join("upper").display(),
        base.join("work").display()
    );
    if in_userns {
        legacy.push_str(",userxattr");
    }
    let legacy = CString::new(legacy).map_err(|_| Errno::EINVAL)?;

    // The child reports through a pipe before it exits: tearing its mount down on exit waits
    // for an RCU grace period (up to a few hundred ms on an idle machine), which nobody needs to
    // wait for.
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Errno::last());
    }
    let (report_rd, report_wr) = (fds[0], fds[1]);
    // SAFETY: the child below only makes async-signal-safe syscalls on data prepared above, then _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = Errno::last();
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(report_rd);
            libc::close(report_wr);
        }
        return Err(e);
    }
    if pid == 0 {
        let code = match child(
            in_userns, &uid_map, &gid_map, &lower, &upper, &work, &merged, &legacy,
        ) {
            Ok(()) => 0,
            Err(e) => e as i32,
        };
        // SAFETY: writing a live 4-byte buffer, then ending the forked child without running the
        // parent's destructors.
        unsafe {
            libc::write(report_wr, code.to_ne_bytes().as_ptr().cast(), 4);
            libc::_exit(if code == 0 { 0 } else { code.clamp(1, 255) })
        };
    }
    // SAFETY: the parent's copy of the write end; the read end is ours.
    unsafe { libc::close(report_wr) };
    let mut report = [0u8; 4];
    let mut got = 0;
    while got < report.len() {
        // SAFETY: reading into the live remainder of `report`.
        let n = unsafe {
            libc::read(
                report_rd,
                report[got..].as_mut_ptr().cast(),
                report.len() - got,
            )
        };
        if n > 0 {
            got += n as usize;
        } else if n == 0 || Errno::last() != Errno::EINTR {
            break;
        }
    }
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(report_rd) };
    if got == report.len() {
        // Reaped in the background: the child may still be dismantling its namespaces.
        let _ = std::thread::Builder::new()
            .name("overlay-probe-reaper".into())
            .spawn(move || {
                let mut status = 0;
                // SAFETY: reaping our own child.
                while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
                    && Errno::last() == Errno::EINTR
                {}
            });
        return match i32::from_ne_bytes(report) {
            0 => Ok(()),
            e => Err(Errno::from_raw(e)),
        };
    }
    // The child died before it could report: its exit status says why.
    let mut status = 0;
    loop {
        // SAFETY: reaping our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && Errno::last() != Errno::EINTR {
            return Err(Errno::last());
        }
    }
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            e => Err(Errno::from_raw(e)),
        }
    } else {
        Err(Errno::ECHILD)
    }
}

fn write_proc(path: &std::ffi::CStr, data: &str) -> Result<(), Errno> {
    // SAFETY: open/write/close on a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(Errno::last());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let e = Errno::last();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(e);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn child(
    in_userns: bool,
    uid_map: &str,
    gid_map: &str,
    lower: &CString,
    upper: &CString,
    work: &CString,
    merged: &CString,
    legacy: &CString,
) -> Result<(), Errno> {
    let flags = if in_userns {
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS
    } else {
        libc::CLONE_NEWNS
    };
    // SAFETY: unshare has no memory preconditions.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(Errno::last());
    }
    if in_userns {
        write_proc(c"/proc/self/setgroups", "deny")?;
        write_proc(c"/proc/self/uid_map", uid_map)?;
        write_proc(c"/proc/self/gid_map", gid_map)?;
    }
    match sys::fsopen(c"overlay") {
        Ok(ctx) => {
            let set = sys::fsconfig_string(ctx, c"lowerdir", lower)
                .and_then(|()| sys::fsconfig_string(ctx, c"upperdir", upper))
                .and_then(|()| sys::fsconfig_string(ctx, c"workdir", work))
                .and_then(|()| {
                    if in_userns {
                        sys::fsconfig_flag(ctx, c"userxattr")
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| sys::fs_create_and_mount(ctx, 0));
            // The mount's descriptor is left to the child's exit (see `probe_in`).
            set.map(|_mnt| ())
        }
        Err(Errno::ENOSYS) => {
            // SAFETY: mount calls on NUL-terminated strings; the namespace is this child's own.
            unsafe {
                if libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(Errno::last());
                }
                if libc::mount(
                    c"overlay".as_ptr(),
                    merged.as_ptr(),
                    c"overlay".as_ptr(),
                    0,
                    legacy.as_ptr().cast(),
                ) != 0
                {
                    return Err(Errno::last());
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_probe_on_a_temp_dir() {
        let t = tempfile::tempdir().unwrap();
        // This kernel mounts overlays in user namespaces (≥ 5.11): the probe must say so.
        probe_overlay(t.path(), UserNs::Auto).unwrap();
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            0,
            "probe left files"
        );
        // Where the probe cannot even make its directories, it says so (and nothing panics).
        std::fs::write(t.path().join("file"), b"").unwrap();
        let err = probe_overlay(&t.path().join("file"), UserNs::Auto).unwrap_err();
        assert!(err.to_string().contains("probe directory"), "{err}");
    }
}
