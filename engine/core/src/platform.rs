//! Platforms (`os/architecture[/variant]`) with Go's architecture names, as OCI descriptors carry them.

use crate::Error;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An image platform. Serializes like the OCI descriptor `platform` object
/// (`architecture`, `os`, `os.version`, `os.features`, `variant`; unknown keys such as Docker's
/// `features` are kept in `extra`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's spelling: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`…
    pub architecture: String,
    /// Operating system: `linux`, `windows`…
    pub os: String,
    /// OS version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features (Windows images).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant: `v7` for arm, `v8` for arm64…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Keys this type does not model, kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Platform {
    /// A platform from its three parts (no normalization).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
            ..Default::default()
        }
    }

    /// Parse `os/arch[/variant]` (as `--platform` takes it). Architecture aliases are mapped to Go's
    /// names (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` → `arm`+`v7`, `i386` → `386`); the
    /// variant is kept as given. A single word is taken as an OS when it is one (`linux`), else as
    /// an architecture on linux.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(Error::platform(s, "expected os/architecture[/variant]"));
        }
        for p in &parts {
            if !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return Err(Error::platform(s, format!("invalid component {p:?}")));
            }
        }
        let (os, arch, variant) = match parts.as_slice() {
            [one] => {
                let l = one.to_ascii_lowercase();
                if KNOWN_OS.contains(&l.as_str()) {
                    let host = Platform::host();
                    (l, host.architecture, host.variant)
                } else {
                    ("linux".to_string(), l, None)
                }
            }
            [os, arch] => (os.to_ascii_lowercase(), arch.to_ascii_lowercase(), None),
            [os, arch, v] => (
                os.to_ascii_lowercase(),
                arch.to_ascii_lowercase(),
                Some(v.to_ascii_lowercase()),
            ),
            _ => unreachable!(),
        };
        let (arch, implied) = match arch.as_str() {
            "x86_64" | "x86-64" => ("amd64".to_string(), None),
            "aarch64" => ("arm64".to_string(), None),
            "armhf" => ("arm".to_string(), Some("v7")),
            "armel" => ("arm".to_string(), Some("v6")),
            "i386" | "i686" | "x86" => ("386".to_string(), None),
            _ => (arch, None),
        };
        let variant = variant.or(implied.map(str::to_string));
        Ok(Platform {
            architecture: arch,
            os,
            variant,
            ..Default::default()
        })
    }

    /// The platform kiln runs on, in Go's names (`linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`).
    pub fn host() -> Self {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new(os, arch, variant)
    }

    /// The containerd-normalized form: `arm64/v8` → `arm64` (no variant), `arm` → `arm/v7`,
    /// `amd64/v1` → `amd64`, variants `8` → `v8`.
    pub fn normalized(&self) -> Platform {
        let mut p = Platform::parse(&format!(
            "{}/{}{}",
            self.os,
            self.architecture,
            self.variant
                .as_deref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        ))
        .unwrap_or_else(|_| self.clone());
        let v = p.variant.take();
        p.variant = match (p.architecture.as_str(), v.as_deref()) {
            ("arm64", Some("8" | "v8" | "v8.0")) => None,
            ("arm64", Some("9" | "9.0" | "v9.0")) => Some("v9".into()),
            ("arm", None | Some("7")) => Some("v7".into()),
            ("arm", Some(x @ ("5" | "6" | "8"))) => Some(format!("v{x}")),
            ("amd64", Some("v1")) => None,
            (_, v) => v.map(str::to_string),
        };
        p.os_version = self.os_version.clone();
        p.os_features = self.os_features.clone();
        p.extra = self.extra.clone();
        p
    }

    /// Whether an image for `self` satisfies a request for `wanted`: same OS and architecture after
    /// normalization, and the same variant unless `wanted` names none.
    pub fn matches(&self, wanted: &Platform) -> bool {
        let a = self.normalized();
        let b = wanted.normalized();
        a.os == b.os
            && a.architecture == b.architecture
            && (wanted.variant.is_none() || a.variant == b.variant)
    }
}

const KNOWN_OS: &[&str] = &[
    "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix",
    "wasip1", "wasi",
];

impl fmt::Display for Platform {
    /// `os/arch` or `os/arch/variant`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let p = Platform::parse("linux/amd64/v8").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "amd64", Some("v8"))
        );
        assert_eq!(
            Platform::parse("linux/arm64").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/aarch64").unwrap().architecture,
            "arm64"
        );
        assert_eq!(
            Platform::parse("linux/armhf").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("Linux/X86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(Platform::parse("arm64").unwrap().to_string(), "linux/arm64");
        assert!(Platform::parse("linux/").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
        assert!(Platform::parse("linux/am d64").is_err());
    }

    #[test]
    fn host_uses_go_names() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(h.to_string(), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(h.to_string(), "linux/arm64/v8");
    }

    #[test]
    fn matching() {
        let arm64v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert!(arm64v8.matches(&Platform::parse("linux/arm64").unwrap()));
        assert!(Platform::parse("linux/arm64").unwrap().matches(&arm64v8));
        assert!(
            Platform::parse("linux/arm")
                .unwrap()
                .matches(&Platform::parse("linux/arm/v7").unwrap())
        );
        assert!(
            !Platform::parse("linux/arm/v6")
                .unwrap()
                .matches(&Platform::parse("linux/arm/v7").unwrap())
        );
        assert!(!Platform::parse("linux/amd64").unwrap().matches(&arm64v8));
    }

    #[test]
    fn serde_keeps_unknown_keys() {
        let j = r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","features":["sse4"]}"#;
        let p: Platform = serde_json::from_str(j).unwrap();
        assert_eq!(p.os_version.as_deref(), Some("10.0.17763.1"));
        assert_eq!(serde_json::to_string(&p).unwrap(), j);
    }
}
