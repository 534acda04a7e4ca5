//! Layer snapshots: unpacked directory trees under `snapshots/<key>/`. A caller fills a staging
//! directory and publishes it by one rename, so a snapshot is either absent or complete.

use crate::Store;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{remove_tree, tmp_prefix};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A staging directory in the store's `tmp/`. Removed on drop unless published.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    published: bool,
}

impl Staging {
    /// The directory to fill.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published
            && let Err(e) = remove_tree(&self.path)
        {
            tracing::warn!("leaving staging directory behind: {e}");
        }
    }
}

/// Snapshot keys are file names: 1–200 characters of `[A-Za-z0-9._:@+-]`, not starting with `.`.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() || key.len() > 200 {
        return bad("must be 1 to 200 characters");
    }
    if key.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'+' | b'-'))
    {
        return bad("only [A-Za-z0-9._:@+-] are allowed");
    }
    Ok(())
}

impl Store {
    /// A fresh, empty staging directory on the store's filesystem.
    pub fn snapshot_staging(&self) -> Result<Staging> {
        let dir = self.tmp_dir();
        let path = tempfile::Builder::new()
            .prefix(&format!("{}snap-", tmp_prefix()))
            .tempdir_in(&dir)
            .ctx("create staging directory in", &dir)?
            .keep();
        Ok(Staging {
            path,
            published: false,
        })
    }

    /// Publish a filled staging directory as snapshot `key` (atomic rename). If another process
    /// published the same key first, the staging copy is discarded and the existing one is kept.
    /// Returns the snapshot's path.
    pub fn publish_snapshot(&self, key: &str, mut staging: Staging) -> Result<PathBuf> {
        validate_key(key)?;
        let dest = self.root.join("snapshots").join(key);
        // Fresh mtime: prune spares young snapshots for its grace period.
        if let Ok(f) = File::open(&staging.path) {
            let _ = f.set_modified(SystemTime::now());
        }
        match fs::rename(&staging.path, &dest) {
            Ok(()) => {
                staging.published = true;
                let mut p = self.pending_lock();
                if p.depth() > 0 {
                    p.snapshots_dirty = true;
                } else {
                    drop(p);
                    crate::fsutil::sync_dir(&self.root.join("snapshots"))?;
                }
                Ok(dest)
            }
            Err(e) if dest.is_dir() => {
                tracing::debug!("snapshot {key} already published ({e}); discarding staging copy");
                drop(staging);
                Ok(dest)
            }
            Err(e) => Err(e).ctx("rename snapshot into place", dest),
        }
    }

    /// The directory of snapshot `key`, if published.
    pub fn snapshot(&self, key: &str) -> Option<PathBuf> {
        validate_key(key).ok()?;
        let p = self.root.join("snapshots").join(key);
        p.is_dir().then_some(p)
    }

    /// Keys of all published snapshots, sorted.
    pub fn list_snapshots(&self) -> Result<Vec<String>> {
        let dir = self.root.join("snapshots");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let e = e.ctx("read directory", &dir)?;
            if let Some(n) = e.file_name().to_str()
                && validate_key(n).is_ok()
            {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove snapshot `key`: it disappears at once (renamed into `tmp/`), then is deleted.
    /// Returns whether it existed.
    pub fn remove_snapshot(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let p = self.root.join("snapshots").join(key);
        let doomed = self.tmp_dir().join(format!("{}rm-{key}", tmp_prefix()));
        match fs::rename(&p, &doomed) {
            Ok(()) => {
                remove_tree(&doomed)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx("rename snapshot out of the way", p),
        }
    }
}
