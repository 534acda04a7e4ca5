//! Pulling images from registries into the store: short-name resolution, index → platform
//! manifest, config and layers (in parallel, skipping blobs already stored), then the image
//! record. Also `fetch_config`, which reads a base image's config without its layers.

use crate::error::{Error, Result};
use crate::locations::Locations;
use crate::progress::Reporter;
use crate::remote::{BlobTee, Fetched, MAX_CONFIG, Remote, store_err};
use crate::{RegistryClient, conf};
use kiln_core::{Digest, ImageReference, Index, Manifest, Platform, Transport, media_types};
use kiln_store::{ImageRecord, Store};

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The image ID (its config digest).
    pub id: Digest,
    /// The digest of the platform manifest stored.
    pub manifest_digest: Digest,
    /// The reference the image was found under (after short-name resolution); `None` for
    /// transports other than `docker://`.
    pub reference: Option<ImageReference>,
    /// The store's record (names, size, creation time).
    pub record: ImageRecord,
}

/// A layer a pull is about to download, for [`RegistryClient::pull_platform_teeing`].
#[derive(Debug, Clone, Copy)]
pub struct LayerToPull<'a> {
    /// The manifest's layers, bottom first.
    pub layers: &'a [kiln_core::Descriptor],
    /// Which of them this is.
    pub index: usize,
}

/// Asked, for each layer a pull is about to download, for a [`BlobTee`] to hand its bytes to.
pub type LayerTee<'a> = dyn Fn(LayerToPull<'_>) -> Option<Box<dyn BlobTee>> + Sync + 'a;

