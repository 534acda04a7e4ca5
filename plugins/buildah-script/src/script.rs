//! From a script of buildah verbs to kiln's build plan: every `from` starts a stage (a working
//! container), `run`/`copy`/`add`/`config` add steps to its stage, and `commit` makes that stage
//! the target, folded into one layer as `buildah commit` does (or squashed). The words come from
//! [`crate::shell`]; the plan types are the WIT ones the host reads.

use crate::shell::{self, Env, Field, Pos};
use kiln_sdk::frontend::kiln::plugin::plan::{
    Base, BuildPlan, Command, CopyFrom, CopySource, CopyStep, Diagnostic, Layering, RunMount,
    RunStep, Severity, SourceLocation, Stage, Step, StepKind,
};
use kiln_sdk::mounts;
use std::collections::HashMap;

/// What the host tells the frontend about the build.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The script's name as the user gave it (for diagnostics).
    pub file: String,
    /// `--build-arg`s: the script's variables before its first line.
    pub build_args: Vec<(String, String)>,
}

/// A script error, as a diagnostic with the script's file, line and column.
fn diag(file: &str, e: &shell::Error, severity: Severity) -> Diagnostic {
    Diagnostic {
        severity,
        message: e.message.clone(),
        location: Some(SourceLocation {
            file: file.into(),
            line: e.pos.line,
            column: e.pos.column,
        }),
    }
}

/// A working container of the script.
struct Container {
    name: String,
    stage: u32,
    /// Where it was committed.
    committed: Option<Pos>,
}

/// The plan being built.
struct Script {
    file: String,
    stages: Vec<Stage>,
    containers: Vec<Container>,
    target: Option<u32>,
    /// Image names given by each commit, by stage, with where.
    names: Vec<(u32, String, Pos)>,
    warnings: Vec<Diagnostic>,
}

/// Flags of one verb: long name, short letter, whether it takes a value.
type Spec = &'static [(&'static str, Option<char>, bool)];

const FROM_FLAGS: Spec = &[
    ("name", None, true),
    ("pull", None, false),
    ("pull-always", None, false),
    ("pull-never", None, false),
    ("platform", None, true),
    ("arch", None, true),
    ("os", None, true),
    ("variant", None, true),
    ("quiet", Some('q'), false),
    ("format", Some('f'), true),
    ("isolation", None, true),
    ("volume", Some('v'), true),
    ("tls-verify", None, false),
    ("authfile", None, true),
    ("cert-dir", None, true),
    ("creds", None, true),
    ("cidfile", None, true),
    ("cap-add", None, true),
    ("cap-drop", None, true),
    ("security-opt", None, true),
    ("network", None, true),
    ("net", None, true),
    ("userns", None, true),
    ("retry", None, true),
    ("retry-delay", None, true),
];

const RUN_FLAGS: Spec = &[
    ("env", Some('e'), true),
    ("user", None, true),
    ("workingdir", None, true),
    ("network", None, true),
    ("net", None, true),
    ("volume", Some('v'), true),
    ("mount", None, true),
    ("isolation", None, true),
    ("runtime", None, true),
    ("tty", Some('t'), false),
    ("terminal", None, false),
    ("hostname", None, true),
    ("cap-add", None, true),
    ("cap-drop", None, true),
    ("security-opt", None, true),
    ("add-history", None, false),
    ("no-pivot", None, false),
];

const COPY_FLAGS: Spec = &[
    ("chown", None, true),
    ("chmod", None, true),
    ("from", None, true),
    ("contextdir", None, true),
    ("ignorefile", None, true),
    ("quiet", Some('q'), false),
    ("add-history", None, false),
    ("checksum", None, true),
    ("tls-verify", None, false),
    ("cert-dir", None, true),
    ("creds", None, true),
    ("retry", None, true),
    ("retry-delay", None, true),
];

