//! The plugin catalog: built-in plugins embedded in the binary plus plugins the user installed
//! (`kiln plugin install`), kept as `<dir>/<sha256>.wasm` with an `index.json`, pinned by digest.

use crate::error::{HostError, Result};
use crate::{Plugin, PluginHost, PluginKind};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a plugin came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "from")]
pub enum PluginSource {
    /// Embedded in kiln.
    Builtin,
    /// Installed from a file.
    File(String),
    /// Installed from an OCI registry (the reference it was pulled by).
    Oci(String),
}

impl PluginSource {
    /// `builtin`, `file` or `oci`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::File(_) => "file",
            Self::Oci(_) => "oci",
        }
    }
}

/// One plugin the catalog knows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// Short name.
    pub name: String,
    /// frontend, injector or exporter.
    pub kind: PluginKind,
    /// Its version.
    pub version: String,
    /// One line about it.
    pub description: String,
    /// "sha256:<hex>" of the component.
    pub digest: String,
    /// Where it came from.
    pub source: PluginSource,
}

#[derive(Default, Serialize, Deserialize)]
struct Index {
    plugins: Vec<CatalogEntry>,
}

/// Built-in and installed plugins.
pub struct Catalog {
    dir: PathBuf,
    builtins: &'static [(&'static str, &'static [u8])],
    builtin_digests: &'static [(&'static str, &'static str)],
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HostError + 'a {
    move |source| HostError::Io { what, path: path.to_path_buf(), source }
}

impl Catalog {
    /// A catalog keeping installed plugins in `dir`, with `builtins` as (package, bytes).
    pub fn new(dir: PathBuf, builtins: &'static [(&'static str, &'static [u8])]) -> Self {
        Self { dir, builtins, builtin_digests: &[] }
    }

    /// The built-ins' sha256 digests (hex) as (package, digest), known when kiln was built: a
    /// built-in listed here is not hashed again on every load.
    pub fn with_builtin_digests(mut self, digests: &'static [(&'static str, &'static str)]) -> Self {
        self.builtin_digests = digests;
        self
    }

    /// Load the built-in of `package`.
    fn load_builtin(&self, host: &PluginHost, package: &str, bytes: &[u8]) -> Result<Plugin> {
        let known = self.builtin_digests.iter().find(|(p, _)| *p == package).map(|(_, d)| *d);
        host.load_digested(Self::builtin_name(package), bytes, known)
    }

    fn builtin_name(package: &str) -> &str {
        package.strip_prefix("kiln-plugin-").unwrap_or(package)
    }

    fn index(&self) -> Result<Index> {
        let p = self.dir.join("index.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| HostError::Io { what: "reading", path: p, source: std::io::Error::other(e) }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(HostError::Io { what: "reading", path: p, source: e }),
        }
    }

