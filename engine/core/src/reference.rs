//! Docker image references (`[registry[:port]/]repo/path[:tag][@sha256:…]`), parsed and normalized
//! the way containers/image and the docker CLI do.

use crate::{Digest, Error};
use std::fmt;
use std::str::FromStr;

/// The registry of names without one.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Repository prefix for single-component names on Docker Hub.
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Tag implied when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Registry given to locally built images named without one (`foo` → `localhost/foo:latest`).
pub const LOCAL_REGISTRY: &str = "localhost";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A fully qualified, normalized image reference: always has a registry, a repository, and a tag
/// and/or a digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageReference {
    /// Parse and normalize a reference as `docker pull`/containers/image do:
    /// `busybox` → `docker.io/library/busybox:latest`, `index.docker.io/x/y` → `docker.io/x/y:latest`,
    /// `127.0.0.1:5000/debian:bookworm` stays, a digest without a tag gets no tag.
    /// Repository names must be lowercase; a bare 64-hex string (an image ID) is rejected.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Self::parse_with_default(s, DEFAULT_REGISTRY)
    }

    /// Parse a name given to a locally built or tagged image, as buildah does: a name without a
    /// registry gets `localhost/` (`foo` → `localhost/foo:latest`, `a/b` → `localhost/a/b:latest`);
    /// names with a registry are normalized as by [`ImageReference::parse`].
    pub fn parse_local(s: &str) -> Result<Self, Error> {
        Self::parse_with_default(s, LOCAL_REGISTRY)
    }

    /// Parse with `default_registry` for names that have none. Only `docker.io` adds `library/`.
    pub fn parse_with_default(s: &str, default_registry: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(Error::reference(s, "empty name"));
        }
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::reference(
                s,
                "cannot specify 64-byte hexadecimal strings (that is an image ID)",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let d = Digest::parse(d).map_err(|e| Error::reference(s, e.to_string()))?;
                (r, Some(d))
            }
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let (registry, mut repository) = match split_registry(name) {
            Some((reg, repo)) => (reg.to_string(), repo.to_string()),
            None => (default_registry.to_string(), name.to_string()),
        };
        if registry == "index.docker.io" {
            // An old spelling of Docker Hub; `docker.io` is the canonical one.
            return Self::parse_with_default(
                &format!("{DEFAULT_REGISTRY}/{}", &s[registry.len() + 1..]),
                default_registry,
            );
        }
        if repository.to_ascii_lowercase() != repository {
            return Err(Error::reference(s, "repository name must be lowercase"));
        }
        validate_registry(&registry).map_err(|r| Error::reference(s, r))?;
        if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            repository = format!("{OFFICIAL_REPO_PREFIX}{repository}");
        }
        validate_path(&repository).map_err(|r| Error::reference(s, r))?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(Error::reference(
                s,
                format!("repository name must not be more than {MAX_NAME_LEN} characters"),
            ));
        }
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| Error::reference(s, r))?;
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(ImageReference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Build from parts; validates them.
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Self, Error> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        let r = Self::parse(&s)?;
        if r.registry != registry {
            return Err(Error::reference(&s, "registry is not in canonical form"));
        }
        Ok(r)
    }

    /// True when `s` names no registry (`busybox`, `library/busybox`, `foo:1`), so it would get a
    /// default registry. `localhost/x`, `quay.io/x`, `127.0.0.1:5000/x` are not short names.
    pub fn is_short_name(s: &str) -> bool {
        let name = s.split('@').next().unwrap_or(s);
        split_registry(name).is_none()
    }

    /// The registry host, with port if any: `docker.io`, `127.0.0.1:5000`, `localhost`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, if any (always set unless the reference has a digest and no tag).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// A copy with this tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self, Error> {
        validate_tag(tag).map_err(|r| Error::reference(tag, r))?;
        Ok(ImageReference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// A copy pinned to this digest (and no tag), as `name@sha256:…`.
    pub fn with_digest(&self, digest: Digest) -> Self {
        ImageReference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// What the registry API is asked for: the digest when pinned, else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The docker CLI's short spelling: `docker.io/library/busybox:latest` → `busybox:latest`,
    /// `docker.io/foo/bar:1` → `foo/bar:1`; other registries unchanged.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        if self.registry == DEFAULT_REGISTRY {
            let rest = &full[DEFAULT_REGISTRY.len() + 1..];
            if let Some(r) = rest.strip_prefix(OFFICIAL_REPO_PREFIX)
                && !self.repository[OFFICIAL_REPO_PREFIX.len()..].contains('/')
            {
                return r.to_string();
            }
            return rest.to_string();
        }
        full
    }
}

