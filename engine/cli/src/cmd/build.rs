//! `kiln build` (alias `bud`): buildah's flags, a frontend plugin's plan, the executor, then every
//! `-t` destination: store names, `docker://` pushes, and exporter transports.

use crate::cmd::export::{self, open_store, parse_destination};
use crate::global::{ExitStatusError, Global};
use anyhow::{Context, Result, bail};
use kiln_build::{BuildOptions, Builder, Format, InjectorConfig, ProgressMode, PullPolicy, SecretSource};
use kiln_core::Transport;
use std::io::Read;
use std::path::PathBuf;

/// `kiln build` flags (as buildah and docker spell them).
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile/Containerfile (`-` reads it from stdin). Default: Containerfile or Dockerfile in the context.
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Name or destination of the image, repeatable: `NAME` (store), `docker://REF`,
    /// `oci-archive:PATH[:ref]`, `oci:DIR[:ref]`, `docker-archive:PATH[:ref]`, `sif:PATH`, …
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// `KEY=VALUE` build argument (`KEY` alone takes the value from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// A file of `KEY=VALUE` build arguments, one per line.
    #[arg(long = "build-arg-file")]
    pub build_arg_files: Vec<PathBuf>,
    /// Build this stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Pull base images: always, missing (default), never (also true = always, false = missing).
    #[arg(long, default_value = "missing", num_args = 0..=1, default_missing_value = "always", require_equals = false)]
    pub pull: String,
    /// Cache intermediate layers, one layer per step (on by default). `--layers=false`, as
    /// `buildah bud` without `--layers`: no build cache, and each stage's changes in one layer.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub layers: bool,
    /// Give RUN steps kiln's proxy variables (HTTP_PROXY, https_proxy, NO_PROXY, …), as buildah
    /// does by default; never kept in the image or the cache key. `--http-proxy=false` turns it off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub http_proxy: bool,
    /// Target platform os/arch[/variant]; several (comma-separated or repeated) build one image
    /// each, collected with --manifest.
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Target OS (over --platform or this host's).
    #[arg(long)]
    pub os: Option<String>,
    /// Target architecture (over --platform or this host's).
    #[arg(long)]
    pub arch: Option<String>,
    /// Target architecture variant.
    #[arg(long)]
    pub variant: Option<String>,
    /// Image format: oci (default) or docker.
    #[arg(long, default_value = "oci")]
    pub format: String,
    /// One layer holding the image's whole filesystem, with the last history entry only.
    #[arg(long)]
    pub squash: bool,
    /// No history in the image's config.
    #[arg(long)]
    pub omit_history: bool,
    /// `KEY=VALUE` (or `KEY`, from the environment) set at the start of every stage: seen by RUN
    /// and kept in the image, repeatable.
    #[arg(long)]
    pub env: Vec<String>,
    /// Variable to remove from the final image's config, repeatable.
    #[arg(long)]
    pub unsetenv: Vec<String>,
    /// `HOST:IP` line for `/etc/hosts` of every RUN, repeatable.
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Name server for every RUN's `/etc/resolv.conf` (instead of the host's), repeatable.
    #[arg(long)]
    pub dns: Vec<String>,
    /// Search domain for every RUN's `/etc/resolv.conf` (instead of the host's), repeatable.
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Resolver option added to every RUN's `/etc/resolv.conf`, repeatable.
    #[arg(long)]
    pub dns_option: Vec<String>,
    /// RUN sees the image's own `/etc/hosts` instead of a generated one.
    #[arg(long, conflicts_with = "add_host")]
    pub no_hosts: bool,
    /// RUN steps read this standard input (else /dev/null).
    #[arg(long)]
    pub stdin: bool,
    #[command(flatten)]
    pub process: crate::cmd::ProcessArgs,
    /// Add the image to this manifest list (made when missing), replacing the entry for its
    /// platform; with several `--platform` values, each platform's image.
    #[arg(long)]
    pub manifest: Option<String>,
    /// Registry repository (`host/path`, no tag) whose cache images answer steps the local cache
    /// does not have; repeatable.
    #[arg(long, value_delimiter = ',')]
    pub cache_from: Vec<String>,
    /// Registry repository the steps this build runs are pushed to as cache images; repeatable.
    #[arg(long, value_delimiter = ',')]
    pub cache_to: Vec<String>,
    /// Use only cache entries younger than this (`90m`, `1h30m`, `2d`; `0` is `--no-cache`).
    #[arg(long)]
    pub cache_ttl: Option<String>,
    /// Write everything the build prints (progress, RUN output, the image ID) to this file
    /// instead of standard output and standard error.
    #[arg(long)]
    pub logfile: Option<PathBuf>,
    /// Accepted for buildah compatibility: kiln's store keeps layers compressed, as registries
    /// and archives take them.
    #[arg(short = 'D', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub disable_compression: bool,
    /// Remove intermediate containers (accepted for buildah compatibility: kiln keeps none).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rm: bool,
    /// Remove intermediate containers after a failed build too (accepted for buildah
    /// compatibility: kiln keeps none).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub force_rm: bool,
    /// `USER[:PASSWORD]` for pulling base images, instead of the credentials file.
    #[arg(long)]
    pub creds: Option<String>,
    /// Retries after network errors when pulling.
    #[arg(long)]
    pub retry: Option<u32>,
    /// Write the image ID to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// `KEY=VALUE` label for the image (`KEY` alone: an empty value).
    #[arg(long)]
    pub label: Vec<String>,
    /// `KEY=VALUE` annotation for the manifest.
    #[arg(long)]
    pub annotation: Vec<String>,
    /// `id=ID,src=FILE` or `id=ID,env=VAR`: a secret for `RUN --mount=type=secret`.
    #[arg(long)]
    pub secret: Vec<String>,
    /// Network for RUN: host (default), none or private.
    #[arg(long)]
    pub network: Option<String>,
    /// Stages built at once (default: one per CPU; 1 builds them one after another).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// `ID[=SOCKET|KEY[,KEY…]]`: an SSH agent for `RUN --mount=type=ssh` (default: $SSH_AUTH_SOCK).
    #[arg(long)]
    pub ssh: Vec<String>,
    /// How to reach registries.
    #[command(flatten)]
    pub registry_flags: crate::cmd::RegistryFlags,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// auto, plain or json.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Seconds since the epoch for created times and layer mtimes (reproducible builds).
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub timestamp: Option<i64>,
    /// Ignore file instead of .containerignore/.dockerignore.
    #[arg(long)]
    pub ignorefile: Option<PathBuf>,
    /// Mount injector plugins for every RUN (e.g. proxy-ca), repeatable.
    #[arg(long)]
    pub inject: Vec<String>,
    /// `NAME.KEY=VALUE` options for injector NAME (`corp-ca.site=eu` goes only to corp-ca),
    /// repeatable.
    #[arg(long = "inject-opt")]
    pub inject_opts: Vec<String>,
    /// CA bundle for the proxy-ca injector (default: SSL_CERT_FILE or the host's bundle).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// `SRC:DST[:ro]` bind mount for every RUN.
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// `type=TYPE,KEY=VALUE,…`: a mount for every RUN of every stage, written as `RUN --mount=`
    /// takes it (e.g. `type=secret,id=netrc,target=/root/.netrc`), repeatable. Never in a layer.
    #[arg(long = "run-mount", visible_alias = "mount")]
    pub run_mounts: Vec<String>,
    /// `KEY=VALUE` options for exporters (`sif.compression=zstd` goes only to sif:).
    #[arg(long = "export-opt")]
    pub export_opts: Vec<String>,
    /// Isolation (accepted for buildah compatibility; kiln always uses its own namespaces).
    #[arg(long)]
    pub isolation: Option<String>,
}

