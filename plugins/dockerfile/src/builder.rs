//! Builds the plan from parsed instructions: stages and their bases, ARG scoping (global ARGs for
//! FROM lines, per-stage declarations, `--build-arg` overrides, proxy args), ENV tracking for
//! substitution, WORKDIR resolution, `COPY --from`/`--mount from=` resolution, base-image ONBUILD
//! triggers, and the history (`created_by`) lines.

use crate::diag::{Diagnostic, Location, closest};
use crate::imageconfig::BaseConfig;
use crate::instructions::{
    self, CommandLine, Instruction, Source, Word, parse_instruction, valid_chmod,
};
use crate::parser::{self, Node};
use crate::plan::*;
use crate::words::Lexer;

/// The PATH every stage has when its base sets none (as Docker and buildah do).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Build args every RUN sees when given with `--build-arg`, without an ARG declaration. They are
/// never written to the image or its history.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `s` names a signal as Docker's `STOPSIGNAL` takes it: a non-zero number, or a Linux
/// signal name with or without `SIG`, in any case (`SIGTERM`, `term`, `RTMIN+3`).
fn is_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return n != 0;
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    const NAMES: [&str; 34] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    if NAMES.contains(&name) || name == "RTMIN" || name == "RTMAX" {
        return true;
    }
    let offset = |rest: Option<&str>| rest.and_then(|n| n.parse::<u32>().ok());
    matches!(offset(name.strip_prefix("RTMIN+")), Some(1..=15))
        || matches!(offset(name.strip_prefix("RTMAX-")), Some(1..=14))
}

/// Source of base-image configs (the host's `images.image-config` in the plugin; a table in tests).
pub trait BaseImages {
    /// The config of `reference` for `platform` (`os/arch[/variant]`), or why it is unavailable.
    fn image_config(&mut self, reference: &str, platform: &str) -> Result<BaseConfig, String>;
}

impl<F: FnMut(&str, &str) -> Result<BaseConfig, String>> BaseImages for F {
    fn image_config(&mut self, reference: &str, platform: &str) -> Result<BaseConfig, String> {
        self(reference, platform)
    }
}

/// What the build request asks for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--target` stage name; None = the last stage.
    pub target: Option<String>,
    /// `--build-arg` values (a later duplicate wins).
    pub build_args: Vec<(String, String)>,
    /// The platform being built for, `os/arch[/variant]`.
    pub platform: String,
}

