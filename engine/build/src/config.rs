//! Applying a plan's metadata steps to an image config, as buildah and docker do.

use kiln_core::spec::{HealthConfig, ImageConfig};
use kiln_plugin_host::plan::{Command, Healthcheck, StepKind};

/// The PATH a stage gets when its base sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shell for shell-form commands.
pub fn shell(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .shell
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

/// A command as argv for this config.
pub fn argv(config: &ImageConfig, cmd: &Command) -> Vec<String> {
    match cmd {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = shell(config);
            v.push(s.clone());
            v
        }
    }
}

/// Prepare a base's config for a new stage: ONBUILD triggers are consumed (the frontend inlined
/// them), and a PATH is set when the base has none.
pub fn start_stage(config: &mut ImageConfig) {
    config.config.on_build = None;
    if config.config.env_get("PATH").is_none() {
        config.config.env_set("PATH", DEFAULT_PATH);
    }
}

/// What the metadata steps of one stage have set so far, for the rules that depend on it.
#[derive(Debug, Default)]
pub struct StageEdits {
    /// CMD was set in this stage: a later ENTRYPOINT keeps it (otherwise it clears an
    /// inherited CMD).
    cmd_set: bool,
    /// Variables an ENV of this stage set.
    env_set: std::collections::HashSet<String>,
}

/// Apply a metadata step; `edits` is what earlier steps of the stage set.
pub fn apply(config: &mut ImageConfig, kind: &StepKind, edits: &mut StageEdits) {
    let rc = &mut config.config;
    match kind {
        StepKind::Env(pairs) => {
            // As buildah: the base's variables first, then the stage's in the order they were
            // first set. A variable set again in the stage keeps its place; one inherited from
            // the base moves behind the others when the stage sets it.
            for (k, v) in pairs {
                if edits.env_set.insert(k.clone()) {
                    rc.env_append(k, v);
                } else {
                    rc.env_set(k, v);
                }
            }
        }
        StepKind::Label(pairs) => {
            let labels = rc.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs {
                labels.insert(k.clone(), v.clone());
            }
        }
        StepKind::Expose(ports) => {
            let set = rc.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                set.insert(p.clone());
            }
        }
        StepKind::Volume(vols) => {
            let set = rc.volumes.get_or_insert_with(Default::default);
            for v in vols {
                set.insert(v.clone());
            }
        }
        StepKind::User(u) => rc.user = Some(u.clone()),
        StepKind::Workdir(w) => rc.working_dir = Some(w.clone()),
        StepKind::Shell(s) => rc.shell = Some(s.clone()),
        StepKind::StopSignal(s) => rc.stop_signal = Some(s.clone()),
        StepKind::Healthcheck(h) => rc.healthcheck = Some(health(h.as_ref())),
        StepKind::Onbuild(t) => rc.on_build.get_or_insert_with(Vec::new).push(t.clone()),
        // An empty list clears the field: buildah and BuildKit then leave it out.
        StepKind::Entrypoint(c) => {
            let v = argv(config, c);
            let rc = &mut config.config;
            rc.entrypoint = (!v.is_empty()).then_some(v);
            if !edits.cmd_set {
                rc.cmd = None;
            }
        }
        StepKind::Cmd(c) => {
            let v = argv(config, c);
            config.config.cmd = (!v.is_empty()).then_some(v);
            edits.cmd_set = true;
        }
        StepKind::Maintainer(m) => config.author = Some(m.clone()),
        // Config steps need the working state; the executor applies them.
        StepKind::Arg(_) | StepKind::Run(_) | StepKind::Copy(_) | StepKind::Config(_) => {}
    }
}

fn health(h: Option<&Healthcheck>) -> HealthConfig {
    let mut out = HealthConfig::default();
    match h {
        None => out.test = Some(vec!["NONE".into()]),
        Some(h) => {
            out.test = Some(h.test.clone());
            out.interval = h.interval_ns.map(|v| v as i64);
            out.timeout = h.timeout_ns.map(|v| v as i64);
            out.start_period = h.start_period_ns.map(|v| v as i64);
            out.start_interval = h.start_interval_ns.map(|v| v as i64);
            out.retries = h.retries.map(|v| v as i64);
        }
    }
    out
}

/// Drop what the OCI config format cannot hold (as buildah does for `--format oci`).
pub fn strip_docker_only(config: &mut ImageConfig) {
    config.config.healthcheck = None;
    config.config.on_build = None;
    config.config.shell = None;
}
