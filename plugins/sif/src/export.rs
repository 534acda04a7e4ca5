//! Writes an image as a classic SIF, laid out as `apptainer build x.sif docker://IMG` does:
//! ID 1 the definition file, ID 2 `inspect-metadata.json`, ID 3 `oci-config.json` (both
//! JSON.Generic), ID 4 the squashfs primary system partition (4096-aligned, the image's arch),
//! all in group 1.
//!
//! Layers are read once each, top to bottom, through the host's decompressing stream; file
//! contents go straight into the squashfs data area and only metadata stays in memory.
//!
//! Options: `compression` = `gzip` (default, what Apptainer forces) | `zstd` | `xz`;
//! `block-size` = squashfs block size in bytes or with a `K`/`M` suffix (default 128K);
//! `scheme` = `sif` (the host names the transport).

use crate::apptainer::{self, ImageConfig};
use crate::error::{Error, Result};
use crate::merge::{Decision, Merger};
use crate::sif::{self, DataType, FsType, Object, PartType, SifWriter};
use crate::sink::{Compress, Sink};
use crate::squashfs::{self, Compression, DataWriter, FileId, InodeKind, Meta, SquashfsWriter};
use crate::tar::{Header, TarReader};
use std::io::Read;

/// Option names this exporter accepts (`scheme` is set by the host to the transport name).
pub const OPTIONS: [&str; 3] = ["compression", "block-size", "scheme"];

/// Parsed options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Squashfs compression.
    pub compression: Compression,
    /// Squashfs block size.
    pub block_size: u32,
}

/// Parse the request's options; an unknown name or a bad value is invalid input.
pub fn parse_options(options: &[(String, String)]) -> Result<Settings> {
    let mut s = Settings {
        compression: Compression::Gzip,
        block_size: squashfs::DEFAULT_BLOCK_SIZE,
    };
    for (k, v) in options {
        match k.as_str() {
            "compression" => {
                s.compression = match v.as_str() {
                    "gzip" => Compression::Gzip,
                    "zstd" => Compression::Zstd,
                    "xz" => Compression::Xz,
                    _ => return Err(Error::InvalidInput(format!("option compression={v:?}: use gzip, zstd or xz"))),
                }
            }
            "block-size" => {
                let bad = || Error::InvalidInput(format!("option block-size={v:?}: use a power of two from 4K to 1M"));
                let (digits, mult) = match v.as_bytes().last() {
                    Some(b'k' | b'K') => (&v[..v.len() - 1], 1024),
                    Some(b'm' | b'M') => (&v[..v.len() - 1], 1024 * 1024),
                    _ => (v.as_str(), 1),
                };
                let n: u64 = digits.parse().map_err(|_| bad())?;
                let n = n.checked_mul(mult).ok_or_else(bad)?;
                if !n.is_power_of_two() || !(4096..=1 << 20).contains(&n) {
                    return Err(bad());
                }
                s.block_size = n as u32;
            }
            "scheme" if v == "sif" => {}
            "scheme" => return Err(Error::InvalidInput(format!("option scheme={v:?}: this exporter writes sif"))),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "unknown option {k:?} (the sif exporter knows: {})",
                    OPTIONS.join(", ")
                )));
            }
        }
    }
    Ok(s)
}

/// What the export needs to know about the image.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Names the image is known by; the first becomes the definition file's `from:`.
    pub names: &'a [String],
    /// The OCI image config JSON.
    pub config_json: &'a [u8],
    /// The manifest digest (`sha256:…`).
    pub manifest_digest: &'a str,
    /// Layer digests, bottom first (for messages); their count is the number of layers.
    pub layer_digests: &'a [String],
    /// Reproducible builds: the time to record (nil UUID, times clamped to it).
    pub timestamp: Option<i64>,
    /// Exporter options.
    pub options: &'a [(String, String)],
}

/// Opens layers as uncompressed tar streams.
pub trait Layers {
    /// Layer `index` (0 = bottom) from its start. May be called more than once per layer.
    fn open(&mut self, index: usize) -> Result<Box<dyn Read + '_>>;
}

/// Compresses independent blocks with an algorithm (the host's `codec.compress-blocks`).
pub type Codec<'a> = dyn FnMut(Compression, &[Vec<u8>]) -> Result<Vec<Vec<u8>>> + 'a;

