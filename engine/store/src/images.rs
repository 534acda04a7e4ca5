//! Image records: which manifest and config make up an image and which names point at it,
//! kept in `images.json`, plus name/ID resolution the way buildah does it.

use crate::Store;
use crate::error::{Result, StoreError};
use crate::fsutil::{now_rfc3339, read_json_or_default, write_atomic};
use kiln_core::{Digest, ImageConfig, ImageReference, Manifest, media_types};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image ID: the digest of its config blob.
    pub id: Digest,
    /// Digest of the manifest blob.
    pub manifest_digest: Digest,
    /// Media type of the manifest (OCI or Docker schema 2).
    pub manifest_media_type: String,
    /// Full names (`localhost/foo:latest`, `docker.io/library/busybox:1.36`), possibly none.
    #[serde(default)]
    pub names: Vec<String>,
    /// Creation time (RFC 3339): the config's `created`, else when the image was stored.
    pub created: String,
    /// Sum of the config and layer blob sizes (bytes as stored, i.e. compressed).
    pub size: u64,
    /// Fields written by newer versions, kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl ImageRecord {
    /// Creation time in seconds since the Unix epoch, if `created` parses.
    pub fn created_unix(&self) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(&self.created)
            .ok()
            .map(|t| t.timestamp())
    }

    /// The first 12 hex characters of the ID.
    pub fn short_id(&self) -> String {
        self.id.short()
    }
}

/// What [`Store::remove_image`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// Only this name was removed; the image keeps its other names.
    Untagged {
        /// The image.
        id: Digest,
        /// The removed name.
        name: String,
    },
    /// The image record is gone (its blobs go at the next prune).
    Deleted(ImageRecord),
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ImageIndex {
    #[serde(default)]
    pub(crate) images: Vec<ImageRecord>,
}

/// Normalize a name given for a local image: `foo` → `localhost/foo:latest`. A digest
/// (`REPO@sha256:…`, the name of an image pulled by digest) only with `digest_allowed`.
fn normalize_name(name: &str, digest_allowed: bool) -> Result<String> {
    let r = ImageReference::parse_local(name)?;
    if r.digest().is_some() && !(digest_allowed && r.tag().is_none()) {
        return Err(kiln_core::Error::InvalidReference {
            input: name.to_string(),
            reason: "an image name cannot carry a digest".into(),
        }
        .into());
    }
    Ok(r.to_string())
}

impl Store {
    fn images_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    pub(crate) fn read_images(&self) -> Result<ImageIndex> {
        read_json_or_default(&self.images_path())
    }

    pub(crate) fn write_images(&self, idx: &ImageIndex) -> Result<()> {
        // Records name blobs: those of an open batch become durable first.
        self.flush_pending()?;
        let bytes = serde_json::to_vec_pretty(idx).expect("image index serializes");
        write_atomic(&self.tmp_dir(), &self.images_path(), &bytes)
    }

