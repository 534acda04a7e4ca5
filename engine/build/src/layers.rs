//! A stage's filesystem as a stack of directories (overlay upper dirs, topmost first, over a
//! flattened base): lookups through the stack, symlink resolution inside the root, and the
//! flattened snapshots of image layers kept in the store.

use crate::error::{BuildError, Result};
use kiln_core::Digest;
use kiln_store::Store;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One layer of an image being built: its blob descriptor and diff id.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LayerRef {
    /// The compressed blob.
    pub digest: Digest,
    /// The uncompressed tar's digest.
    pub diff_id: Digest,
    /// Blob size.
    pub size: u64,
    /// Blob media type.
    pub media_type: String,
}

/// Directories forming a root filesystem, topmost first.
#[derive(Clone, Debug, Default)]
pub struct LayerStack {
    /// Topmost first.
    pub dirs: Vec<PathBuf>,
}

/// What a path is in the merged view.
pub enum Lookup {
    /// Found at this host path.
    Found(PathBuf, fs::Metadata),
    /// Not there.
    Absent,
}

fn is_opaque(p: &Path) -> bool {
    has_xattr(p, c"trusted.overlay.opaque") || has_xattr(p, c"user.overlay.opaque")
}

/// Whether `p` is an overlay metadata-only copy-up (its data lives in a lower layer).
pub fn is_metacopy(p: &Path) -> bool {
    has_xattr(p, c"trusted.overlay.metacopy") || has_xattr(p, c"user.overlay.metacopy")
}

fn has_xattr(path: &Path, name: &std::ffi::CStr) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: NUL-terminated strings; a zero-sized query writes nothing.
    unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

/// Split a rootfs path into its components.
pub fn components(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

impl LayerStack {
    /// Look up `comps` (no symlinks resolved) through the stack.
    pub fn lstat(&self, comps: &[String]) -> std::io::Result<Lookup> {
        for layer in &self.dirs {
            let mut p = layer.clone();
            let mut stop = false;
            let mut blocked = false;
            for (i, c) in comps.iter().enumerate() {
                p.push(OsStr::new(c));
                let last = i + 1 == comps.len();
                match fs::symlink_metadata(&p) {
                    Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => {
                        return Ok(Lookup::Absent);
                    }
                    Ok(m) if last => return Ok(Lookup::Found(p, m)),
                    Ok(m) if !m.is_dir() => {
                        blocked = true;
                        break;
                    }
                    Ok(_) => stop |= is_opaque(&p),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) => return Err(e),
                }
            }
            if comps.is_empty() {
                return Ok(Lookup::Found(layer.clone(), fs::symlink_metadata(layer)?));
            }
            if blocked || stop {
                return Ok(Lookup::Absent);
            }
        }
        Ok(Lookup::Absent)
    }

    /// Resolve `path` inside the root: symlinks in every component are followed (never out of
    /// the root); the final component's symlink only when `follow_last`. Returns the resolved
    /// components and what is there.
    pub fn resolve(&self, path: &str, follow_last: bool) -> std::io::Result<(Vec<String>, Lookup)> {
        let mut pending: Vec<String> = components(path);
        pending.reverse();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                resolved.pop();
                continue;
            }
            resolved.push(c);
            match self.lstat(&resolved)? {
                Lookup::Absent => {
                    // The rest does not exist: keep the remaining components as they are.
                    while let Some(rest) = pending.pop() {
                        if rest == ".." {
                            resolved.pop();
                        } else {
                            resolved.push(rest);
                        }
                    }
                    return Ok((resolved, Lookup::Absent));
                }
                Lookup::Found(p, m)
                    if m.file_type().is_symlink() && (follow_last || !pending.is_empty()) =>
                {
                    hops += 1;
                    if hops > 40 {
                        return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = fs::read_link(&p)?;
                    resolved.pop();
                    let t = target.to_string_lossy().to_string();
                    if t.starts_with('/') {
                        resolved.clear();
                    }
                    for part in components(&t).into_iter().rev() {
                        pending.push(part);
                    }
                }
                Lookup::Found(p, m) => {
                    if pending.is_empty() {
                        return Ok((resolved, Lookup::Found(p, m)));
                    }
                }
            }
        }
        let found = self.lstat(&resolved)?;
        Ok((resolved, found))
    }

    /// Read a small file of the merged view (e.g. /etc/passwd), following symlinks.
    pub fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        match self.resolve(path, true) {
            Ok((_, Lookup::Found(p, m))) if m.is_file() => fs::read(p).ok(),
            _ => None,
        }
    }
}

