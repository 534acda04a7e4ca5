//! WIT glue: the plugin's exports.

use crate::script;
use kiln_sdk::frontend::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::frontend::exports::kiln::plugin::frontend::{Guest, Request};
use kiln_sdk::frontend::kiln::plugin::context::BuildContext;
use kiln_sdk::frontend::kiln::plugin::plan::{BuildPlan, Diagnostic, Severity, SourceLocation};

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info {
            name: "buildah-script".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
        }
    }
}

impl Guest for Plugin {
    fn parse(req: Request, _ctx: &BuildContext) -> Result<BuildPlan, Vec<Diagnostic>> {
        kiln_sdk::install_panic_hook();
        let source = match String::from_utf8(req.source) {
            Ok(s) => s,
            Err(e) => {
                let prefix = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = prefix.iter().filter(|b| **b == b'\n').count() as u32 + 1;
                return Err(vec![Diagnostic {
                    severity: Severity::Error,
                    message: "the script is not valid UTF-8".into(),
                    location: Some(SourceLocation {
                        file: req.entry_file,
                        line,
                        column: 1,
                    }),
                }]);
            }
        };
        let opts = script::Options {
            file: req.entry_file,
            build_args: req.build_args,
        };
        script::plan(&source, &opts)
    }
}

kiln_sdk::frontend::export_frontend!(Plugin);
