//! `kiln images|tag|rmi|inspect|prune|fsck`: the verbs that look at and tidy the local store,
//! with buildah's flags and output formats.

use crate::global::{ExitStatusError, Global};
use anyhow::{Context, Result, bail};
use kiln_core::{ImageConfig, ImageReference, RuntimeConfig};
use kiln_store::{ImageRecord, PruneOptions, Removed, Store, StoreError};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Store verbs. Meant to be flattened into the top-level verb list.
#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// List images in local storage.
    Images(ImagesArgs),
    /// Add one or more names to a local image.
    Tag {
        /// Image name or ID.
        image: String,
        /// New names (`foo` means `localhost/foo:latest`).
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more images (a name of an image with several names is only untagged).
    Rmi {
        /// Remove images even when they have several names, and the working containers that use them.
        #[arg(short, long)]
        force: bool,
        /// Remove all images.
        #[arg(short, long)]
        all: bool,
        /// Images to remove.
        images: Vec<String>,
    },
    /// Show an image's (or a working container's) configuration and manifest.
    Inspect {
        /// `container` or `image`; by default a container, else an image, of that name.
        #[arg(short = 't', long = "type")]
        kind: Option<String>,
        /// `json` (default) or a Go template such as `{{.FromImageID}}` or `{{.OCIv1.Config.Env}}`.
        #[arg(short, long)]
        format: Option<String>,
        /// Image or container name or ID.
        name: String,
    },
    /// Remove dangling images, the build cache, and blobs and snapshots nothing uses.
    Prune {
        /// Remove every image no working container uses, not only dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Keep the build cache.
        #[arg(long)]
        keep_cache: bool,
    },
    /// Re-hash every blob and check every image's blobs.
    Fsck {
        /// Delete corrupt blobs and the images that need them.
        #[arg(long)]
        repair: bool,
    },
}

/// `kiln images` flags.
#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// `json`, `table`, or a Go template such as `{{.ID}} {{.Name}}:{{.Tag}}` (`table …`: with
    /// a header row, columns aligned).
    #[arg(long)]
    pub format: Option<String>,
    /// Same as `--format json`.
    #[arg(long)]
    pub json: bool,
    /// Print only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show manifest digests.
    #[arg(long)]
    pub digests: bool,
    /// Do not print the column headings.
    #[arg(short, long)]
    pub noheading: bool,
    /// Do not truncate IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show all images (kiln keeps no hidden intermediate images; accepted for compatibility).
    #[arg(short, long)]
    pub all: bool,
    /// Only images matching `KEY=VALUE` (`dangling=true|false`, `reference=PATTERN`,
    /// `label=KEY[=VALUE]`, `before=IMAGE`, `since=IMAGE`, `id=ID`, `readonly=true|false`,
    /// `intermediate=true|false` (kiln has no intermediate images; `true` needs --all, as in
    /// buildah); `KEY!=VALUE` for the opposite). Repeatable; all must match.
    #[arg(short, long, value_delimiter = ',')]
    pub filter: Vec<String>,
    /// Only images matching this name.
    pub image: Option<String>,
}

/// Run a store verb.
pub fn run(c: StoreCommand, g: &Global) -> Result<()> {
    let root = g.store_root();
    let store = Store::open(&root).with_context(|| format!("opening store {}", root.display()))?;
    match c {
        StoreCommand::Images(a) => images(&store, a),
        StoreCommand::Tag { image, names } => {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            store.tag_image(&image, &refs)?;
            Ok(())
        }
        StoreCommand::Rmi { force, all, images } => rmi(&store, force, all, images),
        StoreCommand::Inspect { kind, format, name } => {
            inspect(&store, kind.as_deref(), format.as_deref(), &name)
        }
        StoreCommand::Prune { all, keep_cache } => prune(&store, all, keep_cache),
        StoreCommand::Fsck { repair } => fsck(&store, repair),
    }
}

