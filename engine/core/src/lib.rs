//! Core types shared by kiln's crates: digests, image references, platforms, media types.
//!
//! Everything here is plain data and parsing, no I/O beyond hashing streams. See `README.md` in this
//! crate for the API summary.

#![warn(missing_docs)]

pub mod digest;
pub mod error;
pub mod media_types;
pub mod platform;
pub mod reference;
pub mod spec;
pub mod transport;

pub use digest::{Digest, HashingReader, HashingWriter, Sha256, chain_ids};
pub use error::Error;
pub use media_types::Compression;
pub use platform::Platform;
pub use reference::ImageReference;
pub use spec::{
    Descriptor, HealthConfig, History, ImageConfig, Index, Manifest, RootFs, RuntimeConfig,
    StringSet,
};
pub use transport::Transport;

/// Result with kiln-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
