//! Plugin artifacts in registries, in the CNCF "Wasm OCI artifact" layout: an OCI manifest whose
//! config has media type `application/vnd.wasm.config.v0+json` and whose single layer is the
//! `application/wasm` component.

use crate::RegistryClient;
use crate::error::{Error, Result};
use crate::pull::{parse_manifest, pick_platform};
use crate::remote::Remote;
use kiln_core::{Descriptor, Digest, Index, Manifest, Platform, media_types};
use std::collections::BTreeMap;

/// Largest plugin accepted.
pub const MAX_ARTIFACT: u64 = 512 << 20;

impl RegistryClient {
    /// Fetch the Wasm component of the artifact at `reference` (`docker://REF` or a name resolved
    /// through registries.conf). Returns its bytes and their digest (the layer digest), verified.
    pub fn pull_artifact(&self, reference: &str) -> Result<(Vec<u8>, Digest)> {
        let (_, out) = self.first_artifact(reference)?;
        Ok(out)
    }

    fn first_artifact(
        &self,
        reference: &str,
    ) -> Result<(kiln_core::ImageReference, (Vec<u8>, Digest))> {
        let cands = self.resolve(reference)?;
        let mut last = None;
        for c in &cands {
            let attempt = (|| {
                let remote = self.remote(c)?;
                let mut m = remote.get_manifest(&c.tag_or_digest())?;
                if media_types::is_index(&m.media_type) {
                    let index = Index::from_slice(&m.bytes)
                        .map_err(|e| Error::manifest(&m.url, e.to_string()))?;
                    let wasm = Platform::new("wasip1", "wasm", None);
                    let d = pick_platform(&index, &wasm)
                        .or_else(|| pick_platform(&index, &Platform::new("wasip2", "wasm", None)))
                        .or_else(|| index.manifests.first())
                        .ok_or_else(|| Error::manifest(&m.url, "empty index"))?
                        .digest;
                    m = remote.get_manifest(&d.to_string())?;
                }
                let manifest = parse_manifest(&m)?;
                let layer = wasm_layer(&manifest)
                    .map_err(|msg| Error::manifest(format!("{c} ({})", m.url), msg))?;
                let bytes = remote.get_blob_bytes(&layer.digest, MAX_ARTIFACT)?;
                Ok((bytes, layer.digest))
            })();
            match attempt {
                Ok(v) => return Ok((c.clone(), v)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound {
            reference: reference.into(),
            message: String::new(),
        }))
    }

    /// Push `wasm` as a Wasm OCI artifact to `reference` (`docker://REF` or `REF`); returns the
    /// manifest digest.
    pub fn push_artifact(&self, reference: &str, wasm: &[u8]) -> Result<Digest> {
        let r = crate::pull::parse_ref(reference.strip_prefix("docker://").unwrap_or(reference))?;
        let r = self.settings.conf.rewrite(&r)?;
        let remote = self.remote(&r)?;
        let layer = Descriptor::of_bytes(media_types::WASM_LAYER, wasm);
        let config = serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer.digest.to_string()],
        });
        let config_bytes = serde_json::to_vec(&config).expect("config serializes");
        let config_desc = Descriptor::of_bytes(media_types::WASM_CONFIG, &config_bytes);
        upload_bytes(self, &remote, &config_desc.digest, &config_bytes)?;
        upload_bytes(self, &remote, &layer.digest, wasm)?;
        let mut manifest = Manifest::new_oci(config_desc, vec![layer]);
        let mut ann = BTreeMap::new();
        ann.insert(
            "org.opencontainers.image.title".to_string(),
            "plugin.wasm".to_string(),
        );
        manifest.layers[0].annotations = Some(ann);
        let bytes = manifest.to_vec();
        let reference = match (r.tag(), r.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".into(),
        };
        remote.put_manifest(&reference, media_types::OCI_MANIFEST, &bytes)
    }
}

fn upload_bytes(
    client: &RegistryClient,
    remote: &Remote,
    digest: &Digest,
    bytes: &[u8],
) -> Result<()> {
    if remote.blob_exists(digest)? {
        return Ok(());
    }
    let owned = std::sync::Arc::new(bytes.to_vec());
    let open = move || -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(ArcBytes(owned.clone()))))
    };
    let item = crate::progress::Reporter::new(crate::Progress::Quiet).item(
        "blob",
        &digest.to_string(),
        None,
    );
    remote.upload_blob(
        digest,
        bytes.len() as u64,
        None,
        &open,
        client.opts.retries,
        &item,
    )
}

struct ArcBytes(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The Wasm layer of an artifact manifest, or why it is not one.
fn wasm_layer(m: &Manifest) -> std::result::Result<&Descriptor, String> {
    if m.config.media_type != media_types::WASM_CONFIG {
        return Err(format!(
            "not a Wasm artifact: config media type is {} (expected {})",
            m.config.media_type,
            media_types::WASM_CONFIG
        ));
    }
    let wasm: Vec<&Descriptor> = m
        .layers
        .iter()
        .filter(|l| l.media_type == media_types::WASM_LAYER)
        .collect();
    match wasm.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no {} layer", media_types::WASM_LAYER)),
        _ => Err(format!(
            "{} {} layers (expected one)",
            wasm.len(),
            media_types::WASM_LAYER
        )),
    }
}
