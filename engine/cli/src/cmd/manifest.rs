//! `kiln manifest create|add|remove|annotate|inspect|push|rm|exists`: manifest lists (multi-platform
//! images) of the store, as `buildah manifest` keeps them; `kiln build --manifest` adds to one.

use crate::cmd::RegistryFlags;
use crate::cmd::export::open_store;
use crate::global::Global;
use anyhow::{Context, Result, bail};
use kiln_core::spec::{Descriptor, Index};
use kiln_core::{Digest, Platform};
use kiln_registry::{PushFormat, RegistryClient};
use kiln_store::{ImageRecord, Store, StoreError};
use std::path::PathBuf;

/// The manifest-list verbs.
#[derive(clap::Subcommand, Debug)]
pub enum ManifestCommand {
    /// Create a manifest list, with these images in it.
    Create(CreateArgs),
    /// Add an image of the store (or `docker://REF`, pulled first) to a list.
    Add(AddArgs),
    /// Remove the image with this manifest digest from a list.
    Remove(RemoveArgs),
    /// Change the platform or annotations recorded for one entry of a list.
    Annotate(AnnotateArgs),
    /// Print a list's index.
    Inspect(InspectArgs),
    /// Push a list (and with `--all` its images) to a registry.
    Push(ManifestPushArgs),
    /// Delete lists (their images stay).
    Rm(RmArgs),
    /// Exit 0 when the list exists, 1 when it does not.
    Exists(ExistsArgs),
}

/// `kiln manifest create` flags.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Name of the new list.
    pub list: String,
    /// Images to put in it.
    pub images: Vec<String>,
}

/// `kiln manifest add` flags.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// The list.
    pub list: String,
    /// Image in the store (name or ID), or `docker://REF`: a registry's image, recorded without
    /// pulling its layers (`manifest push --all` mounts or copies them from that registry).
    pub image: String,
    #[command(flatten)]
    pub entry: EntryFlags,
    #[command(flatten)]
    pub registry_flags: RegistryFlags,
}

/// What `manifest add` and `manifest annotate` record for an entry instead of what its image
/// says.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct EntryFlags {
    /// Architecture to record.
    #[arg(long)]
    pub arch: Option<String>,
    /// Operating system to record.
    #[arg(long)]
    pub os: Option<String>,
    /// Architecture variant to record.
    #[arg(long)]
    pub variant: Option<String>,
    /// OS version to record.
    #[arg(long)]
    pub os_version: Option<String>,
    /// OS feature to record, repeatable.
    #[arg(long)]
    pub os_features: Vec<String>,
    /// `KEY=VALUE` annotation for the entry, repeatable.
    #[arg(long)]
    pub annotation: Vec<String>,
}

impl EntryFlags {
    /// `base` with the flags applied.
    fn platform(&self, mut base: Platform) -> Platform {
        if let Some(os) = &self.os {
            base.os = os.clone();
        }
        if let Some(arch) = &self.arch {
            base.architecture = arch.clone();
        }
        if self.variant.is_some() {
            base.variant = self.variant.clone();
        }
        if self.os_version.is_some() {
            base.os_version = self.os_version.clone();
        }
        if !self.os_features.is_empty() {
            base.os_features = Some(self.os_features.clone());
        }
        base
    }

    /// The `--annotation` values, checked.
    fn annotations(&self) -> Result<Vec<(String, String)>> {
        parse_annotations(&self.annotation)
    }

    /// `entry` with the platform flags and `annotations` (from [`EntryFlags::annotations`])
    /// applied.
    fn apply(&self, entry: &mut Descriptor, annotations: Vec<(String, String)>) {
        let platform = entry.platform.take().unwrap_or_else(Platform::host);
        entry.platform = Some(self.platform(platform));
        if !annotations.is_empty() {
            entry.annotations.get_or_insert_with(Default::default).extend(annotations);
        }
    }
}

/// `kiln manifest remove` flags.
#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The list.
    pub list: String,
    /// Manifest digest of the entry to remove.
    pub digest: String,
}

