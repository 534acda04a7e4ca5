//! A test exporter that moves its layers' bytes through host handles, for the host's tests and
//! throughput benchmark. Option `mode`: `read` (read-at every layer, write nothing), `write`
//! (read-at and write each chunk), `copy-from` (let the host copy), `copy-from-split` (the same
//! in two calls, the second from an offset that is no page boundary), `stream` (read the host's
//! decompressed stream and write it), `codec` (compress the layer in 64 KiB zlib blocks, in the
//! foreground and through background batches collected out of order, check both agree and that
//! the host's limits hold, and write each block as a little-endian u32 length and its bytes).
//! Option `chunk`: bytes per read (default 64 KiB).

use kiln_sdk::exporter::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::exporter::exports::kiln::plugin::exporter::{ExportRequest, Guest};
use kiln_sdk::exporter::kiln::plugin::blobs::BlobWriter;
use kiln_sdk::exporter::kiln::plugin::codec::{self, Algorithm};
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
                "copy-from-split" => {
                    let first = size / 3 + 1;
                    out.copy_from(&layer.reader, 0, first)?;
                    out.copy_from(&layer.reader, first, size - first)?;
                    seen += size;
                }
                "codec" => {
                    let mut data = Vec::new();
                    while (data.len() as u64) < size {
                        let got = layer.reader.read_at(data.len() as u64, chunk)?;
                        if got.is_empty() {
                            return Err(PluginError::Io("short read".into()));
                        }
                        data.extend_from_slice(&got);
                    }
                    let blocks: Vec<Vec<u8>> = data.chunks(64 << 10).map(<[u8]>::to_vec).collect();
                    let now = codec::compress_blocks(Algorithm::Zlib, None, &blocks)?;
                    let third = blocks.len().div_ceil(3);
                    let tickets: Vec<u64> =
                        blocks.chunks(third).map(|b| codec::submit_blocks(Algorithm::Zlib, None, b)).collect::<Result<_, _>>()?;
                    let mut later: Vec<Vec<Vec<u8>>> = Vec::new();
                    for t in tickets.iter().rev() {
                        later.push(codec::collect_blocks(*t)?);
                    }
                    let later: Vec<Vec<u8>> = later.into_iter().rev().flatten().collect();
                    if later != now {
                        return Err(PluginError::Internal("background batches differ from compress-blocks".into()));
                    }
                    match codec::collect_blocks(tickets[0]) {
                        Err(PluginError::InvalidInput(_)) => {}
                        other => return Err(PluginError::Internal(format!("a ticket collected twice gave {other:?}"))),
                    }
                    let tiny = vec![b"x".to_vec()];
                    let mut waiting = Vec::new();
                    let refused = loop {
                        match codec::submit_blocks(Algorithm::Zstd, None, &tiny) {
                            Ok(t) if waiting.len() < 64 => waiting.push(t),
                            Ok(_) => return Err(PluginError::Internal("64 batches wait uncollected".into())),
                            Err(PluginError::Denied(_)) => break waiting.len(),
                            Err(e) => return Err(e),
                        }
                    };
                    for t in waiting {
                        codec::collect_blocks(t)?;
                    }
                    for b in &now {
                        out.write(&(b.len() as u32).to_le_bytes())?;
                        out.write(b)?;
                    }
                    seen += size;
                    let mut d = out.finish("application/vnd.kiln.test")?;
                    d.annotations.push(("kiln.test.seen".into(), seen.to_string()));
                    d.annotations.push(("kiln.test.codec-refused-after".into(), refused.to_string()));
                    return Ok(d);
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