/// Parse `source` and build its plan. Errors come back all together, each with its position.
pub fn build_plan(
    source: &str,
    opts: &Options,
    images: &mut dyn BaseImages,
) -> Result<BuildPlan, Vec<Diagnostic>> {
    let df = parser::parse(source)?;
    let lexer = Lexer::new(df.directives.escape);
    let mut b = Builder {
        opts,
        images,
        globals: Vec::new(),
        declared: Vec::new(),
        stage_names: Vec::new(),
        stages: Vec::new(),
        results: Vec::new(),
        configs: Vec::new(),
        errors: Vec::new(),
        warnings: df.warnings.clone(),
    };
    let mut parsed: Vec<(Node, Instruction)> = Vec::new();
    let mut first_from: Option<usize> = None;
    for node in df.nodes {
        match parse_instruction(&node, &lexer, &mut b.warnings) {
            Ok(instr) => {
                if matches!(instr, Instruction::From(_)) && first_from.is_none() {
                    first_from = Some(parsed.len());
                }
                parsed.push((node, instr));
            }
            Err(e) => {
                if node.keyword == "FROM" && first_from.is_none() {
                    first_from = Some(parsed.len());
                }
                b.errors.push(e);
            }
        }
    }
    let Some(first_from) = first_from else {
        let loc = parsed
            .first()
            .map(|(n, _)| n.location)
            .unwrap_or(Location::new(1, 1));
        b.errors.push(Diagnostic::error(
            loc,
            "no FROM instruction: a Dockerfile needs FROM (only ARG may come before it)",
        ));
        return Err(b.errors);
    };
    b.init_globals();
    for (node, instr) in &parsed[..first_from] {
        match instr {
            Instruction::Arg(decls) => b.global_arg(node, decls, &lexer),
            _ => b.errors.push(Diagnostic::error(
                node.location,
                format!(
                    "{} before the first FROM: only ARG may come before FROM",
                    node.keyword
                ),
            )),
        }
    }
    // All stage names first, to tell "defined later" from "not a stage".
    let mut index = 0u32;
    for (node, instr) in &parsed[first_from..] {
        if let Instruction::From(f) = instr {
            if let Some(name) = &f.name {
                if let Some((_, _, loc)) = b.stage_names.iter().find(|(n, _, _)| n == name) {
                    b.errors.push(Diagnostic::error(
                        node.location,
                        format!(
                            "duplicate stage name {name:?} (first defined at line {})",
                            loc.line
                        ),
                    ));
                } else {
                    b.stage_names.push((name.clone(), index, node.location));
                }
            }
            index += 1;
        }
    }
    let mut cur: Option<Cur> = None;
    for (node, instr) in &parsed[first_from..] {
        if let Instruction::From(f) = instr {
            if let Some(c) = cur.take() {
                b.finish_stage(c);
            }
            cur = Some(b.start_stage(node, f, &lexer));
            continue;
        }
        let Some(c) = cur.as_mut() else { continue };
        match b.dispatch(c, node, instr, &lexer, None) {
            Ok(step) => c.steps.push(step),
            Err(e) => b.errors.push(e),
        }
    }
    if let Some(c) = cur.take() {
        b.finish_stage(c);
    }
    let target = match &opts.target {
        None => b.stages.len().saturating_sub(1) as u32,
        Some(t) => match b
            .stage_names
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(t))
        {
            Some((_, i, _)) => *i,
            None => {
                let names: Vec<&str> = b.stage_names.iter().map(|(n, _, _)| n.as_str()).collect();
                let hint = match closest(t, &names) {
                    Some(c) => format!(" (did you mean {c:?}?)"),
                    None if names.is_empty() => {
                        " (no stage has a name: use FROM ... AS NAME)".to_string()
                    }
                    None => format!(" (named stages: {})", names.join(", ")),
                };
                b.errors.push(Diagnostic::global(format!(
                    "--target {t:?}: no stage has this name{hint}"
                )));
                0
            }
        },
    };
    for (name, _) in &opts.build_args {
        // BUILDPLATFORM comes from the executor on every build, like the proxy args.
        if !PROXY_ARGS.contains(&name.as_str())
            && name != "BUILDPLATFORM"
            && !b.declared.iter().any(|d| d == name)
        {
            b.warnings.push(Diagnostic {
                severity: crate::diag::Severity::Warning,
                message: format!("build argument {name} was given but no ARG declares it"),
                location: None,
            });
        }
    }
    if !b.errors.is_empty() {
        b.errors.sort_by_key(|d| {
            d.location
                .map_or((u32::MAX, u32::MAX), |l| (l.line, l.column))
        });
        return Err(b.errors);
    }
    Ok(BuildPlan {
        stages: b.stages,
        target,
        warnings: b.warnings,
    })
}

/// State of the stage being built.
struct Cur {
    index: u32,
    env: Vec<(String, String)>,
    workdir: String,
    args: Vec<(String, Option<String>)>,
    onbuild: Vec<String>,
    steps: Vec<Step>,
}