/// `config` options: the host applies them by these long names.
const CONFIG_FLAGS: Spec = &[
    ("annotation", Some('a'), true),
    ("arch", None, true),
    ("author", None, true),
    ("cmd", None, true),
    ("comment", None, true),
    ("created-by", None, true),
    ("domainname", None, true),
    ("entrypoint", None, true),
    ("env", Some('e'), true),
    ("healthcheck", None, true),
    ("healthcheck-interval", None, true),
    ("healthcheck-retries", None, true),
    ("healthcheck-start-period", None, true),
    ("healthcheck-timeout", None, true),
    ("history-comment", None, true),
    ("hostname", None, true),
    ("label", Some('l'), true),
    ("onbuild", None, true),
    ("os", None, true),
    ("port", Some('p'), true),
    ("shell", None, true),
    ("stop-signal", None, true),
    ("user", Some('u'), true),
    ("variant", None, true),
    ("volume", Some('v'), true),
    ("workingdir", None, true),
    ("add-history", None, false),
];

const COMMIT_FLAGS: Spec = &[
    ("format", Some('f'), true),
    ("squash", None, false),
    ("rm", None, false),
    ("quiet", Some('q'), false),
    ("disable-compression", Some('D'), false),
    ("iidfile", None, true),
    ("timestamp", None, true),
    ("tls-verify", None, false),
    ("sign-by", None, true),
    ("manifest", None, true),
    ("omit-history", None, false),
    ("identity-label", None, false),
    ("authfile", None, true),
    ("cert-dir", None, true),
    ("creds", None, true),
    ("encryption-key", None, true),
    ("reference-time", None, true),
    ("retry", None, true),
    ("retry-delay", None, true),
];

const RM_FLAGS: Spec = &[("all", Some('a'), false)];

/// Buildah's global flags that take a value (`buildah --root DIR from …`).
const GLOBAL_VALUE_FLAGS: &[&str] = &[
    "--root",
    "--runroot",
    "--storage-driver",
    "--storage-opt",
    "--log-level",
    "--registries-conf",
    "--registries-conf-dir",
    "--short-name-alias-conf",
    "--userns-uid-map",
    "--userns-gid-map",
    "--cgroup-manager",
    "--default-mounts-file",
];

/// A verb's arguments: flags in order as (long name, value), and the other words.
struct Parsed {
    flags: Vec<(String, String, Pos)>,
    args: Vec<Field>,
}

impl Parsed {
    fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, v, _)| n == name && v != "false")
    }

    fn all(&self, name: &str) -> Vec<(&str, Pos)> {
        self.flags
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, v, p)| (v.as_str(), *p))
            .collect()
    }
}

/// A build script's `--cap-add`, `--cap-drop` and `--security-opt` (on `from` or `run`) would
/// change the confinement of single steps, which a build plan does not carry: refused, naming
/// the build's own flags that do it for every step. `--security-opt label=disable` and
/// `apparmor=unconfined` ask for nothing kiln applies and are accepted.
fn refuse_confinement_flags(verb: &str, p: &Parsed) -> Result<(), shell::Error> {
    for flag in ["cap-add", "cap-drop", "security-opt"] {
        for (value, at) in p.all(flag) {
            if flag == "security-opt" && matches!(value, "label=disable" | "apparmor=unconfined") {
                continue;
            }
            return Err(shell::Error::at(
                at,
                format!(
                    "buildah {verb} --{flag} {value}: a build script cannot change one step's \
                     confinement; give `kiln build --{flag} {value}` for every step"
                ),
            ));
        }
    }
    Ok(())
}

