//! TLS trust per registry as containers does it: the system roots (plus `$SSL_CERT_FILE`), and a
//! per-registry directory — `--cert-dir` when given, else the first existing of
//! `~/.config/containers/certs.d/HOST:PORT`, `/etc/containers/certs.d/HOST:PORT`,
//! `/etc/docker/certs.d/HOST:PORT` — whose `*.crt` files are extra CAs and `*.cert`/`*.key` pairs
//! client certificates.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// System CA bundles, the first that exists is used.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system roots: the first system bundle, plus `$SSL_CERT_FILE` when it names another file.
/// Loaded once per process.
pub fn system_roots() -> &'static [Certificate<'static>] {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut files: Vec<PathBuf> = Vec::new();
        if let Some(b) = SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        {
            files.push(b);
        }
        if let Some(f) = std::env::var_os("SSL_CERT_FILE")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
            && !files.contains(&f)
        {
            files.push(f);
        }
        let mut out = Vec::new();
        for f in files {
            match load_certs(&f) {
                Ok(c) => out.extend(c),
                Err(e) => tracing::warn!("ignoring CA bundle: {e}"),
            }
        }
        out
    })
}

/// Parse every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for item in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = item.map_err(|e| Error::Config {
            path: path.into(),
            message: format!("bad PEM certificate: {e}"),
        })?;
        out.push(Certificate::from_der(der.as_ref()).to_owned());
    }
    if out.is_empty() {
        return Err(Error::Config {
            path: path.into(),
            message: "no certificate in file".into(),
        });
    }
    Ok(out)
}

fn load_key(path: &Path) -> Result<PrivateKey<'static>> {
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    PrivateKey::from_pem(&pem).map_err(|e| Error::Config {
        path: path.into(),
        message: format!("bad private key: {e}"),
    })
}

/// The certificates directory that applies to `host` (`HOST[:PORT]`): `cert_dir` if given, else
/// the first existing per-host directory.
pub fn cert_dir_for(host: &str, cert_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = cert_dir {
        return Some(d.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Some(c) = crate::auth::config_home() {
        candidates.push(c.join("containers/certs.d").join(host));
    }
    candidates.push(Path::new("/etc/containers/certs.d").join(host));
    candidates.push(Path::new("/etc/docker/certs.d").join(host));
    candidates.into_iter().find(|d| d.is_dir())
}

/// TLS settings for one registry.
#[derive(Debug, Clone)]
pub struct RegistryTls {
    /// Roots: system plus the directory's CAs.
    pub roots: Vec<Certificate<'static>>,
    /// A client certificate from the directory, if any.
    pub client: Option<ClientCert>,
    /// The directory used, if any.
    pub dir: Option<PathBuf>,
}

impl RegistryTls {
    /// Trust for `host`, reading its certificates directory.
    pub fn for_host(host: &str, cert_dir: Option<&Path>) -> Result<RegistryTls> {
        let mut roots = system_roots().to_vec();
        let mut client = None;
        let dir = cert_dir_for(host, cert_dir);
        if let Some(d) = &dir {
            let rd = match std::fs::read_dir(d) {
                Ok(rd) => Some(rd),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && cert_dir.is_some() => {
                    return Err(Error::io(d, e));
                }
                Err(_) => None,
            };
            let mut files: Vec<PathBuf> = rd
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            files.sort();
            for f in &files {
                match f.extension().and_then(|e| e.to_str()) {
                    Some("crt") => roots.extend(load_certs(f)?),
                    Some("cert") => {
                        let key = f.with_extension("key");
                        if !key.exists() {
                            return Err(Error::Config {
                                path: f.clone(),
                                message: format!(
                                    "client certificate without its key {}",
                                    key.display()
                                ),
                            });
                        }
                        client = Some(ClientCert::new_with_certs(&load_certs(f)?, load_key(&key)?));
                    }
                    Some("key") if !f.with_extension("cert").exists() => {
                        return Err(Error::Config {
                            path: f.clone(),
                            message: "client key without its certificate (.cert)".into(),
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(RegistryTls { roots, client, dir })
    }

    /// The ureq TLS configuration; `verify = false` disables certificate checks.
    pub fn config(&self, verify: bool) -> TlsConfig {
        TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&self.roots))
            .client_cert(self.client.clone())
            .disable_verification(!verify)
            .build()
    }
}
