//! kiln's WebAssembly plugin host: the only crate that links wasmtime.
//!
//! It loads plugin components (refusing any that import something kiln does not provide),
//! caches their compiled code on disk, and calls them with a fresh `Store` per invocation under
//! a memory cap, a wasm stack cap and a wall-clock deadline (epoch interruption). Traps and
//! timeouts become [`HostError`]s naming the plugin and what it was doing; guest log lines go to
//! `tracing` under the plugin's name.

mod beneath;
mod bindings;
mod cache;
mod catalog;
mod codec;
mod error;
mod state;

pub use cache::{CacheOutcome, CompileCache};
pub use catalog::{Catalog, CatalogEntry, PluginSource};
pub use error::{HostError, Result};
pub use state::{BlobReaderRes, FinishedBlob, ImageConfigFn, MAX_CODEC_PENDING, RootfsReadFn};

/// The build plan types a frontend returns (generated from the WIT).
pub use bindings::frontend::kiln::plugin::plan;
/// Shared WIT types (descriptor, plugin error, log level).
pub use bindings::exporter::kiln::plugin::types;
/// The frontend request record.
pub use bindings::frontend::exports::kiln::plugin::frontend::Request as FrontendRequest;
/// What an injector is told about a step.
pub use bindings::injector::exports::kiln::plugin::mount_injector::StepInfo;
/// Writer compression.
pub use bindings::exporter::kiln::plugin::blobs::Compression;

use bindings::exporter::ExporterPluginPre;
use bindings::frontend::FrontendPluginPre;
use bindings::injector::MountInjectorPluginPre;
use sha2::Digest as _;
use state::{BlobWriterRes, BuildContextRes, HostState};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};

/// How often the deadline clock ticks.
const TICK: Duration = Duration::from_millis(10);

/// Limits and locations for the host.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Directory for compiled plugins (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Linear memory a plugin may use, in bytes.
    pub memory_limit: usize,
    /// Wall-clock time one call may take.
    pub timeout: Duration,
    /// Wasm stack a plugin may use, in bytes.
    pub max_wasm_stack: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self { cache_dir: None, memory_limit: 512 << 20, timeout: Duration::from_secs(60), max_wasm_stack: 1 << 20 }
    }
}

impl HostConfig {
    /// Defaults, overridden by `KILN_PLUGIN_MEMORY_MB` and `KILN_PLUGIN_TIMEOUT_MS`.
    pub fn from_env(cache_dir: Option<PathBuf>) -> Self {
        let mut c = Self { cache_dir, ..Self::default() };
        if let Some(mb) = std::env::var("KILN_PLUGIN_MEMORY_MB").ok().and_then(|v| v.parse::<usize>().ok()) {
            c.memory_limit = mb << 20;
        }
        if let Some(ms) = std::env::var("KILN_PLUGIN_TIMEOUT_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
            c.timeout = Duration::from_millis(ms);
        }
        c
    }
}

/// The three kinds of plugin, one per WIT world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// Turns a source into a build plan.
    Frontend,
    /// Adds mounts and env to RUN steps.
    Injector,
    /// Writes an image somewhere.
    Exporter,
}

impl PluginKind {
    /// The name users see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Frontend => "frontend",
            Self::Injector => "injector",
            Self::Exporter => "exporter",
        }
    }

    /// The WIT world.
    pub fn world(self) -> &'static str {
        match self {
            Self::Frontend => "frontend-plugin",
            Self::Injector => "mount-injector-plugin",
            Self::Exporter => "exporter-plugin",
        }
    }

    /// Interfaces (without version) a component of this kind may import.
    fn allowed_imports(self) -> &'static [&'static str] {
        match self {
            Self::Frontend => &["types", "host", "blobs", "context", "images", "plan"],
            Self::Injector => &["types", "host", "mounts"],
            Self::Exporter => &["types", "host", "blobs", "codec"],
        }
    }
}

/// What a plugin says about itself.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    /// Short name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One line.
    pub description: String,
}

