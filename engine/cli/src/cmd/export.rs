//! Writing a stored image to a destination other than the store: `oci-archive:`, `oci:`,
//! `docker-archive:` and any scheme an exporter plugin serves (`sif:`), all through the exporter
//! interface; `docker://` goes to the registry client.

use crate::global::Global;
use anyhow::{Context, Result, bail};
use kiln_core::Transport;
use kiln_plugin_host::{Catalog, ExportImage, ExportLayer, PluginHost};
use kiln_store::{ImageRecord, Store};
use std::path::{Path, PathBuf};

/// Parse an image destination, knowing the schemes plugins serve.
pub fn parse_destination(dest: &str, host: &PluginHost, catalog: &Catalog) -> Result<Transport> {
    let scheme = dest.split_once(':').map(|(s, _)| s).unwrap_or("");
    let is_plugin = |s: &str| {
        s == scheme && !s.is_empty() && catalog.exporter_for_scheme(host, s).ok().flatten().is_some()
    };
    Ok(Transport::parse_with(dest, is_plugin)?)
}

fn descriptor(media_type: &str, digest: &kiln_core::Digest, size: u64) -> kiln_plugin_host::types::Descriptor {
    kiln_plugin_host::types::Descriptor { media_type: media_type.into(), digest: digest.to_string(), size, annotations: vec![] }
}

/// Export `image` to `transport` (not `docker://` nor the store) through an exporter plugin.
/// `options` are `--export-opt` values (`scheme.key=value` go only to that scheme's exporter).
/// An OCI layout (`oci:`, `oci-archive:`) gets an OCI manifest (a Docker one converted, as
/// buildah does; `format` docker is warned about: readers of layouts look for OCI manifests).
/// Returns the digest of the manifest the destination holds.
#[allow(clippy::too_many_arguments)]
pub fn export(
    store: &Store,
    host: &PluginHost,
    catalog: &Catalog,
    image: &ImageRecord,
    transport: &Transport,
    options: &[(String, String)],
    timestamp: Option<i64>,
    quiet: bool,
    format: Option<kiln_build::Format>,
) -> Result<kiln_core::Digest> {
    let (scheme, path, reference) = match transport {
        Transport::OciArchive { file, reference } => ("oci-archive", file.clone(), reference.clone()),
        Transport::Oci { dir, reference } => ("oci", dir.clone(), reference.clone()),
        Transport::DockerArchive { file, reference } => ("docker-archive", file.clone(), reference.clone()),
        Transport::Plugin { scheme, rest } => {
            let (p, r) = match rest.split_once(':') {
                Some((p, r)) => (PathBuf::from(p), Some(r.to_string())),
                None => (PathBuf::from(rest), None),
            };
            (scheme.as_str(), p, r)
        }
        other => bail!("{other} is not written by an exporter"),
    };
    let plugin = catalog
        .exporter_for_scheme(host, scheme)?
        .with_context(|| format!("no exporter plugin serves {scheme}: (see `kiln plugin list`)"))?;
    let mut manifest_bytes = store.image_manifest_bytes(image)?;
    let mut manifest = store.image_manifest(image)?;
    let mut manifest_digest = image.manifest_digest;
    if matches!(scheme, "oci" | "oci-archive") {
        if format == Some(kiln_build::Format::Docker) {
            eprintln!("warning: {scheme}: holds OCI manifests; --format docker applies to registries");
        }
        if let Some(converted) = kiln_registry::convert_manifest(&manifest, kiln_registry::PushFormat::Oci)? {
            manifest_bytes = converted.to_vec();
            manifest_digest = kiln_core::Digest::of_bytes(&manifest_bytes);
            manifest = converted;
        }
    }
    let config_bytes = store.image_config_bytes(image)?;
    let config = store.image_config(image)?;
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        bail!("image {} has {} layers but {} diff_ids", image.id, manifest.layers.len(), config.rootfs.diff_ids.len());
    }
    let layers = manifest
        .layers
        .iter()
        .zip(config.rootfs.diff_ids.iter())
        .map(|(d, diff)| ExportLayer { descriptor: descriptor(&d.media_type, &d.digest, d.size), diff_id: diff.to_string(), path: store.blob_path(&d.digest) })
        .collect();
    let manifest_mt = manifest.media_type_or_default().to_string();
    let img = ExportImage {
        names: image.names.clone(),
        manifest_descriptor: descriptor(&manifest_mt, &manifest_digest, manifest_bytes.len() as u64),
        manifest_json: manifest_bytes,
        config_descriptor: descriptor(&manifest.config.media_type, &manifest.config.digest, config_bytes.len() as u64),
        config_json: config_bytes,
        layers,
        timestamp,
    };
    let mut opts = vec![("scheme".to_string(), scheme.to_string())];
    for (k, v) in options {
        match k.split_once('.') {
            Some((s, key)) if s == scheme => opts.push((key.to_string(), v.clone())),
            Some(_) => {}
            None => opts.push((k.clone(), v.clone())),
        }
    }
    let destination = match &reference {
        Some(r) => format!("{}:{r}", path.display()),
        None => path.display().to_string(),
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new().prefix(".kiln-export-").tempfile_in(&parent)?.into_temp_path();
    if !quiet {
        eprintln!("Writing image to {scheme}:{destination}");
    }
    host.export(&plugin, &img, &destination, &opts, &tmp)
        .with_context(|| format!("exporting {} to {scheme}:{destination}", image.id.short()))?;
    if scheme == "oci" {
        unpack_layout(&tmp, &path)?;
    } else {
        // Like other tools' outputs: 0644 less the umask, and executable for SIF (`./x.sif` runs it).
        use std::os::unix::fs::PermissionsExt;
        let mode = if scheme == "sif" { 0o755 } else { 0o644 };
        let umask = current_umask();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & !umask))?;
        tmp.persist(&path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(manifest_digest)
}

