//! Working containers (buildah `from`/`run`/`commit`): records in `containers.json` and a directory
//! `containers/<id>/` holding each one's `rootfs/` and `upper/`.

use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{now_rfc3339, read_json_or_default, remove_tree, write_atomic};
use crate::{ImageRecord, Store};
use kiln_core::{Digest, ImageReference};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A working container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex characters.
    pub id: String,
    /// Unique name (`busybox-working-container`).
    pub name: String,
    /// The image it was created from (`None` for `scratch`).
    pub image_id: Option<Digest>,
    /// The name it was created from, as given (`busybox`, `scratch`).
    pub image_name: String,
    /// The container's root filesystem directory.
    pub rootfs: PathBuf,
    /// Upper (changes) directory, when the rootfs is an overlay.
    pub upper: Option<PathBuf>,
    /// The image config being edited (OCI config JSON).
    pub config: Value,
    /// RFC 3339 creation time.
    pub created: String,
    /// Anything else the caller records (mounts, run options…).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// What to create a working container from.
#[derive(Debug, Clone, Default)]
pub struct NewContainer {
    /// Name; default `<image>-working-container` (`-N` added until unique), or
    /// `working-container` for scratch.
    pub name: Option<String>,
    /// The source image (`None` for scratch).
    pub image: Option<ImageRecord>,
    /// The name the user gave for the image.
    pub image_name: String,
    /// Initial config JSON (usually the image's config).
    pub config: Value,
    /// Extra fields to store.
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ContainerIndex {
    #[serde(default)]
    pub(crate) containers: Vec<ContainerRecord>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn random_id(seed: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut urandom = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut urandom);
    }
    let material = format!(
        "{seed}|{}|{nanos}|{n}|{}",
        std::process::id(),
        hex::encode(urandom)
    );
    Digest::of_bytes(material.as_bytes()).hex()
}

/// `docker.io/library/busybox:latest` → `busybox`, as buildah names working containers.
fn base_name(image_name: &str) -> String {
    let repo = ImageReference::parse(image_name)
        .map(|r| r.repository().to_string())
        .unwrap_or_else(|_| image_name.to_string());
    repo.rsplit('/').next().unwrap_or(&repo).to_string()
}

impl Store {
    fn containers_path(&self) -> PathBuf {
        self.root.join("containers.json")
    }

    pub(crate) fn read_containers(&self) -> Result<ContainerIndex> {
        read_json_or_default(&self.containers_path())
    }

    fn write_containers(&self, idx: &ContainerIndex) -> Result<()> {
        // Records name blobs and snapshots: those of an open batch become durable first.
        self.flush_pending()?;
        let bytes = serde_json::to_vec_pretty(idx).expect("container index serializes");
        write_atomic(&self.tmp_dir(), &self.containers_path(), &bytes)
    }

    /// Create a working container record and its empty `rootfs/` and `upper/` directories.
    pub fn create_container(&self, req: NewContainer) -> Result<ContainerRecord> {
        self.locked(|| {
            let mut idx = self.read_containers()?;
            let taken = |n: &str| idx.containers.iter().any(|c| c.name == n);
            let name = match req.name {
                Some(n) => {
                    if taken(&n) {
                        return Err(StoreError::ContainerNameInUse(n));
                    }
                    n
                }
                None => {
                    let base = if req.image.is_none()
                        || req.image_name.is_empty()
                        || req.image_name == "scratch"
                    {
                        "working-container".to_string()
                    } else {
                        format!("{}-working-container", base_name(&req.image_name))
                    };
                    let mut n = base.clone();
                    let mut i = 1;
                    while taken(&n) {
                        n = format!("{base}-{i}");
                        i += 1;
                    }
                    n
                }
            };
            let id = random_id(&name);
            let dir = self.root.join("containers").join(&id);
            let rootfs = dir.join("rootfs");
            let upper = dir.join("upper");
            for d in [&rootfs, &upper] {
                std::fs::create_dir_all(d).ctx("create directory", d)?;
            }
            let rec = ContainerRecord {
                id,
                name,
                image_id: req.image.as_ref().map(|i| i.id),
                image_name: req.image_name,
                rootfs,
                upper: Some(upper),
                config: req.config,
                created: now_rfc3339(),
                extra: req.extra,
            };
            idx.containers.push(rec.clone());
            self.write_containers(&idx)?;
            Ok(rec)
        })
    }

    /// All working containers, oldest first.
    pub fn list_containers(&self) -> Result<Vec<ContainerRecord>> {
        Ok(self.read_containers()?.containers)
    }

    /// A container by name, full ID or unique ID prefix.
    pub fn get_container(&self, name_or_id: &str) -> Result<ContainerRecord> {
        find_container(&self.read_containers()?.containers, name_or_id)
    }

    /// Replace a container's record (matched by ID), e.g. after `buildah config`.
    pub fn update_container(&self, rec: &ContainerRecord) -> Result<()> {
        self.locked(|| {
            let mut idx = self.read_containers()?;
            if idx
                .containers
                .iter()
                .any(|c| c.name == rec.name && c.id != rec.id)
            {
                return Err(StoreError::ContainerNameInUse(rec.name.clone()));
            }
            let slot = idx
                .containers
                .iter_mut()
                .find(|c| c.id == rec.id)
                .ok_or_else(|| StoreError::ContainerNotFound(rec.id.clone()))?;
            *slot = rec.clone();
            self.write_containers(&idx)
        })
    }

    /// Remove a container's record and its directory. Returns the removed record.
    pub fn remove_container(&self, name_or_id: &str) -> Result<ContainerRecord> {
        let rec = self.locked(|| {
            let mut idx = self.read_containers()?;
            let rec = find_container(&idx.containers, name_or_id)?;
            idx.containers.retain(|c| c.id != rec.id);
            self.write_containers(&idx)?;
            Ok(rec)
        })?;
        remove_tree(&self.root.join("containers").join(&rec.id))?;
        Ok(rec)
    }
}

fn find_container(all: &[ContainerRecord], q: &str) -> Result<ContainerRecord> {
    if let Some(c) = all.iter().find(|c| c.name == q || c.id == q) {
        return Ok(c.clone());
    }
    let hits: Vec<&ContainerRecord> = if q.len() >= 3 {
        all.iter().filter(|c| c.id.starts_with(q)).collect()
    } else {
        vec![]
    };
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(StoreError::ContainerNotFound(q.to_string())),
    }
}