enum Pre {
    Frontend(FrontendPluginPre<HostState>),
    Injector(MountInjectorPluginPre<HostState>),
    Exporter(ExporterPluginPre<HostState>),
}

/// A loaded plugin, ready to be called.
pub struct Plugin {
    /// What it says about itself.
    pub info: PluginInfo,
    /// Its kind (from its exports).
    pub kind: PluginKind,
    /// "sha256:<hex>" of the component bytes.
    pub digest: String,
    /// The component's imports.
    pub imports: Vec<String>,
    /// The component's exports.
    pub exports: Vec<String>,
    /// Whether compiled code came from the cache.
    pub cache: CacheOutcome,
    pre: Pre,
}

/// A mount an injector asked for, checked by the host.
#[derive(Clone, Debug)]
pub struct InjectedMount {
    /// Absolute path in the container.
    pub target: String,
    /// Bytes, or a secret the host holds.
    pub content: InjectedContent,
    /// File mode.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Content of an injected mount.
#[derive(Clone, Debug)]
pub enum InjectedContent {
    /// Bytes the plugin produced.
    Bytes(Vec<u8>),
    /// A secret, by id: the host fills in the bytes.
    Secret(String),
}

/// Mounts and env an injector adds to one RUN step.
#[derive(Clone, Debug, Default)]
pub struct Injection {
    /// Mounts for this step only.
    pub mounts: Vec<InjectedMount>,
    /// Env for this step only.
    pub env: Vec<(String, String)>,
    /// Env for this step only whose values are secrets the host holds: (variable, secret id).
    pub secret_env: Vec<(String, String)>,
}

/// One layer handed to an exporter.
#[derive(Clone, Debug)]
pub struct ExportLayer {
    /// The layer's descriptor as in the manifest.
    pub descriptor: types::Descriptor,
    /// "sha256:<hex>" of the uncompressed tar.
    pub diff_id: String,
    /// The blob on disk.
    pub path: PathBuf,
}

/// An image handed to an exporter.
#[derive(Clone, Debug)]
pub struct ExportImage {
    /// Names (tags) of the image.
    pub names: Vec<String>,
    /// Manifest bytes and descriptor.
    pub manifest_json: Vec<u8>,
    /// The manifest's descriptor.
    pub manifest_descriptor: types::Descriptor,
    /// Config bytes.
    pub config_json: Vec<u8>,
    /// The config's descriptor.
    pub config_descriptor: types::Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<ExportLayer>,
    /// Reproducible timestamp (seconds), if any.
    pub timestamp: Option<i64>,
}

/// Loads and calls plugins.
pub struct PluginHost {
    engine: Engine,
    cache: CompileCache,
    config: HostConfig,
    frontend_linker: Linker<HostState>,
    injector_linker: Linker<HostState>,
    exporter_linker: Linker<HostState>,
    cancel: Arc<AtomicBool>,
}

impl PluginHost {
    /// A host with `config`; starts the deadline clock.
    pub fn new(config: HostConfig) -> Result<Self> {
        let mut wc = Config::new();
        wc.epoch_interruption(true);
        wc.max_wasm_stack(config.max_wasm_stack);
        wc.wasm_component_model(true);
        let engine = Engine::new(&wc).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("kiln-plugin-clock".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| HostError::Engine(format!("starting the plugin clock: {e}")))?;
        let eng = |e: wasmtime::Error| HostError::Engine(format!("{e:#}"));
        let mut frontend_linker = Linker::new(&engine);
        bindings::frontend::FrontendPlugin::add_to_linker::<_, HasSelf<_>>(&mut frontend_linker, |s| s).map_err(eng)?;
        let mut injector_linker = Linker::new(&engine);
        bindings::injector::MountInjectorPlugin::add_to_linker::<_, HasSelf<_>>(&mut injector_linker, |s| s).map_err(eng)?;
        let mut exporter_linker = Linker::new(&engine);
        bindings::exporter::ExporterPlugin::add_to_linker::<_, HasSelf<_>>(&mut exporter_linker, |s| s).map_err(eng)?;
        let cache = CompileCache::new(&engine, config.cache_dir.clone());
        Ok(Self { engine, cache, config, frontend_linker, injector_linker, exporter_linker, cancel: Arc::new(AtomicBool::new(false)) })
    }

