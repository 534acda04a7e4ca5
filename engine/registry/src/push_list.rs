//! Pushing a manifest list of the store (`kiln manifest push`): its images by digest (with
//! `--all`), then the index under the destination's tag.

use crate::pull::parse_ref;
use crate::push::{PushFormat, convert_manifest};
use crate::remote::store_err;
use crate::{Error, RegistryClient, Result};
use kiln_core::spec::{Index, Manifest};
use kiln_core::{Digest, media_types};
use kiln_store::Store;

impl RegistryClient {
    /// Push `index` (whose entries are images of `store`) to `dest` (`docker://REF` or `REF`).
    /// With `all`, each image goes first, by digest, into the destination's repository (converted
    /// to `format` when given, the entry updated to match); without it the registry must already
    /// have them. The index is written as an OCI index, or a Docker manifest list for
    /// [`PushFormat::Docker`]. Returns the index digest the registry stored.
    pub fn push_manifest_list(
        &self,
        store: &Store,
        index: &Index,
        dest: &str,
        all: bool,
        format: Option<PushFormat>,
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
            let image = store
                .resolve_image(&entry.digest.to_string())
                .map_err(|e| {
                    Error::Store(format!(
                        "manifest list entry {} is not an image of the store any more: {e}",
                        entry.digest
                    ))
                })?;
            let bytes = store.image_manifest_bytes(&image).map_err(store_err)?;
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
            let pushed = self.push_image_to(
                store,
                &image.manifest_digest.to_string(),
                at.clone(),
                format,
            )?;
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
