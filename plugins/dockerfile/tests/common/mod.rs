//! Test helpers: a table of base-image configs and a compact text rendering of plans.

#![allow(dead_code)]

use kiln_plugin_dockerfile::builder::{Options, build_plan};
use kiln_plugin_dockerfile::diag::Diagnostic;
use kiln_plugin_dockerfile::imageconfig::BaseConfig;
use kiln_plugin_dockerfile::plan::*;

pub const BUSYBOX: &str = "127.0.0.1:5000/busybox:latest";
pub const DEBIAN: &str = "127.0.0.1:5000/debian:bookworm";
pub const DEBIAN_PY: &str = "127.0.0.1:5000/debian-py:bookworm";
pub const STD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Configs of the images the tests use; records every lookup.
pub struct Images {
    pub calls: Vec<(String, String)>,
    pub table: Vec<(String, BaseConfig)>,
}

impl Default for Images {
    fn default() -> Self {
        let path = || vec![("PATH".to_string(), STD_PATH.to_string())];
        Images {
            calls: Vec::new(),
            table: vec![
                (
                    BUSYBOX.into(),
                    BaseConfig {
                        env: path(),
                        ..Default::default()
                    },
                ),
                (
                    DEBIAN.into(),
                    BaseConfig {
                        env: path(),
                        ..Default::default()
                    },
                ),
                (
                    DEBIAN_PY.into(),
                    BaseConfig {
                        env: path(),
                        ..Default::default()
                    },
                ),
                (
                    "app-base".into(),
                    BaseConfig {
                        env: vec![
                            ("PATH".into(), "/usr/bin:/bin".into()),
                            ("APP".into(), "/srv/app".into()),
                        ],
                        working_dir: "/srv".into(),
                        user: "app".into(),
                        on_build: vec!["COPY . $APP/".into(), "RUN make -C $APP".into()],
                    },
                ),
                (
                    "nopath".into(),
                    BaseConfig {
                        env: vec![("X".into(), "1".into())],
                        ..Default::default()
                    },
                ),
                (
                    "bad-trigger".into(),
                    BaseConfig {
                        on_build: vec!["FROM other".into()],
                        ..Default::default()
                    },
                ),
            ],
        }
    }
}

impl Images {
    pub fn lookup(&mut self, r: &str, p: &str) -> Result<BaseConfig, String> {
        self.calls.push((r.to_string(), p.to_string()));
        self.table
            .iter()
            .find(|(n, _)| n == r)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| format!("{r}: manifest unknown"))
    }
}

pub fn opts(args: &[(&str, &str)]) -> Options {
    Options {
        target: None,
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        platform: "linux/amd64".into(),
    }
}

pub fn plan_with(
    src: &str,
    o: &Options,
    images: &mut Images,
) -> Result<BuildPlan, Vec<Diagnostic>> {
    let mut f = |r: &str, p: &str| images.lookup(r, p);
    build_plan(src, o, &mut f)
}

pub fn plan(src: &str) -> BuildPlan {
    plan_with(src, &opts(&[]), &mut Images::default())
        .unwrap_or_else(|e| panic!("{}", render_errors(&e)))
}

pub fn plan_args(src: &str, args: &[(&str, &str)]) -> BuildPlan {
    plan_with(src, &opts(args), &mut Images::default())
        .unwrap_or_else(|e| panic!("{}", render_errors(&e)))
}

pub fn errors(src: &str) -> Vec<String> {
    errors_with(src, &opts(&[]))
}

pub fn errors_with(src: &str, o: &Options) -> Vec<String> {
    match plan_with(src, o, &mut Images::default()) {
        Ok(p) => panic!("expected an error, got a plan:\n{}", show(&p)),
        Err(e) => e.iter().map(|d| d.render("Dockerfile")).collect(),
    }
}

