//! Base images made offline, with no public registry: `busybox` from the host's static busybox and
//! `debian:bookworm` from `debootstrap --variant=minbase` against the machine's Debian mirror.
//! Both are written as OCI layouts (by [`Layout`], which tests can also use to craft their own
//! images), cached under [`cache_dir`], and pushed to a test [`Registry`] with skopeo.
//!
//! The busybox layout is keyed by the busybox binary's digest; the debian rootfs tarball and layout
//! by the day (UTC) they were made, so a day's reruns skip the 30–60 s debootstrap.

use crate::registry::Registry;
use crate::skopeo::Skopeo;
use crate::util::{CacheLock, cache_dir, oci_arch, run_ok, sha256_file};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `PATH` both base images set.
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How [`Layout::add_image`] stores a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`.
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar`.
    None,
}

/// What goes into an image's configuration.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// OCI architecture (`amd64`, `arm64`, …).
    pub arch: String,
    /// OCI operating system.
    pub os: String,
    /// Optional platform variant (`v8`, …).
    pub variant: Option<String>,
    /// `config.Env`.
    pub env: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// Layer compression.
    pub compression: Compression,
    /// `history[].created_by` for every layer.
    pub created_by: String,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            arch: oci_arch().to_string(),
            os: "linux".into(),
            variant: None,
            env: vec![PATH_ENV.into()],
            cmd: vec!["/bin/sh".into()],
            compression: Compression::Gzip,
            created_by: "kiln-tests".into(),
        }
    }
}

/// An OCI image layout directory being written: blobs, then `index.json` entries via [`Layout::tag`].
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    entries: Vec<Value>,
}

impl Layout {
    /// Start a layout in `dir` (created; existing `index.json` entries are kept).
    pub fn create(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("creating blobs/sha256");
        std::fs::write(dir.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}")
            .expect("writing oci-layout");
        let entries = std::fs::read(dir.join("index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["manifests"].as_array().cloned())
            .unwrap_or_default();
        Layout {
            dir: dir.to_path_buf(),
            entries,
        }
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Store `bytes` as a blob; returns a descriptor with `media_type`.
    pub fn add_blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).expect("writing a blob");
        json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
    }

    /// Store the tar file `tar` as a layer blob with `compression`; returns (descriptor, diff id).
    pub fn add_layer(&self, tar: &Path, compression: Compression) -> (Value, String) {
        let mut src =
            std::fs::File::open(tar).unwrap_or_else(|e| panic!("opening {}: {e}", tar.display()));
        let tmp = self
            .dir
            .join(format!("blobs/sha256/.tmp-{}", std::process::id()));
        let out = std::fs::File::create(&tmp).expect("creating a temporary blob");
        let mut hashed = HashWriter {
            inner: std::io::BufWriter::new(out),
            hash: Sha256::new(),
            n: 0,
        };
        let mut diff = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let media_type;
        match compression {
            Compression::Gzip => {
                media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
                let mut gz =
                    flate2::write::GzEncoder::new(&mut hashed, flate2::Compression::new(6));
                loop {
                    let n = src.read(&mut buf).expect("reading the layer tar");
                    if n == 0 {
                        break;
                    }
                    diff.update(&buf[..n]);
                    gz.write_all(&buf[..n]).expect("compressing the layer");
                }
                gz.finish().expect("finishing gzip");
            }
            Compression::None => {
                media_type = "application/vnd.oci.image.layer.v1.tar";
                loop {
                    let n = src.read(&mut buf).expect("reading the layer tar");
                    if n == 0 {
                        break;
                    }
                    diff.update(&buf[..n]);
                    hashed.write_all(&buf[..n]).expect("writing the layer");
                }
            }
        }
        hashed.inner.flush().expect("flushing the layer blob");
        let hex = hex::encode(hashed.hash.finalize());
        std::fs::rename(&tmp, self.dir.join("blobs/sha256").join(&hex))
            .expect("renaming the layer blob");
        let desc =
            json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": hashed.n});
        (desc, format!("sha256:{}", hex::encode(diff.finalize())))
    }

    /// Write an image made of the layer tars `layers` (bottom first) with `spec`; returns its
    /// manifest descriptor, carrying the platform.
    pub fn add_image(&self, layers: &[&Path], spec: &ImageSpec) -> Value {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        for l in layers {
            let (d, id) = self.add_layer(l, spec.compression);
            descs.push(d);
            diff_ids.push(id);
            history.push(json!({"created": "1970-01-01T00:00:00Z", "created_by": spec.created_by}));
        }
        let mut config = json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": spec.arch,
            "os": spec.os,
            "config": {"Env": spec.env, "Cmd": spec.cmd},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        if let Some(v) = &spec.variant {
            config["variant"] = json!(v);
        }
        let config_desc = self.add_blob(
            "application/vnd.oci.image.config.v1+json",
            config.to_string().as_bytes(),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": descs,
        });
        let mut desc = self.add_blob(
            "application/vnd.oci.image.manifest.v1+json",
            manifest.to_string().as_bytes(),
        );
        let mut platform = json!({"architecture": spec.arch, "os": spec.os});
        if let Some(v) = &spec.variant {
            platform["variant"] = json!(v);
        }
        desc["platform"] = platform;
        desc
    }

