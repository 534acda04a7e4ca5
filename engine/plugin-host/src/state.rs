//! Per-invocation host state: the resource table, memory limits, the handles a plugin was given
//! (blobs, writers, a build context, secrets) and the implementations of every host interface.

use crate::bindings::exporter::kiln::plugin::{blobs, codec, host, types};
use crate::bindings::frontend::kiln::plugin::{context, images};
use crate::bindings::injector::kiln::plugin::mounts;
use crate::beneath::{self, Beneath};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::StoreLimits;

use types::PluginError;

/// The most bytes one `read-at`/`read` call hands a plugin.
pub const MAX_READ_CHUNK: u64 = 1 << 20;
/// The most bytes one `compress-blocks` call accepts.
pub const MAX_CODEC_INPUT: usize = 64 << 20;
/// The largest rootfs file an injector may read.
pub const MAX_ROOTFS_FILE: u64 = 16 << 20;
/// The most batches `submit-blocks` keeps for one plugin before they are collected.
pub const MAX_CODEC_PENDING: usize = 8;
/// The most `collect-blocks` is waited for: a batch never takes this long.
const CODEC_WAIT: std::time::Duration = std::time::Duration::from_secs(600);
/// The most `secret-env` variables one injector call may set.
pub const MAX_SECRET_ENV: usize = 1024;

/// Host-side state of one plugin invocation (one `Store`).
pub struct HostState {
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) plugin: String,
    pub(crate) cancel: Arc<AtomicBool>,
    /// The last panic message the guest reported, to explain a trap.
    pub(crate) last_panic: Option<String>,
    /// Answers `images.image-config` (frontends).
    pub(crate) image_config: Option<ImageConfigFn>,
    /// Reads files of the step's root filesystem (injectors' `read-rootfs-file`).
    pub(crate) rootfs: Option<RootfsReadFn>,
    /// Secret ids this plugin may place.
    pub(crate) granted_secrets: Vec<String>,
    /// `secret-env` calls of this invocation: (variable name, secret id).
    pub(crate) secret_env: Vec<(String, String)>,
    /// Batches of `submit-blocks` not collected yet.
    pub(crate) codec_jobs: CodecJobs,
}

/// Compression batches running on the host's threads, by ticket.
#[derive(Default)]
pub(crate) struct CodecJobs {
    next: u64,
    /// Ticket → input bytes and where its result arrives.
    pending: std::collections::HashMap<u64, (usize, std::sync::mpsc::Receiver<std::io::Result<Vec<Vec<u8>>>>)>,
}

impl CodecJobs {
    fn pending_bytes(&self) -> usize {
        self.pending.values().map(|(n, _)| n).sum()
    }

