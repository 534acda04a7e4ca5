//! Where blobs were seen in registries (`HOST/REPO` per digest), so a push can mount a blob from
//! another repository of the same registry instead of uploading it. Kept best-effort in
//! `<store root>/registry/blob-locations.json` (read-modify-write under a lock file); failures
//! only cost a mount.

use kiln_core::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many repositories are remembered per blob.
const MAX_PER_BLOB: usize = 8;

/// The location cache of one store.
#[derive(Debug, Clone)]
pub(crate) struct Locations {
    file: PathBuf,
    /// A repository known (not merely remembered) to hold every blob asked about.
    first: Option<String>,
}

impl Locations {
    pub fn new(store_root: &Path) -> Locations {
        Locations {
            file: store_root.join("registry/blob-locations.json"),
            first: None,
        }
    }

    /// These locations with `first` (`HOST/REPO`) tried before the remembered ones: the
    /// repository a list entry was recorded from holds all its blobs.
    pub fn with_first(mut self, first: Option<&str>) -> Locations {
        self.first = first.map(str::to_string);
        self
    }

    fn read(&self) -> BTreeMap<String, Vec<String>> {
        std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Repositories (`HOST/REPO`) known to hold `digest`, most recent first.
    pub fn get(&self, digest: &Digest) -> Vec<String> {
        let mut out: Vec<String> = self.first.iter().cloned().collect();
        for l in self.read().remove(&digest.to_string()).unwrap_or_default() {
            if !out.contains(&l) {
                out.push(l);
            }
        }
        out
    }

    /// Record that `location` (`HOST/REPO`) holds each of `digests`.
    pub fn add(&self, location: &str, digests: &[Digest]) {
        if let Err(e) = self.try_add(location, digests) {
            tracing::debug!(
                "not recording blob locations in {}: {e}",
                self.file.display()
            );
        }
    }

    fn try_add(&self, location: &str, digests: &[Digest]) -> std::io::Result<()> {
        let dir = self.file.parent().expect("locations file has a parent");
        std::fs::create_dir_all(dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("blob-locations.lock"))?;
        lock.lock()?;
        let mut map = self.read();
        for d in digests {
            let v = map.entry(d.to_string()).or_default();
            v.retain(|l| l != location);
            v.insert(0, location.to_string());
            v.truncate(MAX_PER_BLOB);
        }
        let tmp = dir.join(format!(".blob-locations.{}.tmp", std::process::id()));
        std::fs::write(
            &tmp,
            serde_json::to_vec(&map).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_recent_first_and_capped() {
        let d = tempfile::tempdir().unwrap();
        let l = Locations::new(d.path());
        let a = Digest::of_bytes(b"a");
        assert!(l.get(&a).is_empty());
        for i in 0..10 {
            l.add(&format!("r.io/repo{i}"), &[a]);
        }
        l.add("r.io/repo3", &[a]);
        let got = l.get(&a);
        assert_eq!(got.len(), MAX_PER_BLOB);
        assert_eq!(got[0], "r.io/repo3");
        assert_eq!(got.iter().filter(|x| *x == "r.io/repo3").count(), 1);
    }
}
