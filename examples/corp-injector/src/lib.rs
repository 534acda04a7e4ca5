//! `corp`: a tiny kiln mount injector. Every RUN step gets `CORP_BUILD_SITE` in its environment and
//! a read-only `/etc/corp/build-info` file; neither ends up in the image.
//!
//! Option (`site`, default `hq`) names the site; any other option is refused.

use kiln_sdk::injector::exports::kiln::plugin::about::{Guest as About, PluginInfo};
use kiln_sdk::injector::exports::kiln::plugin::mount_injector::{Guest, Injection, StepInfo};
use kiln_sdk::injector::kiln::plugin::mounts::{Content, Mount};
use kiln_sdk::injector::kiln::plugin::types::PluginError;

struct Corp;

impl About for Corp {
    fn info() -> PluginInfo {
        PluginInfo { name: "corp".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

impl Guest for Corp {
    fn mounts_for(step: StepInfo) -> Result<Injection, PluginError> {
        kiln_sdk::install_panic_hook();
        let mut site = "hq".to_string();
        for (k, v) in step.options {
            match k.as_str() {
                "site" => site = v,
                _ => return Err(PluginError::InvalidInput(format!("unknown option {k:?}: corp takes only \"site\""))),
            }
        }
        kiln_sdk::debug!("stage {} step {}: site {site}", step.stage, step.index);
        let info = format!("site={site}\nstage={}\nstep={}\n", step.stage, step.index);
        Ok(Injection {
            mounts: vec![Mount {
                target: "/etc/corp/build-info".into(),
                content: Content::Bytes(info.into_bytes()),
                mode: 0o444,
                uid: 0,
                gid: 0,
            }],
            env: vec![("CORP_BUILD_SITE".into(), site)],
        })
    }
}

kiln_sdk::injector::export_injector!(Corp);
