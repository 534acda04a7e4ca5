//! Layer compression formats: detection by magic bytes, decompressing readers, media types.

use std::io::{self, BufReader, Read};

/// Media type of an uncompressed OCI layer.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Media type of a gzip-compressed OCI layer.
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of a zstd-compressed OCI layer.
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Media type of an uncompressed Docker v2 layer.
pub const DOCKER_MEDIA_TYPE_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Media type of a gzip-compressed Docker v2 layer.
pub const DOCKER_MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A layer's compression, as found by [`detect`] or chosen for [`crate::LayerWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer with this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_TYPE_TAR,
            Compression::Gzip => MEDIA_TYPE_TAR_GZIP,
            Compression::Zstd => MEDIA_TYPE_TAR_ZSTD,
        }
    }

    /// The Docker v2 schema 2 media type, if Docker has one for this compression (it has none for zstd).
    pub fn docker_media_type(self) -> Option<&'static str> {
        match self {
            Compression::None => Some(DOCKER_MEDIA_TYPE_TAR),
            Compression::Gzip => Some(DOCKER_MEDIA_TYPE_TAR_GZIP),
            Compression::Zstd => None,
        }
    }

    /// The compression named by a layer media type (OCI or Docker), if it is a layer media type kiln knows.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            MEDIA_TYPE_TAR | DOCKER_MEDIA_TYPE_TAR | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
                Some(Compression::None)
            }
            MEDIA_TYPE_TAR_GZIP
            | DOCKER_MEDIA_TYPE_TAR_GZIP
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => Some(Compression::Gzip),
            MEDIA_TYPE_TAR_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

/// Tells the compression of a stream from its first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`, anything else plain).
pub fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps `reader` in the decompressor its magic bytes call for (gzip, zstd, or none) and says which it chose.
/// Multi-member gzip streams are read to their end.
pub fn decompress_detect<'a, R: Read + 'a>(mut reader: R) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
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
    let c = detect(&magic[..got]);
    let chained: Box<dyn Read + 'a> = Box::new(io::Cursor::new(magic[..got].to_vec()).chain(reader));
    Ok((wrap(chained, c)?, c))
}

fn wrap<'a>(r: Box<dyn Read + 'a>, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => r,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, r))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// Wraps `reader` in the decompressor its magic bytes call for: gzip, zstd, or plain.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    decompress_detect(reader).map(|(r, _)| r)
}
