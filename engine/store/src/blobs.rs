//! Blobs by sha256 under `blobs/sha256/<hex>`, written through a hashing temp file and published
//! by rename, so a blob file always holds exactly the bytes its name says.

use crate::Store;
use crate::direct::DirectFile;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{sync_dir, tmp_prefix};
use kiln_core::{Digest, HashingWriter};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::SystemTime;

/// A blob being written. Bytes go to a temp file in the store while they are hashed (large
/// blobs with direct I/O, see [`LayerBlobWriter`]); [`BlobWriter::commit`] checks the digest and
/// publishes the blob. Dropping a writer without committing deletes the temp file: nothing
/// becomes visible.
pub struct BlobWriter {
    store: Store,
    inner: HashingWriter<DirectFile>,
    path: tempfile::TempPath,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.inner.size()
    }

    /// Digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        self.inner.digest()
    }

    /// Finish: fsync, compare with `expected` (if given) and rename into `blobs/sha256/`.
    /// On a mismatch the temp file is deleted and the error names both digests. Returns the
    /// digest and size. Committing content the store already has is cheap and succeeds.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let (file, digest, size) = self.inner.finish();
        let file = file.finish().ctx("write", self.path.to_path_buf())?;
        let tmp = tempfile::NamedTempFile::from_parts(file, self.path);
        if let Some(want) = expected
            && *want != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: *want,
                actual: digest,
                size,
            });
        }
        self.store.publish_blob(tmp, digest, size)
    }
}

/// A layer blob being written by a caller that hashes it itself (kiln-layer's `LayerWriter`
/// computes the digest of exactly the bytes it writes), so the bytes are not hashed again here.
/// Large blobs go to the device with direct I/O: a new layer is synced before its build ends
/// anyway, and passing it through the page cache would evict the files the build works on.
/// Dropping the writer without committing deletes the temp file.
pub struct LayerBlobWriter {
    store: Store,
    file: DirectFile,
    path: tempfile::TempPath,
    size: u64,
}

impl LayerBlobWriter {
    /// Finish and publish the blob as `digest`, which the caller computed over every byte it
    /// wrote. Returns the digest and size.
    pub fn commit(self, digest: &Digest) -> Result<(Digest, u64)> {
        let file = self.file.finish().ctx("write", self.path.to_path_buf())?;
        let tmp = tempfile::NamedTempFile::from_parts(file, self.path);
        self.store.publish_blob(tmp, *digest, self.size)
    }
}

impl Write for LayerBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Store {
    /// Publish the written temp file `tmp` as blob `digest`: fsync and rename into
    /// `blobs/sha256/`, or hand it to the open sync batch.
    fn publish_blob(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: Digest,
        size: u64,
    ) -> Result<(Digest, u64)> {
        let dest = self.blob_path(&digest);
        if dest.exists() {
            // Same content is already there (another writer won); refresh its age for prune's grace.
            touch(&dest);
            return Ok((digest, size));
        }
        if self.batching() {
            // Published (fsync, rename) when the batch ends; until then readable at its temp path.
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
                .ctx("chmod", tmp.path().to_path_buf())?;
            let path = tmp
                .into_temp_path()
                .keep()
                .map_err(|e| e.error)
                .ctx("keep temp file", self.tmp_dir())?;
            self.pending_lock().blobs.insert(digest, path);
            return Ok((digest, size));
        }
        tmp.as_file()
            .sync_all()
            .ctx("fsync", tmp.path().to_path_buf())?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
            .ctx("chmod", tmp.path().to_path_buf())?;
        tmp.persist(&dest)
            .map_err(|e| e.error)
            .ctx("rename blob into place", &dest)?;
        sync_dir(dest.parent().expect("blob path has a parent"))?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn touch(path: &std::path::Path) {
    if let Ok(f) = File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

impl Store {
    /// Where the blob with this digest lives (whether or not it exists). A blob written in an
    /// open [`crate::SyncBatch`] is under a temp name until the batch ends.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        if let Some(p) = self.pending_lock().blobs.get(digest) {
            return p.clone();
        }
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the store has this blob.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size of a blob in bytes.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound(*digest)),
            Err(e) => Err(e).ctx("stat", p),
        }
    }

    /// Open a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        match File::open(&p) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound(*digest)),
            Err(e) => Err(e).ctx("open", p),
        }
    }

    /// Read a whole blob into memory (for manifests and configs, not layers).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut f = self.open_blob(digest)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).ctx("read", self.blob_path(digest))?;
        Ok(v)
    }

    /// A new temp file for a blob: its direct-I/O writer and its path.
    fn blob_temp(&self) -> Result<(DirectFile, tempfile::TempPath)> {
        let dir = self.tmp_dir();
        let (file, path) = tempfile::Builder::new()
            .prefix(&tmp_prefix())
            .tempfile_in(&dir)
            .ctx("create temp file in", &dir)?
            .into_parts();
        Ok((DirectFile::new(file), path))
    }

    /// Start writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let (file, path) = self.blob_temp()?;
        Ok(BlobWriter {
            store: self.clone(),
            inner: HashingWriter::new(file),
            path,
        })
    }

    /// Start writing a layer blob whose digest the caller computes (see [`LayerBlobWriter`]).
    pub fn layer_blob_writer(&self) -> Result<LayerBlobWriter> {
        let (file, path) = self.blob_temp()?;
        Ok(LayerBlobWriter {
            store: self.clone(),
            file,
            path,
            size: 0,
        })
    }

    /// Stream `r` into a blob, checking it against `expected` if given.
    pub fn put_blob_reader(
        &self,
        mut r: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected
            && self.has_blob(d)
        {
            // Already present: drain nothing, the caller's stream is left unread.
            touch(&self.blob_path(d));
            return Ok((*d, self.blob_size(d)?));
        }
        let mut w = self.blob_writer()?;
        io::copy(&mut r, &mut w).ctx("copy into blob", self.tmp_dir())?;
        w.commit(expected)
    }

    /// Store a small blob from memory.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of_bytes(bytes);
        if self.has_blob(&d) {
            touch(&self.blob_path(&d));
            return Ok(d);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).ctx("write", self.tmp_dir())?;
        Ok(w.commit(Some(&d))?.0)
    }

    /// Digests of every blob in the store (file names that are not valid digests are skipped).
    pub fn list_blobs(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let e = e.ctx("read directory", &dir)?;
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove a blob (no reference checks: see `prune`).
    pub fn remove_blob(&self, digest: &Digest) -> Result<()> {
        if let Some(tmp) = self.pending_lock().blobs.remove(digest) {
            let _ = fs::remove_file(tmp);
        }
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).ctx("remove", p),
            _ => Ok(()),
        }
    }
}
