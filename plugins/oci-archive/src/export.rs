//! Writes an image as an oci-archive / OCI layout tar or a docker-archive tar through an [`Io`] sink.

use crate::docker;
use crate::model::{Descriptor, Image, Scheme};
use crate::oci;
use crate::reference::{self, DockerTag, RefError};
use crate::tar::{self, Entry, Kind};

/// Media type reported for a docker-archive.
pub const DOCKER_ARCHIVE_MEDIA_TYPE: &str = "application/x-tar";

/// Option names this exporter accepts.
pub const OPTIONS: [&str; 1] = ["scheme"];

/// Why an export failed; the variants map one to one onto the WIT `plugin-error`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The request is wrong (unknown option, bad reference, inconsistent digests).
    #[error("{0}")]
    InvalidInput(String),
    /// The host refused something as unsupported.
    #[error("{0}")]
    Unsupported(String),
    /// The host denied something.
    #[error("{0}")]
    Denied(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
    /// Something that should not happen.
    #[error("{0}")]
    Internal(String),
    /// The user asked the build to stop.
    #[error("export cancelled")]
    Cancelled,
}

impl From<RefError> for Error {
    fn from(e: RefError) -> Self {
        Error::InvalidInput(e.to_string())
    }
}

impl Error {
    /// The same error with `context: ` in front of its message.
    pub fn context(self, context: &str) -> Self {
        let f = |m: String| format!("{context}: {m}");
        match self {
            Error::InvalidInput(m) => Error::InvalidInput(f(m)),
            Error::Unsupported(m) => Error::Unsupported(f(m)),
            Error::Denied(m) => Error::Denied(f(m)),
            Error::Io(m) => Error::Io(f(m)),
            Error::Internal(m) => Error::Internal(f(m)),
            Error::Cancelled => Error::Cancelled,
        }
    }
}

/// Where the archive goes, and how layer bodies reach it without passing through this code.
pub trait Io {
    /// Append bytes.
    fn write(&mut self, data: &[u8]) -> Result<(), Error>;
    /// Bytes written so far.
    fn position(&mut self) -> u64;
    /// Overwrite bytes already written at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error>;
    /// Append the first `len` bytes of layer `index`'s blob, as stored.
    fn copy_layer_blob(&mut self, index: usize, len: u64) -> Result<(), Error>;
    /// Append layer `index` decompressed; returns how many bytes that was.
    fn copy_layer_uncompressed(&mut self, index: usize) -> Result<u64, Error>;
    /// sha256 of `data`, lowercase hex.
    fn sha256_hex(&mut self, data: &[u8]) -> String;
    /// True when the user asked to stop.
    fn cancelled(&mut self) -> bool {
        false
    }
}

/// What the export produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// An OCI layout: the manifest's descriptor as listed in `index.json`.
    Manifest(Descriptor),
    /// A docker-archive: the host knows its digest and size once the writer is finished.
    Archive,
}

/// Parsed exporter options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Which format to write (default `oci-archive`).
    pub scheme: Scheme,
}

/// Parse `options`; an unknown name or a bad value is `invalid-input` naming it.
pub fn parse_options(options: &[(String, String)]) -> Result<Options, Error> {
    let mut scheme = Scheme::OciArchive;
    for (k, v) in options {
        match k.as_str() {
            "scheme" => {
                scheme = Scheme::parse(v).ok_or_else(|| {
                    let known: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
                    Error::InvalidInput(format!("option scheme: unknown scheme `{v}` (known: {})", known.join(", ")))
                })?
            }
            _ => {
                return Err(Error::InvalidInput(format!("unknown option `{k}` (known: {})", OPTIONS.join(", "))));
            }
        }
    }
    Ok(Options { scheme })
}