    /// Write an image index over `manifests` (descriptors from [`Layout::add_image`]); returns its descriptor.
    pub fn add_index(&self, manifests: &[Value]) -> Value {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        self.add_blob(
            "application/vnd.oci.image.index.v1+json",
            index.to_string().as_bytes(),
        )
    }

    /// Name `desc` `ref_name` in `index.json` (replacing an entry of that name) and write it.
    pub fn tag(&mut self, desc: &Value, ref_name: &str) {
        const KEY: &str = "org.opencontainers.image.ref.name";
        self.entries.retain(|e| e["annotations"][KEY] != ref_name);
        let mut d = desc.clone();
        d["annotations"] = json!({ KEY: ref_name });
        self.entries.push(d);
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.entries});
        std::fs::write(self.dir.join("index.json"), index.to_string()).expect("writing index.json");
    }
}

struct HashWriter<W: Write> {
    inner: W,
    hash: Sha256,
    n: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Deterministic `tar` of a directory's contents (sorted, mtime 0, numeric ids), as make-bases does.
pub fn tar_dir(dir: &Path, out: &Path, force_root_owner: bool) {
    let mut c = Command::new("tar");
    c.args([
        "--sort=name",
        "--mtime=@0",
        "--numeric-owner",
        "--xattrs",
        "--acls",
    ]);
    if force_root_owner {
        c.args(["--owner=0", "--group=0"]);
    }
    run_ok(c.arg("-C").arg(dir).arg("-cf").arg(out).arg("."));
}

/// Build (once, then cached) `dir` by running `make` on a fresh temporary directory beside it,
/// under a lock so concurrent test processes build it only once.
fn cached(name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let cache = cache_dir();
    let _lock = CacheLock::exclusive(&cache.join(format!("{name}.lock")));
    let dir = cache.join(name);
    if dir.join("index.json").exists() {
        return dir;
    }
    let tmp = cache.join(format!("{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("creating a cache build dir");
    make(&tmp);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).expect("publishing a cache entry");
    dir
}

/// The busybox rootfs: `/bin/busybox`, applet symlinks at their canonical paths, passwd/group.
pub fn busybox_rootfs(r: &Path) {
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "home", "var", "dev", "proc",
        "sys",
    ] {
        std::fs::create_dir_all(r.join(d)).expect("creating rootfs dirs");
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod /tmp");
    std::fs::set_permissions(r.join("root"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod /root");
    std::fs::copy("/usr/bin/busybox", r.join("bin/busybox"))
        .expect("copying /usr/bin/busybox (busybox-static)");
    std::fs::set_permissions(
        r.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod busybox");
    let list = run_ok(Command::new(r.join("bin/busybox")).arg("--list-full")).stdout;
    for p in String::from_utf8_lossy(&list)
        .lines()
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "bin/busybox")
    {
        let link = r.join(p);
        std::fs::create_dir_all(link.parent().expect("applet path has a parent"))
            .expect("creating applet dir");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/bin/busybox", &link).expect("creating an applet symlink");
    }
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("writing /etc/passwd");
    std::fs::write(r.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")
        .expect("writing /etc/group");
}

/// The cached busybox OCI layout (one gzip layer, `Cmd ["/bin/sh"]`), tagged `latest`.
pub fn busybox_layout() -> PathBuf {
    let key = &sha256_file(Path::new("/usr/bin/busybox"))[..16];
    cached(&format!("busybox-oci-{}-{key}", oci_arch()), |tmp| {
        let rootfs = tmp.join("rootfs");
        busybox_rootfs(&rootfs);
        let tar = tmp.join("rootfs.tar");
        tar_dir(&rootfs, &tar, true);
        let layout_dir = tmp.join("layout");
        let mut layout = Layout::create(&layout_dir);
        let spec = ImageSpec {
            created_by: "kiln-tests: busybox from /usr/bin/busybox".into(),
            ..ImageSpec::default()
        };
        let desc = layout.add_image(&[&tar], &spec);
        layout.tag(&desc, "latest");
        move_layout_up(tmp);
    })
}

/// Move `tmp/layout/*` to `tmp/` and drop the other build files, so `tmp` is the layout.
fn move_layout_up(tmp: &Path) {
    for e in std::fs::read_dir(tmp).expect("listing the build dir") {
        let p = e.expect("dir entry").path();
        if p.file_name() != Some(std::ffi::OsStr::new("layout")) {
            if p.is_dir() {
                std::fs::remove_dir_all(&p).expect("cleaning the build dir");
            } else {
                std::fs::remove_file(&p).expect("cleaning the build dir");
            }
        }
    }
    for e in std::fs::read_dir(tmp.join("layout")).expect("listing the layout") {
        let p = e.expect("dir entry").path();
        std::fs::rename(&p, tmp.join(p.file_name().expect("entry name")))
            .expect("moving the layout up");
    }
    std::fs::remove_dir(tmp.join("layout")).expect("removing the empty layout dir");
}

/// The Debian mirror: `$DEBIAN_MIRROR`, else the first `URIs:` of the apt sources, else deb.debian.org.
pub fn debian_mirror() -> String {
    if let Ok(m) = std::env::var("DEBIAN_MIRROR")
        && !m.is_empty()
    {
        return m;
    }
    let sources =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    sources
        .lines()
        .find_map(|l| {
            l.strip_prefix("URIs:")
                .map(|u| u.split_whitespace().next().unwrap_or("").to_string())
        })
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// Today's date (UTC) as `YYYYMMDD`, the debian cache key.
fn today() -> String {
    let out = run_ok(Command::new("date").args(["-u", "+%Y%m%d"])).stdout;
    String::from_utf8_lossy(&out).trim().to_string()
}

/// The cached debootstrap minbase rootfs tarball of today, made if missing (needs root; 30–60 s).
/// Older days' tarballs and layouts are removed when a new one is made.
pub fn debian_rootfs_tar() -> PathBuf {
    let cache = cache_dir();
    let day = today();
    let tar = cache.join(format!("debian-bookworm-minbase-{day}.tar"));
    let _lock = CacheLock::exclusive(&cache.join("debian-rootfs.lock"));
    if tar.exists() {
        return tar;
    }
    let r = cache.join(format!("debian-rootfs.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&r);
    let mirror = debian_mirror();
    let log = cache.join("debootstrap.log");
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&r)
        .arg(&mirror)
        .stdout(std::fs::File::create(&log).expect("creating debootstrap.log"))
        .stderr(
            std::fs::File::options()
                .append(true)
                .open(&log)
                .expect("opening debootstrap.log"),
        )
        .status()
        .expect("running debootstrap (is it installed? it needs root)");
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let _ = std::fs::remove_dir_all(&r);
        panic!(
            "debootstrap from {mirror} failed ({status}); log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    debian_cleanups(&r, &mirror);
    let tmp_tar = cache.join(format!(
        "debian-bookworm-minbase-{day}.tar.tmp-{}",
        std::process::id()
    ));
    tar_dir(&r, &tmp_tar, false);
    std::fs::rename(&tmp_tar, &tar).expect("publishing the debian tarball");
    std::fs::remove_dir_all(&r).expect("removing the debootstrap rootfs");
    for e in std::fs::read_dir(&cache)
        .expect("listing the cache")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = (name.starts_with("debian-bookworm-minbase-")
            || name.starts_with("debian-bookworm-oci-"))
            && !name.contains(&day)
            && !name.ends_with(".lock");
        if old {
            let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
        }
    }
    tar
}

/// Container-style cleanups, like the official image: apt sources for the mirror, no caches, logs,
/// device nodes, resolv.conf or hostname; services never start (`policy-rc.d`).
fn debian_cleanups(r: &Path, mirror: &str) {
    let security = format!(
        "{}/debian-security",
        mirror.trim_end_matches('/').trim_end_matches("/debian")
    );
    std::fs::write(
        r.join("etc/apt/sources.list"),
        format!("deb {mirror} bookworm main\ndeb {mirror} bookworm-updates main\ndeb {security} bookworm-security main\n"),
    )
    .expect("writing sources.list");
    let rc = r.join("usr/sbin/policy-rc.d");
    std::fs::write(&rc, "#!/bin/sh\nexit 101\n").expect("writing policy-rc.d");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o755))
        .expect("chmod policy-rc.d");
    for d in [
        "var/lib/apt/lists",
        "var/log/apt",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
    ] {
        empty_dir(&r.join(d));
    }
    for (d, suffix) in [
        ("var/cache/apt", ".bin"),
        ("var/cache/apt/archives", ".deb"),
        ("var/log", ".log"),
    ] {
        if let Ok(rd) = std::fs::read_dir(r.join(d)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(suffix) && e.path().is_file() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    for f in [
        "etc/resolv.conf",
        "etc/hostname",
        "var/cache/ldconfig/aux-cache",
    ] {
        let _ = std::fs::remove_file(r.join(f));
    }
    let _ = std::fs::write(r.join("etc/machine-id"), "");
}

fn empty_dir(d: &Path) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let _ = if is_dir {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// The cached debian:bookworm OCI layout (one gzip layer, `Cmd ["bash"]`), tagged `bookworm`.
pub fn debian_layout() -> PathBuf {
    let tar = debian_rootfs_tar();
    cached(
        &format!("debian-bookworm-oci-{}-{}", oci_arch(), today()),
        |tmp| {
            let layout_dir = tmp.join("layout");
            let mut layout = Layout::create(&layout_dir);
            let spec = ImageSpec {
                cmd: vec!["bash".into()],
                created_by: "kiln-tests: debootstrap --variant=minbase bookworm".into(),
                ..ImageSpec::default()
            };
            let desc = layout.add_image(&[&tar], &spec);
            layout.tag(&desc, "bookworm");
            move_layout_up(tmp);
        },
    )
}

/// Push an OCI layout's `ref_name` to `reg` as `repo_and_tag` with skopeo; returns the manifest
/// digest the registry stored.
pub fn push_layout(
    reg: &Registry,
    layout: &Path,
    ref_name: &str,
    repo_and_tag: &str,
    extra: &[&str],
) -> String {
    let skopeo = Skopeo::new();
    let digest_file = tempfile::NamedTempFile::new().expect("creating a digest file");
    let mut flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    flags.push(format!("--digestfile={}", digest_file.path().display()));
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    skopeo.copy_to(
        &format!("oci:{}:{ref_name}", layout.display()),
        reg,
        repo_and_tag,
        &flag_refs,
    );
    std::fs::read_to_string(digest_file.path())
        .expect("reading skopeo's digest file")
        .trim()
        .to_string()
}

/// Push `busybox:latest` to `reg`; returns its manifest digest.
pub fn push_busybox(reg: &Registry) -> String {
    push_layout(reg, &busybox_layout(), "latest", "busybox:latest", &[])
}

/// Push `debian:bookworm` to `reg` (debootstrap on the first call of the day); returns its digest.
pub fn push_debian(reg: &Registry) -> String {
    push_layout(reg, &debian_layout(), "bookworm", "debian:bookworm", &[])
}
