//! Batched durability: while a [`SyncBatch`] is open, new blobs and build-cache entries are made
//! durable together when the batch ends instead of one fsync (plus one directory fsync) each.
//!
//! Crash safety is kept by ordering, not by per-write fsyncs:
//!
//! - a blob written in a batch stays under its temp name in `tmp/` (readable through
//!   [`Store::blob_path`] by this process) until the batch is flushed: its bytes are fsynced, then
//!   it is renamed into `blobs/sha256/` and the directory is fsynced. A crash before that leaves
//!   only a temp file that `prune` deletes, never a short blob under a digest name;
//! - build-cache entries written in a batch are kept in memory (visible to [`Store::cache_get`])
//!   and written after the blobs and snapshot renames they name are durable, each through an
//!   fsynced temp file and a rename;
//! - writing an index that names blobs (`images.json`, `containers.json`) flushes the batch
//!   first, so no record ever points at a blob that is not durable yet.
//!
//! Flushing fsyncs all files of a batch concurrently: the block layer merges the cache flushes,
//! so twenty small files cost about as much as one.
//!
//! Trees a batch no longer needs ([`Store::remove_later`], e.g. overlay work directories) are
//! renamed into `tmp/` at once and deleted by a background thread while the build goes on
//! (on this machine's ext4 with online discard, each directory removal waits for the device);
//! the batch's end waits for that thread.
//!
//! The pending state is per store root and per process, so every [`Store`] opened on the same
//! root in this process sees the same pending blobs and cache entries.

use crate::Store;
use crate::error::{IoContext, Result};
use crate::fsutil::{sync_dir, tmp_prefix};
use kiln_core::Digest;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// What a store root has pending in this process.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Open batches (nested batches flush when the outermost one ends).
    depth: usize,
    /// Blobs written but not yet durable: digest → temp file in `tmp/`.
    pub(crate) blobs: HashMap<Digest, PathBuf>,
    /// Cache entries not yet written: final path → entry bytes.
    pub(crate) cache: BTreeMap<PathBuf, Vec<u8>>,
    /// A snapshot was renamed into `snapshots/` without a directory fsync.
    pub(crate) snapshots_dirty: bool,
    /// The background remover of [`Store::remove_later`]: its queue and thread.
    remover: Option<(
        std::sync::mpsc::Sender<PathBuf>,
        std::thread::JoinHandle<()>,
    )>,
    /// Names handed out to trees waiting for removal.
    trash_seq: u64,
}

impl Pending {
    /// Open batches.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }
}

/// The per-root pending state shared by every `Store` of this process.
pub(crate) type Shared = Arc<Mutex<Pending>>;

/// The shared pending state of `root` (by its path as given, made absolute).
pub(crate) fn shared_for(root: &Path) -> Shared {
    static ROOTS: OnceLock<Mutex<HashMap<PathBuf, Shared>>> = OnceLock::new();
    let key = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut roots = ROOTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    roots.entry(key).or_default().clone()
}

/// An open batch; see the module documentation. End it with [`SyncBatch::finish`] to see
/// errors; dropping it flushes too and only logs them.
#[must_use = "a batch makes writes durable when it is finished"]
pub struct SyncBatch {
    store: Store,
    done: bool,
}

impl SyncBatch {
    /// Make everything written during the batch durable and end it.
    pub fn finish(mut self) -> Result<()> {
        self.done = true;
        self.store.end_batch()
    }
}

impl Drop for SyncBatch {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = self.store.end_batch()
        {
            tracing::warn!("store {}: {e}", self.store.root.display());
        }
    }
}

/// fsync every file in `paths`, several at a time.
fn fsync_all(paths: &[&Path]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let one = |p: &Path| -> Result<()> {
        File::open(p)
            .and_then(|f| f.sync_all())
            .ctx("fsync", p.to_path_buf())
    };
    if paths.len() == 1 {
        return one(paths[0]);
    }
    let threads = paths.len().min(16);
    let chunk = paths.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().try_for_each(|p| one(p))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("fsync thread panicked"))
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

impl Store {
    /// Start a batch: until it ends, blobs and build-cache entries are made durable together
    /// at its end (or before an image or container record is written), not one by one.
    pub fn sync_batch(&self) -> SyncBatch {
        self.pending_lock().depth += 1;
        SyncBatch {
            store: self.clone(),
            done: false,
        }
    }

    pub(crate) fn pending_lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a batch is open on this root.
    pub(crate) fn batching(&self) -> bool {
        self.pending_lock().depth() > 0
    }

