//! A mount injector that lists WASI pre-opened directories: the host must refuse it at load,
//! naming the `wasi:filesystem` import, before any of its code runs.

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "kiln-test:wasi-importer/wasi-injector",
    generate_all,
});

use exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use exports::kiln::plugin::mount_injector::{Guest, Injection, StepInfo};
use kiln::plugin::types::PluginError;

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "wasi-importer".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

impl Guest for Plugin {
    fn mounts_for(_step: StepInfo) -> Result<Injection, PluginError> {
        let dirs = wasi::filesystem::preopens::get_directories();
        let env = dirs.into_iter().map(|(_, name)| ("PREOPEN".to_string(), name)).collect();
        Ok(Injection { mounts: vec![], env })
    }
}

export!(Plugin);
