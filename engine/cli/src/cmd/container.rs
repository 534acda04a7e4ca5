//! buildah's working-container verbs: `kiln from`, `containers`, `run`, `copy`, `add`, `config`,
//! `mount`, `umount`, `unshare`, `commit` and `rm`, with buildah 1.28's flags.

use crate::cmd::export::{self, open_store, parse_destination};
use crate::global::{ExitStatusError, Global};
use anyhow::{Context, Result, bail};
use kiln_build::working::{
    CommitOptions, ConfigChanges, Containers, CopyOptions, FromOptions, RunOptions, UNSHARED_ENV,
    WorkingContainer,
};
use kiln_build::{Format, PullPolicy};
use kiln_core::Transport;
use kiln_store::Store;
use std::path::PathBuf;

/// The working-container verbs. Meant to be flattened into the top-level verb list.
#[derive(clap::Subcommand, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ContainerCommand {
    /// Create a working container from an image (or `scratch`) and print its name.
    From(FromArgs),
    /// List working containers.
    Containers(ContainersArgs),
    /// Run a command inside a working container.
    Run(RunArgs),
    /// Copy files from the host (or `--from` a container or image) into a working container.
    Copy(CopyArgs),
    /// Like copy, and also fetch URLs and extract local archives.
    Add(CopyArgs),
    /// Change the image configuration a working container will commit.
    Config(ConfigArgs),
    /// Mount working containers' root filesystems and print the mount points (root, or inside
    /// `kiln unshare`); without a name, list the mounted ones.
    Mount(MountArgs),
    /// Unmount working containers.
    #[command(alias = "unmount")]
    Umount(UmountArgs),
    /// Run a command in a new user and mount namespace, where `kiln mount` works rootless.
    Unshare(UnshareArgs),
    /// Write a working container as an image (to the store or TRANSPORT:DEST).
    Commit(CommitArgs),
    /// Remove working containers (and their mounts).
    #[command(alias = "delete")]
    Rm(RmArgs),
}

/// `kiln from` flags.
#[derive(clap::Args, Debug)]
pub struct FromArgs {
    /// Image (name, ID or registry reference) or `scratch`.
    pub image: String,
    /// Name for the working container.
    #[arg(long)]
    pub name: Option<String>,
    /// Pull the image: true/missing (when not in the store, default), always, never, false.
    #[arg(long, default_value = "missing", num_args = 0..=1, default_missing_value = "missing")]
    pub pull: String,
    /// Platform os/arch[/variant] of the image to pull.
    #[arg(long)]
    pub platform: Option<String>,
    /// How to reach registries.
    #[command(flatten)]
    pub registry_flags: crate::cmd::RegistryFlags,
    /// Write the container ID to this file.
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// `SRC:DST[:ro]` host bind for every later `run`.
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    #[command(flatten)]
    pub process: crate::cmd::ProcessArgs,
    /// No pull progress.
    #[arg(short, long)]
    pub quiet: bool,
    /// Image format (the format is chosen at commit; accepted for compatibility).
    #[arg(short, long)]
    pub format: Option<String>,
}

/// `kiln containers` flags.
#[derive(clap::Args, Debug)]
pub struct ContainersArgs {
    /// `json`, or a Go template using .ContainerID .Builder .ImageID .ImageName .ContainerName
    /// (`table …` adds a header row and aligns the columns).
    #[arg(long)]
    pub format: Option<String>,
    /// Same as `--format json`.
    #[arg(long)]
    pub json: bool,
    /// Print only container IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not print the column headings.
    #[arg(short, long)]
    pub noheading: bool,
    /// Do not truncate IDs.
    #[arg(long)]
    pub notruncate: bool,
    /// Also list non-kiln containers (there are none; accepted for compatibility).
    #[arg(short, long)]
    pub all: bool,
    /// Only containers matching `id=PREFIX`, `name=PART` or `ancestor=IMAGE`; repeatable or
    /// comma-separated, all must match.
    #[arg(short, long, value_delimiter = ',')]
    pub filter: Vec<String>,
}

