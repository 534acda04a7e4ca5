//! Binds the mount-injector world: `requested` in, secret handles from `lookup-secret` out (as
//! mounts, and through `secret-env` for `env=`).

use kiln_sdk::injector::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::injector::exports::kiln::plugin::mount_injector::{Guest, Injection, StepInfo};
use kiln_sdk::injector::kiln::plugin::mounts::{self, Content, Mount};
use kiln_sdk::injector::kiln::plugin::types::PluginError;

use crate::request::{self, Error, Lookup};

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "secrets".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

impl Guest for Plugin {
    fn mounts_for(step: StepInfo) -> Result<Injection, PluginError> {
        kiln_sdk::install_panic_hook();
        if let Some((k, _)) = step.options.first() {
            return Err(PluginError::InvalidInput(format!("unknown option {k:?}: secrets takes no options")));
        }
        if let Some((name, _)) = step.files.first() {
            return Err(PluginError::InvalidInput(format!("unknown file {name:?}: secrets takes no files")));
        }
        let wanted = request::parse_all(&step.requested).map_err(to_plugin_error)?;
        let placed = request::place(wanted, |id| match mounts::lookup_secret(id) {
            Ok(s) => Lookup::Found(s),
            Err(PluginError::Denied(_)) => Lookup::NotGiven,
            Err(e) => Lookup::Failed(format!("{e:?}")),
        })
        .map_err(to_plugin_error)?;
        for skipped in &placed.skipped {
            kiln_sdk::debug!("step {} of stage {}: secret {skipped:?} was not given; skipped", step.index, step.stage);
        }
        let mut mounts = Vec::new();
        for (m, secret) in placed.mounts {
            if let Some(var) = &m.env {
                mounts::secret_env(var, &secret)?;
            }
            if let Some(target) = m.target {
                mounts.push(Mount { target, content: Content::Secret(secret), mode: m.mode, uid: m.uid, gid: m.gid });
            }
        }
        Ok(Injection { mounts, env: Vec::new() })
    }
}

fn to_plugin_error(e: Error) -> PluginError {
    match e {
        e @ Error::Lookup { .. } => PluginError::Io(e.to_string()),
        e => PluginError::InvalidInput(e.to_string()),
    }
}

kiln_sdk::injector::export_injector!(Plugin);
