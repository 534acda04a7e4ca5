//! Opening paths strictly beneath a directory with `openat2(2)`, so a plugin's path (or a
//! symlink inside a build context) can never reach outside the directory it was given.

use crate::bindings::exporter::kiln::plugin::types::PluginError;
use crate::bindings::frontend::kiln::plugin::context::{Entry, EntryKind};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// How symlinks and absolute paths are treated.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Any resolution leaving the directory fails (a build context).
    Beneath,
}

/// A directory that paths are resolved beneath.
pub struct Beneath {
    dir: OwnedFd,
    mode: Mode,
    display: String,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

impl Beneath {
    /// Open `dir` as the root for later lookups.
    pub fn open(dir: &Path, mode: Mode) -> std::io::Result<Self> {
        let f = File::open(dir)?;
        if !f.metadata()?.is_dir() {
            return Err(std::io::Error::other(format!("{} is not a directory", dir.display())));
        }
        Ok(Self { dir: f.into(), mode, display: dir.display().to_string() })
    }

    fn openat2(&self, path: &str, flags: i32) -> Result<OwnedFd, PluginError> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        if matches!(self.mode, Mode::Beneath) && path.split('/').any(|c| c == "..") {
            return Err(PluginError::Denied(format!("{path:?} leaves the build context")));
        }
        let c = CString::new(rel).map_err(|_| PluginError::InvalidInput(format!("{path:?} contains a NUL byte")))?;
        let resolve = RESOLVE_NO_MAGICLINKS
            | match self.mode {
                Mode::Beneath => RESOLVE_BENEATH,
            };
        let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: 0, resolve };
        // SAFETY: valid dirfd, NUL-terminated path and a correctly sized open_how.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EXDEV) => PluginError::Denied(format!("{path:?} resolves outside {}", self.display)),
                Some(libc::ENOENT) => PluginError::Io(format!("{path}: no such file or directory")),
                _ => PluginError::Io(format!("{path}: {e}")),
            });
        }
        // SAFETY: the syscall returned a new descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// Open a regular file for reading; returns it and its size.
    pub fn open_file(&self, path: &str) -> Result<(File, u64), PluginError> {
        let f = File::from(self.openat2(path, libc::O_RDONLY)?);
        let md = f.metadata().map_err(|e| PluginError::Io(format!("{path}: {e}")))?;
        if !md.is_file() {
            return Err(PluginError::InvalidInput(format!("{path} is not a regular file")));
        }
        Ok((f, md.len()))
    }

    /// Whether `path` exists (without following a final symlink out of the root).
    pub fn exists(&self, path: &str) -> bool {
        self.openat2(path, libc::O_PATH | libc::O_NOFOLLOW).is_ok()
    }

    /// The entries of a directory, sorted by name.
    pub fn list_dir(&self, path: &str) -> Result<Vec<Entry>, PluginError> {
        let fd = self.openat2(path, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let rd = std::fs::read_dir(&proc_path).map_err(|e| PluginError::Io(format!("{path}: {e}")))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| PluginError::Io(format!("{path}: {e}")))?;
            let md = e.path().symlink_metadata().map_err(|e| PluginError::Io(format!("{path}: {e}")))?;
            let ft = md.file_type();
            let kind = if ft.is_symlink() {
                EntryKind::Symlink
            } else if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_file() {
                EntryKind::File
            } else {
                let _ = ft.is_fifo();
                EntryKind::Other
            };
            out.push(Entry {
                name: e.file_name().to_string_lossy().into_owned(),
                kind,
                size: md.len(),
                mode: md.permissions().mode(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
