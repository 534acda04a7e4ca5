//! The registry client's error type: every variant names what failed (URL, digest, file).

use std::path::PathBuf;

/// Errors from registry, transport and credential operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference that cannot be parsed or resolved.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },

    /// A network-level failure (connect, TLS, reset) after all retries.
    #[error("{method} {url}: {message}")]
    Network {
        /// HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// What went wrong.
        message: String,
    },

    /// The registry answered with an unexpected status.
    #[error("{method} {url}: HTTP {status}{}", fmt_msg(.message))]
    Status {
        /// HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The registry's error message, if it sent one.
        message: String,
    },

    /// Credentials are missing or were refused.
    #[error("authentication to {registry} failed: {message}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// Details (status, registry message, token endpoint).
        message: String,
    },

    /// Content did not match its digest; nothing was stored.
    #[error("digest mismatch for {expected} from {source_url}: content hashes to {actual}")]
    DigestMismatch {
        /// The digest the content was supposed to have.
        expected: String,
        /// The digest it actually has.
        actual: String,
        /// Where it came from (URL or file).
        source_url: String,
    },

    /// Content was shorter or longer than its descriptor said; nothing was stored.
    #[error(
        "size mismatch for {digest} from {source_url}: expected {expected} bytes, got {actual}"
    )]
    SizeMismatch {
        /// The blob's digest.
        digest: String,
        /// Bytes the descriptor announced.
        expected: u64,
        /// Bytes received (at least).
        actual: u64,
        /// Where it came from.
        source_url: String,
    },

    /// A manifest, index or config that cannot be used.
    #[error("{context}: {message}")]
    Manifest {
        /// What was being read (reference, digest, URL).
        context: String,
        /// What is wrong with it.
        message: String,
    },

    /// No image in an index matches the requested platform.
    #[error("{reference}: no image for platform {platform} in the index (available: {available})")]
    NoMatchingPlatform {
        /// The index reference.
        reference: String,
        /// The requested platform.
        platform: String,
        /// Platforms the index offers.
        available: String,
    },

    /// The image was not found (unknown tag, repository or digest).
    #[error("{reference}: image not found{}", fmt_msg(.message))]
    NotFound {
        /// The reference.
        reference: String,
        /// Registry message or the candidates tried.
        message: String,
    },

    /// A configuration file (registries.conf, auth.json, certificates) that cannot be used.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The store refused an operation.
    #[error("store: {0}")]
    Store(String),

    /// The caller asked for something this client does not do.
    #[error("{0}")]
    Unsupported(String),
}

fn fmt_msg(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Manifest`].
    pub fn manifest(context: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Manifest {
            context: context.into(),
            message: message.into(),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
