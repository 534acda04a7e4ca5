//! The verbs. Each area owns one module; this file only lists them.

use crate::global::Global;
use clap::{Parser, Subcommand};

pub mod plugin;

/// kiln: build container images without a daemon, without root, with WebAssembly plugins.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Every verb kiln knows.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage plugins (list, inspect, install, remove).
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Pull a Wasm OCI artifact (config `application/vnd.wasm.config.v0+json`, one
/// `application/wasm` layer) and return the component bytes.
pub fn fetch_plugin_artifact(_g: &Global, reference: &str, _tls_verify: Option<bool>) -> anyhow::Result<Vec<u8>> {
    anyhow::bail!("installing plugins from registries is not available yet ({reference})")
}

/// Run the chosen verb.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Plugin(c) => plugin::run(c, g),
    }
}