/// Write `image` to `io` in the format of `options`, to the destination string `destination`
/// (`PATH[:REF]`; only REF matters here).
pub fn export(io: &mut dyn Io, image: &Image, destination: &str, options: &[(String, String)]) -> Result<Written, Error> {
    let opts = parse_options(options)?;
    let dest = reference::split_destination(destination)?;
    check_blob(io, "config", &image.config, &image.config_json)?;
    match opts.scheme {
        Scheme::OciArchive | Scheme::Oci => {
            let ref_name = match dest.reference {
                Some(r) => {
                    reference::validate_oci_ref(&r)?;
                    Some(r)
                }
                None => image.names.first().filter(|n| reference::validate_oci_ref(n).is_ok()).cloned(),
            };
            write_oci(io, image, ref_name.as_deref()).map(Written::Manifest)
        }
        Scheme::DockerArchive => {
            // As `buildah push`: the destination's reference first, then every name of the image.
            let mut tags: Vec<DockerTag> = Vec::new();
            if let Some(r) = dest.reference {
                tags.push(reference::normalize_docker_ref(&r)?);
            }
            for t in image.names.iter().filter_map(|n| reference::normalize_docker_ref(n).ok()) {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            write_docker(io, image, &tags).map(|()| Written::Archive)
        }
    }
}

/// The hex part of a `sha256:<64 lowercase hex>` digest; anything else is refused (it becomes a path).
pub fn digest_hex<'a>(what: &str, digest: &'a str) -> Result<&'a str, Error> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) => Ok(h),
        _ => Err(Error::InvalidInput(format!("{what}: digest `{digest}` is not sha256:<64 lowercase hex>"))),
    }
}

fn check_blob(io: &mut dyn Io, what: &str, d: &Descriptor, bytes: &[u8]) -> Result<(), Error> {
    let hex = digest_hex(what, &d.digest)?;
    if d.size != bytes.len() as u64 {
        return Err(Error::InvalidInput(format!("{what} {}: descriptor says {} bytes, got {}", d.digest, d.size, bytes.len())));
    }
    let got = io.sha256_hex(bytes);
    if got != hex {
        return Err(Error::InvalidInput(format!("{what}: content hashes to sha256:{got}, descriptor says {}", d.digest)));
    }
    Ok(())
}

fn mtime(image: &Image) -> u64 {
    image.timestamp.map_or(0, |t| u64::try_from(t).unwrap_or(0))
}

/// A read-only regular file entry of a docker-archive (mode 0444, mtime 0, as skopeo writes).
fn docker_file(path: &str, len: usize) -> Entry<'_> {
    Entry { path, kind: Kind::File { size: len as u64 }, mode: 0o444, mtime: 0 }
}

/// A tar being written to `io`: entry headers, bodies and padding.
struct TarOut<'a> {
    io: &'a mut dyn Io,
}

impl TarOut<'_> {
    fn entry(&mut self, e: Entry<'_>, body: &[u8]) -> Result<(), Error> {
        self.io.write(&tar::header(&e))?;
        self.io.write(body)?;
        self.pad(body.len() as u64)
    }
    fn pad(&mut self, size: u64) -> Result<(), Error> {
        let n = tar::padding(size);
        if n > 0 { self.io.write(&[0u8; tar::BLOCK][..n]) } else { Ok(()) }
    }
    fn check_cancel(&mut self) -> Result<(), Error> {
        if self.io.cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }
}

enum Body<'a> {
    Bytes(&'a [u8]),
    Layer(usize, u64),
}

/// The OCI layout: `blobs/`, `blobs/sha256/`, every blob sorted by digest, `index.json`, `oci-layout`.
fn write_oci(io: &mut dyn Io, image: &Image, ref_name: Option<&str>) -> Result<Descriptor, Error> {
    check_blob(io, "manifest", &image.manifest, &image.manifest_json)?;
    let mut blobs: Vec<(&str, Body<'_>)> = vec![
        (digest_hex("config", &image.config.digest)?, Body::Bytes(&image.config_json)),
        (digest_hex("manifest", &image.manifest.digest)?, Body::Bytes(&image.manifest_json)),
    ];
    for (i, l) in image.layers.iter().enumerate() {
        let hex = digest_hex(&format!("layer {i}"), &l.descriptor.digest)?;
        blobs.push((hex, Body::Layer(i, l.descriptor.size)));
    }
    // A stable sort keeps the first of equal digests, so in-memory bytes win over a layer copy.
    blobs.sort_by(|a, b| a.0.cmp(b.0));
    blobs.dedup_by(|a, b| a.0 == b.0);

    let mtime = mtime(image);
    let entry = oci::index_descriptor(&image.manifest, ref_name);
    let index = oci::index_json(&entry);
    let mut t = TarOut { io };
    t.entry(Entry { path: "blobs/", kind: Kind::Dir, mode: 0o755, mtime }, b"")?;
    t.entry(Entry { path: "blobs/sha256/", kind: Kind::Dir, mode: 0o755, mtime }, b"")?;
    for (hex, body) in &blobs {
        t.check_cancel()?;
        let path = format!("blobs/sha256/{hex}");
        match *body {
            Body::Bytes(b) => t.entry(Entry { path: &path, kind: Kind::File { size: b.len() as u64 }, mode: 0o644, mtime }, b)?,
            Body::Layer(i, size) => {
                t.io.write(&tar::header(&Entry { path: &path, kind: Kind::File { size }, mode: 0o644, mtime }))?;
                t.io.copy_layer_blob(i, size).map_err(|e| e.context(&format!("layer {i} (sha256:{hex})")))?;
                t.pad(size)?;
            }
        }
    }
    t.entry(Entry { path: "index.json", kind: Kind::File { size: index.len() as u64 }, mode: 0o644, mtime }, index.as_bytes())?;
    let layout = oci::OCI_LAYOUT;
    t.entry(Entry { path: "oci-layout", kind: Kind::File { size: layout.len() as u64 }, mode: 0o644, mtime }, layout)?;
    t.io.write(&tar::end_of_archive())?;
    Ok(entry)
}

