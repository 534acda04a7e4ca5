//! The executor: asks the frontend for a plan, runs the stages the target needs, and writes the
//! resulting image (config, manifest, layers) into the store.

use crate::config;
use crate::copy::{self, Attrs, SourceRoot};
use crate::error::{BuildError, Result};
use crate::ignore::IgnoreRules;
use crate::layers::{
    EarlyUnpack, LayerRef, LayerStack, Lookup, flat_key, flat_snapshot, flat_snapshot_reusing,
};
use crate::progress::{Reporter, StepRef, Stream};
use crate::{BuildOptions, Format, PullPolicy, SecretSource, StorageDriver};
use kiln_core::spec::{Descriptor, History, ImageConfig, Manifest};
use kiln_core::{Digest, Platform, media_types};
use kiln_plugin_host::plan::{self, BuildPlan, CopyFrom, MountType, StepKind};
use kiln_plugin_host::{
    Catalog, FrontendRequest, InjectedContent, Plugin, PluginHost, PluginKind, StepInfo,
};
use kiln_registry::{ClientOptions, RegistryClient};
use kiln_sandbox::{ExtraMount, FileSource, LineTail, Network, Output, Rootfs, RunSpec, UserSpec};
use kiln_store::{ImageRecord, Store};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// What a build produced.
#[derive(Debug)]
pub struct BuildOutcome {
    /// The image in the store.
    pub image: ImageRecord,
    /// Steps executed.
    pub steps_run: usize,
    /// Steps answered from the cache.
    pub steps_cached: usize,
}

/// Runs builds against one store.
pub struct Builder<'a> {
    /// The store.
    pub store: &'a Store,
    /// The plugin host.
    pub host: &'a PluginHost,
    /// Built-in and installed plugins.
    pub catalog: &'a Catalog,
    /// Registry options (pulls of base images).
    pub registry: ClientOptions,
}

#[derive(Clone)]
struct StageState {
    key: String,
    config: ImageConfig,
    /// The stage's layers, base first; followed by `lazy` ones.
    layers: Vec<LayerRef>,
    /// Layers committed by a stage no image of this build exports, kept only as snapshots
    /// (see [`LazyLayer`]); always after `layers`.
    lazy: Vec<LazyLayer>,
    stack: LayerStack,
    /// What config steps set besides the image config: the commit's history text and comment,
    /// manifest annotations.
    commit: crate::working::WorkingState,
    /// The USER in effect at the stage's last WORKDIR: who owns the directory when a COPY or ADD
    /// makes it (`None`: the WORKDIR is inherited; the current USER then).
    workdir_user: Option<String>,
    /// The image the stage (or the stage it starts from) is built on: its reference and
    /// manifest digest, for the `org.opencontainers.image.base.*` annotations (`None`: scratch).
    base: Option<(String, Digest)>,
}

/// A layer of a stage whose layers no image of the build exports (see [`layers_exported`]):
/// such a stage is only read through its snapshots (`COPY --from`, `RUN --mount=from=`, later
/// steps), so its commit keeps the step's upper directory and skips the tar, its hash and its
/// blob. The layer is made from the snapshot when something needs it (a flattened copy of the
/// stage, or a later build that exports the stage), with the same inputs a commit would use.
#[derive(Clone)]
struct LazyLayer {
    /// The snapshot holding the step's upper directory.
    snapshot: String,
    /// The stage's stack below the step when it ran, topmost first.
    lower: Vec<PathBuf>,
    /// Paths the sandbox created that are not the step's (mount points).
    exclude: Vec<PathBuf>,
    /// The step's cache entry, updated when the layer is made.
    cache_key: Option<String>,
    /// The layer once made (`None`: the step changed nothing).
    made: std::sync::Arc<std::sync::OnceLock<Option<LayerRef>>>,
}

/// Where a step's writes land and how they become a layer.
enum Working {
    /// An overlay upper directory (`upper/`, with overlayfs's `work/` beside it) in a staging
    /// directory: diffed as an upper dir, kept as a snapshot of the stage's stack.
    Upper(kiln_store::Staging),
    /// A copy of `lower`, the stage's flattened filesystem, in a staging directory (the `vfs`
    /// driver): diffed against `lower`, kept as the flattened snapshot of the new layer chain.
    Copy {
        lower: PathBuf,
        staging: kiln_store::Staging,
        stamp: kiln_layer::CopyStamp,
    },
}

impl Working {
    fn rootfs(&self, stack: &LayerStack) -> Rootfs {
        match self {
            Working::Upper(staging) => Rootfs::Overlay {
                lowers: stack.dirs.clone(),
                upper: staging.path().join("upper"),
                work: staging.path().join("work"),
            },
            Working::Copy { staging, .. } => Rootfs::Dir(staging.path().to_path_buf()),
        }
    }
}

struct Ctx<'b> {
    opts: &'b BuildOptions,
    plan: &'b BuildPlan,
    ignore: IgnoreRules,
    platform: Platform,
    created: String,
    injectors: Injectors,
    total_steps: usize,
    step_no: usize,
    steps_run: usize,
    steps_cached: usize,
    scratch: std::sync::Arc<Scratch>,
    progress: std::sync::Arc<Reporter>,
    stage: u32,
    ssh: std::sync::Arc<std::collections::BTreeMap<String, PathBuf>>,
    run_extras: std::sync::Arc<RunExtras>,
    /// The `--cache-from`/`--cache-to` repositories' client and state.
    registry_cache: std::sync::Arc<RegistryCache>,
}

/// What a build keeps about its `--cache-from` and `--cache-to` repositories.
#[derive(Default)]
struct RegistryCache {
    /// One client for the build (sessions and tokens are reused), made on first use.
    client: std::sync::OnceLock<std::result::Result<RegistryClient, String>>,
    /// `--cache-from` repositories that failed (unreachable, refused): not asked again.
    failed: std::sync::Mutex<BTreeSet<String>>,
    /// Steps this build ran, pushed to the `--cache-to` repositories when it succeeds.
    pushes: std::sync::Mutex<Vec<CachePush>>,
}

impl RegistryCache {
    fn client(&self, options: &ClientOptions) -> std::result::Result<&RegistryClient, String> {
        self.client
            .get_or_init(|| RegistryClient::new(options.clone()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// A step's result as a `--cache-to` cache image: the stage's config and layers after it.
struct CachePush {
    key: String,
    config: ImageConfig,
    layers: Vec<LayerRef>,
}

/// What every RUN of the build gets besides its own mounts: the `--run-mount` mounts and the
/// `secrets` injector that places secret mounts.
struct RunExtras {
    mounts: Vec<plan::RunMount>,
    /// Whether any RUN asks for a secret (then the `secrets` injector serves them).
    wants_secrets: bool,
    /// The `secrets` injector, loaded when a step first needs it (a build whose secret steps
    /// all come from the cache never loads it).
    secrets: std::sync::OnceLock<Plugin>,
    /// Capabilities, seccomp filter and limits (`--cap-add`, `--security-opt`, `--ulimit`…).
    confinement: kiln_sandbox::Confinement,
    /// `--device` binds.
    devices: Vec<ExtraMount>,
}

/// The build's injector plugins, shared by the threads running stages.
#[derive(Clone)]
struct Injectors(std::sync::Arc<Vec<(Plugin, crate::InjectorConfig)>>);

impl std::ops::Deref for Injectors {
    type Target = Vec<(Plugin, crate::InjectorConfig)>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'x> IntoIterator for &'x Injectors {
    type Item = &'x (Plugin, crate::InjectorConfig);
    type IntoIter = std::slice::Iter<'x, (Plugin, crate::InjectorConfig)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'b> Ctx<'b> {
    /// A context for one stage's thread: shared parts, fresh counters, steps numbered from
    /// `first_step`.
    fn for_stage(&self, stage: u32, first_step: usize) -> Ctx<'b> {
        Ctx {
            opts: self.opts,
            plan: self.plan,
            ignore: self.ignore.clone(),
            platform: self.platform.clone(),
            created: self.created.clone(),
            injectors: self.injectors.clone(),
            total_steps: self.total_steps,
            step_no: first_step,
            steps_run: 0,
            steps_cached: 0,
            scratch: self.scratch.clone(),
            progress: self.progress.clone(),
            stage,
            ssh: self.ssh.clone(),
            run_extras: self.run_extras.clone(),
            registry_cache: self.registry_cache.clone(),
        }
    }

    /// Count the step `key` as run and remember it for `--cache-to`.
    fn ran_step(&mut self, key: &str, st: &StageState) {
        self.steps_run += 1;
        self.remember_for_cache_to(key, st);
    }

    /// Remember the state after step `key` (run, or answered by the local cache) to push to the
    /// `--cache-to` repositories.
    fn remember_for_cache_to(&self, key: &str, st: &StageState) {
        if self.opts.cache_to.is_empty() || !self.opts.layers || self.opts.no_cache {
            return;
        }
        if let Ok(mut pushes) = self.registry_cache.pushes.lock() {
            pushes.push(CachePush {
                key: key.to_string(),
                config: st.config.clone(),
                layers: st.layers.clone(),
            });
        }
    }

    /// The step being run, for progress reports.
    fn step_ref(&self) -> StepRef {
        let s = &self.plan.stages[self.stage as usize];
        StepRef {
            stage: self.stage,
            stage_label: s.name.clone().unwrap_or_else(|| self.stage.to_string()),
            step: self.step_no,
        }
    }
}

/// Count the step as answered by the cache entry `key` and report it; `true`.
fn record_hit(ctx: &mut Ctx<'_>, st: &mut StageState, key: &str) -> bool {
    st.key = key.to_string();
    ctx.steps_cached += 1;
    ctx.progress.cached(&ctx.step_ref());
    true
}

/// Part of every build cache key: bumped whenever a step's result for the same inputs changes
/// (a fix in COPY semantics, say), so caches made by older executors are not reused.
const CACHE_EPOCH: &str = "kiln-build-cache/6";

fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A RUN mount target as the step sees it: absolute, or relative to the working directory `cwd`.
fn in_workdir(cwd: &str, target: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{}/{target}", cwd.trim_end_matches('/'))
    }
}

/// The mounts of a RUN: the build's `--run-mount` ones, then the step's own.
fn step_mounts<'r>(
    ctx: &'r Ctx<'_>,
    run: &'r plan::RunStep,
) -> impl Iterator<Item = &'r plan::RunMount> {
    ctx.run_extras.mounts.iter().chain(&run.mounts)
}

/// A secret mount as the `secrets` injector reads it: key=value pairs, a relative target
/// resolved against WORKDIR.
fn secret_request(m: &plan::RunMount, cwd: &str) -> Vec<(String, String)> {
    let mut kv = vec![("type".to_string(), "secret".to_string())];
    if let Some(id) = &m.id {
        kv.push(("id".into(), id.clone()));
    }
    if let Some(t) = &m.target {
        kv.push(("target".into(), in_workdir(cwd, t)));
    }
    if let Some(v) = &m.env {
        kv.push(("env".into(), v.clone()));
    }
    if let Some(mode) = m.mode {
        kv.push(("mode".into(), format!("{mode:o}")));
    }
    if let Some(uid) = m.uid {
        kv.push(("uid".into(), uid.to_string()));
    }
    if let Some(gid) = m.gid {
        kv.push(("gid".into(), gid.to_string()));
    }
    kv.push(("required".into(), m.required.to_string()));
    kv
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The frontend named by a `# syntax=` directive on the first lines, if any.
pub fn syntax_directive(source: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&source[..source.len().min(4096)]);
    for line in text.lines() {
        let l = line.trim();
        let Some(rest) = l.strip_prefix('#') else {
            break;
        };
        let rest = rest.trim();
        if let Some((k, v)) = rest.split_once('=') {
            if k.trim().eq_ignore_ascii_case("syntax") {
                let v = v.trim();
                // docker/dockerfile:1 and friends mean the built-in Dockerfile frontend.
                let name = v.rsplit('/').next().unwrap_or(v);
                let name = name.split([':', '@']).next().unwrap_or(name);
                return Some(if v.starts_with("docker/dockerfile") {
                    "dockerfile".into()
                } else {
                    name.to_string()
                });
            }
            continue;
        }
        break;
    }
    None
}

/// The built-in frontend a source file's extension names: `.sh` and `.buildah` scripts of
/// buildah verbs go to `buildah-script`.
pub fn frontend_for_file(name: &str) -> Option<&'static str> {
    let ext = std::path::Path::new(name).extension()?.to_str()?;
    matches!(ext, "sh" | "buildah").then_some("buildah-script")
}

impl<'a> Builder<'a> {
    /// Run a build. The store makes the build's blobs and cache entries durable together when
    /// it ends (also when it fails), not one fsync at a time.
    pub fn build(&self, opts: &BuildOptions) -> Result<BuildOutcome> {
        let batch = self.store.sync_batch();
        let outcome = self.build_steps(opts);
        let synced = batch.finish();
        let outcome = outcome?;
        synced?;
        Ok(outcome)
    }

