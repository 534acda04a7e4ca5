//! The build plan in plain Rust types, mirroring the `plan` interface of kiln's WIT (lib.rs
//! converts them). See README.md for how the host executes each step.

use crate::diag::{Diagnostic, Location};

/// Where a stage starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// An empty filesystem and config.
    Scratch,
    /// An image reference.
    Image(String),
    /// An earlier stage, by index.
    Stage(u32),
}

/// A command: shell form runs with the stage's SHELL, exec form as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `SHELL + [string]`.
    Shell(String),
    /// argv.
    Exec(Vec<String>),
}

/// Where COPY/ADD or a RUN mount reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyFrom {
    /// The build context.
    Context,
    /// An earlier stage's result.
    Stage(u32),
    /// An image.
    Image(String),
}

/// One COPY/ADD source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopySource {
    /// Path or glob in the context (or the `from` stage/image).
    Path(String),
    /// URL (ADD only).
    Url(String),
    /// Heredoc: file name and content.
    Inline(String, Vec<u8>),
}

/// COPY or ADD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyStep {
    /// Sources in order.
    pub sources: Vec<CopySource>,
    /// Destination as written (expanded); relative paths are relative to the WORKDIR.
    pub dest: String,
    /// Where sources are read from.
    pub from: CopyFrom,
    /// `--chown` (user[:group], names or ids).
    pub chown: Option<String>,
    /// `--chmod` (octal or symbolic).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// ADD semantics.
    pub is_add: bool,
    /// `--checksum` (ADD of URLs).
    pub checksum: Option<String>,
}

/// A mount type (`type=` of `RUN --mount`).
pub use kiln_sdk::mounts::MountKind as MountType;

/// One `RUN --mount`, its `from` resolved to a stage or an image.
pub type RunMount = kiln_sdk::mounts::MountSpec<CopyFrom>;

/// RUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStep {
    /// What to run.
    pub command: Command,
    /// Mounts.
    pub mounts: Vec<RunMount>,
    /// `host` or `none`; None = the build's default.
    pub network: Option<String>,
    /// Build args visible to the command (not kept in the image).
    pub build_args: Vec<(String, String)>,
}

/// HEALTHCHECK settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["CMD", ...]` or `["CMD-SHELL", cmd]`.
    pub test: Vec<String>,
    /// Interval in ns.
    pub interval_ns: Option<u64>,
    /// Timeout in ns.
    pub timeout_ns: Option<u64>,
    /// Start period in ns.
    pub start_period_ns: Option<u64>,
    /// Start interval in ns.
    pub start_interval_ns: Option<u64>,
    /// Retries.
    pub retries: Option<u32>,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// RUN.
    Run(RunStep),
    /// COPY/ADD.
    Copy(CopyStep),
    /// ENV pairs, expanded, in order.
    Env(Vec<(String, String)>),
    /// LABEL pairs, expanded, in order.
    Label(Vec<(String, String)>),
    /// EXPOSE, normalized to `port/proto`.
    Expose(Vec<String>),
    /// VOLUME paths.
    Volume(Vec<String>),
    /// USER.
    User(String),
    /// WORKDIR, absolute.
    Workdir(String),
    /// SHELL.
    Shell(Vec<String>),
    /// STOPSIGNAL.
    StopSignal(String),
    /// HEALTHCHECK; None = NONE.
    Healthcheck(Option<Healthcheck>),
    /// ONBUILD trigger text.
    Onbuild(String),
    /// ENTRYPOINT.
    Entrypoint(Command),
    /// CMD.
    Cmd(Command),
    /// MAINTAINER.
    Maintainer(String),
    /// ARG names (history only).
    Arg(Vec<String>),
}

/// One step of a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What it does.
    pub kind: StepKind,
    /// History `created_by` line.
    pub created_by: String,
    /// The instruction's position (the FROM line for inlined ONBUILD triggers).
    pub location: Location,
}

/// A stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// `AS` name, lower case.
    pub name: Option<String>,
    /// Base.
    pub base: Base,
    /// `FROM --platform`, expanded.
    pub platform: Option<String>,
    /// Steps in order (base-image ONBUILD triggers first).
    pub steps: Vec<Step>,
    /// The FROM line.
    pub location: Location,
}

/// The whole plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildPlan {
    /// All stages, in file order.
    pub stages: Vec<Stage>,
    /// Index of the stage whose result is the image.
    pub target: u32,
    /// Warnings.
    pub warnings: Vec<Diagnostic>,
}
