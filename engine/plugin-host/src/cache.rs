//! The on-disk cache of compiled plugins. Entries are keyed by the component's sha256 and the
//! engine's compatibility hash, carry a CRC-32 of their own bytes and their length, and are
//! written only by kiln (temp file + rename). A truncated or altered entry fails its check and is
//! recompiled: cached code is never deserialized without that check. (The check is against
//! damage, not tampering: whoever can write the cache directory can write a matching checksum of
//! any kind, so a cryptographic hash would buy nothing over CRC-32, which costs a tenth as much
//! per load.)

use crate::error::{HostError, Result};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"KILNCWA2";

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
        // `v2`: the entry layout of MAGIC (entries of another layout are simply not found).
        self.dir.as_ref().map(|d| d.join(format!("{component_sha256}-{}-v2.cwasm", self.engine_hash)))
    }

    /// Load the compiled component for `bytes`, compiling (and caching) it when needed.
    pub fn load(&self, engine: &Engine, plugin: &str, bytes: &[u8], sha256_hex: &str) -> Result<(Component, CacheOutcome)> {
        let Some(path) = self.entry_path(sha256_hex) else {
            return Ok((compile(engine, plugin, bytes)?, CacheOutcome::Compiled));
        };
        let mut outcome = CacheOutcome::Compiled;
        if let Ok(data) = std::fs::read(&path) {
            match verify(&data) {
                Some(code) => {
                    // SAFETY: the bytes were written by `store` below (kiln itself) and their
                    // length and CRC match, so they are what `precompile_component` produced.
                    if let Ok(c) = unsafe { Component::deserialize(engine, code) } {
                        return Ok((c, CacheOutcome::Hit));
                    }
                    outcome = CacheOutcome::Repaired;
                }
                None => {
                    tracing::warn!(plugin, path = %path.display(), "compiled-plugin cache entry is corrupt; recompiling");
                    outcome = CacheOutcome::Repaired;
                }
            }
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

/// Layout: MAGIC, CRC-32 of the code (u32 LE), 28 zero bytes, code length (u64 LE), code.
fn verify(data: &[u8]) -> Option<&[u8]> {
    if data.len() < 48 || &data[..8] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(data[8..12].try_into().ok()?);
    let len = u64::from_le_bytes(data[40..48].try_into().ok()?) as usize;
    let code = data.get(48..)?;
    if code.len() != len || data[12..40].iter().any(|b| *b != 0) || crc32fast::hash(code) != crc {
        return None;
    }
    Some(code)
}

fn store(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(&crc32fast::hash(code).to_le_bytes())?;
    tmp.write_all(&[0u8; 28])?;
    tmp.write_all(&(code.len() as u64).to_le_bytes())?;
    tmp.write_all(code)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
