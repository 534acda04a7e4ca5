//! `kiln push IMAGE [DEST]`: to a registry (`docker://`, or a bare registry reference), or through
//! an exporter to `oci-archive:`, `oci:`, `docker-archive:`, `sif:` and other plugin schemes.

use crate::cmd::export::{self, open_store, parse_destination};
use crate::global::Global;
use anyhow::{Result, bail};
use kiln_core::Transport;
use std::path::PathBuf;

/// `kiln push` flags.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Image in the store (name or ID).
    pub image: String,
    /// Destination (default: the image name as a registry reference).
    pub destination: Option<String>,
    /// Manifest format for registries: oci or docker (v2s2).
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// How to reach registries.
    #[command(flatten)]
    pub registry_flags: crate::cmd::RegistryFlags,
    /// Write the pushed manifest's digest to this file.
    #[arg(long)]
    pub digestfile: Option<PathBuf>,
    /// `KEY=VALUE` exporter options (`sif.compression=zstd`).
    #[arg(long = "export-opt")]
    pub export_opts: Vec<String>,
    /// Seconds since the epoch for reproducible exports.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub timestamp: Option<i64>,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Run `kiln push`.
pub fn run(a: PushArgs, g: &Global) -> Result<()> {
    a.registry_flags.check()?;
    let store = open_store(g)?;
    let image = store.resolve_image(&a.image)?;
    let dest = a.destination.clone().unwrap_or_else(|| a.image.clone());
    let (host, catalog) = crate::cmd::plugin::open(g)?;
    let transport = parse_destination(&dest, &host, &catalog)?;
    let format = match a.format.as_deref() {
        None => None,
        Some("oci") => Some(kiln_build::Format::Oci),
        Some("docker") | Some("v2s2") => Some(kiln_build::Format::Docker),
        Some(o) => bail!("--format={o}: use oci or docker"),
    };
    match transport {
        Transport::Docker(r) => {
            let d = crate::cmd::push_to_registry(&store, &image, &r.to_string(), &a.registry_flags, format, a.quiet)?;
            if let Some(f) = &a.digestfile {
                std::fs::write(f, d.to_string())?;
            }
        }
        // containers-storage:NAME is kiln's own store: the image gets that name.
        Transport::Store(name) if dest.starts_with("containers-storage:") => {
            store.tag_image(&image.id.to_string(), &[&name])?;
            if let Some(f) = &a.digestfile {
                std::fs::write(f, image.manifest_digest.to_string())?;
            }
        }
        Transport::Store(name) => {
            let d = crate::cmd::push_to_registry(&store, &image, &name, &a.registry_flags, format, a.quiet)?;
            if let Some(f) = &a.digestfile {
                std::fs::write(f, d.to_string())?;
            }
        }
        t => {
            let opts: Vec<(String, String)> = a
                .export_opts
                .iter()
                .map(|o| o.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| anyhow::anyhow!("--export-opt {o:?} is not KEY=VALUE")))
                .collect::<Result<_>>()?;
            let d = export::export(&store, &host, &catalog, &image, &t, &opts, a.timestamp, a.quiet, format)?;
            if let Some(f) = &a.digestfile {
                std::fs::write(f, d.to_string())?;
            }
        }
    }
    Ok(())
}