/// Snapshot key of the flattened filesystem of `layers` (the ChainID of the last layer).
pub fn flat_key(layers: &[LayerRef]) -> String {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id).collect();
    match kiln_core::chain_ids(&diff_ids).last() {
        Some(c) => format!("flat-{}", c.hex()),
        None => "flat-empty".into(),
    }
}

/// The flattened filesystem of `layers`, applied from the store's blobs (cached as a snapshot).
pub fn flat_snapshot(store: &Store, layers: &[LayerRef]) -> Result<PathBuf> {
    let key = flat_key(layers);
    if let Some(p) = store.snapshot(&key) {
        return Ok(p);
    }
    let staging = store.snapshot_staging()?;
    spread_subdirs(staging.path());
    apply_blobs(store, staging.path(), layers)?;
    Ok(store.publish_snapshot(&key, staging)?)
}

/// Like [`flat_snapshot`], but starting from a copy of the snapshot of the longest prefix of
/// `layers` the store already has (a stage's base, or the result of an earlier `vfs` RUN), so
/// only the layers after it are applied.
pub fn flat_snapshot_reusing(store: &Store, layers: &[LayerRef]) -> Result<PathBuf> {
    let key = flat_key(layers);
    if let Some(p) = store.snapshot(&key) {
        return Ok(p);
    }
    let prefix = (1..layers.len())
        .rev()
        .find_map(|k| store.snapshot(&flat_key(&layers[..k])).map(|p| (k, p)));
    let Some((k, base)) = prefix else {
        return flat_snapshot(store, layers);
    };
    let staging = store.snapshot_staging()?;
    kiln_layer::copy_tree(&base, staging.path()).map_err(|e| BuildError::Layer {
        what: format!("copying {}", base.display()),
        source: e,
    })?;
    apply_blobs(store, staging.path(), &layers[k..])?;
    Ok(store.publish_snapshot(&key, staging)?)
}

/// Apply the blobs of `layers`, in order, onto `dest`.
fn apply_blobs(store: &Store, dest: &Path, layers: &[LayerRef]) -> Result<()> {
    for l in layers {
        let blob = store.open_blob(&l.digest)?;
        // Decompression runs ahead in its own thread while this one creates the files (mostly
        // kernel time), so the two overlap.
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(16);
            scope.spawn(
                move || match kiln_layer::decompress(std::io::BufReader::new(blob)) {
                    Ok(tar) => read_ahead(tar, tx),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                },
            );
            kiln_layer::apply_layer(
                ChunkReader {
                    rx,
                    cur: Vec::new(),
                    pos: 0,
                },
                dest,
                &kiln_layer::ApplyOptions::default(),
            )
        })
        .map_err(|e| BuildError::Layer {
            what: format!("applying layer {}", l.digest),
            source: e,
        })?;
    }
    Ok(())
}

/// Ask ext4 to place the subdirectories of `dir` as it places those of a filesystem's root
/// (its "top directory" flag): spread over block groups with free inodes instead of packed into
/// `dir`'s own group. Creating a rootfs's inodes in a group full of recently freed ones is several
/// times slower on ext4; other filesystems refuse the request, which is fine.
pub(crate) fn spread_subdirs(dir: &Path) {
    use std::os::fd::AsRawFd;
    const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
    let Ok(f) = fs::File::open(dir) else {
        return;
    };
    let mut flags: libc::c_int = 0;
    // SAFETY: both ioctls read or write one int through a valid pointer, on a descriptor we own.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
            return;
        }
        if flags & FS_TOPDIR_FL == 0 {
            flags |= FS_TOPDIR_FL;
            let _ = libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags);
        }
    }
}

/// Bytes read ahead per chunk by [`read_ahead`].
const READ_AHEAD_CHUNK: usize = 256 * 1024;

/// Read `r` to its end in chunks into `tx`; stops early when the receiver is gone.
fn read_ahead(
    mut r: impl std::io::Read,
    tx: std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
) {
    loop {
        let mut buf = vec![0u8; READ_AHEAD_CHUNK];
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        buf.truncate(n);
        let last = n == 0;
        if tx.send(Ok(buf)).is_err() || last {
            return;
        }
    }
}

/// The reading end of [`read_ahead`]: an empty chunk is the end.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