/// Parse `words` against `spec`. With `stop_at_arg`, the first non-flag word ends the flags
/// (`run CTR -- CMD…`); a `--` always does.
fn parse_flags(
    verb: &str,
    words: &[Field],
    spec: Spec,
    stop_at_arg: bool,
) -> Result<Parsed, shell::Error> {
    let mut flags = Vec::new();
    let mut args = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        if w.text == "--" {
            args.extend(words[i..].iter().cloned());
            break;
        }
        let (name, attached): (String, Option<String>) =
            if let Some(long) = w.text.strip_prefix("--") {
                match long.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (long.to_string(), None),
                }
            } else if w.text.len() > 1 && w.text.starts_with('-') {
                let mut cs = w.text[1..].chars();
                let c = cs.next().unwrap_or('-');
                let rest: String = cs.collect();
                let Some((long, _, _)) = spec.iter().find(|(_, s, _)| *s == Some(c)) else {
                    return Err(shell::Error::at(
                        w.pos,
                        format!("buildah {verb} has no flag -{c}"),
                    ));
                };
                (
                    long.to_string(),
                    (!rest.is_empty()).then(|| rest.trim_start_matches('=').to_string()),
                )
            } else {
                args.push(w.clone());
                if stop_at_arg {
                    args.extend(words[i..].iter().cloned());
                    break;
                }
                continue;
            };
        let Some((long, _, takes_value)) = spec.iter().find(|(l, _, _)| *l == name) else {
            return Err(shell::Error::at(
                w.pos,
                format!("buildah {verb} has no flag --{name}"),
            ));
        };
        let value = match (attached, takes_value) {
            (Some(v), _) => v,
            (None, false) => "true".to_string(),
            (None, true) => {
                // As buildah's flag parser: the next word is the value, whatever it looks like.
                let Some(v) = words.get(i) else {
                    return Err(shell::Error::at(
                        w.pos,
                        format!("buildah {verb} --{name} needs a value"),
                    ));
                };
                i += 1;
                v.text.clone()
            }
        };
        flags.push((long.to_string(), value, w.pos));
    }
    Ok(Parsed { flags, args })
}

/// buildah's default container name for an image: its last path component without tag or
/// digest, then `-working-container`.
fn default_name(image: &str) -> String {
    if image == "scratch" {
        return "working-container".into();
    }
    let image = image.split_once("://").map_or(image, |(_, r)| r);
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let base = last.split(':').next().unwrap_or(last);
    format!("{base}-working-container")
}

/// Transports a commit destination may carry (the build's `-t` writes those instead).
fn has_transport(dest: &str) -> bool {
    [
        "docker://",
        "oci-archive:",
        "oci:",
        "docker-archive:",
        "dir:",
        "containers-storage:",
        "sif:",
    ]
    .iter()
    .any(|t| dest.starts_with(t))
}

impl Script {
    fn loc(&self, pos: Pos) -> SourceLocation {
        SourceLocation {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
        }
    }

    fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            severity: Severity::Warning,
            message: message.into(),
            location: Some(self.loc(pos)),
        });
    }

    /// The container a word names.
    /// The container a word names, ready for a change: a container committed before continues
    /// in a new stage (its next commit is a new image).
    fn container(&mut self, f: &Field) -> Result<usize, shell::Error> {
        let i = self
            .containers
            .iter()
            .position(|c| c.name == f.text)
            .ok_or_else(|| {
                if f.text.is_empty() {
                    shell::Error::at(
                        f.pos,
                        "the container name is empty (is the variable set by `$(buildah from …)`?)",
                    )
                } else {
                    shell::Error::at(
                        f.pos,
                        format!(
                            "no container named {:?}: create it with `buildah from` first",
                            f.text
                        ),
                    )
                }
            })?;
        if self.containers[i].committed.take().is_some() {
            // buildah's container keeps one layer of changes since `from`: a later commit holds
            // them all again, so the new stage repeats the committed one's steps (cache hits).
            let prev = self.stages[self.containers[i].stage as usize].clone();
            let stage = self.stages.len() as u32;
            self.stages.push(Stage {
                location: self.loc(f.pos),
                layering: Layering::OnePerStage,
                ..prev
            });
            self.containers[i].stage = stage;
        }
        Ok(i)
    }

    fn push_step(&mut self, ctr: usize, kind: StepKind, created_by: &str, pos: Pos) {
        let loc = self.loc(pos);
        let stage = self.containers[ctr].stage as usize;
        self.stages[stage].steps.push(Step {
            kind,
            created_by: created_by.to_string(),
            location: loc,
        });
    }

    /// `buildah from`: a new stage; returns the container name.
    fn from(&mut self, args: &[Field], pos: Pos) -> Result<String, shell::Error> {
        let p = parse_flags("from", args, FROM_FLAGS, false)?;
        refuse_confinement_flags("from", &p)?;
        let [image] = p.args.as_slice() else {
            return Err(shell::Error::at(
                pos,
                "buildah from takes exactly one image (or scratch)",
            ));
        };
        let platform = match (p.get("platform"), p.get("os"), p.get("arch")) {
            (Some(pl), _, _) => Some(pl.to_string()),
            (None, os, Some(arch)) => {
                let mut s = format!("{}/{arch}", os.unwrap_or("linux"));
                if let Some(v) = p.get("variant") {
                    s = format!("{s}/{v}");
                }
                Some(s)
            }
            _ => None,
        };
        let base_name = match p.get("name") {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => default_name(&image.text),
        };
        let mut name = base_name.clone();
        let mut n = 1;
        while self.containers.iter().any(|c| c.name == name) {
            if p.get("name").is_some() {
                return Err(shell::Error::at(
                    pos,
                    format!("a container named {name:?} already exists"),
                ));
            }
            name = format!("{base_name}-{n}");
            n += 1;
        }
        let base = if image.text == "scratch" {
            Base::Scratch
        } else if let Some(c) = self.containers.iter().find(|c| c.name == image.text) {
            return Err(shell::Error::at(
                image.pos,
                format!(
                    "{:?} is a working container; commit it and start from the image it makes",
                    c.name
                ),
            ));
        } else {
            Base::Image(image.text.clone())
        };
        let stage = self.stages.len() as u32;
        self.stages.push(Stage {
            name: Some(name.clone()),
            base,
            platform,
            steps: Vec::new(),
            location: self.loc(pos),
            layering: Layering::OnePerStage,
        });
        self.containers.push(Container {
            name: name.clone(),
            stage,
            committed: None,
        });
        Ok(name)
    }

    fn run(&mut self, args: &[Field], pos: Pos, text: &str) -> Result<(), shell::Error> {
        let p = parse_flags("run", args, RUN_FLAGS, true)?;
        refuse_confinement_flags("run", &p)?;
        let Some((ctr_word, rest)) = p.args.split_first() else {
            return Err(shell::Error::at(
                pos,
                "buildah run needs a container and a command",
            ));
        };
        let ctr = self.container(ctr_word)?;
        let cmd: Vec<String> = rest
            .iter()
            .skip_while(|f| f.text == "--")
            .map(|f| f.text.clone())
            .collect();
        if cmd.is_empty() {
            return Err(shell::Error::at(
                ctr_word.pos,
                "buildah run needs a command after the container",
            ));
        }
        let mut env = Vec::new();
        for (e, at) in p.all("env") {
            match e.split_once('=') {
                Some((k, v)) => env.push((k.to_string(), v.to_string())),
                None => {
                    return Err(shell::Error::at(
                        at,
                        format!("--env {e:?} is not KEY=VALUE"),
                    ));
                }
            }
        }
        let mut mounts = Vec::new();
        for (v, at) in p.all("volume") {
            mounts.push(volume_mount(v, at)?);
        }
        for (m, at) in p.all("mount") {
            mounts.push(self.mount_option(m, at)?);
        }
        let network = p.get("network").or(p.get("net")).map(|n| match n {
            "none" => "none".to_string(),
            other => other.to_string(),
        });
        let step = RunStep {
            command: Command::Exec(cmd),
            mounts,
            network,
            build_args: Vec::new(),
            env,
            user: p.get("user").map(str::to_string),
            workdir: p.get("workingdir").map(str::to_string),
        };
        self.push_step(ctr, StepKind::Run(step), text, pos);
        Ok(())
    }

    /// `run --mount TYPE-SPEC`, as `RUN --mount=` takes it; `from=` names a container (its
    /// stage), `context`, or an image.
    fn mount_option(&self, spec: &str, at: Pos) -> Result<RunMount, shell::Error> {
        let m = mounts::parse_literal(spec)
            .map_err(|e| shell::Error::at(at, format!("--mount {spec:?}: {e}")))?;
        let m = m.resolve_from(|f| {
            Ok::<_, std::convert::Infallible>(match self.containers.iter().find(|c| c.name == f) {
                Some(c) => CopyFrom::Stage(c.stage),
                None if f == "context" => CopyFrom::Context,
                None => CopyFrom::Image(f),
            })
        });
        let Ok(m) = m;
        Ok(m.into())
    }

    fn copy(
        &mut self,
        verb: &str,
        args: &[Field],
        pos: Pos,
        text: &str,
    ) -> Result<(), shell::Error> {
        let is_add = verb == "add";
        let p = parse_flags(verb, args, COPY_FLAGS, false)?;
        let Some((ctr_word, rest)) = p.args.split_first() else {
            return Err(shell::Error::at(
                pos,
                format!("buildah {verb} needs a container and a source"),
            ));
        };
        let ctr = self.container(ctr_word)?;
        let (srcs, dest) = match rest {
            [] => {
                return Err(shell::Error::at(
                    ctr_word.pos,
                    format!("buildah {verb} needs a source after the container"),
                ));
            }
            [one] => (std::slice::from_ref(one), "./".to_string()),
            [srcs @ .., dest] => (srcs, dest.text.clone()),
        };
        let from = match p.get("from") {
            None => CopyFrom::Context,
            Some(f) => match self.containers.iter().position(|c| c.name == f) {
                Some(i) => {
                    if i == ctr {
                        return Err(shell::Error::at(
                            pos,
                            "--from names the container being copied into",
                        ));
                    }
                    CopyFrom::Stage(self.containers[i].stage)
                }
                None => CopyFrom::Image(f.to_string()),
            },
        };
        let mut sources = Vec::new();
        for s in srcs {
            if is_add && (s.text.starts_with("http://") || s.text.starts_with("https://")) {
                sources.push(CopySource::Url(s.text.clone()));
            } else if s.text.starts_with('/') && matches!(from, CopyFrom::Context) {
                return Err(shell::Error::at(
                    s.pos,
                    format!(
                        "{:?} is an absolute host path: a build reads only its context, so name it relative to the context directory",
                        s.text
                    ),
                ));
            } else {
                sources.push(CopySource::Path(s.text.clone()));
            }
        }
        if p.get("contextdir").is_some() || p.get("ignorefile").is_some() {
            self.warn(pos, "--contextdir and --ignorefile are the build's: use `kiln build CONTEXT --ignorefile FILE`");
        }
        let step = CopyStep {
            sources,
            dest,
            from,
            chown: p.get("chown").map(str::to_string),
            chmod: p.get("chmod").map(str::to_string),
            link: false,
            parents: false,
            excludes: Vec::new(),
            is_add,
            checksum: p.get("checksum").map(str::to_string),
        };
        self.push_step(ctr, StepKind::Copy(step), text, pos);
        Ok(())
    }

    fn config(&mut self, args: &[Field], pos: Pos, text: &str) -> Result<(), shell::Error> {
        let p = parse_flags("config", args, CONFIG_FLAGS, false)?;
        let [ctr_word] = p.args.as_slice() else {
            return Err(shell::Error::at(
                pos,
                "buildah config takes exactly one container (after its options)",
            ));
        };
        let ctr = self.container(ctr_word)?;
        let options: Vec<(String, String)> = p
            .flags
            .iter()
            .filter(|(n, _, _)| n != "add-history")
            .map(|(n, v, _)| (n.clone(), v.clone()))
            .collect();
        if let Some((_, v, at)) = p
            .flags
            .iter()
            .find(|(n, v, _)| n == "healthcheck-retries" && v.parse::<u32>().is_err())
        {
            return Err(shell::Error::at(
                *at,
                format!("--healthcheck-retries {v:?} is not a number"),
            ));
        }
        self.push_step(ctr, StepKind::Config(options), text, pos);
        Ok(())
    }

    fn commit(&mut self, args: &[Field], pos: Pos) -> Result<(), shell::Error> {
        let p = parse_flags("commit", args, COMMIT_FLAGS, false)?;
        let (ctr_word, dest) = match p.args.as_slice() {
            [c] => (c, None),
            [c, d] => (c, Some(d)),
            _ => {
                return Err(shell::Error::at(
                    pos,
                    "buildah commit takes a container and at most one image name",
                ));
            }
        };
        let ctr = self.container(ctr_word)?;
        let stage = self.containers[ctr].stage;
        if p.has("squash") {
            self.stages[stage as usize].layering = Layering::Squashed;
        }
        for flag in [
            "format",
            "timestamp",
            "iidfile",
            "sign-by",
            "manifest",
            "disable-compression",
        ] {
            if p.get(flag).is_some() {
                self.warn(pos, format!("commit --{flag} is ignored: the build's own flags decide (kiln build --{flag})"));
            }
        }
        if let Some(d) = dest {
            if has_transport(&d.text) {
                self.warn(
                    d.pos,
                    format!(
                        "{:?} is not written by the build script: pass it to `kiln build -t`",
                        d.text
                    ),
                );
            } else {
                self.names.push((stage, d.text.clone(), d.pos));
            }
        }
        self.containers[ctr].committed = Some(pos);
        self.target = Some(stage);
        Ok(())
    }

    /// One command of the script (`in_subst`: inside `$(…)`); returns its output.
    fn command(
        &mut self,
        fields: &[Field],
        _at: Pos,
        text: &str,
        in_subst: bool,
    ) -> Result<String, shell::Error> {
        let Some((prog, rest)) = fields.split_first() else {
            return Ok(String::new());
        };
        if prog.text != "buildah" && prog.text != "kiln" {
            return Err(shell::Error::at(
                prog.pos,
                format!(
                    "{:?} is not a buildah verb: a build script runs `buildah` (or `kiln`) verbs and sets variables",
                    prog.text
                ),
            ));
        }
        // Global flags before the verb.
        let mut i = 0;
        while let Some(f) = rest.get(i) {
            if !f.text.starts_with('-') {
                break;
            }
            i += if GLOBAL_VALUE_FLAGS.contains(&f.text.as_str()) {
                2
            } else {
                1
            };
        }
        let Some(verb) = rest.get(i) else {
            return Err(shell::Error::at(
                prog.pos,
                "a verb is missing after buildah",
            ));
        };
        let args = &rest[i + 1..];
        if in_subst && verb.text != "from" {
            return Err(shell::Error::at(
                verb.pos,
                "only `buildah from` can be used inside `$(…)`",
            ));
        }
        let pos = verb.pos;
        match verb.text.as_str() {
            "from" => return self.from(args, verb.pos),
            "run" => self.run(args, verb.pos, text)?,
            "copy" | "add" => self.copy(&verb.text, args, verb.pos, text)?,
            "config" => self.config(args, verb.pos, text)?,
            "commit" => self.commit(args, verb.pos)?,
            "rm" => {
                let p = parse_flags("rm", args, RM_FLAGS, false)?;
                for a in &p.args {
                    if !self.containers.iter().any(|c| c.name == a.text) {
                        return Err(shell::Error::at(
                            a.pos,
                            format!("no container named {:?}", a.text),
                        ));
                    }
                }
            }
            "containers" | "images" | "inspect" | "info" | "version" => {
                self.warn(
                    pos,
                    format!("buildah {} has no effect in a build script", verb.text),
                );
            }
            other => {
                return Err(shell::Error::at(
                    verb.pos,
                    format!(
                        "buildah {other} is not supported in a build script (from, run, copy, add, config, commit and rm are)"
                    ),
                ));
            }
        }
        Ok(String::new())
    }
}

