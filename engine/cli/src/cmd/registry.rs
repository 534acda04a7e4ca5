//! `kiln pull`, `kiln login`, `kiln logout`: images from registries (and `oci:`, `oci-archive:`,
//! `docker-archive:` files) into the store, and registry credentials, with buildah's flags.

use crate::cmd::export::open_store;
use crate::global::Global;
use anyhow::{Context, Result, bail};
use kiln_registry::{ClientOptions, Credentials, Platform, Progress, RegistryClient};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

/// `kiln pull` flags.
#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Image to pull: `REF` (short names resolve through registries.conf), `docker://REF`,
    /// `oci:DIR[:REF]`, `oci-archive:FILE[:REF]` or `docker-archive:FILE[:REF]`.
    pub source: String,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Platform to pick from a multi-platform image (`os/arch[/variant]`; default: this host).
    #[arg(long)]
    pub platform: Option<String>,
    /// Architecture to pick (overrides the one of --platform).
    #[arg(long)]
    pub arch: Option<String>,
    /// Operating system to pick (overrides the one of --platform).
    #[arg(long)]
    pub os: Option<String>,
    /// Architecture variant to pick (overrides the one of --platform).
    #[arg(long)]
    pub variant: Option<String>,
    /// How to reach registries.
    #[command(flatten)]
    pub registry_flags: crate::cmd::RegistryFlags,
    /// `USER[:PASSWORD]` to use instead of the credentials file.
    #[arg(long)]
    pub creds: Option<String>,
    /// Retries after network errors.
    #[arg(long, default_value_t = 4)]
    pub retry: u32,
}

/// `kiln login` flags.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// Registry (`HOST[:PORT]`, or `HOST/NAMESPACE` for credentials limited to a namespace).
    pub registry: String,
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Print the user name saved for the registry and exit.
    #[arg(long)]
    pub get_login: bool,
    /// How to reach registries.
    #[command(flatten)]
    pub registry_flags: crate::cmd::RegistryFlags,
}

/// `kiln logout` flags.
#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// Registry to forget.
    #[arg(required_unless_present = "all")]
    pub registry: Option<String>,
    /// Forget every registry.
    #[arg(short, long)]
    pub all: bool,
    /// Credentials file to edit.
    #[arg(long)]
    pub authfile: Option<PathBuf>,
}

/// The platform asked for by `--platform`, `--os`, `--arch`, `--variant`.
fn platform(a: &PullArgs) -> Result<Platform> {
    compose_platform(
        a.platform.as_deref(),
        a.os.as_deref(),
        a.arch.as_deref(),
        a.variant.as_deref(),
    )
}

/// `--platform` (default: this host's) with `--os`, `--arch` and `--variant` applied over it.
pub(crate) fn compose_platform(
    platform: Option<&str>,
    os: Option<&str>,
    arch: Option<&str>,
    variant: Option<&str>,
) -> Result<Platform> {
    let mut p = match platform {
        Some(s) => Platform::parse(s).with_context(|| format!("--platform {s}"))?,
        None => Platform::host(),
    };
    if let Some(os) = os {
        p.os = os.to_string();
    }
    if let Some(arch) = arch {
        let parsed = Platform::parse(&format!("{}/{arch}", p.os))
            .with_context(|| format!("--arch {arch}"))?;
        p.architecture = parsed.architecture;
        p.variant = parsed.variant;
    }
    if let Some(v) = variant {
        p.variant = Some(v.to_string());
    }
    Ok(p)
}

/// `--creds USER[:PASSWORD]` (the password is asked for when missing).
pub(crate) fn parse_creds(s: &str) -> Result<Credentials> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok(Credentials::new(u, p)),
        None if !s.is_empty() => Ok(Credentials::new(s, &prompt_password()?)),
        _ => bail!("--creds: expected USER[:PASSWORD]"),
    }
}

/// Run `kiln pull`: prints the image ID on stdout.
pub fn pull(a: PullArgs, g: &Global) -> Result<()> {
    a.registry_flags.check()?;
    let store = open_store(g)?;
    // containers-storage:NAME is kiln's own store: nothing to fetch.
    if let Some(name) = a.source.strip_prefix("containers-storage:") {
        let img = store.resolve_image(name.rsplit(']').next().unwrap_or(name))?;
        println!("{}", img.id.hex());
        return Ok(());
    }
    let opts = ClientOptions {
        platform: platform(&a)?,
        credentials: a.creds.as_deref().map(parse_creds).transpose()?,
        retries: a.retry,
        ..a.registry_flags.options(a.quiet)
    };
    let client = RegistryClient::new(opts)?;
    let img = client
        .pull(&store, &a.source)
        .with_context(|| format!("pulling {}", a.source))?;
    println!("{}", img.id.hex());
    Ok(())
}

fn prompt_password() -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no password given: use --password or --password-stdin");
    }
    eprint!("Password: ");
    std::io::stderr().flush()?;
    // Hide the typed password, as buildah does.
    let _ = std::process::Command::new("stty")
        .arg("-echo")
        .stdin(std::process::Stdio::inherit())
        .status();
    let mut line = String::new();
    let r = std::io::stdin().lock().read_line(&mut line);
    let _ = std::process::Command::new("stty")
        .arg("echo")
        .stdin(std::process::Stdio::inherit())
        .status();
    eprintln!();
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Run `kiln login`.
pub fn login(a: LoginArgs, _g: &Global) -> Result<()> {
    let opts = a.registry_flags.options(true);
    let client = RegistryClient::new(opts)?;
    let host = a
        .registry
        .trim_start_matches("docker://")
        .trim_end_matches('/')
        .to_string();
    if a.get_login {
        let (reg, repo) = match host.split_once('/') {
            Some((h, r)) => (h.to_string(), Some(r.to_string())),
            None => (host.clone(), None),
        };
        match client.auth_files().lookup(&reg, repo.as_deref())? {
            Some(c) if !c.username.is_empty() => {
                println!("{}", c.username);
                return Ok(());
            }
            _ => bail!("not logged into {host}"),
        }
    }
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let username = match a.username {
        Some(u) => u,
        None if std::io::stdin().is_terminal() && !a.password_stdin => {
            eprint!("Username: ");
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
        None => bail!("no user name given: use --username"),
    };
    if username.is_empty() {
        bail!("the user name is empty");
    }
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        match a.password {
            Some(p) => p,
            None => prompt_password()?,
        }
    };
    client
        .login(&host, &username, &password)
        .with_context(|| format!("logging in to {host}"))?;
    println!("Login Succeeded!");
    Ok(())
}

/// Run `kiln logout`.
pub fn logout(a: LogoutArgs, _g: &Global) -> Result<()> {
    let opts = ClientOptions {
        auth_file: a.authfile.clone(),
        progress: Progress::Quiet,
        ..ClientOptions::default()
    };
    let client = RegistryClient::new(opts)?;
    if a.all {
        client.logout_all()?;
        println!("Removed login credentials for all registries");
        return Ok(());
    }
    let reg = a.registry.expect("clap requires a registry without --all");
    client.logout(&reg)?;
    println!(
        "Removed login credentials for {}",
        reg.trim_start_matches("docker://").trim_end_matches('/')
    );
    Ok(())
}