    fn build_steps(&self, opts: &BuildOptions) -> Result<BuildOutcome> {
        let platform = match &opts.platform {
            Some(p) => Platform::parse(p).map_err(|e| BuildError::Other(e.to_string()))?,
            None => Platform::host(),
        };
        let frontend_name = opts
            .frontend
            .clone()
            .or_else(|| syntax_directive(&opts.source))
            .or_else(|| frontend_for_file(&opts.source_name).map(str::to_string))
            .unwrap_or_else(|| "dockerfile".into());
        let progress = std::sync::Arc::new(Reporter::new(opts.progress, opts.quiet));
        let t_load = Instant::now();
        let (frontend, _) = self
            .catalog
            .load(self.host, PluginKind::Frontend, &frontend_name)?;
        progress.plugin_call(&format!("{frontend_name}: load"), t_load.elapsed());
        // BuildKit's BUILD* platform args name the machine running the build; later build args
        // win, so a user's own --build-arg BUILDPLATFORM still applies.
        let mut build_args = vec![("BUILDPLATFORM".to_string(), Platform::host().to_string())];
        build_args.extend(opts.build_args.iter().cloned());
        let req = FrontendRequest {
            entry_file: opts.source_name.clone(),
            source: opts.source.clone(),
            target: opts.target.clone(),
            build_args,
            platform: platform.to_string(),
        };
        let image_config = self.image_config_fn(opts, &platform)?;
        let started = Instant::now();
        let plan = match self
            .host
            .parse(&frontend, &req, &opts.context, Some(image_config))?
        {
            Ok(p) => p,
            Err(diags) => {
                let lines: Vec<String> = diags.iter().map(render_diagnostic).collect();
                return Err(BuildError::Frontend(lines.join("\n")));
            }
        };
        progress.plugin_call(&format!("{}: parse", frontend.info.name), started.elapsed());
        for w in &plan.warnings {
            progress.warning(&render_diagnostic(w));
        }
        let ignore = self.ignore_rules(opts)?;
        let created = rfc3339(
            opts.timestamp
                .unwrap_or_else(|| chrono::Utc::now().timestamp()),
        );
        let mut injectors = Vec::new();
        for inj in &opts.injectors {
            let t_load = Instant::now();
            let (p, _) = self
                .catalog
                .load(self.host, PluginKind::Injector, &inj.name)?;
            progress.plugin_call(&format!("{}: load", inj.name), t_load.elapsed());
            injectors.push((p, inj.clone()));
        }
        let run_extras = self.run_extras(opts, &plan)?;
        let needed = needed_stages(&plan);
        let total_steps = needed
            .iter()
            .map(|&i| plan.stages[i as usize].steps.len() + 1)
            .sum();
        let scratch = Scratch {
            parent: self.store.tmp_dir(),
            dir: Default::default(),
        };
        let ssh_agents = SshAgents::start(&opts.ssh, &scratch)?;
        let mut ctx = Ctx {
            opts,
            plan: &plan,
            ignore,
            platform,
            created,
            injectors: Injectors(std::sync::Arc::new(injectors)),
            total_steps,
            step_no: 0,
            steps_run: 0,
            steps_cached: 0,
            scratch: std::sync::Arc::new(scratch),
            progress: progress.clone(),
            stage: plan.target,
            ssh: std::sync::Arc::new(ssh_agents.sockets.clone()),
            run_extras: std::sync::Arc::new(run_extras),
            registry_cache: Default::default(),
        };
        let jobs = match opts.jobs {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut results = match self.run_stages(&mut ctx, &needed, jobs) {
            Ok(r) => r,
            Err(e) => {
                progress.finish(None, ctx.steps_run, ctx.steps_cached);
                return Err(e);
            }
        };
        let final_state = results[plan.target as usize]
            .take()
            .ok_or_else(|| BuildError::Other("target stage did not run".into()))?;
        let image = self.commit_image(&ctx, final_state)?;
        self.push_cache_images(&ctx);
        progress.finish(Some(&image.id.to_string()), ctx.steps_run, ctx.steps_cached);
        Ok(BuildOutcome {
            image,
            steps_run: ctx.steps_run,
            steps_cached: ctx.steps_cached,
        })
    }

    /// Run the `needed` stages, up to `jobs` at once: a stage starts when every stage it reads
    /// from (its base, `COPY --from`, `RUN --mount=from=`) has finished; with one job they run
    /// in plan order. After a failure no new stage starts, running ones finish, and the first
    /// error is returned.
    fn run_stages(
        &self,
        ctx: &mut Ctx<'_>,
        needed: &BTreeSet<u32>,
        jobs: usize,
    ) -> Result<Vec<Option<StageState>>> {
        let plan = ctx.plan;
        let mut results: Vec<Option<StageState>> = vec![None; plan.stages.len()];
        let mut first_step = vec![0usize; plan.stages.len()];
        let mut n = 0;
        for &i in needed {
            first_step[i as usize] = n;
            n += plan.stages[i as usize].steps.len() + 1;
        }
        let deps: Vec<BTreeSet<u32>> = plan.stages.iter().map(stage_deps).collect();
        // Prefix RUN output by stage only when two stages can really run at once.
        let parallel = jobs > 1
            && needed.iter().enumerate().any(|(k, &a)| {
                needed
                    .iter()
                    .skip(k + 1)
                    .any(|&b| !depends_on(&deps, b, a) && !depends_on(&deps, a, b))
            });
        ctx.progress.set_parallel(parallel);
        let mut pending: Vec<u32> = needed.iter().copied().collect();
        let mut first_err: Option<BuildError> = None;
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel::<(u32, Result<(StageState, usize, usize)>)>();
            let mut running = 0usize;
            loop {
                if first_err.is_none() {
                    let mut k = 0;
                    while running < jobs && k < pending.len() {
                        let idx = pending[k];
                        let ready = deps[idx as usize]
                            .iter()
                            .all(|d| !needed.contains(d) || results[*d as usize].is_some());
                        if !ready {
                            k += 1;
                            continue;
                        }
                        pending.remove(k);
                        let mut sub = ctx.for_stage(idx, first_step[idx as usize]);
                        // `FROM --platform=…` picks the stage's base (and scratch config).
                        if let Some(p) = plan.stages[idx as usize]
                            .platform
                            .as_deref()
                            .and_then(|p| Platform::parse(p).ok())
                        {
                            sub.platform = p;
                        }
                        let visible = results.clone();
                        let tx = tx.clone();
                        running += 1;
                        scope.spawn(move || {
                            let r = self
                                .run_stage(&mut sub, idx, &visible)
                                .map(|st| (st, sub.steps_run, sub.steps_cached));
                            sub.progress.stage_finished(idx);
                            let _ = tx.send((idx, r));
                        });
                    }
                }
                if running == 0 {
                    break;
                }
                let Ok((idx, r)) = rx.recv() else { break };
                running -= 1;
                match r {
                    Ok((st, run, cached)) => {
                        results[idx as usize] = Some(st);
                        ctx.steps_run += run;
                        ctx.steps_cached += cached;
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        });
        if let Some(e) = first_err {
            return Err(e);
        }
        if let Some(i) = pending.first() {
            return Err(BuildError::Other(format!(
                "stage {i} depends on a stage that cannot run before it"
            )));
        }
        Ok(results)
    }

    fn ignore_rules(&self, opts: &BuildOptions) -> Result<IgnoreRules> {
        let candidates: Vec<PathBuf> = match &opts.ignore_file {
            Some(f) => vec![f.clone()],
            None => vec![
                opts.context
                    .join(format!("{}.containerignore", opts.source_name)),
                opts.context
                    .join(format!("{}.dockerignore", opts.source_name)),
                opts.context.join(".containerignore"),
                opts.context.join(".dockerignore"),
            ],
        };
        for c in candidates {
            if let Ok(text) = std::fs::read_to_string(&c) {
                return Ok(IgnoreRules::parse(&text));
            }
        }
        Ok(IgnoreRules::default())
    }

    fn image_config_fn(
        &self,
        opts: &BuildOptions,
        platform: &Platform,
    ) -> Result<kiln_plugin_host::ImageConfigFn> {
        let root = self.store.root().to_path_buf();
        let mut reg_opts = self.registry.clone();
        reg_opts.progress = kiln_registry::Progress::Quiet;
        let platform = platform.clone();
        let never = opts.pull == PullPolicy::Never;
        Ok(Box::new(move |reference: &str, _p: Option<&str>| {
            let store = Store::open(&root).map_err(|e| e.to_string())?;
            if let Ok(img) = store.resolve_image(reference) {
                return store
                    .image_config_bytes(&img)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| e.to_string());
            }
            if never {
                return Err(format!("{reference}: not in the store and --pull=never"));
            }
            let client = RegistryClient::new(reg_opts.clone()).map_err(|e| e.to_string())?;
            let (bytes, _) = client
                .fetch_config(reference, &platform)
                .map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }))
    }

    /// Find or pull a base image; returns its config, layers, manifest digest and flattened
    /// filesystem.
    fn base_image(
        &self,
        ctx: &Ctx<'_>,
        reference: &str,
    ) -> Result<(ImageConfig, Vec<LayerRef>, Digest, PathBuf)> {
        let (img, config, layers, flat) = find_or_pull(
            self.store,
            &self.registry,
            reference,
            &ctx.platform,
            ctx.opts.platform.is_some() || ctx.plan.stages[ctx.stage as usize].platform.is_some(),
            ctx.opts.pull,
            ctx.opts.quiet || !ctx.progress.is_plain(),
        )?;
        Ok((config, layers, img.manifest_digest, flat))
    }

    fn empty_lower(&self) -> Result<PathBuf> {
        flat_snapshot(self.store, &[])
    }

    fn run_stage(
        &self,
        ctx: &mut Ctx<'_>,
        index: u32,
        results: &[Option<StageState>],
    ) -> Result<StageState> {
        let stage = &ctx.plan.stages[index as usize];
        let file = &ctx.opts.source_name;
        ctx.step_no += 1;
        let from_text = match &stage.base {
            plan::Base::Scratch => "scratch".to_string(),
            plan::Base::Image(r) => r.clone(),
            plan::Base::Stage(i) => ctx.plan.stages[*i as usize]
                .name
                .clone()
                .unwrap_or_else(|| i.to_string()),
        };
        let alias = stage
            .name
            .as_ref()
            .map(|n| format!(" AS {n}"))
            .unwrap_or_default();
        let from_line = format!("FROM {from_text}{alias}");
        ctx.progress.started(
            &ctx.step_ref(),
            ctx.total_steps,
            &format!(
                "[{}/{}] STEP {}/{}: {from_line}",
                index + 1,
                ctx.plan.stages.len(),
                ctx.step_no,
                ctx.total_steps
            ),
            &from_line,
        );
        let t_from = Instant::now();
        let base = self.stage_base(ctx, index, results);
        match &base {
            Ok(_) => ctx.progress.done(&ctx.step_ref(), t_from.elapsed(), false),
            Err(e) => ctx
                .progress
                .error(&ctx.step_ref(), t_from.elapsed(), &e.to_string()),
        }
        let mut st = base?;
        // A committed working container keeps its base's config as is (no default PATH).
        if stage.layering == plan::Layering::PerStep {
            config::start_stage(&mut st.config);
            // `--env`, as buildah applies it: set at the start of every stage.
            if !ctx.opts.env.is_empty() {
                for (k, v) in &ctx.opts.env {
                    st.config.config.env_set(k, v);
                }
                st.key = hash_key(&[&st.key, "build-env", &format!("{:?}", ctx.opts.env)]);
            }
        } else {
            // Folded into one layer from the layers it starts with.
            self.settle_lazy(ctx, &mut st)?;
        }
        let (base_layers, base_history) = (st.layers.len(), st.config.history.len());
        let mut edits = config::StageEdits::default();
        for (si, step) in stage.steps.iter().enumerate() {
            ctx.step_no += 1;
            let location = format!("{file}:{}", step.location.line);
            let display = step
                .created_by
                .strip_prefix("/bin/sh -c #(nop) ")
                .unwrap_or(&step.created_by)
                .trim_end();
            // Script steps show their own line; Dockerfile steps their instruction.
            let shown = if stage.layering == plan::Layering::PerStep {
                display_step(step, display)
            } else {
                step.created_by.clone()
            };
            ctx.progress.started(
                &ctx.step_ref(),
                ctx.total_steps,
                &format!(
                    "[{}/{}] STEP {}/{}: {shown}",
                    index + 1,
                    ctx.plan.stages.len(),
                    ctx.step_no,
                    ctx.total_steps,
                ),
                &shown,
            );
            let t0 = Instant::now();
            let cached_before = ctx.steps_cached;
            let r = match &step.kind {
                StepKind::Run(run) => self
                    .run_step(
                        ctx,
                        &mut st,
                        index,
                        si as u32,
                        run,
                        &step.created_by,
                        &location,
                        results,
                    )
                    .map_err(|e| at(&location, e)),
                StepKind::Copy(c) => self
                    .copy_step(
                        ctx,
                        &mut st,
                        c,
                        stage.layering,
                        &step.created_by,
                        &location,
                        results,
                    )
                    .map_err(|e| at(&location, e)),
                other => self
                    .meta_step(ctx, &mut st, other, &step.created_by, &mut edits)
                    .map_err(|e| at(&location, e)),
            };
            let sref = ctx.step_ref();
            match r {
                Ok(()) => ctx
                    .progress
                    .done(&sref, t0.elapsed(), ctx.steps_cached > cached_before),
                Err(e) => {
                    ctx.progress.error(&sref, t0.elapsed(), &e.to_string());
                    return Err(e);
                }
            }
            tracing::debug!("{location}: step took {:?}", t0.elapsed());
        }
        if stage.layering != plan::Layering::PerStep {
            self.fold_stage(ctx, index, &mut st, base_layers, base_history)?;
        } else if !ctx.opts.layers {
            self.one_layer_per_stage(ctx, index, &mut st, base_layers, base_history)?;
        }
        Ok(st)
    }

    /// `--layers=false`, as `buildah bud` without `--layers`: what the stage's steps changed
    /// becomes one layer on top of its base's, and every step keeps its history entry, the
    /// last one carrying that layer.
    fn one_layer_per_stage(
        &self,
        ctx: &Ctx<'_>,
        index: u32,
        st: &mut StageState,
        base_layers: usize,
        base_history: usize,
    ) -> Result<()> {
        self.settle_lazy(ctx, st)?;
        if st.layers.len() == base_layers {
            return Ok(());
        }
        let steps = st.config.history[base_history..].to_vec();
        self.fold_stage(ctx, index, st, base_layers, base_history)?;
        st.config.history.truncate(base_history);
        st.config.history.extend(steps);
        let last = st.config.history.len() - 1;
        for (i, h) in st.config.history[base_history..].iter_mut().enumerate() {
            h.empty_layer = base_history + i != last;
        }
        Ok(())
    }

    /// Make a one-per-stage or squashed stage's layers as `buildah commit` does: the layers
    /// its steps added become one (or, squashed, the whole filesystem becomes one), and their
    /// history entries one entry carrying the config's `created-by`.
    fn fold_stage(
        &self,
        ctx: &Ctx<'_>,
        index: u32,
        st: &mut StageState,
        base_layers: usize,
        base_history: usize,
    ) -> Result<()> {
        let stage = &ctx.plan.stages[index as usize];
        let hint = stage
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{index}"));
        let containers = crate::working::Containers::new(self.store, self.registry.clone());
        // The fold is cached like a step: an unchanged rebuild only looks it up.
        let key = hash_key(&[
            &st.key,
            "fold",
            &base_layers.to_string(),
            &format!("{:?}", ctx.opts.timestamp),
        ]);
        let key = format!("fold-{key}");
        let cached = self.cached_layer(ctx, &key).flatten();
        let hit = cached.is_some();
        let layer = crate::working::fold_stage(
            &containers,
            &hint,
            base_layers,
            base_history,
            &mut st.layers,
            &mut st.config,
            &mut st.stack,
            &ctx.created,
            st.commit.created_by.clone(),
            ctx.opts.timestamp,
            cached,
        )?;
        if !hit {
            self.cache_layer(ctx, &key, Some(&layer))?;
        }
        if stage.layering == plan::Layering::Squashed {
            self.squash(ctx, st)?;
            if st.layers.is_empty() {
                return Err(BuildError::Other(format!(
                    "stage {hint}: no squashed layer"
                )));
            }
        }
        if let Some(h) = st.config.history.last_mut() {
            h.comment = st.commit.history_comment.clone();
        }
        Ok(())
    }

    /// Metadata steps go through the cache too, so an unchanged rebuild reports every step as
    /// cached (as buildah does).
    fn meta_step(
        &self,
        ctx: &mut Ctx<'_>,
        st: &mut StageState,
        kind: &StepKind,
        created_by: &str,
        edits: &mut config::StageEdits,
    ) -> Result<()> {
        if ctx.opts.format == Format::Oci {
            let dropped = match kind {
                StepKind::Healthcheck(_) => Some("HEALTHCHECK"),
                StepKind::Onbuild(_) => Some("ONBUILD"),
                StepKind::Shell(_) => Some("SHELL"),
                _ => None,
            };
            if let Some(what) = dropped {
                ctx.progress.warning(&format!(
                    "warning: the OCI image format has no field for {what}, so the image does not keep it \
                     (build with --format docker to keep it)"
                ));
            }
        }
        match kind {
            StepKind::Config(options) => {
                let mut changes = crate::working::ConfigChanges::default();
                for (name, value) in options {
                    changes.set(name, value)?;
                }
                crate::working::apply_changes(&mut st.config, &mut st.commit, &changes)?;
            }
            _ => config::apply(&mut st.config, kind, edits),
        }
        if matches!(kind, StepKind::Workdir(_)) {
            st.workdir_user = Some(st.config.config.user.clone().unwrap_or_default());
        }
        let key = hash_key(&[&st.key, &format!("{kind:?}")]);
        if !self.cached(ctx, &key, st, created_by) {
            push_history(&mut st.config, &ctx.created, created_by, true);
            if ctx.opts.layers && !ctx.opts.no_cache {
                self.store.cache_put(
                    &format!("step-{key}"),
                    &serde_json::json!({ "layer": null, "snapshot": null }),
                )?;
            }
            ctx.ran_step(&key, st);
            st.key = key;
        }
        Ok(())
    }

    /// A stage's starting state: scratch, a base image (pulled when needed) or another stage.
    fn stage_base(
        &self,
        ctx: &Ctx<'_>,
        index: u32,
        results: &[Option<StageState>],
    ) -> Result<StageState> {
        let stage = &ctx.plan.stages[index as usize];
        let file = &ctx.opts.source_name;
        Ok(match &stage.base {
            plan::Base::Scratch => {
                let mut c = ImageConfig::new(&ctx.platform);
                c.created = None;
                StageState {
                    key: hash_key(&[CACHE_EPOCH, "scratch", &ctx.platform.to_string()]),
                    config: c,
                    layers: vec![],
                    lazy: vec![],
                    stack: LayerStack {
                        dirs: vec![self.empty_lower()?],
                    },
                    commit: Default::default(),
                    workdir_user: None,
                    base: None,
                }
            }
            plan::Base::Image(r) => {
                let (config, layers, manifest, flat) =
                    self.base_image(ctx, r).map_err(|e| BuildError::Step {
                        location: format!("{file}:{}", stage.location.line),
                        message: format!("FROM {r}: {e}"),
                    })?;
                let name = kiln_core::ImageReference::parse(r).map_or(r.clone(), |x| x.to_string());
                StageState {
                    key: hash_key(&[CACHE_EPOCH, "image", &manifest.to_string()]),
                    config,
                    layers,
                    lazy: vec![],
                    stack: LayerStack { dirs: vec![flat] },
                    commit: Default::default(),
                    workdir_user: None,
                    base: Some((name, manifest)),
                }
            }
            plan::Base::Stage(i) => results[*i as usize]
                .clone()
                .ok_or_else(|| BuildError::Other(format!("stage {i} has not run")))?,
        })
    }

    fn cached(&self, ctx: &mut Ctx<'_>, key: &str, st: &mut StageState, created_by: &str) -> bool {
        if ctx.opts.no_cache {
            return false;
        }
        let entry_key = format!("step-{key}");
        let fresh = |written: Option<std::time::SystemTime>| match ctx.opts.cache_ttl {
            None => true,
            Some(ttl) => written.is_some_and(|w| w.elapsed().is_ok_and(|age| age < ttl)),
        };
        let Some(v) = self
            .store
            .cache_get(&entry_key)
            .filter(|_| fresh(self.store.cache_written(&entry_key)))
        else {
            return self.remote_cached(ctx, key, st, created_by);
        };
        let mut snapshot_key = v["snapshot"].as_str().map(str::to_string);
        let layer: Option<LayerRef> = if v["lazy"].is_object() {
            let Some(lazy) = self.lazy_from_cache(&v["lazy"], &entry_key, st) else {
                return false;
            };
            if !layers_exported(ctx) {
                let Some(snap) = self.store.snapshot(&lazy.snapshot) else {
                    return false;
                };
                st.stack.dirs.insert(0, snap.join("upper"));
                st.lazy.push(lazy);
                push_history(&mut st.config, &ctx.created, created_by, false);
                return record_hit(ctx, st, key);
            }
            // This build exports the stage: make the layer now.
            snapshot_key = Some(lazy.snapshot.clone());
            match self.make_lazy(ctx.opts.timestamp, &lazy, kiln_layer::Compression::Gzip) {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!("making the layer of snapshot {}: {e}", lazy.snapshot);
                    return false;
                }
            }
        } else {
            serde_json::from_value(v["layer"].clone()).ok()
        };
        match layer {
            None => {
                push_history(&mut st.config, &ctx.created, created_by, true);
            }
            Some(l) => {
                // A layer cannot follow layers that are still only snapshots.
                if !st.lazy.is_empty() {
                    return false;
                }
                let snap = snapshot_key.as_deref().and_then(|s| self.store.snapshot(s));
                let Some(snap) = snap.filter(|_| self.store.has_blob(&l.digest)) else {
                    return false;
                };
                // Made by a stage whose layers were not exported: compress it now.
                let l = if l.media_type == media_types::OCI_LAYER_TAR && layers_exported(ctx) {
                    match gzip_layer(self.store, &l) {
                        Ok(g) => g,
                        Err(e) => {
                            tracing::debug!("compressing cached layer {}: {e}", l.digest);
                            return false;
                        }
                    }
                } else {
                    l
                };
                if snapshot_key
                    .as_deref()
                    .is_some_and(|k| k.starts_with("flat-"))
                {
                    // Made by the vfs driver: the whole filesystem up to this layer.
                    st.stack = LayerStack { dirs: vec![snap] };
                } else {
                    st.stack.dirs.insert(0, snap.join("upper"));
                }
                st.config.rootfs.diff_ids.push(l.diff_id);
                st.layers.push(l);
                push_history(&mut st.config, &ctx.created, created_by, false);
            }
        }
        ctx.remember_for_cache_to(key, st);
        record_hit(ctx, st, key)
    }

