//! skopeo (the peer tool) run with a hermetic home, with the right TLS/credential flags for a test
//! [`Registry`]: used to put images into registries and to cross-check what kiln pushed.

use crate::registry::Registry;
use crate::util::{HermeticHome, run_ok, sha256_bytes};
use std::process::{Command, Output};

/// A skopeo runner with its own home (no ambient credentials or registries.conf).
#[derive(Debug, Default)]
pub struct Skopeo {
    home: HermeticHome,
}

/// Which side of a copy flags are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `--src-…` flags.
    Src,
    /// `--dest-…` flags.
    Dest,
    /// Unprefixed flags (`inspect`).
    Plain,
}

/// skopeo flags to reach `reg`: certificates (TLS variants, verification on), `tls-verify=false`
/// (plain HTTP variants) and credentials (variants with authentication).
pub fn registry_flags(reg: &Registry, side: Side) -> Vec<String> {
    let p = match side {
        Side::Src => "--src-",
        Side::Dest => "--dest-",
        Side::Plain => "--",
    };
    let mut v = Vec::new();
    match reg.cert_dir() {
        Some(d) => v.push(format!("{p}cert-dir={}", d.display())),
        None => v.push(format!("{p}tls-verify=false")),
    }
    if let Some((u, pw)) = reg.credentials() {
        v.push(format!("{p}creds={u}:{pw}"));
    }
    v
}

impl Skopeo {
    /// A runner with a fresh hermetic home.
    pub fn new() -> Skopeo {
        Skopeo {
            home: HermeticHome::new(),
        }
    }

    /// `skopeo --insecure-policy` with the hermetic environment; add arguments and run it.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("skopeo");
        self.home.apply(&mut c);
        c.arg("--insecure-policy");
        c
    }

    /// `skopeo copy [flags] SRC DEST`, panicking with skopeo's output on failure.
    pub fn copy(&self, flags: &[String], src: &str, dest: &str) -> Output {
        run_ok(
            self.cmd()
                .args(["copy", "--quiet"])
                .args(flags)
                .arg(src)
                .arg(dest),
        )
    }

    /// Copy `src` (any transport) to `reg` as `repo_and_tag`.
    pub fn copy_to(&self, src: &str, reg: &Registry, repo_and_tag: &str, extra: &[&str]) -> Output {
        let mut flags = registry_flags(reg, Side::Dest);
        flags.extend(extra.iter().map(|s| s.to_string()));
        self.copy(&flags, src, &reg.docker(repo_and_tag))
    }

    /// Copy `repo_and_tag` from `reg` to `dest` (any transport).
    pub fn copy_from(
        &self,
        reg: &Registry,
        repo_and_tag: &str,
        dest: &str,
        extra: &[&str],
    ) -> Output {
        let mut flags = registry_flags(reg, Side::Src);
        flags.extend(extra.iter().map(|s| s.to_string()));
        self.copy(&flags, &reg.docker(repo_and_tag), dest)
    }

    /// `skopeo inspect --raw`: the manifest (or index) bytes exactly as the registry serves them.
    pub fn inspect_raw(&self, reg: &Registry, repo_and_tag: &str) -> Vec<u8> {
        run_ok(
            self.cmd()
                .args(["inspect", "--raw"])
                .args(registry_flags(reg, Side::Plain))
                .arg(reg.docker(repo_and_tag)),
        )
        .stdout
    }

    /// `skopeo inspect --config --raw`: the image configuration bytes.
    pub fn inspect_config(&self, reg: &Registry, repo_and_tag: &str) -> Vec<u8> {
        run_ok(
            self.cmd()
                .args(["inspect", "--config", "--raw"])
                .args(registry_flags(reg, Side::Plain))
                .arg(reg.docker(repo_and_tag)),
        )
        .stdout
    }

    /// `sha256:…` of the manifest the registry serves for `repo_and_tag`.
    pub fn manifest_digest(&self, reg: &Registry, repo_and_tag: &str) -> String {
        format!(
            "sha256:{}",
            sha256_bytes(&self.inspect_raw(reg, repo_and_tag))
        )
    }

    /// The manifest the registry serves for `repo_and_tag`, parsed.
    pub fn manifest(&self, reg: &Registry, repo_and_tag: &str) -> serde_json::Value {
        serde_json::from_slice(&self.inspect_raw(reg, repo_and_tag))
            .expect("the registry served JSON")
    }
}
