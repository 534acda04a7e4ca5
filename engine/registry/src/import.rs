//! Importing images from files into the store: `oci:DIR[:REF]` (an OCI image layout),
//! `oci-archive:FILE[:REF]` (a tar of one) and `docker-archive:FILE[:REF]` (`docker save`
//! output). Blobs are streamed into the store and checked against their digests; archives are
//! read in two passes (small JSON documents first, then only the layers the image needs).

use crate::RegistryClient;
use crate::error::{Error, Result};
use crate::progress::Reporter;
use crate::pull::{PulledImage, parallel, pick_platform};
use crate::remote::{MAX_CONFIG, MAX_MANIFEST, manifest_media_type, store_err};
use kiln_core::{
    Compression, Descriptor, Digest, ImageConfig, ImageReference, Index, Manifest, Platform,
    Transport, media_types,
};
use kiln_store::{Store, StoreError};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// The annotation naming an image in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

impl RegistryClient {
    /// Import an `oci:`, `oci-archive:` or `docker-archive:` source into `store` for the client's
    /// platform.
    pub fn import(&self, store: &Store, src: &str) -> Result<PulledImage> {
        let platform = self.opts.platform.clone();
        self.import_platform(store, src, &platform)
    }

    pub(crate) fn import_platform(
        &self,
        store: &Store,
        src: &str,
        platform: &Platform,
    ) -> Result<PulledImage> {
        let t = Transport::parse(src).map_err(|e| Error::InvalidReference {
            reference: src.into(),
            reason: e.to_string(),
        })?;
        let rep = Reporter::new(self.opts.progress);
        rep.line("Getting image source signatures");
        let out = match t {
            Transport::Oci { dir, reference } => {
                import_oci_dir(self, store, &dir, reference.as_deref(), platform, &rep)
            }
            Transport::OciArchive { file, reference } => {
                import_oci_archive(store, &file, reference.as_deref(), platform, &rep)
            }
            Transport::DockerArchive { file, reference } => {
                import_docker_archive(store, &file, reference.as_deref(), &rep)
            }
            other => Err(Error::Unsupported(format!(
                "{src}: cannot import from the {} transport",
                other.name()
            ))),
        }?;
        rep.line("Writing manifest to image destination");
        Ok(out)
    }
}

/// A name for the store from a layout's reference, when it is a full image reference.
fn name_from_ref(r: Option<&str>) -> Vec<String> {
    match r {
        Some(r) if !ImageReference::is_short_name(r) => ImageReference::parse(r)
            .ok()
            .filter(|x| x.digest().is_none())
            .map(|x| x.to_string())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// The name an image imported from an OCI layout gets, as buildah names it (so it is not
/// dangling): the reference asked for, else the entry's `ref.name`, as a full reference, or a
/// local one (`v1` → `localhost/v1:latest`); with neither, the layout's path
/// (`localhost/PATH:latest`), when that makes a valid name.
fn layout_name(reference: Option<&str>, entry: &Descriptor, path: &Path) -> Vec<String> {
    let named = entry
        .annotations
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str);
    match reference.or(named) {
        Some(r) if !ImageReference::is_short_name(r) => name_from_ref(Some(r)),
        Some(r) => ImageReference::parse_local(r)
            .ok()
            .filter(|x| x.digest().is_none())
            .map(|x| x.to_string())
            .into_iter()
            .collect(),
        None => {
            let p = path.to_string_lossy();
            ImageReference::parse_local(p.trim_start_matches('/'))
                .ok()
                .filter(|x| x.digest().is_none())
                .map(|x| x.to_string())
                .into_iter()
                .collect()
        }
    }
}

/// The `index.json` entry to import: the one named `reference`, or the only one.
fn choose_entry<'a>(
    index: &'a Index,
    reference: Option<&str>,
    source: &str,
) -> Result<&'a Descriptor> {
    fn named(d: &Descriptor) -> Option<&str> {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .map(String::as_str)
    }
    match reference {
        Some(r) => index
            .manifests
            .iter()
            .find(|d| named(d) == Some(r))
            .ok_or_else(|| Error::NotFound {
                reference: format!("{source}:{r}"),
                message: format!(
                    "no image named {r:?} in index.json (names: {})",
                    names(index)
                ),
            }),
        None => match index.manifests.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::NotFound {
                reference: source.into(),
                message: "index.json lists no images".into(),
            }),
            _ => Err(Error::InvalidReference {
                reference: source.into(),
                reason: format!(
                    "the layout holds several images; name one with :REF (names: {})",
                    names(index)
                ),
            }),
        },
    }
}

