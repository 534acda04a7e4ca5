//! After a run: removing the mount points the sandbox created from the writable directory,
//! restoring whiteouts they replaced, and undoing copy-ups of parent directories that creating
//! them caused, so that only the step's own changes remain in the upper dir.

use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::Rootfs;
use crate::user::{has_xattr, is_opaque_dir};

/// A path the sandbox created (absolute inside the rootfs, canonical).
pub(crate) struct Created {
    pub path: Vec<u8>,
    /// It replaced a whiteout in the upper dir.
    pub over_whiteout: bool,
}

fn host_path(base: &Path, container: &[u8]) -> PathBuf {
    let rel = container.strip_prefix(b"/").unwrap_or(container);
    base.join(OsStr::from_bytes(rel))
}

/// Removes what the sandbox created and returns the created paths that are not part of the
/// step's result.
pub(crate) fn clean(rootfs: &Rootfs, created: &[Created], copyups: &[Vec<u8>]) -> Vec<PathBuf> {
    let writable = rootfs.writable_dir();
    let mut listed = Vec::new();
    for c in created.iter().rev() {
        let p = host_path(writable, &c.path);
        // Removing the mount point must not change its directory's times (the step's own
        // changes of them are kept).
        let parent = p.parent().map(Path::to_path_buf);
        let parent_times = parent.as_deref().and_then(|d| fs::symlink_metadata(d).ok());
        let removed = match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => match fs::remove_dir(&p) {
                Ok(()) => Ok(true),
                // The step put files in it: they belong to the layer, and so does the directory.
                Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => continue,
                Err(e) => Err(e),
            },
            Ok(m) if m.is_file() && m.len() == 0 => fs::remove_file(&p).map(|()| true),
            // The step replaced the stub with content of its own (after unmounting it).
            Ok(_) => continue,
        };
        match removed {
            Ok(true) if c.over_whiteout => {
                if let Err(e) = nix::sys::stat::mknod(
                    &p,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::empty(),
                    0,
                ) {
                    tracing::warn!("restore the whiteout {}: {e}", p.display());
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("remove the mount point {}: {e}", p.display()),
        }
        if let (Some(d), Some(m)) = (&parent, &parent_times) {
            restore_times(d, m);
        }
        listed.push(PathBuf::from(OsStr::from_bytes(&c.path)));
    }
    listed.reverse();

    if let Rootfs::Overlay {
        lowers,
        upper,
        work,
    } = rootfs
    {
        let mut dirs: Vec<&Vec<u8>> = copyups.iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.iter().filter(|b| **b == b'/').count()));
        dirs.dedup();
        for d in dirs {
            undo_copy_up(upper, lowers, work, d);
        }
    }
    listed
}

/// Sets `path`'s access and modification times to those in `m`.
fn restore_times(path: &Path, m: &fs::Metadata) {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: stat is plain data; only its time fields are read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_atime = m.atime();
    st.st_atime_nsec = m.atime_nsec();
    st.st_mtime = m.mtime();
    st.st_mtime_nsec = m.mtime_nsec();
    crate::sys::restore_times(&c, &st);
}

/// Removes `upper/dir` if it is an unchanged, empty copy of the lower directory. It is renamed
/// into the work directory (same filesystem; overlayfs ignores entries there other than its own
/// `work` and `index`), which its owner deletes: deleting a directory can wait for the disk
/// (online discard), renaming one does not.
fn undo_copy_up(upper: &Path, lowers: &[PathBuf], work: &Path, dir: &[u8]) {
    let p = host_path(upper, dir);
    let Ok(m) = fs::symlink_metadata(&p) else {
        return;
    };
    if !m.is_dir() || is_opaque_dir(&p) {
        return;
    }
    if has_xattr(&p, c"user.overlay.redirect") || has_xattr(&p, c"trusted.overlay.redirect") {
        return;
    }
    let empty = fs::read_dir(&p)
        .map(|mut it| it.next().is_none())
        .unwrap_or(false);
    if !empty {
        return;
    }
    let lower = lowers
        .iter()
        .map(|l| host_path(l, dir))
        .find_map(|l| fs::symlink_metadata(l).ok());
    let Some(lm) = lower else { return };
    if !lm.is_dir()
        || lm.mode() != m.mode()
        || lm.uid() != m.uid()
        || lm.gid() != m.gid()
        || (lm.mtime(), lm.mtime_nsec()) != (m.mtime(), m.mtime_nsec())
    {
        return;
    }
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let aside = work.join(format!("kiln-undone-{}-{seq}", std::process::id()));
    if fs::rename(&p, &aside).is_ok() {
        return;
    }
    if let Err(e) = fs::remove_dir(&p) {
        tracing::warn!("remove the copied-up directory {}: {e}", p.display());
    }
}
