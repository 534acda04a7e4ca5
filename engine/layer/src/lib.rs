//! Layers for kiln: apply OCI layer tars with whiteouts, diff a directory into a layer, compress and hash in one pass.
//!
//! * [`apply_layer`] extracts a layer tar onto a flattened rootfs directory, safely (nothing outside it is touched).
//! * [`diff_overlay_upper`] and [`diff_dirs`] turn file-system changes into a reproducible layer tar.
//! * [`copy_tree`] and [`diff_tree`] are the copy-based (`vfs`) working rootfs: a fresh copy of a flattened rootfs
//!   for a step, and the layer of what the step changed in it.
//! * [`LayerWriter`] compresses a layer tar and computes its diff_id, digest and size in one pass.
//! * [`decompress`] opens a gzip, zstd or plain layer blob by its magic bytes.

mod apply;
mod compress;
mod diff;
mod error;
mod sys;
mod tarw;
mod treecopy;
mod treediff;
mod writer;

pub use apply::{ApplyOptions, ApplyStats, OPAQUE_MARKER, WHITEOUT_PREFIX, apply_layer};
pub use compress::{decompress, decompress_detect};
pub use diff::{DiffOptions, DiffStats, OwnerMap, diff_dirs, diff_overlay_upper};
pub use error::{LayerError, Result};
pub use kiln_core::{Compression, Digest};
pub use sys::Timestamp;
pub use treecopy::{CopyStamp, CopyStats, copy_tree};
pub use treediff::diff_tree;
pub use writer::{GZIP_BLOCK_SIZE, LayerDigests, LayerWriter, LayerWriterOptions};

/// Extended attributes of a path, not following a final symlink (names listed, values read with
/// the size-then-read calls retried when they grow; absent or unsupported is no value).
pub mod xattr {
    pub use crate::sys::{lgetxattr, llistxattr, lsetxattr};
}