/// Run `f` on every item with up to `jobs` threads; the first error is returned (items already
/// started finish, later ones are skipped).
pub(crate) fn parallel<T: Sync>(
    jobs: usize,
    items: &[T],
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    if items.len() <= 1 || jobs <= 1 {
        return items.iter().try_for_each(&f);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(None::<Error>);
    std::thread::scope(|s| {
        for _ in 0..jobs.min(items.len()) {
            s.spawn(|| {
                loop {
                    if failed.lock().expect("error slot").is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(item) = items.get(i) else { return };
                    if let Err(e) = f(item) {
                        let mut slot = failed.lock().expect("error slot");
                        if slot.is_none() {
                            *slot = Some(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("error slot") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether trying the next short-name candidate makes sense after this error.
fn try_next(e: &Error) -> bool {
    matches!(
        e,
        Error::NotFound { .. }
            | Error::Unauthorized { .. }
            | Error::Network { .. }
            | Error::Status { .. }
    )
}

impl RegistryClient {
    pub(crate) fn remote(&self, r: &ImageReference) -> Result<Remote> {
        Ok(Remote::new(
            self.session(r.registry(), r.repository())?,
            r.repository(),
        ))
    }

    /// The references `src` may mean: a `docker://` reference (through registries.conf's
    /// rewrites), or a bare name resolved as a short name. Other transports are rejected.
    pub fn resolve(&self, src: &str) -> Result<Vec<ImageReference>> {
        let t = Transport::parse(src).map_err(|e| Error::InvalidReference {
            reference: src.into(),
            reason: e.to_string(),
        })?;
        match t {
            Transport::Docker(r) => Ok(vec![self.settings.conf.rewrite(&r)?]),
            Transport::Store(name) => self.settings.conf.candidates(&name),
            other => Err(Error::Unsupported(format!(
                "{src}: the {} transport does not name a registry image",
                other.name()
            ))),
        }
    }

    /// Try each candidate for `src` in order until `f` succeeds; report every failure otherwise.
    pub(crate) fn first_candidate<T>(
        &self,
        src: &str,
        mut f: impl FnMut(&ImageReference) -> Result<T>,
    ) -> Result<(ImageReference, T)> {
        let cands = self.resolve(src)?;
        let mut errors = Vec::new();
        let n = cands.len();
        for c in cands {
            match f(&c) {
                Ok(v) => return Ok((c, v)),
                Err(e) if n > 1 && try_next(&e) => errors.push(format!("{c}: {e}")),
                Err(e) => return Err(e),
            }
        }
        Err(Error::NotFound {
            reference: src.into(),
            message: format!("tried {}", errors.join("; ")),
        })
    }

    /// Pull `src` into `store` for the client's platform and return what was stored. `src` is a
    /// registry image (`docker://REF`, or a name resolved through registries.conf) or an
    /// `oci:`, `oci-archive:` or `docker-archive:` source.
    pub fn pull(&self, store: &Store, src: &str) -> Result<PulledImage> {
        let platform = self.opts.platform.clone();
        self.pull_platform(store, src, &platform)
    }

    /// [`RegistryClient::pull`] for a given platform.
    pub fn pull_platform(
        &self,
        store: &Store,
        src: &str,
        platform: &Platform,
    ) -> Result<PulledImage> {
        self.pull_platform_teeing(store, src, platform, &|_| None)
    }

    /// [`RegistryClient::pull_platform`], handing the bytes of each layer downloaded from a
    /// registry to the [`BlobTee`] `tee` returns for it (`tee` is asked with the layers of the
    /// manifest, bottom first, and the index of the one starting). Layers already stored, and
    /// sources other than registries, are not teed.
    pub fn pull_platform_teeing(
        &self,
        store: &Store,
        src: &str,
        platform: &Platform,
        tee: &LayerTee<'_>,
    ) -> Result<PulledImage> {
        let t = Transport::parse(src).map_err(|e| Error::InvalidReference {
            reference: src.into(),
            reason: e.to_string(),
        })?;
        if matches!(
            t,
            Transport::Oci { .. } | Transport::OciArchive { .. } | Transport::DockerArchive { .. }
        ) {
            return self.import_platform(store, src, platform);
        }
        let rep = Reporter::new(self.opts.progress);
        let (r, img) = self.first_candidate(src, |c| {
            rep.line(&format!("Trying to pull {c}..."));
            self.pull_ref(store, c, platform, &rep, tee)
        })?;
        Ok(PulledImage {
            reference: Some(r),
            ..img
        })
    }

    /// Pull one fully qualified reference.
    fn pull_ref(
        &self,
        store: &Store,
        r: &ImageReference,
        platform: &Platform,
        rep: &Reporter,
        tee: &LayerTee<'_>,
    ) -> Result<PulledImage> {
        let remote = self.remote(r)?;
        let top = remote.get_manifest(&r.tag_or_digest())?;
        let m = self.platform_manifest(&remote, &r.to_string(), top, platform)?;
        let manifest = parse_manifest(&m)?;
        rep.line("Getting image source signatures");
        let mut blobs: Vec<(Digest, u64, usize)> = Vec::new();
        for (i, l) in manifest.layers.iter().enumerate() {
            if !media_types::is_layer(&l.media_type) {
                return Err(Error::Unsupported(format!(
                    "{r}: layer {} has media type {:?}, which is not a filesystem layer kiln can unpack",
                    l.digest, l.media_type
                )));
            }
            blobs.push((l.digest, l.size, i));
        }
        let retries = self.opts.retries;
        parallel(self.opts.jobs, &blobs, |(d, size, index)| {
            let item = rep.item("blob", &d.to_string(), Some(*size));
            if store.has_blob(d) {
                item.finish("skipped: already exists");
                return Ok(());
            }
            let mut teed = tee(LayerToPull {
                layers: &manifest.layers,
                index: *index,
            });
            match remote.download_blob(store, d, *size, retries, &item, teed.as_deref_mut()) {
                Ok(()) => {
                    item.finish("done");
                    Ok(())
                }
                Err(e) => {
                    item.fail();
                    Err(e)
                }
            }
        })?;
        let cfg = &manifest.config;
        let item = rep.item("config", &cfg.digest.to_string(), Some(cfg.size));
        if !store.has_blob(&cfg.digest) {
            let bytes = remote.get_blob_bytes(&cfg.digest, MAX_CONFIG)?;
            store.put_blob_bytes(&bytes).map_err(store_err)?;
        }
        item.finish("done");
        rep.line("Writing manifest to image destination");
        // Pulled by digest: named by the digest of the manifest stored (`REPO@sha256:…`, as
        // buildah does), so the image is not dangling and `kiln prune` keeps it.
        let names: Vec<String> = match (r.tag(), r.digest()) {
            (Some(t), _) => vec![format!("{}:{t}", r.name())],
            (None, Some(_)) => vec![format!("{}@{}", r.name(), m.digest)],
            (None, None) => Vec::new(),
        };
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let record = store.put_image(&m.bytes, &name_refs).map_err(store_err)?;
        let mut all: Vec<Digest> = manifest.layers.iter().map(|l| l.digest).collect();
        all.push(cfg.digest);
        Locations::new(store.root()).add(&remote.location(), &all);
        Ok(PulledImage {
            id: record.id,
            manifest_digest: m.digest,
            reference: Some(r.clone()),
            record,
        })
    }

    /// The image manifest for `platform`: `top` itself when it is a manifest, else the matching
    /// entry of the index (fetched by digest and verified).
    pub(crate) fn platform_manifest(
        &self,
        remote: &Remote,
        what: &str,
        top: Fetched,
        platform: &Platform,
    ) -> Result<Fetched> {
        let mut cur = top;
        for _depth in 0..3 {
            if media_types::is_manifest(&cur.media_type) {
                return Ok(cur);
            }
            let index = Index::from_slice(&cur.bytes)
                .map_err(|e| Error::manifest(&cur.url, format!("invalid index: {e}")))?;
            let d = pick_platform(&index, platform).ok_or_else(|| Error::NoMatchingPlatform {
                reference: what.to_string(),
                platform: platform.to_string(),
                available: available(&index),
            })?;
            cur = remote.get_manifest(&d.digest.to_string())?;
        }
        Err(Error::manifest(what, "indexes nested too deeply"))
    }

    /// Read the config of `reference` (a `docker://` reference or a name resolved through
    /// registries.conf) for `platform`, without fetching layers. Returns the config bytes and
    /// their digest (the image ID).
    pub fn fetch_config(&self, reference: &str, platform: &Platform) -> Result<(Vec<u8>, Digest)> {
        let (_, out) = self.first_candidate(reference, |c| {
            let remote = self.remote(c)?;
            let top = remote.get_manifest(&c.tag_or_digest())?;
            let m = self.platform_manifest(&remote, &c.to_string(), top, platform)?;
            let manifest = parse_manifest(&m)?;
            let bytes = remote.get_blob_bytes(&manifest.config.digest, MAX_CONFIG)?;
            Ok((bytes, manifest.config.digest))
        })?;
        Ok(out)
    }

    /// The digest of the manifest or index `reference` currently resolves to in its registry
    /// (the top-level document: an index digest for multi-platform images), and the reference
    /// it was found under.
    pub fn resolve_digest(&self, reference: &str) -> Result<(ImageReference, Digest)> {
        let (r, d) = self.first_candidate(reference, |c| {
            Ok(self.remote(c)?.get_manifest(&c.tag_or_digest())?.digest)
        })?;
        Ok((r, d))
    }
}

/// Parse an image manifest, naming where it came from on failure.
pub(crate) fn parse_manifest(m: &Fetched) -> Result<Manifest> {
    Manifest::from_slice(&m.bytes).map_err(|e| {
        Error::manifest(
            format!("manifest {} from {}", m.digest, m.url),
            e.to_string(),
        )
    })
}

/// The best index entry for `wanted`: an exact variant match first, then core's matching rules.
pub(crate) fn pick_platform<'a>(
    index: &'a Index,
    wanted: &Platform,
) -> Option<&'a kiln_core::Descriptor> {
    let exact = index.manifests.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| {
            let (a, b) = (p.normalized(), wanted.normalized());
            a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
        })
    });
    exact.or_else(|| index.find_platform(wanted))
}

fn available(index: &Index) -> String {
    let v: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Parse a fully qualified reference string.
pub(crate) fn parse_ref(s: &str) -> Result<ImageReference> {
    conf::parse_ref(s)
}