    /// All images, newest first.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let mut v = self.read_images()?.images;
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Record an image whose manifest is `manifest` (stored as a blob here, byte for byte) and give
    /// it `names` (normalized as local names; a name held by another image moves to this one).
    /// The config and layer blobs must already be in the store. Storing an image whose config is
    /// already known updates that record (new manifest, names added).
    pub fn put_image(&self, manifest: &[u8], names: &[&str]) -> Result<ImageRecord> {
        let mdigest = Digest::of_bytes(manifest);
        let m: Manifest =
            Manifest::from_slice(manifest).map_err(|e| StoreError::InvalidManifest {
                digest: mdigest,
                reason: e.to_string(),
            })?;
        let media_type = match m.media_type.as_deref() {
            Some(t) if media_types::is_manifest(t) => t.to_string(),
            None => media_types::OCI_MANIFEST.to_string(),
            Some(t) => {
                return Err(StoreError::InvalidManifest {
                    digest: mdigest,
                    reason: format!("media type {t} is not an image manifest"),
                });
            }
        };
        let names = names
            .iter()
            .map(|n| normalize_name(n, true))
            .collect::<Result<Vec<_>>>()?;
        // A digest in a name is the image's own manifest digest (a pull by digest), never
        // another: lookups by `REPO@DIGEST` trust it.
        for n in &names {
            if let Ok(r) = ImageReference::parse(n)
                && let Some(d) = r.digest()
                && *d != mdigest
            {
                return Err(kiln_core::Error::InvalidReference {
                    input: n.clone(),
                    reason: format!("the image's manifest is {mdigest}, not {d}"),
                }
                .into());
            }
        }
        let created = if media_types::is_config(&m.config.media_type) {
            let cfg = self.read_blob(&m.config.digest).unwrap_or_default();
            ImageConfig::from_slice(&cfg)
                .ok()
                .and_then(|c| c.created)
                .filter(|c| !c.is_empty())
        } else {
            None
        };
        let size = m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
        let id = m.config.digest;
        self.locked(|| {
            // Checked and written under the lock: prune deletes under it too, so what is checked
            // here stays until the record that keeps it alive is written.
            let missing: Vec<Digest> = std::iter::once(&m.config)
                .chain(&m.layers)
                .map(|d| d.digest)
                .filter(|d| !self.has_blob(d))
                .collect();
            if !missing.is_empty() {
                return Err(StoreError::MissingBlobs {
                    image: mdigest,
                    missing,
                });
            }
            self.put_blob_bytes(manifest)?;
            let mut idx = self.read_images()?;
            // Nothing is written when the record is already as asked (a rebuild that reuses its
            // image and keeps its names).
            let mut changed = false;
            for other in idx.images.iter_mut().filter(|r| r.id != id) {
                let before = other.names.len();
                other.names.retain(|n| !names.contains(n));
                changed |= other.names.len() != before;
            }
            let rec = match idx.images.iter_mut().find(|r| r.id == id) {
                Some(r) => {
                    changed |= r.manifest_digest != mdigest
                        || r.manifest_media_type != media_type
                        || r.size != size;
                    r.manifest_digest = mdigest;
                    r.manifest_media_type = media_type;
                    r.size = size;
                    for n in names {
                        if !r.names.contains(&n) {
                            r.names.push(n);
                            changed = true;
                        }
                    }
                    r.clone()
                }
                None => {
                    let r = ImageRecord {
                        id,
                        manifest_digest: mdigest,
                        manifest_media_type: media_type,
                        names,
                        created: created.unwrap_or_else(now_rfc3339),
                        size,
                        extra: BTreeMap::new(),
                    };
                    idx.images.push(r.clone());
                    changed = true;
                    r
                }
            };
            if changed {
                self.write_images(&idx)?;
            }
            Ok(rec)
        })
    }

    /// Find an image by name (`foo`, `localhost/foo:1`, `busybox`, `name@sha256:…`), by full ID
    /// (`sha256:…` or 64 hex), by unique ID prefix (≥ 3 hex characters), or by manifest digest.
    /// Short names try `localhost/NAME`, then `docker.io/[library/]NAME`, then any registry whose
    /// repository path ends in `/NAME` (an error if that matches several images).
    pub fn resolve_image(&self, name_or_id: &str) -> Result<ImageRecord> {
        let images = self.read_images()?.images;
        find_image(&images, name_or_id)
    }

    /// The parsed manifest of an image.
    pub fn image_manifest(&self, img: &ImageRecord) -> Result<Manifest> {
        let bytes = self.read_blob(&img.manifest_digest)?;
        Manifest::from_slice(&bytes).map_err(|e| StoreError::InvalidManifest {
            digest: img.manifest_digest,
            reason: e.to_string(),
        })
    }

    /// The raw manifest bytes of an image.
    pub fn image_manifest_bytes(&self, img: &ImageRecord) -> Result<Vec<u8>> {
        self.read_blob(&img.manifest_digest)
    }

    /// The raw config bytes of an image.
    pub fn image_config_bytes(&self, img: &ImageRecord) -> Result<Vec<u8>> {
        self.read_blob(&img.id)
    }

