//! Garbage collection (`prune`) and consistency checking (`fsck`).

use crate::error::{IoContext, Result};
use crate::fsutil::{pid_alive, remove_tree};
use crate::{ImageRecord, Store};
use kiln_core::{Digest, ImageConfig, Manifest, chain_ids};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::time::{Duration, SystemTime};

/// What `prune` removes besides unreachable blobs and snapshots.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Unreferenced blobs and snapshots younger than this are kept: another process may be
    /// about to reference them. Default 10 minutes.
    pub grace: Duration,
    /// Also delete images that have no names and no working container.
    pub dangling_images: bool,
    /// Also empty the build cache.
    pub clear_cache: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            grace: Duration::from_secs(600),
            dangling_images: false,
            clear_cache: false,
        }
    }
}

/// What `prune` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Dangling images deleted.
    pub images: Vec<ImageRecord>,
    /// Cache entries removed.
    pub cache_entries: usize,
    /// Blobs deleted.
    pub blobs: Vec<Digest>,
    /// Snapshots deleted.
    pub snapshots: Vec<String>,
    /// Leftover temp entries of dead processes deleted.
    pub temp_entries: usize,
    /// Unreferenced blobs and snapshots kept because they are younger than the grace period.
    pub kept_young: usize,
    /// Bytes of blob data freed.
    pub bytes_freed: u64,
}

/// A blob whose content does not match its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBlob {
    /// The name (expected digest).
    pub digest: Digest,
    /// What the content hashes to, if it could be read.
    pub actual: Option<Digest>,
    /// Read error, if any.
    pub error: Option<String>,
}

/// What `fsck` found (and, with repair, removed).
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub checked: usize,
    /// Blobs whose content is wrong or unreadable.
    pub bad_blobs: Vec<BadBlob>,
    /// Images that need a bad or missing blob, with those digests.
    pub broken_images: Vec<(ImageRecord, Vec<Digest>)>,
    /// With repair: blobs deleted.
    pub removed_blobs: Vec<Digest>,
    /// With repair: image records deleted.
    pub removed_images: Vec<ImageRecord>,
}

impl FsckReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.bad_blobs.is_empty() && self.broken_images.is_empty()
    }
}