impl Cur {
    fn env_get(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(v) = self.env_get(name) {
            return Some(v.to_string());
        }
        self.args
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    fn set_env(&mut self, k: String, v: String) {
        match self.env.iter_mut().find(|(n, _)| *n == k) {
            Some(e) => e.1 = v,
            None => self.env.push((k, v)),
        }
    }
}

/// What later stages inherit from a finished stage.
struct StageResult {
    env: Vec<(String, String)>,
    workdir: String,
    onbuild: Vec<String>,
}

struct Builder<'a> {
    opts: &'a Options,
    images: &'a mut dyn BaseImages,
    globals: Vec<(String, Option<String>)>,
    declared: Vec<String>,
    stage_names: Vec<(String, u32, Location)>,
    stages: Vec<Stage>,
    results: Vec<StageResult>,
    configs: Vec<((String, String), Result<BaseConfig, String>)>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

fn nop(original: &str) -> String {
    format!("/bin/sh -c #(nop) {original}")
}

/// Lexically clean an absolute path: no `.`, `..`, doubled or trailing slashes.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

impl Builder<'_> {
    fn build_arg(&self, name: &str) -> Option<String> {
        self.opts
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn init_globals(&mut self) {
        let p = if self.opts.platform.is_empty() {
            "linux/amd64".to_string()
        } else {
            self.opts.platform.clone()
        };
        // The executor passes the machine's own platform as BUILDPLATFORM; without it the
        // build platform is the target's.
        let build = self
            .build_arg("BUILDPLATFORM")
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| p.clone());
        for (prefix, p) in [("TARGET", &p), ("BUILD", &build)] {
            let mut parts = p.split('/');
            let os = parts.next().unwrap_or("").to_string();
            let arch = parts.next().unwrap_or("").to_string();
            let variant = parts.next().unwrap_or("").to_string();
            self.globals
                .push((format!("{prefix}PLATFORM"), Some(p.clone())));
            self.globals.push((format!("{prefix}OS"), Some(os.clone())));
            self.globals
                .push((format!("{prefix}ARCH"), Some(arch.clone())));
            self.globals
                .push((format!("{prefix}VARIANT"), Some(variant.clone())));
        }
    }