fn kv(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => bail!("{what} {s:?} is not KEY=VALUE"),
    }
}

fn parse_secret(s: &str) -> Result<(String, SecretSource)> {
    let mut id = None;
    let mut src = None;
    for part in s.split(',') {
        let (k, v) = part.split_once('=').with_context(|| format!("--secret {s:?}: {part:?} is not key=value"))?;
        match k {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(SecretSource::File(PathBuf::from(v))),
            "env" => src = Some(SecretSource::Env(v.to_string())),
            "type" => {}
            other => bail!("--secret {s:?}: unknown key {other:?}"),
        }
    }
    let id = id.with_context(|| format!("--secret {s:?} needs id="))?;
    let src = src.unwrap_or_else(|| SecretSource::Env(id.clone()));
    if let SecretSource::File(p) = &src {
        if !p.is_file() {
            bail!("--secret {s:?}: {} is not a readable file", p.display());
        }
    }
    Ok((id, src))
}

fn parse_ssh(s: &str) -> Result<(String, Vec<PathBuf>)> {
    let (id, paths) = match s.split_once('=') {
        Some((id, p)) => (id, p.split(',').filter(|p| !p.is_empty()).map(PathBuf::from).collect()),
        None => (s, Vec::new()),
    };
    if id.is_empty() {
        bail!("--ssh {s:?}: needs an id (e.g. default)");
    }
    Ok((id.to_string(), paths))
}

