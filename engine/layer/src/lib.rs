//! Layers for kiln: apply OCI layer tars with whiteouts, diff a directory into a layer, compress and hash in one pass.
//!
//! * [`apply_layer`] extracts a layer tar onto a flattened rootfs directory, safely (nothing outside it is touched).
//! * [`diff_overlay_upper`] and [`diff_dirs`] turn file-system changes into a reproducible layer tar.
//! * [`LayerWriter`] compresses a layer tar and computes its diff_id, digest and size in one pass.
//! * [`decompress`] opens a gzip, zstd or plain layer blob by its magic bytes.

mod apply;
mod compress;
mod diff;
mod error;
mod sys;
mod tarw;
mod writer;

pub use apply::{apply_layer, ApplyOptions, ApplyStats, OPAQUE_MARKER, WHITEOUT_PREFIX};
pub use compress::{
    decompress, decompress_detect, detect, Compression, DOCKER_MEDIA_TYPE_TAR, DOCKER_MEDIA_TYPE_TAR_GZIP,
    MEDIA_TYPE_TAR, MEDIA_TYPE_TAR_GZIP, MEDIA_TYPE_TAR_ZSTD,
};
pub use diff::{diff_dirs, diff_overlay_upper, DiffOptions, DiffStats};
pub use error::{LayerError, Result};
pub use writer::{LayerDigests, LayerWriter, LayerWriterOptions, GZIP_BLOCK_SIZE};
