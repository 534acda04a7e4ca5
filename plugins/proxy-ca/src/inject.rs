//! What `proxy-ca` places in a RUN step: the image's CA bundle merged with the user's CAs, mounted
//! where the image's distribution looks for it; CA and proxy environment variables; and, when the
//! image has a JVM, a PKCS#12 truststore with the same CAs.
//!
//! Where the bundle goes:
//! - over every known bundle path the image has (Debian/Ubuntu `/etc/ssl/certs/ca-certificates.crt`,
//!   RHEL/Fedora `/etc/pki/tls/certs/ca-bundle.crt`, Alpine `/etc/ssl/cert.pem`, SUSE
//!   `/etc/ssl/ca-bundle.pem`); symlinked paths are resolved by the host inside the rootfs;
//! - at the path of the distribution named by `/etc/os-release` when the image has none (Debian's
//!   path when the distribution is unknown), so tools with a compiled-in default find it;
//! - at [`KILN_BUNDLE`] instead, when the step looks like it rewrites the trust store (it runs
//!   `update-ca-certificates`/`update-ca-trust`, names the `ca-certificates` package, upgrades
//!   packages, or installs packages into an image without a bundle): those tools replace the bundle
//!   by renaming a new file over it, which fails on a mount point. The environment variables still
//!   point at the merged bundle there.
//!
//! The environment variables [`CA_ENV`] name the bundle's path; proxy variables the host passed are
//! set in both upper and lower case (curl reads only `http_proxy` in lower case).

use crate::pem::{self, Cert};
use crate::pkcs12;
use thiserror::Error;

/// Debian, Ubuntu (and Arch, Gentoo) bundle path; also the fallback.
pub const DEBIAN_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// RHEL, Fedora, CentOS, Rocky, Alma, Amazon Linux bundle path.
pub const REDHAT_BUNDLE: &str = "/etc/pki/tls/certs/ca-bundle.crt";
/// Alpine bundle path.
pub const ALPINE_BUNDLE: &str = "/etc/ssl/cert.pem";
/// openSUSE and SLES bundle path.
pub const SUSE_BUNDLE: &str = "/etc/ssl/ca-bundle.pem";
/// Every bundle path looked for, in this order.
pub const KNOWN_BUNDLES: &[&str] = &[DEBIAN_BUNDLE, REDHAT_BUNDLE, ALPINE_BUNDLE, SUSE_BUNDLE];
/// Where the bundle goes when the step rewrites the system trust store.
pub const KILN_BUNDLE: &str = "/etc/kiln/ca-bundle.pem";
/// Where the Java truststore goes.
pub const JAVA_TRUSTSTORE: &str = "/etc/kiln/java-cacerts.p12";
/// Variables set to the bundle's path.
pub const CA_ENV: &[&str] = &["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"];
/// Proxy variables the plugin accepts as options (in upper or lower case) and passes on.
pub const PROXY_VARS: &[&str] = &["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "FTP_PROXY", "ALL_PROXY"];
/// The name of the file option holding the extra CAs (PEM bundle or one DER certificate).
pub const CA_FILE: &str = "ca-cert";
/// Paths whose presence means the image has a JVM.
pub const JAVA_PATHS: &[&str] = &[
    "/usr/bin/java",
    "/usr/local/bin/java",
    "/opt/java/openjdk/bin/java",
    "/usr/lib/jvm/default-java/bin/java",
    "/usr/lib/jvm/jre/bin/java",
    "/usr/lib/jvm/default-jvm/bin/java",
];

/// Why the plugin refuses a request.
#[derive(Debug, Error)]
pub enum Error {
    /// Options or files the plugin does not understand, or a CA file that is not certificates.
    #[error("{0}")]
    InvalidInput(String),
    /// The host could not read a file of the step's root filesystem.
    #[error("reading {path} of the step's root filesystem: {message}")]
    Rootfs {
        /// The path asked for.
        path: String,
        /// What the host said.
        message: String,
    },
}

/// Read access to the step's root filesystem (the host's `read-rootfs-file`).
pub trait Rootfs {
    /// The content of the file at absolute `path` (symlinks followed), or None when absent.
    fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, String>;
}

impl<F: FnMut(&str) -> Result<Option<Vec<u8>>, String>> Rootfs for F {
    fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, String> {
        self(path)
    }
}

/// The user's settings for the plugin, checked.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// CAs to add (deduplicated, in the order given).
    pub extra: Vec<Cert>,
    /// Proxy variables as given (name, value), non-empty values only.
    pub proxies: Vec<(String, String)>,
}

