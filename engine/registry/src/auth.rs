//! Registry credentials as containers tools keep them: the containers `auth.json`
//! (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`)
//! and Docker's `config.json`, with per-repository keys, credential helpers, and writing entries
//! for `login`/`logout`.

use crate::error::{Error, Result};
use crate::reference::DOCKER_HUB;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
    /// An OAuth2 refresh token (`identitytoken`), used instead of the password with token servers.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Username and password.
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            identity_token: None,
        }
    }

    /// `Basic …` header value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
pub fn config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))
}

/// The auth file `login` writes by default: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else `~/.config/containers/auth.json`.
pub fn default_auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(r) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(r).join("containers/auth.json");
    }
    config_home()
        .unwrap_or_else(|| PathBuf::from("/root/.config"))
        .join("containers/auth.json")
}

/// The credential files consulted, in order, and the one written.
#[derive(Debug, Clone)]
pub struct AuthFiles {
    /// Written by `login`/`logout`, read first.
    pub primary: PathBuf,
    /// Every file read, in order (the primary first; Docker's files last).
    pub read: Vec<PathBuf>,
}

impl AuthFiles {
    /// The files for an optional `--authfile`: it (or [`default_auth_file`]), then
    /// `~/.config/containers/auth.json` (unless a file was given explicitly), then
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, then `~/.dockercfg`.
    pub fn new(explicit: Option<&Path>) -> AuthFiles {
        let explicit = explicit.map(Path::to_path_buf).or_else(|| {
            std::env::var_os("REGISTRY_AUTH_FILE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
        let primary = explicit.clone().unwrap_or_else(default_auth_file);
        let mut read = vec![primary.clone()];
        if explicit.is_none()
            && let Some(c) = config_home()
        {
            let user = c.join("containers/auth.json");
            if user != primary {
                read.push(user);
            }
        }
        match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            Some(d) => read.push(PathBuf::from(d).join("config.json")),
            None => {
                if let Some(h) = home() {
                    read.push(h.join(".docker/config.json"));
                }
            }
        }
        if let Some(h) = home() {
            read.push(h.join(".dockercfg"));
        }
        AuthFiles { primary, read }
    }

    /// Credentials for `registry` (`HOST[:PORT]`) and optionally a repository in it: the first
    /// file with a matching key wins; within a file the most specific key (`host/ns/repo`, then
    /// `host/ns`, then `host`) wins; credential helpers named by the file are run when needed.
    pub fn lookup(&self, registry: &str, repository: Option<&str>) -> Result<Option<Credentials>> {
        for f in &self.read {
            let Some(doc) = read_json(f)? else { continue };
            let legacy = f.file_name().is_some_and(|n| n == ".dockercfg");
            let auths = if legacy {
                doc.as_object().cloned()
            } else {
                doc.get("auths").and_then(Value::as_object).cloned()
            };
            if let Some(auths) = auths {
                let mut keys: Vec<String> = Vec::new();
                if let Some(repo) = repository {
                    let parts: Vec<&str> = repo.split('/').collect();
                    for n in (1..=parts.len()).rev() {
                        keys.push(format!("{registry}/{}", parts[..n].join("/")));
                    }
                }
                keys.push(registry.to_string());
                for want in &keys {
                    for (k, v) in &auths {
                        if normalize_key(k) == *want
                            && let Some(c) = decode_entry(v, f)?
                        {
                            return Ok(Some(c));
                        }
                    }
                }
            }
            let helper = doc
                .get("credHelpers")
                .and_then(|h| h.get(registry))
                .and_then(Value::as_str)
                .or_else(|| doc.get("credsStore").and_then(Value::as_str));
            if let Some(h) = helper
                && let Some(c) = run_helper(h, registry)?
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Write `user`/`password` for `key` (`HOST[:PORT]` or `HOST/ns/repo`) into the primary file,
    /// keeping everything else in it; the file is created `0600`.
    pub fn store(&self, key: &str, creds: &Credentials) -> Result<()> {
        let mut doc = read_json(&self.primary)?.unwrap_or_else(|| Value::Object(Map::new()));
        let obj = doc.as_object_mut().ok_or_else(|| Error::Config {
            path: self.primary.clone(),
            message: "not a JSON object".into(),
        })?;
        let auths = obj
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        let auths = auths.as_object_mut().ok_or_else(|| Error::Config {
            path: self.primary.clone(),
            message: "\"auths\" is not an object".into(),
        })?;
        let raw = format!("{}:{}", creds.username, creds.password);
        auths.insert(
            key.to_string(),
            serde_json::json!({ "auth": base64::engine::general_purpose::STANDARD.encode(raw) }),
        );
        write_json(&self.primary, &doc)
    }

    /// Remove `key` from the primary file; false when it was not there.
    pub fn remove(&self, key: &str) -> Result<bool> {
        let Some(mut doc) = read_json(&self.primary)? else {
            return Ok(false);
        };
        let removed = doc
            .get_mut("auths")
            .and_then(Value::as_object_mut)
            .map(|a| {
                let before = a.len();
                a.retain(|k, _| normalize_key(k) != key);
                before != a.len()
            })
            .unwrap_or(false);
        if removed {
            write_json(&self.primary, &doc)?;
        }
        Ok(removed)
    }

    /// Remove every credential from the primary file (`logout --all`).
    pub fn remove_all(&self) -> Result<()> {
        let Some(mut doc) = read_json(&self.primary)? else {
            return Ok(());
        };
        if let Some(o) = doc.as_object_mut() {
            o.insert("auths".into(), Value::Object(Map::new()));
        }
        write_json(&self.primary, &doc)
    }
}

/// Keys written as URLs (`https://index.docker.io/v1/`) name only their host; Docker Hub's
/// legacy hosts mean `docker.io`.
fn normalize_key(k: &str) -> String {
    let (had_scheme, rest) = match k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
    {
        Some(r) => (true, r),
        None => (false, k),
    };
    let key = if had_scheme {
        rest.split('/').next().unwrap_or(rest)
    } else {
        rest.trim_end_matches('/')
    };
    match key {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

fn decode_entry(v: &Value, file: &Path) -> Result<Option<Credentials>> {
    let identity_token = v
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(a) = v
        .get("auth")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|e| Error::Config {
                path: file.to_path_buf(),
                message: format!("invalid base64 in an \"auth\" entry: {e}"),
            })?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (u, p) = raw.split_once(':').ok_or_else(|| Error::Config {
            path: file.to_path_buf(),
            message: "an \"auth\" entry is not user:password".into(),
        })?;
        return Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
            identity_token,
        }));
    }
    if let (Some(u), Some(p)) = (
        v.get("username").and_then(Value::as_str),
        v.get("password").and_then(Value::as_str),
    ) {
        return Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
            identity_token,
        }));
    }
    if let Some(t) = identity_token {
        return Ok(Some(Credentials {
            username: String::new(),
            password: String::new(),
            identity_token: Some(t),
        }));
    }
    Ok(None)
}

