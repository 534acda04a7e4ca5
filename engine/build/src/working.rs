//! Working containers, buildah style: `from` an image (or scratch), then `run`, `copy`/`add`,
//! `config`, `mount`/`umount`, and `commit` into an image with one new layer, across separate
//! kiln invocations.
//!
//! A container is a store record (see [`kiln_store::ContainerRecord`]) plus a directory
//! `containers/<id>/` holding its one overlay `upper/` directory (every change made by `run` and
//! `copy` lands there), overlayfs's `work/` directory and the `rootfs/` mount point. The lower
//! directory is the flattened snapshot of the source image's layers. The image config being
//! edited is the record's `config`; what else the container needs (its layers, its host mount,
//! the history text and manifest annotations for the next commit) is kept under the record's
//! `kiln` key as a [`WorkingState`]. `commit` diffs the upper directory into one layer on top of
//! the image's layers, as buildah does.

use crate::config;
use crate::copy::{self, Attrs, SourceRoot};
use crate::error::{BuildError, Result};
use crate::executor::{find_or_pull, layer_from_tree, layer_from_upper, owner_in, write_image};
use crate::ignore::IgnoreRules;
use crate::layers::{LayerRef, LayerStack, Lookup, flat_key, flat_snapshot, flat_snapshot_reusing};
use crate::{Format, ProcessOptions, PullPolicy};
use kiln_core::spec::{HealthConfig, History, ImageConfig};
use kiln_core::{ImageReference, Platform};
use kiln_plugin_host::plan::CopySource;
use kiln_registry::ClientOptions;
use kiln_sandbox::{ExtraMount, Input, Network, Output, Rootfs, RunSpec, UserSpec};
use kiln_store::{ContainerRecord, ImageRecord, NewContainer, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The key of [`WorkingState`] in a container record's extra fields.
pub const STATE_KEY: &str = "kiln";

/// What kiln keeps about a working container besides the store record's own fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkingState {
    /// The source image's layers (empty for scratch); the container's lower directory is their
    /// flattened snapshot.
    #[serde(default)]
    pub layers: Vec<LayerRef>,
    /// Snapshot key of the lower directory (keeps it referenced for `kiln prune`).
    #[serde(default)]
    pub lower: String,
    /// Where `kiln mount` mounted the container on the host, while it is mounted.
    #[serde(default)]
    pub mount_point: Option<PathBuf>,
    /// `config --created-by`: the history text of the next commit.
    #[serde(default)]
    pub created_by: Option<String>,
    /// `config --history-comment`.
    #[serde(default)]
    pub history_comment: Option<String>,
    /// `config --annotation`s: manifest annotations of the committed image.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Host binds (`from -v`) added to every `run`: (source, target, read-only).
    #[serde(default)]
    pub run_binds: Vec<(PathBuf, String, bool)>,
    /// Made with the vfs storage driver: the container's filesystem is a full copy of the lower
    /// directory (`vfs-rootfs/`, with its copy stamp in `vfs-stamp`) instead of an upper dir.
    #[serde(default)]
    pub vfs: bool,
    /// `from --cap-add/--cap-drop/--security-opt/--ulimit/--device`, for every `run`.
    #[serde(default, skip_serializing_if = "ProcessOptions::is_default")]
    pub process: ProcessOptions,
}

/// A working container: its store record, the image config being edited and kiln's state.
#[derive(Debug, Clone)]
pub struct WorkingContainer {
    /// The store record (name, ID, source image, directories).
    pub record: ContainerRecord,
    /// The image config the next commit writes.
    pub config: ImageConfig,
    /// Layers, mount and commit metadata.
    pub state: WorkingState,
}

impl WorkingContainer {
    fn from_record(record: ContainerRecord) -> Result<WorkingContainer> {
        let config: ImageConfig = serde_json::from_value(record.config.clone()).map_err(|e| {
            BuildError::Other(format!(
                "container {}: its recorded image config is unreadable: {e}",
                record.name
            ))
        })?;
        let state = match record.extra.get(STATE_KEY) {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                BuildError::Other(format!(
                    "container {}: its recorded state is unreadable: {e}",
                    record.name
                ))
            })?,
            None => WorkingState::default(),
        };
        Ok(WorkingContainer {
            record,
            config,
            state,
        })
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The container's full ID.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The container's directory (`containers/<id>/` in the store).
    pub fn dir(&self) -> PathBuf {
        self.record
            .rootfs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.record.rootfs.clone())
    }

    /// The overlay upper directory holding every change made in the container.
    pub fn upper(&self) -> PathBuf {
        self.record
            .upper
            .clone()
            .unwrap_or_else(|| self.dir().join("upper"))
    }

    /// The container's whole filesystem when it was made with the vfs driver.
    pub fn vfs_rootfs(&self) -> PathBuf {
        self.dir().join("vfs-rootfs")
    }

    fn vfs_stamp(&self) -> Result<kiln_layer::CopyStamp> {
        let p = self.dir().join("vfs-stamp");
        let b = std::fs::read(&p).map_err(io_err(format!("reading {}", p.display())))?;
        kiln_layer::CopyStamp::from_bytes(&b)
            .ok_or_else(|| other(format!("{}: not a copy stamp", p.display())))
    }

    /// overlayfs's work directory (same filesystem as the upper one).
    pub fn work(&self) -> PathBuf {
        self.dir().join("work")
    }

    /// The host mount point while the container is mounted (`kiln mount`), checked against
    /// `/proc/self/mountinfo` so a mount that vanished with its namespace does not count.
    pub fn mounted_at(&self) -> Option<PathBuf> {
        self.state.mount_point.clone().filter(|p| is_mount_point(p))
    }
}

/// `kiln from` options.
#[derive(Debug, Clone, Default)]
pub struct FromOptions {
    /// Container name (default `<image>-working-container`, `working-container` for scratch,
    /// with `-N` added until unique).
    pub name: Option<String>,
    /// When to pull the image.
    pub pull: PullPolicy,
    /// Platform of the image to pull (default: the host's).
    pub platform: Option<Platform>,
    /// Host binds for every later `run`: (source, target, read-only).
    pub run_binds: Vec<(PathBuf, String, bool)>,
    /// Capabilities, security options, limits and devices for every later `run`.
    pub process: ProcessOptions,
}

/// `kiln run` options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `-v SRC:DST[:ro]` host binds for this run.
    pub binds: Vec<(PathBuf, String, bool)>,
    /// `--env K=V` added to (or replacing in) the config's environment for this run.
    pub env: Vec<(String, String)>,
    /// `--user` (default: the config's user).
    pub user: Option<String>,
    /// `--workingdir` (default: the config's working directory, else `/`).
    pub workdir: Option<String>,
    /// `--network`: host (default), none or private.
    pub network: Option<String>,
    /// `--hostname` (default: the first 12 characters of the container ID).
    pub hostname: Option<String>,
    /// Pass kiln's stdin to the command (else `/dev/null`).
    pub stdin: bool,
    /// `--cap-add` for this run, on top of the container's capabilities.
    pub cap_add: Vec<String>,
    /// `--cap-drop` for this run.
    pub cap_drop: Vec<String>,
}

/// `kiln copy`/`kiln add` options.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Sources: host paths (relative ones from `cwd`), or paths in the `from` root; URLs for add.
    pub sources: Vec<String>,
    /// Destination in the container (relative ones from its working directory).
    pub dest: String,
    /// `--chown USER[:GROUP]`.
    pub chown: Option<String>,
    /// `--chmod` mode: octal or symbolic (`u+x`).
    pub chmod: Option<String>,
    /// `--from`: a working container or an image whose root the sources are read from.
    pub from: Option<String>,
    /// `add`: fetch URLs and extract local archives.
    pub is_add: bool,
    /// `--contextdir`: sources must lie inside it (default: anywhere on the host).
    pub context_dir: Option<PathBuf>,
    /// `--ignorefile` (needs `context_dir`).
    pub ignore_file: Option<PathBuf>,
    /// The directory relative host sources are taken from.
    pub cwd: PathBuf,
}