    /// The lazy layer a cache entry's `lazy` object describes, over the stage's current stack;
    /// `None` when it is malformed.
    fn lazy_from_cache(
        &self,
        v: &serde_json::Value,
        entry_key: &str,
        st: &StageState,
    ) -> Option<LazyLayer> {
        Some(LazyLayer {
            snapshot: v["snapshot"].as_str()?.to_string(),
            lower: st.stack.dirs.clone(),
            exclude: serde_json::from_value(v["exclude"].clone()).ok()?,
            cache_key: Some(entry_key.to_string()),
            made: Default::default(),
        })
    }

    /// Make the layer of a lazy step from its snapshot (once per build), and record it in the
    /// step's cache entry so later builds find a layer.
    fn make_lazy(
        &self,
        timestamp: Option<i64>,
        lazy: &LazyLayer,
        compression: kiln_layer::Compression,
    ) -> Result<Option<LayerRef>> {
        if let Some(l) = lazy.made.get() {
            return Ok(l.clone());
        }
        let t = Instant::now();
        let snap = self.store.snapshot(&lazy.snapshot).ok_or_else(|| {
            BuildError::Other(format!("snapshot {} is gone from the store", lazy.snapshot))
        })?;
        let layer = layer_from_upper_as(
            self.store,
            &snap.join("upper"),
            &lazy.exclude,
            &lazy.lower,
            timestamp,
            false,
            compression,
        )?;
        tracing::debug!(
            "layer of snapshot {} made in {:?}",
            lazy.snapshot,
            t.elapsed()
        );
        let _ = lazy.made.set(layer.clone());
        if let Some(k) = &lazy.cache_key {
            self.store.cache_put(
                k,
                &serde_json::json!({
                    "layer": layer,
                    "snapshot": layer.as_ref().map(|_| lazy.snapshot.clone()),
                }),
            )?;
        }
        Ok(layer)
    }

    /// Every layer of stage `s`, its lazy ones made (as plain tars: the stage is not exported).
    fn layers_of(&self, ctx: &Ctx<'_>, s: &StageState) -> Result<Vec<LayerRef>> {
        let mut layers = s.layers.clone();
        for lazy in &s.lazy {
            layers.extend(self.make_lazy(
                ctx.opts.timestamp,
                lazy,
                kiln_layer::Compression::None,
            )?);
        }
        Ok(layers)
    }

    /// Turn the lazy layers of `st` into layers, for code that reads a stage by its layers.
    fn settle_lazy(&self, ctx: &Ctx<'_>, st: &mut StageState) -> Result<()> {
        if st.lazy.is_empty() {
            return Ok(());
        }
        st.layers = self.layers_of(ctx, st)?;
        st.lazy.clear();
        st.config.rootfs.diff_ids = st.layers.iter().map(|l| l.diff_id).collect();
        Ok(())
    }

