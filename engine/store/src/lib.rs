//! kiln's content-addressed store: blobs, manifests, image names, layer snapshots, build cache.
//!
//! Layout under the root directory:
//!
//! ```text
//! lock                    flock(2) taken for short exclusive sections (index updates)
//! blobs/sha256/<hex>      content-addressed blobs (manifests, configs, layers)
//! images.json             image records (names → manifest/config digests)
//! containers.json         working containers (buildah from/run/commit)
//! containers/<id>/        a working container's rootfs/ and upper/ directories
//! snapshots/<key>/        unpacked layer trees, published by atomic rename
//! cache/<sha256(key)>.json build cache entries
//! tmp/<pid>-…             temp files and staging directories (same filesystem as the rest)
//! ```
//!
//! Several kiln processes may share one store: blobs and snapshots appear by atomic rename, and
//! the JSON indexes are read-modify-written under the lock and replaced by rename.
//!
//! Each blob, index and cache entry is fsynced before it is published, except inside a
//! [`SyncBatch`] (a build), which makes its blobs and cache entries durable together at its end;
//! see the `durable` module for how that stays crash-safe.

#![warn(missing_docs)]

mod blobs;
mod cache;
mod containers;
mod direct;
mod durable;
mod error;
mod fsutil;
mod gc;
mod images;
mod lists;
mod snapshots;

pub use blobs::{BlobWriter, LayerBlobWriter};
pub use containers::{ContainerRecord, NewContainer};
pub use durable::SyncBatch;
pub use error::{Result, StoreError};
pub use gc::{BadBlob, FsckReport, PruneOptions, PruneReport};
pub use images::{ImageRecord, Removed};
pub use lists::ListRecord;
pub use snapshots::Staging;

use error::IoContext;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

/// A kiln store rooted at a directory. Cheap to clone; holds no open files between calls.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Writes of an open [`SyncBatch`] not yet durable (shared by every `Store` on this root).
    pending: durable::Shared,
}

/// Held while a store-wide exclusive section runs; the lock is released on drop.
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// Open (creating if needed) the store at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        for sub in ["blobs/sha256", "snapshots", "cache", "containers", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).ctx("create directory", &p)?;
        }
        let lock = root.join("lock");
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock)
            .ctx("create", &lock)?;
        let pending = durable::shared_for(&root);
        Ok(Store { root, pending })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A directory for temporary files on the store's filesystem (so they can be renamed in).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Take the store-wide exclusive lock (blocking). Keep the section short: other kiln
    /// processes wait for it to update image names, containers and the like.
    pub fn lock(&self) -> Result<StoreLock> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ctx("open", &path)?;
        file.lock().ctx("lock", &path)?;
        Ok(StoreLock { _file: file })
    }

    /// Run `f` holding the exclusive lock.
    pub(crate) fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _g = self.lock()?;
        f()
    }
}