/// `kiln config` changes, applied in buildah's order. `None`/empty means "leave as is".
#[derive(Debug, Clone, Default)]
pub struct ConfigChanges {
    /// `--author`.
    pub author: Option<String>,
    /// `--created-by` (history text of the next commit).
    pub created_by: Option<String>,
    /// `--arch`.
    pub arch: Option<String>,
    /// `--os`.
    pub os: Option<String>,
    /// `--variant`.
    pub variant: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--shell` (split into words).
    pub shell: Option<String>,
    /// `--stop-signal`.
    pub stop_signal: Option<String>,
    /// `--port` (`P` adds, `P-` removes, `-` clears).
    pub ports: Vec<String>,
    /// `--env` (`K=V` sets with `$VAR` expanded from the config, `K-` unsets, `-` clears, `K`
    /// takes kiln's own `K`).
    pub env: Vec<String>,
    /// `--entrypoint`: a JSON array, or a shell command run by `/bin/sh -c`; empty clears it.
    pub entrypoint: Option<String>,
    /// `--cmd`: a JSON array, or words split as a shell would; empty clears it.
    pub cmd: Option<String>,
    /// `--volume` (`V` adds, `V-` removes).
    pub volumes: Vec<String>,
    /// `--label` (`K=V` sets, `K-` removes).
    pub labels: Vec<String>,
    /// `--workingdir`.
    pub workingdir: Option<String>,
    /// `--onbuild` triggers (kept only in the docker format).
    pub onbuild: Vec<String>,
    /// `--annotation` (`K=V` sets, `K-` removes) on the committed manifest.
    pub annotations: Vec<String>,
    /// `--comment`.
    pub comment: Option<String>,
    /// `--history-comment`.
    pub history_comment: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--domainname`.
    pub domainname: Option<String>,
    /// `--healthcheck`: the test as words (`CMD …`, `CMD-SHELL …`, `NONE`); empty removes it.
    pub healthcheck: Option<String>,
    /// `--healthcheck-interval` (Go duration such as `30s`).
    pub healthcheck_interval: Option<String>,
    /// `--healthcheck-timeout`.
    pub healthcheck_timeout: Option<String>,
    /// `--healthcheck-start-period`.
    pub healthcheck_start_period: Option<String>,
    /// `--healthcheck-retries`.
    pub healthcheck_retries: Option<u32>,
}

impl ConfigChanges {
    /// Set one `config` option by its long flag name without dashes (`env`, `created-by`,
    /// `healthcheck-retries`, …) as a build plan's config step carries it; repeatable options
    /// add to their list, the others take the last value.
    pub fn set(&mut self, option: &str, value: &str) -> Result<()> {
        let v = || Some(value.to_string());
        match option {
            "author" => self.author = v(),
            "created-by" => self.created_by = v(),
            "arch" => self.arch = v(),
            "os" => self.os = v(),
            "variant" => self.variant = v(),
            "user" => self.user = v(),
            "shell" => self.shell = v(),
            "stop-signal" => self.stop_signal = v(),
            "port" => self.ports.push(value.into()),
            "env" => self.env.push(value.into()),
            "entrypoint" => self.entrypoint = v(),
            "cmd" => self.cmd = v(),
            "volume" => self.volumes.push(value.into()),
            "label" => self.labels.push(value.into()),
            "workingdir" => self.workingdir = v(),
            "onbuild" => self.onbuild.push(value.into()),
            "annotation" => self.annotations.push(value.into()),
            "comment" => self.comment = v(),
            "history-comment" => self.history_comment = v(),
            "hostname" => self.hostname = v(),
            "domainname" => self.domainname = v(),
            "healthcheck" => self.healthcheck = v(),
            "healthcheck-interval" => self.healthcheck_interval = v(),
            "healthcheck-timeout" => self.healthcheck_timeout = v(),
            "healthcheck-start-period" => self.healthcheck_start_period = v(),
            "healthcheck-retries" => {
                self.healthcheck_retries = Some(value.parse().map_err(|_| {
                    other(format!(
                        "config --healthcheck-retries {value:?} is not a number"
                    ))
                })?)
            }
            _ => return Err(other(format!("config has no option --{option}"))),
        }
        Ok(())
    }
}

/// `kiln commit` options.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Names to give the image in the store (none for an image only exported).
    pub names: Vec<String>,
    /// Manifest and config format.
    pub format: Format,
    /// One layer holding the whole filesystem instead of the image's layers plus one.
    pub squash: bool,
    /// Seconds since the epoch for `created` and file times (default: now).
    pub timestamp: Option<i64>,
    /// Labels added to the image.
    pub labels: Vec<(String, String)>,
}

/// The working-container verbs against one store.
pub struct Containers<'a> {
    /// The store.
    pub store: &'a Store,
    /// Registry options for pulls (`from`, `copy --from=IMAGE`).
    pub registry: ClientOptions,
    /// No progress output.
    pub quiet: bool,
    /// The storage driver of containers made by [`Containers::from`].
    pub driver: crate::StorageDriver,
}