    /// The flag plugins see through `host.cancelled`; set it to ask running plugins to stop.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// The compile cache.
    pub fn compile_cache(&self) -> &CompileCache {
        &self.cache
    }

    /// Load a plugin from component (or core module) bytes. `label` names it in errors until it
    /// has told its own name.
    pub fn load(&self, label: &str, bytes: &[u8]) -> Result<Plugin> {
        self.load_digested(label, bytes, None)
    }

    /// [`PluginHost::load`] for component bytes whose sha256 (`sha256_hex`) is already known,
    /// such as a built-in's, computed when kiln was built; `None` computes it.
    pub fn load_digested(&self, label: &str, bytes: &[u8], sha256_hex: Option<&str>) -> Result<Plugin> {
        let encoded;
        let bytes = if is_component(bytes) {
            bytes
        } else if bytes.starts_with(b"\0asm") {
            encoded = wit_component::ComponentEncoder::default()
                .module(bytes)
                .and_then(|e| e.validate(true).encode())
                .map_err(|e| HostError::Invalid { plugin: label.into(), reason: format!("encoding the core module as a component: {e:#}") })?;
            &encoded[..]
        } else {
            return Err(HostError::Invalid { plugin: label.into(), reason: "not a WebAssembly binary".into() });
        };
        let started = std::time::Instant::now();
        let hex = match sha256_hex {
            Some(h) if is_component(bytes) => h.to_string(),
            _ => hex::encode(sha2::Sha256::digest(bytes)),
        };
        let hashed = started.elapsed();
        let (component, cache) = self.cache.load(&self.engine, label, bytes, &hex)?;
        let code = started.elapsed();
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let has = |iface: &str| exports.iter().any(|e| interface_name(e) == Some(iface));
        let kind = if has("frontend") {
            PluginKind::Frontend
        } else if has("mount-injector") {
            PluginKind::Injector
        } else if has("exporter") {
            PluginKind::Exporter
        } else {
            return Err(HostError::Invalid {
                plugin: label.into(),
                reason: format!("it exports none of kiln:plugin/frontend, mount-injector, exporter (exports: {exports:?})"),
            });
        };
        for import in &imports {
            match interface_name(import) {
                Some(i) if kind.allowed_imports().contains(&i) => {}
                _ => return Err(HostError::ForbiddenImport { plugin: label.into(), import: import.clone() }),
            }
        }
        let invalid = |e: wasmtime::Error| HostError::Invalid { plugin: label.into(), reason: format!("{e:#}") };
        let pre = match kind {
            PluginKind::Frontend => Pre::Frontend(
                FrontendPluginPre::new(self.frontend_linker.instantiate_pre(&component).map_err(invalid)?).map_err(invalid)?,
            ),
            PluginKind::Injector => Pre::Injector(
                MountInjectorPluginPre::new(self.injector_linker.instantiate_pre(&component).map_err(invalid)?).map_err(invalid)?,
            ),
            PluginKind::Exporter => Pre::Exporter(
                ExporterPluginPre::new(self.exporter_linker.instantiate_pre(&component).map_err(invalid)?).map_err(invalid)?,
            ),
        };
        let mut plugin = Plugin {
            info: PluginInfo { name: label.into(), version: String::new(), description: String::new() },
            kind,
            digest: format!("sha256:{hex}"),
            imports,
            exports,
            cache,
            pre,
        };
        let linked = started.elapsed();
        plugin.info = self.about(&plugin)?;
        tracing::debug!(
            plugin = label,
            "loaded: digest {hashed:?}, code {:?} ({cache:?}), linking {:?}, about {:?}",
            code - hashed,
            linked - code,
            started.elapsed() - linked
        );
        Ok(plugin)
    }

