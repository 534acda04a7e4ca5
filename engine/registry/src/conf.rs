//! `registries.conf` as containers/image reads it: `[[registry]]` entries (prefix, location,
//! insecure, blocked), `unqualified-search-registries`, `[aliases]`, drop-in files under
//! `registries.conf.d/`, and the old v1 `[registries.insecure]`/`[registries.search]` tables.

use crate::error::{Error, Result};
use crate::reference::{ImageReference, split_suffix};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `[[registry]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// What references it applies to (`example.com`, `example.com/ns`, `*.example.com`).
    pub prefix: String,
    /// Where to go instead (defaults to the prefix).
    pub location: String,
    /// Plain HTTP allowed and certificates not verified.
    pub insecure: bool,
    /// Pulls and pushes are refused.
    pub blocked: bool,
}

/// The merged registries configuration.
#[derive(Debug, Clone, Default)]
pub struct RegistriesConf {
    /// `[[registry]]` entries by prefix.
    pub registries: Vec<RegistryEntry>,
    /// Registries tried, in order, for short names.
    pub unqualified_search: Vec<String>,
    /// Short-name aliases: `name` → fully qualified reference.
    pub aliases: BTreeMap<String, String>,
    /// The files read, in order.
    pub sources: Vec<PathBuf>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct FileV2 {
    #[serde(default)]
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    registry: Vec<EntryV2>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    registries: Option<V1Tables>,
}

#[derive(serde::Deserialize)]
struct EntryV2 {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
}

#[derive(serde::Deserialize, Default)]
struct V1Tables {
    #[serde(default)]
    search: Option<V1List>,
    #[serde(default)]
    insecure: Option<V1List>,
    #[serde(default)]
    block: Option<V1List>,
}

#[derive(serde::Deserialize, Default)]
struct V1List {
    #[serde(default)]
    registries: Vec<String>,
}

impl RegistriesConf {
    /// The files containers tools read, in order: `$CONTAINERS_REGISTRIES_CONF` alone when set;
    /// else `~/.config/containers/registries.conf` if it exists, otherwise
    /// `/etc/containers/registries.conf`, followed by `*.conf` drop-ins from
    /// `/etc/containers/registries.conf.d` and `~/.config/containers/registries.conf.d`.
    pub fn default_files() -> Vec<PathBuf> {
        if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|p| !p.is_empty()) {
            return vec![PathBuf::from(p)];
        }
        let user_dir = crate::auth::config_home().map(|c| c.join("containers"));
        let mut files = Vec::new();
        let user_main = user_dir.as_ref().map(|d| d.join("registries.conf"));
        match user_main {
            Some(u) if u.exists() => files.push(u),
            _ => files.push(PathBuf::from("/etc/containers/registries.conf")),
        }
        let mut dirs = vec![PathBuf::from("/etc/containers/registries.conf.d")];
        if let Some(u) = &user_dir {
            dirs.push(u.join("registries.conf.d"));
        }
        for d in dirs {
            if let Ok(rd) = std::fs::read_dir(&d) {
                let mut confs: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                    .collect();
                confs.sort();
                files.extend(confs);
            }
        }
        files
    }

    /// Load the default files ([`RegistriesConf::default_files`]); missing files are skipped.
    pub fn load_default() -> Result<RegistriesConf> {
        Self::load_files(&Self::default_files())
    }

    /// Load and merge `files` in order (later files override earlier entries with the same prefix,
    /// replace the search list when they set one, and add aliases). Missing files are skipped.
    pub fn load_files(files: &[PathBuf]) -> Result<RegistriesConf> {
        let mut conf = RegistriesConf::default();
        for f in files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(f, e)),
            };
            conf.merge_text(&text, f)?;
            conf.sources.push(f.clone());
        }
        Ok(conf)
    }

    /// Merge one file's text into this configuration (`path` only names it in errors).
    pub fn merge_text(&mut self, text: &str, path: &Path) -> Result<()> {
        let parsed: FileV2 = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(s) = parsed.unqualified_search_registries {
            self.unqualified_search = s;
        }
        for e in parsed.registry {
            let location = e
                .location
                .clone()
                .or_else(|| e.prefix.clone())
                .unwrap_or_default();
            let prefix = e.prefix.unwrap_or_else(|| location.clone());
            if prefix.is_empty() {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    message: "[[registry]] entry without prefix or location".into(),
                });
            }
            let entry = RegistryEntry {
                prefix: prefix.clone(),
                location,
                insecure: e.insecure,
                blocked: e.blocked,
            };
            self.upsert(entry);
        }
        self.aliases.extend(parsed.aliases);
        if let Some(v1) = parsed.registries {
            if let Some(s) = v1.search {
                self.unqualified_search = s.registries;
            }
            for r in v1.insecure.map(|l| l.registries).unwrap_or_default() {
                let mut e = self.entry_exact(&r);
                e.insecure = true;
                self.upsert(e);
            }
            for r in v1.block.map(|l| l.registries).unwrap_or_default() {
                let mut e = self.entry_exact(&r);
                e.blocked = true;
                self.upsert(e);
            }
        }
        Ok(())
    }

    fn entry_exact(&self, prefix: &str) -> RegistryEntry {
        self.registries
            .iter()
            .find(|e| e.prefix == prefix)
            .cloned()
            .unwrap_or(RegistryEntry {
                prefix: prefix.into(),
                location: prefix.into(),
                insecure: false,
                blocked: false,
            })
    }

    fn upsert(&mut self, e: RegistryEntry) {
        match self.registries.iter_mut().find(|x| x.prefix == e.prefix) {
            Some(x) => *x = e,
            None => self.registries.push(e),
        }
    }

    /// The entry that applies to `name` (`host[/path]`): the longest matching prefix, where a
    /// prefix matches at a `/` boundary and `*.domain` matches any subdomain's host.
    pub fn find(&self, name: &str) -> Option<&RegistryEntry> {
        let mut best: Option<(&RegistryEntry, usize)> = None;
        for e in &self.registries {
            let len = if let Some(dom) = e.prefix.strip_prefix("*.") {
                let host = name.split('/').next().unwrap_or("");
                let host_no_port = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
                if host_no_port.ends_with(&format!(".{dom}")) {
                    e.prefix.len()
                } else {
                    continue;
                }
            } else if name == e.prefix
                || (name.starts_with(&e.prefix)
                    && name[e.prefix.len()..].starts_with(['/', ':', '@']))
            {
                e.prefix.len()
            } else {
                continue;
            };
            if best.is_none_or(|(_, l)| len > l) {
                best = Some((e, len));
            }
        }
        best.map(|(e, _)| e)
    }

    /// Whether `host` (`HOST[:PORT]`) is marked insecure.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.find(host).is_some_and(|e| e.insecure)
    }

    /// Apply the matching entry to `r`: refuse blocked registries and rewrite the prefix to the
    /// entry's location.
    pub fn rewrite(&self, r: &ImageReference) -> Result<ImageReference> {
        let name = r.name();
        let Some(e) = self.find(&name) else {
            return Ok(r.clone());
        };
        if e.blocked {
            return Err(Error::InvalidReference {
                reference: r.to_string(),
                reason: format!("registry {} is blocked in registries.conf", e.prefix),
            });
        }
        if e.prefix.starts_with("*.") || e.location == e.prefix {
            return Ok(r.clone());
        }
        let full = r.to_string();
        let text = format!("{}{}", e.location, &full[e.prefix.len()..]);
        parse_ref(&text)
    }

    /// The fully qualified references a user's `name` may mean, in the order to try them:
    /// itself when qualified (`docker://` accepted); its alias when one is defined; else one per
    /// unqualified search registry. Each is passed through [`RegistriesConf::rewrite`].
    pub fn candidates(&self, name: &str) -> Result<Vec<ImageReference>> {
        let name = name.strip_prefix("docker://").unwrap_or(name);
        if !ImageReference::is_short_name(name) {
            return Ok(vec![self.rewrite(&parse_ref(name)?)?]);
        }
        let (repo, suffix) = split_suffix(name);
        if let Some(target) = self.aliases.get(repo) {
            if ImageReference::is_short_name(target) {
                return Err(Error::InvalidReference {
                    reference: name.into(),
                    reason: format!("alias {target:?} is not fully qualified"),
                });
            }
            let text = if suffix.is_empty() {
                target.clone()
            } else {
                format!("{}{suffix}", split_suffix(target).0)
            };
            return Ok(vec![self.rewrite(&parse_ref(&text)?)?]);
        }
        if self.unqualified_search.is_empty() {
            return Err(Error::InvalidReference {
                reference: name.into(),
                reason:
                    "short name with no unqualified-search-registries configured in registries.conf"
                        .into(),
            });
        }
        let mut out = Vec::new();
        for reg in &self.unqualified_search {
            out.push(self.rewrite(&parse_ref(&format!("{reg}/{name}"))?)?);
        }
        Ok(out)
    }
}