fn other(msg: impl Into<String>) -> BuildError {
    BuildError::Other(msg.into())
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> BuildError {
    move |source| BuildError::Io { what, source }
}

impl<'a> Containers<'a> {
    /// Verbs on `store`, pulling with `registry`.
    pub fn new(store: &'a Store, registry: ClientOptions) -> Self {
        Containers {
            store,
            registry,
            quiet: false,
            driver: crate::StorageDriver::Overlay,
        }
    }

    /// Create a working container from `image` (`scratch` for an empty one), pulling the image
    /// when the store lacks it.
    pub fn from(&self, image: &str, opts: &FromOptions) -> Result<WorkingContainer> {
        let platform = opts.platform.clone().unwrap_or_else(Platform::host);
        let mut pulled_flat = None;
        let (img, config, layers): (Option<ImageRecord>, ImageConfig, Vec<LayerRef>) =
            if image == "scratch" {
                let mut c = ImageConfig::new(&platform);
                c.created = None;
                (None, c, Vec::new())
            } else {
                let (img, config, layers, flat) = find_or_pull(
                    self.store,
                    &self.registry,
                    image,
                    &platform,
                    opts.platform.is_some(),
                    opts.pull,
                    self.quiet,
                )
                .map_err(|e| other(format!("kiln from {image}: {e}")))?;
                pulled_flat = Some(flat);
                (Some(img), config, layers)
            };
        let lower = match pulled_flat {
            Some(p) => p,
            None => flat_snapshot(self.store, &layers)?,
        };
        let state = WorkingState {
            layers: layers.clone(),
            lower: flat_key(&layers),
            run_binds: opts.run_binds.clone(),
            process: opts.process.clone(),
            vfs: self.driver == crate::StorageDriver::Vfs,
            ..Default::default()
        };
        let mut extra = BTreeMap::new();
        extra.insert(
            STATE_KEY.to_string(),
            serde_json::to_value(&state).expect("state serializes"),
        );
        let rec = self.store.create_container(NewContainer {
            name: opts.name.clone(),
            image: img,
            image_name: image.to_string(),
            config: serde_json::to_value(&config).expect("config serializes"),
            extra,
        })?;
        let c = WorkingContainer::from_record(rec)?;
        std::fs::create_dir_all(c.work())
            .map_err(io_err(format!("creating {}", c.work().display())))?;
        if c.state.vfs {
            let dir = c.vfs_rootfs();
            let made = std::fs::create_dir(&dir)
                .map_err(io_err(format!("creating {}", dir.display())))
                .and_then(|()| {
                    kiln_layer::copy_tree(&lower, &dir).map_err(|e| BuildError::Layer {
                        what: format!("copying {} for container {}", lower.display(), c.name()),
                        source: e,
                    })
                })
                .and_then(|(stamp, _)| {
                    let p = c.dir().join("vfs-stamp");
                    std::fs::write(&p, stamp.to_bytes())
                        .map_err(io_err(format!("writing {}", p.display())))
                });
            if let Err(e) = made {
                let _ = self.remove(c.id());
                return Err(e);
            }
        }
        tracing::debug!("container {} over {}", c.name(), lower.display());
        Ok(c)
    }

    /// The container named `name_or_id` (name, full ID or unique ID prefix).
    pub fn get(&self, name_or_id: &str) -> Result<WorkingContainer> {
        let rec = self.store.get_container(name_or_id).map_err(|_| {
            other(format!(
                "no working container named {name_or_id:?} (see `kiln containers`)"
            ))
        })?;
        WorkingContainer::from_record(rec)
    }

    /// Every working container, oldest first.
    pub fn list(&self) -> Result<Vec<WorkingContainer>> {
        self.store
            .list_containers()?
            .into_iter()
            .map(WorkingContainer::from_record)
            .collect()
    }

    /// Write `c`'s config and state back to its record.
    pub fn save(&self, c: &mut WorkingContainer) -> Result<()> {
        c.record.config = serde_json::to_value(&c.config).expect("config serializes");
        c.record.extra.insert(
            STATE_KEY.to_string(),
            serde_json::to_value(&c.state).expect("state serializes"),
        );
        self.store.update_container(&c.record)?;
        Ok(())
    }

    /// The container's lower directory (the flattened image), recreated when pruned.
    fn lower(&self, c: &WorkingContainer) -> Result<PathBuf> {
        flat_snapshot(self.store, &c.state.layers)
    }

    /// The merged filesystem as a layer stack (upper first) and the directory writes go to:
    /// the host mount when mounted, else the upper directory over the lower one.
    pub fn view(&self, c: &WorkingContainer) -> Result<(LayerStack, PathBuf)> {
        if let Some(m) = c.mounted_at() {
            return Ok((
                LayerStack {
                    dirs: vec![m.clone()],
                },
                m,
            ));
        }
        if c.state.vfs {
            let dir = c.vfs_rootfs();
            return Ok((
                LayerStack {
                    dirs: vec![dir.clone()],
                },
                dir,
            ));
        }
        let upper = c.upper();
        Ok((
            LayerStack {
                dirs: vec![upper.clone(), self.lower(c)?],
            },
            upper,
        ))
    }

    /// The root filesystem a command in the container runs on: its host mount when mounted,
    /// else an overlay of its upper directory on the flattened image.
    pub fn rootfs(&self, c: &WorkingContainer) -> Result<Rootfs> {
        Ok(match c.mounted_at() {
            Some(m) => Rootfs::Dir(m),
            None if c.state.vfs => Rootfs::Dir(c.vfs_rootfs()),
            None => Rootfs::Overlay {
                lowers: vec![self.lower(c)?],
                upper: c.upper(),
                work: c.work(),
            },
        })
    }

    /// A working container for one build stage over `layers` (a stage's base) with `config`,
    /// named `kiln-stage-<hint>-<n>`; remove it with [`Containers::remove`] when done.
    pub fn ephemeral(
        &self,
        hint: &str,
        config: &ImageConfig,
        layers: &[LayerRef],
    ) -> Result<WorkingContainer> {
        flat_snapshot(self.store, layers)?;
        let state = WorkingState {
            layers: layers.to_vec(),
            lower: flat_key(layers),
            ..Default::default()
        };
        let mut extra = BTreeMap::new();
        extra.insert(
            STATE_KEY.to_string(),
            serde_json::to_value(&state).expect("state serializes"),
        );
        let taken: Vec<String> = self
            .store
            .list_containers()?
            .into_iter()
            .map(|c| c.name)
            .collect();
        let name = (0..)
            .map(|n| format!("kiln-stage-{hint}-{n}"))
            .find(|n| !taken.contains(n))
            .expect("an unused name");
        let rec = self.store.create_container(NewContainer {
            name: Some(name),
            image: None,
            image_name: format!("stage {hint}"),
            config: serde_json::to_value(config).expect("config serializes"),
            extra,
        })?;
        let c = WorkingContainer::from_record(rec)?;
        std::fs::create_dir_all(c.work())
            .map_err(io_err(format!("creating {}", c.work().display())))?;
        Ok(c)
    }

    /// The one layer a commit of `c` adds: everything changed since it was created (an empty
    /// layer when nothing was, as buildah). `exclude` lists rootfs paths left out.
    pub fn commit_layer(
        &self,
        c: &WorkingContainer,
        exclude: &[PathBuf],
        timestamp: Option<i64>,
    ) -> Result<LayerRef> {
        let lower = self.lower(c)?;
        if c.state.vfs {
            let stamp = c.vfs_stamp()?;
            return layer_from_tree(
                self.store,
                &lower,
                &c.vfs_rootfs(),
                Some(&stamp),
                exclude,
                timestamp,
                true,
                kiln_layer::Compression::Gzip,
            )?
            .ok_or_else(|| other("an empty layer was not written"));
        }
        layer_from_upper(
            self.store,
            &c.upper(),
            exclude,
            std::slice::from_ref(&lower),
            timestamp,
            true,
        )?
        .ok_or_else(|| other("an empty layer was not written"))
    }

    /// Run `argv` in the container; its writes land in the container's upper directory.
    /// Returns the command's exit status (128+signal when killed).
    pub fn run(&self, c: &WorkingContainer, argv: &[String], opts: &RunOptions) -> Result<i32> {
        if argv.is_empty() {
            return Err(other(format!("kiln run {}: no command given", c.name())));
        }
        let rc = &c.config.config;
        let mut env: Vec<(String, String)> = rc
            .env
            .clone()
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        for (k, v) in &opts.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        let user = opts
            .user
            .clone()
            .or_else(|| rc.user.clone())
            .unwrap_or_default();
        let cwd = opts
            .workdir
            .clone()
            .or_else(|| rc.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        let network = match opts.network.as_deref().unwrap_or("host") {
            "host" | "default" => Network::Host,
            "none" | "private" => Network::Private,
            o => {
                return Err(other(format!(
                    "kiln run: unknown network mode {o:?} (host, none or private)"
                )));
            }
        };
        let mut spec = RunSpec::new(self.rootfs(c)?, argv.to_vec());
        spec.env = env;
        spec.cwd = cwd;
        spec.user = UserSpec::parse(&user)
            .map_err(|e| other(format!("kiln run {}: --user {user}: {e}", c.name())))?;
        spec.network = network;
        spec.hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| c.id().chars().take(12).collect());
        spec.stdin = if opts.stdin {
            Input::Inherit
        } else {
            Input::Null
        };
        spec.stdout = Output::Inherit;
        spec.stderr = Output::Inherit;
        let process_err = |e: String| other(format!("kiln run {}: {e}", c.name()));
        spec.confinement = c.state.process.confinement().map_err(process_err)?;
        spec.confinement.capabilities = spec
            .confinement
            .capabilities
            .with_changes(&opts.cap_add, &opts.cap_drop)
            .map_err(|e| process_err(format!("--cap-add/--cap-drop: {e}")))?;
        spec.mounts
            .extend(c.state.process.device_mounts().map_err(process_err)?);
        for (src, target, ro) in c.state.run_binds.iter().chain(&opts.binds) {
            let m = if src.is_dir() {
                ExtraMount::BindDir {
                    src: src.clone(),
                    target: target.clone(),
                    readonly: *ro,
                }
            } else {
                ExtraMount::BindFile {
                    src: src.clone(),
                    target: target.clone(),
                    readonly: *ro,
                }
            };
            spec.mounts.push(m);
        }
        let volumes_tmp = tempfile::Builder::new()
            .prefix("volumes-")
            .tempdir_in(self.store.tmp_dir())
            .map_err(io_err("creating a scratch dir".into()))?;
        let volumes: Vec<String> = rc
            .volumes
            .as_ref()
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
        if !volumes.is_empty() {
            let (stack, upper) = self.view(c)?;
            let location = format!("kiln run {}", c.name());
            spec.mounts.extend(volume_mounts(
                &stack,
                &upper,
                &volumes,
                volumes_tmp.path(),
                &location,
            )?);
        }
        let out = kiln_sandbox::run(spec).map_err(|e| BuildError::Sandbox {
            what: format!("kiln run {}", c.name()),
            source: e,
        })?;
        Ok(out.status)
    }

    /// The root directory `--from` names: a working container's merged filesystem or an
    /// image's flattened one (pulled when missing).
    fn source_root_of(&self, from: &str) -> Result<PathBuf> {
        if let Ok(src) = self.get(from) {
            if let Some(m) = src.mounted_at() {
                return Ok(m);
            }
            if src.state.vfs {
                return Ok(src.vfs_rootfs());
            }
            let mut layers = src.state.layers.clone();
            if let Some(l) = layer_from_upper(
                self.store,
                &src.upper(),
                &[],
                &[self.lower(&src)?],
                None,
                false,
            )? {
                layers.push(l);
            }
            return flat_snapshot(self.store, &layers);
        }
        let platform = Platform::host();
        let (_, _, _, flat) = find_or_pull(
            self.store,
            &self.registry,
            from,
            &platform,
            false,
            PullPolicy::Missing,
            self.quiet,
        )
        .map_err(|e| other(format!("--from {from}: {e}")))?;
        Ok(flat)
    }

    /// Copy (or, with `is_add`, add) sources into the container. Returns a digest of what was
    /// copied.
    pub fn copy(&self, c: &WorkingContainer, opts: &CopyOptions) -> Result<String> {
        let verb = if opts.is_add { "add" } else { "copy" };
        let location = format!("kiln {verb} {}", c.name());
        if opts.sources.is_empty() {
            return Err(other(format!("{location}: no source given")));
        }
        let from_root = match &opts.from {
            Some(f) => Some(self.source_root_of(f)?),
            None => None,
        };
        let context_dir = opts
            .context_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/"));
        let ignore = match &opts.ignore_file {
            Some(f) => IgnoreRules::parse(
                &std::fs::read_to_string(f).map_err(io_err(format!("reading {}", f.display())))?,
            ),
            None => IgnoreRules::default(),
        };
        let mut sources = Vec::new();
        for s in &opts.sources {
            if opts.is_add && (s.starts_with("http://") || s.starts_with("https://")) {
                sources.push(CopySource::Url(s.clone()));
                continue;
            }
            if from_root.is_some() {
                sources.push(CopySource::Path(s.clone()));
                continue;
            }
            let abs = if s.starts_with('/') {
                PathBuf::from(s)
            } else {
                opts.cwd.join(s)
            };
            let rel = abs.strip_prefix(&context_dir).map_err(|_| {
                other(format!(
                    "{location}: source {s:?} is outside the context directory {}",
                    context_dir.display()
                ))
            })?;
            let mut rel = rel.to_string_lossy().into_owned();
            if s.ends_with('/') && !rel.ends_with('/') {
                rel.push('/');
            }
            sources.push(CopySource::Path(rel));
        }
        let root = match &from_root {
            Some(p) => SourceRoot::Rootfs(p),
            None => SourceRoot::Context {
                dir: &context_dir,
                ignore: &ignore,
            },
        };
        let scratch = tempfile::Builder::new()
            .prefix("copy-")
            .tempdir_in(self.store.tmp_dir())
            .map_err(io_err("creating a scratch dir".into()))?;
        let expanded = copy::expand(
            &root,
            &sources,
            opts.is_add,
            None,
            &location,
            scratch.path(),
        )?;
        let dest =
            crate::executor::copy_destination(c.config.config.working_dir.as_deref(), &opts.dest);
        let (stack, upper) = self.view(c)?;
        if c.mounted_at().is_none() {
            reopen_whiteouts(&upper, &dest)?;
        }
        let owner = match &opts.chown {
            Some(spec) => Some(owner_in(
                &stack,
                spec,
                &scratch.path().join("owner-upper"),
                &location,
            )?),
            None => None,
        };
        let chmod = match &opts.chmod {
            Some(m) => Some(
                crate::mode::ModeSpec::parse(m).map_err(|e| other(format!("{location}: {e}")))?,
            ),
            None => None,
        };
        copy::write_items(
            &expanded.items,
            &dest,
            &stack,
            &upper,
            Attrs {
                owner,
                chmod,
                strip_setid: false,
            },
            &root,
            None,
            false,
            &location,
        )?;
        Ok(expanded.digest)
    }

    /// Apply `config` changes to the container and save it.
    pub fn configure(&self, c: &mut WorkingContainer, ch: &ConfigChanges) -> Result<()> {
        apply_changes(&mut c.config, &mut c.state, ch)?;
        self.save(c)
    }

    /// Mount the container's merged filesystem on its `rootfs/` directory (needs root, or
    /// `kiln unshare` when rootless); returns the mount point. Already mounted: the same path.
    pub fn mount(&self, c: &mut WorkingContainer) -> Result<PathBuf> {
        if let Some(m) = c.mounted_at() {
            return Ok(m);
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(other(format!(
                "kiln mount {}: mounting needs root; in rootless mode run it inside `kiln unshare`",
                c.name()
            )));
        }
        let target = c.record.rootfs.clone();
        std::fs::create_dir_all(&target)
            .map_err(io_err(format!("creating {}", target.display())))?;
        std::fs::create_dir_all(c.work())
            .map_err(io_err(format!("creating {}", c.work().display())))?;
        if c.state.vfs {
            let src = c.vfs_rootfs();
            let (s_c, t_c) = (
                CString::new(src.as_os_str().as_bytes())
                    .map_err(|_| other("path holds a NUL byte"))?,
                CString::new(target.as_os_str().as_bytes())
                    .map_err(|_| other("path holds a NUL byte"))?,
            );
            // SAFETY: NUL-terminated strings that outlive the call.
            let r = unsafe {
                libc::mount(
                    s_c.as_ptr(),
                    t_c.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                return Err(BuildError::Io {
                    what: format!(
                        "kiln mount {}: bind {} on {}",
                        c.name(),
                        src.display(),
                        target.display()
                    ),
                    source: std::io::Error::last_os_error(),
                });
            }
            return self.record_mount(c, target);
        }
        let lower = self.lower(c)?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            escape_overlay(&lower),
            escape_overlay(&c.upper()),
            escape_overlay(&c.work())
        );
        let cstr = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|_| other("path holds a NUL byte"))
        };
        let tgt = cstr(&target)?;
        let data_c = CString::new(data.clone()).map_err(|_| other("path holds a NUL byte"))?;
        // SAFETY: NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                tgt.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data_c.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(BuildError::Io {
                what: format!(
                    "kiln mount {}: mount overlay ({data}) on {}",
                    c.name(),
                    target.display()
                ),
                source: std::io::Error::last_os_error(),
            });
        }
        self.record_mount(c, target)
    }

    /// Remember where `c` is mounted; a record that cannot be saved undoes the mount.
    fn record_mount(&self, c: &mut WorkingContainer, target: PathBuf) -> Result<PathBuf> {
        c.state.mount_point = Some(target.clone());
        if let Err(e) = self.save(c) {
            let _ = unmount(&target);
            return Err(e);
        }
        Ok(target)
    }

    /// Unmount the container if it is mounted (a recorded mount that is gone is just forgotten).
    pub fn umount(&self, c: &mut WorkingContainer) -> Result<()> {
        if let Some(m) = c.mounted_at() {
            unmount(&m).map_err(io_err(format!("kiln umount {}: {}", c.name(), m.display())))?;
        }
        if c.state.mount_point.take().is_some() {
            self.save(c)?;
        }
        Ok(())
    }

    /// Write the container as an image: the source image's layers plus one layer of everything
    /// changed since `from` (or one layer of the whole filesystem with `squash`).
    pub fn commit(&self, c: &WorkingContainer, opts: &CommitOptions) -> Result<ImageRecord> {
        let new = self.commit_layer(c, &[], opts.timestamp)?;
        let mut layers = c.state.layers.clone();
        layers.push(new);
        let mut config = c.config.clone();
        if opts.squash {
            let flat = flat_snapshot(self.store, &layers)?;
            let one = layer_from_upper(self.store, &flat, &[], &[], opts.timestamp, true)?
                .ok_or_else(|| other("an empty layer was not written"))?;
            layers = vec![one];
            config.history.clear();
        }
        let created = opts
            .timestamp
            .unwrap_or_else(|| chrono::Utc::now().timestamp());
        let created = chrono::DateTime::from_timestamp(created, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        config.created = Some(created.clone());
        for (k, v) in &opts.labels {
            config
                .config
                .labels
                .get_or_insert_with(Default::default)
                .insert(k.clone(), v.clone());
        }
        config.history.push(History {
            created: Some(created),
            created_by: c.state.created_by.clone(),
            author: config.author.clone(),
            comment: c.state.history_comment.clone(),
            empty_layer: false,
            ..Default::default()
        });
        if opts.format == Format::Oci {
            config::strip_docker_only(&mut config);
        }
        // The image the container was made from, as buildah notes it (`config --annotation`
        // wins); none for scratch or an image the store no longer has.
        let mut annotations: Vec<(String, String)> = match c
            .record
            .image_id
            .and_then(|id| self.store.resolve_image(&id.to_string()).ok())
        {
            Some(base) => crate::executor::base_annotations(
                &ImageReference::parse(&c.record.image_name)
                    .map_or(c.record.image_name.clone(), |r| r.to_string()),
                &base.manifest_digest,
            ),
            None => Vec::new(),
        };
        annotations.extend(
            c.state
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let names: Vec<&str> = opts.names.iter().map(String::as_str).collect();
        write_image(
            self.store,
            config,
            &layers,
            opts.format,
            &annotations,
            &names,
        )
    }

    /// Remove a container: unmount it, then delete its record and directory.
    pub fn remove(&self, name_or_id: &str) -> Result<ContainerRecord> {
        let mut c = self.get(name_or_id)?;
        self.umount(&mut c)?;
        // A mount point left by an older namespace (or lazily detached) must not be walked.
        if is_mount_point(&c.record.rootfs) {
            unmount(&c.record.rootfs)
                .map_err(io_err(format!("unmounting {}", c.record.rootfs.display())))?;
        }
        Ok(self.store.remove_container(c.id())?)
    }
}

/// As buildah's `run`: each configured volume exists in the container (created in `upper` when
/// missing) and the command sees a throwaway copy of its content there (made under `tmp`), so
/// what the command writes into a volume is not kept.
pub(crate) fn volume_mounts(
    stack: &LayerStack,
    upper: &Path,
    volumes: &[String],
    tmp: &Path,
    location: &str,
) -> Result<Vec<ExtraMount>> {
    let mut mounts = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let existing = match stack.resolve(v, true) {
            Ok((_, Lookup::Found(p, m))) if m.is_dir() => Some(p),
            _ => None,
        };
        let comps = crate::layers::components(v);
        copy::ensure_dir(stack, upper, &comps, None, location)?;
        let dst = tmp.join(i.to_string());
        match existing {
            Some(p) => copy::copy_tree(&p, &dst)?,
            None => {
                std::fs::create_dir(&dst).map_err(io_err(format!("creating {}", dst.display())))?
            }
        }
        mounts.push(ExtraMount::BindDir {
            src: dst,
            target: v.clone(),
            readonly: false,
        });
    }
    Ok(mounts)
}