    /// Keep a step's upper directory as a snapshot without making its layer (a stage no image
    /// of this build exports; see [`LazyLayer`]).
    fn commit_lazy(
        &self,
        ctx: &mut Ctx<'_>,
        st: &mut StageState,
        key: &str,
        staging: kiln_store::Staging,
        exclude: &[PathBuf],
        created_by: &str,
    ) -> Result<()> {
        let _ = self.store.remove_later(&staging.path().join("work"));
        // Named after this run of the step, not its cache key: a `--no-cache` rebuild of the
        // same step must not find the snapshot of an earlier run.
        let snapshot = format!(
            "lazy-{}",
            hash_key(&[key, &staging.path().to_string_lossy(), &ctx.created])
        );
        let snap = self.store.publish_snapshot(&snapshot, staging)?;
        let use_cache = ctx.opts.layers && !ctx.opts.no_cache;
        let cache_key = use_cache.then(|| format!("step-{key}"));
        st.lazy.push(LazyLayer {
            snapshot: snapshot.clone(),
            lower: st.stack.dirs.clone(),
            exclude: exclude.to_vec(),
            cache_key: cache_key.clone(),
            made: Default::default(),
        });
        st.stack.dirs.insert(0, snap.join("upper"));
        push_history(&mut st.config, &ctx.created, created_by, false);
        if let Some(k) = cache_key {
            self.store.cache_put(
                &k,
                &serde_json::json!({
                    "layer": null,
                    "snapshot": null,
                    "lazy": { "snapshot": snapshot, "exclude": exclude },
                }),
            )?;
        }
        tracing::debug!("{created_by}: kept as snapshot {snapshot}, layer not made");
        st.key = key.to_string();
        ctx.steps_run += 1;
        Ok(())
    }

    /// Turn a step's writes into a layer (if there are changes) and record the step.
    fn commit_step(
        &self,
        ctx: &mut Ctx<'_>,
        st: &mut StageState,
        key: &str,
        working: Working,
        exclude: &[PathBuf],
        created_by: &str,
    ) -> Result<()> {
        let exported = layers_exported(ctx);
        let working = match working {
            Working::Upper(staging)
                if !exported && exclude.iter().all(|p| p.to_str().is_some()) =>
            {
                return self.commit_lazy(ctx, st, key, staging, exclude, created_by);
            }
            w => w,
        };
        let t_commit = Instant::now();
        let compression = if exported {
            kiln_layer::Compression::Gzip
        } else {
            kiln_layer::Compression::None
        };
        let (layer, staging, flat) = match working {
            Working::Upper(staging) => {
                let upper = staging.path().join("upper");
                let _ = self.store.remove_later(&staging.path().join("work"));
                let layer = layer_from_upper_as(
                    self.store,
                    &upper,
                    exclude,
                    &st.stack.dirs,
                    ctx.opts.timestamp,
                    false,
                    compression,
                )?;
                (layer, staging, false)
            }
            Working::Copy {
                lower,
                staging,
                stamp,
            } => {
                let layer = layer_from_tree(
                    self.store,
                    &lower,
                    staging.path(),
                    Some(&stamp),
                    exclude,
                    ctx.opts.timestamp,
                    false,
                    compression,
                )?;
                (layer, staging, true)
            }
        };
        tracing::debug!("{created_by}: layer committed in {:?}", t_commit.elapsed());
        let snapshot_key = layer.as_ref().map(|l| {
            if flat {
                let mut chain = st.layers.clone();
                chain.push(l.clone());
                flat_key(&chain)
            } else {
                format!("upper-{}", l.diff_id.hex())
            }
        });
        if let (Some(l), Some(k)) = (&layer, &snapshot_key) {
            let snap = match self.store.snapshot(k) {
                Some(p) => p,
                None => self.store.publish_snapshot(k, staging)?,
            };
            if flat {
                // The changed copy is the flattened filesystem of the new chain (the mount points
                // the sandbox made are gone from it again).
                st.stack = LayerStack { dirs: vec![snap] };
            } else {
                st.stack.dirs.insert(0, snap.join("upper"));
            }
            st.config.rootfs.diff_ids.push(l.diff_id);
            st.layers.push(l.clone());
        }
        push_history(&mut st.config, &ctx.created, created_by, layer.is_none());
        if ctx.opts.layers && !ctx.opts.no_cache {
            self.store.cache_put(
                &format!("step-{key}"),
                &serde_json::json!({ "layer": layer, "snapshot": snapshot_key }),
            )?;
        }
        st.key = key.to_string();
        ctx.ran_step(key, st);
        Ok(())
    }

    fn new_staging(&self) -> Result<kiln_store::Staging> {
        let staging = self.store.snapshot_staging()?;
        for d in ["upper", "work"] {
            std::fs::create_dir(staging.path().join(d)).map_err(|e| BuildError::Io {
                what: format!("creating {}", staging.path().join(d).display()),
                source: e,
            })?;
        }
        crate::layers::spread_subdirs(&staging.path().join("upper"));
        Ok(staging)
    }