    fn global_lookup(&self, name: &str) -> Option<String> {
        self.globals
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    fn global_arg(&mut self, node: &Node, decls: &[instructions::ArgDecl], lexer: &Lexer) {
        let mut values = Vec::new();
        for d in decls {
            let default = match &d.default {
                None => None,
                Some(w) => match lexer.word(&w.text, &|n| self.global_lookup(n)) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.errors.push(Diagnostic::error(
                            node.location_at(w.offset),
                            format!("ARG {}: {e}", d.name),
                        ));
                        continue;
                    }
                },
            };
            values.push((d.name.clone(), self.build_arg(&d.name).or(default)));
        }
        for (name, value) in values {
            self.declared.push(name.clone());
            self.globals.retain(|(k, _)| *k != name);
            self.globals.push((name, value));
        }
    }

    fn config(&mut self, reference: &str, platform: &str) -> Result<BaseConfig, String> {
        let key = (reference.to_string(), platform.to_string());
        if let Some((_, r)) = self.configs.iter().find(|(k, _)| *k == key) {
            return r.clone();
        }
        let r = self.images.image_config(reference, platform);
        self.configs.push((key, r.clone()));
        r
    }

    fn start_stage(&mut self, node: &Node, f: &instructions::From, lexer: &Lexer) -> Cur {
        let index = self.stages.len() as u32;
        let scope = |n: &str| self.global_lookup(n);
        let image_res = lexer.word(&f.image.text, &scope);
        let platform_res = f
            .platform
            .as_ref()
            .map(|w| (w.offset, lexer.word(&w.text, &scope)));
        let image = match image_res {
            Ok(s) if s.trim().is_empty() => {
                self.errors.push(Diagnostic::error(
                    node.location_at(f.image.offset),
                    format!(
                        "FROM: the base image name is empty after substituting {:?}",
                        f.image.text
                    ),
                ));
                String::new()
            }
            Ok(s) => s.trim().to_string(),
            Err(e) => {
                self.errors.push(Diagnostic::error(
                    node.location_at(f.image.offset),
                    format!("FROM: {e}"),
                ));
                String::new()
            }
        };
        let platform = match platform_res {
            None => None,
            Some((_, Ok(s))) if s.is_empty() => None,
            Some((_, Ok(s))) => Some(s),
            Some((off, Err(e))) => {
                self.errors.push(Diagnostic::error(
                    node.location_at(off),
                    format!("FROM --platform: {e}"),
                ));
                None
            }
        };
        let lower = image.to_ascii_lowercase();
        let base = if lower == "scratch" {
            Base::Scratch
        } else if let Some((_, i, _)) = self
            .stage_names
            .iter()
            .find(|(n, i, _)| *n == lower && *i < index)
        {
            Base::Stage(*i)
        } else {
            Base::Image(image.clone())
        };
        let mut cur = Cur {
            index,
            env: Vec::new(),
            workdir: "/".into(),
            args: Vec::new(),
            onbuild: Vec::new(),
            steps: Vec::new(),
        };
        let mut triggers: Vec<String> = Vec::new();
        match &base {
            Base::Scratch => {}
            Base::Stage(i) => {
                if let Some(r) = self.results.get(*i as usize) {
                    cur.env = r.env.clone();
                    cur.workdir = r.workdir.clone();
                    triggers = r.onbuild.clone();
                }
            }
            Base::Image(reference) if !reference.is_empty() => {
                let plat = platform
                    .clone()
                    .unwrap_or_else(|| self.opts.platform.clone());
                match self.config(reference, &plat) {
                    Ok(c) => {
                        cur.env = c.env;
                        if !c.working_dir.is_empty() {
                            cur.workdir = clean_path(&c.working_dir);
                        }
                        triggers = c.on_build;
                    }
                    Err(e) => self.warnings.push(Diagnostic::warning(
                        node.location,
                        format!("could not read the config of base image {reference}: {e}; its ENV, WORKDIR and ONBUILD triggers are not applied"),
                    )),
                }
            }
            Base::Image(_) => {}
        }
        if cur.env_get("PATH").is_none() {
            cur.env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
        }
        self.stages.push(Stage {
            name: f.name.clone(),
            base: base.clone(),
            platform,
            steps: Vec::new(),
            location: node.location,
        });
        let default_lexer = Lexer::new('\\');
        let what = match &base {
            Base::Stage(i) => format!("stage {}", self.stage_label(*i)),
            _ => format!("base image {image}"),
        };
        for t in triggers {
            let tnode = parser::parse_line(&t, node.location);
            let res = match tnode.keyword.as_str() {
                "ONBUILD" | "FROM" | "MAINTAINER" => Err(Diagnostic::error(
                    node.location,
                    format!("{} is not allowed as an ONBUILD trigger", tnode.keyword),
                )),
                _ => parse_instruction(&tnode, &default_lexer, &mut self.warnings).and_then(
                    |instr| {
                        self.dispatch(
                            &mut cur,
                            &tnode,
                            &instr,
                            &default_lexer,
                            Some(node.location),
                        )
                    },
                ),
            };
            match res {
                Ok(step) => cur.steps.push(step),
                Err(e) => self.errors.push(Diagnostic::error(
                    node.location,
                    format!("ONBUILD trigger {t:?} of {what}: {}", e.message),
                )),
            }
        }
        cur
    }

    fn stage_label(&self, i: u32) -> String {
        match self.stages.get(i as usize).and_then(|s| s.name.clone()) {
            Some(n) => format!("{i} ({n})"),
            None => i.to_string(),
        }
    }

    fn finish_stage(&mut self, cur: Cur) {
        let i = cur.index as usize;
        self.stages[i].steps = cur.steps;
        self.results.push(StageResult {
            env: cur.env,
            workdir: cur.workdir,
            onbuild: cur.onbuild,
        });
    }

    /// Resolve a `--from` value: an earlier stage by name or index, else an image.
    fn resolve_from(
        &self,
        cur: &Cur,
        value: &str,
        loc: Location,
        flag: &str,
    ) -> Result<CopyFrom, Diagnostic> {
        if value.is_empty() {
            return Err(Diagnostic::error(loc, format!("{flag} is empty")));
        }
        let lower = value.to_ascii_lowercase();
        if let Some((_, i, at)) = self.stage_names.iter().find(|(n, _, _)| *n == lower) {
            if *i < cur.index {
                return Ok(CopyFrom::Stage(*i));
            }
            if *i == cur.index {
                return Err(Diagnostic::error(
                    loc,
                    format!("{flag}={value} refers to the stage it is used in"),
                ));
            }
            return Err(Diagnostic::error(
                loc,
                format!(
                    "{flag}={value} refers to a stage defined later (line {}); only earlier stages can be used",
                    at.line
                ),
            ));
        }
        if value.chars().all(|c| c.is_ascii_digit()) {
            let n: u32 = value.parse().map_err(|_| {
                Diagnostic::error(loc, format!("{flag}={value}: invalid stage index"))
            })?;
            if n < cur.index {
                return Ok(CopyFrom::Stage(n));
            }
            return Err(Diagnostic::error(
                loc,
                format!(
                    "{flag}={value}: a stage index must refer to an earlier stage (this is stage {})",
                    cur.index
                ),
            ));
        }
        Ok(CopyFrom::Image(value.to_string()))
    }

    /// Build args a RUN sees: declared in the stage with a value and not overridden by ENV. Proxy
    /// args nothing declares are the executor's to give (they are no part of the step's cache
    /// key, as with Docker).
    fn run_build_args(&self, cur: &Cur) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &cur.args {
            if let Some(v) = v
                && cur.env_get(k).is_none()
            {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    /// `|N k=v ... ` prefix of RUN history lines (buildah's format: declared args, proxy args
    /// included when an ARG declares them).
    fn run_history_prefix(&self, cur: &Cur) -> String {
        let mut kv: Vec<String> = cur
            .args
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    cur.env_get(k)
                        .map(str::to_string)
                        .or_else(|| v.clone())
                        .unwrap_or_default()
                )
            })
            .collect();
        if kv.is_empty() {
            return String::new();
        }
        kv.sort();
        format!("|{} {} ", kv.len(), kv.join(" "))
    }

    fn expand(
        &self,
        cur: &Cur,
        lexer: &Lexer,
        node: &Node,
        w: &Word,
        loc: Option<Location>,
    ) -> Result<String, Diagnostic> {
        lexer.word(&w.text, &|n| cur.lookup(n)).map_err(|e| {
            Diagnostic::error(
                loc.unwrap_or_else(|| node.location_at(w.offset)),
                format!("{}: {e}", node.keyword),
            )
        })
    }

    /// Turn one instruction into a step, updating the stage state.
    fn dispatch(
        &mut self,
        cur: &mut Cur,
        node: &Node,
        instr: &Instruction,
        lexer: &Lexer,
        at: Option<Location>,
    ) -> Result<Step, Diagnostic> {
        let location = at.unwrap_or(node.location);
        let err_at = |w: &Word| at.unwrap_or_else(|| node.location_at(w.offset));
        let mut created_by = nop(&node.original);
        let kind = match instr {
            Instruction::From(_) => {
                return Err(Diagnostic::error(location, "FROM cannot be used here"));
            }
            Instruction::Arg(decls) => {
                let mut names = Vec::new();
                let mut values = Vec::new();
                for d in decls {
                    let default = match &d.default {
                        Some(w) => Some(self.expand(cur, lexer, node, w, at)?),
                        None => None,
                    };
                    let value = self
                        .build_arg(&d.name)
                        .or(default)
                        .or_else(|| self.global_lookup(&d.name));
                    values.push((d.name.clone(), value));
                    names.push(d.name.clone());
                }
                for (name, value) in values {
                    self.declared.push(name.clone());
                    match cur.args.iter_mut().find(|(k, _)| *k == name) {
                        Some(e) => e.1 = value,
                        None => cur.args.push((name, value)),
                    }
                }
                let mut hist: Vec<String> = cur
                    .args
                    .iter()
                    .filter(|(_, v)| v.is_some())
                    .map(|(k, _)| k.clone())
                    .collect();
                for p in PROXY_ARGS {
                    if self.build_arg(p).is_some() && !hist.iter().any(|h| h == p) {
                        hist.push(p.to_string());
                    }
                }
                hist.sort();
                created_by = nop(&format!("ARG {}", hist.join(" ")));
                StepKind::Arg(names)
            }
            Instruction::Env(pairs) | Instruction::Label(pairs) => {
                let mut out = Vec::new();
                for p in pairs {
                    let k = self.expand(cur, lexer, node, &p.key, at)?;
                    if k.is_empty() {
                        return Err(Diagnostic::error(
                            err_at(&p.key),
                            format!("{}: the name is empty after substitution", node.keyword),
                        ));
                    }
                    let v = self.expand(cur, lexer, node, &p.value, at)?;
                    out.push((k, v));
                }
                if matches!(instr, Instruction::Env(_)) {
                    for (k, v) in &out {
                        cur.set_env(k.clone(), v.clone());
                    }
                    StepKind::Env(out)
                } else {
                    StepKind::Label(out)
                }
            }
            Instruction::Run(r) => {
                let mut mounts = Vec::new();
                let mut ssh_count = 0;
                for m in &r.mounts {
                    let mount = self.parse_mount(cur, lexer, node, m, at, &mut ssh_count)?;
                    mounts.push(mount);
                }
                let network = match &r.network {
                    None => None,
                    Some(w) => match w.text.as_str() {
                        "default" => None,
                        "none" | "host" => Some(w.text.clone()),
                        v => {
                            return Err(Diagnostic::error(
                                err_at(w),
                                format!("--network expects default, none or host, not {v:?}"),
                            ));
                        }
                    },
                };
                let command = match &r.command {
                    CommandLine::Shell(s) => Command::Shell(s.clone()),
                    CommandLine::Exec(v) => Command::Exec(v.clone()),
                };
                let mut after_kw = node.original.get(3..).unwrap_or("").chars();
                after_kw.next();
                let mut line = format!(
                    "{}/bin/sh -c {}",
                    self.run_history_prefix(cur),
                    after_kw.as_str()
                );
                if !node.heredoc_source.is_empty() {
                    line.push('\n');
                    line.push_str(node.heredoc_source.trim_end_matches('\n'));
                }
                created_by = line;
                StepKind::Run(RunStep {
                    command,
                    mounts,
                    network,
                    build_args: self.run_build_args(cur),
                })
            }
            Instruction::Copy(c) => {
                let from = match &c.from {
                    None => CopyFrom::Context,
                    Some(w) => {
                        let v = self.expand(cur, lexer, node, w, at)?;
                        self.resolve_from(cur, &v, err_at(w), "--from")?
                    }
                };
                let chown = match &c.chown {
                    None => None,
                    Some(w) => {
                        let v = self.expand(cur, lexer, node, w, at)?;
                        if v.is_empty() {
                            return Err(Diagnostic::error(err_at(w), "--chown is empty"));
                        }
                        Some(v)
                    }
                };
                let chmod = match &c.chmod {
                    None => None,
                    Some(w) => {
                        let v = self.expand(cur, lexer, node, w, at)?;
                        if !valid_chmod(&v) {
                            return Err(Diagnostic::error(
                                err_at(w),
                                format!(
                                    "--chmod={v}: expected an octal mode like 0644 or a symbolic one like u+x"
                                ),
                            ));
                        }
                        Some(v)
                    }
                };
                let checksum = match &c.checksum {
                    None => None,
                    Some(w) => Some(self.expand(cur, lexer, node, w, at)?),
                };
                let mut excludes = Vec::new();
                for w in &c.excludes {
                    excludes.push(self.expand(cur, lexer, node, w, at)?);
                }
                let mut sources = Vec::new();
                let mut raw_sources = Vec::new();
                for s in &c.sources {
                    match s {
                        Source::Path(w) => {
                            raw_sources.push(w.text.clone());
                            let v = self.expand(cur, lexer, node, w, at)?;
                            if v.is_empty() {
                                return Err(Diagnostic::error(
                                    err_at(w),
                                    format!(
                                        "{}: a source is empty after substitution",
                                        node.keyword
                                    ),
                                ));
                            }
                            let is_url = ["http://", "https://", "git://", "git@"]
                                .iter()
                                .any(|p| v.starts_with(p));
                            if is_url && !c.is_add {
                                return Err(Diagnostic::error(
                                    err_at(w),
                                    format!("COPY cannot fetch URLs ({v}); use ADD"),
                                ));
                            }
                            sources.push(if is_url {
                                CopySource::Url(v)
                            } else {
                                CopySource::Path(v)
                            });
                        }
                        Source::Heredoc(i) => {
                            let h = &node.heredocs[*i];
                            raw_sources.push(format!("<<{}", h.name));
                            let body = h.body();
                            let content = if h.expand {
                                lexer.heredoc_body(&body, &|n| cur.lookup(n)).map_err(|e| {
                                    Diagnostic::error(
                                        location,
                                        format!("{}: heredoc <<{}: {e}", node.keyword, h.name),
                                    )
                                })?
                            } else {
                                body
                            };
                            sources.push(CopySource::Inline(h.name.clone(), content.into_bytes()));
                        }
                    }
                }
                let dest = self.expand(cur, lexer, node, &c.dest, at)?;
                if dest.is_empty() {
                    return Err(Diagnostic::error(
                        err_at(&c.dest),
                        format!("{}: the destination is empty", node.keyword),
                    ));
                }
                let dir_dest = dest.ends_with('/')
                    || dest == "."
                    || dest.ends_with("/.")
                    || dest == ".."
                    || dest.ends_with("/..");
                if sources.len() > 1 && !dir_dest {
                    return Err(Diagnostic::error(
                        err_at(&c.dest),
                        format!(
                            "{} with several sources needs a directory destination ending in '/', not {dest:?}",
                            node.keyword
                        ),
                    ));
                }
                if checksum.is_some() && sources.iter().any(|s| !matches!(s, CopySource::Url(_))) {
                    return Err(Diagnostic::error(
                        location,
                        "ADD --checksum applies only to URL sources",
                    ));
                }
                if c.keep_git_dir {
                    self.warnings.push(Diagnostic::warning(
                        location,
                        "ADD --keep-git-dir is accepted but the plan cannot carry it yet",
                    ));
                }
                created_by = nop(&format!(
                    "{} {} in {} ",
                    node.keyword,
                    raw_sources.join(" "),
                    c.dest.text
                ));
                StepKind::Copy(CopyStep {
                    sources,
                    dest,
                    from,
                    chown,
                    chmod,
                    link: c.link,
                    parents: c.parents,
                    excludes,
                    is_add: c.is_add,
                    checksum,
                })
            }
            Instruction::Expose(words) => {
                let mut ports: Vec<String> = Vec::new();
                for w in words {
                    let specs = lexer
                        .words(&w.text, &|n| cur.lookup(n))
                        .map_err(|e| Diagnostic::error(err_at(w), format!("EXPOSE: {e}")))?;
                    for spec in specs {
                        for p in expose_ports(&spec).map_err(|e| {
                            Diagnostic::error(err_at(w), format!("EXPOSE {spec}: {e}"))
                        })? {
                            if !ports.contains(&p) {
                                ports.push(p);
                            }
                        }
                    }
                }
                StepKind::Expose(ports)
            }
            Instruction::Volume(words) => {
                let mut vols = Vec::new();
                for w in words {
                    let v = self.expand(cur, lexer, node, w, at)?;
                    if v.trim().is_empty() {
                        return Err(Diagnostic::error(
                            err_at(w),
                            "VOLUME paths can not be empty",
                        ));
                    }
                    vols.push(v);
                }
                StepKind::Volume(vols)
            }
            Instruction::User(w) => {
                let v = self.expand(cur, lexer, node, w, at)?;
                if v.is_empty() {
                    return Err(Diagnostic::error(
                        err_at(w),
                        "USER is empty after substitution",
                    ));
                }
                StepKind::User(v)
            }
            Instruction::Workdir(w) => {
                let v = self.expand(cur, lexer, node, w, at)?;
                if v.is_empty() {
                    return Err(Diagnostic::error(
                        err_at(w),
                        "WORKDIR is empty after substitution",
                    ));
                }
                let abs = if v.starts_with('/') {
                    clean_path(&v)
                } else {
                    clean_path(&format!("{}/{v}", cur.workdir))
                };
                cur.workdir = abs.clone();
                StepKind::Workdir(abs)
            }
            Instruction::StopSignal(w) => {
                let v = self.expand(cur, lexer, node, w, at)?;
                if !is_signal(&v) {
                    return Err(Diagnostic::error(
                        err_at(w),
                        format!("STOPSIGNAL {v:?} is not a signal name or number"),
                    ));
                }
                StepKind::StopSignal(v)
            }
            Instruction::Shell(v) => StepKind::Shell(v.clone()),
            Instruction::Healthcheck(h) => StepKind::Healthcheck(h.as_ref().map(|h| Healthcheck {
                test: h.test.clone(),
                interval_ns: h.interval,
                timeout_ns: h.timeout,
                start_period_ns: h.start_period,
                start_interval_ns: h.start_interval,
                retries: h.retries,
            })),
            Instruction::Onbuild(t) => {
                cur.onbuild.push(t.clone());
                StepKind::Onbuild(t.clone())
            }
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => {
                let c = match c {
                    CommandLine::Shell(s) => Command::Shell(s.clone()),
                    CommandLine::Exec(v) => Command::Exec(v.clone()),
                };
                if matches!(instr, Instruction::Cmd(_)) {
                    StepKind::Cmd(c)
                } else {
                    StepKind::Entrypoint(c)
                }
            }
            Instruction::Maintainer(m) => StepKind::Maintainer(m.clone()),
        };
        Ok(Step {
            kind,
            created_by,
            location,
        })
    }

    fn parse_mount(
        &self,
        cur: &Cur,
        lexer: &Lexer,
        node: &Node,
        w: &Word,
        at: Option<Location>,
        ssh_count: &mut u32,
    ) -> Result<RunMount, Diagnostic> {
        let loc = at.unwrap_or_else(|| node.location_at(w.offset));
        let bad = |msg: String| Diagnostic::error(loc, format!("--mount={}: {msg}", w.text));
        let mut expand = |raw: &str| {
            lexer
                .word(raw, &|n| cur.lookup(n))
                .map_err(|e| e.to_string())
        };
        let m = kiln_sdk::mounts::parse(&w.text, &mut expand).map_err(|e| match e {
            kiln_sdk::mounts::MountError::UnknownKey(k) => {
                bad(unknown_key(&k, &kiln_sdk::mounts::KEYS))
            }
            other => bad(other.to_string()),
        })?;
        let mut m = m.resolve_from(|f| self.resolve_from(cur, &f, loc, "from"))?;
        if m.kind == MountType::Ssh {
            // BuildKit's agent sockets, numbered per RUN.
            if m.target.is_none() {
                m.target = Some(format!("/run/buildkit/ssh_agent.{ssh_count}"));
            }
            *ssh_count += 1;
        }
        Ok(m)
    }
}

fn unknown_key(k: &str, keys: &[&str]) -> String {
    match closest(k, keys) {
        Some(c) => format!("unknown option {k:?} (did you mean {c}?)"),
        None => format!("unknown option {k:?}"),
    }
}

/// Normalize one EXPOSE spec (`80`, `80/udp`, `8000-8002/tcp`) to `port/proto` entries.
fn expose_ports(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("unknown protocol {proto:?} (tcp, udp, sctp)"));
    }
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("{s:?} is not a port number"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(ports)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("invalid range {lo}-{hi}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}
