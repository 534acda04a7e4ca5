//! Pushing images from the store to a registry: optional conversion to OCI or Docker schema 2
//! media types, blobs the registry has are skipped (HEAD), blobs known in another repository of
//! the same registry are mounted, the rest are streamed from the store; the manifest goes last.

use crate::RegistryClient;
use crate::error::{Error, Result};
use crate::locations::Locations;
use crate::progress::Reporter;
use crate::remote::{Remote, store_err};
use kiln_core::{Descriptor, Digest, ImageReference, Manifest, media_types};
use kiln_store::Store;
use std::io::Read;

/// Docker schema 2's media type for an uncompressed layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The manifest format to push (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFormat {
    /// OCI image manifest and media types.
    Oci,
    /// Docker image manifest version 2, schema 2.
    Docker,
}

impl PushFormat {
    /// Parse `oci`, `docker` or `v2s2`.
    pub fn parse(s: &str) -> Result<PushFormat> {
        match s {
            "oci" => Ok(PushFormat::Oci),
            "docker" | "v2s2" => Ok(PushFormat::Docker),
            other => Err(Error::Unsupported(format!(
                "unknown manifest format {other:?} (oci or docker)"
            ))),
        }
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// The digest of the manifest as the registry stored it.
    pub manifest_digest: Digest,
    /// Where it went.
    pub reference: ImageReference,
    /// The manifest media type pushed.
    pub media_type: String,
}

/// Convert a manifest to `format`: media types of the manifest, config and layers change, the
/// config bytes do not. Returns `None` when the manifest already is in that format (push it byte
/// for byte). Docker schema 2 cannot carry zstd layers, annotations or a subject.
pub fn convert_manifest(m: &Manifest, format: PushFormat) -> Result<Option<Manifest>> {
    let current_docker = m.is_docker();
    match format {
        PushFormat::Docker if current_docker => return Ok(None),
        PushFormat::Oci if !current_docker => return Ok(None),
        _ => {}
    }
    let mut out = m.clone();
    match format {
        PushFormat::Oci => {
            out.media_type = Some(media_types::OCI_MANIFEST.into());
            if out.config.media_type == media_types::DOCKER_CONFIG {
                out.config.media_type = media_types::OCI_CONFIG.into();
            }
            for l in &mut out.layers {
                l.media_type = match l.media_type.as_str() {
                    media_types::DOCKER_LAYER_GZIP => media_types::OCI_LAYER_GZIP.into(),
                    media_types::DOCKER_LAYER_FOREIGN_GZIP => {
                        media_types::OCI_LAYER_NONDIST_GZIP.into()
                    }
                    DOCKER_LAYER_TAR => media_types::OCI_LAYER_TAR.into(),
                    other => other.to_string(),
                };
            }
        }
        PushFormat::Docker => {
            out.media_type = Some(media_types::DOCKER_MANIFEST.into());
            out.artifact_type = None;
            out.annotations = None;
            out.subject = None;
            if out.config.media_type == media_types::OCI_CONFIG {
                out.config.media_type = media_types::DOCKER_CONFIG.into();
            }
            out.config.annotations = None;
            for l in &mut out.layers {
                l.annotations = None;
                l.media_type = match l.media_type.as_str() {
                    media_types::OCI_LAYER_GZIP => media_types::DOCKER_LAYER_GZIP.into(),
                    media_types::OCI_LAYER_NONDIST_GZIP => {
                        media_types::DOCKER_LAYER_FOREIGN_GZIP.into()
                    }
                    media_types::OCI_LAYER_TAR => DOCKER_LAYER_TAR.into(),
                    t if media_types::layer_compression(t)
                        == Some(media_types::Compression::Zstd) =>
                    {
                        return Err(Error::Unsupported(format!(
                            "layer {} is zstd-compressed, which the docker format cannot carry (push with --format oci)",
                            l.digest
                        )));
                    }
                    other => other.to_string(),
                };
            }
        }
    }
    Ok(Some(out))
}

impl RegistryClient {
    /// Push `image` (a name or ID in `store`) to `dest` (`docker://REF` or `REF`), converting to
    /// `format` when given (else the stored manifest goes byte for byte). Returns the manifest
    /// digest the registry stored.
    pub fn push(
        &self,
        store: &Store,
        image: &str,
        dest: &str,
        format: Option<PushFormat>,
    ) -> Result<Digest> {
        Ok(self.push_image(store, image, dest, format)?.manifest_digest)
    }

    /// [`RegistryClient::push`] returning the details.
    pub fn push_image(
        &self,
        store: &Store,
        image: &str,
        dest: &str,
        format: Option<PushFormat>,
    ) -> Result<PushedImage> {
        let dest_ref = crate::pull::parse_ref(dest.strip_prefix("docker://").unwrap_or(dest))?;
        let dest_ref = self.settings.conf.rewrite(&dest_ref)?;
        self.push_image_to(store, image, dest_ref, format)
    }

    /// [`RegistryClient::push_image`] to a reference registries.conf has already rewritten.
    pub(crate) fn push_image_to(
        &self,
        store: &Store,
        image: &str,
        dest_ref: ImageReference,
        format: Option<PushFormat>,
    ) -> Result<PushedImage> {
        let record = store.resolve_image(image).map_err(store_err)?;
        let stored = store.image_manifest_bytes(&record).map_err(store_err)?;
        self.push_manifest_as(
            store,
            &stored,
            &record.manifest_media_type,
            dest_ref,
            format,
            None,
        )
    }

