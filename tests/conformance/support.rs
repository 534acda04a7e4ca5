//! Shared pieces of the build tests: a loopback registry with the offline base images, build
//! contexts copied and pointed at it, buildah (the reference builder) in a private store, kiln
//! builds into oci-archives (docker-archives for `--format docker`, since pushing to an OCI
//! transport would drop the docker-only config fields), and `ocitree.py` summaries and diffs.

#![allow(dead_code)]

use kiln_tests::util::{CacheLock, HermeticHome, cache_dir, lossy, sha256_bytes};
use kiln_tests::{Kiln, Registry, Variant, bases};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The corpus of Dockerfile build contexts shared with the reference measurements.
pub const CORPUS: &str = "/work/shared/conformance/dockerfile";
/// The image comparer.
pub const OCITREE: &str = "/work/shared/tools/ocitree.py";
/// Where the corpus expects its base images.
pub const CORPUS_REGISTRY: &str = "127.0.0.1:5000";

/// This crate's own build contexts (`tests/conformance/NAME/`).
pub fn own_case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conformance")
        .join(name)
}

/// A loopback registry holding `busybox:latest` and, when asked, `debian:bookworm`.
pub struct Bases {
    /// The registry.
    pub reg: Registry,
    /// Manifest digests of what was pushed, for cache keys.
    pub digests: Vec<String>,
}

impl Bases {
    /// Start a registry and push busybox (always) and debian (when `debian`).
    pub fn start(debian: bool) -> Bases {
        let reg = Registry::start(Variant::Plain);
        let mut digests = vec![bases::push_busybox(&reg)];
        if debian {
            digests.push(bases::push_debian(&reg));
        }
        Bases { reg, digests }
    }

    /// Start a registry with the bases a Dockerfile names: busybox always, `debian:bookworm` and
    /// `debian-py:bookworm` when it mentions them.
    pub fn for_dockerfile(text: &str) -> Bases {
        let mut b = Bases::start(text.contains("/debian"));
        if text.contains("/debian-py") {
            let layout = debian_py_layout(&b);
            b.digests.push(bases::push_layout(
                &b.reg,
                &layout,
                "bookworm",
                "debian-py:bookworm",
                &[],
            ));
        }
        b
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.reg.host()
    }
}

