//! The build cache: JSON values by string key, one file per key (`cache/<sha256(key)>.json`),
//! each replaced atomically.

use crate::Store;
use crate::error::{IoContext, Result};
use crate::fsutil::write_atomic;
use kiln_core::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;

#[derive(Serialize, Deserialize)]
pub(crate) struct CacheEntry {
    pub(crate) key: String,
    pub(crate) value: Value,
}

impl Store {
    fn cache_path(&self, key: &str) -> PathBuf {
        self.root
            .join("cache")
            .join(format!("{}.json", Digest::of_bytes(key.as_bytes()).hex()))
    }

    /// The value stored under `key`, if any. An unreadable or corrupt entry is a miss.
    pub fn cache_get(&self, key: &str) -> Option<Value> {
        let path = self.cache_path(key);
        let pending = self.pending_lock().cache.get(&path).cloned();
        let bytes = match pending {
            Some(b) => b,
            None => fs::read(path).ok()?,
        };
        let e: CacheEntry = serde_json::from_slice(&bytes).ok()?;
        (e.key == key).then_some(e.value)
    }

    /// When the entry under `key` was last written (now, for one not yet on disk), if any.
    pub fn cache_written(&self, key: &str) -> Option<std::time::SystemTime> {
        let path = self.cache_path(key);
        if self.pending_lock().cache.contains_key(&path) {
            return Some(std::time::SystemTime::now());
        }
        fs::metadata(path).and_then(|m| m.modified()).ok()
    }

    /// Store `value` under `key` (replacing any previous value atomically). Blob digests and
    /// snapshot keys that appear as strings anywhere in `value` are kept alive by `prune`.
    pub fn cache_put(&self, key: &str, value: &Value) -> Result<()> {
        let e = CacheEntry {
            key: key.to_string(),
            value: value.clone(),
        };
        let bytes = serde_json::to_vec(&e).expect("cache entry serializes");
        let path = self.cache_path(key);
        {
            let mut p = self.pending_lock();
            if p.depth() > 0 {
                // Written when the batch ends, after what the entry names is durable.
                p.cache.insert(path, bytes);
                return Ok(());
            }
        }
        write_atomic(&self.tmp_dir(), &path, &bytes)
    }

    /// Forget `key`. Returns whether it was there.
    pub fn cache_remove(&self, key: &str) -> Result<bool> {
        let p = self.cache_path(key);
        let was_pending = self.pending_lock().cache.remove(&p).is_some();
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && was_pending => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx("remove", p),
        }
    }

    /// Every cache entry's (key, value); corrupt entries are skipped.
    pub fn cache_entries(&self) -> Result<Vec<(String, Value)>> {
        let dir = self.root.join("cache");
        let mut out = Vec::new();
        let pending = self.pending_lock().cache.clone();
        for b in pending.values() {
            if let Ok(c) = serde_json::from_slice::<CacheEntry>(b) {
                out.push((c.key, c.value));
            }
        }
        for e in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let e = e.ctx("read directory", &dir)?;
            if e.path().extension().is_some_and(|x| x == "json")
                && !pending.contains_key(&e.path())
                && let Ok(b) = fs::read(e.path())
                && let Ok(c) = serde_json::from_slice::<CacheEntry>(&b)
            {
                out.push((c.key, c.value));
            }
        }
        Ok(out)
    }

    /// Remove every cache entry. Returns how many were removed.
    pub fn cache_clear(&self) -> Result<usize> {
        let dir = self.root.join("cache");
        let mut n = 0;
        for path in std::mem::take(&mut self.pending_lock().cache).into_keys() {
            if !path.exists() {
                n += 1;
            }
        }
        for e in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let e = e.ctx("read directory", &dir)?;
            if e.path().extension().is_some_and(|x| x == "json") {
                fs::remove_file(e.path()).ctx("remove", e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }
}