fn names(index: &Index) -> String {
    let v: Vec<&str> = index
        .manifests
        .iter()
        .filter_map(|d| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .map(String::as_str)
        })
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Follow `entry` (manifest or index) to the image manifest for `platform` using `read` to get
/// verified documents; returns (manifest bytes, digest).
fn resolve_manifest(
    entry: &Descriptor,
    platform: &Platform,
    source: &str,
    read: &dyn Fn(&Descriptor) -> Result<Vec<u8>>,
) -> Result<(Vec<u8>, Digest)> {
    let mut cur = entry.clone();
    for _ in 0..3 {
        let bytes = read(&cur)?;
        let mt = manifest_media_type(Some(&cur.media_type), &bytes)
            .map_err(|m| Error::manifest(format!("{source}: {}", cur.digest), m))?;
        if media_types::is_manifest(&mt) {
            return Ok((bytes, cur.digest));
        }
        let index = Index::from_slice(&bytes)
            .map_err(|e| Error::manifest(format!("{source}: {}", cur.digest), e.to_string()))?;
        cur = pick_platform(&index, platform)
            .ok_or_else(|| Error::NoMatchingPlatform {
                reference: source.into(),
                platform: platform.to_string(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?
            .clone();
    }
    Err(Error::manifest(source, "indexes nested too deeply"))
}

fn parse_image_manifest(bytes: &[u8], digest: &Digest, source: &str) -> Result<Manifest> {
    Manifest::from_slice(bytes)
        .map_err(|e| Error::manifest(format!("{source}: manifest {digest}"), e.to_string()))
}

fn commit_err(e: StoreError, source: String) -> Error {
    match e {
        StoreError::DigestMismatch {
            expected, actual, ..
        } => Error::DigestMismatch {
            expected: expected.to_string(),
            actual: actual.to_string(),
            source_url: source,
        },
        other => store_err(other),
    }
}

/// Stream `r` into the store as blob `digest` of `size` bytes; nothing is stored on a mismatch.
fn stream_blob(
    store: &Store,
    mut r: impl Read,
    digest: &Digest,
    size: Option<u64>,
    source: &str,
) -> Result<()> {
    let mut w = store.blob_writer().map_err(store_err)?;
    std::io::copy(&mut r, &mut w).map_err(|e| Error::io(PathBuf::from(source), e))?;
    if let Some(s) = size
        && w.size() != s
    {
        return Err(Error::SizeMismatch {
            digest: digest.to_string(),
            expected: s,
            actual: w.size(),
            source_url: source.into(),
        });
    }
    w.commit(Some(digest))
        .map_err(|e| commit_err(e, source.into()))?;
    Ok(())
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut v = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut v)
        .map_err(|e| Error::io(path, e))?;
    if v.len() as u64 > limit {
        return Err(Error::manifest(
            path.display().to_string(),
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(v)
}

fn import_oci_dir(
    client: &RegistryClient,
    store: &Store,
    dir: &Path,
    reference: Option<&str>,
    platform: &Platform,
    rep: &Reporter,
) -> Result<PulledImage> {
    let source = format!("oci:{}", dir.display());
    let index_bytes = read_limited(&dir.join("index.json"), MAX_MANIFEST)?;
    let index = Index::from_slice(&index_bytes).map_err(|e| {
        Error::manifest(dir.join("index.json").display().to_string(), e.to_string())
    })?;
    let entry = choose_entry(&index, reference, &source)?;
    let blob_path = |d: &Digest| dir.join("blobs").join(d.algorithm()).join(d.hex());
    let read = |d: &Descriptor| -> Result<Vec<u8>> {
        let p = blob_path(&d.digest);
        let bytes = read_limited(&p, MAX_MANIFEST)?;
        let actual = Digest::of_bytes(&bytes);
        if actual != d.digest {
            return Err(Error::DigestMismatch {
                expected: d.digest.to_string(),
                actual: actual.to_string(),
                source_url: p.display().to_string(),
            });
        }
        Ok(bytes)
    };
    let (mbytes, mdigest) = resolve_manifest(entry, platform, &source, &read)?;
    let m = parse_image_manifest(&mbytes, &mdigest, &source)?;
    let mut blobs: Vec<(&Descriptor, &str)> = m.layers.iter().map(|l| (l, "blob")).collect();
    blobs.push((&m.config, "config"));
    parallel(client.opts.jobs, &blobs, |(d, what)| {
        let item = rep.item(what, &d.digest.to_string(), Some(d.size));
        if store.has_blob(&d.digest) {
            item.finish("skipped: already exists");
            return Ok(());
        }
        let p = blob_path(&d.digest);
        let f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
        let counter = item.counter();
        let r = CountRead {
            inner: BufReader::with_capacity(256 * 1024, f),
            counter,
        };
        stream_blob(store, r, &d.digest, Some(d.size), &p.display().to_string())?;
        item.finish("done");
        Ok(())
    })?;
    let names = layout_name(reference, entry, dir);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let record = store.put_image(&mbytes, &refs).map_err(store_err)?;
    Ok(PulledImage {
        id: record.id,
        manifest_digest: mdigest,
        reference: None,
        record,
    })
}

struct CountRead<R> {
    inner: R,
    counter: crate::progress::Counter,
}

impl<R: Read> Read for CountRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.inc(n as u64);
        Ok(n)
    }
}

/// Open an archive for one pass, transparently gunzipping it.
fn open_archive(file: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let head = r.fill_buf().map_err(|e| Error::io(file, e))?;
    let inner: Box<dyn Read> = match Compression::detect(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(|e| Error::io(file, e))?)
        }
        Compression::None => Box::new(r),
    };
    Ok(tar::Archive::new(inner))
}

/// An archive member path without `./` and leading `/`.
fn clean(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// Resolve a member path through the archive's symlinks (docker save links duplicate layers).
fn resolve_link(links: &HashMap<String, String>, path: &str) -> String {
    let mut cur = path.to_string();
    for _ in 0..16 {
        let Some(target) = links.get(&cur) else { break };
        let base = Path::new(&cur).parent().unwrap_or(Path::new(""));
        let mut parts: Vec<String> = base
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        for c in Path::new(target).components() {
            match c {
                std::path::Component::ParentDir => {
                    parts.pop();
                }
                std::path::Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                std::path::Component::RootDir => parts.clear(),
                _ => {}
            }
        }
        cur = parts.join("/");
    }
    cur
}

/// Small JSON members of an archive by path.
type Documents = HashMap<String, Vec<u8>>;
/// Symlinks and hard links of an archive: path → target.
type Links = HashMap<String, String>;

/// Pass 1 over an archive: small JSON members (≤ 4 MiB, starting with `{` or `[`) by path, and symlinks.
fn scan_archive(file: &Path) -> Result<(Documents, Links)> {
    let mut ar = open_archive(file)?;
    let mut docs = HashMap::new();
    let mut links = HashMap::new();
    let err = |e: std::io::Error| Error::io(file, e);
    for entry in ar.entries().map_err(err)? {
        let mut e = entry.map_err(err)?;
        let path = clean(&e.path().map_err(err)?);
        let kind = e.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Ok(Some(t)) = e.link_name() {
                let t = t.to_string_lossy().into_owned();
                // Hard links name archive paths; symlinks are relative to the link.
                let t = if kind.is_hard_link() {
                    format!("/{}", t.trim_start_matches("./"))
                } else {
                    t
                };
                links.insert(path, t);
            }
            continue;
        }
        if !kind.is_file() || e.size() > MAX_CONFIG.min(MAX_MANIFEST * 4) {
            continue;
        }
        let mut head = [0u8; 1];
        let n = e.read(&mut head).map_err(err)?;
        if n == 1 && (head[0] == b'{' || head[0] == b'[') {
            let mut v = head.to_vec();
            e.read_to_end(&mut v).map_err(err)?;
            docs.insert(path, v);
        }
    }
    Ok((docs, links))
}

fn import_oci_archive(
    store: &Store,
    file: &Path,
    reference: Option<&str>,
    platform: &Platform,
    rep: &Reporter,
) -> Result<PulledImage> {
    let source = format!("oci-archive:{}", file.display());
    let (docs, links) = scan_archive(file)?;
    let index_bytes = docs
        .get("index.json")
        .ok_or_else(|| Error::manifest(&source, "no index.json in the archive"))?;
    let index = Index::from_slice(index_bytes)
        .map_err(|e| Error::manifest(format!("{source}: index.json"), e.to_string()))?;
    let entry = choose_entry(&index, reference, &source)?;
    let member = |d: &Digest| format!("blobs/{}/{}", d.algorithm(), d.hex());
    let read = |d: &Descriptor| -> Result<Vec<u8>> {
        let m = resolve_link(&links, &member(&d.digest));
        let bytes = docs.get(&m).ok_or_else(|| {
            Error::manifest(&source, format!("blob {} is not in the archive", d.digest))
        })?;
        let actual = Digest::of_bytes(bytes);
        if actual != d.digest {
            return Err(Error::DigestMismatch {
                expected: d.digest.to_string(),
                actual: actual.to_string(),
                source_url: format!("{source}:{m}"),
            });
        }
        Ok(bytes.clone())
    };
    let (mbytes, mdigest) = resolve_manifest(entry, platform, &source, &read)?;
    let m = parse_image_manifest(&mbytes, &mdigest, &source)?;
    // The config is small: from memory.
    if !store.has_blob(&m.config.digest) {
        let item = rep.item("config", &m.config.digest.to_string(), Some(m.config.size));
        let cfg = read(&m.config)?;
        store.put_blob_bytes(&cfg).map_err(store_err)?;
        item.finish("done");
    }
    // Pass 2: the layers the store lacks.
    let mut wanted: HashMap<String, &Descriptor> = HashMap::new();
    for l in &m.layers {
        if store.has_blob(&l.digest) {
            rep.item("blob", &l.digest.to_string(), Some(l.size))
                .finish("skipped: already exists");
        } else {
            wanted.insert(resolve_link(&links, &member(&l.digest)), l);
        }
    }
    if !wanted.is_empty() {
        let mut ar = open_archive(file)?;
        let err = |e: std::io::Error| Error::io(file, e);
        for entry in ar.entries().map_err(err)? {
            let e = entry.map_err(err)?;
            let path = clean(&e.path().map_err(err)?);
            let Some(d) = wanted.remove(&path) else {
                continue;
            };
            let item = rep.item("blob", &d.digest.to_string(), Some(d.size));
            let r = CountRead {
                inner: e,
                counter: item.counter(),
            };
            stream_blob(
                store,
                r,
                &d.digest,
                Some(d.size),
                &format!("{source}:{path}"),
            )?;
            item.finish("done");
            if wanted.is_empty() {
                break;
            }
        }
        if let Some((p, d)) = wanted.into_iter().next() {
            return Err(Error::manifest(
                &source,
                format!("layer {} ({p}) is not in the archive", d.digest),
            ));
        }
    }
    let names = layout_name(reference, entry, file);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let record = store.put_image(&mbytes, &refs).map_err(store_err)?;
    Ok(PulledImage {
        id: record.id,
        manifest_digest: mdigest,
        reference: None,
        record,
    })
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker_archive(
    store: &Store,
    file: &Path,
    reference: Option<&str>,
    rep: &Reporter,
) -> Result<PulledImage> {
    let source = format!("docker-archive:{}", file.display());
    let (docs, links) = scan_archive(file)?;
    let mbytes = docs
        .get("manifest.json")
        .ok_or_else(|| Error::manifest(&source, "no manifest.json in the archive"))?;
    let entries: Vec<DockerArchiveEntry> = serde_json::from_slice(mbytes)
        .map_err(|e| Error::manifest(format!("{source}: manifest.json"), e.to_string()))?;
    let (entry, names) = choose_docker_entry(&entries, reference, &source)?;
    let config_path = resolve_link(&links, entry.config.trim_start_matches("./"));
    let config = docs.get(&config_path).ok_or_else(|| {
        Error::manifest(
            &source,
            format!("config {} is not in the archive", entry.config),
        )
    })?;
    let config_digest = Digest::of_bytes(config);
    if let Some(hex) = Path::new(&config_path)
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".json"))
        && let Ok(named) = Digest::from_hex(hex)
        && named != config_digest
    {
        return Err(Error::DigestMismatch {
            expected: named.to_string(),
            actual: config_digest.to_string(),
            source_url: format!("{source}:{config_path}"),
        });
    }
    let cfg = ImageConfig::from_slice(config)
        .map_err(|e| Error::manifest(format!("{source}: {config_path}"), e.to_string()))?;
    if cfg.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(Error::manifest(
            &source,
            format!(
                "{} layers but the config lists {} diff_ids",
                entry.layers.len(),
                cfg.rootfs.diff_ids.len()
            ),
        ));
    }
    let item = rep.item(
        "config",
        &config_digest.to_string(),
        Some(config.len() as u64),
    );
    store.put_blob_bytes(config).map_err(store_err)?;
    item.finish("done");
    // Pass 2: stream each layer into the store, hashing it; uncompressed layers must hash to their
    // diff_id, and are stored gzip-compressed (as buildah pushes them; the archive's own manifest
    // names no blob digests to keep).
    let layer_paths: Vec<String> = entry
        .layers
        .iter()
        .map(|l| resolve_link(&links, l.trim_start_matches("./")))
        .collect();
    // Per layer path: the stored blob, its size, the archive's compression, and (for a plain tar,
    // stored compressed) the digest of the plain tar.
    let mut found: HashMap<String, (Digest, u64, Compression, Option<Digest>)> = HashMap::new();
    let mut ar = open_archive(file)?;
    let err = |e: std::io::Error| Error::io(file, e);
    for e in ar.entries().map_err(err)? {
        let e = e.map_err(err)?;
        let path = clean(&e.path().map_err(err)?);
        if !layer_paths.contains(&path) || found.contains_key(&path) {
            continue;
        }
        let mut r = BufReader::with_capacity(256 * 1024, e);
        let compression = Compression::detect(r.fill_buf().map_err(err)?);
        let (d, size, raw) = if compression == Compression::None {
            // The layer writer compresses as kiln's own layers are, hashing both forms.
            let blob = store.layer_blob_writer().map_err(store_err)?;
            let mut lw = kiln_layer::LayerWriter::new(blob, Compression::Gzip).map_err(err)?;
            std::io::copy(&mut r, &mut lw).map_err(err)?;
            let (digests, blob) = lw.finish_into_inner().map_err(err)?;
            let (d, size) = blob
                .commit(&digests.digest)
                .map_err(|e| commit_err(e, format!("{source}:{path}")))?;
            (d, size, Some(digests.diff_id))
        } else {
            let mut w = store.blob_writer().map_err(store_err)?;
            std::io::copy(&mut r, &mut w).map_err(err)?;
            w.flush().map_err(err)?;
            let (d, size) = w
                .commit(None)
                .map_err(|e| commit_err(e, format!("{source}:{path}")))?;
            (d, size, None)
        };
        rep.item("blob", &d.to_string(), Some(size)).finish("done");
        found.insert(path, (d, size, compression, raw));
    }
    let mut layers = Vec::new();
    for (i, p) in layer_paths.iter().enumerate() {
        let (d, size, c, raw) = found
            .get(p)
            .ok_or_else(|| Error::manifest(&source, format!("layer {p} is not in the archive")))?;
        if let Some(raw) = raw {
            if *raw != cfg.rootfs.diff_ids[i] {
                return Err(Error::DigestMismatch {
                    expected: cfg.rootfs.diff_ids[i].to_string(),
                    actual: raw.to_string(),
                    source_url: format!("{source}:{p}"),
                });
            }
            layers.push(Descriptor::new(media_types::OCI_LAYER_GZIP, *d, *size));
        } else {
            layers.push(Descriptor::new(media_types::oci_layer_type(*c), *d, *size));
        }
    }
    let manifest = Manifest::new_oci(
        Descriptor::new(media_types::OCI_CONFIG, config_digest, config.len() as u64),
        layers,
    );
    let bytes = manifest.to_vec();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let record = store.put_image(&bytes, &refs).map_err(store_err)?;
    Ok(PulledImage {
        id: record.id,
        manifest_digest: Digest::of_bytes(&bytes),
        reference: None,
        record,
    })
}

