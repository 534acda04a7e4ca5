//! `kiln plugin …`: list, inspect, install and remove plugins.

use crate::global::Global;
use anyhow::{Context, Result, bail};
use kiln_plugin_host::{Catalog, PluginHost, PluginSource};

/// Plugin verbs.
#[derive(clap::Subcommand, Debug)]
pub enum PluginCommand {
    /// List built-in and installed plugins.
    #[command(alias = "ls")]
    List {
        /// `table` (default) or `json`.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show a plugin's world, imports and exports.
    Inspect {
        /// Plugin name or digest.
        name: String,
    },
    /// Install a plugin from a .wasm file or an OCI artifact (`docker://REF`).
    Install {
        /// FILE.wasm or docker://REF (a Wasm OCI artifact).
        source: String,
        /// Refuse the plugin unless its sha256 is this.
        #[arg(long)]
        digest: Option<String>,
        /// How to reach the registry.
        #[command(flatten)]
        registry_flags: crate::cmd::RegistryFlags,
    },
    /// Remove an installed plugin.
    #[command(alias = "rm")]
    Remove {
        /// Plugin name or digest.
        name: String,
    },
}

/// The plugin host and catalog for this invocation.
pub fn open(g: &Global) -> Result<(PluginHost, Catalog)> {
    let host = PluginHost::new(kiln_plugin_host::HostConfig::from_env(Some(g.plugin_cache_dir())))?;
    let catalog = Catalog::new(g.store_root().join("plugins"), kiln_builtins::components())
        .with_builtin_digests(kiln_builtins::digests());
    Ok((host, catalog))
}

/// Run a plugin verb.
pub fn run(c: PluginCommand, g: &Global) -> Result<()> {
    let (host, catalog) = open(g)?;
    match c {
        PluginCommand::List { format } => {
            let list = catalog.list(&host)?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&list)?),
                "table" => {
                    println!("{:<16} {:<9} {:<8} {:<20} {}", "NAME", "KIND", "VERSION", "DIGEST", "SOURCE");
                    for e in list {
                        let short = e.digest.trim_start_matches("sha256:").get(..12).unwrap_or("").to_string();
                        println!("{:<16} {:<9} {:<8} sha256:{:<13} {}", e.name, e.kind.as_str(), e.version, short, e.source.label());
                    }
                }
                other => bail!("unknown format {other:?}: use table or json"),
            }
        }
        PluginCommand::Inspect { name } => {
            let (p, source) = catalog.load_any(&host, &name)?;
            let out = serde_json::json!({
                "name": p.info.name,
                "version": p.info.version,
                "description": p.info.description,
                "kind": p.kind.as_str(),
                "world": format!("kiln:plugin/{}@0.1.0", p.kind.world()),
                "digest": p.digest,
                "source": source,
                "imports": p.imports,
                "exports": p.exports,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        PluginCommand::Install { source, digest, registry_flags } => {
            let (bytes, src) = if let Some(reference) = source.strip_prefix("docker://") {
                let bytes = crate::cmd::fetch_plugin_artifact(reference, &registry_flags)?;
                (bytes, PluginSource::Oci(reference.to_string()))
            } else {
                let bytes = std::fs::read(&source).with_context(|| format!("reading {source}"))?;
                let abs = std::fs::canonicalize(&source).map(|p| p.display().to_string()).unwrap_or(source.clone());
                (bytes, PluginSource::File(abs))
            };
            let e = catalog.install(&host, &bytes, src, digest.as_deref())?;
            println!("{} {} {} {}", e.name, e.kind.as_str(), e.version, e.digest);
        }
        PluginCommand::Remove { name } => {
            let e = catalog.remove(&name)?;
            println!("{}", e.digest);
        }
    }
    Ok(())
}
