//! The error type of kiln-layer.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while applying, diffing or writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A layer entry tries to reach outside the destination (absolute path, `..`, a symlinked parent,
    /// a hardlink to somewhere it must not point).
    #[error("layer entry {entry:?} refused: {reason}")]
    Unsafe {
        /// The entry's path as written in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A layer entry is malformed or cannot be applied (missing hardlink target, parent is a file, ...).
    #[error("layer entry {entry:?}: {reason}")]
    BadEntry {
        /// The entry's path as written in the tar.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file-system operation for a layer entry failed.
    #[error("layer entry {entry:?}: {op}: {source}")]
    Entry {
        /// The entry's path as written in the tar.
        entry: String,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading the tar stream failed (corrupt tar, decompression error, I/O error of the source).
    #[error("reading layer tar{}: {source}", after.as_ref().map(|e| format!(" after entry {e:?}")).unwrap_or_default())]
    Tar {
        /// The last entry read successfully, if any.
        after: Option<String>,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file-system operation on a path failed (destination, upper or lower directory).
    #[error("{}: {op}: {source}", path.display())]
    Path {
        /// The path concerned.
        path: PathBuf,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The overlay upper directory uses a feature a diff cannot represent (redirect_dir, metacopy).
    #[error("{}: overlay {feature} is in use (mount the overlay with metacopy=off and redirect_dir=off, or userxattr)", path.display())]
    UnsupportedOverlay {
        /// The file or directory carrying the feature's xattr.
        path: PathBuf,
        /// The feature (`redirect_dir` or `metacopy`).
        feature: &'static str,
    },
    /// Writing the produced tar stream failed.
    #[error("writing layer tar at {}: {source}", path.display())]
    Write {
        /// The entry being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Result alias for kiln-layer.
pub type Result<T, E = LayerError> = std::result::Result<T, E>;