    /// The flattened filesystem of a `--from` source.
    fn source_root(
        &self,
        ctx: &Ctx<'_>,
        from: &CopyFrom,
        results: &[Option<StageState>],
    ) -> Result<Option<PathBuf>> {
        Ok(match from {
            CopyFrom::Context => None,
            CopyFrom::Stage(i) => {
                let s = results[*i as usize]
                    .as_ref()
                    .ok_or_else(|| BuildError::Other(format!("stage {i} has not run")))?;
                Some(flat_snapshot(self.store, &self.layers_of(ctx, s)?)?)
            }
            CopyFrom::Image(r) => Some(self.base_image(ctx, r)?.3),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &self,
        ctx: &mut Ctx<'_>,
        st: &mut StageState,
        c: &plan::CopyStep,
        layering: plan::Layering,
        created_by: &str,
        location: &str,
        results: &[Option<StageState>],
    ) -> Result<()> {
        // Files of another stage are read straight through its layer stack; anything else
        // (directories, globs) from its flattened filesystem.
        let from_stack = match &c.from {
            CopyFrom::Stage(i) => match results.get(*i as usize).and_then(Option::as_ref) {
                Some(s) => copy::expand_from_stack(&s.stack, &c.sources, location)?
                    .map(|e| (e, s.stack.dirs[0].clone())),
                None => None,
            },
            _ => None,
        };
        let (from_root, pre_expanded) = match from_stack {
            Some((e, top)) => (Some(top), Some(e)),
            None => (
                self.source_root(ctx, &c.from, results)
                    .map_err(|e| at(location, e))?,
                None,
            ),
        };
        let ignore = ctx.ignore.clone();
        let context_dir = ctx.opts.context.clone();
        let root = match &from_root {
            None => SourceRoot::Context {
                dir: &context_dir,
                ignore: &ignore,
            },
            Some(p) => SourceRoot::Rootfs(p),
        };
        let mut expanded = match pre_expanded {
            Some(e) => e,
            None => copy::expand(
                &root,
                &c.sources,
                c.is_add,
                c.checksum.as_deref(),
                location,
                ctx.scratch.path()?,
            )?,
        };
        // --exclude: sources it names are dropped here, paths below them while copying.
        let excludes = (!c.excludes.is_empty()).then(|| IgnoreRules::parse(&c.excludes.join("\n")));
        if let Some(ex) = &excludes {
            expanded.items.retain(|it| !ex.excluded(&it.rel));
        }
        let dest = copy_destination(st.config.config.working_dir.as_deref(), &c.dest);
        let created_by = summarize_copy(created_by, &expanded);
        let key = hash_key(&[
            &st.key,
            "copy",
            &format!("{:?}", c.from),
            &dest,
            &format!(
                "{:?}{:?}{}{}{}",
                c.chown,
                c.chmod,
                c.is_add,
                c.parents,
                if c.excludes.is_empty() {
                    String::new()
                } else {
                    format!(" exclude {:?}", c.excludes)
                }
            ),
            &expanded.digest,
        ]);
        if self.cached(ctx, &key, st, &created_by) {
            return Ok(());
        }
        let owner = match &c.chown {
            Some(spec) => Some(self.resolve_owner(ctx, st, spec, location)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => {
                Some(
                    crate::mode::ModeSpec::parse(m).map_err(|message| BuildError::Step {
                        location: location.into(),
                        message,
                    })?,
                )
            }
            None => None,
        };
        let staging = self.new_staging()?;
        let upper = staging.path().join("upper");
        if layering == plan::Layering::PerStep {
            // A Dockerfile's WORKDIR exists once a step writes a layer, as with buildah.
            self.ensure_workdir(ctx, st, &upper, location)?;
        }
        copy::write_items(
            &expanded.items,
            &dest,
            &st.stack,
            &upper,
            Attrs {
                owner,
                chmod,
                // Build-context files lose setuid/setgid in a Dockerfile's COPY/ADD, as with
                // `buildah bud`; a script's `buildah copy` keeps them, as buildah's verb does.
                strip_setid: from_root.is_none() && layering == plan::Layering::PerStep,
            },
            &root,
            excludes.as_ref(),
            c.parents,
            location,
        )?;
        self.commit_step(ctx, st, &key, Working::Upper(staging), &[], &created_by)
    }

    /// Create the stage's working directory in `upper` when the image lacks it, owned by the
    /// USER in effect at the WORKDIR (root when that user cannot be resolved), as BuildKit does.
    fn ensure_workdir(
        &self,
        ctx: &Ctx<'_>,
        st: &StageState,
        upper: &std::path::Path,
        location: &str,
    ) -> Result<()> {
        let Some(workdir) = st
            .config
            .config
            .working_dir
            .as_deref()
            .filter(|w| !w.is_empty() && *w != "/")
        else {
            return Ok(());
        };
        let (comps, found) = st
            .stack
            .resolve(workdir, true)
            .map_err(|e| BuildError::Step {
                location: location.into(),
                message: format!("WORKDIR {workdir}: {e}"),
            })?;
        if matches!(found, Lookup::Found(..)) {
            return Ok(());
        }
        let user = st
            .workdir_user
            .clone()
            .unwrap_or_else(|| st.config.config.user.clone().unwrap_or_default());
        let owner = if user.is_empty() {
            (0, 0)
        } else {
            let spec = UserSpec::parse(&user).unwrap_or_default();
            let scratch = ctx.scratch.path()?.join("owner-upper");
            user_in(&st.stack, &spec, &scratch).map_or((0, 0), |r| (r.uid, r.gid))
        };
        copy::ensure_dir(&st.stack, upper, &comps, Some(owner), location)?;
        Ok(())
    }

    fn resolve_owner(
        &self,
        ctx: &Ctx<'_>,
        st: &StageState,
        spec: &str,
        location: &str,
    ) -> Result<(u32, u32)> {
        owner_in(
            &st.stack,
            spec,
            &ctx.scratch.path()?.join("owner-upper"),
            location,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        ctx: &mut Ctx<'_>,
        st: &mut StageState,
        stage: u32,
        index: u32,
        run: &plan::RunStep,
        created_by: &str,
        location: &str,
        results: &[Option<StageState>],
    ) -> Result<()> {
        let argv = config::argv(&st.config, &run.command);
        let mut env: Vec<(String, String)> = st
            .config
            .config
            .env
            .clone()
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        for (k, v) in &run.build_args {
            if !env.iter().any(|(ek, _)| ek == k) {
                env.push((k.clone(), v.clone()));
            }
        }
        for (k, v) in &run.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        let network = run
            .network
            .clone()
            .or_else(|| ctx.opts.network.clone())
            .unwrap_or_else(|| "host".into());
        let user = run
            .user
            .clone()
            .or_else(|| st.config.config.user.clone())
            .unwrap_or_default();
        let cwd = run
            .workdir
            .clone()
            .or_else(|| st.config.config.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        let mut mount_digests = Vec::new();
        for m in step_mounts(ctx, run) {
            let mut d = format!("{m:?}");
            if matches!(m.kind, MountType::Bind) {
                d.push_str(&self.bind_source_identity(ctx, m, results)?);
            }
            mount_digests.push(d);
        }
        let injector_names: Vec<String> = ctx
            .injectors
            .iter()
            .map(|(p, _)| p.digest.clone())
            .collect();
        // What the step sees of /etc/hosts and /etc/resolv.conf, when the build changes them.
        let o = ctx.opts;
        let names_changed = o.no_hosts || !o.add_hosts.is_empty() || o.dns != Default::default();
        let mut name_files = if names_changed {
            format!("{}{:?}{:?}", o.no_hosts, o.add_hosts, o.dns)
        } else {
            String::new()
        };
        // The process's capabilities, filter, limits and devices, when the build changes them.
        if !o.process.is_default() {
            name_files.push_str(&format!("{:?}", o.process));
        }
        let key = hash_key(&[
            &st.key,
            "run",
            &format!("{argv:?}"),
            &format!("{env:?}"),
            &network,
            &user,
            &cwd,
            &mount_digests.join(";"),
            &injector_names.join(","),
            &name_files,
        ]);
        if self.cached(ctx, &key, st, created_by) {
            return Ok(());
        }
        // Proxy build args nothing declares, then kiln's own proxy variables (--http-proxy),
        // reach every RUN but are no part of its cache key (a changed proxy does not change what
        // a step makes), as with Docker and buildah.
        let proxy_args = ctx
            .opts
            .build_args
            .iter()
            .filter(|(k, _)| crate::PROXY_VARIABLES.contains(&k.as_str()));
        for (k, v) in proxy_args.chain(&ctx.opts.host_proxy_env) {
            if !env.iter().any(|(ek, _)| ek == k) {
                env.push((k.clone(), v.clone()));
            }
        }
        let t_prep = Instant::now();
        let net = match network.as_str() {
            "host" | "default" => Network::Host,
            // Docker's and BuildKit's `none` is a private namespace whose loopback works.
            "none" => Network::Private,
            "private" => Network::Private,
            other => {
                return Err(BuildError::Step {
                    location: location.into(),
                    message: format!("unknown network mode {other:?} (host, none or private)"),
                });
            }
        };
        let mut mounts = Vec::new();
        let mut volume_copies: Option<tempfile::TempDir> = None;
        let mut secret_env = Vec::new();
        for m in step_mounts(ctx, run) {
            self.run_mount(ctx, st, m, location, results, &mut mounts, &mut secret_env)?;
        }
        self.secret_mounts(
            ctx,
            &cwd,
            run,
            (stage, index, &argv),
            location,
            &mut mounts,
            &mut secret_env,
        )?;
        for (src, target, ro) in &ctx.opts.run_binds {
            if src.is_dir() {
                mounts.push(ExtraMount::BindDir {
                    src: src.clone(),
                    target: target.clone(),
                    readonly: *ro,
                });
            } else {
                mounts.push(ExtraMount::BindFile {
                    src: src.clone(),
                    target: target.clone(),
                    readonly: *ro,
                });
            }
        }
        // Injectors: mounts and env for this step only.
        for (plugin, cfg) in &ctx.injectors {
            let info = StepInfo {
                stage,
                index,
                argv: argv.clone(),
                requested: Vec::new(),
                options: cfg.options.clone(),
                files: cfg.files.clone(),
            };
            let stack = st.stack.clone();
            let reader: kiln_plugin_host::RootfsReadFn =
                Box::new(move |p: &str| Ok(stack.read_file(p)));
            let granted: Vec<String> = Vec::new();
            let t_inject = Instant::now();
            let inj = self.host.inject(plugin, &info, Some(reader), &granted);
            ctx.progress
                .plugin_call(&format!("{}: inject", cfg.name), t_inject.elapsed());
            let inj = inj?;
            for m in inj.mounts {
                let source = match m.content {
                    InjectedContent::Bytes(b) => FileSource::Bytes(b),
                    InjectedContent::Secret(id) => self.secret_source(ctx, &id, location)?,
                };
                mounts.push(ExtraMount::File {
                    target: m.target,
                    source,
                    mode: m.mode,
                    uid: m.uid,
                    gid: m.gid,
                });
            }
            for (k, v) in inj.env {
                env.retain(|(ek, _)| ek != &k);
                env.push((k, v));
            }
        }
        env.extend(secret_env);
        let driver = ctx.opts.storage_driver.unwrap_or_else(|| {
            crate::detected_storage_driver(self.store, |m| ctx.progress.warning(m))
        });
        let working = match driver {
            StorageDriver::Overlay => Working::Upper(self.new_staging()?),
            StorageDriver::Vfs => {
                // The vfs copy is made from the stage's layers.
                self.settle_lazy(ctx, st)?;
                self.vfs_working(st)?
            }
        };
        // A script's `buildah run` sees the config's volumes as buildah's does.
        let volumes: Vec<String> = st
            .config
            .config
            .volumes
            .as_ref()
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
        if ctx.plan.stages[stage as usize].layering != plan::Layering::PerStep
            && !volumes.is_empty()
        {
            let tmp = tempfile::Builder::new()
                .prefix("volumes-")
                .tempdir_in(ctx.scratch.path()?)
                .map_err(|e| BuildError::Io {
                    what: "creating a scratch dir".into(),
                    source: e,
                })?;
            // The directories are made where the step writes: the upper dir over the stack,
            // or the vfs copy, which is a whole filesystem by itself.
            let (view, target) = match &working {
                Working::Upper(staging) => (st.stack.clone(), staging.path().join("upper")),
                Working::Copy { staging, .. } => (
                    LayerStack {
                        dirs: vec![staging.path().to_path_buf()],
                    },
                    staging.path().to_path_buf(),
                ),
            };
            mounts.extend(crate::working::volume_mounts(
                &view,
                &target,
                &volumes,
                tmp.path(),
                location,
            )?);
            volume_copies = Some(tmp);
        }
        let progress = ctx.progress.clone();
        let sref = ctx.step_ref();
        let mut tail = LineTail::new(20);
        let tail_ref = std::cell::RefCell::new(&mut tail);
        let t_run = Instant::now();
        tracing::debug!("{location}: RUN prepared in {:?}", t_prep.elapsed());
        let outcome = {
            let mut spec = RunSpec::new(working.rootfs(&st.stack), argv.clone());
            spec.env = env;
            spec.cwd = cwd;
            spec.user = UserSpec::parse(&user).map_err(|e| BuildError::Step {
                location: location.into(),
                message: format!("USER {user}: {e}"),
            })?;
            spec.network = net;
            spec.mounts = mounts;
            spec.hostname = "kiln".into();
            spec.extra_hosts = ctx.opts.add_hosts.clone();
            spec.dns = ctx.opts.dns.clone();
            spec.no_hosts = ctx.opts.no_hosts;
            spec.confinement = ctx.run_extras.confinement.clone();
            spec.mounts.extend(ctx.run_extras.devices.iter().cloned());
            if ctx.opts.stdin {
                spec.stdin = kiln_sandbox::Input::Inherit;
            }
            // The upper dir becomes a layer (or is deleted) right after the run.
            spec.volatile = true;
            spec.stdout = Output::Callback(Box::new(|b: &[u8]| {
                tail_ref.borrow_mut().push(b);
                progress.output(&sref, Stream::Stdout, b);
            }));
            spec.stderr = Output::Callback(Box::new(|b: &[u8]| {
                tail_ref.borrow_mut().push(b);
                progress.output(&sref, Stream::Stderr, b);
            }));
            kiln_sandbox::run(spec).map_err(|e| BuildError::Sandbox {
                what: "RUN".into(),
                source: e,
            })?
        };
        tracing::debug!("{location}: process ran in {:?}", t_run.elapsed());
        if outcome.status != 0 {
            let lines = tail.lines();
            let tail = if lines.is_empty() {
                String::new()
            } else {
                format!("\nlast output:\n  {}", lines.join("\n  "))
            };
            return Err(BuildError::RunFailed {
                location: location.into(),
                status: outcome.status,
                command: argv.join(" "),
                tail,
            });
        }
        drop(volume_copies);
        self.commit_step(ctx, st, &key, working, &outcome.created_paths, created_by)
    }

    /// A fresh copy of the stage's flattened filesystem for a RUN step (the `vfs` driver).
    fn vfs_working(&self, st: &StageState) -> Result<Working> {
        // One directory is a whole filesystem (a base, or an earlier vfs step's result); more
        // are overlay-style uppers over one, flattened from the layers.
        let lower = if st.stack.dirs.len() == 1 {
            st.stack.dirs[0].clone()
        } else {
            flat_snapshot_reusing(self.store, &st.layers)?
        };
        let staging = self.store.snapshot_staging()?;
        crate::layers::spread_subdirs(staging.path());
        let t_copy = Instant::now();
        let (stamp, stats) =
            kiln_layer::copy_tree(&lower, staging.path()).map_err(|e| BuildError::Layer {
                what: format!("copying {} for a vfs rootfs", lower.display()),
                source: e,
            })?;
        tracing::debug!(
            "vfs: copied {} entries ({} bytes, {} reflinked) in {:?}",
            stats.entries,
            stats.bytes,
            stats.reflinked,
            t_copy.elapsed()
        );
        if stats.chown_failed + stats.xattr_failed + stats.devices_skipped > 0 {
            // Rootless: the copy is made outside the step's user namespace, so owners other
            // than the caller's cannot be set. Untouched files keep the lower's owners in the
            // layer (they are not written), but the step sees them as the caller's.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!(
                    "vfs copy of {}: {} owners, {} xattrs and {} device nodes could not be kept                      (not root); the RUN step sees them as this user's",
                    lower.display(),
                    stats.chown_failed,
                    stats.xattr_failed,
                    stats.devices_skipped
                )
            });
        }
        Ok(Working::Copy {
            lower,
            staging,
            stamp,
        })
    }

    /// What a bind mount shows, for the cache key: the content of a context directory, the key
    /// of a stage, or an image reference.
    fn bind_source_identity(
        &self,
        ctx: &Ctx<'_>,
        m: &plan::RunMount,
        results: &[Option<StageState>],
    ) -> Result<String> {
        let rel = m.source.clone().unwrap_or_default();
        Ok(match &m.from {
            None | Some(CopyFrom::Context) => {
                let root = &ctx.opts.context;
                let inside = std::fs::canonicalize(root.join(rel.trim_start_matches('/')))
                    .ok()
                    .filter(|p| std::fs::canonicalize(root).is_ok_and(|r| p.starts_with(r)));
                match inside {
                    Some(p) => copy::tree_digest(&p)?,
                    None => String::new(),
                }
            }
            Some(CopyFrom::Stage(i)) => results
                .get(*i as usize)
                .and_then(|r| r.as_ref())
                .map(|s| s.key.clone())
                .unwrap_or_default(),
            Some(CopyFrom::Image(r)) => r.clone(),
        })
    }

    fn secret_source(&self, ctx: &Ctx<'_>, id: &str, location: &str) -> Result<FileSource> {
        match ctx
            .opts
            .secrets
            .iter()
            .find(|(sid, _)| sid == id)
            .map(|(_, s)| s)
        {
            Some(SecretSource::File(p)) => Ok(FileSource::HostPath(p.clone())),
            Some(SecretSource::Env(v)) => Ok(FileSource::Bytes(
                std::env::var(v).unwrap_or_default().into_bytes(),
            )),
            None => Err(BuildError::Step {
                location: location.into(),
                message: format!("secret {id:?} was not given (--secret id={id},src=FILE)"),
            }),
        }
    }

    /// The `--run-mount` mounts (checked against the plan), and whether any RUN asks for a secret.
    fn run_extras(&self, opts: &BuildOptions, plan: &BuildPlan) -> Result<RunExtras> {
        for m in &opts.run_mounts {
            if let Some(CopyFrom::Image(r)) = &m.from
                && plan
                    .stages
                    .iter()
                    .any(|s| s.name.as_deref() == Some(r.as_str()))
            {
                return Err(BuildError::Other(format!(
                    "--run-mount from={r} names a stage of this build; --run-mount takes an image or `context` there"
                )));
            }
        }
        let is_secret = |m: &plan::RunMount| matches!(m.kind, MountType::Secret);
        let in_plan = plan
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .any(|step| match &step.kind {
                StepKind::Run(r) => r.mounts.iter().any(is_secret),
                _ => false,
            });
        Ok(RunExtras {
            mounts: opts.run_mounts.clone(),
            wants_secrets: in_plan || opts.run_mounts.iter().any(is_secret),
            secrets: std::sync::OnceLock::new(),
            confinement: opts.process.confinement().map_err(BuildError::Other)?,
            devices: opts.process.device_mounts().map_err(BuildError::Other)?,
        })
    }

    /// The `secrets` injector (loaded on first use).
    fn secrets_injector<'c>(&self, ctx: &'c Ctx<'_>) -> Result<Option<&'c Plugin>> {
        let extras = &ctx.run_extras;
        if let Some(p) = extras.secrets.get() {
            return Ok(Some(p));
        }
        if !extras.wants_secrets {
            return Ok(None);
        }
        let started = Instant::now();
        let (p, _) = self
            .catalog
            .load(self.host, PluginKind::Injector, "secrets")?;
        ctx.progress.plugin_call("secrets: load", started.elapsed());
        Ok(Some(extras.secrets.get_or_init(|| p)))
    }

    /// Secret mounts and `env=` secrets of a RUN (its own and `--run-mount`'s), placed by the
    /// `secrets` injector, which is granted exactly the `--secret` ids and names secrets by handle;
    /// the bytes are filled in here.
    #[allow(clippy::too_many_arguments)]
    fn secret_mounts(
        &self,
        ctx: &Ctx<'_>,
        cwd: &str,
        run: &plan::RunStep,
        (stage, index, argv): (u32, u32, &[String]),
        location: &str,
        mounts: &mut Vec<ExtraMount>,
        env: &mut Vec<(String, String)>,
    ) -> Result<()> {
        let requested: Vec<Vec<(String, String)>> = step_mounts(ctx, run)
            .filter(|m| matches!(m.kind, MountType::Secret))
            .map(|m| secret_request(m, cwd))
            .collect();
        if requested.is_empty() {
            return Ok(());
        }
        let step_err = |message: String| BuildError::Step {
            location: location.into(),
            message,
        };
        let plugin = self.secrets_injector(ctx)?.ok_or_else(|| {
            step_err("secret mounts need the secrets injector, which was not loaded".into())
        })?;
        let info = StepInfo {
            stage,
            index,
            argv: argv.to_vec(),
            requested,
            options: Vec::new(),
            files: Vec::new(),
        };
        let granted: Vec<String> = ctx.opts.secrets.iter().map(|(id, _)| id.clone()).collect();
        let started = Instant::now();
        let inj = self.host.inject(plugin, &info, None, &granted);
        ctx.progress
            .plugin_call("secrets: inject", started.elapsed());
        let inj = inj.map_err(|e| step_err(e.to_string()))?;
        for m in inj.mounts {
            let source = match m.content {
                InjectedContent::Secret(id) => self.secret_source(ctx, &id, location)?,
                InjectedContent::Bytes(b) => FileSource::Bytes(b),
            };
            mounts.push(ExtraMount::File {
                target: m.target,
                source,
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
            });
        }
        for (var, id) in inj.secret_env {
            let bytes = match self.secret_source(ctx, &id, location)? {
                FileSource::Bytes(b) => b,
                FileSource::HostPath(p) => std::fs::read(&p)
                    .map_err(|e| step_err(format!("reading secret {id}: {}: {e}", p.display())))?,
            };
            env.push((var, String::from_utf8_lossy(&bytes).into_owned()));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_mount(
        &self,
        ctx: &Ctx<'_>,
        st: &StageState,
        m: &plan::RunMount,
        location: &str,
        results: &[Option<StageState>],
        mounts: &mut Vec<ExtraMount>,
        env: &mut Vec<(String, String)>,
    ) -> Result<()> {
        let err = |msg: String| BuildError::Step {
            location: location.into(),
            message: msg,
        };
        let cwd = st
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let abs = |t: &str| in_workdir(&cwd, t);
        match m.kind {
            // Placed by the `secrets` injector (see `secret_mounts`).
            MountType::Secret => {}
            MountType::Tmpfs => {
                let target = m
                    .target
                    .clone()
                    .ok_or_else(|| err("tmpfs mount needs a target".into()))?;
                mounts.push(ExtraMount::Tmpfs {
                    target: abs(&target),
                    size: m.size,
                });
            }
            MountType::Cache => {
                let target = abs(&m
                    .target
                    .clone()
                    .ok_or_else(|| err("cache mount needs a target".into()))?);
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let dir = self
                    .store
                    .root()
                    .join("cache-mounts")
                    .join(hash_key(&[&id]));
                if !dir.exists() {
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| err(format!("creating cache mount {id}: {e}")))?;
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(
                        &dir,
                        std::fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
                    );
                    let _ = std::os::unix::fs::chown(
                        &dir,
                        Some(m.uid.unwrap_or(0)),
                        Some(m.gid.unwrap_or(0)),
                    );
                }
                mounts.push(ExtraMount::BindDir {
                    src: dir,
                    target,
                    readonly: false,
                });
            }
            MountType::Bind => {
                let target = abs(&m
                    .target
                    .clone()
                    .ok_or_else(|| err("bind mount needs a target".into()))?);
                let src_rel = m.source.clone().unwrap_or_default();
                let root = match &m.from {
                    None | Some(CopyFrom::Context) => ctx.opts.context.clone(),
                    Some(f) => self
                        .source_root(ctx, f, results)
                        .map_err(|e| at(location, e))?
                        .unwrap_or_else(|| ctx.opts.context.clone()),
                };
                let src = root.join(src_rel.trim_start_matches('/'));
                let canon = std::fs::canonicalize(&src)
                    .map_err(|e| err(format!("bind mount source {src_rel:?}: {e}")))?;
                let root_canon = std::fs::canonicalize(&root)
                    .map_err(|e| err(format!("{}: {e}", root.display())))?;
                if !canon.starts_with(&root_canon) {
                    return Err(err(format!(
                        "bind mount source {src_rel:?} leaves its root"
                    )));
                }
                // A read-write bind sees a throwaway copy: writes never reach the context or
                // the source stage, and vanish after the step (as in BuildKit).
                let src = if m.read_write {
                    let copy = tempfile::Builder::new()
                        .prefix("rw-bind-")
                        .tempdir_in(ctx.scratch.path()?)
                        .map_err(|e| err(format!("bind mount source {src_rel:?}: {e}")))?
                        .keep();
                    let dst = copy.join("src");
                    copy::copy_tree(&canon, &dst)?;
                    dst
                } else {
                    canon
                };
                if src.is_dir() {
                    mounts.push(ExtraMount::BindDir {
                        src,
                        target,
                        readonly: !m.read_write,
                    });
                } else {
                    mounts.push(ExtraMount::BindFile {
                        src,
                        target,
                        readonly: !m.read_write,
                    });
                }
            }
            MountType::Ssh => {
                let id = m.id.clone().unwrap_or_else(|| "default".into());
                let Some(sock) = ctx.ssh.get(&id) else {
                    if m.required {
                        return Err(err(format!(
                            "ssh agent {id:?} is required but was not given (--ssh {id}[=SOCKET|KEY])"
                        )));
                    }
                    return Ok(());
                };
                let target = m
                    .target
                    .clone()
                    .map(|t| abs(&t))
                    .unwrap_or_else(|| "/run/buildkit/ssh_agent.0".into());
                mounts.push(ExtraMount::BindFile {
                    src: sock.clone(),
                    target: target.clone(),
                    readonly: false,
                });
                env.retain(|(k, _)| k != "SSH_AUTH_SOCK");
                env.push(("SSH_AUTH_SOCK".into(), target));
            }
        }
        Ok(())
    }

    /// The layer the build cache recorded under `key` (`Some(None)`: none was made), when the
    /// cache is in use and the layer's blob is still in the store.
    fn cached_layer(&self, ctx: &Ctx<'_>, key: &str) -> Option<Option<LayerRef>> {
        if !ctx.opts.layers || ctx.opts.no_cache {
            return None;
        }
        let layer: Option<LayerRef> = serde_json::from_value(self.store.cache_get(key)?).ok()?;
        layer
            .as_ref()
            .is_none_or(|l| self.store.has_blob(&l.digest))
            .then_some(layer)
    }

    /// Record `layer` under `key` in the build cache, when the cache is in use.
    fn cache_layer(&self, ctx: &Ctx<'_>, key: &str, layer: Option<&LayerRef>) -> Result<()> {
        if ctx.opts.layers && !ctx.opts.no_cache {
            let v = serde_json::to_value(layer).map_err(|e| BuildError::Other(e.to_string()))?;
            self.store.cache_put(key, &v)?;
        }
        Ok(())
    }

    /// The stage's whole filesystem as its only layer, and its last history entry as the only
    /// one (carrying that layer): `--squash`, and a script's `commit --squash`. The squashed
    /// layer is cached like a step.
    fn squash(&self, ctx: &Ctx<'_>, st: &mut StageState) -> Result<()> {
        let layers: Vec<String> = st.layers.iter().map(|l| l.digest.to_string()).collect();
        let key = format!(
            "squash-{}",
            hash_key(&[
                CACHE_EPOCH,
                "squash",
                &layers.join(","),
                &format!("{:?}", ctx.opts.timestamp),
            ])
        );
        let one = match self.cached_layer(ctx, &key) {
            Some(one) => one,
            None => {
                let flat = flat_snapshot(self.store, &st.layers)?;
                let one = layer_from_upper(self.store, &flat, &[], &[], ctx.opts.timestamp, true)?;
                self.cache_layer(ctx, &key, one.as_ref())?;
                one
            }
        };
        st.layers = one.into_iter().collect();
        st.config.rootfs.diff_ids = st.layers.iter().map(|l| l.diff_id).collect();
        let last = st.config.history.pop();
        st.config.history = last.into_iter().collect();
        for h in &mut st.config.history {
            h.empty_layer = st.layers.is_empty();
        }
        Ok(())
    }

    /// A step the local cache does not have, answered by a `--cache-from` repository: its cache
    /// image must hold this stage's layers and at most one more (the step's), which is fetched
    /// and applied to a flattened copy of the stage's filesystem. The answer is kept in the
    /// local cache. Any failure (unreachable registry, foreign entry) is a miss.
    fn remote_cached(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        st: &mut StageState,
        created_by: &str,
    ) -> bool {
        if ctx.opts.cache_from.is_empty() || !ctx.opts.layers || !st.lazy.is_empty() {
            return false;
        }
        let cache = ctx.registry_cache.clone();
        for repo in &ctx.opts.cache_from {
            if cache.failed.lock().map_or(true, |f| f.contains(repo)) {
                continue;
            }
            match self.remote_step(ctx, &cache, repo, key, st, created_by) {
                Ok(true) => return record_hit(ctx, st, key),
                Ok(false) => {}
                // The registry cannot be reached or refuses us: do not ask it again.
                Err(BuildError::Registry(
                    e @ (kiln_registry::Error::Network { .. }
                    | kiln_registry::Error::Unauthorized { .. }
                    | kiln_registry::Error::Status { .. }),
                )) => {
                    ctx.progress.warning(&format!(
                        "--cache-from {repo}: {e} (not asked again in this build)"
                    ));
                    if let Ok(mut f) = cache.failed.lock() {
                        f.insert(repo.clone());
                    }
                }
                // A foreign or damaged entry, or trouble storing it: this step is a miss.
                Err(e) => ctx
                    .progress
                    .warning(&format!("--cache-from {repo}: cache image {key}: {e}")),
            }
        }
        false
    }

    fn remote_step(
        &self,
        ctx: &Ctx<'_>,
        cache: &RegistryCache,
        repo: &str,
        key: &str,
        st: &mut StageState,
        created_by: &str,
    ) -> Result<bool> {
        let client = cache.client(&self.registry).map_err(BuildError::Other)?;
        let Some(found) = client.find_cache_image(repo, key)? else {
            return Ok(false);
        };
        let config: ImageConfig = serde_json::from_slice(&found.config)
            .map_err(|e| BuildError::Other(format!("cache image {repo}:{key}: config: {e}")))?;
        if let Some(ttl) = ctx.opts.cache_ttl {
            let created = config
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
            let young = created.is_some_and(|c| {
                (chrono::Utc::now() - c.with_timezone(&chrono::Utc))
                    .to_std()
                    .is_ok_and(|age| age < ttl)
            });
            if !young {
                tracing::debug!("cache image {repo}:{key} is older than --cache-ttl");
                return Ok(false);
            }
        }
        let diff_ids = &config.rootfs.diff_ids;
        let n = st.layers.len();
        let ours: Vec<Digest> = st.layers.iter().map(|l| l.diff_id).collect();
        if diff_ids.len() != found.layers.len()
            || !(n..=n + 1).contains(&found.layers.len())
            || diff_ids[..n] != ours[..]
        {
            tracing::debug!("cache image {repo}:{key} does not continue this stage's layers");
            return Ok(false);
        }
        let layer = match found.layers.get(n) {
            None => None,
            Some(desc) => {
                if !media_types::is_layer(&desc.media_type) {
                    return Ok(false);
                }
                client.fetch_cache_layer(self.store, repo, desc)?;
                let l = LayerRef {
                    digest: desc.digest,
                    diff_id: diff_ids[n],
                    size: desc.size,
                    media_type: desc.media_type.clone(),
                };
                // The config's word for the uncompressed digest names snapshots and goes into
                // the image: check it. A plain-tar layer is compressed as a local one would be.
                let plain = l.media_type == media_types::OCI_LAYER_TAR;
                Some(if plain && layers_exported(ctx) {
                    gzip_layer(self.store, &l)?
                } else {
                    verify_diff_id(self.store, &l)?;
                    l
                })
            }
        };
        // Everything that can fail comes before the stage changes.
        let flat = match &layer {
            None => None,
            Some(l) => {
                let mut chain = st.layers.clone();
                chain.push(l.clone());
                let dir = crate::layers::flat_snapshot_reusing(self.store, &chain)?;
                Some((dir, flat_key(&chain)))
            }
        };
        self.store.cache_put(
            &format!("step-{key}"),
            &serde_json::json!({ "layer": layer, "snapshot": flat.as_ref().map(|f| &f.1) }),
        )?;
        if let (Some(l), Some((dir, _))) = (&layer, flat) {
            st.stack = LayerStack { dirs: vec![dir] };
            st.config.rootfs.diff_ids.push(l.diff_id);
            st.layers.push(l.clone());
        }
        push_history(&mut st.config, &ctx.created, created_by, layer.is_none());
        tracing::debug!("{created_by}: answered by cache image {repo}:{key}");
        Ok(true)
    }

    /// Push the steps this build ran to the `--cache-to` repositories. A failure is reported
    /// and does not fail the build (its image is made).
    fn push_cache_images(&self, ctx: &Ctx<'_>) {
        let pushes = match ctx.registry_cache.pushes.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return,
        };
        if pushes.is_empty() {
            return;
        }
        let client = match ctx.registry_cache.client(&self.registry) {
            Ok(c) => c,
            Err(e) => {
                ctx.progress.warning(&format!("--cache-to: {e}"));
                return;
            }
        };
        for repo in &ctx.opts.cache_to {
            for p in &pushes {
                // Created now, for `--cache-ttl` of the builds that read it.
                let mut config = p.config.clone();
                config.created = Some(rfc3339(chrono::Utc::now().timestamp()));
                let pushed = image_manifest(self.store, config, &p.layers, Format::Oci, &[])
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        client
                            .push_cache_image(self.store, repo, &p.key, &m.to_vec())
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = pushed {
                    ctx.progress.warning(&format!(
                        "--cache-to {repo}: pushing the cache image of a step: {e}"
                    ));
                    break;
                }
            }
        }
    }

    fn commit_image(&self, ctx: &Ctx<'_>, mut st: StageState) -> Result<ImageRecord> {
        let opts = ctx.opts;
        self.settle_lazy(ctx, &mut st)?;
        if opts.squash {
            self.squash(ctx, &mut st)?;
        }
        let mut config = st.config.clone();
        if opts.omit_history {
            config.history.clear();
        }
        for k in &opts.unset_env {
            config.config.env_unset(k);
        }
        for (k, v) in &opts.labels {
            config
                .config
                .labels
                .get_or_insert_with(Default::default)
                .insert(k.clone(), v.clone());
        }
        config.created = Some(ctx.created.clone());
        if opts.format == Format::Oci {
            config::strip_docker_only(&mut config);
        }
        // The source's own names (`buildah commit CTR NAME`) apply when the build names none.
        let tags = if opts.tags.is_empty() {
            &ctx.plan.names
        } else {
            &opts.tags
        };
        let names: Vec<&str> = tags.iter().map(String::as_str).collect();
        // The base image, as buildah notes it (what the build or a config step sets wins).
        let mut annotations: Vec<(String, String)> = match &st.base {
            Some((name, digest)) => base_annotations(name, digest),
            None => Vec::new(),
        };
        annotations.extend(st.commit.annotations.clone());
        annotations.extend(opts.annotations.iter().cloned());
        // An image that differs from one this store already has only in this build's timestamps
        // is that image (as buildah tags the cached image of a build whose steps all hit).
        let use_cache = opts.layers && !opts.no_cache;
        let key = format!(
            "commit-{}",
            commit_key(&config, &ctx.created, &st.layers, opts.format, &annotations)
        );
        if use_cache
            && let Some(manifest) = self.store.cache_get(&key).and_then(|v| {
                v["manifest"]
                    .as_str()
                    .and_then(|d| d.parse::<Digest>().ok())
            })
            && let Ok(bytes) = self.store.read_blob(&manifest)
        {
            match self.store.put_image(&bytes, &names) {
                Ok(rec) => return Ok(rec),
                Err(e) => tracing::debug!("reusing image {manifest}: {e}"),
            }
        }
        let rec = write_image(
            self.store,
            config,
            &st.layers,
            opts.format,
            &annotations,
            &names,
        )?;
        if opts.layers {
            self.store.cache_put(
                &key,
                &serde_json::json!({ "manifest": rec.manifest_digest.to_string() }),
            )?;
        }
        Ok(rec)
    }
}

/// The cache key of an image commit: its config with this build's timestamps (`created`) left
/// out, its layers, format and manifest annotations.
fn commit_key(
    config: &ImageConfig,
    created: &str,
    layers: &[LayerRef],
    format: Format,
    annotations: &[(String, String)],
) -> String {
    let mut c = config.clone();
    let this_build = |t: &Option<String>| t.as_deref() == Some(created);
    if this_build(&c.created) {
        c.created = None;
    }
    for h in &mut c.history {
        if this_build(&h.created) {
            h.created = None;
        }
    }
    let layers: Vec<String> = layers
        .iter()
        .map(|l| format!("{}:{}:{}", l.digest, l.diff_id, l.media_type))
        .collect();
    let annotations: Vec<String> = annotations
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    hash_key(&[
        CACHE_EPOCH,
        "commit",
        &String::from_utf8_lossy(&c.to_vec()),
        &layers.join(","),
        &format!("{format:?}"),
        &annotations.join("\n"),
    ])
}

/// Find `reference` in the store, or pull it (for `platform`) as `pull` allows; returns the image
/// record, its config, its layers and its flattened filesystem (unpacked while it downloads when
/// it is pulled now and has one layer, see [`EarlyUnpack`]). Shared by FROM, `COPY --from=IMAGE`
/// and `kiln from`.
pub(crate) fn find_or_pull(
    store: &Store,
    registry: &ClientOptions,
    reference: &str,
    platform: &Platform,
    platform_required: bool,
    pull: PullPolicy,
    quiet: bool,
) -> Result<(ImageRecord, ImageConfig, Vec<LayerRef>, PathBuf)> {
    let early = EarlyUnpack::new(store);
    let found = find_or_pull_teeing(
        store,
        registry,
        reference,
        platform,
        platform_required,
        pull,
        quiet,
        &|l| early.tee(l),
    );
    let unpacked = early.finish(found.as_ref().ok().map(|(_, _, l)| &l[..]));
    let (img, config, layers) = found?;
    let flat = match unpacked {
        Some(p) => p,
        None => flat_snapshot(store, &layers)?,
    };
    Ok((img, config, layers, flat))
}

/// [`find_or_pull`] without the flattening: a pull hands each layer's bytes to `tee`.
#[allow(clippy::too_many_arguments)]
fn find_or_pull_teeing(
    store: &Store,
    registry: &ClientOptions,
    reference: &str,
    platform: &Platform,
    platform_required: bool,
    pull: PullPolicy,
    quiet: bool,
    tee: &kiln_registry::LayerTee<'_>,
) -> Result<(ImageRecord, ImageConfig, Vec<LayerRef>)> {
    let local = store.resolve_image(reference).ok();
    // With a platform asked for (`--platform`, `FROM --platform`), a stored image of another
    // platform (pulled for an earlier build) is not the base.
    let platform_of = |img: &ImageRecord| {
        store.image_config(img).ok().map(|c| Platform {
            os: c.os,
            architecture: c.architecture,
            variant: c.variant,
            ..Platform::host()
        })
    };
    let wrong = |img: &ImageRecord| {
        platform_required && platform_of(img).is_some_and(|p| !p.matches(platform))
    };
    let img = match (local, pull) {
        (Some(img), PullPolicy::Never) if wrong(&img) => {
            return Err(BuildError::Other(format!(
                "base image {reference} in the store is for {}, not {platform}, and --pull=never",
                platform_of(&img).map(|p| p.to_string()).unwrap_or_default()
            )));
        }
        (Some(img), PullPolicy::Missing | PullPolicy::Never) if !wrong(&img) => img,
        (None, PullPolicy::Never) => {
            return Err(BuildError::Other(format!(
                "base image {reference} is not in the store and --pull=never"
            )));
        }
        _ => {
            let mut o = registry.clone();
            o.platform = platform.clone();
            if quiet {
                o.progress = kiln_registry::Progress::Quiet;
            }
            let client = RegistryClient::new(o)?;
            client
                .pull_platform_teeing(store, reference, platform, tee)?
                .record
        }
    };
    if wrong(&img) {
        tracing::warn!(
            "base image {reference} is not for {platform}: its config names {}",
            platform_of(&img).map(|p| p.to_string()).unwrap_or_default()
        );
    }
    let manifest = store.image_manifest(&img)?;
    let config = store.image_config(&img)?;
    let layers = manifest
        .layers
        .iter()
        .zip(config.rootfs.diff_ids.iter())
        .map(|(d, diff)| LayerRef {
            digest: d.digest,
            diff_id: *diff,
            size: d.size,
            media_type: d.media_type.clone(),
        })
        .collect();
    Ok((img, config, layers))
}

/// How owners on the host map back to the image's owners: the inverse of the user namespace RUN
/// steps get. Real root writes owners unchanged; a rootless caller's own id is the image's root.
fn image_owners() -> kiln_layer::OwnerMap {
    static OWNERS: std::sync::OnceLock<kiln_layer::OwnerMap> = std::sync::OnceLock::new();
    OWNERS
        .get_or_init(|| match kiln_sandbox::IdMap::detect(kiln_sandbox::UserNs::Auto) {
            Ok(map)
                if matches!(
                    map.kind,
                    kiln_sandbox::IdMapKind::SubIds | kiln_sandbox::IdMapKind::Single
                ) =>
            {
                let ranges = |rs: &[kiln_sandbox::IdRange]| {
                    rs.iter().map(|r| (r.container, r.host, r.size)).collect()
                };
                kiln_layer::OwnerMap {
                    uids: ranges(&map.uids),
                    gids: ranges(&map.gids),
                }
            }
            _ => kiln_layer::OwnerMap::default(),
        })
        .clone()
}

/// Where a COPY/ADD destination lands: relative paths are under the working directory (`/` when
/// none is set), and a trailing `/` (meaning "into this directory") is kept.
pub(crate) fn copy_destination(working_dir: Option<&str>, dest: &str) -> String {
    let workdir = working_dir.filter(|w| !w.is_empty()).unwrap_or("/");
    let mut out = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), dest)
    };
    if dest.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Diff an overlay `upper` directory (over `lower`, topmost first) into a gzip layer blob in the
