//! Native compression for the `codec` interface (exporters hand blocks in, the host compresses).

use crate::bindings::exporter::kiln::plugin::codec::Algorithm;
use std::io::Write;

/// Compress one block with `algo` at `level` (the algorithm's default when `None`).
pub fn compress(algo: Algorithm, level: Option<u32>, data: &[u8]) -> std::io::Result<Vec<u8>> {
    match algo {
        Algorithm::Gzip => {
            let lvl = flate2::Compression::new(level.unwrap_or(6).min(9));
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), lvl);
            e.write_all(data)?;
            e.finish()
        }
        Algorithm::Zlib => {
            let lvl = flate2::Compression::new(level.unwrap_or(9).min(9));
            let mut e = flate2::write::ZlibEncoder::new(Vec::with_capacity(data.len() / 2), lvl);
            e.write_all(data)?;
            e.finish()
        }
        Algorithm::Zstd => zstd::bulk::compress(data, level.map(|l| l as i32).unwrap_or(15)),
        Algorithm::Xz => {
            // CRC32 checks: the Linux squashfs driver cannot read CRC64 xz streams.
            let stream = xz2::stream::Stream::new_easy_encoder(level.unwrap_or(6).min(9), xz2::stream::Check::Crc32)?;
            let mut e = xz2::write::XzEncoder::new_stream(Vec::with_capacity(data.len() / 2), stream);
            e.write_all(data)?;
            e.finish()
        }
    }
}
