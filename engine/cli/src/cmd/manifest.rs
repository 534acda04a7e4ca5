//! `kiln manifest create|add|remove|inspect|push|rm|exists`: manifest lists (multi-platform
//! images) of the store, as `buildah manifest` keeps them; `kiln build --manifest` adds to one.

use crate::cmd::export::open_store;
use crate::global::{ExitStatusError, Global};
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
    /// Image in the store (name or ID), or `docker://REF`.
    pub image: String,
    /// Architecture to record (default: the image's).
    #[arg(long)]
    pub arch: Option<String>,
    /// Operating system to record (default: the image's).
    #[arg(long)]
    pub os: Option<String>,
    /// Architecture variant to record (default: the image's).
    #[arg(long)]
    pub variant: Option<String>,
    /// `KEY=VALUE` annotation for the entry, repeatable.
    #[arg(long)]
    pub annotation: Vec<String>,
    /// Verify TLS certificates when pulling a `docker://` image.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Credentials file.
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// Directory of CA certificates.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
}

/// `kiln manifest remove` flags.
#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The list.
    pub list: String,
    /// Manifest digest of the entry to remove.
    pub digest: String,
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
    /// Verify TLS certificates.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Credentials file.
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// Directory of CA certificates.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
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
            if store.manifest_list(&a.list).is_ok() {
                bail!("manifest list {} already exists", a.list);
            }
            let mut index = Index::new_oci(Vec::new());
            for name in &a.images {
                let image = store.resolve_image(name).with_context(|| format!("kiln manifest create {}", a.list))?;
                put_entry(&store, &mut index, &image, &PlatformOverride::default(), &[], false)?;
            }
            let rec = store.put_manifest_list(&a.list, &index)?;
            println!("{}", rec.digest.hex());
        }
        ManifestCommand::Add(a) => {
            let (_, mut index) = store.manifest_list(&a.list)?;
            let image = match a.image.strip_prefix("docker://") {
                Some(_) => {
                    let opts = crate::cmd::registry_options(g, a.tls_verify, a.authfile.clone(), a.cert_dir.clone(), true);
                    let client = RegistryClient::new(kiln_registry::ClientOptions {
                        platform: PlatformOverride::from(&a).platform(Platform::host()),
                        ..opts
                    })?;
                    let pulled = client.pull(&store, &a.image).with_context(|| format!("pulling {}", a.image))?;
                    pulled.record
                }
                None => store.resolve_image(&a.image)?,
            };
            let annotations: Vec<(String, String)> = a
                .annotation
                .iter()
                .map(|s| s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| anyhow::anyhow!("--annotation {s:?} is not KEY=VALUE")))
                .collect::<Result<_>>()?;
            let digest = put_entry(&store, &mut index, &image, &PlatformOverride::from(&a), &annotations, false)?;
            let rec = store.put_manifest_list(&a.list, &index)?;
            println!("{}: {digest}", rec.digest.hex());
        }
        ManifestCommand::Remove(a) => {
            let (_, mut index) = store.manifest_list(&a.list)?;
            let digest = Digest::parse(&a.digest).with_context(|| format!("kiln manifest remove: {:?} is not a digest", a.digest))?;
            let before = index.manifests.len();
            index.manifests.retain(|d| d.digest != digest);
            if index.manifests.len() == before {
                bail!("manifest list {} has no entry {digest}", a.list);
            }
            let rec = store.put_manifest_list(&a.list, &index)?;
            println!("{}: {digest}", rec.digest.hex());
        }
        ManifestCommand::Inspect(a) => {
            let (_, index) = store.manifest_list(&a.list)?;
            println!("{}", serde_json::to_string_pretty(&index)?);
        }
        ManifestCommand::Push(a) => {
            let (_, index) = store.manifest_list(&a.list)?;
            let format = a.format.as_deref().map(PushFormat::parse).transpose()?;
            let client = RegistryClient::new(crate::cmd::registry_options(g, a.tls_verify, a.authfile.clone(), a.cert_dir.clone(), a.quiet))?;
            let digest = client
                .push_manifest_list(&store, &index, &a.destination, a.all, format)
                .with_context(|| format!("pushing manifest list {} to {}", a.list, a.destination))?;
            if let Some(f) = &a.digestfile {
                std::fs::write(f, digest.to_string()).with_context(|| format!("writing {}", f.display()))?;
            }
            if !a.quiet {
                println!("{digest}");
            }
        }
        ManifestCommand::Rm(a) => {
            for l in &a.lists {
                let rec = store.remove_manifest_list(l)?;
                println!("untagged: {}", rec.name);
                println!("{}", rec.digest.hex());
            }
        }
        ManifestCommand::Exists(a) => match store.manifest_list(&a.list) {
            Ok(_) => {}
            Err(StoreError::ListNotFound(_)) => return Err(anyhow::Error::new(ExitStatusError(1)).context(format!("manifest list {} does not exist", a.list))),
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

/// `--os`, `--arch`, `--variant` given for an entry.
#[derive(Debug, Default, Clone)]
pub struct PlatformOverride {
    os: Option<String>,
    arch: Option<String>,
    variant: Option<String>,
}

impl From<&AddArgs> for PlatformOverride {
    fn from(a: &AddArgs) -> Self {
        PlatformOverride { os: a.os.clone(), arch: a.arch.clone(), variant: a.variant.clone() }
    }
}

impl PlatformOverride {
    /// `base` with the overrides applied.
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
        base
    }
}

/// Put `image` into `index` as an entry for its platform (from its config, with `overrides`).
/// An entry with the same digest is replaced; with `replace_platform`, so is one for the same
/// platform (a rebuild for that platform). Returns the entry's digest.
pub fn put_entry(
    store: &Store,
    index: &mut Index,
    image: &ImageRecord,
    overrides: &PlatformOverride,
    annotations: &[(String, String)],
    replace_platform: bool,
) -> Result<Digest> {
    let config = store.image_config(image)?;
    let platform = overrides.platform(Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
        ..Platform::host()
    });
    let size = store.image_manifest_bytes(image)?.len() as u64;
    let mut d = Descriptor::new(&image.manifest_media_type, image.manifest_digest, size);
    d.platform = Some(Platform { os_version: None, os_features: None, ..platform.clone() });
    if !annotations.is_empty() {
        d.annotations = Some(annotations.iter().cloned().collect());
    }
    index.manifests.retain(|e| e.digest != d.digest && !(replace_platform && e.platform.as_ref() == d.platform.as_ref()));
    index.manifests.push(d);
    Ok(image.manifest_digest)
}

/// `kiln build --manifest LIST`: add the built image to `list` (made when missing), replacing the
/// entry for the same platform.
pub fn add_built_image(store: &Store, list: &str, image: &ImageRecord) -> Result<()> {
    let mut index = match store.manifest_list(list) {
        Ok((_, index)) => index,
        Err(StoreError::ListNotFound(_)) => Index::new_oci(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    put_entry(store, &mut index, image, &PlatformOverride::default(), &[], true)?;
    store.put_manifest_list(list, &index).with_context(|| format!("--manifest {list}"))?;
    Ok(())
}