    /// Start compressing `blocks` on the thread pool; returns the ticket.
    fn submit(&mut self, algo: codec::Algorithm, level: Option<u32>, blocks: Vec<Vec<u8>>) -> Result<u64, PluginError> {
        let total: usize = blocks.iter().map(|b| b.len()).sum();
        if self.pending.len() >= MAX_CODEC_PENDING {
            return Err(PluginError::Denied(format!(
                "submit-blocks: {MAX_CODEC_PENDING} batches are waiting to be collected"
            )));
        }
        if self.pending_bytes() + total > MAX_CODEC_INPUT {
            return Err(PluginError::Denied(format!(
                "submit-blocks: {total} more bytes would leave over {MAX_CODEC_INPUT} waiting to be collected"
            )));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rayon::spawn(move || {
            use rayon::prelude::*;
            let out = blocks.par_iter().map(|b| crate::codec::compress(algo, level, b)).collect();
            let _ = tx.send(out);
        });
        let ticket = self.next;
        self.next += 1;
        self.pending.insert(ticket, (total, rx));
        Ok(ticket)
    }

    /// Wait for `ticket`'s batch.
    fn collect(&mut self, ticket: u64) -> Result<Vec<Vec<u8>>, PluginError> {
        let (_, rx) = self
            .pending
            .remove(&ticket)
            .ok_or_else(|| PluginError::InvalidInput(format!("collect-blocks: no batch has ticket {ticket}")))?;
        match rx.recv_timeout(CODEC_WAIT) {
            Ok(r) => r.map_err(|e| io_err("compress-blocks", e)),
            Err(e) => Err(PluginError::Internal(format!("collect-blocks: batch {ticket} was lost ({e})"))),
        }
    }
}

/// A callback reading a file of a step's merged root filesystem (symlinks resolved inside it):
/// `Ok(None)` when absent; the host caps the size.
pub type RootfsReadFn = Box<dyn FnMut(&str) -> Result<Option<Vec<u8>>, String> + Send>;

/// A callback resolving an image reference (and platform) to its OCI config JSON.
pub type ImageConfigFn = Box<dyn FnMut(&str, Option<&str>) -> Result<String, String> + Send>;

impl HostState {
    pub(crate) fn new(plugin: &str, limits: StoreLimits, cancel: Arc<AtomicBool>) -> Self {
        Self {
            table: ResourceTable::new(),
            limits,
            plugin: plugin.to_string(),
            cancel,
            last_panic: None,
            image_config: None,
            rootfs: None,
            granted_secrets: Vec::new(),
            secret_env: Vec::new(),
            codec_jobs: CodecJobs::default(),
        }
    }
}

fn io_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> PluginError {
    PluginError::Io(format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Resources

/// Host side of a `blob-reader`: a file (a blob of the store, a context file) or bytes.
#[derive(Clone)]
pub enum BlobReaderRes {
    /// A file read with positioned reads.
    File { file: Arc<File>, size: u64, name: String },
    /// Bytes held by the host.
    Bytes(Arc<Vec<u8>>),
}

impl BlobReaderRes {
    /// A reader over a file on disk.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(Self::File { file: Arc::new(file), size, name: path.display().to_string() })
    }

    fn size(&self) -> u64 {
        match self {
            Self::File { size, .. } => *size,
            Self::Bytes(b) => b.len() as u64,
        }
    }

    fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let size = self.size();
        let len = len.min(MAX_READ_CHUNK).min(size.saturating_sub(offset));
        let mut buf = vec![0u8; len as usize];
        match self {
            Self::File { file, .. } => {
                let mut done = 0;
                while done < buf.len() {
                    let n = file.read_at(&mut buf[done..], offset + done as u64)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                buf.truncate(done);
            }
            Self::Bytes(b) => buf.copy_from_slice(&b[offset as usize..(offset + len) as usize]),
        }
        Ok(buf)
    }

    fn reader(&self) -> Box<dyn Read + Send> {
        self.reader_at(0)
    }

    /// A sequential reader starting at `offset` (no bytes are read to get there).
    fn reader_at(&self, offset: u64) -> Box<dyn Read + Send> {
        match self {
            Self::File { file, size, .. } => Box::new(PositionedReader { file: file.clone(), pos: offset.min(*size), end: *size }),
            Self::Bytes(b) => {
                let mut c = std::io::Cursor::new(b.as_ref().clone());
                c.set_position(offset);
                Box::new(c)
            }
        }
    }

    fn name(&self) -> String {
        match self {
            Self::File { name, .. } => name.clone(),
            Self::Bytes(_) => "bytes".into(),
        }
    }
}

struct PositionedReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for PositionedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (buf.len() as u64).min(self.end.saturating_sub(self.pos)) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Host side of a `byte-stream`: any reader (for example a decompressing one).
pub struct ByteStreamRes {
    reader: Box<dyn Read + Send>,
    name: String,
}

/// Open `reader`, decompressing gzip or zstd when its first bytes say so.
pub fn decompressing(mut reader: Box<dyn Read + Send>) -> std::io::Result<Box<dyn Read + Send>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut magic[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = std::io::Cursor::new(magic[..got].to_vec());
    let whole: Box<dyn Read + Send> = Box::new(head.chain(reader));
    if got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(whole)))
    } else if got == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Ok(Box::new(zstd::stream::read::Decoder::new(whole)?))
    } else {
        Ok(whole)
    }
}