    fn store(&self, plugin: &Plugin) -> Store<HostState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.config.memory_limit)
            .instances(16)
            .tables(16)
            .memories(16)
            .table_elements(1 << 20)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, HostState::new(&plugin.info.name, limits, self.cancel.clone()));
        store.limiter(|s| &mut s.limits);
        let ticks = (self.config.timeout.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store
    }

    fn fail(&self, plugin: &Plugin, doing: &str, err: wasmtime::Error, store: &Store<HostState>) -> HostError {
        let plugin_name = plugin.info.name.clone();
        if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
            if *trap == wasmtime::Trap::Interrupt {
                return HostError::Timeout {
                    plugin: plugin_name,
                    doing: doing.into(),
                    limit_ms: self.config.timeout.as_millis() as u64,
                };
            }
        }
        let mut reason = match &store.data().last_panic {
            Some(p) => format!("panicked: {p}"),
            None => format!("{err:#}"),
        };
        if reason.contains("forcing trap when growing memory") || reason.contains("memory.grow") {
            reason = format!("memory limit of {} MiB reached ({err:#})", self.config.memory_limit >> 20);
        } else if let Some(wasmtime::Trap::StackOverflow) = err.downcast_ref::<wasmtime::Trap>() {
            reason = format!("wasm stack overflow (limit {} KiB)", self.config.max_wasm_stack >> 10);
        }
        HostError::Trap { plugin: plugin_name, doing: doing.into(), reason }
    }

    /// Ask a plugin who it is.
    pub fn about(&self, plugin: &Plugin) -> Result<PluginInfo> {
        let mut store = self.store(plugin);
        let doing = "saying who it is";
        let r = match &plugin.pre {
            Pre::Frontend(pre) => pre
                .instantiate(&mut store)
                .and_then(|i| i.kiln_plugin_about().call_info(&mut store))
                .map(|i| PluginInfo { name: i.name, version: i.version, description: i.description }),
            Pre::Injector(pre) => pre
                .instantiate(&mut store)
                .and_then(|i| i.kiln_plugin_about().call_info(&mut store))
                .map(|i| PluginInfo { name: i.name, version: i.version, description: i.description }),
            Pre::Exporter(pre) => pre
                .instantiate(&mut store)
                .and_then(|i| i.kiln_plugin_about().call_info(&mut store))
                .map(|i| PluginInfo { name: i.name, version: i.version, description: i.description }),
        };
        r.map_err(|e| self.fail(plugin, doing, e, &store))
    }

    /// Run a frontend: `req` plus a read-only view of `context_dir` → a plan or diagnostics.
    pub fn parse(
        &self,
        plugin: &Plugin,
        req: &FrontendRequest,
        context_dir: &Path,
        image_config: Option<ImageConfigFn>,
    ) -> Result<std::result::Result<plan::BuildPlan, Vec<plan::Diagnostic>>> {
        let Pre::Frontend(pre) = &plugin.pre else {
            return Err(HostError::NotFound { kind: "frontend".into(), name: plugin.info.name.clone() });
        };
        let doing = format!("parsing {}", req.entry_file);
        let mut store = self.store(plugin);
        store.data_mut().image_config = image_config;
        let ctx = BuildContextRes::new(context_dir).map_err(|e| HostError::Io { what: "opening build context", path: context_dir.into(), source: e })?;
        let ctx = store.data_mut().table.push(ctx).map_err(|e| HostError::Engine(e.to_string()))?;
        let borrow = Resource::<BuildContextRes>::new_borrow(ctx.rep());
        let r = pre.instantiate(&mut store).and_then(|i| i.kiln_plugin_frontend().call_parse(&mut store, req, borrow));
        r.map_err(|e| self.fail(plugin, &doing, e, &store))
    }

    /// Ask an injector for a step's mounts and env. `rootfs` reads files of the step's root
    /// filesystem, `granted_secrets` are the secret ids it may place.
    pub fn inject(&self, plugin: &Plugin, step: &StepInfo, rootfs: Option<RootfsReadFn>, granted_secrets: &[String]) -> Result<Injection> {
        let Pre::Injector(pre) = &plugin.pre else {
            return Err(HostError::NotFound { kind: "injector".into(), name: plugin.info.name.clone() });
        };
        let doing = format!("preparing mounts for step {} of stage {}", step.index, step.stage);
        let mut store = self.store(plugin);
        store.data_mut().rootfs = rootfs;
        store.data_mut().granted_secrets = granted_secrets.to_vec();
        let r = pre.instantiate(&mut store).and_then(|i| i.kiln_plugin_mount_injector().call_mounts_for(&mut store, step));
        let answer = r.map_err(|e| self.fail(plugin, &doing, e, &store))?;
        let answer = answer.map_err(|e| HostError::Plugin { plugin: plugin.info.name.clone(), doing: doing.clone(), reason: plugin_error_text(&e) })?;
        use bindings::injector::kiln::plugin::mounts::Content;
        let mut out = Injection { env: answer.env, mounts: Vec::new(), secret_env: std::mem::take(&mut store.data_mut().secret_env) };
        for m in answer.mounts {
            let content = match m.content {
                Content::Bytes(b) => InjectedContent::Bytes(b),
                Content::Secret(s) => {
                    let id = store.data().table.get(&s).map(|s| s.id.clone()).map_err(|e| HostError::Engine(e.to_string()))?;
                    if !granted_secrets.contains(&id) {
                        return Err(HostError::Refused {
                            plugin: plugin.info.name.clone(),
                            doing,
                            reason: format!("mount {:?} names secret {id:?}, which was not granted to it", m.target),
                        });
                    }
                    InjectedContent::Secret(id)
                }
            };
            out.mounts.push(InjectedMount { target: m.target, content, mode: m.mode, uid: m.uid, gid: m.gid });
        }
        validate_injection(&out).map_err(|reason| HostError::Refused { plugin: plugin.info.name.clone(), doing, reason })?;
        Ok(out)
    }

    /// The schemes an exporter serves.
    pub fn schemes(&self, plugin: &Plugin) -> Result<Vec<String>> {
        let Pre::Exporter(pre) = &plugin.pre else {
            return Err(HostError::NotFound { kind: "exporter".into(), name: plugin.info.name.clone() });
        };
        let mut store = self.store(plugin);
        let r = pre.instantiate(&mut store).and_then(|i| i.kiln_plugin_exporter().call_schemes(&mut store));
        r.map_err(|e| self.fail(plugin, "listing its schemes", e, &store))
    }

    /// Run an exporter: write `image` to a new file `out_path` (created, then filled by the plugin).
    /// Returns the plugin's descriptor and, when the plugin finished its writer, what the host
    /// measured of the written file (a writer left open is closed without hashing it).
    pub fn export(
        &self,
        plugin: &Plugin,
        image: &ExportImage,
        destination: &str,
        options: &[(String, String)],
        out_path: &Path,
    ) -> Result<(types::Descriptor, Option<FinishedBlob>)> {
        let Pre::Exporter(pre) = &plugin.pre else {
            return Err(HostError::NotFound { kind: "exporter".into(), name: plugin.info.name.clone() });
        };
        use bindings::exporter::exports::kiln::plugin::exporter as ex;
        let doing = format!("exporting to {destination}");
        let mut store = self.store(plugin);
        let mut layers = Vec::new();
        for l in &image.layers {
            let r = BlobReaderRes::open(&l.path).map_err(|e| HostError::Io { what: "opening layer", path: l.path.clone(), source: e })?;
            let reader = store.data_mut().table.push(r).map_err(|e| HostError::Engine(e.to_string()))?;
            layers.push(ex::Layer { descriptor: l.descriptor.clone(), diff_id: l.diff_id.clone(), reader });
        }
        let req = ex::ExportRequest {
            image: ex::Image {
                names: image.names.clone(),
                manifest_json: image.manifest_json.clone(),
                manifest_descriptor: image.manifest_descriptor.clone(),
                config_json: image.config_json.clone(),
                config_descriptor: image.config_descriptor.clone(),
                layers,
                timestamp: image.timestamp,
            },
            destination: destination.to_string(),
            options: options.to_vec(),
        };
        let writer = BlobWriterRes::create(out_path, Compression::None)
            .map_err(|e| HostError::Io { what: "creating", path: out_path.into(), source: e })?;
        let writer = store.data_mut().table.push(writer).map_err(|e| HostError::Engine(e.to_string()))?;
        let borrow = Resource::<BlobWriterRes>::new_borrow(writer.rep());
        let r = pre.instantiate(&mut store).and_then(|i| i.kiln_plugin_exporter().call_export_image(&mut store, &req, borrow));
        let answer = r.map_err(|e| self.fail(plugin, &doing, e, &store))?;
        let desc = answer.map_err(|e| HostError::Plugin { plugin: plugin.info.name.clone(), doing: doing.clone(), reason: plugin_error_text(&e) })?;
        let w = store.data_mut().table.get_mut(&writer).map_err(|e| HostError::Engine(e.to_string()))?;
        let finished = match w.finished.clone() {
            Some(f) => Some(f),
            None => {
                // Left open by the plugin: closed, and nobody asked for its digest.
                w.close_unhashed().map_err(|e| HostError::Plugin {
                    plugin: plugin.info.name.clone(),
                    doing,
                    reason: plugin_error_text(&e),
                })?;
                None
            }
        };
        Ok((desc, finished))
    }

    /// Whether a cancellation was requested.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// `kiln:plugin/frontend@0.1.0` → `frontend`.