/// Check the options (proxy variables) and files (`ca-cert`, possibly several) the host passed.
pub fn settings(options: &[(String, String)], files: &[(String, Vec<u8>)]) -> Result<Settings, Error> {
    let mut s = Settings::default();
    for (k, v) in options {
        let known = PROXY_VARS.iter().any(|p| *p == k || p.to_lowercase() == *k);
        if !known {
            return Err(Error::InvalidInput(format!(
                "unknown option {k:?}: proxy-ca takes {} (upper or lower case)",
                PROXY_VARS.join(", ")
            )));
        }
        if v.contains('\0') || v.contains('\n') {
            return Err(Error::InvalidInput(format!("option {k}: the value has a NUL or newline")));
        }
        if !v.is_empty() {
            s.proxies.push((k.clone(), v.clone()));
        }
    }
    for (name, bytes) in files {
        if name != CA_FILE {
            return Err(Error::InvalidInput(format!("unknown file {name:?}: proxy-ca takes only {CA_FILE:?} (a PEM bundle)")));
        }
        let certs = pem::parse_strict(bytes).map_err(|e| Error::InvalidInput(format!("{CA_FILE}: {e}")))?;
        for c in certs {
            if !s.extra.contains(&c) {
                s.extra.push(c);
            }
        }
    }
    Ok(s)
}

/// One file to mount read-only for the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    /// Absolute path in the container.
    pub target: String,
    /// Content.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// What to add to one step.
#[derive(Debug, Clone, Default)]
pub struct Injection {
    /// Files to mount.
    pub mounts: Vec<FileMount>,
    /// Variables to set.
    pub env: Vec<(String, String)>,
    /// What was decided and why, for the host's debug log.
    pub notes: Vec<String>,
}

/// The primary bundle path of the distribution `/etc/os-release` names (its `ID`, then `ID_LIKE`).
pub fn distro_bundle(os_release: &str) -> Option<&'static str> {
    let mut ids = Vec::new();
    let mut likes = Vec::new();
    for line in os_release.lines() {
        let Some((k, v)) = line.trim().split_once('=') else { continue };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_ascii_lowercase();
        match k.trim() {
            "ID" => ids.push(v),
            "ID_LIKE" => likes.extend(v.split_whitespace().map(str::to_string)),
            _ => {}
        }
    }
    ids.iter().chain(likes.iter()).find_map(|id| match id.as_str() {
        "debian" | "ubuntu" | "raspbian" | "linuxmint" | "pop" | "kali" | "arch" | "archlinux" | "gentoo" | "void" => Some(DEBIAN_BUNDLE),
        "rhel" | "fedora" | "centos" | "rocky" | "almalinux" | "amzn" | "ol" | "mariner" | "azurelinux" => Some(REDHAT_BUNDLE),
        "alpine" | "wolfi" | "chainguard" => Some(ALPINE_BUNDLE),
        "suse" | "opensuse" | "sles" | "opensuse-leap" | "opensuse-tumbleweed" => Some(SUSE_BUNDLE),
        _ => None,
    })
}

const PACKAGE_MANAGERS: &[&str] =
    &["apt-get", "apt", "aptitude", "dpkg", "dnf", "yum", "microdnf", "tdnf", "apk", "zypper", "rpm", "pacman"];
const TRUST_TOOLS: &[&str] = &["update-ca-certificates", "update-ca-trust", "ca-certificates", "ca-certificates-bundle", "p11-kit"];
const UPGRADE_WORDS: &[&str] = &["upgrade", "dist-upgrade", "full-upgrade", "distro-sync", "dup", "-syu", "-su"];
const UPDATE_MEANS_UPGRADE: &[&str] = &["dnf", "yum", "microdnf", "tdnf", "zypper"];