// ---------- images ----------

/// One line of `kiln images`: an image under one of its names.
struct Row<'a> {
    img: &'a ImageRecord,
    repo: String,
    tag: String,
}

fn rows(images: &[ImageRecord]) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    for img in images {
        if img.names.is_empty() {
            out.push(Row {
                img,
                repo: "<none>".into(),
                tag: "<none>".into(),
            });
        }
        for n in &img.names {
            let (repo, tag) = match ImageReference::parse(n) {
                Ok(r) => (r.name(), r.tag().unwrap_or("<none>").to_string()),
                Err(_) => (n.clone(), "<none>".into()),
            };
            out.push(Row { img, repo, tag });
        }
    }
    out
}

fn images(store: &Store, a: ImagesArgs) -> Result<()> {
    let mut list = store.list_images()?;
    if let Some(q) = &a.image {
        match store.resolve_image(q) {
            Ok(hit) => list.retain(|i| i.id == hit.id),
            Err(e) => {
                // A repository names its images of every tag (and digest), as with buildah.
                let by_ref = super::filter::images(store, list, &[format!("reference={q}")])?;
                if by_ref.is_empty() {
                    return Err(e.into());
                }
                list = by_ref;
            }
        }
    }
    // Without --all buildah filters by intermediate=false itself, and refuses another value.
    if !a.all
        && a.filter.iter().any(|f| {
            f.split_once('=').is_some_and(|(k, v)| {
                k.trim().trim_end_matches('!') == "intermediate"
                    && (k.ends_with('!') || v != "false")
            })
        })
    {
        bail!(
            "specifying \"intermediate\" filter more than once with different values is not supported"
        );
    }
    let list = super::filter::images(store, list, &a.filter)?;
    let id = |img: &ImageRecord| {
        if a.no_trunc {
            img.id.to_string()
        } else {
            img.short_id()
        }
    };
    let now = unix_now();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for img in &list {
            if seen.insert(img.id) {
                println!("{}", id(img));
            }
        }
        return Ok(());
    }
    let format = if a.json {
        Some("json".to_string())
    } else {
        a.format.clone()
    };
    match format.as_deref() {
        Some("json") => {
            let out: Vec<JsonImage> = list
                .iter()
                .map(|img| JsonImage {
                    id: id(img),
                    names: img.names.clone(),
                    digest: img.manifest_digest.to_string(),
                    createdat: created_ago(img, now),
                    size: human_size(img.size),
                    created: img.created_unix().unwrap_or(0),
                    createdatraw: img.created.clone(),
                    readonly: false,
                    history: None,
                })
                .collect();
            println!("{}", pretty(&out)?);
        }
        Some(t) if t != "table" => {
            let rows: Vec<Value> = rows(&list)
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "ID": id(r.img),
                        "Name": r.repo,
                        "Tag": r.tag,
                        "Digest": r.img.manifest_digest.to_string(),
                        "CreatedAt": created_ago(r.img, now),
                        // Unix seconds, as buildah's; CreatedAtRaw prints as a Go time.
                        "Created": r.img.created_unix().unwrap_or(0),
                        "CreatedAtRaw": r.img.created,
                        "Size": human_size(r.img.size),
                        "ReadOnly": false,
                    })
                })
                .collect();
            // buildah's header names; a field it has none for prints `<no value>`.
            let header = serde_json::json!({
                "Name": "REPOSITORY",
                "Tag": "TAG",
                "ID": "IMAGE ID",
                "CreatedAt": "CREATED",
                "Size": "SIZE",
                "ReadOnly": "R/O",
                "History": "HISTORY",
            });
            print!(
                "{}",
                super::template::render_list(t, &header, &rows, a.noheading)?
            );
        }
        _ => {
            let mut table: Vec<Vec<String>> = Vec::new();
            if !a.noheading {
                let mut h = vec!["REPOSITORY", "TAG"];
                if a.digests {
                    h.push("DIGEST");
                }
                h.extend(["IMAGE ID", "CREATED", "SIZE"]);
                table.push(h.into_iter().map(String::from).collect());
            }
            for r in rows(&list) {
                let mut line = vec![r.repo.clone(), r.tag.clone()];
                if a.digests {
                    line.push(r.img.manifest_digest.to_string());
                }
                line.extend([id(r.img), created_ago(r.img, now), human_size(r.img.size)]);
                table.push(line);
            }
            print_table(&table);
        }
    }
    Ok(())
}

