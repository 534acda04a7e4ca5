//! Image names with a transport prefix, as buildah and skopeo spell them (`docker://`, `oci:`,
//! `oci-archive:`, `docker-archive:`, `dir:`, `containers-storage:`), plus plugin exporters
//! (`sif:out.sif`).

use crate::{Error, ImageReference};
use std::fmt;
use std::path::PathBuf;

/// Where an image is read from or written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `docker://REF`: a registry.
    Docker(ImageReference),
    /// `oci:DIR[:REF]`: an OCI image layout directory; `reference` is the
    /// `org.opencontainers.image.ref.name` to read or write.
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// Reference name inside the layout.
        reference: Option<String>,
    },
    /// `oci-archive:FILE[:REF]`: a tar of an OCI layout.
    OciArchive {
        /// The archive file.
        file: PathBuf,
        /// Reference name inside the layout.
        reference: Option<String>,
    },
    /// `docker-archive:FILE[:REF]`: a `docker save` tarball; `reference` is a docker reference
    /// (or `@N`, an index into the archive's images).
    DockerArchive {
        /// The archive file.
        file: PathBuf,
        /// Image name (or `@index`) inside the archive.
        reference: Option<String>,
    },
    /// `dir:PATH`: skopeo's directory of loose blobs and a manifest.
    Dir(PathBuf),
    /// A name in kiln's own store: a bare name (`busybox`, `localhost:5000/x:1`, an image ID) or
    /// `containers-storage:NAME`. Whether a bare name may also mean a registry is up to the verb.
    Store(String),
    /// `SCHEME:REST` where SCHEME is a plugin exporter (e.g. `sif:out.sif`).
    Plugin {
        /// The exporter name.
        scheme: String,
        /// Everything after the first `:`.
        rest: String,
    },
}

/// Transport names kiln implements itself.
pub const BUILTIN_TRANSPORTS: &[&str] = &[
    "docker",
    "oci",
    "oci-archive",
    "docker-archive",
    "dir",
    "containers-storage",
];

impl Transport {
    /// Parse an image name. A scheme that is neither built in nor followed by `//` is not a
    /// transport, so `foo:tag` is a store name; use [`Transport::parse_with`] to recognise plugin
    /// exporter schemes such as `sif:out.sif`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Self::parse_with(s, |_| false)
    }

    /// Parse an image name; `is_plugin(scheme)` says whether an unknown `scheme:` names a plugin
    /// exporter. A colon that belongs to a registry (`127.0.0.1:5000/x`, `localhost:5000/x`) or a
    /// tag (`x:1`, `a/b:1`) never makes a scheme, whatever `is_plugin` says, because a scheme is a
    /// lowercase word (`[a-z][a-z0-9._+-]*`) with no `/` before the colon; `foo:1` with `foo` a
    /// plugin is taken as the plugin.
    pub fn parse_with(s: &str, is_plugin: impl Fn(&str) -> bool) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(Error::transport(s, "empty image name"));
        }
        let Some((scheme, rest)) = s.split_once(':') else {
            return Ok(Transport::Store(s.to_string()));
        };
        let path_ref = |rest: &str| -> Result<(PathBuf, Option<String>), Error> {
            let (p, r) = match rest.split_once(':') {
                Some((p, r)) => (p, Some(r.to_string()).filter(|r| !r.is_empty())),
                None => (rest, None),
            };
            if p.is_empty() {
                return Err(Error::transport(s, "missing path"));
            }
            Ok((PathBuf::from(p), r))
        };
        match scheme {
            "docker" => {
                let Some(r) = rest.strip_prefix("//") else {
                    return Err(Error::transport(
                        s,
                        "docker transport names must start with docker://",
                    ));
                };
                let r = ImageReference::parse(r).map_err(|e| Error::transport(s, e.to_string()))?;
                Ok(Transport::Docker(r))
            }
            "oci" => path_ref(rest).map(|(dir, reference)| Transport::Oci { dir, reference }),
            "oci-archive" => {
                path_ref(rest).map(|(file, reference)| Transport::OciArchive { file, reference })
            }
            "docker-archive" => {
                path_ref(rest).map(|(file, reference)| Transport::DockerArchive { file, reference })
            }
            "dir" => {
                if rest.is_empty() {
                    return Err(Error::transport(s, "missing path"));
                }
                Ok(Transport::Dir(PathBuf::from(rest)))
            }
            "containers-storage" => {
                // Drop a `[driver@root+runroot:options]` store specifier: kiln has one store.
                let name = match rest.strip_prefix('[') {
                    Some(r) => r.split_once(']').map(|(_, n)| n).unwrap_or(""),
                    None => rest,
                };
                if name.is_empty() {
                    return Err(Error::transport(s, "missing image name"));
                }
                Ok(Transport::Store(name.to_string()))
            }
            _ => {
                let schemey = scheme
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase())
                    && scheme.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'-' | b'_' | b'+' | b'.')
                    });
                if schemey
                    && (is_plugin(scheme) || (rest.starts_with("//") && !scheme.contains('.')))
                {
                    Ok(Transport::Plugin {
                        scheme: scheme.to_string(),
                        rest: rest.to_string(),
                    })
                } else if schemey
                    && rest.contains('/')
                    && !rest.starts_with(|c: char| c.is_ascii_digit())
                {
                    // `bogus:foo/x:1`: no registry port and no tag has a `/` after its colon.
                    Err(Error::transport(s, format!("unknown transport {scheme:?}")))
                } else {
                    Ok(Transport::Store(s.to_string()))
                }
            }
        }
    }

    /// The transport's name as written before the colon (`docker`, `oci`, …, `containers-storage`
    /// for the store, the scheme for a plugin).
    pub fn name(&self) -> &str {
        match self {
            Transport::Docker(_) => "docker",
            Transport::Oci { .. } => "oci",
            Transport::OciArchive { .. } => "oci-archive",
            Transport::DockerArchive { .. } => "docker-archive",
            Transport::Dir(_) => "dir",
            Transport::Store(_) => "containers-storage",
            Transport::Plugin { scheme, .. } => scheme,
        }
    }
}