/// Whether a command may rewrite the system CA bundle: it runs a trust-store tool or names the
/// `ca-certificates` package, upgrades packages, or (when the image has no bundle yet) installs
/// packages, which may pull `ca-certificates` in.
pub fn rewrites_trust_store(argv: &[String], image_has_bundle: bool) -> bool {
    let words: Vec<String> = argv
        .iter()
        .flat_map(|a| a.split(|c: char| c.is_whitespace() || ";&|()<>`'\"$=".contains(c)).map(str::to_string).collect::<Vec<_>>())
        .filter(|w| !w.is_empty())
        .map(|w| w.rsplit('/').next().unwrap_or(&w).to_ascii_lowercase())
        .collect();
    if words.iter().any(|w| TRUST_TOOLS.contains(&w.as_str())) {
        return true;
    }
    let mut manager: Option<&str> = None;
    for w in &words {
        if let Some(m) = PACKAGE_MANAGERS.iter().find(|m| **m == w) {
            if !image_has_bundle {
                return true;
            }
            manager = Some(m);
            continue;
        }
        if let Some(m) = manager
            && (UPGRADE_WORDS.contains(&w.as_str()) || (w == "update" && UPDATE_MEANS_UPGRADE.contains(&m)))
        {
            return true;
        }
    }
    false
}

/// Java system properties for the proxy variables (`http.proxyHost`/`Port`, `https.…`,
/// `http.nonProxyHosts`). Credentials in proxy URLs are not passed (Java has no property for them).
pub fn java_proxy_properties(proxies: &[(String, String)]) -> Vec<String> {
    let get = |name: &str| {
        proxies.iter().find(|(k, _)| k == name).or_else(|| proxies.iter().find(|(k, _)| *k == name.to_lowercase())).map(|(_, v)| v.as_str())
    };
    let mut out = Vec::new();
    for (var, prefix) in [("HTTP_PROXY", "http"), ("HTTPS_PROXY", "https")] {
        if let Some((host, port)) = get(var).and_then(proxy_host_port) {
            out.push(format!("-D{prefix}.proxyHost={host}"));
            out.push(format!("-D{prefix}.proxyPort={port}"));
        }
    }
    if let Some(no) = get("NO_PROXY") {
        let mut hosts: Vec<String> = Vec::new();
        for entry in no.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.chars().any(|c| c.is_whitespace() || c == '|' || c == '"' || c == '\'') || entry.contains('/') {
                continue; // not expressible (CIDR ranges) or unsafe in JAVA_TOOL_OPTIONS
            }
            if entry == "*" {
                hosts.push("*".into());
            } else if let Some(domain) = entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
                hosts.push(format!("*.{domain}"));
            } else {
                hosts.push(entry.to_string());
                if entry.parse::<std::net::IpAddr>().is_err() && !entry.contains(':') {
                    hosts.push(format!("*.{entry}"));
                }
            }
        }
        if !hosts.is_empty() {
            out.push(format!("-Dhttp.nonProxyHosts={}", hosts.join("|")));
        }
    }
    out
}

/// Host and port of a proxy URL (`http://user:pw@host:3128/`, `host:3128`, `[::1]:8080`).
pub fn proxy_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), url),
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (format!("[{h}]"), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (hostport.to_string(), default_port),
        }
    };
    let ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_[]:".contains(c));
    ok.then_some((host, port))
}

fn read(rootfs: &mut impl Rootfs, path: &str) -> Result<Option<Vec<u8>>, Error> {
    rootfs.read(path).map_err(|message| Error::Rootfs { path: path.into(), message })
}