/// store; `None` when it holds no changes, unless `keep_empty` (an empty layer is written then, as
/// buildah's commit does). `exclude` lists rootfs paths left out (mount-point stubs); `timestamp`
/// clamps file times for reproducible layers.
pub(crate) fn layer_from_upper(
    store: &Store,
    upper: &std::path::Path,
    exclude: &[PathBuf],
    lower: &[PathBuf],
    timestamp: Option<i64>,
    keep_empty: bool,
) -> Result<Option<LayerRef>> {
    layer_from_upper_as(
        store,
        upper,
        exclude,
        lower,
        timestamp,
        keep_empty,
        kiln_layer::Compression::Gzip,
    )
}

/// [`layer_from_upper`] with a choice of compression: `None` gives a plain tar blob
/// ([`media_types::OCI_LAYER_TAR`]), for layers that never go into an image as they are.
pub(crate) fn layer_from_upper_as(
    store: &Store,
    upper: &std::path::Path,
    exclude: &[PathBuf],
    lower: &[PathBuf],
    timestamp: Option<i64>,
    keep_empty: bool,
    compression: kiln_layer::Compression,
) -> Result<Option<LayerRef>> {
    let dopts = kiln_layer::DiffOptions {
        source_date_epoch: timestamp,
        lower: lower.to_vec(),
        owners: image_owners(),
        ..Default::default()
    };
    write_layer(store, upper, keep_empty, compression, |w| {
        kiln_layer::diff_overlay_upper(upper, exclude, &dopts, w)
    })
}