impl fmt::Display for Transport {
    /// The canonical spelling; a store name is written bare.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_ref = |f: &mut fmt::Formatter<'_>, t: &str, p: &PathBuf, r: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            if let Some(r) = r {
                write!(f, ":{r}")?;
            }
            Ok(())
        };
        match self {
            Transport::Docker(r) => write!(f, "docker://{r}"),
            Transport::Oci { dir, reference } => with_ref(f, "oci", dir, reference),
            Transport::OciArchive { file, reference } => {
                with_ref(f, "oci-archive", file, reference)
            }
            Transport::DockerArchive { file, reference } => {
                with_ref(f, "docker-archive", file, reference)
            }
            Transport::Dir(p) => write!(f, "dir:{}", p.display()),
            Transport::Store(n) => f.write_str(n),
            Transport::Plugin { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugins(s: &str) -> bool {
        matches!(s, "sif" | "squashfs")
    }

    #[test]
    fn table() {
        let store = |n: &str| Transport::Store(n.to_string());
        let cases: Vec<(&str, Transport)> = vec![
            ("busybox", store("busybox")),
            ("busybox:latest", store("busybox:latest")),
            ("127.0.0.1:5000/x:tag", store("127.0.0.1:5000/x:tag")),
            ("localhost:5000/x", store("localhost:5000/x")),
            ("quay.io/a/b:1", store("quay.io/a/b:1")),
            ("containers-storage:foo", store("foo")),
            (
                "containers-storage:[overlay@/var/lib/x]foo:1",
                store("foo:1"),
            ),
            (
                "docker://busybox",
                Transport::Docker(ImageReference::parse("busybox").unwrap()),
            ),
            (
                "docker://127.0.0.1:5000/x:1",
                Transport::Docker(ImageReference::parse("127.0.0.1:5000/x:1").unwrap()),
            ),
            (
                "oci:/tmp/layout",
                Transport::Oci {
                    dir: "/tmp/layout".into(),
                    reference: None,
                },
            ),
            (
                "oci:/tmp/layout:v1",
                Transport::Oci {
                    dir: "/tmp/layout".into(),
                    reference: Some("v1".into()),
                },
            ),
            (
                "oci-archive:out.tar",
                Transport::OciArchive {
                    file: "out.tar".into(),
                    reference: None,
                },
            ),
            (
                "docker-archive:a.tar:busybox:latest",
                Transport::DockerArchive {
                    file: "a.tar".into(),
                    reference: Some("busybox:latest".into()),
                },
            ),
            ("dir:/tmp/d", Transport::Dir("/tmp/d".into())),
            (
                "sif:out.sif",
                Transport::Plugin {
                    scheme: "sif".into(),
                    rest: "out.sif".into(),
                },
            ),
            (
                "squashfs:/x/y.sqfs",
                Transport::Plugin {
                    scheme: "squashfs".into(),
                    rest: "/x/y.sqfs".into(),
                },
            ),
            (
                "custom://thing",
                Transport::Plugin {
                    scheme: "custom".into(),
                    rest: "//thing".into(),
                },
            ),
            ("notaplugin:out.sif", store("notaplugin:out.sif")),
        ];
        for (input, want) in cases {
            let got =
                Transport::parse_with(input, plugins).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, want, "{input}");
        }
        // Without plugin knowledge, `sif:x` is a store name (an image `sif` tagged `x`).
        assert_eq!(
            Transport::parse("sif:out.sif").unwrap(),
            store("sif:out.sif")
        );
    }

    #[test]
    fn errors_and_display() {
        assert!(Transport::parse("docker:busybox").is_err());
        assert!(Transport::parse("docker://Bad").is_err());
        assert!(Transport::parse("oci:").is_err());
        assert!(Transport::parse("").is_err());
        let e = Transport::parse("bogus:foo/x:1").unwrap_err().to_string();
        assert!(e.contains("unknown transport \"bogus\""), "{e}");
        for s in [
            "docker://docker.io/library/busybox:latest",
            "oci:/a/b:c",
            "docker-archive:x.tar",
            "dir:/d",
        ] {
            assert_eq!(Transport::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Transport::parse("oci:/a").unwrap().name(), "oci");
    }
}