/// Where a `blob-writer` puts bytes, and what came out of it.
///
/// Nothing is hashed as bytes pass: blob bodies reach the file with `copy_file_range` (in the
/// kernel, or shared extents where the file system can), and headers are patched with `write-at`,
/// so a running hash would be thrown away. The digest is computed once, from the file, when the
/// plugin calls `finish`; the host closing a writer the plugin left open computes none. The file
/// is not fsynced (as `cp` or `skopeo copy` outputs are not): the caller renames it into place.
pub struct BlobWriterRes {
    inner: Option<WriterInner>,
    /// Set by `finish`: the descriptor the host computed.
    pub finished: Option<FinishedBlob>,
    path: PathBuf,
}

/// The result of a finished writer.
#[derive(Debug, Clone)]
pub struct FinishedBlob {
    /// The media type the plugin declared.
    pub media_type: String,
    /// "sha256:<hex>" of the bytes on disk.
    pub digest: String,
    /// Size on disk.
    pub size: u64,
    /// Bytes the plugin handed over (before compression).
    pub uncompressed_size: u64,
    /// The file written.
    pub path: PathBuf,
}

enum Encoder {
    None(CountingFile),
    Gzip(flate2::write::GzEncoder<CountingFile>),
    Zstd(zstd::stream::write::Encoder<'static, CountingFile>),
}

struct WriterInner {
    enc: Encoder,
    written: u64,
}

/// The output file and how many bytes it has (its cursor is always at the end).
struct CountingFile {
    file: File,
    size: u64,
}

impl Write for CountingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl CountingFile {
    /// Append `len` bytes of `src` from `offset` in the kernel, without a copy in this process:
    /// windows of `src` are mapped (populated from the page cache) and written from the mapping,
    /// which lets the file system fill large folios (on ext4 about twice as fast as
    /// `copy_file_range`, which moves pages one at a time); `copy_file_range` where mapping
    /// fails. Returns how many bytes were copied: fewer than `len` (possibly 0) when neither
    /// works here, and the caller copies the rest itself.
    fn copy_range(&mut self, src: &File, offset: u64, len: u64, cancel: &AtomicBool) -> std::io::Result<u64> {
        let mapped = self.copy_mapped(src, offset, len, cancel)?;
        if mapped == len {
            return Ok(len);
        }
        Ok(mapped + self.copy_file_range(src, offset + mapped, len - mapped, cancel)?)
    }

    /// [`CountingFile::copy_range`] through mappings of `src`; stops early (returning the bytes
    /// done) when a window cannot be mapped.
    fn copy_mapped(&mut self, src: &File, offset: u64, len: u64, cancel: &AtomicBool) -> std::io::Result<u64> {
        use std::os::fd::AsRawFd;
        /// Bytes mapped at once.
        const WINDOW: u64 = 64 << 20;
        /// Bytes per `write`.
        const CHUNK: usize = 8 << 20;
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as u64,
            _ => return Ok(0),
        };
        let mut done = 0u64;
        while done < len {
            if cancel.load(Ordering::Relaxed) {
                return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled"));
            }
            let at = offset + done;
            let base = at - at % page;
            let lead = (at - base) as usize;
            let want = (len - done).min(WINDOW) as usize;
            let Ok(map_off) = libc::off_t::try_from(base) else { return Ok(done) };
            // SAFETY: a fresh read-only shared mapping of an open file; it is only handed to
            // write(2) (the kernel reports a vanished page as EFAULT) and unmapped below.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    lead + want,
                    libc::PROT_READ,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    src.as_raw_fd(),
                    map_off,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Ok(done);
            }
            let mut written = 0usize;
            let mut result = Ok(());
            while written < want {
                let n = (want - written).min(CHUNK);
                // SAFETY: `lead + written + n <= lead + want`, inside the mapping.
                let r = unsafe { libc::write(self.file.as_raw_fd(), ptr.cast::<u8>().add(lead + written).cast(), n) };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    result = Err(e);
                    break;
                }
                if r == 0 {
                    result = Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "the output took no bytes"));
                    break;
                }
                written += r as usize;
            }
            // SAFETY: the mapping made above, unmapped once.
            unsafe { libc::munmap(ptr, lead + want) };
            self.size += written as u64;
            done += written as u64;
            result?;
        }
        Ok(done)
    }

    /// [`CountingFile::copy_range`] with `copy_file_range`.
    fn copy_file_range(&mut self, src: &File, offset: u64, len: u64, cancel: &AtomicBool) -> std::io::Result<u64> {
        use std::os::fd::AsRawFd;
        /// Bytes per call: large enough to be cheap, small enough to notice a cancellation.
        const STEP: u64 = 64 << 20;
        let mut off_in = i64::try_from(offset).map_err(|_| std::io::Error::other("offset too large"))?;
        let mut done = 0u64;
        while done < len {
            if cancel.load(Ordering::Relaxed) {
                return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled"));
            }
            let want = (len - done).min(STEP) as usize;
            // SAFETY: both descriptors are open for the duration of the call; `off_in` is a valid
            // pointer and the output offset is the file's own cursor (null).
            let n = unsafe {
                libc::copy_file_range(src.as_raw_fd(), &mut off_in, self.file.as_raw_fd(), std::ptr::null_mut(), want, 0)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Not supported here (old kernel, file system, cross-device): copy by hand.
                    Some(libc::ENOSYS | libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::EBADF | libc::EPERM) => {
                        return Ok(done);
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                break; // the source is shorter than it said: the caller's copy finds out
            }
            done += n as u64;
            self.size += n as u64;
        }
        Ok(done)
    }
}