/// Collect every string in a JSON value.
fn strings(v: &Value, out: &mut HashSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// The blobs an image needs: manifest, config, layers (those listed in a readable manifest).
fn image_blobs(store: &Store, img: &ImageRecord) -> (Vec<Digest>, Option<Manifest>) {
    let mut v = vec![img.manifest_digest, img.id];
    let m = store.image_manifest(img).ok();
    if let Some(m) = &m {
        v.push(m.config.digest);
        v.extend(m.layers.iter().map(|l| l.digest));
    }
    (v, m)
}

fn older_than(path: &std::path::Path, grace: Duration) -> bool {
    match fs::symlink_metadata(path).and_then(|m| m.modified()) {
        Ok(t) => SystemTime::now()
            .duration_since(t)
            .map(|age| age >= grace)
            .unwrap_or(false),
        Err(_) => false,
    }
}

impl Store {
    /// Delete blobs and snapshots that no image, working container or cache entry refers to
    /// (and that are older than `opts.grace`), plus temp leftovers of processes that are gone.
    ///
    /// Kept: each image's manifest, config and layer blobs; snapshots keyed by an image's layer
    /// digests, diff IDs or chain IDs (`sha256:<hex>` or bare hex); any blob digest or snapshot key
    /// that appears as a string in a cache value or a container record.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        if opts.dangling_images || opts.clear_cache {
            self.locked(|| {
                if opts.clear_cache {
                    report.cache_entries = self.cache_clear()?;
                }
                if opts.dangling_images {
                    let used: HashSet<Digest> = self
                        .read_containers()?
                        .containers
                        .iter()
                        .filter_map(|c| c.image_id)
                        .collect();
                    // Images a manifest list names are not dangling.
                    let listed: HashSet<Digest> = self.listed_manifests()?.into_iter().collect();
                    let mut idx = self.read_images()?;
                    let (gone, keep): (Vec<_>, Vec<_>) = idx.images.into_iter().partition(|r| {
                        r.names.is_empty()
                            && !used.contains(&r.id)
                            && !listed.contains(&r.manifest_digest)
                    });
                    idx.images = keep;
                    if !gone.is_empty() {
                        self.write_images(&idx)?;
                    }
                    report.images = gone;
                }
                Ok(())
            })?;
        }

        // Reachability and deletion happen under the lock, so `put_image` (which checks its blobs
        // under the same lock) never records an image whose blobs are being deleted.
        let _lock = self.lock()?;
        let mut live_strings: HashSet<String> = HashSet::new();
        let mut live_blobs: HashSet<Digest> = HashSet::new();
        for img in self.read_images()?.images {
            let (blobs, _) = image_blobs(self, &img);
            for d in &blobs {
                live_strings.insert(d.to_string());
                live_strings.insert(d.hex());
            }
            live_blobs.extend(blobs);
            if let Ok(cfg) = self.image_config(&img) {
                let diff_ids = cfg.rootfs.diff_ids.clone();
                for d in diff_ids.iter().chain(chain_ids(&diff_ids).iter()) {
                    live_strings.insert(d.to_string());
                    live_strings.insert(d.hex());
                }
            }
        }
        // Manifest lists' index blobs.
        live_blobs.extend(self.listed_manifests()?);
        for c in self.read_containers()?.containers {
            strings(
                &serde_json::to_value(&c).expect("container record serializes"),
                &mut live_strings,
            );
        }
        for (k, v) in self.cache_entries()? {
            live_strings.insert(k);
            strings(&v, &mut live_strings);
        }
        for s in &live_strings {
            if let Ok(d) = Digest::parse(s).or_else(|_| Digest::from_hex(s)) {
                live_blobs.insert(d);
            }
        }

        for d in self.list_blobs()? {
            let p = self.blob_path(&d);
            if live_blobs.contains(&d) {
                continue;
            }
            if !older_than(&p, opts.grace) {
                report.kept_young += 1;
                continue;
            }
            let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            self.remove_blob(&d)?;
            report.bytes_freed += size;
            report.blobs.push(d);
        }
        for key in self.list_snapshots()? {
            let p = self.root.join("snapshots").join(&key);
            if live_strings.contains(&key) {
                continue;
            }
            if !older_than(&p, opts.grace) {
                report.kept_young += 1;
                continue;
            }
            if self.remove_snapshot(&key)? {
                report.snapshots.push(key);
            }
        }
        report.temp_entries = self.clean_tmp()?;
        Ok(report)
    }

    /// Delete `tmp/` entries left by processes that no longer run (or older than a week).
    fn clean_tmp(&self) -> Result<usize> {
        let dir = self.tmp_dir();
        let me = std::process::id();
        let mut n = 0;
        for e in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let e = e.ctx("read directory", &dir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            let stale = match pid {
                Some(p) if p == me => false,
                Some(p) => {
                    !pid_alive(p) || older_than(&e.path(), Duration::from_secs(7 * 24 * 3600))
                }
                None => older_than(&e.path(), Duration::from_secs(24 * 3600)),
            };
            if stale {
                remove_tree(&e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Re-hash every blob and check every image's blobs are present and sound. With `repair`,
    /// delete bad blobs and the image records that need a bad or missing blob.
    pub fn fsck(&self, repair: bool) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let mut bad: BTreeSet<Digest> = BTreeSet::new();
        for d in self.list_blobs()? {
            report.checked += 1;
            let p = self.blob_path(&d);
            let res = fs::File::open(&p).and_then(Digest::of_reader);
            match res {
                Ok((actual, _)) if actual == d => {}
                Ok((actual, _)) => {
                    bad.insert(d);
                    report.bad_blobs.push(BadBlob {
                        digest: d,
                        actual: Some(actual),
                        error: None,
                    });
                }
                Err(e) => {
                    bad.insert(d);
                    report.bad_blobs.push(BadBlob {
                        digest: d,
                        actual: None,
                        error: Some(format!("{}: {e}", p.display())),
                    });
                }
            }
        }
        for img in self.read_images()?.images {
            let (blobs, manifest) = image_blobs(self, &img);
            let mut need: Vec<Digest> = blobs
                .into_iter()
                .filter(|d| bad.contains(d) || !self.has_blob(d))
                .collect();
            if manifest.is_none() && !need.contains(&img.manifest_digest) {
                need.push(img.manifest_digest);
            }
            if let Some(m) = &manifest
                && m.config.digest != img.id
            {
                need.push(m.config.digest);
            }
            if need.is_empty()
                && let Ok(cfg) = self.image_config_bytes(&img)
                && ImageConfig::from_slice(&cfg).is_err()
                && kiln_core::media_types::is_config(
                    &manifest
                        .as_ref()
                        .map(|m| m.config.media_type.clone())
                        .unwrap_or_default(),
                )
            {
                need.push(img.id);
            }
            need.sort();
            need.dedup();
            if !need.is_empty() {
                report.broken_images.push((img, need));
            }
        }
        if repair {
            for d in &bad {
                self.remove_blob(d)?;
                report.removed_blobs.push(*d);
            }
            let broken: HashSet<Digest> = report.broken_images.iter().map(|(i, _)| i.id).collect();
            if !broken.is_empty() {
                self.locked(|| {
                    let mut idx = self.read_images()?;
                    let (gone, keep): (Vec<_>, Vec<_>) =
                        idx.images.into_iter().partition(|r| broken.contains(&r.id));
                    idx.images = keep;
                    self.write_images(&idx)?;
                    report.removed_images = gone;
                    Ok(())
                })?;
            }
        }
        Ok(report)
    }
}
