//! Opening layer blobs: compression detected by magic bytes (gzip, zstd, plain) and a decompressing reader.

use std::io::{self, BufReader, Read};

use kiln_core::Compression;

/// Wraps `reader` in the decompressor its magic bytes call for (gzip, zstd, or none) and says which it chose.
/// Multi-member gzip streams are read to their end.
pub fn decompress_detect<'a, R: Read + 'a>(
    mut reader: R,
) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let c = Compression::detect(&magic[..got]);
    let chained: Box<dyn Read + 'a> =
        Box::new(io::Cursor::new(magic[..got].to_vec()).chain(reader));
    let r: Box<dyn Read + 'a> = match c {
        Compression::None => chained,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            256 * 1024,
            chained,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(chained)?),
    };
    Ok((r, c))
}

/// Wraps `reader` in the decompressor its magic bytes call for: gzip, zstd, or plain.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    decompress_detect(reader).map(|(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_empty_inputs_pass_through() {
        for input in [&b""[..], b"a", b"abc", b"plain tar bytes"] {
            let (mut r, c) = decompress_detect(input).unwrap();
            assert_eq!(c, Compression::None);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, input);
        }
    }

    #[test]
    fn multi_member_gzip_is_read_to_the_end() {
        let mut blob = Vec::new();
        for part in [&b"first "[..], b"second"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, part).unwrap();
            blob.extend(e.finish().unwrap());
        }
        let mut out = String::new();
        decompress(&blob[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first second");
    }
}