/// Like [`layer_from_upper_as`] for a changed copy `tree` of `lower` (the `vfs` driver, see
/// [`kiln_layer::diff_tree`]); `None` when nothing changed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_from_tree(
    store: &Store,
    lower: &std::path::Path,
    tree: &std::path::Path,
    stamp: Option<&kiln_layer::CopyStamp>,
    exclude: &[PathBuf],
    timestamp: Option<i64>,
    keep_empty: bool,
    compression: kiln_layer::Compression,
) -> Result<Option<LayerRef>> {
    let dopts = kiln_layer::DiffOptions {
        source_date_epoch: timestamp,
        owners: image_owners(),
        ..Default::default()
    };
    write_layer(store, tree, keep_empty, compression, |w| {
        kiln_layer::diff_tree(lower, tree, stamp, exclude, &dopts, w)
    })
}

/// Stream the tar `diff` writes through a [`kiln_layer::LayerWriter`] into a new blob.
fn write_layer(
    store: &Store,
    what: &std::path::Path,
    keep_empty: bool,
    compression: kiln_layer::Compression,
    diff: impl FnOnce(&mut dyn std::io::Write) -> kiln_layer::Result<kiln_layer::DiffStats>,
) -> Result<Option<LayerRef>> {
    let blob = store.layer_blob_writer()?;
    let mut lw = kiln_layer::LayerWriter::new(blob, compression).map_err(|e| BuildError::Io {
        what: "starting a layer".into(),
        source: e,
    })?;
    let stats = diff(&mut lw).map_err(|e| BuildError::Layer {
        what: format!("committing {}", what.display()),
        source: e,
    })?;
    if stats.is_empty() && !keep_empty {
        return Ok(None);
    }
    let (d, blob) = lw.finish_into_inner().map_err(|e| BuildError::Io {
        what: "finishing a layer".into(),
        source: e,
    })?;
    blob.commit(&d.digest)?;
    Ok(Some(LayerRef {
        digest: d.digest,
        diff_id: d.diff_id,
        size: d.size,
        media_type: match compression {
            kiln_layer::Compression::None => media_types::OCI_LAYER_TAR,
            _ => media_types::OCI_LAYER_GZIP,
        }
        .to_string(),
    }))
}

/// Whether the layers the current stage commits can end up in the built image: those of the
/// target and of the stages it is based on (`FROM stage`), and those of stages that are not
/// built step by step (folded into one layer afterwards). Other stages are only read through
/// their snapshots (`COPY --from`, `RUN --mount=from=`), so their steps make no layer until one
/// is needed ([`LazyLayer`]), and then a plain tar: making (and compressing) a large layer
/// nobody exports was most of such a step's commit time.
fn layers_exported(ctx: &Ctx<'_>) -> bool {
    let plan = ctx.plan;
    // Cache images pushed to `--cache-to` carry every stage's layers.
    if !ctx.opts.cache_to.is_empty() {
        return true;
    }
    if plan.stages[ctx.stage as usize].layering != plan::Layering::PerStep {
        return true;
    }
    let mut s = plan.target;
    for _ in 0..=plan.stages.len() {
        if s == ctx.stage {
            return true;
        }
        match plan.stages[s as usize].base {
            plan::Base::Stage(i) => s = i,
            _ => return false,
        }
    }
    true
}

