//! A test frontend. The build-arg `mode` picks what it does: `ok` returns a one-stage plan,
//! `escape` tries to open each of the newline-separated `paths` through the build context and
//! reports what it got, `huge-plan` tries to return a plan holding a 1 GiB string.

use kiln_sdk::frontend::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::frontend::exports::kiln::plugin::frontend::{Guest, Request};
use kiln_sdk::frontend::kiln::plugin::context::BuildContext;
use kiln_sdk::frontend::kiln::plugin::plan::{Base, BuildPlan, Diagnostic, Layering, SourceLocation, Stage, Step, StepKind};

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "test-frontend".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

fn arg<'a>(req: &'a Request, key: &str) -> &'a str {
    req.build_args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
}

fn plan(req: &Request, created_by: String, env: Vec<(String, String)>) -> BuildPlan {
    let at = |line| SourceLocation { file: req.entry_file.clone(), line, column: 1 };
    BuildPlan {
        stages: vec![Stage {
            name: Some("only".into()),
            base: Base::Scratch,
            platform: None,
            steps: vec![Step { kind: StepKind::Env(env), created_by, location: at(2) }],
            location: at(1),
            layering: Layering::PerStep,
        }],
        target: 0,
        warnings: vec![],
        names: vec![],
    }
}

impl Guest for Plugin {
    fn parse(req: Request, ctx: &BuildContext) -> Result<BuildPlan, Vec<Diagnostic>> {
        kiln_sdk::install_panic_hook();
        match arg(&req, "mode") {
            "ok" => {
                let env = vec![("SOURCE_LEN".into(), req.source.len().to_string()), ("PLATFORM".into(), req.platform.clone())];
                Ok(plan(&req, "ENV test".into(), env))
            }
            "escape" => {
                let mut env = Vec::new();
                for path in arg(&req, "paths").lines() {
                    let opened = match ctx.open(path) {
                        Ok(r) => match r.read_at(0, 64) {
                            Ok(b) => format!("ok:{}", String::from_utf8_lossy(&b)),
                            Err(e) => format!("err:{e:?}"),
                        },
                        Err(e) => format!("err:{e:?}"),
                    };
                    env.push((format!("open:{path}"), opened));
                    env.push((format!("exists:{path}"), ctx.exists(path).to_string()));
                }
                Ok(plan(&req, "ENV escape".into(), env))
            }
            "huge-plan" => Ok(plan(&req, "x".repeat(1 << 30), vec![])),
            other => Err(vec![Diagnostic {
                severity: kiln_sdk::frontend::kiln::plugin::plan::Severity::Error,
                message: format!("unknown mode {other:?}"),
                location: None,
            }]),
        }
    }
}

kiln_sdk::frontend::export_frontend!(Plugin);