/// Directories on the way to `dest` that an earlier `run` deleted are whiteouts in the upper
/// directory: turn each into an empty opaque directory so the copy can create it again without
/// the deleted lower content reappearing.
fn reopen_whiteouts(upper: &Path, dest: &str) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let comps = crate::layers::components(dest);
    let parents = if dest.ends_with('/') {
        &comps[..]
    } else {
        &comps[..comps.len().saturating_sub(1)]
    };
    let mut p = upper.to_path_buf();
    for c in parents {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => {
                std::fs::remove_file(&p).map_err(io_err(format!("replacing {}", p.display())))?;
                std::fs::create_dir(&p).map_err(io_err(format!("creating {}", p.display())))?;
                mark_opaque(&p)?;
            }
            Ok(m) if m.is_dir() => {}
            _ => break,
        }
    }
    Ok(())
}

/// Build the one layer of a plan stage whose steps each made their own overlay upper (buildah
/// scripting: one layer per committed container): an ephemeral working container over the
/// stage's base `layers` takes each step's upper in order (`uppers`, oldest first), and its
/// commit layer is returned; the container is removed again.
pub fn stage_layer(
    containers: &Containers<'_>,
    hint: &str,
    config: &ImageConfig,
    layers: &[LayerRef],
    uppers: &[PathBuf],
    timestamp: Option<i64>,
) -> Result<LayerRef> {
    let c = containers.ephemeral(hint, config, layers)?;
    let made = (|| {
        for u in uppers {
            absorb_upper(&c.upper(), u)?;
        }
        containers.commit_layer(&c, &[], timestamp)
    })();
    let removed = containers.remove(c.id());
    let layer = made?;
    removed?;
    Ok(layer)
}