/// `kiln run` flags.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// `SRC:DST[:ro]` host bind for this command.
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// `KEY=VALUE` environment variable for this command.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// `USER[:GROUP]` to run as (default: the config's user).
    #[arg(long)]
    pub user: Option<String>,
    /// Working directory (default: the config's).
    #[arg(long)]
    pub workingdir: Option<String>,
    /// Network: host (default), none or private.
    #[arg(long)]
    pub network: Option<String>,
    /// Hostname inside the container.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Capability to add for this command (on top of the container's), repeatable.
    #[arg(long, value_delimiter = ',')]
    pub cap_add: Vec<String>,
    /// Capability to drop for this command, repeatable.
    #[arg(long, value_delimiter = ',')]
    pub cap_drop: Vec<String>,
    /// Isolation (kiln always uses its own rootless sandbox; accepted for compatibility).
    #[arg(long)]
    pub isolation: Option<String>,
    /// Allocate a terminal (kiln passes its standard streams through; accepted).
    #[arg(short, long)]
    pub terminal: bool,
    /// The working container.
    pub container: String,
    /// The command and its arguments (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `kiln copy`/`kiln add` flags.
#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// `USER[:GROUP]` owner of what is copied.
    #[arg(long)]
    pub chown: Option<String>,
    /// Octal mode of what is copied.
    #[arg(long)]
    pub chmod: Option<String>,
    /// Read sources from this working container's or image's root.
    #[arg(long)]
    pub from: Option<String>,
    /// Sources must lie in this directory.
    #[arg(long)]
    pub contextdir: Option<PathBuf>,
    /// Ignore file (with --contextdir).
    #[arg(long)]
    pub ignorefile: Option<PathBuf>,
    /// Do not print the digest of what was copied.
    #[arg(short, long)]
    pub quiet: bool,
    /// Accepted for compatibility (kiln adds no history entry per copy).
    #[arg(long)]
    pub add_history: bool,
    /// CONTAINER SRC… DEST.
    #[arg(required = true, num_args = 3..)]
    pub args: Vec<String>,
}

/// `kiln config` flags.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// `KEY=VALUE` annotation for the image's manifest (`KEY-` removes).
    #[arg(short, long)]
    pub annotation: Vec<String>,
    /// Architecture of the image.
    #[arg(long)]
    pub arch: Option<String>,
    /// Author contact information.
    #[arg(long)]
    pub author: Option<String>,
    /// Default command: a JSON array or words (empty clears it).
    #[arg(long, allow_hyphen_values = true)]
    pub cmd: Option<String>,
    /// Comment in the image.
    #[arg(long)]
    pub comment: Option<String>,
    /// History text of the commit.
    #[arg(long)]
    pub created_by: Option<String>,
    /// Domain name for containers.
    #[arg(long)]
    pub domainname: Option<String>,
    /// Entry point: a JSON array, or a command run with `/bin/sh -c` (empty clears it).
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// `KEY=VALUE` environment variable (`KEY-` removes, `-` clears).
    #[arg(short, long, allow_hyphen_values = true)]
    pub env: Vec<String>,
    /// Health check: `CMD …`, `CMD-SHELL …` or NONE (split into words).
    #[arg(long, allow_hyphen_values = true)]
    pub healthcheck: Option<String>,
    /// Interval between health checks (e.g. 30s).
    #[arg(long)]
    pub healthcheck_interval: Option<String>,
    /// Failed checks before unhealthy.
    #[arg(long)]
    pub healthcheck_retries: Option<u32>,
    /// Grace period before failures count.
    #[arg(long)]
    pub healthcheck_start_period: Option<String>,
    /// Time a check may take.
    #[arg(long)]
    pub healthcheck_timeout: Option<String>,
    /// Comment for the commit's history entry.
    #[arg(long)]
    pub history_comment: Option<String>,
    /// Hostname for containers.
    #[arg(long)]
    pub hostname: Option<String>,
    /// `KEY=VALUE` label (`KEY-` removes).
    #[arg(short, long)]
    pub label: Vec<String>,
    /// ONBUILD trigger (docker format only).
    #[arg(long)]
    pub onbuild: Vec<String>,
    /// Operating system of the image.
    #[arg(long)]
    pub os: Option<String>,
    /// Port to expose (`PORT-` removes, `-` clears).
    #[arg(short, long, allow_hyphen_values = true)]
    pub port: Vec<String>,
    /// Shell for shell-form commands (split into words).
    #[arg(long)]
    pub shell: Option<String>,
    /// Stop signal.
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Default user.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Architecture variant.
    #[arg(long)]
    pub variant: Option<String>,
    /// Volume path (`PATH-` removes).
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// Working directory.
    #[arg(long)]
    pub workingdir: Option<String>,
    /// Accepted for compatibility (kiln adds no history entry per config change).
    #[arg(long)]
    pub add_history: bool,
    /// The working container.
    pub container: String,
}

