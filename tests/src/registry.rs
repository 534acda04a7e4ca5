//! A private `docker-registry` (CNCF distribution 2.8, Debian's package) on 127.0.0.1 at a free
//! port, with configuration, storage, certificates and credentials in a temporary directory.
//! Started with [`Registry::start`], stopped (only the process it started) when dropped.

use crate::pki::{Pki, SigningKey};
use crate::token::{self, TokenServer};
use crate::util::{free_port, run_ok, wait_for_port};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How a test registry is reached and protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Plain HTTP, no authentication (clients need `--tls-verify=false` or an insecure entry).
    Plain,
    /// HTTPS with a server certificate from a CA made at test time ([`Registry::ca_cert`]).
    Tls,
    /// Plain HTTP with htpasswd (bcrypt) basic authentication ([`Registry::credentials`]).
    Htpasswd,
    /// HTTPS and htpasswd together.
    TlsHtpasswd,
    /// Plain HTTP with bearer tokens from a loopback token server ([`Registry::token_server`]):
    /// anonymous clients may pull, [`Registry::credentials`] may push.
    Token,
}

impl Variant {
    /// Whether the registry speaks HTTPS.
    pub fn is_tls(self) -> bool {
        matches!(self, Variant::Tls | Variant::TlsHtpasswd)
    }

    /// Whether clients need credentials (to push, for `Token`; for anything, with htpasswd).
    pub fn has_auth(self) -> bool {
        matches!(
            self,
            Variant::Htpasswd | Variant::TlsHtpasswd | Variant::Token
        )
    }
}

/// The user name test registries with authentication accept.
pub const USER: &str = "kiln";
/// The password test registries with authentication accept.
pub const PASSWORD: &str = "s3cret-pa55";

/// A running test registry. Dropping it stops the process and deletes its storage.
#[derive(Debug)]
pub struct Registry {
    variant: Variant,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
    pki: Option<Pki>,
    token: Option<TokenServer>,
}

impl Registry {
    /// Start a registry of `variant`; panics (with the registry's log) if it does not come up.
    pub fn start(variant: Variant) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("kiln-test-registry.")
            .tempdir()
            .expect("creating the registry dir");
        let pki = variant
            .is_tls()
            .then(|| Pki::generate(&dir.path().join("pki")));
        if matches!(variant, Variant::Htpasswd | Variant::TlsHtpasswd) {
            let out = run_ok(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("writing htpasswd");
        }
        let token = (variant == Variant::Token).then(|| {
            TokenServer::start(
                SigningKey::generate(&dir.path().join("token")),
                USER,
                PASSWORD,
            )
        });
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}")
                .parse()
                .expect("loopback address");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                config_yaml(variant, addr, dir.path(), pki.as_ref(), token.as_ref()),
            )
            .expect("writing the registry config");
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).expect("creating the registry log");
            let mut cmd = Command::new("docker-registry");
            // distribution reads REGISTRY_* variables as configuration overrides
            // (REGISTRY_AUTH_FILE would become `auth.file`): keep them away from it.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(&k);
                }
            }
            let mut child = cmd
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cloning the log handle"))
                .stderr(log)
                .spawn()
                .expect("spawning docker-registry (is the docker-registry package installed?)");
            if wait_for_port(addr, Duration::from_secs(15))
                && child.try_wait().ok().flatten().is_none()
            {
                return Registry {
                    variant,
                    addr,
                    dir,
                    child: Some(child),
                    pki,
                    token,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if !last_log.contains("address already in use") {
                break;
            }
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// The variant this registry was started with.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// `127.0.0.1:PORT`: the registry host as image references spell it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.variant.is_tls() {
                "https"
            } else {
                "http"
            },
            self.addr
        )
    }

    /// A full reference in this registry: `reference("busybox:latest")` → `127.0.0.1:PORT/busybox:latest`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("{}/{}", self.addr, repo_and_tag)
    }

    /// The same as a containers transport reference: `docker://127.0.0.1:PORT/…`.
    pub fn docker(&self, repo_and_tag: &str) -> String {
        format!("docker://{}", self.reference(repo_and_tag))
    }

    /// The CA certificate that signed the server certificate (TLS variants).
    pub fn ca_cert(&self) -> Option<&Path> {
        self.pki.as_ref().map(|p| p.ca_cert.as_path())
    }

    /// A `--cert-dir`-style directory (holding `ca.crt`) for this registry (TLS variants).
    pub fn cert_dir(&self) -> Option<PathBuf> {
        let ca = self.ca_cert()?;
        let d = self.dir.path().join("cert-dir");
        if !d.join("ca.crt").exists() {
            std::fs::create_dir_all(&d).expect("creating cert-dir");
            std::fs::copy(ca, d.join("ca.crt")).expect("copying ca.crt");
        }
        Some(d)
    }

    /// A `certs.d`-style directory (holding `127.0.0.1:PORT/ca.crt`) for this registry (TLS variants).
    pub fn certs_d(&self) -> Option<PathBuf> {
        let ca = self.ca_cert()?;
        let d = self.dir.path().join("certs.d");
        let host_dir = d.join(self.host());
        if !host_dir.join("ca.crt").exists() {
            std::fs::create_dir_all(&host_dir).expect("creating certs.d/HOST");
            std::fs::copy(ca, host_dir.join("ca.crt")).expect("copying ca.crt");
        }
        Some(d)
    }

    /// The user and password this registry accepts, for variants with authentication.
    pub fn credentials(&self) -> Option<(&'static str, &'static str)> {
        self.variant.has_auth().then_some((USER, PASSWORD))
    }

    /// The token server of a [`Variant::Token`] registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// The registry's storage root (distribution's filesystem driver layout under `docker/registry/v2`).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps the bytes of blob `digest` (`sha256:…`), for tests that corrupt it.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let (alg, hex) = digest.split_once(':').expect("digest is ALG:HEX");
        self.storage()
            .join("docker/registry/v2/blobs")
            .join(alg)
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Stop the registry now (idempotent); its storage stays until drop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_yaml(
    variant: Variant,
    addr: SocketAddr,
    dir: &Path,
    pki: Option<&Pki>,
    token: Option<&TokenServer>,
) -> String {
    let mut y = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: kiln-test-upload-secret\n",
        dir.join("storage").display()
    );
    if let Some(p) = pki {
        y += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            p.server_cert.display(),
            p.server_key.display()
        );
    }
    match variant {
        Variant::Htpasswd | Variant::TlsHtpasswd => {
            y += &format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        Variant::Token => {
            let t = token.expect("token server for the Token variant");
            y += &format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm(),
                token::SERVICE,
                token::ISSUER,
                t.cert().display()
            );
        }
        Variant::Plain | Variant::Tls => {}
    }
    y += "health:\n  storagedriver:\n    enabled: false\n";
    y
}
