//! Errors of the plugin host. Every error names the plugin and what it was doing.

use std::path::PathBuf;

/// What can go wrong loading or calling a plugin.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The component could not be compiled or is not a valid component.
    #[error("plugin {plugin}: not a valid kiln plugin component: {reason}")]
    Invalid { plugin: String, reason: String },
    /// The component imports something kiln does not provide.
    #[error("plugin {plugin}: refused: it imports `{import}`, which kiln does not provide (plugins may import only kiln:plugin interfaces of their world)")]
    ForbiddenImport { plugin: String, import: String },
    /// The plugin trapped (panic, memory cap, stack overflow, …).
    #[error("plugin {plugin} failed while {doing}: {reason}")]
    Trap { plugin: String, doing: String, reason: String },
    /// The plugin ran past its deadline.
    #[error("plugin {plugin} was stopped while {doing}: it ran longer than {limit_ms} ms")]
    Timeout { plugin: String, doing: String, limit_ms: u64 },
    /// The plugin returned an error of its own.
    #[error("plugin {plugin} reported an error while {doing}: {reason}")]
    Plugin { plugin: String, doing: String, reason: String },
    /// The plugin's answer broke the host's rules.
    #[error("plugin {plugin}: refused its answer while {doing}: {reason}")]
    Refused { plugin: String, doing: String, reason: String },
    /// No plugin of that name or kind.
    #[error("no {kind} plugin named {name:?} (see `kiln plugin list`)")]
    NotFound { kind: String, name: String },
    /// File system trouble (cache, catalog).
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// Anything else the engine reported.
    #[error("plugin host: {0}")]
    Engine(String),
}

/// Shorthand.
pub type Result<T, E = HostError> = std::result::Result<T, E>;
