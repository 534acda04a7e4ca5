//! Manifest lists and registries: recording a registry's image as a list entry without its
//! layers (`kiln manifest add docker://…`), and pushing a list of the store (`kiln manifest
//! push`): its images by digest (with `--all`), then the index under the destination's tag.

use crate::locations::Locations;
use crate::pull::{parse_manifest, parse_ref};
use crate::push::{PushFormat, convert_manifest};
use crate::remote::{MAX_CONFIG, store_err};
use crate::{Error, RegistryClient, Result};
use kiln_core::spec::{Index, Manifest};
use kiln_core::{Digest, ImageConfig, ImageReference, media_types};
use kiln_store::Store;
use std::collections::BTreeMap;

/// A registry's image recorded for a manifest list: its manifest and config are in the store,
/// its layers stay in the registry (where `--all` pushes copy or mount them from).
#[derive(Debug, Clone)]
pub struct RecordedImage {
    /// The reference it was found under (after short-name resolution).
    pub reference: ImageReference,
    /// The digest of its (platform) manifest.
    pub manifest_digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest's size in bytes.
    pub size: u64,
    /// Its configuration (the entry's platform comes from it).
    pub config: ImageConfig,
    /// The repository holding its blobs (`HOST/REPO`), for the list's record.
    pub source: String,
}

impl RegistryClient {
    /// Record `src` (`docker://REF` or a name resolved through registries.conf), for the
    /// client's platform, as a manifest list entry: its manifest and config go into the store,
    /// and where its blobs live is remembered, so that `--all` pushes can mount or copy them;
    /// no layer is fetched.
    pub fn record_image(&self, store: &Store, src: &str) -> Result<RecordedImage> {
        let platform = self.opts.platform.clone();
        let (reference, (fetched, manifest, config_bytes, source)) =
            self.first_candidate(src, |c| {
                let remote = self.remote(c)?;
                let top = remote.get_manifest(&c.tag_or_digest())?;
                let m = self.platform_manifest(&remote, &c.to_string(), top, &platform)?;
                let manifest = parse_manifest(&m)?;
                let config = remote.get_blob_bytes(&manifest.config.digest, MAX_CONFIG)?;
                let mut blobs: Vec<Digest> = manifest.layers.iter().map(|l| l.digest).collect();
                blobs.push(manifest.config.digest);
                Locations::new(store.root()).add(&remote.location(), &blobs);
                Ok((m, manifest, config, remote.location()))
            })?;
        let config = ImageConfig::from_slice(&config_bytes).map_err(|e| {
            Error::manifest(
                format!("config {} of {reference}", manifest.config.digest),
                e.to_string(),
            )
        })?;
        store.put_blob_bytes(&config_bytes).map_err(store_err)?;
        store.put_blob_bytes(&fetched.bytes).map_err(store_err)?;
        Ok(RecordedImage {
            reference,
            manifest_digest: fetched.digest,
            media_type: fetched.media_type,
            size: fetched.bytes.len() as u64,
            config,
            source,
        })
    }

    /// Push `index` (whose entries are images of `store`, or registry images recorded by
    /// [`RegistryClient::record_image`], whose repositories `sources` names) to `dest`
    /// (`docker://REF` or `REF`). With `all`, each image goes first, by digest, into the
    /// destination's repository (converted to `format` when given, the entry updated to match; a
    /// recorded image's layers are mounted from, or copied through the store from, its source
    /// repository); without it the registry must already have them. The index is written as an OCI index, or a Docker manifest list for
    /// [`PushFormat::Docker`]. Returns the index digest the registry stored.
    pub fn push_manifest_list(
        &self,
        store: &Store,
        index: &Index,
        dest: &str,
        all: bool,
        format: Option<PushFormat>,
        sources: &BTreeMap<Digest, String>,
    ) -> Result<Digest> {
        let dest_ref = parse_ref(dest.strip_prefix("docker://").unwrap_or(dest))?;
        let dest_ref = self.settings.conf.rewrite(&dest_ref)?;
        if dest_ref.digest().is_some() {
            return Err(Error::InvalidReference {
                reference: dest.to_string(),
                reason: "a manifest list is pushed to a tag, not a digest".into(),
            });
        }
        let mut out = index.clone();
        if !all {
            // The registry has the images already: the entries stay as they are.
            if format == Some(PushFormat::Docker)
                && out
                    .manifests
                    .iter()
                    .any(|d| d.media_type != media_types::DOCKER_MANIFEST)
            {
                return Err(Error::Unsupported(
                    "--format v2s2 converts the list's images only when they are pushed too \
                     (--all)"
                        .into(),
                ));
            }
        }
        for entry in out.manifests.iter_mut().filter(|_| all) {
            let source = sources.get(&entry.digest).cloned();
            // An image of the store, or a registry's image whose manifest was recorded.
            let bytes = match store.resolve_image(&entry.digest.to_string()) {
                Ok(image) => store.image_manifest_bytes(&image).map_err(store_err)?,
                Err(e) => store.read_blob(&entry.digest).map_err(|_| {
                    Error::Store(format!(
                        "manifest list entry {} is not an image of the store any more: {e}",
                        entry.digest
                    ))
                })?,
            };
            let manifest = Manifest::from_slice(&bytes).map_err(|e| {
                Error::manifest(format!("manifest {}", entry.digest), e.to_string())
            })?;
            if let Some(converted) = format
                .map(|f| convert_manifest(&manifest, f))
                .transpose()?
                .flatten()
            {
                let b = converted.to_vec();
                entry.digest = Digest::of_bytes(&b);
                entry.size = b.len() as u64;
                entry.media_type = converted.media_type_or_default().to_string();
            }
            let at = dest_ref.with_digest(entry.digest);
            let pushed =
                self.push_manifest_to(store, &bytes, at.clone(), format, source.as_deref())?;
            if pushed.manifest_digest != entry.digest {
                return Err(Error::DigestMismatch {
                    expected: entry.digest.to_string(),
                    actual: pushed.manifest_digest.to_string(),
                    source_url: at.to_string(),
                });
            }
        }
        let media_type = match format {
            Some(PushFormat::Docker) => media_types::DOCKER_MANIFEST_LIST,
            _ => media_types::OCI_INDEX,
        };
        out.media_type = Some(media_type.to_string());
        let bytes = out.to_vec();
        let tag = dest_ref.tag().unwrap_or("latest").to_string();
        let remote = self.remote(&dest_ref)?;
        remote.put_manifest(&tag, media_type, &bytes)
    }
}