    /// The parsed config of an image.
    pub fn image_config(&self, img: &ImageRecord) -> Result<ImageConfig> {
        let bytes = self.read_blob(&img.id)?;
        ImageConfig::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: self.blob_path(&img.id),
            reason: format!("image config: {e}"),
        })
    }

    /// Add names to an image (`buildah tag`). Names are normalized as local names and move
    /// from any image that had them.
    pub fn tag_image(&self, name_or_id: &str, new_names: &[&str]) -> Result<ImageRecord> {
        let names = new_names
            .iter()
            .map(|n| normalize_name(n, false))
            .collect::<Result<Vec<_>>>()?;
        self.locked(|| {
            let mut idx = self.read_images()?;
            let id = find_image(&idx.images, name_or_id)?.id;
            for r in idx.images.iter_mut() {
                if r.id == id {
                    for n in &names {
                        if !r.names.contains(n) {
                            r.names.push(n.clone());
                        }
                    }
                } else {
                    r.names.retain(|n| !names.contains(n));
                }
            }
            self.write_images(&idx)?;
            Ok(idx
                .images
                .into_iter()
                .find(|r| r.id == id)
                .expect("image still present"))
        })
    }

    /// Remove one name from the image that has it. Returns the image as it is afterwards.
    pub fn untag_image(&self, name: &str) -> Result<ImageRecord> {
        self.locked(|| {
            let mut idx = self.read_images()?;
            let (rec, full) = find_image_and_name(&idx.images, name)?;
            let full = full.ok_or_else(|| {
                StoreError::ImageNotFound(format!(
                    "{name} (not a name of image {})",
                    rec.id.short()
                ))
            })?;
            let r = idx
                .images
                .iter_mut()
                .find(|r| r.id == rec.id)
                .expect("found above");
            r.names.retain(|n| *n != full);
            let out = r.clone();
            self.write_images(&idx)?;
            Ok(out)
        })
    }

    /// `buildah rmi`: given a name of an image that has several, remove only that name; otherwise
    /// delete the image record. Refuses (unless `force`) to delete an image used by a working
    /// container, or to delete by ID an image that has several names. Blobs and snapshots are
    /// reclaimed by [`Store::prune`].
    pub fn remove_image(&self, name_or_id: &str, force: bool) -> Result<Removed> {
        self.locked(|| {
            let mut idx = self.read_images()?;
            let (rec, by_name) = find_image_and_name(&idx.images, name_or_id)?;
            if let Some(name) = &by_name
                && rec.names.len() > 1
            {
                let r = idx
                    .images
                    .iter_mut()
                    .find(|r| r.id == rec.id)
                    .expect("found above");
                r.names.retain(|n| n != name);
                self.write_images(&idx)?;
                return Ok(Removed::Untagged {
                    id: rec.id,
                    name: name.clone(),
                });
            }
            if !force {
                if by_name.is_none() && rec.names.len() > 1 {
                    return Err(StoreError::ImageInUse {
                        image: rec.id.hex(),
                        reason: format!(
                            "it has several names ({}): remove them one by one or force",
                            rec.names.join(", ")
                        ),
                    });
                }
                let users: Vec<String> = self
                    .read_containers()?
                    .containers
                    .into_iter()
                    .filter(|c| c.image_id == Some(rec.id))
                    .map(|c| c.name)
                    .collect();
                if !users.is_empty() {
                    return Err(StoreError::ImageInUse {
                        image: rec.id.hex(),
                        reason: format!("used by working containers {}", users.join(", ")),
                    });
                }
            }
            idx.images.retain(|r| r.id != rec.id);
            self.write_images(&idx)?;
            Ok(Removed::Deleted(rec))
        })
    }
}

pub(crate) fn find_image(images: &[ImageRecord], q: &str) -> Result<ImageRecord> {
    find_image_and_name(images, q).map(|(r, _)| r)
}

