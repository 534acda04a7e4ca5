//! Manifest lists (`kiln manifest`, `kiln build --manifest`): an OCI image index per name, kept
//! in `lists.json` with the index itself as a blob. Its entries name images of the store by
//! manifest digest, or images of a registry recorded without their layers (their manifest and
//! config are blobs, their repository is kept with the list); `prune` keeps those images and
//! blobs and the index blobs.

use crate::Store;
use crate::error::{Result, StoreError};
use crate::fsutil::{now_rfc3339, read_json_or_default, write_atomic};
use kiln_core::spec::{Descriptor, Index, Manifest};
use kiln_core::{Digest, ImageReference};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One manifest list in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRecord {
    /// Full name (`localhost/mylist:latest`).
    pub name: String,
    /// Digest of the index blob.
    pub digest: Digest,
    /// When the list was last changed (RFC 3339).
    pub changed: String,
    /// Entries recorded from a registry rather than images of the store: manifest digest →
    /// the repository (`HOST/REPO`) that holds its blobs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<Digest, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ListIndex {
    #[serde(default)]
    lists: Vec<ListRecord>,
}

/// `foo` → `localhost/foo:latest`, as image names are normalized.
fn normalize(name: &str) -> Result<String> {
    Ok(ImageReference::parse_local(name)?.to_string())
}

impl Store {
    fn lists_path(&self) -> PathBuf {
        self.root.join("lists.json")
    }

    fn read_lists(&self) -> Result<ListIndex> {
        read_json_or_default(&self.lists_path())
    }

    /// Every manifest list.
    pub fn list_manifest_lists(&self) -> Result<Vec<ListRecord>> {
        Ok(self.read_lists()?.lists)
    }

    /// The list named `name` and its index.
    pub fn manifest_list(&self, name: &str) -> Result<(ListRecord, Index)> {
        let full = normalize(name)?;
        let rec = self
            .read_lists()?
            .lists
            .into_iter()
            .find(|l| l.name == full)
            .ok_or_else(|| StoreError::ListNotFound(name.to_string()))?;
        let index = self.list_index(&rec)?;
        Ok((rec, index))
    }

    /// Change the list `name` with `edit`, all under the store lock (two builds adding to one
    /// list both land). A missing list starts empty when `create` is set. Every entry `edit`
    /// adds must be an image of the store; entries already there are kept as they are.
    pub fn update_manifest_list<T>(
        &self,
        name: &str,
        create: bool,
        edit: impl FnOnce(&mut Index) -> Result<T>,
    ) -> Result<(ListRecord, T)> {
        self.update_manifest_list_sources(name, create, |index, _| edit(index))
    }

    /// [`Store::update_manifest_list`] that also edits where recorded entries come from: an
    /// entry `edit` adds is an image of the store, or a manifest stored as a blob (with its
    /// config) whose repository `edit` puts in the sources. Sources of entries the index no
    /// longer holds are dropped.
    pub fn update_manifest_list_sources<T>(
        &self,
        name: &str,
        create: bool,
        edit: impl FnOnce(&mut Index, &mut BTreeMap<Digest, String>) -> Result<T>,
    ) -> Result<(ListRecord, T)> {
        let full = normalize(name)?;
        self.locked(|| {
            let mut idx = self.read_lists()?;
            let (mut index, mut sources) = match idx.lists.iter().find(|l| l.name == full) {
                Some(rec) => (self.list_index(rec)?, rec.sources.clone()),
                None if create => (Index::new_oci(Vec::new()), BTreeMap::new()),
                None => return Err(StoreError::ListNotFound(name.to_string())),
            };
            let before: Vec<Digest> = index.manifests.iter().map(|d| d.digest).collect();
            let out = edit(&mut index, &mut sources)?;
            let rec = self.save_list(&mut idx, full, &index, sources, &before)?;
            Ok((rec, out))
        })
    }

