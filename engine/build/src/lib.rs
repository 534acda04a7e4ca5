//! kiln's build executor: runs a frontend's build plan.
//!
//! [`build`] asks a frontend plugin for the plan, then executes the stages the target needs,
//! independent ones in parallel (`--jobs`), reporting progress as plain lines, JSON events or a
//! live terminal view: bases come from the store (pulled when missing), RUN steps run in the
//! sandbox on an overlay of the stage's layers (or, with the `vfs` [`StorageDriver`], on a copy of
//! them), COPY/ADD write into a fresh upper directory, and
//! every filesystem change becomes a layer blob in the store. A build cache keyed on the parent state,
//! the step and the content of its sources lets an unchanged rebuild only look things up.

mod config;
mod copy;
mod error;
mod executor;
mod ignore;
mod layers;
mod mode;
mod process;
mod progress;
mod runmount;
pub mod working;

pub use error::{BuildError, Result};
pub use executor::{BuildOutcome, Builder};
pub use ignore::IgnoreRules;
pub use kiln_sandbox::DnsSettings;
pub use layers::{LayerRef, LayerStack};
pub use process::{Device, ProcessOptions};
pub use progress::ProgressMode;
pub use runmount::{RunMountError, parse_run_mount};

use std::path::PathBuf;

/// How RUN steps get a writable root filesystem (buildah's `--storage-driver`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StorageDriver {
    /// overlayfs over the stage's layer directories; the upper directory becomes the layer.
    #[default]
    Overlay,
    /// A fresh copy of the stage's flattened filesystem; its differences from the original become the
    /// layer. Works where the kernel refuses overlay mounts (old kernels in user namespaces, an
    /// upper directory on a file system overlayfs cannot use).
    Vfs,
}

impl StorageDriver {
    /// The driver's name as given to `--storage-driver`.
    pub fn name(self) -> &'static str {
        match self {
            StorageDriver::Overlay => "overlay",
            StorageDriver::Vfs => "vfs",
        }
    }
}

impl std::str::FromStr for StorageDriver {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "overlay" | "overlay2" => Ok(StorageDriver::Overlay),
            "vfs" => Ok(StorageDriver::Vfs),
            other => Err(format!("storage driver {other:?}: use overlay or vfs")),
        }
    }
}

impl std::fmt::Display for StorageDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The driver to use when none was asked for: `overlay` when a probe overlay mount with its upper
/// directory in the store's file system works (as RUN steps mount it: in a user namespace), else
/// `vfs`, with the kernel's refusal as the reason.
pub fn detect_storage_driver(store: &kiln_store::Store) -> (StorageDriver, Option<String>) {
    let dir = store.tmp_dir();
    let t = std::time::Instant::now();
    let r = kiln_sandbox::probe_overlay(&dir, kiln_sandbox::UserNs::Auto);
    tracing::debug!("overlay probe took {:?}", t.elapsed());
    match r {
        Ok(()) => (StorageDriver::Overlay, None),
        Err(e) => (StorageDriver::Vfs, Some(e.to_string())),
    }
}

/// [`detect_storage_driver`], once per process: the first caller's store decides, and a fallback
/// to vfs is told to `say` that once.
pub fn detected_storage_driver(store: &kiln_store::Store, say: impl FnOnce(&str)) -> StorageDriver {
    static DETECTED: std::sync::OnceLock<StorageDriver> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        let (driver, why) = detect_storage_driver(store);
        if let Some(why) = why {
            say(&format!(
                "kiln: overlay mounts are not available here ({why}); using the vfs storage driver (copies, slower)"
            ));
        }
        driver
    })
}

/// Image format written to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// OCI image manifest and config (default).
    #[default]
    Oci,
    /// Docker schema 2 (keeps HEALTHCHECK, ONBUILD and SHELL in the config).
    Docker,
}

/// When to pull base images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull only when not in the store.
    #[default]
    Missing,
    /// Always pull.
    Always,
    /// Never pull; fail when missing.
    Never,
}

/// Where a secret's bytes come from.
#[derive(Clone, Debug)]
pub enum SecretSource {
    /// A host file.
    File(PathBuf),
    /// An environment variable of kiln's process.
    Env(String),
}