/// One image in `kiln images --format json`, with buildah's keys in buildah's order.
#[derive(Serialize)]
struct JsonImage {
    id: String,
    names: Vec<String>,
    digest: String,
    createdat: String,
    size: String,
    created: i64,
    createdatraw: String,
    readonly: bool,
    history: Option<Vec<String>>,
}

/// JSON indented by four spaces, as buildah prints it.
fn pretty<T: Serialize>(v: &T) -> Result<String> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    v.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

/// Columns padded to the widest cell plus three spaces, as buildah's tabwriter does.
fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        println!("{line}");
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn created_ago(img: &ImageRecord, now: i64) -> String {
    match img.created_unix() {
        Some(t) => format!("{} ago", human_duration(now.saturating_sub(t))),
        None => "unknown".into(),
    }
}

/// Docker's rough durations: `Less than a second`, `5 seconds`, `About a minute`, `3 hours`…
fn human_duration(secs: i64) -> String {
    let hours_rounded = (secs as f64 / 3600.0 + 0.5) as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours_rounded == 1 => "About an hour".into(),
        _ if hours_rounded < 48 => format!("{hours_rounded} hours"),
        _ if hours_rounded < 24 * 7 * 2 => format!("{} days", hours_rounded / 24),
        _ if hours_rounded < 24 * 30 * 2 => format!("{} weeks", hours_rounded / 24 / 7),
        _ if hours_rounded < 24 * 365 * 2 => format!("{} months", hours_rounded / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

/// Decimal sizes with three significant digits: `512 B`, `2.38 KB`, `1.2 GB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{v:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s} {}", UNITS[i])
}

// ---------- rmi ----------

fn rmi(store: &Store, force: bool, all: bool, names: Vec<String>) -> Result<()> {
    if all && !names.is_empty() {
        bail!("when using the --all switch, you may not pass any images names or IDs");
    }
    if !all && names.is_empty() {
        bail!("image name or ID must be specified");
    }
    let mut errors = Vec::new();
    let mut results = Vec::new();
    if all {
        // Every image goes with all its names; images in use only with --force.
        let used: std::collections::HashSet<_> = store
            .list_containers()?
            .iter()
            .filter_map(|c| c.image_id)
            .collect();
        for img in store.list_images()? {
            if used.contains(&img.id) && !force {
                errors.push(format!(
                    "{}: image is in use by a container",
                    img.short_id()
                ));
                continue;
            }
            if used.contains(&img.id)
                && let Err(e) = remove_users(store, &img)
            {
                errors.push(format!("{}: {e:#}", img.short_id()));
                continue;
            }
            results.push((
                img.id.to_string(),
                store.remove_image(&img.id.to_string(), true),
            ));
        }
    } else {
        for t in names {
            // First as without -f: the store untags a name of an image with several names, and
            // deletes an image nothing stops it deleting; either way no container is touched.
            let r = match store.remove_image(&t, false) {
                // The image is to be deleted, but has several names or working containers:
                // -f deletes it anyway, removing those containers first.
                Err(StoreError::ImageInUse { .. }) if force => {
                    let removed = store
                        .resolve_image(&t)
                        .map_err(anyhow::Error::from)
                        .and_then(|img| remove_users(store, &img));
                    if let Err(e) = removed {
                        errors.push(format!("{t}: {e:#}"));
                        continue;
                    }
                    store.remove_image(&t, true)
                }
                r => r,
            };
            results.push((t, r));
        }
    }
    for (t, r) in results {
        match r {
            Ok(Removed::Untagged { name, .. }) => println!("untagged: {name}"),
            Ok(Removed::Deleted(r)) => {
                for n in &r.names {
                    println!("untagged: {n}");
                }
                println!("{}", r.id.hex());
            }
            Err(e) => errors.push(format!("{t}: {}", short_error(&e))),
        }
    }
    if !errors.is_empty() {
        let mut msg = format!(
            "{} error{} occurred:",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        );
        for e in errors {
            msg.push_str(&format!("\n\t* {e}"));
        }
        bail!(msg);
    }
    Ok(())
}

/// `rmi -f` of an image being deleted, as buildah's: first remove the working containers made
/// from `img` (unmounting them), so none is left pointing at an image that is gone.
fn remove_users(store: &Store, img: &ImageRecord) -> Result<()> {
    let users: Vec<String> = store
        .list_containers()?
        .into_iter()
        .filter(|c| c.image_id == Some(img.id))
        .map(|c| c.id)
        .collect();
    let containers =
        kiln_build::working::Containers::new(store, kiln_registry::ClientOptions::default());
    for id in users {
        containers
            .remove(&id)
            .with_context(|| format!("removing working container {id}"))?;
    }
    Ok(())
}

fn short_error(e: &StoreError) -> String {
    match e {
        StoreError::ImageNotFound(_) => "image not known".into(),
        other => other.to_string(),
    }
}

// ---------- inspect ----------

/// The parts of `buildah inspect`'s JSON that kiln has, in buildah's key order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectOutput {
    #[serde(rename = "Type")]
    kind: &'static str,
    from_image: String,
    #[serde(rename = "FromImageID")]
    from_image_id: String,
    from_image_digest: String,
    config: String,
    manifest: String,
    container: String,
    #[serde(rename = "ContainerID")]
    container_id: String,
    mount_point: String,
    process_label: String,
    mount_label: String,
    image_annotations: Option<BTreeMap<String, String>>,
    image_created_by: String,
    #[serde(rename = "OCIv1")]
    ociv1: ImageConfig,
    docker: DockerImage,
    history: Value,
}