fn run_helper(helper: &str, registry: &str) -> Result<Option<Credentials>> {
    let server = if registry == DOCKER_HUB {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let prog = format!("docker-credential-{helper}");
    let child = std::process::Command::new(&prog)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!("credential helper {prog} not found; ignoring it");
            return Ok(None);
        }
        Err(e) => return Err(Error::io(PathBuf::from(&prog), e)),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(PathBuf::from(&prog), e))?;
    if !out.status.success() {
        // Helpers exit non-zero with "credentials not found" when they have nothing.
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| Error::Config {
        path: PathBuf::from(&prog),
        message: format!("helper output is not JSON: {e}"),
    })?;
    let user = v
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let secret = v
        .get("Secret")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if user == "<token>" {
        return Ok(Some(Credentials {
            username: String::new(),
            password: String::new(),
            identity_token: Some(secret),
        }));
    }
    Ok(Some(Credentials {
        username: user,
        password: secret,
        identity_token: None,
    }))
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(None),
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Config {
                path: path.to_path_buf(),
                message: format!("invalid JSON: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_json(path: &Path, doc: &Value) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("auth"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    let text = serde_json::to_vec_pretty(doc).map_err(|e| Error::Config {
        path: path.into(),
        message: e.to_string(),
    })?;
    f.write_all(&text)
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> AuthFiles {
        AuthFiles {
            primary: dir.join("auth.json"),
            read: vec![dir.join("auth.json"), dir.join("docker.json")],
        }
    }

    #[test]
    fn store_lookup_remove_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let f = files(d.path());
        assert_eq!(f.lookup("r.io", None).unwrap(), None);
        f.store("r.io", &Credentials::new("u", "p:w")).unwrap();
        assert_eq!(
            f.lookup("r.io", Some("a/b")).unwrap(),
            Some(Credentials::new("u", "p:w"))
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f.primary).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(f.remove("r.io").unwrap());
        assert!(!f.remove("r.io").unwrap());
        assert_eq!(f.lookup("r.io", None).unwrap(), None);
    }

    #[test]
    fn most_specific_key_wins_and_docker_keys_normalize() {
        let d = tempfile::tempdir().unwrap();
        let f = files(d.path());
        f.store("r.io", &Credentials::new("host", "1")).unwrap();
        f.store("r.io/team", &Credentials::new("team", "2"))
            .unwrap();
        assert_eq!(
            f.lookup("r.io", Some("team/app"))
                .unwrap()
                .unwrap()
                .username,
            "team"
        );
        assert_eq!(
            f.lookup("r.io", Some("other/app"))
                .unwrap()
                .unwrap()
                .username,
            "host"
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode("hub:pw");
        std::fs::write(
            d.path().join("docker.json"),
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{b64}"}}}}}}"#),
        )
        .unwrap();
        assert_eq!(
            f.lookup("docker.io", Some("library/busybox")).unwrap(),
            Some(Credentials::new("hub", "pw"))
        );
    }

    #[test]
    fn invalid_file_names_itself() {
        let d = tempfile::tempdir().unwrap();
        let f = files(d.path());
        std::fs::write(&f.primary, "{not json").unwrap();
        let e = f.lookup("r.io", None).unwrap_err().to_string();
        assert!(e.contains("auth.json"), "{e}");
    }
}