    /// Push the image whose manifest is `stored` (its media type from the manifest itself) to
    /// `dest_ref`, converting to `format` when given. Blobs the store lacks are mounted from, or
    /// copied through the store from, `source` (`HOST/REPO`) or a registry repository they were
    /// seen in.
    pub(crate) fn push_manifest_to(
        &self,
        store: &Store,
        stored: &[u8],
        dest_ref: ImageReference,
        format: Option<PushFormat>,
        source: Option<&str>,
    ) -> Result<PushedImage> {
        let media_type = crate::remote::manifest_media_type(None, stored)
            .map_err(|m| Error::manifest(format!("manifest {}", Digest::of_bytes(stored)), m))?;
        self.push_manifest_as(store, stored, &media_type, dest_ref, format, source)
    }

    fn push_manifest_as(
        &self,
        store: &Store,
        stored: &[u8],
        stored_media_type: &str,
        dest_ref: ImageReference,
        format: Option<PushFormat>,
        source: Option<&str>,
    ) -> Result<PushedImage> {
        let manifest = Manifest::from_slice(stored).map_err(|e| {
            Error::manifest(
                format!("manifest {}", Digest::of_bytes(stored)),
                e.to_string(),
            )
        })?;
        let (bytes, media_type, manifest) = match format
            .map(|f| convert_manifest(&manifest, f))
            .transpose()?
            .flatten()
        {
            Some(m) => (m.to_vec(), m.media_type_or_default().to_string(), m),
            None => (stored.to_vec(), stored_media_type.to_string(), manifest),
        };
        let rep = Reporter::new(self.opts.progress);
        let remote = self.remote(&dest_ref)?;
        rep.line("Getting image source signatures");
        let mut blobs: Vec<(&Descriptor, &'static str)> =
            manifest.layers.iter().map(|l| (l, "blob")).collect();
        blobs.push((&manifest.config, "config"));
        let locations = Locations::new(store.root()).with_first(source);
        self.push_blobs(store, &remote, &locations, &blobs, &rep)?;
        rep.line("Writing manifest to image destination");
        let reference = match (dest_ref.tag(), dest_ref.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_string(),
        };
        let digest = remote.put_manifest(&reference, &media_type, &bytes)?;
        let all: Vec<Digest> = blobs.iter().map(|(d, _)| d.digest).collect();
        locations.add(&remote.location(), &all);
        Ok(PushedImage {
            manifest_digest: digest,
            reference: dest_ref,
            media_type,
        })
    }

    /// Make sure the registry repository has every blob: skip, mount or upload each.
    pub(crate) fn push_blobs(
        &self,
        store: &Store,
        remote: &Remote,
        locations: &Locations,
        blobs: &[(&Descriptor, &'static str)],
        rep: &Reporter,
    ) -> Result<()> {
        let retries = self.opts.retries;
        crate::pull::parallel(self.opts.jobs, blobs, |(desc, what)| {
            let d = desc.digest;
            let item = rep.item(what, &d.to_string(), Some(desc.size));
            if remote.blob_exists(&d)? {
                item.finish("skipped: already exists");
                return Ok(());
            }
            let host_prefix = format!("{}/", remote.sess.registry);
            let mut location = None;
            for from in locations.get(&d) {
                let Some(repo) = from.strip_prefix(&host_prefix) else {
                    continue;
                };
                if repo == remote.repo {
                    continue;
                }
                match remote.start_upload(&d, Some(repo)) {
                    Ok(None) => {
                        item.finish(&format!("mounted from {repo}"));
                        return Ok(());
                    }
                    Ok(Some(loc)) => {
                        location = Some(loc);
                        break;
                    }
                    Err(e) => tracing::debug!("mounting {d} from {repo}: {e}"),
                }
            }
            if !store.has_blob(&d) {
                // A recorded registry image's layer: copy it through the store.
                if let Err(e) = self.fetch_from_locations(store, locations, desc, &item) {
                    item.fail();
                    return Err(e);
                }
            }
            let size = store.blob_size(&d).map_err(store_err)?;
            if size != desc.size {
                item.fail();
                return Err(Error::SizeMismatch {
                    digest: d.to_string(),
                    expected: desc.size,
                    actual: size,
                    source_url: store.blob_path(&d).display().to_string(),
                });
            }
            let open = || -> std::io::Result<Box<dyn Read + Send>> {
                let f = store.open_blob(&d).map_err(std::io::Error::other)?;
                Ok(Box::new(CountingReader {
                    inner: std::io::BufReader::with_capacity(256 * 1024, f),
                    counter: item.counter(),
                }))
            };
            match remote.upload_blob(&d, size, location, &open, retries, &item) {
                Ok(()) => {
                    item.finish("done");
                    Ok(())
                }
                Err(e) => {
                    item.fail();
                    Err(e)
                }
            }
        })
    }
}

impl RegistryClient {
    /// Download `desc` into the store from the first registry repository recorded as holding it.
    fn fetch_from_locations(
        &self,
        store: &Store,
        locations: &Locations,
        desc: &Descriptor,
        item: &crate::progress::Item,
    ) -> Result<()> {
        let mut errors = Vec::new();
        for from in locations.get(&desc.digest) {
            let fetched = crate::pull::parse_ref(&from)
                .and_then(|r| self.remote(&r))
                .and_then(|remote| {
                    remote.download_blob(
                        store,
                        &desc.digest,
                        desc.size,
                        self.opts.retries,
                        item,
                        None,
                    )
                });
            match fetched {
                Ok(()) => return Ok(()),
                Err(e) => errors.push(format!("{from}: {e}")),
            }
        }
        Err(Error::Store(format!(
            "blob {} is not in the store, and no registry it was seen in gave it ({})",
            desc.digest,
            if errors.is_empty() {
                "none recorded".to_string()
            } else {
                errors.join("; ")
            }
        )))
    }
}

/// Counts bytes read into a progress item.
struct CountingReader<R> {
    inner: R,
    counter: crate::progress::Counter,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.inc(n as u64);
        Ok(n)
    }
}