/// The `debian-py:bookworm` base of the corpus (debian plus python3, pip, curl and
/// ca-certificates from the Debian mirror), built once per debian base with buildah from the
/// debian image in `bases` and cached as an OCI layout.
pub fn debian_py_layout(bases: &Bases) -> PathBuf {
    let debian = bases
        .digests
        .get(1)
        .expect("debian-py needs the debian base");
    let cache = cache_dir();
    let name = format!(
        "debian-py-oci-{}",
        &debian.trim_start_matches("sha256:")[..16]
    );
    let _lock = CacheLock::exclusive(&cache.join(format!("{name}.lock")));
    let dir = cache.join(&name);
    if dir.join("index.json").exists() {
        return dir;
    }
    let ctx = tempfile::tempdir().expect("temp dir");
    let dockerfile = format!(
        "FROM {}\nRUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\\n    python3 python3-pip curl ca-certificates \\\n && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/*.log\nCMD [\"python3\"]\n",
        bases.reg.reference("debian:bookworm")
    );
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("writing a Dockerfile");
    let b = Buildah::new(&bases.reg);
    let o = b.bud("localhost/debian-py:bookworm", ctx.path(), &[]);
    assert!(
        o.status.success(),
        "building debian-py with buildah failed:\n{}",
        lossy(&o.stderr)
    );
    let tmp = cache.join(format!("{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let o = b
        .cmd()
        .args(["push", "--quiet", "localhost/debian-py:bookworm"])
        .arg(format!("oci:{}:bookworm", tmp.display()))
        .output()
        .expect("buildah push");
    assert!(
        o.status.success(),
        "buildah push of debian-py failed:\n{}",
        lossy(&o.stderr)
    );
    std::fs::rename(&tmp, &dir).expect("publishing the debian-py layout");
    dir
}

/// Whether this machine reaches `https://pypi.org` (the corpus' HTTPS case needs it).
pub fn https_egress() -> bool {
    Command::new("curl")
        .args([
            "-fsS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "https://pypi.org/simple/six/",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// Copy the build context `src` into a fresh temporary directory (modes kept, `cp -a`), with
/// every `127.0.0.1:5000` in its Dockerfile and `bud.args` replaced by `host`, then run its
/// `prepare.py DIR` if it has one (for what git cannot hold: archives with chosen owners,
/// hardlinks, modes).
pub fn copy_context(src: &Path, host: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kiln-conf-ctx.")
        .tempdir()
        .expect("creating a context dir");
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dir.path())
        .status()
        .expect("running cp");
    assert!(st.success(), "cp -a {} failed", src.display());
    for f in ["Dockerfile", "bud.args"] {
        let p = dir.path().join(f);
        if let Ok(text) = std::fs::read_to_string(&p) {
            std::fs::write(&p, text.replace(CORPUS_REGISTRY, host))
                .unwrap_or_else(|e| panic!("rewriting {}: {e}", p.display()));
        }
    }
    let prepare = dir.path().join("prepare.py");
    if prepare.exists() {
        let st = Command::new("python3")
            .arg(&prepare)
            .arg(dir.path())
            .status()
            .expect("running python3");
        assert!(st.success(), "{} failed", prepare.display());
    }
    dir
}

/// The extra flags of a case: `bud.args` lines with `@CASE@` replaced by the context dir.
pub fn case_args(ctx: &Path) -> Vec<String> {
    std::fs::read_to_string(ctx.join("bud.args"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.replace("@CASE@", &ctx.display().to_string()))
        .collect()
}

/// A hash of a context directory's names, modes, file mtimes (a RUN can list them) and contents
/// (for the reference cache).
pub fn tree_hash(dir: &Path) -> String {
    fn walk(d: &Path, rel: &str, acc: &mut Vec<u8>) {
        let mut names: Vec<_> = std::fs::read_dir(d)
            .expect("listing a context")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let p = d.join(&n);
            let r = format!("{rel}/{}", n.to_string_lossy());
            let md = std::fs::symlink_metadata(&p).expect("stat");
            use std::os::unix::fs::MetadataExt;
            let mtime = if md.file_type().is_symlink() {
                0
            } else {
                md.mtime()
            };
            acc.extend_from_slice(format!("{r}\0{:o}\0{mtime}\0", md.mode()).as_bytes());
            if md.file_type().is_symlink() {
                acc.extend_from_slice(
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                );
            } else if md.is_dir() {
                walk(&p, &r, acc);
            } else {
                acc.extend_from_slice(sha256_bytes(&std::fs::read(&p).unwrap()).as_bytes());
            }
        }
    }
    let mut acc = Vec::new();
    walk(dir, "", &mut acc);
    sha256_bytes(&acc)
}

/// buildah with a private overlay store (`--root`/`--runroot` in a temp dir) and a hermetic
/// home whose `registries.conf` marks the test registry insecure. The store is wiped on drop.
pub struct Buildah {
    dir: tempfile::TempDir,
    home: HermeticHome,
}

impl Buildah {
    /// A fresh store for `reg`.
    pub fn new(reg: &Registry) -> Buildah {
        let dir = tempfile::Builder::new()
            .prefix("kiln-conf-buildah.")
            .tempdir_in("/var/tmp")
            .expect("creating a buildah dir");
        let home = HermeticHome::new();
        home.mark_insecure(&reg.host());
        Buildah { dir, home }
    }

    /// `buildah --root R --runroot R.run --storage-driver overlay ARGS…`, not yet run.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        self.home.apply(&mut c);
        c.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"));
        c.args(["--storage-driver", "overlay"]);
        c
    }

    /// `buildah bud --isolation chroot --layers --tls-verify=false -t NAME -f CTX/Dockerfile ARGS CTX`.
    pub fn bud(&self, name: &str, ctx: &Path, args: &[String]) -> Output {
        let mut c = self.cmd();
        c.args([
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--tls-verify=false",
            "-t",
            name,
            "-f",
        ])
        .arg(ctx.join("Dockerfile"))
        .args(args)
        .arg(ctx);
        c.output().expect("running buildah bud")
    }

    /// Push `name` to an archive at `out` ([`archive_dest`] for build flags `args`).
    pub fn push_archive(&self, name: &str, out: &Path, args: &[String]) {
        let mut c = self.cmd();
        c.args(["push", "--quiet", name])
            .arg(archive_dest(out, args));
        let o = c.output().expect("running buildah push");
        assert!(
            o.status.success(),
            "buildah push failed:\n{}",
            lossy(&o.stderr)
        );
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rmi", "--all", "--force"]).output();
        // The overlay driver keeps its home mounted; unmount what lies below our dir only.
        let me = self.dir.path().to_string_lossy().into_owned();
        if let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<String> = mi
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&me))
                .map(str::to_string)
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").arg("-l").arg(&p).output();
            }
        }
    }
}