impl BlobWriterRes {
    /// A writer into a new file at `path` (created or truncated), compressing as asked.
    pub fn create(path: &std::path::Path, compression: blobs::Compression) -> std::io::Result<Self> {
        // No O_TRUNC on the (usually new and empty) file: ext4 takes a truncated file for one being
        // replaced and flushes it to disk when it is closed, which costs more than the export.
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if file.metadata()?.len() > 0 {
            file.set_len(0)?;
        }
        let cf = CountingFile { file, size: 0 };
        let enc = match compression {
            blobs::Compression::None => Encoder::None(cf),
            blobs::Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(cf, flate2::Compression::fast())),
            blobs::Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(cf, 3)?),
        };
        Ok(Self { inner: Some(WriterInner { enc, written: 0 }), finished: None, path: path.to_path_buf() })
    }

    fn inner(&mut self) -> Result<&mut WriterInner, PluginError> {
        self.inner.as_mut().ok_or_else(|| PluginError::InvalidInput("writer already finished".into()))
    }

    fn write_all(&mut self, data: &[u8]) -> Result<(), PluginError> {
        let path = self.path.display().to_string();
        let inner = self.inner()?;
        let r = match &mut inner.enc {
            Encoder::None(w) => w.write_all(data),
            Encoder::Gzip(w) => w.write_all(data),
            Encoder::Zstd(w) => w.write_all(data),
        };
        r.map_err(|e| io_err(format!("writing {path}"), e))?;
        inner.written += data.len() as u64;
        Ok(())
    }

    /// Append `len` bytes of `src` from `offset`: in the kernel when nothing is compressed and
    /// `src` is a file, else through a buffer.
    fn copy_from(&mut self, src: &BlobReaderRes, offset: u64, len: u64, cancel: &AtomicBool) -> Result<(), PluginError> {
        let path = self.path.display().to_string();
        let cancelled = || PluginError::Io("cancelled".into());
        let mut copied = 0;
        if let (BlobReaderRes::File { file, .. }, Encoder::None(w)) = (src, &mut self.inner()?.enc) {
            copied = match w.copy_range(file, offset, len, cancel) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Err(cancelled()),
                Err(e) => return Err(io_err(format!("copying {} into {path}", src.name()), e)),
            };
            self.inner()?.written += copied;
        }
        let mut reader = src.reader_at(offset + copied).take(len - copied);
        let mut buf = vec![0u8; ((len - copied).min(1 << 20)) as usize];
        let mut got = 0u64;
        while got < len - copied {
            if cancel.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(format!("reading {}", src.name()), e)),
            };
            self.write_all(&buf[..n])?;
            got += n as u64;
        }
        if copied + got != len {
            return Err(PluginError::Io(format!("{} ended after {} of {len} bytes", src.name(), copied + got)));
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), PluginError> {
        let path = self.path.display().to_string();
        let inner = self.inner()?;
        let Encoder::None(w) = &mut inner.enc else {
            return Err(PluginError::Unsupported("write-at on a compressing writer".into()));
        };
        if offset.checked_add(data.len() as u64).is_none_or(|end| end > w.size) {
            return Err(PluginError::InvalidInput(format!(
                "write-at {offset}+{} is past the {} bytes written",
                data.len(),
                w.size
            )));
        }
        w.file.write_all_at(data, offset).map_err(|e| io_err(format!("writing {path}"), e))?;
        Ok(())
    }

    /// Flush and close the file; returns it with its size and the bytes handed over.
    fn close(&mut self) -> Result<(File, u64, u64), PluginError> {
        let path = self.path.clone();
        let inner = self.inner.take().ok_or_else(|| PluginError::InvalidInput("writer already finished".into()))?;
        let ctx = |e: std::io::Error| io_err(format!("finishing {}", path.display()), e);
        let mut cf = match inner.enc {
            Encoder::None(w) => w,
            Encoder::Gzip(w) => w.finish().map_err(ctx)?,
            Encoder::Zstd(w) => w.finish().map_err(ctx)?,
        };
        cf.file.flush().map_err(ctx)?;
        Ok((cf.file, cf.size, inner.written))
    }

    /// Close without computing a digest (the host's end of a writer the plugin left open).
    pub fn close_unhashed(&mut self) -> Result<(), PluginError> {
        self.close().map(|_| ())
    }

    /// Finish and record the descriptor: the digest is computed from the file.
    pub fn finish(&mut self, media_type: &str) -> Result<FinishedBlob, PluginError> {
        use sha2::Digest;
        let (file, size, written) = self.close()?;
        let path = self.path.clone();
        let ctx = |e: std::io::Error| io_err(format!("hashing {}", path.display()), e);
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; (size.min(1 << 20) as usize).max(1)];
        let mut at = 0u64;
        while at < size {
            let n = file.read_at(&mut buf, at).map_err(ctx)?;
            if n == 0 {
                return Err(ctx(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("ends at {at} of {size} bytes"))));
            }
            h.update(&buf[..n]);
            at += n as u64;
        }
        let done = FinishedBlob {
            media_type: media_type.to_string(),
            digest: format!("sha256:{}", hex::encode(h.finalize())),
            size,
            uncompressed_size: written,
            path,
        };
        self.finished = Some(done.clone());
        Ok(done)
    }
}

