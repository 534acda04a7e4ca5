//! Finding the built `kiln` binary and running it as a user would, with a temporary `--root` and a
//! hermetic home (see [`HermeticHome`]).

use crate::registry::Registry;
use crate::util::{HermeticHome, lossy};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `kiln` binary of this build: `target/<profile>/kiln`, the grandparent directory of the
/// running test executable (`target/<profile>/deps/<test>-<hash>`). `$KILN_BIN` overrides it.
/// Panics with a hint when it has not been built.
pub fn kiln_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("kiln");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p kiln-cli, same profile and target dir)",
        bin.display()
    );
    bin
}

/// A kiln "user": a temporary store (`--root`) and a hermetic home, removed on drop.
#[derive(Debug)]
pub struct Kiln {
    root: tempfile::TempDir,
    home: HermeticHome,
    envs: Vec<(String, String)>,
}

impl Default for Kiln {
    fn default() -> Self {
        Self::new()
    }
}

impl Kiln {
    /// A fresh store and home.
    pub fn new() -> Kiln {
        let root = tempfile::Builder::new()
            .prefix("kiln-test-root.")
            .tempdir()
            .expect("creating a temp store root");
        Kiln {
            root,
            home: HermeticHome::new(),
            envs: Vec::new(),
        }
    }

    /// The store directory passed as `--root`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The hermetic home kiln runs with.
    pub fn home(&self) -> &HermeticHome {
        &self.home
    }

    /// Set an extra environment variable for every later run.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Trust `reg`'s CA through `~/.config/containers/certs.d/HOST:PORT/ca.crt` (TLS variants).
    pub fn trust(&self, reg: &Registry) {
        let ca = reg.ca_cert().expect("trust() needs a TLS registry");
        self.home.trust_ca(&reg.host(), ca);
    }

    /// Mark `reg` insecure in this home's `registries.conf`.
    pub fn mark_insecure(&self, reg: &Registry) {
        self.home.mark_insecure(&reg.host());
    }

    /// `kiln --root ROOT ARGS…` with the hermetic environment, not yet run.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(kiln_bin());
        self.home.apply(&mut c);
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c.arg("--root").arg(self.root.path()).args(args);
        c
    }

    /// Run kiln and return its output, whatever the status.
    pub fn output<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd(args);
        c.output()
            .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
    }

    /// Run kiln, panicking with its output unless it succeeds; returns stdout.
    pub fn run<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd(args);
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
        if !out.status.success() {
            panic!(
                "{c:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                lossy(&out.stdout),
                lossy(&out.stderr)
            );
        }
        lossy(&out.stdout)
    }

    /// Run kiln expecting failure, panicking if it succeeds; returns stderr.
    pub fn run_fail<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd(args);
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
        if out.status.success() {
            panic!(
                "{c:?} succeeded but should have failed:\n--- stdout\n{}\n--- stderr\n{}",
                lossy(&out.stdout),
                lossy(&out.stderr)
            );
        }
        lossy(&out.stderr)
    }

    /// Run kiln with `stdin` fed to it, panicking with its output unless it succeeds; returns stdout.
    pub fn run_with_stdin<I, S>(&self, args: I, stdin: &[u8]) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::io::Write;
        use std::process::Stdio;
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin)
            .expect("writing kiln's stdin");
        let out = child.wait_with_output().expect("waiting for kiln");
        if !out.status.success() {
            panic!(
                "{c:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                lossy(&out.stdout),
                lossy(&out.stderr)
            );
        }
        lossy(&out.stdout)
    }
}