/// `kiln mount` flags.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Containers to mount (none: list mounted containers).
    pub containers: Vec<String>,
}

/// `kiln umount` flags.
#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Unmount every mounted container.
    #[arg(short, long)]
    pub all: bool,
    /// Containers to unmount.
    pub containers: Vec<String>,
}

/// `kiln unshare` flags.
#[derive(clap::Args, Debug)]
pub struct UnshareArgs {
    /// `[VARIABLE=]CONTAINER`: mount it and put its mount point in $VARIABLE (default: the
    /// container's name).
    #[arg(short, long)]
    pub mount: Vec<String>,
    /// Command and arguments (default: $SHELL, else /bin/sh).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `kiln commit` flags.
#[derive(clap::Args, Debug)]
pub struct CommitArgs {
    /// The working container.
    pub container: String,
    /// Image name, or TRANSPORT:DEST (oci-archive:, oci:, docker-archive:, docker://, plugin schemes).
    pub image: Option<String>,
    /// oci (default) or docker.
    #[arg(short, long, default_value = "oci")]
    pub format: String,
    /// One layer holding the whole filesystem.
    #[arg(long)]
    pub squash: bool,
    /// Remove the container after committing.
    #[arg(long)]
    pub rm: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image ID to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Seconds since the epoch for created times and file times.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub timestamp: Option<i64>,
    /// How to reach registries.
    #[command(flatten)]
    pub registry_flags: crate::cmd::RegistryFlags,
    /// Add buildah's builder label (kiln adds none; accepted for compatibility).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub identity_label: Option<bool>,
}

/// `kiln rm` flags.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Remove every working container.
    #[arg(short, long)]
    pub all: bool,
    /// Containers to remove.
    pub containers: Vec<String>,
}

/// Run a working-container verb.
pub fn run(c: ContainerCommand, g: &Global) -> Result<()> {
    if let ContainerCommand::Unshare(a) = c {
        return unshare(a, g);
    }
    let store = open_store(g)?;
    match c {
        ContainerCommand::From(a) => from(&store, a, g),
        ContainerCommand::Containers(a) => containers(&store, a),
        ContainerCommand::Run(a) => run_in(&store, a),
        ContainerCommand::Copy(a) => copy(&store, a, false),
        ContainerCommand::Add(a) => copy(&store, a, true),
        ContainerCommand::Config(a) => config(&store, a),
        ContainerCommand::Mount(a) => mount(&store, a),
        ContainerCommand::Umount(a) => umount(&store, a),
        ContainerCommand::Commit(a) => commit(&store, a, g),
        ContainerCommand::Rm(a) => rm(&store, a),
        ContainerCommand::Unshare(_) => unreachable!("handled above"),
    }
}

fn verbs(store: &Store) -> Containers<'_> {
    Containers::new(store, kiln_registry::ClientOptions::default())
}

/// `SRC:DST[:ro|rw|…]` → (absolute source, target, read-only).
fn parse_bind(v: &str) -> Result<(PathBuf, String, bool)> {
    let mut parts = v.splitn(3, ':');
    let src = parts.next().unwrap_or_default();
    let Some(dst) = parts.next().filter(|d| d.starts_with('/')) else {
        bail!("-v {v:?}: use SRC:DST[:ro] with an absolute DST");
    };
    let opts = parts.next().unwrap_or("");
    let ro = opts.split(',').any(|o| o == "ro");
    let src = std::fs::canonicalize(src).with_context(|| format!("-v {v:?}: source {src}"))?;
    Ok((src, dst.to_string(), ro))
}