/// Run `kiln build`.
pub fn run(a: BuildArgs, g: &Global) -> Result<()> {
    if let Some(f) = &a.logfile {
        log_to(f)?;
    }
    let store = open_store(g)?;
    let (host, catalog) = crate::cmd::plugin::open(g)?;
    let context = a.context.clone();
    if !context.is_dir() {
        bail!("build context {} is not a directory", context.display());
    }
    let (source_name, source) = match a.file.as_deref() {
        Some("-") => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b)?;
            ("Dockerfile".to_string(), b)
        }
        Some(f) => {
            let p = PathBuf::from(f);
            let p = if p.exists() || p.is_absolute() { p } else { context.join(f) };
            (f.to_string(), std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => {
            let found = ["Containerfile", "Dockerfile"].iter().map(|n| context.join(n)).find(|p| p.is_file());
            let p = found.with_context(|| format!("no Containerfile or Dockerfile in {}", context.display()))?;
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&p)?)
        }
    };
    let mut build_args = Vec::new();
    for f in &a.build_arg_files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            build_args.push(kv(line, "--build-arg-file line")?);
        }
    }
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(b) {
                    build_args.push((b.clone(), v));
                }
            }
        }
    }
    let progress: ProgressMode = a.progress.parse().map_err(anyhow::Error::msg)?;
    let json = progress == ProgressMode::Json;
    let pull = match a.pull.as_str() {
        "always" | "true" => PullPolicy::Always,
        "missing" | "false" | "ifmissing" => PullPolicy::Missing,
        "never" => PullPolicy::Never,
        other => bail!("--pull={other}: use always, missing or never"),
    };
    let format = match a.format.as_str() {
        "oci" => Format::Oci,
        "docker" => Format::Docker,
        other => bail!("--format={other}: use oci or docker"),
    };
    let mut volumes = Vec::new();
    for v in &a.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [s, d] => (s, d, false),
            [s, d, o] => (s, d, o.split(',').any(|x| x == "ro")),
            _ => bail!("--volume {v:?} is not SRC:DST[:ro]"),
        };
        volumes.push((PathBuf::from(src), dst.to_string(), ro));
    }
    let mut injectors = Vec::new();
    let mut names = a.inject.clone();
    names.extend(crate::cmd::config_injectors());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    for name in names {
        let mut cfg = InjectorConfig { name: name.clone(), options: vec![], files: vec![] };
        if name == "proxy-ca" {
            let ca = a.ca_cert.clone().or_else(|| std::env::var_os("SSL_CERT_FILE").map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
            let bytes = std::fs::read(&ca).with_context(|| format!("reading CA bundle {}", ca.display()))?;
            cfg.files.push(("ca-cert".into(), bytes));
            cfg.options.extend(crate::cmd::host_proxy_env());
        }
        cfg.options.extend(injector_options(&a.inject_opts, &name)?);
        injectors.push(cfg);
    }
    for opt in &a.inject_opts {
        let target = opt.split_once('.').map(|(n, _)| n).unwrap_or_default();
        if !injectors.iter().any(|c| c.name == target) {
            bail!("--inject-opt {opt:?} names no injector of this build (use --inject NAME)");
        }
    }
    // Split -t values into store names and other destinations.
    let mut store_names = Vec::new();
    let mut outputs = Vec::new();
    for t in &a.tags {
        match parse_destination(t, &host, &catalog)? {
            Transport::Store(n) => store_names.push(n),
            other => outputs.push(other),
        }
    }
    // `--platform a,b`: one build per platform, collected in the `--manifest` list.
    let platforms: Vec<Option<String>> = match a.platform.as_slice() {
        [_, _, ..] => {
            let list = a.platform.join(",");
            if a.os.is_some() || a.arch.is_some() || a.variant.is_some() {
                bail!("--os, --arch and --variant cannot be combined with several --platform values");
            }
            if a.manifest.is_none() || !outputs.is_empty() || !store_names.is_empty() || a.iidfile.is_some() {
                bail!("building for several platforms ({list}) gives one image each: collect them with --manifest LIST (and push it with kiln manifest push)");
            }
            a.platform.iter().map(|p| Some(p.trim().to_string())).collect()
        }
        first => {
            let first = first.first().map(String::as_str);
            if a.os.is_some() || a.arch.is_some() || a.variant.is_some() {
                vec![Some(crate::cmd::registry::compose_platform(first, a.os.as_deref(), a.arch.as_deref(), a.variant.as_deref())?.to_string())]
            } else {
                vec![first.map(str::to_string)]
            }
        }
    };
    let cache_ttl = a.cache_ttl.as_deref().map(parse_duration).transpose()?;
    let mut opts = BuildOptions {
        context: context.clone(),
        source_name,
        source,
        frontend: None,
        build_args,
        host_proxy_env: if a.http_proxy { crate::cmd::host_proxy_env() } else { Vec::new() },
        target: a.target.clone(),
        no_cache: a.no_cache || cache_ttl.is_some_and(|d| d.is_zero()),
        layers: a.layers,
        pull,
        platform: platforms[0].clone(),
        format,
        squash: a.squash,
        omit_history: a.omit_history,
        env: a
            .env
            .iter()
            .filter_map(|e| match e.split_once('=') {
                Some((k, v)) => Some((k.to_string(), v.to_string())),
                None => std::env::var(e).ok().map(|v| (e.clone(), v)),
            })
            .collect(),
        unset_env: a.unsetenv.clone(),
        no_hosts: a.no_hosts,
        stdin: a.stdin,
        process: a.process.options()?,
        cache_from: a.cache_from.iter().map(|r| cache_repository(r, "--cache-from")).collect::<Result<_>>()?,
        cache_to: a.cache_to.iter().map(|r| cache_repository(r, "--cache-to")).collect::<Result<_>>()?,
        cache_ttl,
        dns: kiln_build::DnsSettings {
            servers: a.dns.clone(),
            search: a.dns_search.clone(),
            options: a.dns_option.clone(),
        },
        add_hosts: a
            .add_host
            .iter()
            .map(|h| match h.split_once(':') {
                Some((host, ip)) if !host.is_empty() && !ip.is_empty() => Ok((host.to_string(), ip.to_string())),
                _ => bail!("--add-host {h:?} is not HOST:IP"),
            })
            .collect::<Result<_>>()?,
        // `--label KEY` alone sets an empty value, as with buildah.
        labels: a.label.iter().map(|l| l.split_once('=').map_or((l.clone(), String::new()), |(k, v)| (k.to_string(), v.to_string()))).collect(),
        annotations: a.annotation.iter().map(|l| kv(l, "--annotation")).collect::<Result<_>>()?,
        secrets: a.secret.iter().map(|s| parse_secret(s)).collect::<Result<_>>()?,
        network: a.network.clone(),
        timestamp: a.timestamp,
        tags: store_names,
        quiet: a.quiet,
        ignore_file: a.ignorefile.clone(),
        injectors,
        run_binds: volumes,
        run_mounts: a.run_mounts.iter().map(|m| kiln_build::parse_run_mount(m)).collect::<Result<_, _>>()?,
        jobs: a.jobs.unwrap_or(0),
        progress,
        ssh: a.ssh.iter().map(|s| parse_ssh(s)).collect::<Result<_>>()?,
        storage_driver: g.requested_storage_driver()?,
    };
    a.registry_flags.check()?;
    let mut registry = a.registry_flags.options(a.quiet);
    registry.credentials = a.creds.as_deref().map(crate::cmd::registry::parse_creds).transpose()?;
    if let Some(n) = a.retry {
        registry.retries = n;
    }
    let builder = Builder { store: &store, host: &host, catalog: &catalog, registry };
    let mut built = None;
    for platform in &platforms {
        opts.platform = platform.clone();
        let outcome = match builder.build(&opts) {
            Ok(o) => o,
            Err(kiln_build::BuildError::RunFailed { location, status, command, tail }) => {
                eprintln!("Error: {location}: RUN failed with exit status {status}: {command}{tail}");
                return Err(anyhow::Error::new(ExitStatusError(status)).context("build failed"));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(list) = &a.manifest {
            crate::cmd::manifest::add_built_image(&store, list, &outcome.image)?;
        }
        built = Some(outcome.image);
    }
    let image = built.expect("at least one platform is built");
    // Outputs name the image only as this build does (-t NAME), not by names an earlier build
    // gave the image it reused from the cache.
    let own_names: Vec<String> = opts
        .tags
        .iter()
        .filter_map(|n| kiln_core::ImageReference::parse_local(n).ok().map(|r| r.to_string()))
        .collect();
    let exported = kiln_store::ImageRecord { names: image.names.iter().filter(|n| own_names.contains(n)).cloned().collect(), ..image.clone() };
    let export_opts: Vec<(String, String)> = a.export_opts.iter().map(|o| kv(o, "--export-opt")).collect::<Result<_>>()?;
    for out in &outputs {
        match out {
            Transport::Docker(r) => {
                crate::cmd::push_to_registry(&store, &image, &r.to_string(), &a.registry_flags, Some(format), a.quiet || json)?;
            }
            t => {
                export::export(&store, &host, &catalog, &exported, t, &export_opts, a.timestamp, a.quiet || json, None)?;
            }
        }
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, image.id.to_string()).with_context(|| format!("writing {}", f.display()))?;
    }
    if json {
        // The summary event already named the image; stdout stays one JSON object per line.
        return Ok(());
    }
    if !a.quiet {
        for n in &image.names {
            println!("COMMIT {n}");
        }
    }
    // As buildah: the ID goes to stdout only when no --iidfile takes it.
    if a.iidfile.is_none() {
        println!("{}", image.id.hex());
    }
    Ok(())
}

/// `--logfile`: standard output and standard error go to `path` (appended to) from here on.
fn log_to(path: &std::path::Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening --logfile {}", path.display()))?;
    for fd in [1, 2] {
        // SAFETY: dup2 onto the process's own standard descriptors; `f` stays open until then.
        if unsafe { libc::dup2(f.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("redirecting output to {}", path.display()));
        }
    }
    Ok(())
}

/// The `KEY=VALUE` pairs of the `--inject-opt NAME.KEY=VALUE` flags meant for injector `name`.
fn injector_options(flags: &[String], name: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for flag in flags {
        let Some((scoped, value)) = flag.split_once('=') else {
            bail!("--inject-opt {flag:?} is not NAME.KEY=VALUE");
        };
        let Some((plugin, key)) = scoped.split_once('.') else {
            bail!("--inject-opt {flag:?} is not NAME.KEY=VALUE");
        };
        if plugin == name {
            out.push((key.to_string(), value.to_string()));
        }
    }
    Ok(out)
}

/// A `--cache-from`/`--cache-to` repository: `[docker://]host/path`, without tag or digest.
fn cache_repository(value: &str, flag: &str) -> Result<String> {
    let bare = value.strip_prefix("docker://").unwrap_or(value);
    let r = kiln_core::ImageReference::parse(bare).with_context(|| format!("{flag} {value}"))?;
    if bare.contains('@') || bare.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        bail!("{flag} {value}: give a repository without a tag or digest (kiln tags cache images with their cache keys)");
    }
    Ok(format!("{}/{}", r.registry(), r.repository()))
}

/// A duration as Go writes it (`1h30m`, `90s`, `250ms`; also `d` for days); a bare `0` is zero.
fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let bad = || anyhow::anyhow!("--cache-ttl {s:?}: expected a duration such as 90m, 1h30m or 2d");
    let t = s.trim();
    if t == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        let unit_len = rest[n..].find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len() - n);
        let seconds = match &rest[n..n + unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[n + unit_len..];
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_as_go_writes_them() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "h", "5", "5x", "1h5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
