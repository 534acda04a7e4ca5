//! The on-disk cache of compiled plugins. Entries are keyed by the component's sha256 and the
//! engine's compatibility hash, end with a trailer holding a CRC-32 of the code and its length,
//! and are written only by kiln (temp file + rename). A truncated or altered entry fails its check
//! and is recompiled: cached code is never deserialized without that check. A valid entry is
//! mapped, not read: its pages come straight from the page cache, so loading costs no copy. (The check is against
//! damage, not tampering: whoever can write the cache directory can write a matching checksum of
//! any kind, so a cryptographic hash would buy nothing over CRC-32, which costs a tenth as much
//! per load.)

use crate::error::{HostError, Result};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"KILNCWA3";
/// Trailer after the code: CRC-32 (u32 LE), code length (u64 LE), MAGIC.
const TRAILER: usize = 4 + 8 + 8;

/// Where compiled components live.
pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_hash: String,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled (no entry, or caching off).
    Compiled,
    /// An entry existed but failed its check; recompiled and rewritten.
    Repaired,
}

impl CompileCache {
    /// A cache in `dir` (`None` disables caching).
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Self { dir, engine_hash: format!("{:016x}", h.finish()) }
    }

    /// The entry path for a component digest (hex).
    pub fn entry_path(&self, component_sha256: &str) -> Option<PathBuf> {
        // `v3`: the entry layout of MAGIC (entries of another layout are simply not found).
        self.dir.as_ref().map(|d| d.join(format!("{component_sha256}-{}-v3.cwasm", self.engine_hash)))
    }

    /// Load the compiled component for `bytes`, compiling (and caching) it when needed.
    pub fn load(&self, engine: &Engine, plugin: &str, bytes: &[u8], sha256_hex: &str) -> Result<(Component, CacheOutcome)> {
        let Some(path) = self.entry_path(sha256_hex) else {
            return Ok((compile(engine, plugin, bytes)?, CacheOutcome::Compiled));
        };
        let mut outcome = CacheOutcome::Compiled;
        if let Ok(file) = std::fs::File::open(&path) {
            if verify(&file) {
                // SAFETY: the entry was written by `store` below (kiln itself) and its length and
                // CRC match, so it is what `precompile_component` produced; the trailer after
                // the ELF image is outside every section and ignored by the loader.
                if let Ok(c) = unsafe { Component::deserialize_file(engine, &path) } {
                    return Ok((c, CacheOutcome::Hit));
                }
            } else {
                tracing::warn!(plugin, path = %path.display(), "compiled-plugin cache entry is corrupt; recompiling");
            }
            outcome = CacheOutcome::Repaired;
        }
        let code = engine
            .precompile_component(bytes)
            .map_err(|e| HostError::Invalid { plugin: plugin.into(), reason: format!("{e:#}") })?;
        if let Err(e) = store(&path, &code) {
            tracing::warn!(plugin, path = %path.display(), "cannot write compiled-plugin cache: {e}");
        }
        // SAFETY: `code` was just produced by this engine's `precompile_component`.
        let c = unsafe { Component::deserialize(engine, &code) }
            .map_err(|e| HostError::Invalid { plugin: plugin.into(), reason: format!("{e:#}") })?;
        Ok((c, if outcome == CacheOutcome::Repaired { outcome } else { CacheOutcome::Compiled }))
    }
}

fn compile(engine: &Engine, plugin: &str, bytes: &[u8]) -> Result<Component> {
    Component::new(engine, bytes).map_err(|e| HostError::Invalid { plugin: plugin.into(), reason: format!("{e:#}") })
}

/// Whether `file` is a whole entry: code, then the trailer with the code's CRC-32 and length.
/// The file is mapped read-only for the check (its pages are the page cache's: nothing copied).
fn verify(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(meta) = file.metadata() else { return false };
    let Ok(size) = usize::try_from(meta.len()) else { return false };
    if size <= TRAILER {
        return false;
    }
    // SAFETY: a fresh read-only private mapping of `size` bytes of an open file; it is only
    // read through the slice below and unmapped before returning.
    let map = unsafe { libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
    if map == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: `map` is a readable mapping of `size` bytes (see above), alive until munmap.
    let data = unsafe { std::slice::from_raw_parts(map as *const u8, size) };
    let (code, trailer) = data.split_at(size - TRAILER);
    let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(trailer[4..12].try_into().expect("8 bytes"));
    let ok = &trailer[12..] == MAGIC && len == code.len() as u64 && crc32fast::hash(code) == crc;
    // SAFETY: unmapping the mapping made above; `data` is not used after this.
    unsafe { libc::munmap(map, size) };
    ok
}

fn store(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(code)?;
    tmp.write_all(&crc32fast::hash(code).to_le_bytes())?;
    tmp.write_all(&(code.len() as u64).to_le_bytes())?;
    tmp.write_all(MAGIC)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
