//! The verbs. Each area owns one module; this file lists them and holds the few helpers that
//! several verbs share (registry options, pushing, kiln's config file).

use crate::global::Global;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub mod build;
pub mod container;
pub mod export;
pub mod filter;
pub mod manifest;
pub mod plugin;
pub mod push;
pub mod registry;
pub mod store;
pub mod template;

/// kiln: build container images without a daemon, without root, with WebAssembly plugins.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, about, propagate_version = true, args_override_self = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Every verb kiln knows.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile/Containerfile (or another frontend's source).
    #[command(alias = "bud", alias = "build-using-dockerfile")]
    Build(build::BuildArgs),
    /// Pull an image from a registry (or oci:, oci-archive:, docker-archive:) into the store.
    Pull(registry::PullArgs),
    /// Log in to a registry.
    Login(registry::LoginArgs),
    /// Log out of a registry.
    Logout(registry::LogoutArgs),
    /// Copy an image from the store to a registry or any transport (oci-archive:, sif:, …).
    Push(push::PushArgs),
    /// Manage plugins (list, inspect, install, remove).
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Manage manifest lists (multi-platform images): create, add, remove, annotate, inspect, push, rm, exists.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    #[command(flatten)]
    Store(store::StoreCommand),
    #[command(flatten)]
    Container(container::ContainerCommand),
}

/// Run the chosen verb.
pub fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Build(a) => build::run(a, g),
        Command::Push(a) => push::run(a, g),
        Command::Pull(a) => registry::pull(a, g),
        Command::Login(a) => registry::login(a, g),
        Command::Logout(a) => registry::logout(a, g),
        Command::Plugin(c) => plugin::run(c, g),
        Command::Manifest(c) => manifest::run(c, g),
        Command::Store(c) => store::run(c, g),
        Command::Container(c) => container::run(c, g),
    }
}

/// The proxy variables of kiln's environment, as set.
pub fn host_proxy_env() -> Vec<(String, String)> {
    kiln_build::PROXY_VARIABLES
        .iter()
        .filter_map(|var| std::env::var(var).ok().map(|v| (var.to_string(), v)))
        .collect()
}

/// How a command reaches registries: `--tls-verify`, `--authfile`, `--cert-dir`, as every
/// buildah verb that talks to one spells them.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct RegistryFlags {
    /// Verify TLS certificates (`--tls-verify=false` also allows plain HTTP).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Credentials file (default: $REGISTRY_AUTH_FILE or $XDG_RUNTIME_DIR/containers/auth.json).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// Directory of CA certificates (`*.crt`) and client keys (`*.cert`/`*.key`) for registries.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
}

impl RegistryFlags {
    /// An `--authfile` that does not exist is an error (as buildah checks it), except for
    /// `kiln login`, which makes it.
    pub fn check(&self) -> Result<()> {
        if let Some(f) = &self.authfile
            && let Err(e) = std::fs::metadata(f)
        {
            anyhow::bail!("checking authfile: {}: {e}", f.display());
        }
        Ok(())
    }

    /// Registry client options from these flags (`quiet`: no progress output).
    pub fn options(&self, quiet: bool) -> kiln_registry::ClientOptions {
        let mut o = kiln_registry::ClientOptions {
            tls_verify: self.tls_verify,
            auth_file: self.authfile.clone(),
            cert_dir: self.cert_dir.clone(),
            ..Default::default()
        };
        if quiet {
            o.progress = kiln_registry::Progress::Quiet;
        }
        o
    }
}

/// Push a stored image to `docker://dest`.
pub fn push_to_registry(
    store: &kiln_store::Store,
    image: &kiln_store::ImageRecord,
    dest: &str,
    flags: &RegistryFlags,
    format: Option<kiln_build::Format>,
    quiet: bool,
) -> Result<kiln_core::Digest> {
    let client = kiln_registry::RegistryClient::new(flags.options(quiet))?;
    // No format asked for: the stored manifest goes as it is (buildah's default).
    let fmt = format.map(|f| match f {
        kiln_build::Format::Oci => kiln_registry::PushFormat::Oci,
        kiln_build::Format::Docker => kiln_registry::PushFormat::Docker,
    });
    let dest = dest.strip_prefix("docker://").unwrap_or(dest);
    let pushed = client.push_image(store, &image.id.to_string(), dest, fmt).with_context(|| format!("pushing to docker://{dest}"))?;
    Ok(pushed.manifest_digest)
}

/// Pull a Wasm OCI artifact (config `application/vnd.wasm.config.v0+json`, one
/// `application/wasm` layer) and return the component bytes.
pub fn fetch_plugin_artifact(reference: &str, flags: &RegistryFlags) -> Result<Vec<u8>> {
    let client = kiln_registry::RegistryClient::new(flags.options(true))?;
    let (bytes, _) = client.pull_artifact(reference).with_context(|| format!("pulling plugin docker://{reference}"))?;
    Ok(bytes)
}

/// Injectors enabled by kiln's config files (`~/.config/kiln/kiln.toml`, `/etc/kiln/kiln.toml`):
/// `inject = ["proxy-ca"]`.
pub fn config_injectors() -> Vec<String> {
    let mut files = vec![PathBuf::from("/etc/kiln/kiln.toml")];
    if let Some(home) = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config"))) {
        files.push(home.join("kiln/kiln.toml"));
    }
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("inject") {
                let rest = rest.trim_start();
                if let Some(list) = rest.strip_prefix('=') {
                    for item in list.trim().trim_start_matches('[').trim_end_matches(']').split(',') {
                        let item = item.trim().trim_matches('"').trim();
                        if !item.is_empty() {
                            out.push(item.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// How RUN processes are confined and which host devices they see (`kiln build`, `kiln from`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ProcessArgs {
    /// Capability to add to RUN's default set (buildah's), `ALL` for every one; repeatable.
    #[arg(long, value_delimiter = ',')]
    pub cap_add: Vec<String>,
    /// Capability to drop from RUN's set, `ALL` for every one; repeatable.
    #[arg(long, value_delimiter = ',')]
    pub cap_drop: Vec<String>,
    /// `seccomp=unconfined` (no syscall filter), `no-new-privileges`; `label=disable` and
    /// `apparmor=unconfined` are accepted. Repeatable.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// `TYPE=SOFT[:HARD]` resource limit for RUN (`nofile=1024:4096`), repeatable.
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// `HOST[:CONTAINER[:rwm]]`: a host device RUN sees, repeatable.
    #[arg(long)]
    pub device: Vec<String>,
}

impl ProcessArgs {
    /// The options, checked (an unknown capability, limit or option, a path that is no device).
    pub fn options(&self) -> Result<kiln_build::ProcessOptions> {
        let o = kiln_build::ProcessOptions {
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            security_opts: self.security_opt.clone(),
            ulimits: self.ulimit.clone(),
            devices: self.device.clone(),
        };
        o.confinement().map_err(anyhow::Error::msg)?;
        o.devices().map_err(anyhow::Error::msg)?;
        Ok(o)
    }
}