fn from(store: &Store, a: FromArgs, g: &Global) -> Result<()> {
    let pull = match a.pull.as_str() {
        "always" => PullPolicy::Always,
        "missing" | "true" | "false" | "ifmissing" | "ifnewer" => PullPolicy::Missing,
        "never" => PullPolicy::Never,
        other => bail!("--pull={other}: use true, false, always, missing or never"),
    };
    let platform = match &a.platform {
        Some(p) => Some(kiln_core::Platform::parse(p)?),
        None => None,
    };
    let run_binds = a
        .volumes
        .iter()
        .map(|v| parse_bind(v))
        .collect::<Result<_>>()?;
    a.registry_flags.check()?;
    let mut v = Containers::new(store, a.registry_flags.options(a.quiet));
    v.quiet = a.quiet;
    v.driver = g.storage_driver(store)?;
    let c = v.from(
        &a.image,
        &FromOptions {
            name: a.name.clone(),
            pull,
            platform,
            run_binds,
            process: a.process.options()?,
        },
    )?;
    if let Some(f) = &a.cidfile {
        std::fs::write(f, c.id()).with_context(|| format!("writing {}", f.display()))?;
    }
    println!("{}", c.name());
    Ok(())
}

fn short(id: &str, full: bool) -> String {
    if full {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

fn containers(store: &Store, a: ContainersArgs) -> Result<()> {
    let all = crate::cmd::filter::containers(
        store,
        verbs(store).list()?,
        |c: &WorkingContainer| &c.record,
        &a.filter,
    )?;
    // As buildah: a container's image is named by the image's first name now ("scratch" for
    // none, empty when the image is gone or has no names), not by the name given to `from`.
    let images = store.list_images()?;
    let image_name = |c: &WorkingContainer| -> String {
        match c.record.image_id {
            None if c.record.image_name.is_empty() => "scratch".into(),
            None => c.record.image_name.clone(),
            Some(id) => images
                .iter()
                .find(|i| i.id == id)
                .map(|i| i.names.first().cloned().unwrap_or_default())
                .unwrap_or_default(),
        }
    };
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id(),
                "builder": true,
                "imageid": c.record.image_id.map(|d| d.hex()).unwrap_or_default(),
                "imagename": image_name(c),
                "containername": c.name(),
            })
        })
        .collect();
    if a.json || a.format.as_deref() == Some("json") {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if a.quiet {
        // As buildah: full IDs, with or without --notruncate.
        for c in &all {
            println!("{}", c.id());
        }
        return Ok(());
    }
    if let Some(t) = &a.format {
        // As buildah: templates get full IDs; --notruncate is for the table.
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                serde_json::json!({
                    "ContainerID": s("id"),
                    "Builder": "   *",
                    "ImageID": s("imageid"),
                    "ImageName": s("imagename"),
                    "ContainerName": s("containername"),
                })
            })
            .collect();
        let header = serde_json::json!({
            "ContainerID": "CONTAINER ID",
            "Builder": "BUILDER",
            "ImageID": "IMAGE ID",
            "ImageName": "IMAGE NAME",
            "ContainerName": "CONTAINER NAME",
        });
        print!(
            "{}",
            crate::cmd::template::render_list(t, &header, &rows, a.noheading)?
        );
        return Ok(());
    }
    // buildah's columns: fixed widths, and a space after each even when a value is wider.
    let line = |id: &str, builder: &str, image_id: &str, image: &str, name: &str| {
        if a.notruncate {
            format!("{id:<64} {builder:<8} {image_id:<64} {image:<32} {name}")
        } else {
            format!(
                "{:<12}  {builder:<8} {:<12} {image:<32} {name}",
                short(id, false),
                short(image_id, false)
            )
        }
    };
    if !a.noheading {
        if a.notruncate {
            println!(
                "{}",
                line(
                    "CONTAINER ID",
                    "BUILDER",
                    "IMAGE ID",
                    "IMAGE NAME",
                    "CONTAINER NAME"
                )
            );
        } else {
            println!(
                "CONTAINER ID  BUILDER  IMAGE ID     IMAGE NAME                       CONTAINER NAME"
            );
        }
    }
    for (c, r) in all.iter().zip(&rows) {
        let img = c.record.image_id.map(|d| d.hex()).unwrap_or_default();
        println!(
            "{}",
            line(
                c.id(),
                "   *",
                &img,
                r["imagename"].as_str().unwrap_or_default(),
                c.name()
            )
        );
    }
    Ok(())
}