/// Compression in the background (the host's `submit-blocks` / `collect-blocks`).
pub trait Background {
    /// Start compressing `blocks` with `algo`; returns a ticket for [`Background::collect`].
    fn submit(&mut self, algo: Compression, blocks: &[Vec<u8>]) -> Result<u64>;
    /// Wait for the results of `ticket` (one compressed block per input, in order).
    fn collect(&mut self, ticket: u64) -> Result<Vec<Vec<u8>>>;
}

/// Callbacks into the host.
pub struct Hooks<'a> {
    /// Compress blocks with an algorithm.
    pub codec: &'a mut Codec<'a>,
    /// Compress data blocks in the background while layers are read (`None`: wait for `codec`).
    pub background: Option<&'a mut dyn Background>,
    /// True when the user asked to stop.
    pub cancelled: &'a dyn Fn() -> bool,
    /// Report something worth a warning.
    pub warn: &'a mut dyn FnMut(&str),
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Offset of the squashfs partition in the file.
    pub partition_offset: u64,
    /// Its size (padded to 4 KiB).
    pub partition_size: u64,
    /// The file's size.
    pub file_size: u64,
    /// Inodes in the squashfs.
    pub inodes: u32,
    /// The SIF primary architecture (Go name).
    pub arch: String,
}

/// The SIF header UUID: nil for reproducible builds, otherwise derived from the manifest
/// digest (a version-4 layout; the plugin has no entropy source).
pub fn image_uuid(timestamp: Option<i64>, manifest_digest: &str) -> [u8; 16] {
    let mut u = [0u8; 16];
    if timestamp.is_some() {
        return u;
    }
    let hex = manifest_digest.split_once(':').map(|(_, h)| h).unwrap_or(manifest_digest);
    if hex.len() < 32 || !hex.is_char_boundary(32) {
        return u;
    }
    for (i, b) in u.iter_mut().enumerate() {
        match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
            Ok(v) => *b = v,
            Err(_) => return [0; 16],
        }
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

struct Clock {
    clamp: Option<i64>,
}

impl Clock {
    fn squash(&self, t: i64) -> u32 {
        let t = match self.clamp {
            Some(c) => t.min(c),
            None => t,
        };
        t.clamp(0, u32::MAX as i64) as u32
    }
}

fn meta_of(h: &Header, clock: &Clock) -> Result<Meta> {
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| Error::InvalidInput(format!("{}: {what} {v} does not fit 32 bits", String::from_utf8_lossy(&h.path))))
    };
    Ok(Meta {
        mode: (h.mode & 0o7777) as u16,
        uid: id(h.uid, "uid")?,
        gid: id(h.gid, "gid")?,
        mtime: clock.squash(h.mtime),
    })
}

/// [`Compress`] with one algorithm over the hooks.
struct AlgoCompress<'a> {
    codec: &'a mut Codec<'a>,
    background: Option<&'a mut dyn Background>,
    algo: Compression,
}

impl Compress for AlgoCompress<'_> {
    fn compress(&mut self, blocks: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        (self.codec)(self.algo, blocks)
    }

    fn submit(&mut self, blocks: &[Vec<u8>]) -> Result<crate::sink::Pending> {
        match self.background.as_mut() {
            Some(b) => b.submit(self.algo, blocks).map(crate::sink::Pending::Ticket),
            None => self.compress(blocks).map(crate::sink::Pending::Done),
        }
    }

    fn collect(&mut self, ticket: u64) -> Result<Vec<Vec<u8>>> {
        match self.background.as_mut() {
            Some(b) => b.collect(ticket),
            None => Err(Error::Internal(format!("no compression batch has ticket {ticket}"))),
        }
    }
}

/// Copy one file's contents from the tar stream into the data area.
struct Copier<'a> {
    buf: Vec<u8>,
    cancelled: &'a dyn Fn() -> bool,
}