pub(crate) fn interface_name(full: &str) -> Option<&str> {
    let rest = full.strip_prefix("kiln:plugin/")?;
    let name = rest.split('@').next()?;
    let version = rest.split('@').nth(1).unwrap_or("");
    (version.starts_with("0.1.") || version.is_empty()).then_some(name)
}

fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

/// A plugin error as one line.
pub fn plugin_error_text(e: &types::PluginError) -> String {
    use types::PluginError as E;
    match e {
        E::InvalidInput(m) => format!("invalid input: {m}"),
        E::Unsupported(m) => format!("unsupported: {m}"),
        E::Denied(m) => format!("denied: {m}"),
        E::Io(m) => format!("i/o: {m}"),
        E::Internal(m) => format!("internal: {m}"),
    }
}

/// The most bytes all mounts of one injection may carry.
pub const MAX_INJECTED_BYTES: usize = 64 << 20;

/// Check an injector's answer: targets absolute, normalized, outside /proc, /sys and /dev,
/// bounded sizes, sane env names.
pub fn validate_injection(inj: &Injection) -> std::result::Result<(), String> {
    let mut total = 0usize;
    for m in &inj.mounts {
        let t = &m.target;
        if !t.starts_with('/') || t == "/" {
            return Err(format!("mount target {t:?} is not an absolute path below /"));
        }
        if t.split('/').any(|c| c == ".." || c == ".") || t.contains("//") || t.contains('\0') {
            return Err(format!("mount target {t:?} is not a normalized path"));
        }
        for forbidden in ["/proc", "/sys", "/dev"] {
            if t == forbidden || t.starts_with(&format!("{forbidden}/")) {
                return Err(format!("mount target {t:?} is under {forbidden}"));
            }
        }
        if m.mode & !0o7777 != 0 {
            return Err(format!("mount {t:?} has an invalid mode {:o}", m.mode));
        }
        if let InjectedContent::Bytes(b) = &m.content {
            total += b.len();
        }
    }
    if total > MAX_INJECTED_BYTES {
        return Err(format!("mounts carry {total} bytes; at most {MAX_INJECTED_BYTES}"));
    }
    for k in inj.env.iter().chain(&inj.secret_env).map(|(k, _)| k) {
        if !is_env_name(k) {
            return Err(format!("env name {k:?} is invalid"));
        }
    }
    Ok(())
}

/// Whether an injector may set the variable `name`: not empty, no `=`, no NUL.
pub(crate) fn is_env_name(name: &str) -> bool {
    !(name.is_empty() || name.contains('=') || name.contains('\0'))
}