/// Split `name` (no tag/digest) into registry and path when its first component is a registry:
/// it contains `.` or `:`, is `localhost`, or has uppercase letters (the docker rule).
fn split_registry(name: &str) -> Option<(&str, &str)> {
    let (first, rest) = name.split_once('/')?;
    if first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.to_ascii_lowercase() != first
    {
        Some((first, rest))
    } else {
        None
    }
}

fn validate_registry(reg: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = reg.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(format!(
                "invalid registry {reg:?}: unterminated IPv6 address"
            ));
        };
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(format!("invalid registry {reg:?}: bad IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p if p.starts_with(':') => ("ok", Some(&p[1..])),
            _ => return Err(format!("invalid registry {reg:?}")),
        }
    } else {
        match reg.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (reg, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("invalid port {p:?} in registry {reg:?}"));
    }
    for comp in host.split('.') {
        let b = comp.as_bytes();
        let ok = !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
        if !ok {
            return Err(format!("invalid registry host {host:?}"));
        }
    }
    Ok(())
}

/// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | -+
fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty repository name".into());
    }
    for comp in path.split('/') {
        let b = comp.as_bytes();
        if b.is_empty() {
            return Err(format!("empty path component in {path:?}"));
        }
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return Err(format!(
                "invalid path component {comp:?}: must start and end with [a-z0-9]"
            ));
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return Err(format!(
                    "invalid separator {sep:?} in path component {comp:?}"
                ));
            }
        }
    }
    Ok(())
}

/// tag := [\w][\w.-]{0,127}
fn validate_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.is_empty()
        || b.len() > MAX_TAG_LEN
        || !word(b[0])
        || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
    {
        return Err(format!("invalid tag {tag:?}"));
    }
    Ok(())
}

impl fmt::Display for ImageReference {
    /// `registry/repository[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageReference({self})")
    }
}

impl FromStr for ImageReference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ImageReference::parse(s)
    }
}

