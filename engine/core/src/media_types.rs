//! Media type strings of OCI and Docker image documents and layers, and layer compression.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed tar layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip-compressed tar layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd-compressed tar layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable uncompressed layer (deprecated, still seen in the wild).
pub const OCI_LAYER_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable gzip layer (deprecated).
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable zstd layer (deprecated).
pub const OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// The OCI empty descriptor (`{}`), used as config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip-compressed tar layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed tar layer (containers/image's `DockerV2SchemaLayerMediaTypeUncompressed`,
/// what buildah writes for uncompressed layers in Docker format).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema 1 signed manifest (legacy; recognised, not produced).
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker schema 1 manifest (legacy; recognised, not produced).
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Config media type of a WebAssembly OCI artifact.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// Layer media type of a WebAssembly OCI artifact (the component or module bytes).
pub const WASM_LAYER: &str = "application/wasm";

/// True for single-image manifest media types (OCI or Docker schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, OCI_MANIFEST | DOCKER_MANIFEST)
}

/// True for multi-platform index media types (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// True for image config media types (OCI or Docker).
pub fn is_config(media_type: &str) -> bool {
    matches!(media_type, OCI_CONFIG | DOCKER_CONFIG)
}

/// True for filesystem layer media types kiln can unpack (OCI, Docker, including non-distributable).
pub fn is_layer(media_type: &str) -> bool {
    layer_compression(media_type).is_some()
}

/// The compression of a filesystem layer media type, or `None` when it is not a layer type.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        OCI_LAYER_TAR | OCI_LAYER_NONDIST_TAR | DOCKER_LAYER_TAR => Some(Compression::None),
        OCI_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN_GZIP => {
            Some(Compression::Gzip)
        }
        OCI_LAYER_ZSTD | OCI_LAYER_NONDIST_ZSTD => Some(Compression::Zstd),
        _ => None,
    }
}

/// The OCI layer media type for a compression.
pub fn oci_layer_type(c: Compression) -> &'static str {
    match c {
        Compression::None => OCI_LAYER_TAR,
        Compression::Gzip => OCI_LAYER_GZIP,
        Compression::Zstd => OCI_LAYER_ZSTD,
    }
}

/// The Docker schema 2 layer media type for a compression, as buildah writes them: gzip and
/// uncompressed have Docker types; zstd has none and uses the OCI type.
pub fn docker_layer_type(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => DOCKER_LAYER_GZIP,
        Compression::None => DOCKER_LAYER_TAR,
        Compression::Zstd => OCI_LAYER_ZSTD,
    }
}

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Sniff the compression from a blob's first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`);
    /// anything else is taken as uncompressed.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Parse the names buildah's `--compression-format` / `--disable-compression` use:
    /// `gzip`, `zstd`, `none` (also `uncompressed`).
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "gzip" => Some(Compression::Gzip),
            "zstd" | "zstd:chunked" => Some(Compression::Zstd),
            "none" | "uncompressed" => Some(Compression::None),
            _ => None,
        }
    }

    /// `none`, `gzip` or `zstd`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        assert!(
            is_manifest(OCI_MANIFEST) && is_manifest(DOCKER_MANIFEST) && !is_manifest(OCI_INDEX)
        );
        assert!(is_index(DOCKER_MANIFEST_LIST) && !is_index(OCI_CONFIG));
        assert_eq!(
            layer_compression(DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(layer_compression(OCI_LAYER_ZSTD), Some(Compression::Zstd));
        assert_eq!(layer_compression(WASM_LAYER), None);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
        assert_eq!(docker_layer_type(Compression::Zstd), OCI_LAYER_ZSTD);
        assert_eq!(layer_compression(DOCKER_LAYER_TAR), Some(Compression::None));
    }
}