/// Turn a finished plan stage whose steps each added a layer into buildah's one layer per
/// commit: the layers after the first `base_layers` (their uppers are the topmost directories
/// of `stack`) become one layer made by [`stage_layer`]; the history entries after
/// `base_history` become one entry (`created_by`, at `created`); `stack` becomes the flattened
/// result. A `made` layer (the same fold found in the build cache) is used as is. Returns the
/// stage's one layer.
#[allow(clippy::too_many_arguments)]
pub fn fold_stage(
    containers: &Containers<'_>,
    hint: &str,
    base_layers: usize,
    base_history: usize,
    layers: &mut Vec<LayerRef>,
    config: &mut ImageConfig,
    stack: &mut LayerStack,
    created: &str,
    created_by: Option<String>,
    timestamp: Option<i64>,
    made: Option<LayerRef>,
) -> Result<LayerRef> {
    let new = layers.len().saturating_sub(base_layers);
    // With the vfs driver, steps leave the whole filesystem instead of an upper dir per layer:
    // the folded layer is then the difference between the base's and the result's filesystems.
    let uppers_on_top = stack.dirs.len() > new
        && stack.dirs[..new]
            .iter()
            .all(|d| d.file_name().is_some_and(|n| n == "upper"));
    let layer = match made {
        Some(l) => l,
        None if new > 0 && !uppers_on_top => {
            let store = containers.store;
            let base = flat_snapshot_reusing(store, &layers[..base_layers.min(layers.len())])?;
            let result = if stack.dirs.len() == 1 {
                stack.dirs[0].clone()
            } else {
                flat_snapshot_reusing(store, layers)?
            };
            layer_from_tree(
                store,
                &base,
                &result,
                None,
                &[],
                timestamp,
                true,
                kiln_layer::Compression::Gzip,
            )?
                .ok_or_else(|| other("an empty layer was not written"))?
        }
        None => {
            if stack.dirs.len() < new {
                return Err(other(format!(
                    "stage {hint}: {new} step layers but only {} directories",
                    stack.dirs.len()
                )));
            }
            let uppers: Vec<PathBuf> = stack.dirs[..new].iter().rev().cloned().collect();
            stage_layer(
                containers,
                hint,
                config,
                &layers[..base_layers.min(layers.len())],
                &uppers,
                timestamp,
            )?
        }
    };
    layers.truncate(base_layers);
    layers.push(layer.clone());
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id).collect();
    config.history.truncate(base_history);
    config.history.push(History {
        created: Some(created.to_string()),
        created_by,
        author: config.author.clone(),
        empty_layer: false,
        ..Default::default()
    });
    *stack = LayerStack {
        dirs: vec![flat_snapshot_reusing(containers.store, layers)?],
    };
    Ok(layer)
}

