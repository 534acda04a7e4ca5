//! Host glue: adapts the WIT exporter world (blob writer, layer readers, codec) to [`crate::export`].

use kiln_sdk::exporter::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::exporter::exports::kiln::plugin::exporter::{ExportRequest, Guest, Layer};
use kiln_sdk::exporter::kiln::plugin::blobs::BlobWriter;
use kiln_sdk::exporter::kiln::plugin::codec;
use kiln_sdk::exporter::kiln::plugin::types::{Descriptor, PluginError};
use kiln_sdk::io::exporter::StreamRead;

use crate::error::{Error, Result};
use crate::sink::Sink;
use crate::squashfs::Compression;
use crate::{export, sif};

/// Bytes buffered before a host write.
const WRITE_CHUNK: usize = 1 << 20;

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info {
            name: "sif".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
        }
    }
}

impl Guest for Plugin {
    fn schemes() -> Vec<String> {
        vec!["sif".into()]
    }

    fn export_image(req: ExportRequest, out: &BlobWriter) -> Result<Descriptor, PluginError> {
        kiln_sdk::install_panic_hook();
        let image = req.image;
        let layer_digests: Vec<String> = image.layers.iter().map(|l| l.descriptor.digest.clone()).collect();
        let request = export::Request {
            names: &image.names,
            config_json: &image.config_json,
            manifest_digest: &image.manifest_descriptor.digest,
            layer_digests: &layer_digests,
            timestamp: image.timestamp,
            options: &req.options,
        };
        let mut layers = HostLayers { layers: &image.layers };
        let mut sink = HostSink {
            out,
            buf: Vec::with_capacity(WRITE_CHUNK),
            flushed: 0,
        };
        let mut codec = |algo: Compression, blocks: &[Vec<u8>]| -> Result<Vec<Vec<u8>>> {
            codec::compress_blocks(algorithm(algo), None, blocks).map_err(from_plugin_error)
        };
        let mut background = HostBackground;
        let cancelled = || kiln_sdk::cancelled();
        let mut warn = |m: &str| kiln_sdk::log(kiln_sdk::Level::Warn, m);
        let hooks = export::Hooks {
            codec: &mut codec,
            background: Some(&mut background),
            cancelled: &cancelled,
            warn: &mut warn,
        };
        let summary = export::export(&request, &mut layers, &mut sink, hooks).map_err(to_plugin_error)?;
        sink.flush().map_err(to_plugin_error)?;
        kiln_sdk::info!(
            "wrote a {} byte SIF ({} squashfs, {} inodes, {}) at partition offset {}",
            summary.file_size,
            request_compression(&req.options),
            summary.inodes,
            summary.arch,
            summary.partition_offset
        );
        out.finish(sif::MEDIA_TYPE)
    }
}

fn request_compression(options: &[(String, String)]) -> &'static str {
    export::parse_options(options).map(|s| s.compression.name()).unwrap_or("gzip")
}

/// The host codec's algorithm for a squashfs compression (squashfs "gzip" is zlib streams).
fn algorithm(c: Compression) -> codec::Algorithm {
    match c {
        Compression::Gzip => codec::Algorithm::Zlib,
        Compression::Zstd => codec::Algorithm::Zstd,
        Compression::Xz => codec::Algorithm::Xz,
    }
}

/// Batches compressed on the host's threads while the plugin reads on.
struct HostBackground;

impl export::Background for HostBackground {
    fn submit(&mut self, algo: Compression, blocks: &[Vec<u8>]) -> Result<u64> {
        codec::submit_blocks(algorithm(algo), None, blocks).map_err(from_plugin_error)
    }

    fn collect(&mut self, ticket: u64) -> Result<Vec<Vec<u8>>> {
        codec::collect_blocks(ticket).map_err(from_plugin_error)
    }
}

/// Layers as host-decompressed tar streams.
struct HostLayers<'a> {
    layers: &'a [Layer],
}

impl export::Layers for HostLayers<'_> {
    fn open(&mut self, index: usize) -> Result<Box<dyn std::io::Read + '_>> {
        let layer = self.layers.get(index).ok_or_else(|| Error::Internal(format!("no layer {index}")))?;
        let stream = layer.reader.uncompressed().map_err(from_plugin_error)?;
        Ok(Box::new(StreamRead::new(stream)))
    }
}

/// A buffered [`Sink`] over the host's writer (created without compression, so `write-at` works).
struct HostSink<'a> {
    out: &'a BlobWriter,
    buf: Vec<u8>,
    flushed: u64,
}

impl HostSink<'_> {
    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.out.write(&self.buf).map_err(from_plugin_error)?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Sink for HostSink<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.buf.len() + data.len() > WRITE_CHUNK {
            self.flush()?;
        }
        if data.len() >= WRITE_CHUNK {
            self.out.write(data).map_err(from_plugin_error)?;
            self.flushed += data.len() as u64;
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset + data.len() as u64;
        if offset >= self.flushed && end <= self.position() {
            let at = (offset - self.flushed) as usize;
            self.buf[at..at + data.len()].copy_from_slice(data);
            return Ok(());
        }
        self.flush()?;
        self.out.write_at(offset, data).map_err(from_plugin_error)
    }

    fn position(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }
}

fn from_plugin_error(e: PluginError) -> Error {
    match e {
        PluginError::InvalidInput(m) => Error::InvalidInput(m),
        PluginError::Unsupported(m) => Error::Unsupported(m),
        PluginError::Denied(m) => Error::Denied(m),
        PluginError::Io(m) => Error::Io(m),
        PluginError::Internal(m) => Error::Internal(m),
    }
}

fn to_plugin_error(e: Error) -> PluginError {
    match e {
        Error::InvalidInput(m) => PluginError::InvalidInput(m),
        Error::Unsupported(m) => PluginError::Unsupported(m),
        Error::Denied(m) => PluginError::Denied(m),
        Error::Io(m) => PluginError::Io(m),
        Error::Internal(m) => PluginError::Internal(m),
        Error::Cancelled => PluginError::Internal("export cancelled".into()),
    }
}

kiln_sdk::exporter::export_exporter!(Plugin);