/// `run -v SRC:DST[:OPTS]`: a bind mount of a context path.
fn volume_mount(v: &str, at: Pos) -> Result<RunMount, shell::Error> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(shell::Error::at(
                at,
                format!("--volume {v:?} is not SRC:DST[:OPTIONS]"),
            ));
        }
    };
    if src.starts_with('/') {
        return Err(shell::Error::at(
            at,
            format!(
                "--volume {v:?}: a build binds only context paths; name the source relative to the context directory"
            ),
        ));
    }
    let quote = |v: &str| v.replace('"', "\"\"");
    let rw = !opts.split(',').any(|o| o == "ro");
    let spec = format!(
        "type=bind,\"source={}\",\"target={}\",rw={rw}",
        quote(src),
        quote(dst)
    );
    let m = mounts::parse_literal(&spec)
        .map_err(|e| shell::Error::at(at, format!("--volume {v:?}: {e}")))?;
    let m = m.resolve_from(|_| Err(shell::Error::at(at, "a volume has no from")))?;
    Ok(m.into())
}

/// Turn a script into a build plan.
pub fn plan(source: &str, opts: &Options) -> Result<BuildPlan, Vec<Diagnostic>> {
    let file = opts.file.clone();
    let err = |e: shell::Error| vec![diag(&file, &e, Severity::Error)];
    let commands = shell::parse(source).map_err(err)?;
    let script = std::cell::RefCell::new(Script {
        file: file.clone(),
        stages: Vec::new(),
        containers: Vec::new(),
        target: None,
        names: Vec::new(),
        warnings: Vec::new(),
    });
    let vars: HashMap<String, String> = opts.build_args.iter().cloned().collect();
    let mut subst = |fields: &[Field], pos: Pos| -> Result<String, shell::Error> {
        script.borrow_mut().command(fields, pos, "", true)
    };
    let mut env = Env {
        vars,
        subst: &mut subst,
    };
    for cmd in &commands {
        let mut k = 0;
        // Leading assignments (`export` and `set` are accepted and change nothing else).
        if cmd.words[0].literal().as_deref() == Some("set") {
            continue;
        }
        if cmd.words[0].literal().as_deref() == Some("export") {
            k = 1;
        }
        let mut assigned = false;
        while let Some(w) = cmd.words.get(k) {
            let Some(name) = w.assignment_name() else {
                break;
            };
            let value = env.word_joined(w).map_err(err)?;
            let value = value[name.len() + 1..].to_string();
            env.vars.insert(name, value);
            assigned = true;
            k += 1;
        }
        if k == cmd.words.len() {
            continue;
        }
        if assigned {
            return Err(err(shell::Error::at(
                cmd.words[k].pos,
                "variables set for one command are not supported: set them on a line of their own",
            )));
        }
        let mut fields = Vec::new();
        for w in &cmd.words[k..] {
            fields.extend(env.word(w).map_err(err)?);
        }
        script
            .borrow_mut()
            .command(&fields, cmd.pos, &cmd.text, false)
            .map_err(err)?;
    }
    drop(env);
    let s = script.into_inner();
    let Some(target) = s.target else {
        let at = commands
            .last()
            .map_or(Pos { line: 1, column: 1 }, |c| c.pos);
        return Err(err(shell::Error::at(
            at,
            "the script commits no container: end it with `buildah commit $container NAME`",
        )));
    };
    let mut warnings = s.warnings;
    let mut names = Vec::new();
    for (stage, name, pos) in s.names {
        if stage == target {
            names.push(name);
        } else {
            warnings.push(Diagnostic {
                severity: Severity::Warning,
                message: format!(
                    "image {name:?} is not written: a build's result is the script's last commit"
                ),
                location: Some(SourceLocation {
                    file: file.clone(),
                    line: pos.line,
                    column: pos.column,
                }),
            });
        }
    }
    Ok(BuildPlan {
        stages: s.stages,
        target,
        warnings,
        names,
    })
}