    fn save_index(&self, idx: &Index) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let p = self.dir.join("index.json");
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io("writing", &p))?;
        tmp.write_all(&serde_json::to_vec_pretty(idx).unwrap()).map_err(io("writing", &p))?;
        tmp.as_file().sync_all().map_err(io("writing", &p))?;
        tmp.persist(&p).map_err(|e| HostError::Io { what: "writing", path: p.clone(), source: e.error })?;
        Ok(())
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{}.wasm", digest.trim_start_matches("sha256:")))
    }

    /// Every plugin: built-ins first (loaded to ask who they are), then installed ones.
    pub fn list(&self, host: &PluginHost) -> Result<Vec<CatalogEntry>> {
        let mut out = Vec::new();
        for (pkg, bytes) in self.builtins {
            let p = self.load_builtin(host, pkg, bytes)?;
            out.push(entry(&p, PluginSource::Builtin));
        }
        out.extend(self.index()?.plugins);
        Ok(out)
    }

    /// Load the plugin called `name` (or with that digest) of `kind`. Installed plugins shadow
    /// built-ins of the same name.
    pub fn load(&self, host: &PluginHost, kind: PluginKind, name: &str) -> Result<(Plugin, PluginSource)> {
        let not_found = || HostError::NotFound { kind: kind.as_str().into(), name: name.into() };
        if let Some(e) = self.index()?.plugins.into_iter().find(|e| e.kind == kind && (e.name == name || e.digest == name)) {
            let path = self.blob_path(&e.digest);
            let bytes = std::fs::read(&path).map_err(io("reading plugin", &path))?;
            let p = host.load(&e.name, &bytes)?;
            if p.digest != e.digest {
                return Err(HostError::Refused {
                    plugin: e.name,
                    doing: "loading".into(),
                    reason: format!("{} has digest {}, installed as {}", path.display(), p.digest, e.digest),
                });
            }
            return Ok((p, e.source));
        }
        for (pkg, bytes) in self.builtins {
            if Self::builtin_name(pkg) == name {
                let p = self.load_builtin(host, pkg, bytes)?;
                if p.kind != kind {
                    return Err(not_found());
                }
                return Ok((p, PluginSource::Builtin));
            }
        }
        Err(not_found())
    }

    /// Load any plugin by name (any kind).
    pub fn load_any(&self, host: &PluginHost, name: &str) -> Result<(Plugin, PluginSource)> {
        for kind in [PluginKind::Frontend, PluginKind::Injector, PluginKind::Exporter] {
            match self.load(host, kind, name) {
                Ok(p) => return Ok(p),
                Err(HostError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(HostError::NotFound { kind: "".into(), name: name.into() })
    }

    /// Every exporter with the schemes it serves (for transports such as `sif:`).
    pub fn exporter_for_scheme(&self, host: &PluginHost, scheme: &str) -> Result<Option<Plugin>> {
        let mut names: Vec<String> = self.index()?.plugins.into_iter().filter(|e| e.kind == PluginKind::Exporter).map(|e| e.name).collect();
        // Built-ins whose top-level exports show they are no exporter are not loaded at all.
        names.extend(
            self.builtins
                .iter()
                .filter(|(_, bytes)| top_level_exports(bytes).is_none_or(|e| e.iter().any(|n| crate::interface_name(n) == Some("exporter"))))
                .map(|(p, _)| Self::builtin_name(p).to_string()),
        );
        for n in names {
            let (p, _) = match self.load(host, PluginKind::Exporter, &n) {
                Ok(p) => p,
                Err(HostError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if host.schemes(&p)?.iter().any(|s| s == scheme) {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// Install a component; `expected_digest` pins it. Returns its entry.
    pub fn install(&self, host: &PluginHost, bytes: &[u8], source: PluginSource, expected_digest: Option<&str>) -> Result<CatalogEntry> {
        let label = match &source {
            PluginSource::File(f) => f.clone(),
            PluginSource::Oci(r) => r.clone(),
            PluginSource::Builtin => "builtin".into(),
        };
        let p = host.load(&label, bytes)?;
        if let Some(want) = expected_digest {
            let raw = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)));
            if want != p.digest && want != raw {
                return Err(HostError::Refused {
                    plugin: label,
                    doing: "installing".into(),
                    reason: format!("digest mismatch: expected {want}, got {raw}"),
                });
            }
        }
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let path = self.blob_path(&p.digest);
        let component = if bytes.len() >= 8 && bytes[6..8] == [1, 0] {
            bytes.to_vec()
        } else {
            wit_component::ComponentEncoder::default()
                .module(bytes)
                .and_then(|e| e.validate(true).encode())
                .map_err(|e| HostError::Invalid { plugin: label.clone(), reason: format!("{e:#}") })?
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io("writing", &path))?;
        tmp.write_all(&component).map_err(io("writing", &path))?;
        tmp.persist(&path).map_err(|e| HostError::Io { what: "writing", path: path.clone(), source: e.error })?;
        let e = entry(&p, source);
        let mut idx = self.index()?;
        idx.plugins.retain(|x| !(x.name == e.name && x.kind == e.kind));
        idx.plugins.push(e.clone());
        self.save_index(&idx)?;
        Ok(e)
    }

    /// Remove an installed plugin by name or digest. Built-ins cannot be removed.
    pub fn remove(&self, name: &str) -> Result<CatalogEntry> {
        let mut idx = self.index()?;
        let Some(pos) = idx.plugins.iter().position(|e| e.name == name || e.digest == name) else {
            if self.builtins.iter().any(|(p, _)| Self::builtin_name(p) == name) {
                return Err(HostError::Refused { plugin: name.into(), doing: "removing".into(), reason: "built-in plugins cannot be removed".into() });
            }
            return Err(HostError::NotFound { kind: "installed".into(), name: name.into() });
        };
        let e = idx.plugins.remove(pos);
        self.save_index(&idx)?;
        if !idx.plugins.iter().any(|x| x.digest == e.digest) {
            let _ = std::fs::remove_file(self.blob_path(&e.digest));
        }
        Ok(e)
    }
}

/// The names a component exports at its top level, read without compiling it; `None` when the
/// bytes are not a component that parses (the caller then loads it to find out).
fn top_level_exports(bytes: &[u8]) -> Option<Vec<String>> {
    use wasmparser::{Parser, Payload};
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.ok()? {
            Payload::Version { encoding: wasmparser::Encoding::Component, .. } if depth == 0 => {}
            Payload::Version { .. } if depth == 0 => return None,
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth > 0 => depth -= 1,
            Payload::ComponentExportSection(r) if depth == 0 => {
                for e in r {
                    names.push(e.ok()?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Some(names)
}

fn entry(p: &Plugin, source: PluginSource) -> CatalogEntry {
    CatalogEntry {
        name: p.info.name.clone(),
        kind: p.kind,
        version: p.info.version.clone(),
        description: p.info.description.clone(),
        digest: p.digest.clone(),
        source,
    }
}