/// An injector enabled for the build.
#[derive(Clone, Debug)]
pub struct InjectorConfig {
    /// The plugin's name.
    pub name: String,
    /// Options handed to it.
    pub options: Vec<(String, String)>,
    /// Files handed to it: (name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Everything `kiln build` decides.
/// The proxy variables: build args every RUN sees without an ARG declaration (never in the
/// image, its history or a step's cache key), and what `--http-proxy` takes from kiln's
/// environment.
pub const PROXY_VARIABLES: [&str; 10] = [
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

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The build source's name for diagnostics (e.g. `Dockerfile`).
    pub source_name: String,
    /// The build source's bytes.
    pub source: Vec<u8>,
    /// The frontend plugin to use (default from `# syntax=` or `dockerfile`).
    pub frontend: Option<String>,
    /// `--build-arg`s.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// One layer per step and the build cache (`--layers`, the default); false: no cache, and
    /// each Dockerfile stage's changes become one layer, as `buildah bud` without `--layers`.
    pub layers: bool,
    /// `--pull`.
    pub pull: PullPolicy,
    /// `--platform` ("os/arch[/variant]").
    pub platform: Option<String>,
    /// `--format`.
    pub format: Format,
    /// `--squash`: the final image is one layer holding its whole filesystem, with the last
    /// history entry only (as `buildah bud --squash --layers`).
    pub squash: bool,
    /// `--omit-history`: the final image's config has no history.
    pub omit_history: bool,
    /// `--env`: variables set at the start of every stage (seen by RUN, kept in the image).
    pub env: Vec<(String, String)>,
    /// Proxy variables of kiln's environment for every RUN (buildah's `--http-proxy`, on by
    /// default): like undeclared proxy build args, never in the image or the cache key, and
    /// below build args and the image's ENV.
    pub host_proxy_env: Vec<(String, String)>,
    /// `--unsetenv`: variables removed from the final image's config.
    pub unset_env: Vec<String>,
    /// `--add-host`: `/etc/hosts` lines for every RUN, as (host name, address).
    pub add_hosts: Vec<(String, String)>,
    /// `--dns`, `--dns-search`, `--dns-option`: changes to every RUN's `/etc/resolv.conf`.
    pub dns: DnsSettings,
    /// `--no-hosts`: RUN sees the image's own `/etc/hosts`, none is generated.
    pub no_hosts: bool,
    /// `--stdin`: RUN steps read kiln's standard input (else `/dev/null`).
    pub stdin: bool,
    /// `--cap-add`, `--cap-drop`, `--security-opt`, `--ulimit`, `--device` for every RUN.
    pub process: ProcessOptions,
    /// `--cache-from`: registry repositories (`host/path`) whose cache images answer steps the
    /// local cache does not have.
    pub cache_from: Vec<String>,
    /// `--cache-to`: registry repositories the steps this build runs are pushed to as cache
    /// images (tagged with their cache keys).
    pub cache_to: Vec<String>,
    /// `--cache-ttl`: only cache entries (local ones by when they were written, registry ones by
    /// their image's creation time) younger than this answer steps.
    pub cache_ttl: Option<std::time::Duration>,
    /// `--label`s added to the final image.
    pub labels: Vec<(String, String)>,
    /// `--annotation`s added to the final manifest.
    pub annotations: Vec<(String, String)>,
    /// `--secret`s.
    pub secrets: Vec<(String, SecretSource)>,
    /// `--network` default for RUN: host, none or private.
    pub network: Option<String>,
    /// `--timestamp` / `SOURCE_DATE_EPOCH`.
    pub timestamp: Option<i64>,
    /// Names to give the image in the store.
    pub tags: Vec<String>,
    /// `-q`.
    pub quiet: bool,
    /// `--ignorefile`.
    pub ignore_file: Option<PathBuf>,
    /// Injectors for every RUN.
    pub injectors: Vec<InjectorConfig>,
    /// `--volume`: host binds added to every RUN (src, target, readonly).
    pub run_binds: Vec<(PathBuf, String, bool)>,
    /// `--run-mount`/`--mount`: mounts written as `RUN --mount=` takes them, added to every RUN of
    /// every stage (see [`parse_run_mount`]).
    pub run_mounts: Vec<kiln_plugin_host::plan::RunMount>,
    /// `--jobs`: stages built at once (0 = one per CPU, 1 = one after another).
    pub jobs: usize,
    /// `--progress`.
    pub progress: ProgressMode,
    /// `--ssh ID[=SOCKET|KEY[,KEY…]]`: agent sockets (or keys to load into a fresh agent) for
    /// `RUN --mount=type=ssh`; no path means `$SSH_AUTH_SOCK`.
    pub ssh: Vec<(String, Vec<PathBuf>)>,
    /// How RUN steps get their writable root filesystem; `None`: detected when a RUN step first
    /// needs one (a build whose steps all come from the cache never probes).
    pub storage_driver: Option<StorageDriver>,
}
