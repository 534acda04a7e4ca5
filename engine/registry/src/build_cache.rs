//! A build cache kept in a registry repository (`--cache-to`, `--cache-from`): each entry is an
//! image manifest tagged with the step's cache key, holding the stage's layers after that step
//! and its config, as buildah keeps its cache images.

use crate::locations::Locations;
use crate::progress::Reporter;
use crate::pull::parse_manifest;
use crate::remote::MAX_CONFIG;
use crate::{Error, Progress, RegistryClient, Result};
use kiln_core::spec::{Descriptor, Manifest};
use kiln_core::{Digest, media_types};
use kiln_store::Store;

/// A cache entry found in a repository.
#[derive(Debug, Clone)]
pub struct CacheImage {
    /// The entry's layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Its config (the uncompressed digests are in `rootfs.diff_ids`).
    pub config: Vec<u8>,
}

impl RegistryClient {
    /// The entry tagged `tag` in repository `repo` (`host/path`, no tag), or `None` when the
    /// repository has no such tag. Nothing is downloaded but the manifest and the config.
    pub fn find_cache_image(&self, repo: &str, tag: &str) -> Result<Option<CacheImage>> {
        let r = crate::pull::parse_ref(&format!("{repo}:{tag}"))?;
        let remote = self.remote(&r)?;
        let fetched = match remote.get_manifest(tag) {
            Ok(f) => f,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !media_types::is_manifest(&fetched.media_type) {
            return Ok(None);
        }
        let manifest = parse_manifest(&fetched)?;
        let config = remote.get_blob_bytes(&manifest.config.digest, MAX_CONFIG)?;
        Ok(Some(CacheImage {
            layers: manifest.layers,
            config,
        }))
    }

    /// Download blob `layer` of repository `repo` into `store` (verified), unless it is there.
    pub fn fetch_cache_layer(&self, store: &Store, repo: &str, layer: &Descriptor) -> Result<()> {
        if store.has_blob(&layer.digest) {
            return Ok(());
        }
        let r = crate::pull::parse_ref(repo)?;
        let remote = self.remote(&r)?;
        let rep = Reporter::new(Progress::Quiet);
        let item = rep.item("blob", &layer.digest.to_string(), Some(layer.size));
        remote.download_blob(
            store,
            &layer.digest,
            layer.size,
            self.opts.retries,
            &item,
            None,
        )?;
        item.finish("done");
        Locations::new(store.root()).add(&remote.location(), &[layer.digest]);
        Ok(())
    }

    /// Push the image manifest `manifest` (whose config and layers are in `store`) to
    /// repository `repo` under `tag`. Returns the manifest's digest.
    pub fn push_cache_image(
        &self,
        store: &Store,
        repo: &str,
        tag: &str,
        manifest: &[u8],
    ) -> Result<Digest> {
        let parsed = Manifest::from_slice(manifest)
            .map_err(|e| Error::manifest(format!("cache image {tag}"), e.to_string()))?;
        let r = crate::pull::parse_ref(&format!("{repo}:{tag}"))?;
        let remote = self.remote(&r)?;
        let rep = Reporter::new(Progress::Quiet);
        let mut blobs: Vec<(&Descriptor, &'static str)> =
            parsed.layers.iter().map(|l| (l, "blob")).collect();
        blobs.push((&parsed.config, "config"));
        let locations = Locations::new(store.root());
        self.push_blobs(store, &remote, &locations, &blobs, &rep)?;
        let digest = remote.put_manifest(tag, parsed.media_type_or_default(), manifest)?;
        let all: Vec<Digest> = blobs.iter().map(|(d, _)| d.digest).collect();
        locations.add(&remote.location(), &all);
        Ok(digest)
    }
}
