//! WIT glue: the plugin's exports, base-image configs from the host, plan conversion.

use crate::{builder, diag, imageconfig, plan};
use kiln_sdk::frontend::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::frontend::exports::kiln::plugin::frontend::{Guest, Request};
use kiln_sdk::frontend::kiln::plugin::context::BuildContext;
use kiln_sdk::frontend::kiln::plugin::images;
use kiln_sdk::frontend::kiln::plugin::plan as wit;
use kiln_sdk::frontend::kiln::plugin::types::PluginError;

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info {
            name: "dockerfile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
        }
    }
}

/// Base-image configs from the host.
struct HostImages;

impl builder::BaseImages for HostImages {
    fn image_config(
        &mut self,
        reference: &str,
        platform: &str,
    ) -> Result<imageconfig::BaseConfig, String> {
        let plat = (!platform.is_empty()).then(|| platform.to_string());
        let json =
            images::image_config(reference, plat.as_deref()).map_err(|e| plugin_error(&e))?;
        imageconfig::parse_image_config(&json)
    }
}

fn plugin_error(e: &PluginError) -> String {
    match e {
        PluginError::InvalidInput(m) => format!("invalid input: {m}"),
        PluginError::Unsupported(m) => format!("unsupported: {m}"),
        PluginError::Denied(m) => format!("denied: {m}"),
        PluginError::Io(m) => format!("I/O error: {m}"),
        PluginError::Internal(m) => format!("internal error: {m}"),
    }
}

impl Guest for Plugin {
    fn parse(req: Request, _ctx: &BuildContext) -> Result<wit::BuildPlan, Vec<wit::Diagnostic>> {
        kiln_sdk::install_panic_hook();
        let file = req.entry_file.clone();
        let source = match String::from_utf8(req.source) {
            Ok(s) => s,
            Err(e) => {
                let prefix = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = prefix.iter().filter(|b| **b == b'\n').count() as u32 + 1;
                let column = String::from_utf8_lossy(prefix)
                    .rsplit('\n')
                    .next()
                    .map_or(0, |l| l.chars().count()) as u32
                    + 1;
                let d = diag::Diagnostic::error(
                    diag::Location::new(line, column),
                    "the file is not valid UTF-8",
                );
                return Err(vec![to_wit_diag(&file, d)]);
            }
        };
        let opts = builder::Options {
            target: req.target,
            build_args: req.build_args,
            platform: req.platform,
        };
        match builder::build_plan(&source, &opts, &mut HostImages) {
            Ok(p) => Ok(to_wit_plan(&file, p)),
            Err(errors) => Err(errors.into_iter().map(|d| to_wit_diag(&file, d)).collect()),
        }
    }
}

fn loc(file: &str, l: diag::Location) -> wit::SourceLocation {
    wit::SourceLocation {
        file: file.to_string(),
        line: l.line,
        column: l.column,
    }
}

fn to_wit_diag(file: &str, d: diag::Diagnostic) -> wit::Diagnostic {
    wit::Diagnostic {
        severity: match d.severity {
            diag::Severity::Error => wit::Severity::Error,
            diag::Severity::Warning => wit::Severity::Warning,
        },
        message: d.message,
        location: d.location.map(|l| loc(file, l)),
    }
}

fn command(c: plan::Command) -> wit::Command {
    match c {
        plan::Command::Shell(s) => wit::Command::Shell(s),
        plan::Command::Exec(v) => wit::Command::Exec(v),
    }
}

fn copy_from(f: plan::CopyFrom) -> wit::CopyFrom {
    match f {
        plan::CopyFrom::Context => wit::CopyFrom::Context,
        plan::CopyFrom::Stage(i) => wit::CopyFrom::Stage(i),
        plan::CopyFrom::Image(s) => wit::CopyFrom::Image(s),
    }
}

fn step_kind(k: plan::StepKind) -> wit::StepKind {
    use plan::StepKind as S;
    match k {
        S::Run(r) => wit::StepKind::Run(wit::RunStep {
            command: command(r.command),
            mounts: r
                .mounts
                .into_iter()
                .map(|m| {
                    let m = m.resolve_from(|f| Ok::<_, std::convert::Infallible>(copy_from(f)));
                    let Ok(m) = m;
                    m.into()
                })
                .collect(),
            network: r.network,
            build_args: r.build_args,
            env: Vec::new(),
            user: None,
            workdir: None,
        }),
        S::Copy(c) => wit::StepKind::Copy(wit::CopyStep {
            sources: c
                .sources
                .into_iter()
                .map(|s| match s {
                    plan::CopySource::Path(p) => wit::CopySource::Path(p),
                    plan::CopySource::Url(u) => wit::CopySource::Url(u),
                    plan::CopySource::Inline(n, b) => wit::CopySource::Inline((n, b)),
                })
                .collect(),
            dest: c.dest,
            from: copy_from(c.from),
            chown: c.chown,
            chmod: c.chmod,
            link: c.link,
            parents: c.parents,
            excludes: c.excludes,
            is_add: c.is_add,
            checksum: c.checksum,
        }),
        S::Env(v) => wit::StepKind::Env(v),
        S::Label(v) => wit::StepKind::Label(v),
        S::Expose(v) => wit::StepKind::Expose(v),
        S::Volume(v) => wit::StepKind::Volume(v),
        S::User(u) => wit::StepKind::User(u),
        S::Workdir(w) => wit::StepKind::Workdir(w),
        S::Shell(v) => wit::StepKind::Shell(v),
        S::StopSignal(s) => wit::StepKind::StopSignal(s),
        S::Healthcheck(h) => wit::StepKind::Healthcheck(h.map(|h| wit::Healthcheck {
            test: h.test,
            interval_ns: h.interval_ns,
            timeout_ns: h.timeout_ns,
            start_period_ns: h.start_period_ns,
            start_interval_ns: h.start_interval_ns,
            retries: h.retries,
        })),
        S::Onbuild(s) => wit::StepKind::Onbuild(s),
        S::Entrypoint(c) => wit::StepKind::Entrypoint(command(c)),
        S::Cmd(c) => wit::StepKind::Cmd(command(c)),
        S::Maintainer(m) => wit::StepKind::Maintainer(m),
        S::Arg(v) => wit::StepKind::Arg(v),
    }
}

fn to_wit_plan(file: &str, p: plan::BuildPlan) -> wit::BuildPlan {
    wit::BuildPlan {
        stages: p
            .stages
            .into_iter()
            .map(|s| wit::Stage {
                name: s.name,
                base: match s.base {
                    plan::Base::Scratch => wit::Base::Scratch,
                    plan::Base::Image(r) => wit::Base::Image(r),
                    plan::Base::Stage(i) => wit::Base::Stage(i),
                },
                platform: s.platform,
                steps: s
                    .steps
                    .into_iter()
                    .map(|st| wit::Step {
                        kind: step_kind(st.kind),
                        created_by: st.created_by,
                        location: loc(file, st.location),
                    })
                    .collect(),
                location: loc(file, s.location),
                layering: wit::Layering::PerStep,
            })
            .collect(),
        target: p.target,
        warnings: p
            .warnings
            .into_iter()
            .map(|d| to_wit_diag(file, d))
            .collect(),
        names: Vec::new(),
    }
}

kiln_sdk::frontend::export_frontend!(Plugin);
