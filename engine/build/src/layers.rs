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
        apply_stream(blob, dest).map_err(|e| BuildError::Layer {
            what: format!("applying layer {}", l.digest),
            source: e,
        })?;
    }
    Ok(())
}

/// Apply one layer read from `blob` (gzip, zstd or plain tar) onto `dest`. Decompression runs
/// ahead in its own thread while this one creates the files (mostly kernel time), so the two
/// overlap.
pub(crate) fn apply_stream(
    blob: impl std::io::Read + Send,
    dest: &Path,
) -> std::result::Result<(), kiln_layer::LayerError> {
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
            ChunkReader::new(rx),
            dest,
            &kiln_layer::ApplyOptions::default(),
        )
        .map(|_| ())
    })
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

/// The reading end of [`read_ahead`] (and of [`EarlyUnpack`]'s tee): an empty chunk, or the
/// sender gone, is the end.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChunkReader {
    fn new(rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>) -> Self {
        ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
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

/// Unpacks the only layer of a base image while the pull downloads it (a [`BlobTee`] on the
/// layer), into a staging snapshot that becomes the image's flattened filesystem only when the
/// pull succeeded and the unpacker was handed exactly the bytes of the verified blob, once each;
/// otherwise it is removed and [`flat_snapshot`] unpacks from the stored blob as usual. Images of
/// several layers are not unpacked early (their layers download in parallel, out of order).
pub(crate) struct EarlyUnpack<'s> {
    store: &'s Store,
    job: std::sync::Mutex<Option<EarlyJob>>,
}

struct EarlyJob {
    staging: kiln_store::Staging,
    unpacker: std::thread::JoinHandle<std::result::Result<(), kiln_layer::LayerError>>,
    teed: std::sync::Arc<TeeCount>,
}

/// What a tee handed on.
#[derive(Default)]
struct TeeCount {
    bytes: std::sync::atomic::AtomicU64,
    /// The download started over, or the unpacker stopped taking bytes.
    void: std::sync::atomic::AtomicBool,
}

impl<'s> EarlyUnpack<'s> {
    pub(crate) fn new(store: &'s Store) -> Self {
        Self {
            store,
            job: Default::default(),
        }
    }

    /// The tee for a layer the pull is about to download: one for the only layer of an image.
    pub(crate) fn tee(
        &self,
        layer: kiln_registry::LayerToPull<'_>,
    ) -> Option<Box<dyn kiln_registry::BlobTee>> {
        if layer.layers.len() != 1 {
            return None;
        }
        let staging = self.store.snapshot_staging().ok()?;
        spread_subdirs(staging.path());
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(32);
        let dest = staging.path().to_path_buf();
        let unpacker = std::thread::Builder::new()
            .name("kiln-early-unpack".into())
            .spawn(move || {
                let mut from_net = ChunkReader::new(rx);
                let applied = apply_stream(&mut from_net, &dest);
                // Take the rest (a tar's trailing padding; or everything, after a failure) so
                // the download never waits on an unpacker that is done.
                while from_net.rx.recv().is_ok() {}
                applied
            })
            .ok()?;
        let teed = std::sync::Arc::new(TeeCount::default());
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(EarlyJob {
            staging,
            unpacker,
            teed: teed.clone(),
        });
        Some(Box::new(Tee { tx: Some(tx), teed }))
    }

    /// After the pull: `layers` (the pulled image's, `None` when the pull failed) → the
    /// flattened snapshot made while downloading, if it can stand for them.
    pub(crate) fn finish(self, layers: Option<&[LayerRef]>) -> Option<PathBuf> {
        use std::sync::atomic::Ordering;
        let job = self.job.into_inner().unwrap_or_else(|e| e.into_inner())?;
        let applied = job.unpacker.join();
        let layers = layers?;
        let [layer] = layers else { return None };
        let whole = !job.teed.void.load(Ordering::SeqCst)
            && job.teed.bytes.load(Ordering::SeqCst) == layer.size;
        match applied {
            Ok(Ok(())) if whole => {}
            Ok(Err(e)) => {
                tracing::debug!("unpacking {} while downloading: {e}", layer.digest);
                return None;
            }
            _ => return None,
        }
        tracing::debug!("unpacked {} while downloading it", layer.digest);
        let key = flat_key(layers);
        if let Some(p) = self.store.snapshot(&key) {
            return Some(p);
        }
        self.store.publish_snapshot(&key, job.staging).ok()
    }
}

/// The download side of [`EarlyUnpack`].
struct Tee {
    tx: Option<std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>>,
    teed: std::sync::Arc<TeeCount>,
}

impl kiln_registry::BlobTee for Tee {
    fn data(&mut self, bytes: &[u8]) {
        use std::sync::atomic::Ordering;
        let Some(tx) = &self.tx else { return };
        // (An empty chunk would read as the end.)
        if bytes.is_empty() {
            return;
        }
        if tx.send(Ok(bytes.to_vec())).is_err() {
            self.teed.void.store(true, Ordering::SeqCst);
            self.tx = None;
            return;
        }
        self.teed
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
    }