impl serde::Serialize for ImageReference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageReference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ImageReference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalization_table() {
        let table: &[(&str, &str, &str, &str, Option<&str>)] = &[
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "docker.io",
                "library/busybox",
                Some("latest"),
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "docker.io",
                "library/busybox",
                Some("1.36"),
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "docker.io",
                "library/busybox",
                Some("latest"),
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "docker.io",
                "library/busybox",
                Some("latest"),
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "docker.io",
                "library/busybox",
                Some("latest"),
            ),
            (
                "index.docker.io/foo/bar:x",
                "docker.io/foo/bar:x",
                "docker.io",
                "foo/bar",
                Some("x"),
            ),
            (
                "foo/bar",
                "docker.io/foo/bar:latest",
                "docker.io",
                "foo/bar",
                Some("latest"),
            ),
            (
                "quay.io/podman/stable",
                "quay.io/podman/stable:latest",
                "quay.io",
                "podman/stable",
                Some("latest"),
            ),
            (
                "127.0.0.1:5000/debian:bookworm",
                "127.0.0.1:5000/debian:bookworm",
                "127.0.0.1:5000",
                "debian",
                Some("bookworm"),
            ),
            (
                "localhost:5000/x",
                "localhost:5000/x:latest",
                "localhost:5000",
                "x",
                Some("latest"),
            ),
            (
                "localhost/x",
                "localhost/x:latest",
                "localhost",
                "x",
                Some("latest"),
            ),
            (
                "Registry/x",
                "Registry/x:latest",
                "Registry",
                "x",
                Some("latest"),
            ),
            (
                "[::1]:5000/a/b:c",
                "[::1]:5000/a/b:c",
                "[::1]:5000",
                "a/b",
                Some("c"),
            ),
            (
                "a.b-c.d/e__f/g.h-i---j:T_a.g-1",
                "a.b-c.d/e__f/g.h-i---j:T_a.g-1",
                "a.b-c.d",
                "e__f/g.h-i---j",
                Some("T_a.g-1"),
            ),
        ];
        for (input, full, reg, repo, tag) in table {
            let r = ImageReference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *full, "{input}");
            assert_eq!(r.registry(), *reg, "{input}");
            assert_eq!(r.repository(), *repo, "{input}");
            assert_eq!(r.tag(), *tag, "{input}");
            assert_eq!(r.digest(), None);
            // Normalized output parses back to itself.
            assert_eq!(ImageReference::parse(full).unwrap(), r);
        }
    }

    #[test]
    fn digests() {
        let r = ImageReference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.tag_or_digest(), D);
        let r = ImageReference::parse(&format!("127.0.0.1:5000/x:1@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x:1@{D}"));
        assert_eq!(r.tag(), Some("1"));
        assert!(ImageReference::parse("busybox@sha256:abc").is_err());
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "Busybox",
            "docker.io/Foo/bar",
            "foo/Bar",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "foo:",
            "foo:-tag",
            "foo:ta g",
            "foo//bar",
            "foo/bar/",
            "-foo",
            "foo-",
            "foo..bar",
            "foo___bar",
            "localhost:port/x",
            "my_host.com/x",
            "host-.com/x",
        ] {
            assert!(
                ImageReference::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let long = "a".repeat(300);
        assert!(ImageReference::parse(&long).is_err());
        let long_tag = format!("x:{}", "t".repeat(129));
        assert!(ImageReference::parse(&long_tag).is_err());
    }

    #[test]
    fn local_names() {
        let t: &[(&str, &str)] = &[
            ("foo", "localhost/foo:latest"),
            ("foo:1", "localhost/foo:1"),
            ("a/b", "localhost/a/b:latest"),
            ("localhost/foo", "localhost/foo:latest"),
            ("docker.io/foo", "docker.io/library/foo:latest"),
            ("127.0.0.1:5000/x:y", "127.0.0.1:5000/x:y"),
        ];
        for (i, o) in t {
            assert_eq!(ImageReference::parse_local(i).unwrap().to_string(), *o);
        }
        assert!(ImageReference::is_short_name("foo/bar:1"));
        assert!(!ImageReference::is_short_name("localhost/foo"));
        assert!(!ImageReference::is_short_name("127.0.0.1:5000/foo"));
    }

    #[test]
    fn familiar_and_modifiers() {
        let r = ImageReference::parse("busybox").unwrap();
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(
            ImageReference::parse("foo/bar:2").unwrap().familiar(),
            "foo/bar:2"
        );
        assert_eq!(
            ImageReference::parse("quay.io/a/b").unwrap().familiar(),
            "quay.io/a/b:latest"
        );
        assert_eq!(
            r.with_tag("x").unwrap().to_string(),
            "docker.io/library/busybox:x"
        );
        assert!(r.with_tag("bad tag").is_err());
        let d = Digest::parse(D).unwrap();
        assert_eq!(
            r.with_digest(d).to_string(),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(r.name(), "docker.io/library/busybox");
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, "\"docker.io/library/busybox:latest\"");
        assert_eq!(serde_json::from_str::<ImageReference>(&j).unwrap(), r);
    }
}
