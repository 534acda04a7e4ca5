//! A test exporter that moves its layers' bytes through host handles, for the host's tests and
//! throughput benchmark. Option `mode`: `read` (read-at every layer, write nothing), `write`
//! (read-at and write each chunk), `copy-from` (let the host copy), `stream` (read the host's
//! decompressed stream and write it). Option `chunk`: bytes per read (default 64 KiB).

use kiln_sdk::exporter::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::exporter::exports::kiln::plugin::exporter::{ExportRequest, Guest};
use kiln_sdk::exporter::kiln::plugin::blobs::BlobWriter;
use kiln_sdk::exporter::kiln::plugin::types::{Descriptor, PluginError};

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "test-exporter".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

fn option<'a>(req: &'a ExportRequest, key: &str) -> Option<&'a str> {
    req.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

impl Guest for Plugin {
    fn schemes() -> Vec<String> {
        vec!["kiln-test".into()]
    }

    fn export_image(req: ExportRequest, out: &BlobWriter) -> Result<Descriptor, PluginError> {
        kiln_sdk::install_panic_hook();
        let mode = option(&req, "mode").unwrap_or("write");
        let chunk: u32 = option(&req, "chunk").and_then(|c| c.parse().ok()).unwrap_or(64 << 10);
        let mut seen = 0u64;
        for layer in &req.image.layers {
            let size = layer.reader.size();
            match mode {
                "read" | "write" => {
                    let mut offset = 0;
                    while offset < size {
                        let data = layer.reader.read_at(offset, chunk)?;
                        if data.is_empty() {
                            return Err(PluginError::Io(format!("short read at {offset} of {size}")));
                        }
                        if mode == "write" {
                            out.write(&data)?;
                        }
                        offset += data.len() as u64;
                    }
                    seen += offset;
                }
                "copy-from" => {
                    out.copy_from(&layer.reader, 0, size)?;
                    seen += size;
                }
                "stream" => {
                    let stream = layer.reader.uncompressed()?;
                    loop {
                        let data = stream.read(chunk)?;
                        if data.is_empty() {
                            break;
                        }
                        seen += data.len() as u64;
                        out.write(&data)?;
                    }
                }
                other => return Err(PluginError::InvalidInput(format!("unknown mode {other:?}"))),
            }
        }
        let mut d = out.finish("application/vnd.kiln.test")?;
        d.annotations.push(("kiln.test.seen".into(), seen.to_string()));
        Ok(d)
    }
}

kiln_sdk::exporter::export_exporter!(Plugin);
