//! The `dockerfile` frontend plugin: turns a build source into kiln's build plan.

use kiln_sdk::frontend::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::frontend::exports::kiln::plugin::frontend::{Guest, Request};
use kiln_sdk::frontend::kiln::plugin::context::BuildContext;
use kiln_sdk::frontend::kiln::plugin::plan::{BuildPlan, Diagnostic, Severity};

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "dockerfile".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

impl Guest for Plugin {
    fn parse(_req: Request, _ctx: &BuildContext) -> Result<BuildPlan, Vec<Diagnostic>> {
        kiln_sdk::install_panic_hook();
        Err(vec![Diagnostic { severity: Severity::Error, message: "not implemented".into(), location: None }])
    }
}

kiln_sdk::frontend::export_frontend!(Plugin);
