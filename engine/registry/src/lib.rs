//! Registry I/O for kiln: pull, push, login, token auth, TLS and proxies.
//!
//! [`RegistryClient`] is the entry point. Its API is synchronous; transfers stream (a layer is
//! never held in memory) and every blob is digest-verified on its way into the store.
//!
//! - Configuration follows containers tools: `registries.conf` ([`RegistriesConf`]), the auth
//!   files ([`AuthFiles`]), per-registry certificate directories, `HTTPS_PROXY`/`NO_PROXY`.
//! - Images move between registries and the store with [`RegistryClient::pull`] and
//!   [`RegistryClient::push`]; `oci:`, `oci-archive:` and `docker-archive:` sources are imported
//!   with [`RegistryClient::import`].
//! - A build cache in a repository (`--cache-to`/`--cache-from`) goes through
//!   [`RegistryClient::push_cache_image`] and [`RegistryClient::find_cache_image`].
//! - Plugin artifacts (the CNCF Wasm OCI layout) go through [`RegistryClient::pull_artifact`] and
//!   [`RegistryClient::push_artifact`].

mod artifact;
pub mod auth;
mod build_cache;
pub mod challenge;
pub mod conf;
pub mod error;
mod http;
mod import;
mod locations;
pub mod netproxy;
mod progress;
mod pull;
mod push;
mod push_list;
pub mod reference;
mod remote;
pub mod tls;

pub use artifact::MAX_ARTIFACT;
pub use auth::{AuthFiles, Credentials};
pub use build_cache::CacheImage;
pub use conf::RegistriesConf;
pub use error::{Error, Result};
pub use import::REF_NAME;
pub use kiln_core::{Digest, ImageReference, Platform};
pub use pull::{LayerTee, LayerToPull, PulledImage};
pub use push_list::RecordedImage;
pub use push::{DOCKER_LAYER_TAR, PushFormat, PushedImage, convert_manifest};
pub use remote::BlobTee;

use http::{Session, Settings};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How transfers report progress (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Bars on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines (`Copying blob sha256:… done`) even on a terminal.
    Lines,
    /// Nothing.
    Quiet,
}

/// Options for a [`RegistryClient`], mirroring buildah's flags.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `--tls-verify`: `Some(false)` allows plain HTTP and skips certificate checks; `None` asks
    /// `registries.conf` (`insecure = true`).
    pub tls_verify: Option<bool>,
    /// `--authfile`: the credentials file to read first and to write on login.
    pub auth_file: Option<PathBuf>,
    /// `--cert-dir`: a directory of `*.crt` CAs and `*.cert`/`*.key` client pairs used instead of
    /// the per-registry `certs.d` directories.
    pub cert_dir: Option<PathBuf>,
    /// The platform picked from indexes (`--platform`); the host's by default.
    pub platform: Platform,
    /// Progress output.
    pub progress: Progress,
    /// A `registries.conf` to read instead of the default files.
    pub registries_conf: Option<PathBuf>,
    /// `--creds`: credentials to use instead of the auth files.
    pub credentials: Option<Credentials>,
    /// Retries after a connection error, 5xx or 429 (with exponential backoff).
    pub retries: u32,
    /// First retry delay (doubled per retry).
    pub retry_delay: Duration,
    /// Blobs transferred at once.
    pub jobs: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls_verify: None,
            auth_file: None,
            cert_dir: None,
            platform: Platform::host(),
            progress: Progress::Auto,
            registries_conf: None,
            credentials: None,
            retries: 4,
            retry_delay: Duration::from_millis(250),
            jobs: 4,
        }
    }
}

/// A client for registries and image transports, bound to the options it was made with.
pub struct RegistryClient {
    opts: ClientOptions,
    settings: Settings,
    sessions: Mutex<HashMap<(String, String), Arc<Session>>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("opts", &self.opts)
            .finish()
    }
}

impl RegistryClient {
    /// A client with `opts`; reads `registries.conf` now (errors name the bad file).
    pub fn new(opts: ClientOptions) -> Result<RegistryClient> {
        let conf = match &opts.registries_conf {
            Some(p) => RegistriesConf::load_files(std::slice::from_ref(p))?,
            None => RegistriesConf::load_default()?,
        };
        let settings = Settings {
            tls_verify: opts.tls_verify,
            cert_dir: opts.cert_dir.clone(),
            conf,
            auth: AuthFiles::new(opts.auth_file.as_deref()),
            credentials: opts.credentials.clone(),
            retries: opts.retries,
            backoff: opts.retry_delay,
        };
        Ok(RegistryClient {
            opts,
            settings,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The registries configuration in effect.
    pub fn registries_conf(&self) -> &RegistriesConf {
        &self.settings.conf
    }

    /// The credential files in effect.
    pub fn auth_files(&self) -> &AuthFiles {
        &self.settings.auth
    }

    /// A session for `registry` (credentials for `repository`), made once and reused.
    fn session(&self, registry: &str, repository: &str) -> Result<Arc<Session>> {
        let key = (registry.to_string(), repository.to_string());
        if let Some(s) = self.sessions.lock().expect("sessions").get(&key) {
            return Ok(s.clone());
        }
        let s = Arc::new(Session::connect(
            &self.settings,
            registry,
            Some(repository),
        )?);
        self.sessions
            .lock()
            .expect("sessions")
            .insert(key, s.clone());
        Ok(s)
    }

    /// Check `user`/`password` against `registry` (`HOST[:PORT]`, or `HOST/ns[/repo]` for
    /// credentials limited to a namespace) and save them in the auth file.
    pub fn login(&self, registry: &str, user: &str, password: &str) -> Result<()> {
        let key = normalize_login_key(registry)?;
        let host = key.split('/').next().unwrap_or(&key).to_string();
        let creds = Credentials::new(user, password);
        let mut settings = self.settings.clone();
        settings.credentials = Some(creds.clone());
        let session = Session::connect(&settings, &host, None)?;
        session.verify_login()?;
        self.settings.auth.store(&key, &creds)
    }

    /// Remove the saved credentials for `registry`; an error when there were none in the auth file.
    pub fn logout(&self, registry: &str) -> Result<()> {
        let key = normalize_login_key(registry)?;
        if self.settings.auth.remove(&key)? {
            return Ok(());
        }
        Err(Error::Unauthorized {
            registry: key.clone(),
            message: format!(
                "not logged into {key} (no entry in {})",
                self.settings.auth.primary.display()
            ),
        })
    }

    /// Remove every saved credential from the auth file (`logout --all`).
    pub fn logout_all(&self) -> Result<()> {
        self.settings.auth.remove_all()
    }
}

/// `docker://HOST/…`, `https://HOST/` and `HOST/` all mean `HOST`; Docker Hub's names mean `docker.io`.
fn normalize_login_key(registry: &str) -> Result<String> {
    let r = registry
        .strip_prefix("docker://")
        .or_else(|| registry.strip_prefix("https://"))
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry)
        .trim_end_matches('/');
    if r.is_empty() || r.contains(char::is_whitespace) {
        return Err(Error::InvalidReference {
            reference: registry.into(),
            reason: "not a registry name".into(),
        });
    }
    if r.contains('@') {
        return Err(Error::InvalidReference {
            reference: registry.into(),
            reason: "login takes a registry, not an image".into(),
        });
    }
    let (host, rest) = r
        .split_once('/')
        .map(|(h, p)| (h, Some(p)))
        .unwrap_or((r, None));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => reference::DOCKER_HUB,
        h => h,
    };
    Ok(match rest {
        Some(p) => format!("{host}/{p}"),
        None => host.to_string(),
    })
}
