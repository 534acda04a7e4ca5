//! Destination strings (`PATH[:REF]`) and the image references they carry, checked as skopeo checks them.

/// Errors in destinations and references.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    /// The destination has no path before the optional `:REF`.
    #[error("destination `{0}` has no path")]
    NoPath(String),
    /// Not a valid `org.opencontainers.image.ref.name` value.
    #[error("invalid OCI reference name `{0}`: expected components of [A-Za-z0-9] joined by one of -._:@+ or --, separated by /")]
    OciRef(String),
    /// Not a valid docker `name[:tag]`.
    #[error("invalid docker reference `{reference}`: {reason}")]
    DockerRef {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A destination split at its first `:` (paths cannot contain one, as in skopeo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The file or directory to write.
    pub path: String,
    /// What follows the path, if anything.
    pub reference: Option<String>,
}

/// Split `dest` ("out.tar", "out.tar:name:tag") into path and optional reference.
pub fn split_destination(dest: &str) -> Result<Destination, RefError> {
    let (path, reference) = match dest.split_once(':') {
        Some((p, r)) => (p, Some(r).filter(|r| !r.is_empty())),
        None => (dest, None),
    };
    if path.is_empty() {
        return Err(RefError::NoPath(dest.to_string()));
    }
    Ok(Destination { path: path.to_string(), reference: reference.map(str::to_string) })
}

/// Check `r` against the image-spec grammar of `org.opencontainers.image.ref.name`:
/// `component ("/" component)*`, `component = alphanum (separator alphanum)*`,
/// `separator = [-._:@+] | "--"`.
pub fn validate_oci_ref(r: &str) -> Result<(), RefError> {
    let ok = r.split('/').all(|component| {
        let b = component.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            let sep_len = if b[i] == b'-' && b.get(i + 1) == Some(&b'-') { 2 } else { 1 };
            if sep_len == 1 && !matches!(b[i], b'-' | b'.' | b'_' | b':' | b'@' | b'+') {
                return false;
            }
            i += sep_len;
            if !b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                return false;
            }
        }
        true
    });
    if ok { Ok(()) } else { Err(RefError::OciRef(r.to_string())) }
}

/// A fully qualified docker name and tag (`docker.io/library/busybox`, `latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTag {
    /// Domain and path, normalized as docker does.
    pub name: String,
    /// The tag (`latest` when none was given).
    pub tag: String,
}

impl DockerTag {
    /// `name:tag`, as written to `RepoTags`.
    pub fn repo_tag(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// Parse and normalize a docker reference like skopeo's `docker-archive:` transport does:
/// a missing domain becomes `docker.io`, a single-component docker.io path gets `library/`,
/// a missing tag becomes `latest`; digests are refused (an archive tag must be a tag).
pub fn normalize_docker_ref(r: &str) -> Result<DockerTag, RefError> {
    let bad = |reason| RefError::DockerRef { reference: r.to_string(), reason };
    if r.contains('@') {
        return Err(bad("digest references cannot name an archive entry; use name:tag"));
    }
    let last_slash = r.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match r[last_slash..].rfind(':') {
        Some(i) => (&r[..last_slash + i], &r[last_slash + i + 1..]),
        None => (r, "latest"),
    };
    if !valid_tag(tag) {
        return Err(bad("a tag is [A-Za-z0-9_] then up to 127 of [A-Za-z0-9_.-]"));
    }
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) => {
            (first, rest.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" { "docker.io" } else { domain };
    let remainder = if domain == "docker.io" && !remainder.contains('/') { format!("library/{remainder}") } else { remainder };
    if !valid_domain(domain) {
        return Err(bad("invalid domain"));
    }
    if remainder.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad("repository name must be lowercase"));
    }
    if !remainder.split('/').all(valid_path_component) {
        return Err(bad("path components are [a-z0-9] joined by `.`, `_`, `__` or dashes"));
    }
    let full = format!("{domain}/{remainder}");
    if full.len() > 255 {
        return Err(bad("repository name must not be longer than 255 characters"));
    }
    Ok(DockerTag { name: full, tag: tag.to_string() })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..].iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

/// `[a-z0-9]+ (([._]|__|[-]+) [a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !b.get(i).copied().is_some_and(alnum) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_split_at_the_first_colon() {
        assert_eq!(split_destination("out.tar").unwrap(), Destination { path: "out.tar".into(), reference: None });
        assert_eq!(
            split_destination("out.tar:myimage:tag").unwrap(),
            Destination { path: "out.tar".into(), reference: Some("myimage:tag".into()) }
        );
        assert_eq!(split_destination("/a/b:localhost:5000/x:1").unwrap().reference.as_deref(), Some("localhost:5000/x:1"));
        assert_eq!(split_destination("out.tar:").unwrap().reference, None);
        assert_eq!(split_destination(":tag"), Err(RefError::NoPath(":tag".into())));
        assert!(split_destination("").is_err());
    }

    #[test]
    fn oci_refs_follow_the_image_spec_grammar() {
        for good in ["v1", "myimage:tag", "localhost/foo:latest", "a--b", "x@sha256:abc", "1.0+build", "a/b/c"] {
            assert!(validate_oci_ref(good).is_ok(), "{good}");
        }
        for bad in ["", ":tag", "a:", "a..b", "a/", "/a", "a//b", "a b", "a---b", "tag!", "é"] {
            assert_eq!(validate_oci_ref(bad), Err(RefError::OciRef(bad.into())), "{bad}");
        }
    }

    #[test]
    fn docker_refs_normalize_like_skopeo() {
        let n = |s| normalize_docker_ref(s).map(|t| t.repo_tag());
        assert_eq!(n("myimg:v1").unwrap(), "docker.io/library/myimg:v1");
        assert_eq!(n("myimg").unwrap(), "docker.io/library/myimg:latest");
        assert_eq!(n("user/app:2").unwrap(), "docker.io/user/app:2");
        assert_eq!(n("index.docker.io/busybox").unwrap(), "docker.io/library/busybox:latest");
        assert_eq!(n("localhost/foo:latest").unwrap(), "localhost/foo:latest");
        assert_eq!(n("localhost:5000/a/b").unwrap(), "localhost:5000/a/b:latest");
        assert_eq!(n("quay.io/org/x_y__z.w-1---2:t.1-_").unwrap(), "quay.io/org/x_y__z.w-1---2:t.1-_");
        assert_eq!(n("Registry.Example/x:1").unwrap(), "Registry.Example/x:1");
        let t = normalize_docker_ref("a/b:c").unwrap();
        assert_eq!((t.name.as_str(), t.tag.as_str()), ("docker.io/a/b", "c"));
    }

    #[test]
    fn bad_docker_refs_are_refused() {
        for bad in ["MyImg", "x@sha256:0000", "a:-b", "a:", "a//b", "a/_b", "a.", "localhost:abc/x", &format!("a:{}", "t".repeat(129))] {
            assert!(normalize_docker_ref(bad).is_err(), "{bad}");
        }
    }
}
