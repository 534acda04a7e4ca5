//! The `secrets` mount injector plugin.

use kiln_sdk::injector::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::injector::exports::kiln::plugin::mount_injector::{Guest, Injection, StepInfo};
use kiln_sdk::injector::kiln::plugin::types::PluginError;

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "secrets".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

impl Guest for Plugin {
    fn mounts_for(_step: StepInfo) -> Result<Injection, PluginError> {
        kiln_sdk::install_panic_hook();
        Ok(Injection { mounts: vec![], env: vec![] })
    }
}

kiln_sdk::injector::export_injector!(Plugin);
