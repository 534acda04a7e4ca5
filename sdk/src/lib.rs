//! kiln-sdk: guest-side bindings and helpers for kiln plugins.
//!
//! Each world of `kiln:plugin@0.1.0` has its own module with generated bindings and an export
//! macro. Plugins build for `wasm32-unknown-unknown` and import nothing but kiln's interfaces.

#![allow(clippy::all)]

extern crate self as kiln_sdk;

// A component may implement one world: each plugin turns on exactly one of the features
// `frontend`, `injector`, `exporter` (wit-component merges every world linked into a module).
#[cfg(not(any(feature = "frontend", feature = "injector", feature = "exporter")))]
compile_error!("kiln-sdk: enable one of the features `frontend`, `injector`, `exporter`");

/// Bindings for the `frontend-plugin` world (Dockerfile-like sources → build plans).
#[cfg(feature = "frontend")]
pub mod frontend {
    wit_bindgen::generate!({
        path: "../wit",
        world: "frontend-plugin",
        pub_export_macro: true,
        export_macro_name: "export_frontend",
        default_bindings_module: "kiln_sdk::frontend",
        runtime_path: "kiln_sdk::__rt",
    });
}

/// `RUN --mount` options read the way the host reads them (`kiln-mountspec`), and turned into
/// the plan's `run-mount` once their `from` is resolved.
#[cfg(feature = "frontend")]
pub mod mounts {
    use crate::frontend::kiln::plugin::plan::{CopyFrom, MountType, RunMount};
    pub use kiln_mountspec::*;

    impl From<MountKind> for MountType {
        fn from(k: MountKind) -> Self {
            match k {
                MountKind::Bind => MountType::Bind,
                MountKind::Cache => MountType::Cache,
                MountKind::Tmpfs => MountType::Tmpfs,
                MountKind::Secret => MountType::Secret,
                MountKind::Ssh => MountType::Ssh,
            }
        }
    }

    impl From<MountSpec<CopyFrom>> for RunMount {
        fn from(m: MountSpec<CopyFrom>) -> Self {
            RunMount {
                kind: m.kind.into(),
                target: m.target,
                source: m.source,
                from: m.from,
                id: m.id,
                read_write: m.read_write,
                required: m.required,
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
                env: m.env,
                sharing: m.sharing,
                size: m.size,
            }
        }
    }
}

/// Bindings for the `mount-injector-plugin` world (mounts and env for RUN steps).
#[cfg(feature = "injector")]
pub mod injector {
    wit_bindgen::generate!({
        path: "../wit",
        world: "mount-injector-plugin",
        pub_export_macro: true,
        export_macro_name: "export_injector",
        default_bindings_module: "kiln_sdk::injector",
        runtime_path: "kiln_sdk::__rt",
    });
}

/// Bindings for the `exporter-plugin` world (images → files).
#[cfg(feature = "exporter")]
pub mod exporter {
    wit_bindgen::generate!({
        path: "../wit",
        world: "exporter-plugin",
        pub_export_macro: true,
        export_macro_name: "export_exporter",
        default_bindings_module: "kiln_sdk::exporter",
        runtime_path: "kiln_sdk::__rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

#[cfg(feature = "exporter")]
use exporter as world;
#[cfg(all(feature = "frontend", not(feature = "exporter")))]
use frontend as world;
#[cfg(all(feature = "injector", not(any(feature = "exporter", feature = "frontend"))))]
use injector as world;

/// `std::io` adapters over host handles, per world (`io::exporter::BlobWrite`, ...); the
/// injector world has no byte handles.
#[cfg(any(feature = "exporter", feature = "frontend"))]
pub mod io;

/// Log levels, shared by all worlds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// Send a log line to the host. Every world imports the same `host.log`, so one binding serves.
pub fn log(level: Level, message: &str) {
    use world::kiln::plugin::host;
    use world::kiln::plugin::types::Level as L;
    let l = match level {
        Level::Trace => L::Trace,
        Level::Debug => L::Debug,
        Level::Info => L::Info,
        Level::Warn => L::Warn,
        Level::Error => L::Error,
    };
    host::log(l, message);
}

/// True when the host asked the plugin to stop early.
pub fn cancelled() -> bool {
    world::kiln::plugin::host::cancelled()
}

/// `info!("...", args)`: log at info level.
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log($crate::Level::Info, &format!($($t)*)) } }
/// `warn!("...", args)`: log at warn level.
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log($crate::Level::Warn, &format!($($t)*)) } }
/// `debug!("...", args)`: log at debug level.
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log($crate::Level::Debug, &format!($($t)*)) } }
/// `error!("...", args)`: log at error level.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log($crate::Level::Error, &format!($($t)*)) } }

/// Report panics to the host (as an error log line with the message and location) before the trap.
/// Call it first in every exported function; it is cheap after the first call.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                s.to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "panic".to_string()
            };
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            log(Level::Error, &format!("panic: {msg}{at}"));
        }));
    });
}