/// The docker-archive, in skopeo's order: uncompressed layers `<diff-id>.tar`, `<config>.json`,
/// per layer `<id>/layer.tar` (a symlink), `<id>/VERSION` and `<id>/json`, then `manifest.json`
/// and `repositories`. Files are mode 0444 with mtime 0, as skopeo writes them.
fn write_docker(io: &mut dyn Io, image: &Image, tags: &[DockerTag]) -> Result<(), Error> {
    const MODE: u32 = 0o444;
    let config_hex = digest_hex("config", &image.config.digest)?;
    let mut diff_hexes = Vec::with_capacity(image.layers.len());
    for (i, l) in image.layers.iter().enumerate() {
        diff_hexes.push(digest_hex(&format!("layer {i} diff-id"), &l.diff_id)?);
    }
    let config_text =
        std::str::from_utf8(&image.config_json).map_err(|_| Error::InvalidInput(format!("config {} is not UTF-8", image.config.digest)))?;
    let diff_ids: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    let legacy = docker::legacy_layers(&diff_ids, config_text, &mut |b| io.sha256_hex(b))
        .map_err(|e| Error::InvalidInput(format!("config {}: {e}", image.config.digest)))?;

    let mut t = TarOut { io };
    let mut written: Vec<&str> = Vec::new();
    for (i, hex) in diff_hexes.iter().enumerate() {
        if written.contains(hex) {
            continue;
        }
        t.check_cancel()?;
        let path = docker::layer_path(hex);
        let start = t.io.position();
        let placeholder = tar::fixed_file_header(&path, MODE, 0, 0).map_err(|e| Error::Internal(e.to_string()))?;
        t.io.write(&placeholder)?;
        let size = t.io.copy_layer_uncompressed(i).map_err(|e| e.context(&format!("layer {i} (diff-id sha256:{hex})")))?;
        t.pad(size)?;
        let header = tar::fixed_file_header(&path, MODE, size, 0).map_err(|e| Error::Internal(e.to_string()))?;
        t.io.write_at(start, &header).map_err(|e| e.context(&format!("patching the tar header of {path}")))?;
        written.push(hex);
    }
    let config_path = docker::config_path(config_hex);
    t.entry(docker_file(&config_path, image.config_json.len()), &image.config_json)?;
    for (l, hex) in legacy.iter().zip(&diff_hexes) {
        let target = format!("../{}", docker::layer_path(hex));
        let link = format!("{}/layer.tar", l.id);
        t.entry(Entry { path: &link, kind: Kind::Symlink { target: &target }, mode: 0, mtime: 0 }, b"")?;
        let version = format!("{}/VERSION", l.id);
        t.entry(docker_file(&version, 3), b"1.0")?;
        let json = format!("{}/json", l.id);
        t.entry(docker_file(&json, l.json.len()), l.json.as_bytes())?;
    }
    let repo_tags: Vec<String> = tags.iter().map(DockerTag::repo_tag).collect();
    let layer_paths: Vec<String> = diff_hexes.iter().map(|h| docker::layer_path(h)).collect();
    let manifest = docker::manifest_json(&config_path, &repo_tags, &layer_paths);
    t.entry(docker_file("manifest.json", manifest.len()), manifest.as_bytes())?;
    let repositories = docker::repositories_json(tags, legacy.last().map(|l| l.id.as_str()));
    t.entry(docker_file("repositories", repositories.len()), repositories.as_bytes())?;
    t.io.write(&tar::end_of_archive())?;
    Ok(())
}