/// `kiln manifest annotate` flags.
#[derive(clap::Args, Debug)]
pub struct AnnotateArgs {
    /// The list.
    pub list: String,
    /// Manifest digest of the entry.
    pub digest: String,
    #[command(flatten)]
    pub entry: EntryFlags,
}

/// `kiln manifest inspect` flags.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The list.
    pub list: String,
}

/// `kiln manifest push` flags.
#[derive(clap::Args, Debug)]
pub struct ManifestPushArgs {
    /// The list.
    pub list: String,
    /// Registry destination (`docker://REF` or `REF`).
    pub destination: String,
    /// Push the list's images too (else the registry must have them).
    #[arg(long)]
    pub all: bool,
    /// Manifest type: oci (default) or v2s2 (Docker manifest list and image manifests).
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[command(flatten)]
    pub registry_flags: RegistryFlags,
    /// Write the pushed index's digest to this file.
    #[arg(long)]
    pub digestfile: Option<PathBuf>,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `kiln manifest rm` flags.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Lists to delete.
    #[arg(required = true)]
    pub lists: Vec<String>,
}

/// `kiln manifest exists` flags.
#[derive(clap::Args, Debug)]
pub struct ExistsArgs {
    /// The list.
    pub list: String,
}

/// Run a manifest verb.
pub fn run(c: ManifestCommand, g: &Global) -> Result<()> {
    let store = open_store(g)?;
    match c {
        ManifestCommand::Create(a) => {
            let mut index = Index::new_oci(Vec::new());
            for name in &a.images {
                let image = store.resolve_image(name).with_context(|| format!("kiln manifest create {}", a.list))?;
                put_entry(&mut index, entry_for(&store, &image, &EntryFlags::default())?, false);
            }
            let rec = store.create_manifest_list(&a.list, index.manifests)?;
            println!("{}", rec.digest.hex());
        }
        ManifestCommand::Add(a) => {
            store.manifest_list(&a.list)?;
            let (entry, source) = match a.image.strip_prefix("docker://") {
                // A registry's image is recorded (manifest and config), not pulled.
                Some(_) => {
                    let opts = a.registry_flags.options(true);
                    let e = &a.entry;
                    let platform = crate::cmd::registry::compose_platform(None, e.os.as_deref(), e.arch.as_deref(), e.variant.as_deref())?;
                    let client = RegistryClient::new(kiln_registry::ClientOptions { platform, ..opts })?;
                    let r = client.record_image(&store, &a.image).with_context(|| format!("reading {}", a.image))?;
                    (entry_with(Descriptor::new(&r.media_type, r.manifest_digest, r.size), &r.config, &a.entry)?, Some(r.source))
                }
                None => (entry_for(&store, &store.resolve_image(&a.image)?, &a.entry)?, None),
            };
            let digest = entry.digest;
            let (rec, ()) = store.update_manifest_list_sources(&a.list, false, |index, sources| {
                put_entry(index, entry, false);
                if let Some(s) = source {
                    sources.insert(digest, s);
                }
                Ok(())
            })?;
            println!("{}: {digest}", rec.digest.hex());
        }
        ManifestCommand::Remove(a) => {
            let digest = Digest::parse(&a.digest).with_context(|| format!("kiln manifest remove: {:?} is not a digest", a.digest))?;
            let (rec, found) = store.update_manifest_list(&a.list, false, |index| {
                let before = index.manifests.len();
                index.manifests.retain(|d| d.digest != digest);
                Ok(index.manifests.len() != before)
            })?;
            if !found {
                bail!("manifest list {} has no entry {digest}", a.list);
            }
            println!("{}: {digest}", rec.digest.hex());
        }
        ManifestCommand::Annotate(a) => {
            let digest = Digest::parse(&a.digest).with_context(|| format!("kiln manifest annotate: {:?} is not a digest", a.digest))?;
            let annotations = a.entry.annotations()?;
            let (rec, found) = store.update_manifest_list(&a.list, false, |index| {
                let Some(entry) = index.manifests.iter_mut().find(|d| d.digest == digest) else {
                    return Ok(false);
                };
                a.entry.apply(entry, annotations);
                Ok(true)
            })?;
            if !found {
                bail!("manifest list {} has no entry {digest}", a.list);
            }
            println!("{}: {digest}", rec.digest.hex());
        }
        ManifestCommand::Inspect(a) => {
            let (_, index) = store.manifest_list(&a.list)?;
            println!("{}", serde_json::to_string_pretty(&index)?);
        }
        ManifestCommand::Push(a) => {
            let (rec, index) = store.manifest_list(&a.list)?;
            let format = a.format.as_deref().map(PushFormat::parse).transpose()?;
            let client = RegistryClient::new(a.registry_flags.options(a.quiet))?;
            let digest = client
                .push_manifest_list(&store, &index, &a.destination, a.all, format, &rec.sources)
                .with_context(|| format!("pushing manifest list {} to {}", a.list, a.destination))?;
            if let Some(f) = &a.digestfile {
                std::fs::write(f, digest.to_string()).with_context(|| format!("writing {}", f.display()))?;
            }
            if !a.quiet {
                println!("{digest}");
            }
        }
        ManifestCommand::Rm(a) => {
            let mut missing = Vec::new();
            for l in &a.lists {
                match store.remove_manifest_list(l) {
                    Ok(rec) => {
                        println!("untagged: {}", rec.name);
                        println!("{}", rec.digest.hex());
                    }
                    Err(StoreError::ListNotFound(_)) => missing.push(l.as_str()),
                    Err(e) => return Err(e.into()),
                }
            }
            if !missing.is_empty() {
                bail!("manifest list not known: {}", missing.join(", "));
            }
        }
        ManifestCommand::Exists(a) => match store.manifest_list(&a.list) {
            Ok(_) => {}
            // As `buildah manifest exists`: status 1, nothing printed.
            Err(StoreError::ListNotFound(_)) => std::process::exit(1),
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

/// `--annotation KEY=VALUE` values.
fn parse_annotations(values: &[String]) -> Result<Vec<(String, String)>> {
    values
        .iter()
        .map(|s| s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| anyhow::anyhow!("--annotation {s:?} is not KEY=VALUE")))
        .collect()
}

/// The index entry for `image`: its manifest, and its platform from its config (`os.version`
/// and `os.features` included), with `flags` applied.
pub fn entry_for(store: &Store, image: &ImageRecord, flags: &EntryFlags) -> Result<Descriptor> {
    let config = store.image_config(image)?;
    let size = store.image_manifest_bytes(image)?.len() as u64;
    entry_with(Descriptor::new(&image.manifest_media_type, image.manifest_digest, size), &config, flags)
}

/// The list entry `d` (an image's manifest) with the platform of `config` and `flags` applied.
fn entry_with(mut d: Descriptor, config: &kiln_core::ImageConfig, flags: &EntryFlags) -> Result<Descriptor> {
    d.platform = Some(Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
        os_version: config.os_version.clone(),
        os_features: config.os_features.clone(),
        ..Platform::host()
    });
    flags.apply(&mut d, flags.annotations()?);
    Ok(d)
}

/// Put `entry` into `index`, replacing one with the same digest and, with `replace_platform`,
/// one for the same platform (a rebuild for that platform).
pub fn put_entry(index: &mut Index, entry: Descriptor, replace_platform: bool) {
    let same_platform = |e: &Descriptor| match (&e.platform, &entry.platform) {
        (Some(a), Some(b)) => a.matches(b) && b.matches(a),
        _ => false,
    };
    index
        .manifests
        .retain(|e| e.digest != entry.digest && !(replace_platform && same_platform(e)));
    index.manifests.push(entry);
}

/// `kiln build --manifest LIST`: add the built image to `list` (made when missing), replacing the
/// entry for the same platform.
pub fn add_built_image(store: &Store, list: &str, image: &ImageRecord) -> Result<()> {
    let entry = entry_for(store, image, &EntryFlags::default())?;
    store
        .update_manifest_list(list, true, |index| {
            put_entry(index, entry, true);
            Ok(())
        })
        .with_context(|| format!("--manifest {list}"))?;
    Ok(())
}
