//! Errors of a build. Each names the Dockerfile line, the step or the file it concerns.

/// What can go wrong in a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The frontend rejected the source.
    #[error("{0}")]
    Frontend(String),
    /// A RUN step exited non-zero.
    #[error("{location}: RUN failed with exit status {status}: {command}{tail}")]
    RunFailed {
        /// file:line of the step.
        location: String,
        /// Its exit status.
        status: i32,
        /// The command.
        command: String,
        /// The last output lines, formatted.
        tail: String,
    },
    /// A step could not be executed.
    #[error("{location}: {message}")]
    Step {
        /// file:line of the step.
        location: String,
        /// What went wrong.
        message: String,
    },
    /// Store trouble.
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    /// Registry trouble.
    #[error(transparent)]
    Registry(#[from] kiln_registry::Error),
    /// Plugin trouble.
    #[error(transparent)]
    Plugin(#[from] kiln_plugin_host::HostError),
    /// Sandbox trouble.
    #[error("{what}: {source}")]
    Sandbox {
        /// What was being done.
        what: String,
        /// The error.
        source: kiln_sandbox::Error,
    },
    /// Layer trouble.
    #[error("{what}: {source}")]
    Layer {
        /// What was being done.
        what: String,
        /// The error.
        source: kiln_layer::LayerError,
    },
    /// File trouble.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Shorthand.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;
