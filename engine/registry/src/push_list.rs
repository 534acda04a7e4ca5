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
        let repo = format!("{}/{}", dest_ref.registry(), dest_ref.repository());
        let mut out = index.clone();
        for entry in &mut out.manifests {
            let image = store
                .resolve_image(&entry.digest.to_string())
                .map_err(store_err)?;
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
            if all {
                let at = format!("{repo}@{}", entry.digest);
                let pushed =
                    self.push_image(store, &image.manifest_digest.to_string(), &at, format)?;
                if pushed.manifest_digest != entry.digest {
                    return Err(Error::DigestMismatch {
                        expected: entry.digest.to_string(),
                        actual: pushed.manifest_digest.to_string(),
                        source_url: at,
                    });
                }
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
