//! Small shared helpers for the harness: free ports, waiting for listeners, running commands with
//! readable failures, the test cache directory and the hermetic environment every tool runs in.

use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (the caller must bind it soon and retry on
/// "address already in use").
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// Wait until something accepts TCP connections at `addr`; false after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Run `cmd`, panicking with its command line, status, stdout and stderr unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            lossy(&out.stdout),
            lossy(&out.stderr)
        );
    }
    out
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Where the harness caches slow-to-make inputs (rootfs tarballs, base image layouts):
/// `$KILN_TEST_CACHE`, else `/var/tmp/kiln-test-cache`. Created on first use.
pub fn cache_dir() -> PathBuf {
    let d = std::env::var_os("KILN_TEST_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/kiln-test-cache"));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> String {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Hex SHA-256 of bytes.
pub fn sha256_bytes(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// `NO_PROXY` with loopback added: the current value (if any) plus `127.0.0.1,localhost,::1`.
pub fn no_proxy_with_loopback() -> String {
    let cur = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default();
    let mut parts: Vec<&str> = cur
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for h in ["127.0.0.1", "localhost", "::1"] {
        if !parts.contains(&h) {
            parts.push(h);
        }
    }
    parts.join(",")
}

/// A sandboxed home for a tool run: `HOME`, XDG directories, an empty auth file location and a
/// `registries.conf` with no unqualified search registries. Tools run with [`HermeticHome::apply`]
/// never read the developer's or the machine's credentials, certificates or registry settings
/// (except `/etc/containers/certs.d`, which the harness never writes).
#[derive(Debug)]
pub struct HermeticHome {
    dir: tempfile::TempDir,
}

impl HermeticHome {
    /// Create a fresh home in a temporary directory.
    pub fn new() -> HermeticHome {
        let dir = tempfile::Builder::new()
            .prefix("kiln-test-home.")
            .tempdir()
            .expect("creating a temp home");
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).expect("creating XDG_RUNTIME_DIR");
        std::fs::create_dir_all(dir.path().join(".config/containers"))
            .expect("creating ~/.config/containers");
        std::fs::write(
            dir.path().join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("writing registries.conf");
        HermeticHome { dir }
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `$XDG_RUNTIME_DIR` inside this home.
    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The containers auth file tools use by default here: `$XDG_RUNTIME_DIR/containers/auth.json`.
    pub fn auth_file(&self) -> PathBuf {
        self.runtime_dir().join("containers/auth.json")
    }

    /// The `registries.conf` tools read here (`$CONTAINERS_REGISTRIES_CONF`).
    pub fn registries_conf(&self) -> PathBuf {
        self.dir.path().join("registries.conf")
    }

    /// The per-user certificates directory (`~/.config/containers/certs.d`).
    pub fn user_certs_d(&self) -> PathBuf {
        self.dir.path().join(".config/containers/certs.d")
    }

    /// Mark `host` (`HOST:PORT`) insecure in this home's `registries.conf` (plain HTTP allowed,
    /// certificates not verified), as a `[[registry]]` entry.
    pub fn mark_insecure(&self, host: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.registries_conf())
            .expect("opening registries.conf");
        writeln!(f, "\n[[registry]]\nlocation = \"{host}\"\ninsecure = true")
            .expect("writing registries.conf");
    }

    /// Trust `ca_cert` for `host` (`HOST:PORT`) through the per-user certs.d directory.
    pub fn trust_ca(&self, host: &str, ca_cert: &Path) {
        let d = self.user_certs_d().join(host);
        std::fs::create_dir_all(&d).expect("creating certs.d/HOST");
        std::fs::copy(ca_cert, d.join("ca.crt")).expect("copying the CA certificate");
    }

    /// Apply this home to `cmd`: `HOME`, `XDG_RUNTIME_DIR`, `XDG_CONFIG_HOME`, `XDG_DATA_HOME`,
    /// `XDG_CACHE_HOME`, `CONTAINERS_REGISTRIES_CONF`, loopback in `NO_PROXY`, and no
    /// `REGISTRY_AUTH_FILE` / `DOCKER_CONFIG` from the caller.
    pub fn apply(&self, cmd: &mut Command) {
        let h = self.dir.path();
        cmd.env("HOME", h)
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("XDG_CONFIG_HOME", h.join(".config"))
            .env("XDG_DATA_HOME", h.join(".local/share"))
            .env("XDG_CACHE_HOME", h.join(".cache"))
            .env("CONTAINERS_REGISTRIES_CONF", self.registries_conf())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .env("NO_PROXY", no_proxy_with_loopback())
            .env("no_proxy", no_proxy_with_loopback());
    }

    /// The variables [`HermeticHome::apply`] sets, for callers that build environments by hand.
    pub fn vars(&self) -> Vec<(OsString, OsString)> {
        let mut c = Command::new("true");
        self.apply(&mut c);
        c.get_envs()
            .filter_map(|(k, v)| v.map(|v| (k.to_os_string(), v.to_os_string())))
            .collect()
    }
}

impl Default for HermeticHome {
    fn default() -> Self {
        Self::new()
    }
}

/// The OCI architecture name of this machine (`amd64`, `arm64`, ...).
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// A lock file held for the lifetime of the value (advisory `flock`), for caches shared between
/// test processes.
#[derive(Debug)]
pub struct CacheLock {
    _file: std::fs::File,
}

impl CacheLock {
    /// Take an exclusive lock on `path`, creating it; blocks until available.
    pub fn exclusive(path: &Path) -> CacheLock {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("opening lock {}: {e}", path.display()));
        f.lock()
            .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
        CacheLock { _file: f }
    }
}