/// Host side of a `build-context`: a directory read only beneath its root.
pub struct BuildContextRes {
    pub(crate) root: Beneath,
}

impl BuildContextRes {
    /// A context rooted at `dir`.
    pub fn new(dir: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self { root: Beneath::open(dir, beneath::Mode::Beneath)? })
    }
}

/// Host side of a `secret`: only its id; the bytes stay with the host.
pub struct SecretRes {
    pub(crate) id: String,
}

// ---------------------------------------------------------------------------------------------
// Interfaces

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: types::Level, message: String) -> wasmtime::Result<()> {
        let message: String = message.chars().take(8192).collect();
        if let Some(m) = message.strip_prefix("panic: ") {
            self.last_panic = Some(m.to_string());
        }
        let plugin = &self.plugin;
        match level {
            types::Level::Trace => tracing::trace!(plugin = %plugin, "{message}"),
            types::Level::Debug => tracing::debug!(plugin = %plugin, "{message}"),
            types::Level::Info => tracing::info!(plugin = %plugin, "{message}"),
            types::Level::Warn => tracing::warn!(plugin = %plugin, "{message}"),
            types::Level::Error => tracing::error!(plugin = %plugin, "{message}"),
        }
        Ok(())
    }

    fn cancelled(&mut self) -> wasmtime::Result<bool> {
        Ok(self.cancel.load(Ordering::Relaxed))
    }
}

impl blobs::Host for HostState {}

