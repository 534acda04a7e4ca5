//! kiln-core's error type: every parse failure names the input that was rejected.

/// A value that could not be parsed or validated.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A digest string was malformed or used an unsupported algorithm.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The rejected text.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An image reference did not follow the docker reference grammar.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// The rejected text.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A platform string such as `linux/arm64/v8` was malformed.
    #[error("invalid platform {input:?}: {reason}")]
    InvalidPlatform {
        /// The rejected text.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An image name with a transport prefix (`docker://`, `oci:` …) was malformed.
    #[error("invalid image name {input:?}: {reason}")]
    InvalidTransport {
        /// The rejected text.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl Error {
    pub(crate) fn digest(input: &str, reason: impl Into<String>) -> Self {
        Error::InvalidDigest {
            input: input.to_string(),
            reason: reason.into(),
        }
    }
    pub(crate) fn reference(input: &str, reason: impl Into<String>) -> Self {
        Error::InvalidReference {
            input: input.to_string(),
            reason: reason.into(),
        }
    }
    pub(crate) fn platform(input: &str, reason: impl Into<String>) -> Self {
        Error::InvalidPlatform {
            input: input.to_string(),
            reason: reason.into(),
        }
    }
    pub(crate) fn transport(input: &str, reason: impl Into<String>) -> Self {
        Error::InvalidTransport {
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}
