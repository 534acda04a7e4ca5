//! The error type shared by the SIF, squashfs, tar and export modules.

/// Why writing a SIF failed; the variants map one to one onto the WIT `plugin-error`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The request or the image is wrong (unknown option, bad tar, contradictory layers).
    #[error("{0}")]
    InvalidInput(String),
    /// Something valid that this exporter cannot write (GNU sparse tar entries, names too long).
    #[error("{0}")]
    Unsupported(String),
    /// The host denied something.
    #[error("{0}")]
    Denied(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
    /// Something that should not happen.
    #[error("{0}")]
    Internal(String),
    /// The user asked the build to stop.
    #[error("export cancelled")]
    Cancelled,
}

impl Error {
    /// The same error with `context: ` in front of its message.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        let f = |m: String| format!("{context}: {m}");
        match self {
            Error::InvalidInput(m) => Error::InvalidInput(f(m)),
            Error::Unsupported(m) => Error::Unsupported(f(m)),
            Error::Denied(m) => Error::Denied(f(m)),
            Error::Io(m) => Error::Io(f(m)),
            Error::Internal(m) => Error::Internal(f(m)),
            Error::Cancelled => Error::Cancelled,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> Self {
        Error::Io(format!("{what}: {e}"))
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