impl blobs::HostBlobReader for HostState {
    fn size(&mut self, r: Resource<BlobReaderRes>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&r)?.size())
    }

    fn read_at(&mut self, r: Resource<BlobReaderRes>, offset: u64, len: u32) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let b = self.table.get(&r)?;
        Ok(b.read_at(offset, len as u64).map_err(|e| io_err(format!("reading {}", b.name()), e)))
    }

    fn uncompressed(&mut self, r: Resource<BlobReaderRes>) -> wasmtime::Result<Result<Resource<ByteStreamRes>, PluginError>> {
        let b = self.table.get(&r)?;
        let name = b.name();
        let reader = match decompressing(b.reader()) {
            Ok(r) => r,
            Err(e) => return Ok(Err(io_err(format!("decompressing {name}"), e))),
        };
        Ok(Ok(self.table.push(ByteStreamRes { reader, name })?))
    }

    fn drop(&mut self, r: Resource<BlobReaderRes>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl blobs::HostByteStream for HostState {
    fn read(&mut self, r: Resource<ByteStreamRes>, max: u32) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let s = self.table.get_mut(&r)?;
        let want = (max as u64).min(MAX_READ_CHUNK) as usize;
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match s.reader.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(Err(io_err(format!("reading {}", s.name), e))),
            }
        }
        buf.truncate(got);
        Ok(Ok(buf))
    }

    fn drop(&mut self, r: Resource<ByteStreamRes>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl blobs::HostBlobWriter for HostState {
    fn write(&mut self, w: Resource<BlobWriterRes>, data: Vec<u8>) -> wasmtime::Result<Result<(), PluginError>> {
        Ok(self.table.get_mut(&w)?.write_all(&data))
    }

    fn copy_from(
        &mut self,
        w: Resource<BlobWriterRes>,
        src: Resource<BlobReaderRes>,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        // Readers are cheap to clone (a shared file handle): the table lends one entry at a time.
        let src = self.table.get(&src)?.clone();
        if offset.checked_add(len).is_none_or(|end| end > src.size()) {
            return Ok(Err(PluginError::InvalidInput(format!(
                "copy-from {offset}+{len} is past the end of {} ({} bytes)",
                src.name(),
                src.size()
            ))));
        }
        let cancel = self.cancel.clone();
        Ok(self.table.get_mut(&w)?.copy_from(&src, offset, len, &cancel))
    }

    fn position(&mut self, w: Resource<BlobWriterRes>) -> wasmtime::Result<u64> {
        let w = self.table.get(&w)?;
        Ok(w.inner.as_ref().map(|i| i.written).unwrap_or(0))
    }

    fn write_at(&mut self, w: Resource<BlobWriterRes>, offset: u64, data: Vec<u8>) -> wasmtime::Result<Result<(), PluginError>> {
        Ok(self.table.get_mut(&w)?.write_at(offset, &data))
    }

    fn finish(&mut self, w: Resource<BlobWriterRes>, media_type: String) -> wasmtime::Result<Result<types::Descriptor, PluginError>> {
        let w = self.table.get_mut(&w)?;
        Ok(w.finish(&media_type).map(|f| types::Descriptor {
            media_type: f.media_type,
            digest: f.digest,
            size: f.size,
            annotations: Vec::new(),
        }))
    }

    fn drop(&mut self, w: Resource<BlobWriterRes>) -> wasmtime::Result<()> {
        // The host keeps writers it created (it reads `finished` after the call); a borrowed
        // handle is never dropped by the guest, so only writers the guest owned end here.
        self.table.delete(w)?;
        Ok(())
    }
}

impl codec::Host for HostState {
    fn compress_blocks(
        &mut self,
        algo: codec::Algorithm,
        level: Option<u32>,
        blocks: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, PluginError>> {
        let total: usize = blocks.iter().map(|b| b.len()).sum();
        if total > MAX_CODEC_INPUT {
            return Ok(Err(PluginError::InvalidInput(format!(
                "compress-blocks got {total} bytes; at most {MAX_CODEC_INPUT} per call"
            ))));
        }
        use rayon::prelude::*;
        let out: Result<Vec<Vec<u8>>, std::io::Error> = blocks.par_iter().map(|b| crate::codec::compress(algo, level, b)).collect();
        Ok(out.map_err(|e| io_err("compress-blocks", e)))
    }

    fn submit_blocks(
        &mut self,
        algo: codec::Algorithm,
        level: Option<u32>,
        blocks: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        Ok(self.codec_jobs.submit(algo, level, blocks))
    }

    fn collect_blocks(&mut self, ticket: u64) -> wasmtime::Result<Result<Vec<Vec<u8>>, PluginError>> {
        Ok(self.codec_jobs.collect(ticket))
    }

    fn sha256_hex(&mut self, data: Vec<u8>) -> wasmtime::Result<String> {
        use sha2::Digest;
        Ok(hex::encode(sha2::Sha256::digest(&data)))
    }
}

impl context::Host for HostState {}

impl crate::bindings::frontend::kiln::plugin::plan::Host for HostState {}

impl context::HostBuildContext for HostState {
    fn open(&mut self, c: Resource<BuildContextRes>, path: String) -> wasmtime::Result<Result<Resource<BlobReaderRes>, PluginError>> {
        let ctx = self.table.get(&c)?;
        let r = match ctx.root.open_file(&path) {
            Ok((file, size)) => BlobReaderRes::File { file: Arc::new(file), size, name: path },
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.table.push(r)?))
    }

    fn list_dir(&mut self, c: Resource<BuildContextRes>, path: String) -> wasmtime::Result<Result<Vec<context::Entry>, PluginError>> {
        let ctx = self.table.get(&c)?;
        Ok(ctx.root.list_dir(&path))
    }

    fn exists(&mut self, c: Resource<BuildContextRes>, path: String) -> wasmtime::Result<bool> {
        let ctx = self.table.get(&c)?;
        Ok(ctx.root.exists(&path))
    }

    fn drop(&mut self, c: Resource<BuildContextRes>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl images::Host for HostState {
    fn image_config(&mut self, reference: String, platform: Option<String>) -> wasmtime::Result<Result<String, PluginError>> {
        let Some(f) = self.image_config.as_mut() else {
            return Ok(Err(PluginError::Unsupported("image configs are not available here".into())));
        };
        Ok(f(&reference, platform.as_deref()).map_err(PluginError::Io))
    }
}

impl mounts::Host for HostState {
    fn lookup_secret(&mut self, id: String) -> wasmtime::Result<Result<Resource<SecretRes>, PluginError>> {
        if !self.granted_secrets.iter().any(|g| g == &id) {
            return Ok(Err(PluginError::Denied(format!("secret {id:?} was not granted to plugin {}", self.plugin))));
        }
        Ok(Ok(self.table.push(SecretRes { id })?))
    }

    fn secret_env(&mut self, name: String, secret: Resource<SecretRes>) -> wasmtime::Result<Result<(), PluginError>> {
        let id = self.table.get(&secret)?.id.clone();
        if !self.granted_secrets.iter().any(|g| g == &id) {
            return Ok(Err(PluginError::Denied(format!("secret {id:?} was not granted to plugin {}", self.plugin))));
        }
        if !crate::is_env_name(&name) {
            return Ok(Err(PluginError::InvalidInput(format!("env name {name:?} is invalid"))));
        }
        if self.secret_env.len() >= MAX_SECRET_ENV {
            return Ok(Err(PluginError::Denied(format!("at most {MAX_SECRET_ENV} secret variables per step"))));
        }
        self.secret_env.push((name, id));
        Ok(Ok(()))
    }

    fn read_rootfs_file(&mut self, path: String) -> wasmtime::Result<Result<Option<Vec<u8>>, PluginError>> {
        let Some(read) = self.rootfs.as_mut() else {
            return Ok(Ok(None));
        };
        if !path.starts_with('/') {
            return Ok(Err(PluginError::InvalidInput(format!("{path:?} is not an absolute path"))));
        }
        Ok(match read(&path) {
            Ok(Some(b)) if b.len() as u64 > MAX_ROOTFS_FILE => {
                Err(PluginError::Denied(format!("{path} is {} bytes; at most {MAX_ROOTFS_FILE} may be read", b.len())))
            }
            Ok(x) => Ok(x),
            Err(e) => Err(PluginError::Io(e)),
        })
    }
}

impl mounts::HostSecret for HostState {
    fn id(&mut self, s: Resource<SecretRes>) -> wasmtime::Result<String> {
        Ok(self.table.get(&s)?.id.clone())
    }

    fn drop(&mut self, s: Resource<SecretRes>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}