    fn restart(&mut self) {
        self.teed
            .void
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.tx = None;
    }
}

#[cfg(test)]
mod early_unpack_tests {
    use super::*;
    use kiln_core::media_types;
    use kiln_core::spec::Descriptor;
    use kiln_registry::LayerToPull;

    /// A plain tar layer: a directory, a file, a symlink.
    fn layer_tar() -> Vec<u8> {
        let header = || {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_mode(0o777);
            h
        };
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "etc/", std::io::empty()).unwrap();
        let body = b"hello from the layer\n".repeat(20_000);
        let mut h = header();
        h.set_mode(0o640);
        h.set_uid(7);
        h.set_size(body.len() as u64);
        b.append_data(&mut h, "etc/hello", &body[..]).unwrap();
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "bin", "usr/bin").unwrap();
        b.into_inner().unwrap()
    }

    fn stored_layer(store: &Store, tar: &[u8]) -> (LayerRef, Vec<Descriptor>) {
        let digest = store.put_blob_bytes(tar).unwrap();
        let l = LayerRef {
            digest,
            diff_id: digest,
            size: tar.len() as u64,
            media_type: media_types::OCI_LAYER_TAR.into(),
        };
        let d = vec![Descriptor::new(media_types::OCI_LAYER_TAR, digest, l.size)];
        (l, d)
    }

    /// Paths with mode, owner, content or link target.
    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let what = if m.is_dir() {
                    stack.push(p.clone());
                    String::new()
                } else if m.file_type().is_symlink() {
                    fs::read_link(&p).unwrap().display().to_string()
                } else {
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                        fs::read(&p).unwrap(),
                    ))
                };
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push(format!(
                    "{rel} {:o} {}:{} {what}",
                    m.mode(),
                    m.uid(),
                    m.gid()
                ));
            }
        }
        out.sort();
        out
    }

    fn tmp_entries(store: &Store) -> usize {
        fs::read_dir(store.tmp_dir()).unwrap().count()
    }

    #[test]
    fn a_layer_unpacked_while_it_downloads_is_the_one_unpacked_from_the_store() {
        let tar = layer_tar();
        let early_store = tempfile::tempdir().unwrap();
        let store = Store::open(early_store.path()).unwrap();
        let (layer, descs) = stored_layer(&store, &tar);
        let early = EarlyUnpack::new(&store);
        let mut tee = early
            .tee(LayerToPull {
                layers: &descs,
                index: 0,
            })
            .expect("a one-layer image is teed");
        for chunk in tar.chunks(64 * 1024 + 7) {
            tee.data(chunk);
        }
        drop(tee);
        let snap = early
            .finish(Some(std::slice::from_ref(&layer)))
            .expect("the snapshot made while downloading is used");
        assert_eq!(
            Some(snap.clone()),
            store.snapshot(&flat_key(&[layer.clone()]))
        );

        let usual_store = tempfile::tempdir().unwrap();
        let usual = Store::open(usual_store.path()).unwrap();
        let (layer2, _) = stored_layer(&usual, &tar);
        let unpacked = flat_snapshot(&usual, &[layer2]).unwrap();
        let (a, b) = (listing(&snap), listing(&unpacked));
        assert_eq!(a.len(), 3, "{a:?}");
        assert_eq!(a, b);
    }

    #[test]
    fn a_restarted_short_or_failed_download_leaves_nothing() {
        let tar = layer_tar();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (layer, descs) = stored_layer(&store, &tar);
        let to_pull = LayerToPull {
            layers: &descs,
            index: 0,
        };
        let before = tmp_entries(&store);
        let half = tar.len() / 2;

        // Restarted: the bytes before the restart are void, whatever follows.
        let early = EarlyUnpack::new(&store);
        let mut tee = early.tee(to_pull).unwrap();
        tee.data(&tar[..half]);
        tee.restart();
        tee.data(&tar);
        drop(tee);
        assert_eq!(early.finish(Some(std::slice::from_ref(&layer))), None);

        // Short: fewer bytes than the layer has.
        let early = EarlyUnpack::new(&store);
        let mut tee = early.tee(to_pull).unwrap();
        tee.data(&tar[..half]);
        drop(tee);
        assert_eq!(early.finish(Some(std::slice::from_ref(&layer))), None);

        // The pull failed.
        let early = EarlyUnpack::new(&store);
        let mut tee = early.tee(to_pull).unwrap();
        tee.data(&tar);
        drop(tee);
        assert_eq!(early.finish(None), None);

        // Several layers are not unpacked early.
        let two = [descs[0].clone(), descs[0].clone()];
        let early = EarlyUnpack::new(&store);
        assert!(
            early
                .tee(LayerToPull {
                    layers: &two,
                    index: 0
                })
                .is_none()
        );

        assert_eq!(store.snapshot(&flat_key(&[layer])), None);
        assert_eq!(
            tmp_entries(&store),
            before,
            "staging directories were left behind"
        );
    }
}