fn copy_data<R: Read>(
    tar: &mut TarReader<R>,
    data: &mut DataWriter,
    sink: &mut dyn Sink,
    comp: &mut dyn Compress,
    copier: &mut Copier,
    size: u64,
) -> Result<FileId> {
    data.begin_file(size)?;
    let mut left = size;
    let buf = &mut copier.buf;
    let mut chunks = 0u32;
    while left > 0 {
        chunks += 1;
        if chunks.is_multiple_of(512) && (copier.cancelled)() {
            return Err(Error::Cancelled);
        }
        let n = left.min(buf.len() as u64) as usize;
        tar.read_data_exact(&mut buf[..n])?;
        data.write(sink, comp, &buf[..n])?;
        left -= n as u64;
    }
    data.end_file(sink, comp)
}

/// Write the SIF for `req` to `sink` (which must be empty).
pub fn export(req: &Request, layers: &mut dyn Layers, sink: &mut dyn Sink, hooks: Hooks) -> Result<Summary> {
    let settings = parse_options(req.options)?;
    let cfg: ImageConfig = apptainer::parse_config(req.config_json)?;
    if req.layer_digests.is_empty() {
        return Err(Error::InvalidInput(
            "the image has no layers; a SIF needs a root file system".into(),
        ));
    }
    let arch_code = sif::arch_code(&cfg.architecture)
        .ok_or_else(|| Error::InvalidInput(format!("architecture {:?} has no SIF code", cfg.architecture)))?;
    let created = cfg.created.as_deref().and_then(crate::civil::parse_rfc3339);
    let time = req.timestamp.or(created).unwrap_or(0);
    let clock = Clock { clamp: req.timestamp };
    let from = req.names.first().map(String::as_str).unwrap_or(req.manifest_digest);

    // Everything derived from the config.
    let deffile = apptainer::deffile(from);
    let env_script = apptainer::docker_env_script(&cfg.env);
    let runscript = apptainer::runscript(&cfg.entrypoint, &cfg.cmd);
    let labels = apptainer::labels(&apptainer::LabelInputs {
        image: &cfg.labels,
        arch: &cfg.architecture,
        time,
        from,
        created: cfg.created.as_deref(),
        digest: req.manifest_digest,
    });
    let labels_json = apptainer::labels_json(&labels);
    let inspect = apptainer::inspect_metadata(
        &deffile,
        &[
            ("/.singularity.d/env/10-docker2singularity.sh", env_script.as_str()),
            ("/.singularity.d/env/90-environment.sh", apptainer::ENVIRONMENT_SCRIPT),
        ],
        &labels,
        &runscript,
        apptainer::STARTSCRIPT,
    );
    let oci_config = apptainer::oci_config_json(&cfg.config);

    let Hooks {
        codec,
        background,
        cancelled,
        warn,
    } = hooks;
    let mut comp = AlgoCompress {
        codec,
        background,
        algo: settings.compression,
    };
    let algo = settings.compression;

    let mut sif = SifWriter::begin(
        sink,
        sif::Options {
            launch_script: sif::LAUNCH_SCRIPT.into(),
            uuid: image_uuid(req.timestamp, req.manifest_digest),
            time,
            capacity: sif::DEFAULT_CAPACITY,
        },
    )?;
    sif.add(sink, Object::new(DataType::DefFile), deffile.as_bytes())?;
    sif.add(
        sink,
        Object::new(DataType::GenericJson).named("inspect-metadata.json"),
        inspect.as_bytes(),
    )?;
    sif.add(
        sink,
        Object::new(DataType::GenericJson).named("oci-config.json"),
        oci_config.as_bytes(),
    )?;
    let partition_offset = sif.begin_object(sink, Object::partition(FsType::Squashfs, PartType::PrimSys, arch_code))?;

    let sq_opts = squashfs::Options {
        compression: algo,
        block_size: settings.block_size,
        mkfs_time: clock.squash(time),
        ..Default::default()
    };
    let mut sq = SquashfsWriter::begin(sink, sq_opts)?;
    let default_dir = Meta {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: clock.squash(time),
    };
    let mut merger = Merger::new(default_dir);
    let mut copier = Copier {
        buf: vec![0u8; settings.block_size as usize],
        cancelled,
    };

    for index in (0..req.layer_digests.len()).rev() {
        let what = format!("layer {} ({})", index + 1, req.layer_digests[index]);
        merger.begin_layer(index as u32)?;
        {
            let stream = layers.open(index).map_err(|e| e.context(&what))?;
            let mut tar = TarReader::new(stream);
            let mut n = 0u64;
            while let Some(h) = tar.next_entry().map_err(|e| e.context(&what))? {
                if n.is_multiple_of(256) && cancelled() {
                    return Err(Error::Cancelled);
                }
                let ctx = || format!("{what}: {}", String::from_utf8_lossy(&h.path));
                let meta = meta_of(&h, &clock).map_err(|e| e.context(&what))?;
                if let Decision::Data(x) = merger.entry(n, &h, meta).map_err(|e| e.context(&what))? {
                    let id = copy_data(&mut tar, sq.data(), sink, &mut comp, &mut copier, h.size).map_err(|e| e.context(ctx()))?;
                    merger.set_file(x, id);
                }
                n += 1;
            }
        }
        let refetch = merger.end_layer();
        if !refetch.is_empty() {
            // Hard links of this layer whose targets were shadowed: read the layer again for them.
            let stream = layers.open(index).map_err(|e| e.context(&what))?;
            let mut tar = TarReader::new(stream);
            let mut n = 0u64;
            let mut todo = refetch.into_iter().peekable();
            while let Some(&(want, inode)) = todo.peek() {
                let h = tar
                    .next_entry()
                    .map_err(|e| e.context(&what))?
                    .ok_or_else(|| Error::InvalidInput(format!("{what}: the layer changed between two reads (entry {want} is gone)")))?;
                if n == want {
                    todo.next();
                    let meta = meta_of(&h, &clock)?;
                    if let Decision::Data(x) = merger.fill(inode, &h, meta).map_err(|e| e.context(&what))? {
                        let id = copy_data(&mut tar, sq.data(), sink, &mut comp, &mut copier, h.size)
                            .map_err(|e| e.context(format!("{what}: {}", String::from_utf8_lossy(&h.path))))?;
                        merger.set_file(x, id);
                    }
                }
                n += 1;
            }
        }
    }
    if merger.dropped_xattrs() > 0 {
        warn(&format!(
            "{} extended attributes in the layers are not kept in the SIF",
            merger.dropped_xattrs()
        ));
    }

    // Apptainer's additions on top of the image's files.
    let now = clock.squash(time);
    for (path, mode) in apptainer::BASE_DIRS {
        if !merger.ensure_dir(
            path,
            Meta {
                mode: *mode,
                uid: 0,
                gid: 0,
                mtime: now,
            },
        ) {
            warn(&format!("{path} is not created: a parent is not a directory"));
        }
    }
    let mut files: Vec<(&str, u16, Vec<u8>)> = vec![("/etc/hosts", 0o644, Vec::new()), ("/etc/resolv.conf", 0o644, Vec::new())];
    for (path, mode, content) in apptainer::base_files() {
        files.push((path, mode, content.into_bytes()));
    }
    files.push(("/.singularity.d/env/10-docker2singularity.sh", 0o755, env_script.into_bytes()));
    files.push(("/.singularity.d/runscript", 0o755, runscript.into_bytes()));
    files.push(("/.singularity.d/labels.json", 0o644, labels_json.into_bytes()));
    files.push(("/.singularity.d/Singularity", 0o644, deffile.into_bytes()));
    for (path, mode, content) in files {
        let id = sq.data().add_file(sink, &mut comp, &content)?;
        let meta = Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: now,
        };
        if !merger.put(path, meta, InodeKind::File(id), Some(id), true) {
            warn(&format!("{path} is not written: a directory is in the way"));
        }
    }
    for (path, target) in apptainer::BASE_LINKS {
        merger.put(
            path,
            Meta {
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime: now,
            },
            InodeKind::Symlink(target.as_bytes().to_vec()),
            None,
            false,
        );
    }

    let tree = merger.finish()?;
    let s = sq.finish(sink, &mut comp, &tree)?;
    if s.xz.unsupported_check {
        warn(
            "the xz streams carry CRC64 checks: Linux cannot mount this SIF with its squashfs driver (squashfuse and unsquashfs can read it)",
        );
    }
    let placed = sif.end_object(sink)?;
    sif.finish(sink)?;
    Ok(Summary {
        partition_offset,
        partition_size: placed.size,
        file_size: sink.position(),
        inodes: s.inode_count,
        arch: cfg.architecture.clone(),
    })
}

#[cfg(test)]
mod tests;