/// The archive image to import and the name to give it: `@N` picks by position, a reference by
/// its `RepoTags`; without one the archive must hold a single image.
fn choose_docker_entry<'a>(
    entries: &'a [DockerArchiveEntry],
    reference: Option<&str>,
    source: &str,
) -> Result<(&'a DockerArchiveEntry, Vec<String>)> {
    // Every RepoTags entry, as buildah names the image.
    let all_tags = |e: &DockerArchiveEntry| -> Vec<String> {
        e.repo_tags
            .iter()
            .flatten()
            .filter_map(|t| ImageReference::parse(t).ok())
            .map(|r| r.to_string())
            .collect()
    };
    match reference {
        Some(r) if r.starts_with('@') => {
            let n: usize = r[1..].parse().map_err(|_| Error::InvalidReference {
                reference: r.into(),
                reason: "expected @N".into(),
            })?;
            let e = entries.get(n).ok_or_else(|| Error::NotFound {
                reference: format!("{source}:{r}"),
                message: format!("the archive holds {} images", entries.len()),
            })?;
            Ok((e, all_tags(e)))
        }
        Some(r) => {
            let want = ImageReference::parse(r).map_err(|e| Error::InvalidReference {
                reference: r.into(),
                reason: e.to_string(),
            })?;
            for e in entries {
                for t in e.repo_tags.iter().flatten() {
                    if ImageReference::parse(t).ok().as_ref() == Some(&want) {
                        return Ok((e, vec![want.to_string()]));
                    }
                }
            }
            Err(Error::NotFound {
                reference: format!("{source}:{r}"),
                message: "no such RepoTags entry in manifest.json".into(),
            })
        }
        None => match entries {
            [one] => Ok((one, all_tags(one))),
            [] => Err(Error::NotFound {
                reference: source.into(),
                message: "manifest.json lists no images".into(),
            }),
            _ => Err(Error::InvalidReference {
                reference: source.into(),
                reason: "the archive holds several images; name one with :REF or :@N".into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_docker_save_links() {
        let mut links = HashMap::new();
        links.insert("b/layer.tar".to_string(), "../a/layer.tar".to_string());
        links.insert("c/layer.tar".to_string(), "/b/layer.tar".to_string());
        assert_eq!(resolve_link(&links, "b/layer.tar"), "a/layer.tar");
        assert_eq!(resolve_link(&links, "c/layer.tar"), "a/layer.tar");
        assert_eq!(resolve_link(&links, "x"), "x");
    }
}