/// The reference image of a case built by buildah, cached under the test cache by the case's
/// content, flags, base image digests and buildah's version (rebuilt when any changes;
/// `KILN_CONFORMANCE_FRESH=1` forces a rebuild). Panics with buildah's output when it fails.
pub fn reference(bases: &Bases, case: &str, src: &Path, ctx: &Path, args: &[String]) -> PathBuf {
    let raw_args = std::fs::read_to_string(src.join("bud.args")).unwrap_or_default();
    let version = Command::new("buildah")
        .arg("--version")
        .output()
        .map(|o| lossy(&o.stdout))
        .unwrap_or_default();
    let key = sha256_bytes(
        format!(
            "{}\n{raw_args}\n{}\n{}\n{version}v2",
            tree_hash(src),
            bases.digests.join(","),
            archive_dest(Path::new("x"), args)
        )
        .as_bytes(),
    );
    let dir = cache_dir().join("conformance-ref");
    std::fs::create_dir_all(&dir).expect("creating the reference cache");
    let out = dir.join(format!("{case}-{}.tar", &key[..16]));
    let fresh = std::env::var("KILN_CONFORMANCE_FRESH").is_ok_and(|v| v == "1");
    if out.exists() && !fresh {
        return out;
    }
    let b = Buildah::new(&bases.reg);
    let name = format!("localhost/ref/{case}");
    let o = b.bud(&name, ctx, args);
    assert!(
        o.status.success(),
        "buildah bud of {case} failed:\n--- stdout\n{}\n--- stderr\n{}",
        lossy(&o.stdout),
        lossy(&o.stderr)
    );
    let tmp = dir.join(format!(
        ".{case}-{}.tar.tmp-{}",
        &key[..16],
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    b.push_archive(&name, &tmp, args);
    std::fs::rename(&tmp, &out).expect("publishing a reference image");
    out
}

/// Where an image built with flags `args` is written: `docker-archive:OUT` for `--format
/// docker`, else `oci-archive:OUT:latest`.
pub fn archive_dest(out: &Path, args: &[String]) -> String {
    let docker = args
        .windows(2)
        .any(|w| w[0] == "--format" && w[1] == "docker")
        || args.iter().any(|a| a == "--format=docker");
    if docker {
        format!("docker-archive:{}", out.display())
    } else {
        format!("oci-archive:{}:latest", out.display())
    }
}

/// `kiln build --tls-verify=false -t ARCHIVE -f CTX/Dockerfile ARGS… CTX` ([`archive_dest`]).
pub fn kiln_build(kiln: &Kiln, ctx: &Path, args: &[String], out: &Path) -> Output {
    let mut c = kiln.cmd(["build", "--tls-verify=false"]);
    c.arg("-t")
        .arg(archive_dest(out, args))
        .arg("-f")
        .arg(ctx.join("Dockerfile"))
        .args(args)
        .arg(ctx);
    c.output().expect("running kiln build")
}

/// Like [`kiln_build`], panicking with kiln's output unless it succeeds; returns stdout.
pub fn kiln_build_ok(kiln: &Kiln, ctx: &Path, args: &[String], out: &Path) -> String {
    let o = kiln_build(kiln, ctx, args, out);
    assert!(
        o.status.success(),
        "kiln build of {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        ctx.display(),
        o.status,
        lossy(&o.stdout),
        lossy(&o.stderr)
    );
    lossy(&o.stdout)
}

/// The ignores every comparison uses: files buildah 1.28 leaves in RUN layers.
pub const BASE_IGNORES: &[&str] = &["/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run"];

/// `ocitree.py diff A B` with [`BASE_IGNORES`], `extra` path ignores, `io.buildah.*` labels
/// dropped and `keys` skipped; returns (equivalent, report).
pub fn diff(a: &Path, b: &Path, extra: &[&str], keys: &[&str]) -> (bool, String) {
    let mut c = Command::new("python3");
    c.arg(OCITREE).arg("diff").arg(a).arg(b);
    for i in BASE_IGNORES.iter().chain(extra) {
        c.arg("--ignore").arg(i);
    }
    for k in keys {
        c.arg("--ignore-key").arg(k);
    }
    c.args(["--ignore-label", "io.buildah.*"]);
    let o = c.output().expect("running ocitree.py");
    assert!(
        o.status.code() != Some(2),
        "ocitree.py diff errored:\n{}{}",
        lossy(&o.stdout),
        lossy(&o.stderr)
    );
    (
        o.status.success(),
        format!("{}{}", lossy(&o.stdout), lossy(&o.stderr)),
    )
}

/// `ocitree.py summary IMAGE` as JSON.
pub fn summary(image: &Path) -> Value {
    let o = Command::new("python3")
        .arg(OCITREE)
        .arg("summary")
        .arg(image)
        .output()
        .expect("running ocitree.py");
    assert!(
        o.status.success(),
        "ocitree.py summary {} failed:\n{}",
        image.display(),
        lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("ocitree summary is JSON")
}

/// The file entry at `path` of a summary.
pub fn file<'a>(s: &'a Value, path: &str) -> Option<&'a Value> {
    s["files"].as_array()?.iter().find(|f| f["path"] == path)
}

/// Assert that `path` in summary `s` is a regular file holding exactly `content`.
pub fn assert_file(s: &Value, path: &str, content: &[u8]) {
    let f = file(s, path).unwrap_or_else(|| panic!("{path} is not in the image"));
    assert_eq!(f["type"], "file", "{path}: {f}");
    assert_eq!(
        f["sha256"].as_str(),
        Some(sha256_bytes(content).as_str()),
        "{path} should hold {:?}: {f}",
        lossy(content)
    );
}

/// The bytes of blob `digest` (`sha256:…`) of an oci-archive.
pub fn archive_blob(archive: &Path, digest: &str) -> Vec<u8> {
    let member = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let o = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(&member)
        .output()
        .expect("running tar");
    assert!(
        o.status.success(),
        "{member} not in {}: {}",
        archive.display(),
        lossy(&o.stderr)
    );
    o.stdout
}

/// The image config (JSON) of an oci-archive, via its summary's config digest.
pub fn archive_config(archive: &Path) -> Value {
    let s = summary(archive);
    let digest = s["meta"]["config_digest"]
        .as_str()
        .expect("summary names the config digest")
        .to_string();
    serde_json::from_slice(&archive_blob(archive, &digest)).expect("the config is JSON")
}

/// The entries (path, mtime) of the topmost layer of an oci-archive.
pub fn archive_top_layer(archive: &Path) -> Vec<(String, u64)> {
    let s = summary(archive);
    let top = s["meta"]["layer_digests"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(Value::as_str)
        .expect("the image has layers")
        .to_string();
    let blob = archive_blob(archive, &top);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
    tar.entries()
        .expect("the layer is a tar")
        .map(|e| {
            let e = e.expect("a layer entry");
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().mtime().unwrap(),
            )
        })
        .collect()
}

/// Whether the output of a build says every step came from the cache.
pub fn all_cached(stdout: &str) -> bool {
    let steps = stdout
        .lines()
        .filter(|l| l.contains(" STEP ") && !l.contains(": FROM "))
        .count();
    let hits = stdout
        .lines()
        .filter(|l| l.trim() == "--> Using cache")
        .count();
    steps > 0 && steps == hits
}