/// Mark a directory of an overlay upper opaque: the lower content under it is hidden.
fn mark_opaque(p: &Path) -> Result<()> {
    let cp = CString::new(p.as_os_str().as_bytes()).map_err(|_| other("path holds a NUL byte"))?;
    // SAFETY: NUL-terminated path and name, a one-byte value.
    let r = unsafe {
        libc::lsetxattr(
            cp.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if r != 0 {
        return Err(io_err(format!("marking {} opaque", p.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    m.file_type().is_char_device() && m.rdev() == 0
}

fn overlay_opaque(p: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|n| get_xattr(p, n).as_deref() == Some(b"y"))
}

fn xattr_names(p: &Path) -> Vec<CString> {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    // SAFETY: a size query with no buffer.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; n as usize];
    // SAFETY: buf holds n bytes.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| CString::new(s).ok())
        .collect()
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: NUL-terminated strings, a buffer of the given size.
    let len =
        unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

/// Copy `src`'s extended attributes (overlay markers included) onto `dst`.
fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    let Ok(d) = CString::new(dst.as_os_str().as_bytes()) else {
        return Ok(());
    };
    for name in xattr_names(src) {
        let Some(v) = get_xattr(src, &name.to_string_lossy()) else {
            continue;
        };
        // SAFETY: NUL-terminated strings, a buffer of v.len() bytes.
        let r =
            unsafe { libc::lsetxattr(d.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if r != 0 {
            return Err(io_err(format!(
                "setting {} on {}",
                name.to_string_lossy(),
                dst.display()
            ))(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn remove_any(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).map_err(io_err(format!("removing {}", p.display())))
        }
        Ok(_) => std::fs::remove_file(p).map_err(io_err(format!("removing {}", p.display()))),
        Err(_) => Ok(()),
    }
}

/// Where the files with several links of one upper directory went: a later link of the same
/// source inode is made a hard link to the first copy.
type CopiedLinks = HashMap<(u64, u64), PathBuf>;

/// Make `dst` a copy of the single node `src` (no recursion): file content, symlink, whiteout
/// or other device node, fifo, or an empty directory; owner, mode, times and xattrs kept. A file
/// whose inode `links` has seen becomes a hard link to that copy.
fn copy_node(src: &Path, dst: &Path, m: &std::fs::Metadata, links: &mut CopiedLinks) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let ft = m.file_type();
    let io = |what: &str| io_err(format!("{what} {}", dst.display()));
    if ft.is_file() && m.nlink() > 1 {
        match links.get(&(m.dev(), m.ino())) {
            Some(first) if std::fs::hard_link(first, dst).is_ok() => return Ok(()),
            _ => {
                links.insert((m.dev(), m.ino()), dst.to_path_buf());
            }
        }
    }
    if ft.is_dir() {
        std::fs::create_dir(dst).map_err(io("creating"))?;
    } else if ft.is_symlink() {
        let t = std::fs::read_link(src).map_err(io_err(format!("reading {}", src.display())))?;
        std::os::unix::fs::symlink(t, dst).map_err(io("creating"))?;
    } else if ft.is_file() {
        std::fs::copy(src, dst).map_err(io("copying to"))?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let c = CString::new(dst.as_os_str().as_bytes()).map_err(|_| other("NUL in a path"))?;
        // SAFETY: a NUL-terminated path; mode and device from the source node.
        if unsafe { libc::mknod(c.as_ptr(), m.mode(), m.rdev()) } != 0 {
            return Err(io("creating")(std::io::Error::last_os_error()));
        }
    } else {
        return Ok(());
    }
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid())).map_err(io("chown"))?;
    if !ft.is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io("chmod"))?;
    }
    copy_xattrs(src, dst)?;
    let c = CString::new(dst.as_os_str().as_bytes()).map_err(|_| other("NUL in a path"))?;
    let ts = [
        libc::timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec(),
        },
        libc::timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        },
    ];
    // SAFETY: a NUL-terminated path and two timespecs; the link itself for symlinks.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    Ok(())
}

/// Copy the tree `src` to the new path `dst` with [`copy_node`] for every node.
fn copy_node_tree(src: &Path, dst: &Path, links: &mut CopiedLinks) -> Result<()> {
    let m = std::fs::symlink_metadata(src).map_err(io_err(format!("reading {}", src.display())))?;
    copy_node(src, dst, &m, links)?;
    if m.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(src)
            .map_err(io_err(format!("listing {}", src.display())))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            copy_node_tree(&src.join(&n), &dst.join(&n), links)?;
        }
        // The directory's times again, after its entries were written.
        copy_node_times(&m, dst);
    }
    Ok(())
}

fn copy_node_times(m: &std::fs::Metadata, dst: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(c) = CString::new(dst.as_os_str().as_bytes()) else {
        return;
    };
    let ts = [
        libc::timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec(),
        },
        libc::timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        },
    ];
    // SAFETY: a NUL-terminated path and two timespecs.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

/// Apply overlay upper directory `from` (made over `into` and the same lower) onto the upper
/// directory `into`, so that `into` alone then holds both sets of changes: whiteouts and
/// non-directories replace what `into` had, opaque directories replace its whole subtree, other
/// directories merge (their own attributes taken from `from`). Files linked to each other in
/// `from` stay linked.
pub fn absorb_upper(into: &Path, from: &Path) -> Result<()> {
    absorb_dir(into, from, &mut CopiedLinks::new())
}

fn absorb_dir(into: &Path, from: &Path, links: &mut CopiedLinks) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(from)
        .map_err(io_err(format!("listing {}", from.display())))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for n in names {
        let src = from.join(&n);
        let dst = into.join(&n);
        let m = std::fs::symlink_metadata(&src)
            .map_err(io_err(format!("reading {}", src.display())))?;
        if m.is_dir() && !overlay_opaque(&src) && !is_whiteout(&m) {
            match std::fs::symlink_metadata(&dst) {
                Ok(d) if d.is_dir() => {
                    use std::os::unix::fs::{MetadataExt, PermissionsExt};
                    std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))
                        .map_err(io_err(format!("chown {}", dst.display())))?;
                    std::fs::set_permissions(
                        &dst,
                        std::fs::Permissions::from_mode(m.mode() & 0o7777),
                    )
                    .map_err(io_err(format!("chmod {}", dst.display())))?;
                    copy_xattrs(&src, &dst)?;
                }
                other => {
                    // A directory made again where an earlier step deleted one: the deleted
                    // content must stay hidden.
                    let over_whiteout = matches!(&other, Ok(d) if is_whiteout(d));
                    remove_any(&dst)?;
                    copy_node(&src, &dst, &m, links)?;
                    if over_whiteout {
                        mark_opaque(&dst)?;
                    }
                }
            }
            absorb_dir(&dst, &src, links)?;
            copy_node_times(&m, &dst);
        } else {
            remove_any(&dst)?;
            copy_node_tree(&src, &dst, links)?;
        }
    }
    Ok(())
}

/// overlayfs option values escape `,`, `:` and `\`.
fn escape_overlay(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn unmount(p: &Path) -> std::io::Result<()> {
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EBUSY) {
        // SAFETY: as above; a busy mount is detached and goes when its last user does.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        return Err(std::io::Error::last_os_error());
    }
    Err(e)
}