fn run_in(store: &Store, a: RunArgs) -> Result<()> {
    let v = verbs(store);
    let c = v.get(&a.container)?;
    let mut command = a.command.clone();
    if command.first().map(String::as_str) == Some("--") {
        command.remove(0);
    }
    if command.is_empty() {
        bail!(
            "kiln run {}: no command given (kiln run CONTAINER -- COMMAND…)",
            a.container
        );
    }
    let mut env = Vec::new();
    for e in &a.env {
        match e.split_once('=') {
            Some((k, val)) => env.push((k.to_string(), val.to_string())),
            None => env.push((e.clone(), std::env::var(e).unwrap_or_default())),
        }
    }
    let binds = a
        .volumes
        .iter()
        .map(|b| parse_bind(b))
        .collect::<Result<_>>()?;
    let opts = RunOptions {
        binds,
        env,
        user: a.user.clone(),
        workdir: a.workingdir.clone(),
        network: a.network.clone(),
        hostname: a.hostname.clone(),
        stdin: true,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
    };
    let status = v.run(&c, &command, &opts)?;
    if status != 0 {
        return Err(anyhow::Error::new(ExitStatusError(status)).context(format!(
            "kiln run {}: {} exited with status {status}",
            c.name(),
            command.join(" ")
        )));
    }
    Ok(())
}

fn copy(store: &Store, a: CopyArgs, is_add: bool) -> Result<()> {
    let v = verbs(store);
    let (container, rest) = a.args.split_first().expect("clap requires three arguments");
    let (dest, sources) = rest.split_last().expect("clap requires three arguments");
    let c = v.get(container)?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let context_dir = match &a.contextdir {
        Some(d) => Some(
            std::fs::canonicalize(d).with_context(|| format!("--contextdir {}", d.display()))?,
        ),
        None => None,
    };
    let opts = CopyOptions {
        sources: sources.to_vec(),
        dest: dest.clone(),
        chown: a.chown.clone(),
        chmod: a.chmod.clone(),
        from: a.from.clone(),
        is_add,
        context_dir,
        ignore_file: a.ignorefile.clone(),
        cwd,
    };
    let digest = v.copy(&c, &opts)?;
    if !a.quiet {
        println!("{digest}");
    }
    Ok(())
}

fn config(store: &Store, a: ConfigArgs) -> Result<()> {
    let v = verbs(store);
    let mut c = v.get(&a.container)?;
    let ch = ConfigChanges {
        author: a.author,
        created_by: a.created_by,
        arch: a.arch,
        os: a.os,
        variant: a.variant,
        user: a.user,
        shell: a.shell,
        stop_signal: a.stop_signal,
        ports: a.port,
        env: a.env,
        entrypoint: a.entrypoint,
        cmd: a.cmd,
        volumes: a.volume,
        labels: a.label,
        workingdir: a.workingdir,
        onbuild: a.onbuild,
        annotations: a.annotation,
        comment: a.comment,
        history_comment: a.history_comment,
        hostname: a.hostname,
        domainname: a.domainname,
        healthcheck: a.healthcheck,
        healthcheck_interval: a.healthcheck_interval,
        healthcheck_timeout: a.healthcheck_timeout,
        healthcheck_start_period: a.healthcheck_start_period,
        healthcheck_retries: a.healthcheck_retries,
    };
    v.configure(&mut c, &ch)?;
    Ok(())
}