/// `oci:DIR`: the exporter wrote a layout as a tar; unpack it into DIR. Blobs are added to what
/// is there, and the images DIR's index.json already lists stay, but for one with a name (or,
/// unnamed, the digest) of an image written now, which that image replaces (as buildah does).
fn unpack_layout(tar_path: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let index_path = dir.join("index.json");
    let before: Option<serde_json::Value> = std::fs::read(&index_path)
        .ok()
        .map(|b| serde_json::from_slice(&b).with_context(|| format!("reading {}", index_path.display())))
        .transpose()?;
    let f = std::fs::File::open(tar_path)?;
    let mut a = tar::Archive::new(f);
    a.set_preserve_permissions(false);
    a.set_overwrite(true);
    for e in a.entries()? {
        let mut e = e?;
        e.unpack_in(dir).with_context(|| format!("unpacking into {}", dir.display()))?;
    }
    let Some(before) = before else {
        return Ok(());
    };
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path)?)
        .with_context(|| format!("reading {}", index_path.display()))?;
    let ref_name = |d: &serde_json::Value| d["annotations"][kiln_registry::REF_NAME].as_str().map(str::to_string);
    let new: Vec<serde_json::Value> = index["manifests"].as_array().cloned().unwrap_or_default();
    let replaced = |old: &serde_json::Value| {
        new.iter().any(|n| match (ref_name(old), ref_name(n)) {
            (Some(a), Some(b)) => a == b,
            (None, None) => old["digest"] == n["digest"],
            _ => false,
        })
    };
    let mut merged: Vec<serde_json::Value> =
        before["manifests"].as_array().into_iter().flatten().filter(|o| !replaced(o)).cloned().collect();
    merged.extend(new);
    index["manifests"] = serde_json::Value::Array(merged);
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), serde_json::to_vec(&index)?)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644 & !current_umask()))?;
    tmp.persist(&index_path).with_context(|| format!("writing {}", index_path.display()))?;
    Ok(())
}

fn current_umask() -> u32 {
    // SAFETY: umask only swaps the process mask; it is restored at once.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}

/// Open the store for a verb.
pub fn open_store(g: &Global) -> Result<Store> {
    let root = g.store_root();
    Store::open(&root).with_context(|| format!("opening store {}", root.display()))
}