    fn end_batch(&self) -> Result<()> {
        let remover = {
            let mut p = self.pending_lock();
            p.depth = p.depth.saturating_sub(1);
            if p.depth > 0 {
                return Ok(());
            }
            p.remover.take()
        };
        let flushed = self.flush_pending();
        if let Some((queue, thread)) = remover {
            drop(queue);
            let _ = thread.join();
        }
        flushed
    }

    /// Remove the tree at `path` (a missing path is fine). Inside a batch it is renamed into
    /// `tmp/` at once and deleted in the background before the batch ends; otherwise (or when it
    /// cannot be renamed there) it is deleted now.
    pub fn remove_later(&self, path: &Path) -> Result<()> {
        let mut p = self.pending_lock();
        if p.depth == 0 {
            drop(p);
            return crate::fsutil::remove_tree(path);
        }
        p.trash_seq += 1;
        let doomed = self
            .tmp_dir()
            .join(format!("{}trash-{}", tmp_prefix(), p.trash_seq));
        match fs::rename(path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {
                drop(p);
                return crate::fsutil::remove_tree(path);
            }
        }
        if p.remover.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
            let thread = std::thread::Builder::new()
                .name("kiln-store-remove".into())
                .spawn(move || {
                    for dir in rx {
                        if let Err(e) = crate::fsutil::remove_tree(&dir) {
                            tracing::warn!("{e}");
                        }
                    }
                });
            match thread {
                Ok(t) => p.remover = Some((tx, t)),
                Err(_) => {
                    drop(p);
                    return crate::fsutil::remove_tree(&doomed);
                }
            }
        }
        let (tx, _) = p.remover.as_ref().expect("remover started");
        if let Err(e) = tx.send(doomed) {
            drop(p);
            return crate::fsutil::remove_tree(&e.0);
        }
        Ok(())
    }

    /// Make every pending blob, snapshot rename and cache entry durable, in that order.
    pub(crate) fn flush_pending(&self) -> Result<()> {
        let (blobs, cache, snapshots_dirty) = {
            let mut p = self.pending_lock();
            if p.blobs.is_empty() && p.cache.is_empty() && !p.snapshots_dirty {
                return Ok(());
            }
            (
                std::mem::take(&mut p.blobs),
                std::mem::take(&mut p.cache),
                std::mem::replace(&mut p.snapshots_dirty, false),
            )
        };
        let result = self.flush(&blobs, &cache, snapshots_dirty);
        if result.is_err() {
            // Keep what was not made durable visible to this process (cache entries stay
            // in memory; blobs that were renamed already are found under their final name).
            let mut p = self.pending_lock();
            for (d, tmp) in blobs {
                if tmp.exists() {
                    p.blobs.entry(d).or_insert(tmp);
                }
            }
            for (k, v) in cache {
                p.cache.entry(k).or_insert(v);
            }
        }
        result
    }

    fn flush(
        &self,
        blobs: &HashMap<Digest, PathBuf>,
        cache: &BTreeMap<PathBuf, Vec<u8>>,
        snapshots_dirty: bool,
    ) -> Result<()> {
        let tmps: Vec<&Path> = blobs.values().map(PathBuf::as_path).collect();
        fsync_all(&tmps)?;
        for (d, tmp) in blobs {
            let dest = self.root.join("blobs/sha256").join(d.hex());
            if dest.exists() {
                let _ = fs::remove_file(tmp);
            } else {
                fs::rename(tmp, &dest).ctx("rename blob into place", &dest)?;
            }
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        if !blobs.is_empty() {
            dirs.push(self.root.join("blobs/sha256"));
        }
        if snapshots_dirty {
            dirs.push(self.root.join("snapshots"));
        }
        let dir_refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        fsync_all(&dir_refs)?;
        if cache.is_empty() {
            return Ok(());
        }
        // Cache entries name the blobs and snapshots above: write them only now.
        let tmp_dir = self.tmp_dir();
        let mut written: Vec<(tempfile::TempPath, &PathBuf)> = Vec::new();
        for (path, bytes) in cache {
            let mut f = tempfile::Builder::new()
                .prefix(&tmp_prefix())
                .tempfile_in(&tmp_dir)
                .ctx("create temp file in", &tmp_dir)?;
            f.write_all(bytes).ctx("write", f.path().to_path_buf())?;
            fs::set_permissions(f.path(), fs::Permissions::from_mode(0o644))
                .ctx("chmod", f.path().to_path_buf())?;
            written.push((f.into_temp_path(), path));
        }
        let paths: Vec<&Path> = written.iter().map(|(t, _)| t.as_ref()).collect();
        fsync_all(&paths)?;
        for (tmp, dest) in written {
            tmp.persist(dest)
                .map_err(|e| e.error)
                .ctx("rename into place", dest.clone())?;
        }
        sync_dir(&self.root.join("cache"))
    }
}
