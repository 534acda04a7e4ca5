//! Small filesystem helpers: atomic file replacement, temp names tagged with the owning pid,
//! and tree removal that copes with read-only directories.

use crate::error::{IoContext, Result};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The prefix of temp entries this process creates: `<pid>-`.
pub(crate) fn tmp_prefix() -> String {
    format!("{}-", std::process::id())
}

/// fsync a directory so a rename into it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx("fsync directory", dir)
}

/// Replace `path` with `bytes` atomically: write a temp file in `tmp`, fsync, rename over `path`.
pub(crate) fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = tempfile::Builder::new()
        .prefix(&tmp_prefix())
        .tempfile_in(tmp)
        .ctx("create temp file in", tmp)?;
    f.write_all(bytes).ctx("write", f.path().to_path_buf())?;
    f.as_file()
        .sync_all()
        .ctx("fsync", f.path().to_path_buf())?;
    fs::set_permissions(f.path(), fs::Permissions::from_mode(0o644))
        .ctx("chmod", f.path().to_path_buf())?;
    f.persist(path)
        .map_err(|e| e.error)
        .ctx("rename into place", path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Read and parse a JSON file; a missing file gives `T::default()`.
pub(crate) fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
) -> Result<T> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| crate::StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).ctx("read", path),
    }
}

/// Remove a file or directory tree. Directories without write/execute permission (as unpacked
/// images often have) are made accessible first. A missing path is not an error.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx("stat", path),
    };
    if !meta.is_dir() {
        return fs::remove_file(path).ctx("remove", path);
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_accessible(path);
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).ctx("remove directory tree", path)
        }
        _ => Ok(()),
    }
}

fn make_accessible(dir: &Path) {
    if let Ok(m) = fs::symlink_metadata(dir)
        && m.is_dir()
    {
        let mode = m.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    make_accessible(&e.path());
                }
            }
        }
    }
}

/// Whether a process with this pid exists (signal 0 semantics via /proc).
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The current time as RFC 3339 with nanoseconds, UTC (`2024-05-01T10:00:00.123456789Z`).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
