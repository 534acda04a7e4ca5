//! Plain-data view of an export request, independent of the host bindings.

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// "sha256:<64 hex>".
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations, in order.
    pub annotations: Vec<(String, String)>,
}

/// A layer: its blob descriptor and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The (possibly compressed) blob.
    pub descriptor: Descriptor,
    /// "sha256:<hex>" of the uncompressed tar.
    pub diff_id: String,
}

/// The image being exported; layer bodies stay with the host and are reached by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Names the image is known by; the first one is the default reference.
    pub names: Vec<String>,
    /// The manifest, byte for byte.
    pub manifest_json: Vec<u8>,
    /// Its descriptor.
    pub manifest: Descriptor,
    /// The config, byte for byte.
    pub config_json: Vec<u8>,
    /// Its descriptor.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Layer>,
    /// Seconds since the epoch for archive timestamps, when the build is reproducible.
    pub timestamp: Option<i64>,
}

/// The three archive formats this plugin writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A tar of an OCI image layout.
    OciArchive,
    /// An OCI image layout directory (written as the same tar; the host unpacks it).
    Oci,
    /// A `docker save` tar.
    DockerArchive,
}

impl Scheme {
    /// Every scheme, in the order `schemes()` reports them.
    pub const ALL: [Scheme; 3] = [Scheme::OciArchive, Scheme::Oci, Scheme::DockerArchive];

    /// The name users type before the `:`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::OciArchive => "oci-archive",
            Scheme::Oci => "oci",
            Scheme::DockerArchive => "docker-archive",
        }
    }

    /// The scheme called `name`.
    pub fn parse(name: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.name() == name)
    }
}