/// Decode the octal escapes of a mountinfo field.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points of this process's mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

fn is_mount_point(p: &Path) -> bool {
    mount_points().iter().any(|m| m == p)
}

// ---------- config changes ----------

/// Split `s` into words as a POSIX shell would (quotes and backslashes; no expansion).
pub fn shell_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(other(format!("unterminated ' in {s:?}"))),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(other(format!("unterminated \" in {s:?}"))),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(other(format!("unterminated \" in {s:?}"))),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => cur.push(c),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// A JSON array of strings, or `None` when `s` is not one.
fn json_array(s: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(s.trim()).ok()
}

/// Expand `$NAME` and `${NAME}` from `env` (`KEY=VALUE` entries); an unknown name expands to
/// itself, as in buildah.
fn expand_env(v: &str, env: &[String]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or(name)
            .to_string()
    };
    let mut out = String::new();
    let b: Vec<char> = v.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            if b[i + 1] == '{'
                && let Some(end) = b[i + 2..].iter().position(|&c| c == '}')
            {
                let name: String = b[i + 2..i + 2 + end].iter().collect();
                out.push_str(&lookup(&name));
                i += 3 + end;
                continue;
            }
            let n = b[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            if n > 0 {
                let name: String = b[i + 1..i + 1 + n].iter().collect();
                out.push_str(&lookup(&name));
                i += 1 + n;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A Go duration (`1h2m3.5s`, `300ms`) in nanoseconds.
fn go_duration(s: &str) -> Result<i64> {
    let bad = || other(format!("{s:?} is not a duration such as 30s or 1m30s"));
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Ok(total as i64)
}

/// Apply `config` changes as buildah 1.28 does.
pub fn apply_changes(
    cfg: &mut ImageConfig,
    state: &mut WorkingState,
    ch: &ConfigChanges,
) -> Result<()> {
    if let Some(a) = &ch.author {
        cfg.author = Some(a.clone()).filter(|a| !a.is_empty());
    }
    if let Some(c) = &ch.created_by {
        state.created_by = Some(c.clone()).filter(|c| !c.is_empty());
    }
    if let Some(a) = &ch.arch {
        cfg.architecture = a.clone();
    }
    if let Some(o) = &ch.os {
        cfg.os = o.clone();
    }
    if let Some(v) = &ch.variant {
        cfg.variant = Some(v.clone()).filter(|v| !v.is_empty());
    }
    if let Some(c) = &ch.comment {
        cfg.extra
            .insert("comment".into(), serde_json::Value::String(c.clone()));
    }
    if let Some(c) = &ch.history_comment {
        state.history_comment = Some(c.clone()).filter(|c| !c.is_empty());
    }
    let rc = &mut cfg.config;
    if let Some(h) = &ch.hostname {
        rc.extra
            .insert("Hostname".into(), serde_json::Value::String(h.clone()));
    }
    if let Some(d) = &ch.domainname {
        rc.extra
            .insert("Domainname".into(), serde_json::Value::String(d.clone()));
    }
    if let Some(u) = &ch.user {
        rc.user = Some(u.clone()).filter(|u| !u.is_empty());
    }
    if let Some(s) = &ch.shell {
        // buildah splits the value into words, JSON or not.
        rc.shell = Some(shell_words(s)?).filter(|v| !v.is_empty());
    }
    if let Some(s) = &ch.stop_signal {
        rc.stop_signal = Some(s.clone()).filter(|s| !s.is_empty());
    }
    for p in &ch.ports {
        if p.starts_with('-') {
            rc.exposed_ports = None;
        } else if let Some(p) = p.strip_suffix('-') {
            if let Some(set) = rc.exposed_ports.as_mut() {
                set.0.remove(p);
            }
        } else {
            rc.exposed_ports
                .get_or_insert_with(Default::default)
                .insert(p.clone());
        }
    }
    for e in &ch.env {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) => {
                let v = expand_env(v, rc.env.as_deref().unwrap_or(&[]));
                (k.to_string(), v)
            }
            None if e == "-" => {
                rc.env = None;
                continue;
            }
            None if e.ends_with('-') => {
                rc.env_unset(e.trim_end_matches('-'));
                continue;
            }
            None => (e.clone(), std::env::var(e).unwrap_or_default()),
        };
        rc.env_append(&k, &v);
    }
    if let Some(e) = &ch.entrypoint {
        rc.entrypoint = if e.trim().is_empty() {
            None
        } else {
            match json_array(e) {
                Some(v) => Some(v),
                None => Some(vec!["/bin/sh".into(), "-c".into(), e.clone()]),
            }
        };
    }
    if let Some(c) = &ch.cmd {
        rc.cmd = if c.is_empty() {
            None
        } else {
            match json_array(c) {
                Some(v) => Some(v),
                None => Some(shell_words(c)?),
            }
        };
    }
    for v in &ch.volumes {
        if let Some(v) = v.strip_suffix('-') {
            if let Some(set) = rc.volumes.as_mut() {
                set.0.remove(v);
            }
        } else {
            rc.volumes
                .get_or_insert_with(Default::default)
                .insert(v.clone());
        }
    }
    for l in &ch.labels {
        match l.split_once('=') {
            Some((k, v)) => {
                rc.labels
                    .get_or_insert_with(Default::default)
                    .insert(k.to_string(), v.to_string());
            }
            None if l.ends_with('-') => {
                if let Some(m) = rc.labels.as_mut() {
                    m.remove(l.trim_end_matches('-'));
                }
            }
            None => {
                rc.labels
                    .get_or_insert_with(Default::default)
                    .insert(l.clone(), String::new());
            }
        }
    }
    if let Some(w) = &ch.workingdir {
        rc.working_dir = Some(w.clone()).filter(|w| !w.is_empty());
    }
    for t in &ch.onbuild {
        rc.on_build.get_or_insert_with(Vec::new).push(t.clone());
    }
    for a in &ch.annotations {
        match a.split_once('=') {
            Some((k, v)) => {
                state.annotations.insert(k.to_string(), v.to_string());
            }
            None if a.ends_with('-') => {
                state.annotations.remove(a.trim_end_matches('-'));
            }
            None => {
                state.annotations.insert(a.clone(), String::new());
            }
        }
    }
    if let Some(h) = &ch.healthcheck {
        // As buildah 1.28: the test is the words of the value (`NONE` included); a new health
        // check starts with a 30s interval, a 30s timeout and 3 retries.
        let test = shell_words(h)?;
        rc.healthcheck = if test.is_empty() {
            None
        } else {
            let base = rc.healthcheck.clone().unwrap_or_else(|| HealthConfig {
                interval: Some(30_000_000_000),
                timeout: Some(30_000_000_000),
                retries: Some(3),
                ..Default::default()
            });
            Some(HealthConfig {
                test: Some(test),
                ..base
            })
        };
    }
    let durations = [
        (&ch.healthcheck_interval, 0),
        (&ch.healthcheck_timeout, 1),
        (&ch.healthcheck_start_period, 2),
    ];
    for (v, which) in durations {
        let Some(v) = v else { continue };
        let ns = go_duration(v)?;
        if let Some(h) = rc.healthcheck.as_mut() {
            match which {
                0 => h.interval = Some(ns),
                1 => h.timeout = Some(ns),
                _ => h.start_period = Some(ns),
            }
        }
    }
    if let (Some(r), Some(h)) = (ch.healthcheck_retries, rc.healthcheck.as_mut()) {
        h.retries = Some(r as i64);
    }
    Ok(())
}

// ---------- unshare ----------

/// Environment variable set inside `kiln unshare`.
pub const UNSHARED_ENV: &str = "KILN_UNSHARED";