/// Check that layer `l`'s blob in the store decompresses to its diff_id.
fn verify_diff_id(store: &Store, l: &LayerRef) -> Result<()> {
    let io_err = |e| BuildError::Io {
        what: format!("reading layer {}", l.digest),
        source: e,
    };
    let blob = store.open_blob(&l.digest)?;
    let tar = kiln_layer::decompress(std::io::BufReader::new(blob)).map_err(io_err)?;
    let (got, _) = Digest::of_reader(tar).map_err(io_err)?;
    check_diff_id(l, got)
}

/// An error unless `got`, the digest of layer `l`'s uncompressed tar, is its diff_id.
fn check_diff_id(l: &LayerRef, got: Digest) -> Result<()> {
    if got != l.diff_id {
        return Err(BuildError::Other(format!(
            "layer {} does not hash to its diff_id {} (it gives {got})",
            l.digest, l.diff_id
        )));
    }
    Ok(())
}

/// A gzip copy of the plain-tar layer `l` in the store (same diff_id).
fn gzip_layer(store: &Store, l: &LayerRef) -> Result<LayerRef> {
    let mut src = store.open_blob(&l.digest)?;
    let blob = store.layer_blob_writer()?;
    let io_err = |what: &str| {
        let what = format!("{what} {}", l.digest);
        move |e| BuildError::Io { what, source: e }
    };
    let mut lw = kiln_layer::LayerWriter::new(blob, kiln_layer::Compression::Gzip)
        .map_err(io_err("compressing layer"))?;
    std::io::copy(&mut src, &mut lw).map_err(io_err("compressing layer"))?;
    let (d, blob) = lw
        .finish_into_inner()
        .map_err(io_err("compressing layer"))?;
    check_diff_id(l, d.diff_id)?;
    blob.commit(&d.digest)?;
    Ok(LayerRef {
        digest: d.digest,
        diff_id: d.diff_id,
        size: d.size,
        media_type: media_types::OCI_LAYER_GZIP.to_string(),
    })
}

/// Write `config` (its diff_ids set from `layers`) and a manifest in `format` into the store and
/// record the image under `names`. `annotations` go on an OCI manifest.
pub(crate) fn write_image(
    store: &Store,
    config: ImageConfig,
    layers: &[LayerRef],
    format: Format,
    annotations: &[(String, String)],
    names: &[&str],
) -> Result<ImageRecord> {
    let manifest_bytes = image_manifest(store, config, layers, format, annotations)?.to_vec();
    store.put_blob_bytes(&manifest_bytes)?;
    Ok(store.put_image(&manifest_bytes, names)?)
}

/// The manifest of an image of `config` (its diff_ids set from `layers`) and `layers`; the config
/// blob is stored.
fn image_manifest(
    store: &Store,
    mut config: ImageConfig,
    layers: &[LayerRef],
    format: Format,
    annotations: &[(String, String)],
) -> Result<Manifest> {
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id).collect();
    let config_bytes = config.to_vec();
    let config_digest = store.put_blob_bytes(&config_bytes)?;
    let config_mt = match format {
        Format::Oci => media_types::OCI_CONFIG,
        Format::Docker => media_types::DOCKER_CONFIG,
    };
    // Each layer keeps its own compression (a base image's may be zstd or plain), named as
    // `format` names it.
    let descs: Vec<Descriptor> = layers
        .iter()
        .map(|l| {
            let c = media_types::layer_compression(&l.media_type)
                .unwrap_or(kiln_core::Compression::Gzip);
            let mt = match format {
                Format::Oci => media_types::oci_layer_type(c),
                Format::Docker => media_types::docker_layer_type(c),
            };
            Descriptor::new(mt, l.digest, l.size)
        })
        .collect();
    let config_desc = Descriptor::new(config_mt, config_digest, config_bytes.len() as u64);
    let mut manifest = match format {
        Format::Oci => Manifest::new_oci(config_desc, descs),
        Format::Docker => Manifest::new_docker(config_desc, descs),
    };
    if !annotations.is_empty() && format == Format::Oci {
        let a = manifest.annotations.get_or_insert_with(Default::default);
        for (k, v) in annotations {
            a.insert(k.clone(), v.clone());
        }
    }
    Ok(manifest)
}

/// The manifest annotations naming the image an image is built on (`name`, manifest `digest`),
/// as buildah writes them.
pub(crate) fn base_annotations(name: &str, digest: &Digest) -> Vec<(String, String)> {
    vec![
        (
            "org.opencontainers.image.base.digest".into(),
            digest.to_string(),
        ),
        (
            "org.opencontainers.image.base.name".into(),
            name.to_string(),
        ),
    ]
}

/// The (uid, gid) of a `--chown` spec in the filesystem `stack`: a bare numeric uid is also the
/// gid (Docker, BuildKit and buildah agree); a name is looked up in the stack's /etc/passwd and
/// /etc/group. `scratch` is an empty directory usable as an overlay upper for the lookup.
pub(crate) fn owner_in(
    stack: &LayerStack,
    spec: &str,
    scratch: &std::path::Path,
    location: &str,
) -> Result<(u32, u32)> {
    if let Ok(uid) = spec.trim().parse::<u32>() {
        return Ok((uid, uid));
    }
    let user = UserSpec::parse(spec).map_err(|e| BuildError::Step {
        location: location.into(),
        message: format!("--chown={spec}: {e}"),
    })?;
    let r = user_in(stack, &user, scratch).map_err(|e| BuildError::Step {
        location: location.into(),
        message: format!("--chown={spec}: {e}"),
    })?;
    Ok((r.uid, r.gid))
}

/// `user` resolved against the /etc/passwd and /etc/group of the filesystem `stack`; `scratch`
/// (made when missing) is an empty directory usable as an overlay upper for the lookup.
fn user_in(
    stack: &LayerStack,
    user: &UserSpec,
    scratch: &std::path::Path,
) -> std::result::Result<kiln_sandbox::ResolvedUser, kiln_sandbox::Error> {
    let _ = std::fs::create_dir_all(scratch);
    let rootfs = Rootfs::Overlay {
        lowers: stack.dirs.clone(),
        upper: scratch.to_path_buf(),
        work: scratch.to_path_buf(),
    };
    kiln_sandbox::resolve_user(&rootfs, user)
}

/// The SSH agents of a build (`--ssh`): forwarded sockets, and agents kiln started itself for
/// key files (stopped when the build ends).
/// The build's scratch directory in the store's `tmp/`, made when a step first needs it (a build
/// whose steps all come from the cache makes none) and removed when the build ends.
struct Scratch {
    parent: PathBuf,
    dir: std::sync::OnceLock<tempfile::TempDir>,
}

impl Scratch {
    fn path(&self) -> Result<&std::path::Path> {
        if let Some(d) = self.dir.get() {
            return Ok(d.path());
        }
        let made = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&self.parent)
            .map_err(|e| BuildError::Io {
                what: "creating a scratch dir".into(),
                source: e,
            })?;
        // Another stage's thread may have made one first: then `made` is removed unused.
        Ok(self.dir.get_or_init(|| made).path())
    }
}

struct SshAgents {
    sockets: std::collections::BTreeMap<String, PathBuf>,
    started: Vec<std::process::Child>,
}

impl SshAgents {
    fn start(ssh: &[(String, Vec<PathBuf>)], scratch: &Scratch) -> Result<SshAgents> {
        use std::os::unix::fs::FileTypeExt;
        let mut agents = SshAgents {
            sockets: Default::default(),
            started: Vec::new(),
        };
        let bad = |id: &str, msg: String| BuildError::Other(format!("--ssh {id}: {msg}"));
        for (n, (id, paths)) in ssh.iter().enumerate() {
            let is_socket =
                |p: &PathBuf| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket());
            let sock = match paths.as_slice() {
                [] => {
                    let p = std::env::var_os("SSH_AUTH_SOCK")
                        .map(PathBuf::from)
                        .ok_or_else(|| bad(id, "SSH_AUTH_SOCK is not set".into()))?;
                    if !is_socket(&p) {
                        return Err(bad(id, format!("{} is not a socket", p.display())));
                    }
                    p
                }
                [p] if is_socket(p) => p.clone(),
                keys => {
                    let sock = scratch.path()?.join(format!("ssh-agent.{n}.sock"));
                    let child = std::process::Command::new("ssh-agent")
                        .arg("-D")
                        .arg("-a")
                        .arg(&sock)
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .map_err(|e| bad(id, format!("starting ssh-agent: {e}")))?;
                    agents.started.push(child);
                    let t0 = Instant::now();
                    while !is_socket(&sock) {
                        if t0.elapsed() > std::time::Duration::from_secs(10) {
                            return Err(bad(id, "ssh-agent did not start".into()));
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    for k in keys {
                        let o = std::process::Command::new("ssh-add")
                            .arg("-q")
                            .arg(k)
                            .env("SSH_AUTH_SOCK", &sock)
                            .stdin(std::process::Stdio::null())
                            .output()
                            .map_err(|e| bad(id, format!("running ssh-add: {e}")))?;
                        if !o.status.success() {
                            return Err(bad(
                                id,
                                format!(
                                    "ssh-add {}: {}",
                                    k.display(),
                                    String::from_utf8_lossy(&o.stderr).trim()
                                ),
                            ));
                        }
                    }
                    sock
                }
            };
            agents.sockets.insert(id.clone(), sock);
        }
        Ok(agents)
    }
}

impl Drop for SshAgents {
    fn drop(&mut self) {
        for c in &mut self.started {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Give an error that does not name its Dockerfile line the step's `location`.
fn at(location: &str, e: BuildError) -> BuildError {
    match e {
        BuildError::Step { .. } | BuildError::RunFailed { .. } | BuildError::Frontend(_) => e,
        other => BuildError::Step {
            location: location.to_string(),
            message: other.to_string(),
        },
    }
}

/// Append a history entry; it names the image's author (MAINTAINER), as buildah's do.
fn push_history(config: &mut ImageConfig, created: &str, created_by: &str, empty: bool) {
    config.history.push(History {
        created: Some(created.to_string()),
        created_by: Some(created_by.to_string()),
        author: config.author.clone().filter(|a| !a.is_empty()),
        empty_layer: empty,
        ..Default::default()
    });
}

fn display_step(step: &plan::Step, display: &str) -> String {
    match &step.kind {
        StepKind::Run(_) => {
            // `|N K=V… COMMAND` when build args apply: drop the count and the N pairs.
            let display = match display.strip_prefix('|').and_then(|r| r.split_once(' ')) {
                Some((n, rest)) => match n.parse::<usize>() {
                    Ok(n) => rest.splitn(n + 1, ' ').last().unwrap_or(rest),
                    Err(_) => display,
                },
                None => display,
            };
            let s = display.trim_start_matches(|c: char| c != '/').to_string();
            format!("RUN {}", s.strip_prefix("/bin/sh -c ").unwrap_or(&s))
        }
        _ => display.to_string(),
    }
}

/// buildah writes `COPY file:<sha256> in /dest` in history.
fn summarize_copy(created_by: &str, expanded: &copy::Expanded) -> String {
    let kind = if expanded.items.len() > 1 {
        "multi"
    } else if expanded.items.first().is_some_and(|i| i.contents_of_dir) {
        "dir"
    } else {
        "file"
    };
    for verb in ["COPY ", "ADD "] {
        if let (Some(a), Some(b)) = (created_by.find(verb), created_by.rfind(" in "))
            && a + verb.len() <= b
        {
            return format!(
                "{}{kind}:{}{}",
                &created_by[..a + verb.len()],
                expanded.digest,
                &created_by[b..]
            );
        }
    }
    created_by.to_string()
}

fn render_diagnostic(d: &plan::Diagnostic) -> String {
    let sev = match d.severity {
        plan::Severity::Error => "error",
        plan::Severity::Warning => "warning",
    };
    match &d.location {
        Some(l) => format!("{}:{}:{}: {sev}: {}", l.file, l.line, l.column, d.message),
        None => format!("{sev}: {}", d.message),
    }
}

/// Stages the target depends on (itself included).
fn needed_stages(plan: &BuildPlan) -> BTreeSet<u32> {
    let mut need = BTreeSet::new();
    let mut todo = vec![plan.target];
    while let Some(i) = todo.pop() {
        if !need.insert(i) {
            continue;
        }
        todo.extend(stage_deps(&plan.stages[i as usize]));
    }
    need
}

/// The stages a stage reads from: its base, `COPY --from` and `RUN --mount=from=` stages.
fn stage_deps(s: &plan::Stage) -> BTreeSet<u32> {
    let mut deps = BTreeSet::new();
    if let plan::Base::Stage(b) = s.base {
        deps.insert(b);
    }
    for step in &s.steps {
        match &step.kind {
            StepKind::Copy(c) => {
                if let CopyFrom::Stage(b) = c.from {
                    deps.insert(b);
                }
            }
            StepKind::Run(r) => {
                for m in &r.mounts {
                    if let Some(CopyFrom::Stage(b)) = m.from {
                        deps.insert(b);
                    }
                }
            }
            _ => {}
        }
    }
    deps
}

/// Whether stage `a` needs stage `b`, directly or through others.
fn depends_on(deps: &[BTreeSet<u32>], a: u32, b: u32) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![a];
    while let Some(i) = todo.pop() {
        if !seen.insert(i) {
            continue;
        }
        for &d in &deps[i as usize] {
            if d == b {
                return true;
            }
            todo.push(d);
        }
    }
    false
}