pub fn render_errors(e: &[Diagnostic]) -> String {
    e.iter()
        .map(|d| d.render("Dockerfile"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn from(f: &CopyFrom) -> String {
    match f {
        CopyFrom::Context => "ctx".into(),
        CopyFrom::Stage(i) => format!("stage{i}"),
        CopyFrom::Image(r) => format!("image:{r}"),
    }
}

fn cmd(c: &Command) -> String {
    match c {
        Command::Shell(s) => format!("sh {s:?}"),
        Command::Exec(v) => format!("exec {v:?}"),
    }
}

/// One line per step: `line:col KIND details`; history lines follow when `history` is set.
pub fn show_steps(s: &Stage, history: bool) -> String {
    let mut out = String::new();
    for st in &s.steps {
        let k = match &st.kind {
            StepKind::Run(r) => {
                let mut t = format!("RUN {}", cmd(&r.command));
                if !r.build_args.is_empty() {
                    let a: Vec<String> = r
                        .build_args
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    t += &format!(" args[{}]", a.join(" "));
                }
                if let Some(n) = &r.network {
                    t += &format!(" net={n}");
                }
                for m in &r.mounts {
                    t += &format!(" mount{m:?}");
                }
                t
            }
            StepKind::Copy(c) => {
                let srcs: Vec<String> = c
                    .sources
                    .iter()
                    .map(|s| match s {
                        CopySource::Path(p) => p.clone(),
                        CopySource::Url(u) => format!("url:{u}"),
                        CopySource::Inline(n, b) => {
                            format!("inline:{n}={:?}", String::from_utf8_lossy(b))
                        }
                    })
                    .collect();
                let mut t = format!(
                    "{} {} {:?} -> {}",
                    if c.is_add { "ADD" } else { "COPY" },
                    from(&c.from),
                    srcs,
                    c.dest
                );
                if let Some(v) = &c.chown {
                    t += &format!(" chown={v}");
                }
                if let Some(v) = &c.chmod {
                    t += &format!(" chmod={v}");
                }
                if let Some(v) = &c.checksum {
                    t += &format!(" checksum={v}");
                }
                if c.link {
                    t += " link";
                }
                if c.parents {
                    t += " parents";
                }
                if !c.excludes.is_empty() {
                    t += &format!(" exclude={:?}", c.excludes);
                }
                t
            }
            StepKind::Env(v) => format!("ENV {v:?}"),
            StepKind::Label(v) => format!("LABEL {v:?}"),
            StepKind::Expose(v) => format!("EXPOSE {v:?}"),
            StepKind::Volume(v) => format!("VOLUME {v:?}"),
            StepKind::User(u) => format!("USER {u}"),
            StepKind::Workdir(w) => format!("WORKDIR {w}"),
            StepKind::Shell(v) => format!("SHELL {v:?}"),
            StepKind::StopSignal(s) => format!("STOPSIGNAL {s}"),
            StepKind::Healthcheck(h) => format!("HEALTHCHECK {h:?}"),
            StepKind::Onbuild(s) => format!("ONBUILD {s}"),
            StepKind::Entrypoint(c) => format!("ENTRYPOINT {}", cmd(c)),
            StepKind::Cmd(c) => format!("CMD {}", cmd(c)),
            StepKind::Maintainer(m) => format!("MAINTAINER {m}"),
            StepKind::Arg(v) => format!("ARG {v:?}"),
        };
        out += &format!("{}:{} {k}\n", st.location.line, st.location.column);
        if history {
            out += &format!("    # {}\n", st.created_by);
        }
    }
    out
}

/// The whole plan, compactly.
pub fn show(p: &BuildPlan) -> String {
    let mut out = String::new();
    for (i, s) in p.stages.iter().enumerate() {
        let base = match &s.base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(r) => format!("image:{r}"),
            Base::Stage(i) => format!("stage{i}"),
        };
        out += &format!(
            "stage {i} {} {base}{} @{}:{}\n",
            s.name.as_deref().unwrap_or("-"),
            s.platform
                .as_deref()
                .map(|p| format!(" platform={p}"))
                .unwrap_or_default(),
            s.location.line,
            s.location.column
        );
        out += &show_steps(s, true);
    }
    out += &format!("target {}\n", p.target);
    out
}
