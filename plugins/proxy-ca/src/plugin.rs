//! Binds the mount-injector world: step info in, [`inject::inject`] over the host's rootfs reader,
//! mounts and env out.

use kiln_sdk::injector::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::injector::exports::kiln::plugin::mount_injector::{Guest, Injection, StepInfo};
use kiln_sdk::injector::kiln::plugin::mounts::{self, Content, Mount};
use kiln_sdk::injector::kiln::plugin::types::PluginError;

use crate::inject::{self, Error};

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "proxy-ca".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

/// The host's `read-rootfs-file`.
struct HostRootfs;

impl inject::Rootfs for HostRootfs {
    fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, String> {
        mounts::read_rootfs_file(path).map_err(|e| format!("{e:?}"))
    }
}

impl Guest for Plugin {
    fn mounts_for(step: StepInfo) -> Result<Injection, PluginError> {
        kiln_sdk::install_panic_hook();
        let settings = inject::settings(&step.options, &step.files).map_err(to_plugin_error)?;
        let inj = inject::inject(&settings, &step.argv, &mut HostRootfs).map_err(to_plugin_error)?;
        for note in &inj.notes {
            kiln_sdk::debug!("step {} of stage {}: {note}", step.index, step.stage);
        }
        let mounts = inj
            .mounts
            .into_iter()
            .map(|m| Mount { target: m.target, content: Content::Bytes(m.content), mode: m.mode, uid: 0, gid: 0 })
            .collect();
        Ok(Injection { mounts, env: inj.env })
    }
}

fn to_plugin_error(e: Error) -> PluginError {
    match e {
        Error::InvalidInput(m) => PluginError::InvalidInput(m),
        e @ Error::Rootfs { .. } => PluginError::Io(e.to_string()),
    }
}

kiln_sdk::injector::export_injector!(Plugin);