    /// Make the list `name` holding `manifests` (images of the store); an error if it exists.
    pub fn create_manifest_list(
        &self,
        name: &str,
        manifests: Vec<Descriptor>,
    ) -> Result<ListRecord> {
        let full = normalize(name)?;
        self.locked(|| {
            let mut idx = self.read_lists()?;
            if idx.lists.iter().any(|l| l.name == full) {
                return Err(StoreError::ListExists(name.to_string()));
            }
            self.save_list(
                &mut idx,
                full,
                &Index::new_oci(manifests),
                BTreeMap::new(),
                &[],
            )
        })
    }

    /// Forget the list `name` (its images stay).
    pub fn remove_manifest_list(&self, name: &str) -> Result<ListRecord> {
        let full = normalize(name)?;
        self.locked(|| {
            let mut idx = self.read_lists()?;
            let pos = idx
                .lists
                .iter()
                .position(|l| l.name == full)
                .ok_or_else(|| StoreError::ListNotFound(name.to_string()))?;
            let rec = idx.lists.remove(pos);
            self.write_lists(&idx)?;
            Ok(rec)
        })
    }

    /// The blobs lists need (kept by `prune`): each list's index, the manifests it names, and
    /// the configs of those manifests (a registry's image recorded in a list has no image record
    /// of its own to keep them).
    pub(crate) fn listed_manifests(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for l in self.read_lists()?.lists {
            out.push(l.digest);
            if let Ok(bytes) = self.read_blob(&l.digest)
                && let Ok(index) = Index::from_slice(&bytes)
            {
                for entry in &index.manifests {
                    out.push(entry.digest);
                    if let Ok(bytes) = self.read_blob(&entry.digest)
                        && let Ok(m) = Manifest::from_slice(&bytes)
                    {
                        out.push(m.config.digest);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The index of list `rec`.
    fn list_index(&self, rec: &ListRecord) -> Result<Index> {
        let bytes = self.read_blob(&rec.digest)?;
        Index::from_slice(&bytes).map_err(|e| StoreError::InvalidManifest {
            digest: rec.digest,
            reason: e.to_string(),
        })
    }

    /// Store `index` as list `full` in `idx` and write it (the caller holds the lock). Entries
    /// not in `before` must be images of the store, or manifests recorded from a registry (in
    /// `sources`, and in the store as blobs with their configs).
    fn save_list(
        &self,
        idx: &mut ListIndex,
        full: String,
        index: &Index,
        mut sources: BTreeMap<Digest, String>,
        before: &[Digest],
    ) -> Result<ListRecord> {
        sources.retain(|d, _| index.manifests.iter().any(|e| e.digest == *d));
        let images = self.read_images()?.images;
        for d in index
            .manifests
            .iter()
            .filter(|d| !before.contains(&d.digest))
        {
            if !images.iter().any(|i| i.manifest_digest == d.digest)
                && !(sources.contains_key(&d.digest) && self.recorded_manifest(&d.digest))
            {
                return Err(StoreError::ImageNotFound(d.digest.to_string()));
            }
        }
        let digest = self.put_blob_bytes(&index.to_vec())?;
        let rec = ListRecord {
            name: full,
            digest,
            changed: now_rfc3339(),
            sources,
        };
        idx.lists.retain(|l| l.name != rec.name);
        idx.lists.push(rec.clone());
        self.write_lists(idx)?;
        Ok(rec)
    }

    /// Whether `digest` is a manifest stored as a blob together with its config.
    fn recorded_manifest(&self, digest: &Digest) -> bool {
        self.read_blob(digest)
            .ok()
            .and_then(|b| Manifest::from_slice(&b).ok())
            .is_some_and(|m| self.has_blob(&m.config.digest))
    }

    fn write_lists(&self, idx: &ListIndex) -> Result<()> {
        self.flush_pending()?;
        let bytes = serde_json::to_vec_pretty(idx).expect("list index serializes");
        write_atomic(&self.tmp_dir(), &self.lists_path(), &bytes)
    }
}