/// Find an image, and the stored name the query matched (`None` when found by ID or digest).
fn find_image_and_name(images: &[ImageRecord], q: &str) -> Result<(ImageRecord, Option<String>)> {
    let not_found = || StoreError::ImageNotFound(q.to_string());
    if q.is_empty() {
        return Err(not_found());
    }
    // Full digest: image ID or manifest digest.
    if let Ok(d) = Digest::parse(q) {
        let hits: Vec<&ImageRecord> = images
            .iter()
            .filter(|r| r.id == d || r.manifest_digest == d)
            .collect();
        return unique(q, hits)?.map(|r| (r, None)).ok_or_else(not_found);
    }
    // Exact stored name.
    if let Some(r) = images.iter().find(|r| r.names.iter().any(|n| n == q)) {
        return Ok((r.clone(), Some(q.to_string())));
    }
    let is_hex = q.len() >= 3
        && q.len() <= 64
        && q.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match lookup_name(images, q) {
        Ok(Some((r, n))) => return Ok((r, n)),
        Err(e) if !is_hex => return Err(e),
        _ => {}
    }
    if is_hex {
        let hits: Vec<&ImageRecord> = images
            .iter()
            .filter(|r| r.id.hex().starts_with(q))
            .collect();
        return unique(q, hits)?.map(|r| (r, None)).ok_or_else(not_found);
    }
    Err(not_found())
}

/// At most one distinct image among `hits`.
fn unique(q: &str, hits: Vec<&ImageRecord>) -> Result<Option<ImageRecord>> {
    let mut ids: Vec<Digest> = hits.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    match ids.len() {
        0 => Ok(None),
        1 => Ok(hits.into_iter().next().cloned()),
        _ => Err(StoreError::AmbiguousImage {
            name: q.to_string(),
            candidates: ids.iter().map(|d| d.short()).collect(),
        }),
    }
}

fn lookup_name(images: &[ImageRecord], q: &str) -> Result<Option<(ImageRecord, Option<String>)>> {
    let short = ImageReference::is_short_name(q);
    let candidates: Vec<ImageReference> = if short {
        [ImageReference::parse_local(q), ImageReference::parse(q)]
            .into_iter()
            .flatten()
            .collect()
    } else {
        vec![ImageReference::parse(q)?]
    };
    for c in &candidates {
        if let Some(hit) = match_ref(images, c) {
            return Ok(Some(hit));
        }
    }
    let Some(c) = candidates.first().filter(|_| short) else {
        return Ok(None);
    };
    // Any registry: the stored repository path ends with the short name's path.
    let path = c.repository();
    let mut hits: Vec<(&ImageRecord, String)> = Vec::new();
    for r in images {
        for n in &r.names {
            let Ok(parsed) = ImageReference::parse(n) else {
                continue;
            };
            let same_repo =
                parsed.repository() == path || parsed.repository().ends_with(&format!("/{path}"));
            let same_version = match c.digest() {
                Some(d) => *d == r.manifest_digest,
                None => parsed.tag() == c.tag(),
            };
            if same_repo && same_version {
                hits.push((r, n.clone()));
                break;
            }
        }
    }
    let recs: Vec<&ImageRecord> = hits.iter().map(|(r, _)| *r).collect();
    Ok(unique(q, recs)?.map(|r| {
        let name = hits
            .iter()
            .find(|(h, _)| h.id == r.id)
            .map(|(_, n)| n.clone());
        (r, name.filter(|_| c.digest().is_none()))
    }))
}

/// An image one of whose names equals `want` (for `name@digest`: same repository and manifest
/// digest), with the stored name matched (none for digest matches).
fn match_ref(
    images: &[ImageRecord],
    want: &ImageReference,
) -> Option<(ImageRecord, Option<String>)> {
    match want.digest() {
        Some(d) => images
            .iter()
            .find(|r| {
                r.manifest_digest == *d
                    && r.names
                        .iter()
                        .filter_map(|n| ImageReference::parse(n).ok())
                        .any(|n| n.name() == want.name())
            })
            .or_else(|| {
                images
                    .iter()
                    .find(|r| r.manifest_digest == *d && want.tag().is_none())
            })
            .map(|r| (r.clone(), None)),
        None => {
            let s = want.to_string();
            images
                .iter()
                .find(|r| r.names.contains(&s))
                .map(|r| (r.clone(), Some(s)))
        }
    }
}
