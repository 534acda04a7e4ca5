//! Binds the exporter world: host handles in, [`export::export`] over them, plugin errors out.

use kiln_sdk::exporter::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::exporter::exports::kiln::plugin::exporter::{ExportRequest, Guest, Layer};
use kiln_sdk::exporter::kiln::plugin::blobs::BlobWriter;
use kiln_sdk::exporter::kiln::plugin::codec;
use kiln_sdk::exporter::kiln::plugin::types::{Descriptor, PluginError};

use crate::export::{self, Error, Io, Written};
use crate::model::{self, Scheme};

/// Bytes asked of the host per read of an uncompressed layer (the host caps reads at 1 MiB).
const CHUNK: u32 = 1 << 20;

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "oci-archive".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

impl Guest for Plugin {
    fn schemes() -> Vec<String> {
        Scheme::ALL.iter().map(|s| s.name().to_string()).collect()
    }

    fn export_image(req: ExportRequest, out: &BlobWriter) -> Result<Descriptor, PluginError> {
        kiln_sdk::install_panic_hook();
        let ExportRequest { image, destination, options } = req;
        let layers = image.layers;
        let model = model::Image {
            names: image.names,
            manifest_json: image.manifest_json,
            manifest: from_wit(image.manifest_descriptor),
            config_json: image.config_json,
            config: from_wit(image.config_descriptor),
            layers: layers
                .iter()
                .map(|l| model::Layer { descriptor: from_wit(l.descriptor.clone()), diff_id: l.diff_id.clone() })
                .collect(),
            timestamp: image.timestamp,
        };
        let mut io = HostIo { out, layers: &layers };
        match export::export(&mut io, &model, &destination, &options) {
            Ok(Written::Manifest(d)) => Ok(to_wit(d)),
            Ok(Written::Archive) => Ok(Descriptor {
                media_type: export::DOCKER_ARCHIVE_MEDIA_TYPE.into(),
                digest: String::new(),
                size: 0,
                annotations: Vec::new(),
            }),
            Err(e) => Err(to_plugin_error(e)),
        }
    }
}

/// [`Io`] over the host's writer and the request's layer readers.
struct HostIo<'a> {
    out: &'a BlobWriter,
    layers: &'a [Layer],
}

impl HostIo<'_> {
    fn layer(&self, index: usize) -> Result<&Layer, Error> {
        self.layers.get(index).ok_or_else(|| Error::Internal(format!("no layer {index}")))
    }
}

impl Io for HostIo<'_> {
    fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        self.out.write(data).map_err(|e| from_plugin_error(e).context("writing the archive"))
    }

    fn position(&mut self) -> u64 {
        self.out.position()
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        self.out.write_at(offset, data).map_err(from_plugin_error)
    }

    fn copy_layer_blob(&mut self, index: usize, len: u64) -> Result<(), Error> {
        let reader = &self.layer(index)?.reader;
        let have = reader.size();
        if have != len {
            return Err(Error::InvalidInput(format!("the blob has {have} bytes, its descriptor says {len}")));
        }
        self.out.copy_from(reader, 0, len).map_err(from_plugin_error)
    }

    fn copy_layer_uncompressed(&mut self, index: usize) -> Result<u64, Error> {
        let stream = self.layer(index)?.reader.uncompressed().map_err(from_plugin_error)?;
        let mut total = 0u64;
        loop {
            if kiln_sdk::cancelled() {
                return Err(Error::Cancelled);
            }
            let chunk = stream.read(CHUNK).map_err(from_plugin_error)?;
            if chunk.is_empty() {
                return Ok(total);
            }
            self.out.write(&chunk).map_err(from_plugin_error)?;
            total += chunk.len() as u64;
        }
    }

    fn sha256_hex(&mut self, data: &[u8]) -> String {
        codec::sha256_hex(data)
    }

    fn cancelled(&mut self) -> bool {
        kiln_sdk::cancelled()
    }
}

fn from_wit(d: Descriptor) -> model::Descriptor {
    model::Descriptor { media_type: d.media_type, digest: d.digest, size: d.size, annotations: d.annotations }
}

fn to_wit(d: model::Descriptor) -> Descriptor {
    Descriptor { media_type: d.media_type, digest: d.digest, size: d.size, annotations: d.annotations }
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
        Error::Cancelled => PluginError::Io("export cancelled".into()),
    }
}

kiln_sdk::exporter::export_exporter!(Plugin);