/// Parse a fully qualified reference, mapping core's error into ours.
pub(crate) fn parse_ref(s: &str) -> Result<ImageReference> {
    ImageReference::parse(s).map_err(|e| Error::InvalidReference {
        reference: s.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> RegistriesConf {
        let mut c = RegistriesConf::default();
        c.merge_text(text, Path::new("test.conf")).unwrap();
        c
    }

    #[test]
    fn insecure_and_longest_prefix() {
        let c = conf(
            r#"
unqualified-search-registries = ["docker.io", "quay.io"]
[[registry]]
location = "127.0.0.1:5000"
insecure = true
[[registry]]
prefix = "example.com/team"
location = "mirror.local:5001/team"
[[registry]]
prefix = "example.com"
blocked = true
"#,
        );
        assert!(c.is_insecure("127.0.0.1:5000"));
        assert!(!c.is_insecure("127.0.0.1:5001"));
        let r = parse_ref("example.com/team/app:1").unwrap();
        assert_eq!(
            c.rewrite(&r).unwrap().to_string(),
            "mirror.local:5001/team/app:1"
        );
        assert!(
            c.rewrite(&parse_ref("example.com/other/app").unwrap())
                .is_err()
        );
        // "example.com/teamx" must not match the "example.com/team" prefix.
        assert_eq!(c.find("example.com/teamx/a").unwrap().prefix, "example.com");
        let cands = c.candidates("busybox:1").unwrap();
        let names: Vec<String> = cands.iter().map(|r| r.to_string()).collect();
        assert_eq!(names, ["docker.io/library/busybox:1", "quay.io/busybox:1"]);
    }

    #[test]
    fn aliases_and_wildcards() {
        let c = conf(
            r#"
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
[[registry]]
prefix = "*.internal"
insecure = true
"#,
        );
        let cands = c.candidates("fedora:40").unwrap();
        assert_eq!(cands.len(), 1);
        assert_eq!(cands[0].to_string(), "registry.fedoraproject.org/fedora:40");
        assert!(c.is_insecure("reg.internal:5000"));
        assert!(!c.is_insecure("internal"));
        assert!(
            c.candidates("alpine").is_err(),
            "no search registries configured"
        );
    }

    #[test]
    fn v1_format_and_drop_in_override() {
        let mut c = conf(
            "[registries.search]\nregistries = ['a.io']\n[registries.insecure]\nregistries = ['b.io:5000']\n",
        );
        assert!(c.is_insecure("b.io:5000"));
        assert_eq!(c.unqualified_search, ["a.io"]);
        c.merge_text("unqualified-search-registries = ['c.io']\n[[registry]]\nlocation = 'b.io:5000'\ninsecure = false\n", Path::new("d.conf"))
            .unwrap();
        assert!(!c.is_insecure("b.io:5000"));
        assert_eq!(c.unqualified_search, ["c.io"]);
    }

    #[test]
    fn bad_toml_names_the_file() {
        let mut c = RegistriesConf::default();
        let e = c
            .merge_text("[[registry]\n", Path::new("/x/broken.conf"))
            .unwrap_err();
        assert!(e.to_string().contains("/x/broken.conf"), "{e}");
    }
}