/// Move this (single-threaded) process into a new mount namespace, and, when not root, a new
/// user namespace too where it is root (container 0 = the caller, 1.. = its `/etc/subuid` and
/// `/etc/subgid` ranges, as buildah unshare maps). Mounts made afterwards stay private to the
/// namespace and vanish with it.
pub fn enter_unshared() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        let map = kiln_sandbox::IdMap::detect(kiln_sandbox::UserNs::Auto).map_err(|e| {
            BuildError::Sandbox {
                what: "kiln unshare: id mapping".into(),
                source: e,
            }
        })?;
        let mut fds = [0i32; 2];
        // SAFETY: fds is a valid two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io_err("kiln unshare: pipe".into())(
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        // SAFETY: kiln is single-threaded here; the child only reads a pipe, runs the map tools
        // and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io_err("kiln unshare: fork".into())(
                std::io::Error::last_os_error(),
            ));
        }
        if pid == 0 {
            let mut b = [0u8; 1];
            // SAFETY: reading one byte into a stack buffer.
            unsafe {
                libc::close(fds[1]);
                libc::read(fds[0], b.as_mut_ptr().cast(), 1);
            }
            let ok = write_maps(&map, me).is_ok();
            // SAFETY: leaving the helper without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        // SAFETY: plain syscalls on our own descriptors.
        let r = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) };
        let err = std::io::Error::last_os_error();
        unsafe {
            libc::write(fds[1], b"x".as_ptr().cast(), 1);
            libc::close(fds[1]);
            libc::close(fds[0]);
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if r != 0 {
            return Err(io_err("kiln unshare: unshare(user, mount)".into())(err));
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(other(
                "kiln unshare: writing the user namespace's id maps failed",
            ));
        }
        // SAFETY: becoming root of the new namespace.
        unsafe {
            libc::setresgid(0, 0, 0);
            libc::setresuid(0, 0, 0);
        }
    } else {
        // SAFETY: unshare of the mount namespace only.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(io_err("kiln unshare: unshare(mount)".into())(
                std::io::Error::last_os_error(),
            ));
        }
    }
    // SAFETY: NUL-terminated literals; makes every mount private to the new namespace.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io_err("kiln unshare: making / private".into())(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var(UNSHARED_ENV, "1") };
    Ok(())
}

fn write_maps(map: &kiln_sandbox::IdMap, pid: i32) -> std::io::Result<()> {
    use kiln_sandbox::IdMapKind;
    let text = |r: &[kiln_sandbox::IdRange]| {
        r.iter()
            .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
            .collect::<String>()
    };
    match map.kind {
        IdMapKind::SubIds => {
            for (tool, ranges) in [("newuidmap", &map.uids), ("newgidmap", &map.gids)] {
                let mut cmd = std::process::Command::new(tool);
                cmd.arg(pid.to_string());
                for r in ranges.iter() {
                    cmd.args([
                        r.container.to_string(),
                        r.host.to_string(),
                        r.size.to_string(),
                    ]);
                }
                if !cmd.status()?.success() {
                    return Err(std::io::Error::other(format!("{tool} failed")));
                }
            }
            Ok(())
        }
        _ => {
            std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
            std::fs::write(format!("/proc/{pid}/uid_map"), text(&map.uids))?;
            std::fs::write(format!("/proc/{pid}/gid_map"), text(&map.gids))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(shell_words("--help").unwrap(), vec!["--help"]);
        assert_eq!(
            shell_words(r#"/bin/echo "a b" 'c d' e\ f"#).unwrap(),
            vec!["/bin/echo", "a b", "c d", "e f"]
        );
        assert!(shell_words("'open").is_err());
    }

    #[test]
    fn config_changes_follow_buildah() {
        let mut cfg = ImageConfig::new(&Platform::host());
        let mut st = WorkingState::default();
        let ch = ConfigChanges {
            entrypoint: Some(r#"["/opt/tool/run"]"#.into()),
            cmd: Some("--help".into()),
            env: vec![
                "HOME=/root".into(),
                "TOOL_HOME=$HOME/tool".into(),
                "X=${NOPE}".into(),
            ],
            ports: vec!["8080".into()],
            labels: vec!["name=tool".into()],
            annotations: vec!["a=b".into()],
            ..Default::default()
        };
        apply_changes(&mut cfg, &mut st, &ch).unwrap();
        assert_eq!(cfg.config.entrypoint, Some(vec!["/opt/tool/run".into()]));
        assert_eq!(cfg.config.cmd, Some(vec!["--help".into()]));
        assert_eq!(
            cfg.config.env,
            Some(vec![
                "HOME=/root".into(),
                "TOOL_HOME=/root/tool".into(),
                "X=NOPE".into()
            ])
        );
        assert!(cfg.config.exposed_ports.as_ref().unwrap().contains("8080"));
        assert_eq!(st.annotations.get("a").map(String::as_str), Some("b"));
        let shell_form = ConfigChanges {
            entrypoint: Some("exec run".into()),
            labels: vec!["name-".into()],
            ports: vec!["8080-".into()],
            ..Default::default()
        };
        apply_changes(&mut cfg, &mut st, &shell_form).unwrap();
        assert_eq!(
            cfg.config.entrypoint,
            Some(vec!["/bin/sh".into(), "-c".into(), "exec run".into()])
        );
        assert_eq!(cfg.config.cmd, Some(vec!["--help".into()]));
        assert!(cfg.config.labels.unwrap().is_empty());
        assert!(cfg.config.exposed_ports.unwrap().is_empty());
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(go_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(go_duration("250ms").unwrap(), 250_000_000);
        assert!(go_duration("ten").is_err());
    }

    /// Two step uppers folded into one stage layer: the later whiteout removes the earlier
    /// file, the later opaque directory replaces the earlier one, other changes merge.
    #[test]
    fn step_uppers_fold_into_one_layer() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: making whiteouts needs root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path().join("store")).unwrap();
        let u1 = root.path().join("u1");
        let u2 = root.path().join("u2");
        std::fs::create_dir_all(u1.join("d")).unwrap();
        std::fs::create_dir_all(u1.join("keep")).unwrap();
        std::fs::write(u1.join("a"), "a").unwrap();
        std::fs::write(u1.join("d/x"), "x").unwrap();
        std::fs::write(u1.join("keep/k"), "k").unwrap();
        std::fs::create_dir_all(u2.join("d")).unwrap();
        std::fs::create_dir_all(u2.join("keep")).unwrap();
        std::fs::write(u2.join("d/y"), "y").unwrap();
        std::fs::write(u2.join("keep/k2"), "k2").unwrap();
        let d = CString::new(u2.join("d").as_os_str().as_bytes()).unwrap();
        let a = CString::new(u2.join("a").as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated paths and names.
        unsafe {
            assert_eq!(
                libc::lsetxattr(
                    d.as_ptr(),
                    c"user.overlay.opaque".as_ptr(),
                    b"y".as_ptr().cast(),
                    1,
                    0
                ),
                0
            );
            assert_eq!(libc::mknod(a.as_ptr(), libc::S_IFCHR, 0), 0);
        }
        let verbs = Containers::new(&store, ClientOptions::default());
        let cfg = ImageConfig::new(&Platform::host());
        let layer = stage_layer(&verbs, "t", &cfg, &[], &[u1, u2], Some(0)).unwrap();
        assert!(store.list_containers().unwrap().is_empty(), "removed again");
        let blob = store.open_blob(&layer.digest).unwrap();
        let tar = kiln_layer::decompress(std::io::BufReader::new(blob)).unwrap();
        let mut names: Vec<String> = tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .map(|p| p.trim_end_matches('/').to_string())
            .collect();
        names.sort();
        assert!(names.contains(&"d/y".to_string()), "{names:?}");
        assert!(names.contains(&"keep/k".to_string()), "{names:?}");
        assert!(names.contains(&"keep/k2".to_string()), "{names:?}");
        assert!(!names.contains(&"d/x".to_string()), "{names:?}");
        assert!(!names.contains(&"a".to_string()), "{names:?}");
    }

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