/// The mounts and environment for one step running `argv` over `rootfs`.
pub fn inject(settings: &Settings, argv: &[String], rootfs: &mut impl Rootfs) -> Result<Injection, Error> {
    let mut inj = Injection::default();
    for var in PROXY_VARS {
        let lower = var.to_lowercase();
        let upper_v = settings.proxies.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone());
        let lower_v = settings.proxies.iter().find(|(k, _)| *k == lower).map(|(_, v)| v.clone());
        if let Some(v) = upper_v.clone().or_else(|| lower_v.clone()) {
            inj.env.push((var.to_string(), v));
        }
        if let Some(v) = lower_v.or(upper_v) {
            inj.env.push((lower, v));
        }
    }
    if settings.extra.is_empty() {
        inj.notes.push("no CA certificates given: only proxy variables are set".into());
        return Ok(inj);
    }

    let os_release = read(rootfs, "/etc/os-release")?.or(read(rootfs, "/usr/lib/os-release")?);
    let distro = os_release.as_deref().and_then(|b| distro_bundle(&String::from_utf8_lossy(b)));
    let mut present: Vec<(&str, Vec<u8>)> = Vec::new();
    for path in KNOWN_BUNDLES {
        if let Some(b) = read(rootfs, path)? {
            present.push((path, b));
        }
    }
    let primary = distro.or(present.first().map(|(p, _)| *p)).unwrap_or(DEBIAN_BUNDLE);

    // The image's own bundle, verbatim, then every certificate it lacks.
    let base = present.iter().position(|(p, _)| *p == primary).or(if present.is_empty() { None } else { Some(0) });
    let mut bundle: Vec<u8> = Vec::new();
    let mut all: Vec<Cert> = Vec::new();
    if let Some(i) = base {
        let (path, bytes) = &present[i];
        let (certs, skipped) = pem::parse_lenient(bytes);
        inj.notes.push(format!(
            "{path}: {} certificates{}",
            certs.len(),
            if skipped.is_empty() { String::new() } else { format!(", {} blocks skipped", skipped.len()) }
        ));
        bundle.extend_from_slice(bytes);
        if !bundle.is_empty() && !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        for c in certs {
            if !all.contains(&c) {
                all.push(c);
            }
        }
    }
    let others = present.iter().enumerate().filter(|(i, _)| Some(*i) != base).flat_map(|(_, (_, b))| pem::parse_lenient(b).0);
    let mut added = 0;
    for c in others.chain(settings.extra.iter().cloned()) {
        if !all.contains(&c) {
            bundle.extend_from_slice(pem::to_pem(&c.der).as_bytes());
            all.push(c);
            added += 1;
        }
    }
    inj.notes.push(format!("{added} certificates added, {} in the bundle", all.len()));

    let targets: Vec<&str> = if rewrites_trust_store(argv, !present.is_empty()) {
        inj.notes.push(format!("the step may rewrite the system trust store: bundle at {KILN_BUNDLE} only"));
        vec![KILN_BUNDLE]
    } else if present.is_empty() {
        vec![primary]
    } else {
        present.iter().map(|(p, _)| *p).collect()
    };
    let env_path = if targets.contains(&primary) { primary } else { targets[0] };
    for t in &targets {
        inj.mounts.push(FileMount { target: (*t).to_string(), content: bundle.clone(), mode: 0o644 });
    }
    for var in CA_ENV {
        inj.env.push((var.to_string(), env_path.to_string()));
    }

    let mut java = None;
    for p in JAVA_PATHS {
        if read(rootfs, p)?.is_some() {
            java = Some(*p);
            break;
        }
    }
    if let Some(p) = java {
        inj.notes.push(format!("JVM found at {p}: truststore at {JAVA_TRUSTSTORE}"));
        inj.mounts.push(FileMount { target: JAVA_TRUSTSTORE.into(), content: pkcs12::truststore(&all, pkcs12::PASSWORD), mode: 0o644 });
        let mut opts = vec![
            format!("-Djavax.net.ssl.trustStore={JAVA_TRUSTSTORE}"),
            "-Djavax.net.ssl.trustStoreType=PKCS12".to_string(),
            format!("-Djavax.net.ssl.trustStorePassword={}", pkcs12::PASSWORD),
        ];
        opts.extend(java_proxy_properties(&settings.proxies));
        inj.env.push(("JAVA_TOOL_OPTIONS".into(), opts.join(" ")));
    }
    Ok(inj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pem::tests::{TEST_CA, TEST_CA_ORG};
    use std::collections::BTreeMap;

    /// An image's files, by absolute path; reads are recorded.
    #[derive(Default)]
    struct Image {
        files: BTreeMap<String, Vec<u8>>,
        reads: Vec<String>,
    }

    impl Image {
        fn with(mut self, path: &str, content: &[u8]) -> Self {
            self.files.insert(path.into(), content.to_vec());
            self
        }
    }

    impl Rootfs for Image {
        fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, String> {
            self.reads.push(path.into());
            Ok(self.files.get(path).cloned())
        }
    }

    fn argv(cmd: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), cmd.into()]
    }

    fn ca_settings(pem: &str) -> Settings {
        settings(&[], &[(CA_FILE.into(), pem.as_bytes().to_vec())]).unwrap()
    }

    fn env<'a>(inj: &'a Injection, k: &str) -> Option<&'a str> {
        inj.env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str())
    }

    fn targets(inj: &Injection) -> Vec<&str> {
        inj.mounts.iter().map(|m| m.target.as_str()).collect()
    }

    const DEBIAN_OS: &[u8] = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n";

    #[test]
    fn debian_bundle_is_merged_and_mounted_in_place() {
        let mut img = Image::default().with("/etc/os-release", DEBIAN_OS).with(DEBIAN_BUNDLE, TEST_CA_ORG.as_bytes());
        let inj = inject(&ca_settings(TEST_CA), &argv("curl https://example.com"), &mut img).unwrap();
        assert_eq!(targets(&inj), [DEBIAN_BUNDLE]);
        let bundle = String::from_utf8(inj.mounts[0].content.clone()).unwrap();
        assert!(bundle.starts_with(TEST_CA_ORG), "the image's bundle comes first, verbatim");
        let certs = pem::parse_strict(bundle.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[1], pem::parse_strict(TEST_CA.as_bytes()).unwrap()[0]);
        assert_eq!(inj.mounts[0].mode, 0o644);
        for var in CA_ENV {
            assert_eq!(env(&inj, var), Some(DEBIAN_BUNDLE), "{var}");
        }
        assert_eq!(env(&inj, "JAVA_TOOL_OPTIONS"), None);
    }

    #[test]
    fn certificates_the_image_has_are_not_added_twice() {
        let both = format!("{TEST_CA}{TEST_CA_ORG}{TEST_CA}");
        let mut img = Image::default().with(DEBIAN_BUNDLE, TEST_CA.as_bytes());
        let s = ca_settings(&both);
        assert_eq!(s.extra.len(), 2, "duplicates in the user's file collapse");
        let inj = inject(&s, &argv("true"), &mut img).unwrap();
        let certs = pem::parse_strict(&inj.mounts[0].content).unwrap();
        assert_eq!(certs.len(), 2);
        // The same certificate re-wrapped at another width is still a duplicate.
        let rewrapped: String = {
            let der = pem::parse_strict(TEST_CA.as_bytes()).unwrap().remove(0).der;
            let b64 = pem::base64_encode(&der);
            let lines: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
        };
        let inj = inject(&ca_settings(&rewrapped), &argv("true"), &mut img).unwrap();
        assert_eq!(inj.mounts[0].content, TEST_CA.as_bytes());
    }

    #[test]
    fn redhat_and_alpine_paths_follow_the_distribution() {
        let rhel_os = b"NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n";
        let mut img = Image::default().with("/etc/os-release", rhel_os).with(REDHAT_BUNDLE, TEST_CA_ORG.as_bytes());
        let inj = inject(&ca_settings(TEST_CA), &argv("pip install x"), &mut img).unwrap();
        assert_eq!(targets(&inj), [REDHAT_BUNDLE]);
        assert_eq!(env(&inj, "REQUESTS_CA_BUNDLE"), Some(REDHAT_BUNDLE));

        // Alpine has both its own path and Debian's; both are covered, env names Alpine's.
        let alpine_os = b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.0\n";
        let mut img = Image::default()
            .with("/etc/os-release", alpine_os)
            .with(ALPINE_BUNDLE, TEST_CA_ORG.as_bytes())
            .with(DEBIAN_BUNDLE, TEST_CA_ORG.as_bytes());
        let inj = inject(&ca_settings(TEST_CA), &argv("wget https://x"), &mut img).unwrap();
        assert_eq!(targets(&inj), [DEBIAN_BUNDLE, ALPINE_BUNDLE]);
        assert_eq!(inj.mounts[0].content, inj.mounts[1].content);
        assert_eq!(env(&inj, "SSL_CERT_FILE"), Some(ALPINE_BUNDLE));
    }

    #[test]
    fn an_image_without_a_bundle_gets_one_at_its_distributions_path() {
        let mut busybox = Image::default();
        let inj = inject(&ca_settings(TEST_CA), &argv("wget https://x"), &mut busybox).unwrap();
        assert_eq!(targets(&inj), [DEBIAN_BUNDLE]);
        assert_eq!(inj.mounts[0].content, TEST_CA.as_bytes());
        assert_eq!(env(&inj, "CURL_CA_BUNDLE"), Some(DEBIAN_BUNDLE));

        let mut fedora = Image::default().with("/usr/lib/os-release", b"ID=fedora\n");
        let inj = inject(&ca_settings(TEST_CA), &argv("curl https://x"), &mut fedora).unwrap();
        assert_eq!(targets(&inj), [REDHAT_BUNDLE]);
    }

    #[test]
    fn steps_that_rewrite_the_trust_store_get_the_bundle_elsewhere() {
        let mut img = Image::default().with("/etc/os-release", DEBIAN_OS).with(DEBIAN_BUNDLE, TEST_CA_ORG.as_bytes());
        for cmd in [
            "update-ca-certificates",
            "apt-get install -y ca-certificates",
            "apt-get update && apt-get -y upgrade",
            "dnf -y update",
            "/usr/sbin/update-ca-trust extract",
        ] {
            let inj = inject(&ca_settings(TEST_CA), &argv(cmd), &mut img).unwrap();
            assert_eq!(targets(&inj), [KILN_BUNDLE], "{cmd}");
            assert_eq!(env(&inj, "GIT_SSL_CAINFO"), Some(KILN_BUNDLE), "{cmd}");
        }
        let inj = inject(&ca_settings(TEST_CA), &argv("apt-get update && apt-get install -y curl"), &mut img).unwrap();
        assert_eq!(targets(&inj), [DEBIAN_BUNDLE], "installing other packages keeps the system path");
        // Without a bundle in the image any install may bring ca-certificates along.
        let mut bare = Image::default().with("/etc/os-release", DEBIAN_OS);
        let inj = inject(&ca_settings(TEST_CA), &argv("apt-get install -y curl"), &mut bare).unwrap();
        assert_eq!(targets(&inj), [KILN_BUNDLE]);
    }

    #[test]
    fn trust_store_detection_reads_words_not_substrings() {
        let yes = |c: &str| rewrites_trust_store(&argv(c), true);
        assert!(yes("apk upgrade --no-cache"));
        assert!(yes("zypper -n dup"));
        assert!(yes("pacman -Syu --noconfirm"));
        assert!(yes("yum update -y"));
        assert!(!yes("apt-get update"));
        assert!(!yes("echo upgrade"));
        assert!(!yes("pip install --upgrade pip"));
        assert!(!yes("cp my-ca-certificates.pem /tmp"));
        assert!(rewrites_trust_store(&["update-ca-certificates".to_string()], true));
        assert!(rewrites_trust_store(&argv("apk add curl"), false));
        assert!(!rewrites_trust_store(&argv("make"), false));
    }

    #[test]
    fn a_jvm_gets_a_truststore_and_tool_options() {
        let proxies = vec![
            ("HTTPS_PROXY".to_string(), "http://proxy.corp:3128".to_string()),
            ("no_proxy".to_string(), "localhost,.corp,10.0.0.0/8".to_string()),
        ];
        let mut s = ca_settings(TEST_CA);
        s.proxies = proxies;
        let mut img = Image::default()
            .with("/etc/os-release", DEBIAN_OS)
            .with(DEBIAN_BUNDLE, TEST_CA_ORG.as_bytes())
            .with("/opt/java/openjdk/bin/java", b"\x7fELF");
        let inj = inject(&s, &argv("./gradlew build"), &mut img).unwrap();
        assert_eq!(targets(&inj), [DEBIAN_BUNDLE, JAVA_TRUSTSTORE]);
        assert_eq!(inj.mounts[1].content, pkcs12::truststore(&pem::parse_strict(&inj.mounts[0].content).unwrap(), "changeit"));
        let opts = env(&inj, "JAVA_TOOL_OPTIONS").unwrap();
        assert_eq!(
            opts,
            "-Djavax.net.ssl.trustStore=/etc/kiln/java-cacerts.p12 -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword=changeit \
             -Dhttps.proxyHost=proxy.corp -Dhttps.proxyPort=3128 -Dhttp.nonProxyHosts=localhost|*.localhost|*.corp"
        );
    }

    #[test]
    fn proxies_are_set_in_both_cases() {
        let opts = vec![
            ("HTTP_PROXY".to_string(), "http://p:3128".to_string()),
            ("https_proxy".to_string(), "http://q:3128".to_string()),
            ("HTTPS_PROXY".to_string(), "http://Q:3128".to_string()),
            ("no_proxy".to_string(), String::new()),
        ];
        let s = settings(&opts, &[]).unwrap();
        let inj = inject(&s, &argv("true"), &mut Image::default()).unwrap();
        assert!(inj.mounts.is_empty());
        assert_eq!(
            inj.env,
            [
                ("HTTP_PROXY".to_string(), "http://p:3128".to_string()),
                ("http_proxy".to_string(), "http://p:3128".to_string()),
                ("HTTPS_PROXY".to_string(), "http://Q:3128".to_string()),
                ("https_proxy".to_string(), "http://q:3128".to_string()),
            ]
        );
    }

    #[test]
    fn unknown_options_and_files_are_refused() {
        let e = settings(&[("FOO".into(), "1".into())], &[]).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput(m) if m.contains("unknown option \"FOO\"")), "{e}");
        let e = settings(&[("Http_Proxy".into(), "x".into())], &[]).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)));
        let e = settings(&[], &[("cert".into(), TEST_CA.as_bytes().to_vec())]).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput(m) if m.contains("unknown file \"cert\"")), "{e}");
        let e = settings(&[], &[(CA_FILE.into(), b"not a certificate".to_vec())]).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput(m) if m.starts_with("ca-cert: no certificates")), "{e}");
        let key = format!("{TEST_CA}-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
        let e = settings(&[], &[(CA_FILE.into(), key.into_bytes())]).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput(m) if m.contains("EC PRIVATE KEY")), "{e}");
    }

    #[test]
    fn rootfs_errors_name_the_path() {
        let mut failing =
            |p: &str| -> Result<Option<Vec<u8>>, String> { if p == REDHAT_BUNDLE { Err("too big".into()) } else { Ok(None) } };
        let e = inject(&ca_settings(TEST_CA), &argv("true"), &mut failing).unwrap_err();
        assert_eq!(e.to_string(), format!("reading {REDHAT_BUNDLE} of the step's root filesystem: too big"));
    }

    #[test]
    fn os_release_parsing() {
        assert_eq!(distro_bundle("ID=ubuntu\nID_LIKE=debian\n"), Some(DEBIAN_BUNDLE));
        assert_eq!(distro_bundle("ID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\n"), Some(REDHAT_BUNDLE));
        assert_eq!(distro_bundle("ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n"), Some(SUSE_BUNDLE));
        assert_eq!(distro_bundle("ID=somethingnew\nID_LIKE=fedora\n"), Some(REDHAT_BUNDLE));
        assert_eq!(distro_bundle("ID=nixos\n"), None);
        assert_eq!(distro_bundle(""), None);
    }

    #[test]
    fn proxy_urls() {
        assert_eq!(proxy_host_port("http://user:pw@proxy.corp:3128/"), Some(("proxy.corp".into(), 3128)));
        assert_eq!(proxy_host_port("proxy:8080"), Some(("proxy".into(), 8080)));
        assert_eq!(proxy_host_port("https://proxy"), Some(("proxy".into(), 443)));
        assert_eq!(proxy_host_port("http://[::1]:3128"), Some(("[::1]".into(), 3128)));
        assert_eq!(proxy_host_port("http://proxy:notaport"), None);
        assert_eq!(proxy_host_port("http://-Dx=y z:1"), None);
        let props = java_proxy_properties(&[("http_proxy".into(), "http://a:1".into()), ("NO_PROXY".into(), "*,x|y".into())]);
        assert_eq!(props, ["-Dhttp.proxyHost=a", "-Dhttp.proxyPort=1", "-Dhttp.nonProxyHosts=*"]);
    }
}
