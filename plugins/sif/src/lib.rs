//! The `sif` exporter plugin.

use kiln_sdk::exporter::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::exporter::exports::kiln::plugin::exporter::{ExportRequest, Guest};
use kiln_sdk::exporter::kiln::plugin::blobs::BlobWriter;
use kiln_sdk::exporter::kiln::plugin::types::{Descriptor, PluginError};

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "sif".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

impl Guest for Plugin {
    fn schemes() -> Vec<String> {
        vec!["sif".into()]
    }
    fn export_image(_req: ExportRequest, _out: &BlobWriter) -> Result<Descriptor, PluginError> {
        kiln_sdk::install_panic_hook();
        Err(PluginError::Unsupported("not implemented".into()))
    }
}

kiln_sdk::exporter::export_exporter!(Plugin);