/// Docker's container config with every field present, in Docker's order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerConfig {
    hostname: String,
    domainname: String,
    user: String,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    exposed_ports: Option<kiln_core::StringSet>,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<kiln_core::HealthConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_escaped: Option<bool>,
    image: String,
    volumes: Option<kiln_core::StringSet>,
    working_dir: String,
    entrypoint: Option<Vec<String>>,
    on_build: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shell: Option<Vec<String>>,
}

impl From<&RuntimeConfig> for DockerConfig {
    fn from(c: &RuntimeConfig) -> Self {
        let s = |k: &str| {
            c.extra
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        DockerConfig {
            hostname: s("Hostname"),
            domainname: s("Domainname"),
            user: c.user.clone().unwrap_or_default(),
            attach_stdin: false,
            attach_stdout: false,
            attach_stderr: false,
            exposed_ports: c.exposed_ports.clone(),
            tty: false,
            open_stdin: false,
            stdin_once: false,
            env: c.env.clone(),
            cmd: c.cmd.clone(),
            healthcheck: c.healthcheck.clone(),
            args_escaped: c.args_escaped,
            image: s("Image"),
            volumes: c.volumes.clone(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            entrypoint: c.entrypoint.clone(),
            on_build: c.on_build.clone(),
            labels: c.labels.clone(),
            stop_signal: c.stop_signal.clone(),
            shell: c.shell.clone(),
        }
    }
}

/// Docker's image config, as buildah shows it under `Docker`.
#[derive(Serialize)]
struct DockerImage {
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<String>,
    container_config: DockerConfig,
    config: DockerConfig,
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    os: String,
    rootfs: kiln_core::RootFs,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    history: Vec<kiln_core::History>,
}

/// The OCI view of a config: Docker-only and unknown fields dropped.
fn oci_view(c: &ImageConfig) -> ImageConfig {
    let mut o = c.clone();
    o.extra.clear();
    o.config.extra.clear();
    o.config.healthcheck = None;
    o.config.on_build = None;
    o.config.shell = None;
    o
}

fn docker_view(c: &ImageConfig) -> DockerImage {
    DockerImage {
        created: c.created.clone(),
        author: c.author.clone(),
        container_config: DockerConfig::from(&c.config),
        config: DockerConfig::from(&c.config),
        architecture: c.architecture.clone(),
        variant: c.variant.clone(),
        os: c.os.clone(),
        rootfs: c.rootfs.clone(),
        history: c.history.clone(),
    }
}

fn inspect(store: &Store, kind: Option<&str>, format: Option<&str>, name: &str) -> Result<()> {
    let out = match kind {
        Some("image") => inspect_image(store, name)?,
        Some("container") => inspect_container(store, name)?,
        None => match store.get_container(name) {
            Ok(_) => inspect_container(store, name)?,
            Err(_) => inspect_image(store, name)?,
        },
        Some(other) => {
            bail!("the only recognized types are \"container\" and \"image\", not {other:?}")
        }
    };
    match format {
        None | Some("json") => println!("{}", pretty(&out)?),
        Some(t) => println!(
            "{}",
            super::template::render(t, &serde_json::to_value(&out)?)?
        ),
    }
    Ok(())
}

fn inspect_image(store: &Store, name: &str) -> Result<InspectOutput> {
    let img = store.resolve_image(name)?;
    let config_bytes = store.image_config_bytes(&img)?;
    let manifest_bytes = store.image_manifest_bytes(&img)?;
    let manifest = store.image_manifest(&img)?;
    let cfg = ImageConfig::from_slice(&config_bytes).unwrap_or_default();
    Ok(InspectOutput {
        kind: "buildah 0.0.1",
        from_image: img.names.first().cloned().unwrap_or_default(),
        from_image_id: img.id.hex(),
        from_image_digest: img.manifest_digest.to_string(),
        config: String::from_utf8_lossy(&config_bytes).into_owned(),
        manifest: String::from_utf8_lossy(&manifest_bytes).into_owned(),
        container: String::new(),
        container_id: String::new(),
        mount_point: String::new(),
        process_label: String::new(),
        mount_label: String::new(),
        image_annotations: manifest.annotations.clone(),
        image_created_by: String::new(),
        ociv1: oci_view(&cfg),
        docker: docker_view(&cfg),
        history: serde_json::to_value(&cfg.history)?,
    })
}

fn inspect_container(store: &Store, name: &str) -> Result<InspectOutput> {
    let c = store.get_container(name)?;
    let cfg: ImageConfig = serde_json::from_value(c.config.clone()).unwrap_or_default();
    let image = c
        .image_id
        .and_then(|id| store.resolve_image(&id.to_string()).ok());
    let (from_image_id, from_image_digest) = match &image {
        Some(img) => (img.id.hex(), img.manifest_digest.to_string()),
        None => (
            c.image_id.map(|d| d.hex()).unwrap_or_default(),
            String::new(),
        ),
    };
    // As buildah: the image's full name the container was made from, not the name as typed.
    let typed = [
        ImageReference::parse_local(&c.image_name),
        ImageReference::parse(&c.image_name),
    ];
    let full: Vec<String> = typed.into_iter().flatten().map(|r| r.to_string()).collect();
    let from_image = match &image {
        Some(img) => full
            .iter()
            .find(|n| img.names.contains(n))
            .or(img.names.first())
            .cloned()
            .unwrap_or_else(|| c.image_name.clone()),
        None => c.image_name.clone(),
    };
    Ok(InspectOutput {
        kind: "buildah 0.0.1",
        from_image,
        from_image_id,
        from_image_digest,
        config: serde_json::to_string(&c.config)?,
        manifest: String::new(),
        container: c.name.clone(),
        container_id: c.id.clone(),
        // As buildah: the mount point only while `kiln mount` has the container mounted.
        mount_point: c
            .extra
            .get(kiln_build::working::STATE_KEY)
            .and_then(|k| k.get("mount_point"))
            .and_then(Value::as_str)
            .filter(|p| kiln_build::working::mount_points().iter().any(|m| m.as_os_str() == *p))
            .unwrap_or_default()
            .to_string(),
        process_label: String::new(),
        mount_label: String::new(),
        image_annotations: None,
        image_created_by: String::new(),
        ociv1: oci_view(&cfg),
        docker: docker_view(&cfg),
        history: serde_json::to_value(&cfg.history)?,
    })
}

// ---------- prune / fsck ----------

fn prune(store: &Store, all: bool, keep_cache: bool) -> Result<()> {
    let mut removed = Vec::new();
    if all {
        let used: std::collections::HashSet<_> = store
            .list_containers()?
            .iter()
            .filter_map(|c| c.image_id)
            .collect();
        for img in store.list_images()? {
            if !used.contains(&img.id)
                && let Ok(Removed::Deleted(r)) = store.remove_image(&img.id.to_string(), true)
            {
                removed.push(r);
            }
        }
    }
    let report = store.prune(&PruneOptions {
        dangling_images: true,
        clear_cache: !keep_cache,
        ..Default::default()
    })?;
    removed.extend(report.images.iter().cloned());
    for r in &removed {
        println!("{}", r.id.hex());
    }
    eprintln!(
        "removed {} image(s), {} blob(s) ({}), {} snapshot(s), {} cache entr{}, {} temp leftover(s)",
        removed.len(),
        report.blobs.len(),
        human_size(report.bytes_freed),
        report.snapshots.len(),
        report.cache_entries,
        if report.cache_entries == 1 {
            "y"
        } else {
            "ies"
        },
        report.temp_entries
    );
    if report.kept_young > 0 {
        eprintln!(
            "kept {} unreferenced blob(s)/snapshot(s) younger than {} minutes (another build may be about to use them)",
            report.kept_young,
            PruneOptions::default().grace.as_secs() / 60
        );
    }
    Ok(())
}

fn fsck(store: &Store, repair: bool) -> Result<()> {
    let r = store.fsck(repair)?;
    for b in &r.bad_blobs {
        match (&b.actual, &b.error) {
            (Some(a), _) => println!("corrupt blob {}: content hashes to {a}", b.digest),
            (None, Some(e)) => println!("unreadable blob {}: {e}", b.digest),
            (None, None) => println!("bad blob {}", b.digest),
        }
    }
    for (img, need) in &r.broken_images {
        let name = img
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| "<none>".into());
        let list: Vec<String> = need.iter().map(|d| d.to_string()).collect();
        println!(
            "image {} ({name}) needs missing or corrupt blobs: {}",
            img.short_id(),
            list.join(", ")
        );
    }
    for d in &r.removed_blobs {
        println!("removed blob {d}");
    }
    for img in &r.removed_images {
        println!("removed image {}", img.id.hex());
    }
    println!(
        "checked {} blob(s): {} corrupt, {} broken image(s){}",
        r.checked,
        r.bad_blobs.len(),
        r.broken_images.len(),
        if repair && !r.is_clean() {
            " (repaired)"
        } else {
            ""
        }
    );
    if !r.is_clean() && !repair {
        return Err(anyhow::Error::new(ExitStatusError(1))
            .context("the store has problems: run `kiln fsck --repair`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(2380), "2.38 KB");
        assert_eq!(human_size(1_000_000), "1 MB");
        assert_eq!(human_size(12_345_678), "12.3 MB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(55), "55 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(300), "5 minutes");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