fn mount(store: &Store, a: MountArgs) -> Result<()> {
    let v = verbs(store);
    if a.containers.is_empty() {
        let mounted: Vec<(WorkingContainer, PathBuf)> = v
            .list()?
            .into_iter()
            .filter_map(|c| c.mounted_at().map(|m| (c, m)))
            .collect();
        if a.json {
            let rows: Vec<serde_json::Value> = mounted
                .iter()
                .map(|(c, m)| serde_json::json!({"container": c.name(), "mountPoint": m}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            for (c, m) in &mounted {
                println!("{} {}", c.name(), m.display());
            }
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for name in &a.containers {
        let mut c = v.get(name)?;
        let m = v.mount(&mut c)?;
        if a.json {
            rows.push(serde_json::json!({"container": c.name(), "mountPoint": m}));
        } else if a.containers.len() > 1 {
            println!("{} {}", c.name(), m.display());
        } else {
            println!("{}", m.display());
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

fn umount(store: &Store, a: UmountArgs) -> Result<()> {
    let v = verbs(store);
    if a.all != a.containers.is_empty() {
        bail!("kiln umount: name containers or use --all, not both or neither");
    }
    let targets: Vec<WorkingContainer> = if a.all {
        v.list()?
    } else {
        a.containers
            .iter()
            .map(|n| v.get(n))
            .collect::<Result<_, _>>()?
    };
    for mut c in targets {
        let was = c.mounted_at().is_some();
        v.umount(&mut c)?;
        if was || !a.all {
            println!("{}", c.id());
        }
    }
    Ok(())
}

fn unshare(a: UnshareArgs, g: &Global) -> Result<()> {
    kiln_build::working::enter_unshared()?;
    let mut envs = Vec::new();
    if !a.mount.is_empty() {
        let store = open_store(g)?;
        let v = verbs(&store);
        for spec in &a.mount {
            let (var, name) = match spec.split_once('=') {
                Some((var, name)) => (var.to_string(), name.to_string()),
                None => (spec.clone(), spec.clone()),
            };
            let mut c = v.get(&name)?;
            let m = v.mount(&mut c)?;
            envs.push((var, m));
        }
    }
    let mut command = a.command.clone();
    if command.first().map(String::as_str) == Some("--") {
        command.remove(0);
    }
    if command.is_empty() {
        command.push(
            std::env::var("SHELL")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/sh".into()),
        );
    }
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..]).env(UNSHARED_ENV, "1");
    for (k, m) in &envs {
        cmd.env(k, m);
    }
    if let Some(root) = &g.root {
        cmd.env("KILN_ROOT", root);
    }
    let status = cmd
        .status()
        .with_context(|| format!("kiln unshare: running {}", command[0]))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(anyhow::Error::new(ExitStatusError(code))),
        None => {
            use std::os::unix::process::ExitStatusExt;
            Err(anyhow::Error::new(ExitStatusError(
                128 + status.signal().unwrap_or(0),
            )))
        }
    }
}

fn commit(store: &Store, a: CommitArgs, g: &Global) -> Result<()> {
    let v = verbs(store);
    let c = v
        .get(&a.container)
        .map_err(|e| anyhow::anyhow!("kiln commit: {e}"))?;
    let format = match a.format.as_str() {
        "oci" => Format::Oci,
        "docker" | "v2s2" => Format::Docker,
        other => bail!("--format={other}: use oci or docker"),
    };
    let (host, catalog) = crate::cmd::plugin::open(g)?;
    let transport = match &a.image {
        Some(d) => Some(parse_destination(d, &host, &catalog)?),
        None => None,
    };
    let names = match &transport {
        Some(Transport::Store(n)) => vec![n.clone()],
        _ => vec![],
    };
    let opts = CommitOptions {
        names,
        format,
        squash: a.squash,
        timestamp: a.timestamp,
        labels: vec![],
    };
    let image = v.commit(&c, &opts)?;
    let elsewhere = matches!(&transport, Some(t) if !matches!(t, Transport::Store(_)));
    match transport {
        None | Some(Transport::Store(_)) => {}
        Some(Transport::Docker(r)) => {
            crate::cmd::push_to_registry(
                store,
                &image,
                &r.to_string(),
                &a.registry_flags,
                Some(format),
                a.quiet,
            )?;
        }
        Some(t) => {
            export::export(
                store,
                &host,
                &catalog,
                &image,
                &t,
                &[],
                a.timestamp,
                a.quiet,
                None,
            )?;
        }
    }
    if elsewhere && image.names.is_empty() {
        // As buildah: an image committed to another transport is not kept in the store (its
        // blobs go with the next prune).
        let _ = store.remove_image(&image.id.to_string(), false);
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, image.id.to_string())
            .with_context(|| format!("writing {}", f.display()))?;
    }
    if a.rm {
        v.remove(c.id())?;
    }
    println!("{}", image.id.hex());
    Ok(())
}

fn rm(store: &Store, a: RmArgs) -> Result<()> {
    let v = verbs(store);
    if a.all != a.containers.is_empty() {
        bail!("kiln rm: name containers or use --all, not both or neither");
    }
    let names: Vec<String> = if a.all {
        v.list()?.iter().map(|c| c.id().to_string()).collect()
    } else {
        a.containers.clone()
    };
    // Each failure is said once: all but the last here, the last by main as the verb's error.
    let mut failed: Option<anyhow::Error> = None;
    for n in &names {
        match v.remove(n) {
            Ok(rec) => println!("{}", rec.id),
            Err(e) => {
                if let Some(earlier) = failed.take() {
                    eprintln!("Error: {}", crate::global::error_text(&earlier));
                }
                failed = Some(e.into());
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
