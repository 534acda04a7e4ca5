//! kiln-store's error type. Every variant names the file, digest or image it is about.

use kiln_core::Digest;
use std::path::PathBuf;

/// Anything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `rename`, …).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Content did not hash to the digest it was expected to have.
    #[error("digest mismatch: expected {expected}, got {actual} ({size} bytes)")]
    DigestMismatch {
        /// What the caller said the content should hash to.
        expected: Digest,
        /// What it did hash to.
        actual: Digest,
        /// Bytes received.
        size: u64,
    },
    /// No blob with this digest.
    #[error("blob {0} not found in the store")]
    BlobNotFound(Digest),
    /// No image matched a name or ID.
    #[error("image not known: {0}")]
    ImageNotFound(String),
    /// No manifest list has this name.
    #[error("manifest list not known: {0}")]
    ListNotFound(String),
    /// A manifest list of this name exists already.
    #[error("manifest list {0} already exists")]
    ListExists(String),
    /// A short ID or short name matched several images.
    #[error("{name} is ambiguous: it matches images {}", candidates.join(", "))]
    AmbiguousImage {
        /// What was looked up.
        name: String,
        /// IDs of the matching images.
        candidates: Vec<String>,
    },
    /// A manifest could not be used.
    #[error("manifest {digest}: {reason}")]
    InvalidManifest {
        /// The manifest's digest.
        digest: Digest,
        /// What is wrong with it.
        reason: String,
    },
    /// An image refers to blobs the store does not have.
    #[error("image {image}: missing blobs {}", missing.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))]
    MissingBlobs {
        /// The image (manifest digest).
        image: Digest,
        /// The missing blobs.
        missing: Vec<Digest>,
    },
    /// A name, reference or digest was malformed.
    #[error(transparent)]
    InvalidName(#[from] kiln_core::Error),
    /// A snapshot or cache key is not usable as a file name.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The image cannot be removed without `force`.
    #[error("image {image} cannot be removed: {reason}")]
    ImageInUse {
        /// The image ID.
        image: String,
        /// Why (names left, containers using it).
        reason: String,
    },
    /// No working container matched.
    #[error("container not known: {0}")]
    ContainerNotFound(String),
    /// A working container with this name already exists.
    #[error("the container name {0:?} is already in use")]
    ContainerNameInUse(String),
    /// A store metadata file could not be parsed.
    #[error("corrupt store file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attach an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            op,
            path: path.into(),
            source,
        })
    }
}
