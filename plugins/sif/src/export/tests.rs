//! End-to-end export tests: layers built with the `tar` crate, the SIF checked with siftool,
//! the partition read back with unsquashfs, and a chroot smoke test of env + runscript.

use super::*;
use crate::sink::VecSink;
use crate::test_util::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

const T0: u64 = 1_600_000_000;

/// Builds one layer tar.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(T0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h
    }

    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode);
        self.0.append_data(&mut h, path, &b""[..]).unwrap();
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_as(path, 0o644, 0, T0, data)
    }

    fn file_as(mut self, path: &str, mode: u32, uid: u64, mtime: u64, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut h = Self::header(kind, 0o777);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn dev(mut self, kind: tar::EntryType, path: &str, major: u32, minor: u32) -> Self {
        let mut h = Self::header(kind, 0o666);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, path, &b""[..]).unwrap();
        self
    }

    fn with_xattr(mut self, path: &str, data: &[u8]) -> Self {
        self.0.append_pax_extensions([("SCHILY.xattr.user.test", &b"v"[..])]).unwrap();
        self = self.file(path, data);
        self
    }

    fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

struct MemLayers {
    layers: Vec<Vec<u8>>,
    opened: Vec<usize>,
}

impl Layers for MemLayers {
    fn open(&mut self, index: usize) -> Result<Box<dyn Read + '_>> {
        self.opened.push(index);
        Ok(Box::new(&self.layers[index][..]))
    }
}

fn config(env: &[&str], entrypoint: &[&str], cmd: &[&str]) -> Vec<u8> {
    serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {
            "Env": env,
            "Entrypoint": if entrypoint.is_empty() { serde_json::Value::Null } else { serde_json::json!(entrypoint) },
            "Cmd": cmd,
            "Labels": {"org.example.team": "kiln"},
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": []}
    })
    .to_string()
    .into_bytes()
}

struct Out {
    bytes: Vec<u8>,
    summary: Summary,
    opened: Vec<usize>,
    warnings: Vec<String>,
}

fn run_export(layers: Vec<Vec<u8>>, cfg: &[u8], timestamp: Option<i64>, options: &[(&str, &str)]) -> Result<Out> {
    let digests: Vec<String> = (0..layers.len()).map(|i| format!("sha256:{:064x}", i + 1)).collect();
    let names = vec!["registry.example/kiln/test:1".to_string()];
    let options: Vec<(String, String)> = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let req = Request {
        names: &names,
        config_json: cfg,
        manifest_digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        layer_digests: &digests,
        timestamp,
        options: &options,
    };
    let mut src = MemLayers {
        layers,
        opened: Vec::new(),
    };
    let mut sink = VecSink::default();
    let mut gzip = native_compress(Compression::Gzip);
    let mut zstd = native_compress(Compression::Zstd);
    let mut xz = native_compress(Compression::Xz);
    let mut codec = |c: Compression, blocks: &[Vec<u8>]| match c {
        Compression::Gzip => gzip(blocks),
        Compression::Zstd => zstd(blocks),
        Compression::Xz => xz(blocks),
    };
    let mut warnings = Vec::new();
    let mut warn = |m: &str| warnings.push(m.to_string());
    let summary = export(
        &req,
        &mut src,
        &mut sink,
        Hooks {
            codec: &mut codec,
            background: None,
            cancelled: &|| false,
            warn: &mut warn,
        },
    )?;
    Ok(Out {
        bytes: sink.bytes,
        summary,
        opened: src.opened,
        warnings,
    })
}

fn busybox() -> Option<Vec<u8>> {
    std::fs::read("/bin/busybox").ok()
}

/// Three layers exercising whiteouts, opaque directories, type changes, hard links across
/// shadowing and layers, duplicates, implied directories and xattrs.
fn scenario_layers(bb: &[u8]) -> Vec<Vec<u8>> {
    use tar::EntryType as E;
    let l0 = Layer::new()
        .dir("./", 0o755)
        .dir("bin/", 0o755)
        .file_as("bin/busybox", 0o755, 0, T0, bb)
        .link(E::Symlink, "bin/sh", "busybox")
        .dir("etc/", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .file("etc/hosts", b"127.0.0.1 layer0\n")
        .dir("a/", 0o755)
        .file("a/keep", b"keep")
        .file("a/gone", b"gone")
        .dir("a/sub/", 0o755)
        .file("a/sub/deep", b"deep")
        .dir("opq/", 0o755)
        .file("opq/old", b"old")
        .file("f2d", b"was a file")
        .dir("d2f/", 0o755)
        .file("d2f/child", b"child")
        .dir("hard/", 0o755)
        .file("hard/orig", b"v1")
        .link(E::Link, "hard/link", "hard/orig")
        .dir("usr/", 0o755)
        .dir("usr/lib/", 0o755)
        .file("usr/lib/x", b"lowx")
        .dir("dev/", 0o755)
        .dev(E::Char, "dev/null", 1, 3)
        .dev(E::Fifo, "dev/fifo", 0, 0)
        .dir("gonedir/", 0o755)
        .file("gonedir/inner", b"x")
        .file_as("owned", 0o600, 1000, T0 + 5, b"mine")
        .file("big", &noise(300_000, 3))
        .with_xattr("xattrfile", b"xa")
        .build();
    let l1 = Layer::new()
        .file("a/.wh.gone", b"")
        .dir("opq/", 0o700)
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"new")
        .dir("f2d/", 0o755)
        .file("f2d/inside", b"inside")
        .file("d2f", b"now a file")
        .file("hard/orig", b"v2")
        .link(E::Link, "lowlink", "usr/lib/x")
        .file("dup", b"1")
        .file("dup", b"22")
        .file(".wh.gonedir", b"")
        .file("etc/hosts", b"from layer1\n")
        .build();
    let l2 = Layer::new()
        .file("a/sub/.wh.deep", b"")
        .file("newdir/implied/file", b"implied parents")
        .dir("a/", 0o750)
        .build();
    vec![l0, l1, l2]
}

fn i64_at(b: &[u8], o: usize) -> i64 {
    i64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn partition(out: &Out) -> &[u8] {
    let o = out.summary.partition_offset as usize;
    &out.bytes[o..o + out.summary.partition_size as usize]
}

#[test]
fn scenario_sif_is_apptainer_shaped() {
    let Some(bb) = busybox() else { return };
    if !have("unsquashfs") || !have("siftool") {
        return;
    }
    let cfg = config(
        &["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello world", "QUOTED=a\"b$c"],
        &[],
        &["sh", "-c", "echo \"$GREETING\""],
    );
    let out = run_export(scenario_layers(&bb), &cfg, None, &[]).unwrap();
    assert_eq!(
        out.opened,
        vec![2, 1, 0, 0],
        "layer 0 is read again for the shadowed hard link target"
    );
    assert!(
        out.warnings.iter().any(|w| w.contains("1 extended attributes")),
        "{:?}",
        out.warnings
    );

    // Raw header and descriptor checks (sif.md §5).
    let b = &out.bytes;
    assert_eq!(&b[..31], sif::LAUNCH_SCRIPT.as_bytes());
    assert_eq!(&b[32..42], b"SIF_MAGIC\0");
    assert_eq!(&b[42..45], b"01\0");
    assert_eq!(&b[45..48], b"02\0");
    assert_ne!(&b[48..64], &[0u8; 16], "UUID is derived from the manifest digest");
    assert_eq!(b[48 + 6] >> 4, 4);
    let created = 1_704_164_645; // config "created"
    assert_eq!((i64_at(b, 64), i64_at(b, 72)), (created, created));
    assert_eq!(
        (i64_at(b, 80), i64_at(b, 88), i64_at(b, 96), i64_at(b, 104), i64_at(b, 112)),
        (44, 48, 4096, 28080, 32176)
    );
    assert_eq!(i64_at(b, 120) as usize, b.len() - 32176);
    assert!(b[128..4096].iter().all(|&x| x == 0));
    assert!(b[4096 + 4 * 585..32176].iter().all(|&x| x == 0));
    let part = out.summary.partition_offset;
    assert_eq!(part % 4096, 0);
    assert_eq!(out.summary.file_size, b.len() as u64);
    assert_eq!(b.len() as u64, part + out.summary.partition_size);
    assert!(out.summary.partition_size >= 2048);
    assert_eq!(&partition(&out)[..4], b"hsqs");

    let dir = Scratch::new("export");
    let sif_path = dir.join("out.sif");
    std::fs::write(&sif_path, b).unwrap();
    let header = run(Command::new("siftool").arg("header").arg(&sif_path));
    assert!(header.contains("Primary Architecture: amd64"), "{header}");
    assert!(header.contains("Launch Script:") && header.contains("run-singularity"), "{header}");
    let list = run(Command::new("siftool").arg("list").arg(&sif_path));
    let rows: Vec<&str> = list.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).collect();
    assert_eq!(rows.len(), 4, "{list}");
    assert!(
        rows[0].starts_with("1    |1       |NONE") && rows[0].ends_with("|Def.FILE"),
        "{list}"
    );
    assert!(rows[1].ends_with("|JSON.Generic") && rows[2].ends_with("|JSON.Generic"), "{list}");
    assert!(rows[3].ends_with("|FS (Squashfs/*System/amd64)"), "{list}");
    let info = run(Command::new("siftool").arg("info").arg("4").arg(&sif_path));
    assert!(info.contains(&format!("Offset:           {part}")), "{info}");
    let info2 = run(Command::new("siftool").arg("info").arg("2").arg(&sif_path));
    assert!(info2.contains("inspect-metadata.json"), "{info2}");
    let def = run(Command::new("siftool").arg("dump").arg("1").arg(&sif_path));
    assert_eq!(def, "bootstrap: docker\nfrom: registry.example/kiln/test:1\n\n");
    let oci = run(Command::new("siftool").arg("dump").arg("3").arg(&sif_path));
    let oci: serde_json::Value = serde_json::from_str(&oci).unwrap();
    assert_eq!(oci["Cmd"], serde_json::json!(["sh", "-c", "echo \"$GREETING\""]));
    assert!(oci.get("WorkingDir").is_none() || oci["WorkingDir"] == "/");
    let inspect = run(Command::new("siftool").arg("dump").arg("2").arg(&sif_path));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["type"], "container");
    assert_eq!(inspect["data"]["attributes"]["labels"]["org.example.team"], "kiln");

    // The tree, read in place at the partition offset.
    let listing = unsquashfs_list(&sif_path, Some(part));
    let by_path: BTreeMap<String, String> = listing
        .iter()
        .map(|l| {
            let p = l.splitn(4, ' ').nth(3).unwrap();
            (p.split(" -> ").next().unwrap().to_string(), l.clone())
        })
        .collect();
    for absent in ["/a/gone", "/a/sub/deep", "/opq/old", "/d2f/child", "/gonedir", "/gonedir/inner"] {
        assert!(!by_path.contains_key(absent), "{absent} should be gone:\n{}", listing.join("\n"));
    }
    assert!(!listing.iter().any(|l| l.contains(".wh.")), "{}", listing.join("\n"));
    for (path, starts) in [
        ("/a", "drwxr-x--- 0/0"),
        ("/opq", "drwx------ 0/0"),
        ("/f2d", "drwxr-xr-x"),
        ("/d2f", "-rw-r--r-- 0/0 10"),
        ("/owned", "-rw------- 1000/1000 4"),
        ("/bin/sh", "lrwxrwxrwx 0/0 7 /bin/sh -> busybox"),
        ("/dev/null", "crw-rw-rw- 0/0 1,3"),
        ("/dev/fifo", "prw-rw-rw-"),
        ("/newdir", "drwxr-xr-x 0/0"),
        ("/newdir/implied/file", "-rw-r--r-- 0/0 15"),
        ("/etc/hosts", "-rw-r--r-- 0/0 0"),
        ("/etc/resolv.conf", "-rw-r--r-- 0/0 0"),
        ("/tmp", "drwxrwxrwt 0/0"),
        ("/var/tmp", "drwxrwxrwt 0/0"),
        ("/proc", "drwxr-xr-x 0/0"),
        ("/sys", "drwxr-xr-x 0/0"),
        ("/home", "drwxr-xr-x 0/0"),
        ("/root", "drwx------ 0/0"),
        ("/.singularity.d/libs", "drwxr-xr-x 0/0"),
        ("/.singularity.d/runscript", "-rwxr-xr-x 0/0"),
        ("/.singularity.d/labels.json", "-rw-r--r-- 0/0"),
        ("/.singularity.d/Singularity", "-rw-r--r-- 0/0 54"),
        ("/.singularity.d/startscript", "-rwxr-xr-x"),
        ("/.singularity.d/env/10-docker2singularity.sh", "-rwxr-xr-x"),
        ("/.singularity.d/env/01-base.sh", "-rwxr-xr-x"),
        ("/.singularity.d/env/90-environment.sh", "-rwxr-xr-x"),
        ("/.singularity.d/env/95-apps.sh", "-rwxr-xr-x"),
        ("/.singularity.d/env/99-base.sh", "-rwxr-xr-x"),
        ("/.singularity.d/env/99-runtimevars.sh", "-rwxr-xr-x"),
        ("/.singularity.d/actions/exec", "-rwxr-xr-x"),
        ("/.singularity.d/actions/run", "-rwxr-xr-x"),
        ("/.singularity.d/actions/shell", "-rwxr-xr-x"),
        ("/.singularity.d/actions/start", "-rwxr-xr-x"),
        ("/.singularity.d/actions/test", "-rwxr-xr-x"),
        ("/singularity", "lrwxrwxrwx 0/0 24 /singularity -> .singularity.d/runscript"),
        (
            "/environment",
            "lrwxrwxrwx 0/0 36 /environment -> .singularity.d/env/90-environment.sh",
        ),
        ("/.run", "lrwxrwxrwx 0/0 26 /.run -> .singularity.d/actions/run"),
        ("/.exec", "lrwxrwxrwx"),
        ("/.shell", "lrwxrwxrwx"),
        ("/.test", "lrwxrwxrwx"),
    ] {
        let line = by_path
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing:\n{}", listing.join("\n")));
        assert!(line.starts_with(starts), "{path}: {line}");
    }

    // Extract and compare contents.
    let root = dir.join("root");
    let sqfs = dir.join("r.sqfs");
    std::fs::write(&sqfs, partition(&out)).unwrap();
    let s = run(Command::new("unsquashfs").arg("-s").arg(&sqfs));
    assert!(s.contains("Compression gzip") && s.contains("Block size 131072"), "{s}");
    unsquashfs_extract(&sqfs, None, &root);
    let read = |p: &str| std::fs::read(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("hard/link"), b"v1");
    assert_eq!(read("hard/orig"), b"v2");
    assert_eq!(read("lowlink"), b"lowx");
    assert_eq!(read("dup"), b"22");
    assert_eq!(read("a/keep"), b"keep");
    assert_eq!(read("f2d/inside"), b"inside");
    assert_eq!(read("opq/new"), b"new");
    assert_eq!(read("big"), noise(300_000, 3));
    assert_eq!(read("bin/busybox"), bb);
    assert_eq!(read("xattrfile"), b"xa");
    if let Some(m) = kernel_mount(&sif_path, part, &dir.join("mnt")) {
        compare_trees(&root, &m.0);
    }
    let low = std::fs::metadata(root.join("lowlink")).unwrap();
    let x = std::fs::metadata(root.join("usr/lib/x")).unwrap();
    assert_eq!(low.ino(), x.ino(), "a cross-layer hard link shares the lower file's inode");
    assert_ne!(
        std::fs::metadata(root.join("hard/link")).unwrap().ino(),
        std::fs::metadata(root.join("hard/orig")).unwrap().ino()
    );
    assert_eq!(std::fs::metadata(root.join("owned")).unwrap().mtime(), T0 as i64 + 5);
    assert_eq!(String::from_utf8(read(".singularity.d/Singularity")).unwrap(), def);
    let labels: serde_json::Value = serde_json::from_slice(&read(".singularity.d/labels.json")).unwrap();
    assert_eq!(labels["org.example.team"], "kiln");
    assert_eq!(labels["org.label-schema.build-arch"], "amd64");
    let env = String::from_utf8(read(".singularity.d/env/10-docker2singularity.sh")).unwrap();
    assert_eq!(
        env,
        "#!/bin/sh\nexport PATH=\"/usr/local/bin:/usr/bin:/bin\"\nexport GREETING=\"${GREETING:-\"hello world\"}\"\nexport QUOTED=\"${QUOTED:-\"a\\\"b\\$c\"}\"\n"
    );

    // Smoke test: source the env scripts and run the runscript in a chroot (root only).
    let chroot = run(Command::new("sh").arg("-c").arg("command -v chroot || true"))
        .trim()
        .to_string();
    if !chroot.is_empty() && run(Command::new("id").arg("-u")).trim() == "0" {
        let smoke = Command::new(&chroot)
            .arg(&root)
            .arg("/bin/sh")
            .arg("-c")
            .arg("for s in /.singularity.d/env/*.sh; do . \"$s\"; done; exec /.singularity.d/runscript")
            .env_clear()
            .output()
            .unwrap();
        assert!(smoke.status.success(), "{}", String::from_utf8_lossy(&smoke.stderr));
        assert_eq!(String::from_utf8_lossy(&smoke.stdout), "hello world\n");
        let args = Command::new(&chroot)
            .arg(&root)
            .arg("/singularity")
            .arg("echo")
            .arg("from args")
            .env_clear()
            .env("PATH", "/bin")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&args.stdout),
            "from args\n",
            "{}",
            String::from_utf8_lossy(&args.stderr)
        );
    }
}

#[test]
fn reproducible_with_timestamp() {
    let layers = || {
        vec![
            Layer::new()
                .file_as("late", 0o644, 0, 2_000_000_000, b"future")
                .file_as("early", 0o644, 0, 1000, b"past")
                .build(),
        ]
    };
    let cfg = config(&["PATH=/bin"], &["/bin/true"], &[]);
    let ts = 1_700_000_000;
    let a = run_export(layers(), &cfg, Some(ts), &[]).unwrap();
    let b = run_export(layers(), &cfg, Some(ts), &[]).unwrap();
    assert!(a.bytes == b.bytes, "two exports with the same timestamp differ");
    assert_eq!(&a.bytes[48..64], &[0u8; 16], "nil UUID");
    assert_eq!((i64_at(&a.bytes, 64), i64_at(&a.bytes, 72)), (ts, ts));
    for i in 0..4 {
        let d = 4096 + i * 585;
        assert_eq!((i64_at(&a.bytes, d + 41), i64_at(&a.bytes, d + 49)), (ts, ts));
    }
    let p = partition(&a);
    assert_eq!(u32::from_le_bytes(p[8..12].try_into().unwrap()), ts as u32, "squashfs mkfs time");
    if !have("unsquashfs") {
        return;
    }
    let dir = Scratch::new("repro");
    std::fs::write(dir.join("r.sqfs"), p).unwrap();
    unsquashfs_extract(&dir.join("r.sqfs"), None, &dir.join("root"));
    assert_eq!(
        std::fs::metadata(dir.join("root/late")).unwrap().mtime(),
        ts,
        "clamped to the timestamp"
    );
    assert_eq!(std::fs::metadata(dir.join("root/early")).unwrap().mtime(), 1000);
    assert_eq!(std::fs::metadata(dir.join("root/.singularity.d/runscript")).unwrap().mtime(), ts);
    // A different timestamp gives different bytes.
    let c = run_export(layers(), &cfg, Some(ts + 1), &[]).unwrap();
    assert!(c.bytes != a.bytes);
}

/// A stand-in compressor, cheap and deterministic: a block whose first byte is even "shrinks"
/// to its first half, any other stays as it is (and is then stored raw).
fn fake_compress(blocks: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    Ok(blocks
        .iter()
        .map(|b| if b[0] % 2 == 0 { b[..b.len() / 2 + 1].to_vec() } else { b.clone() })
        .collect())
}

/// Background compression as the host does it: batches are kept by ticket and compressed only
/// when collected, so anything written before its batch is collected would land out of place.
#[derive(Default)]
struct DeferredCodec {
    waiting: BTreeMap<u64, Vec<Vec<u8>>>,
    next: u64,
    most_waiting: usize,
}

impl Background for DeferredCodec {
    fn submit(&mut self, _: Compression, blocks: &[Vec<u8>]) -> Result<u64> {
        self.next += 1;
        self.waiting.insert(self.next, blocks.to_vec());
        self.most_waiting = self.most_waiting.max(self.waiting.len());
        Ok(self.next)
    }

    fn collect(&mut self, ticket: u64) -> Result<Vec<Vec<u8>>> {
        assert_eq!(self.waiting.keys().next(), Some(&ticket), "batches are collected oldest first");
        fake_compress(&self.waiting.remove(&ticket).expect("a submitted ticket"))
    }
}

#[test]
fn background_compression_writes_the_same_bytes() {
    // Enough data for more batches than may be in flight, small files for fragments, a sparse
    // stretch, blocks that shrink and blocks that do not.
    let big: Vec<u8> = (0..30usize << 20).map(|i| if (i >> 17) % 5 == 3 { 0 } else { (i >> 17) as u8 ^ (i as u8 & 1) }).collect();
    let mut l = Layer::new().file("big", &big);
    for i in 0..200 {
        l = l.file(&format!("small/{i}"), &noise(100 + i * 37, i as u64));
    }
    let layer = l.build();
    let cfg = config(&[], &[], &["sh"]);
    let digests = vec![format!("sha256:{:064x}", 1)];
    let names = vec!["registry.example/kiln/test:1".to_string()];
    let req = Request {
        names: &names,
        config_json: &cfg,
        manifest_digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        layer_digests: &digests,
        timestamp: Some(0),
        options: &[],
    };
    let mut outputs = Vec::new();
    let mut deferred = DeferredCodec::default();
    for background in [false, true] {
        let mut src = MemLayers {
            layers: vec![layer.clone()],
            opened: Vec::new(),
        };
        let mut sink = VecSink::default();
        let mut codec = |_: Compression, b: &[Vec<u8>]| fake_compress(b);
        export(
            &req,
            &mut src,
            &mut sink,
            Hooks {
                codec: &mut codec,
                background: if background { Some(&mut deferred) } else { None },
                cancelled: &|| false,
                warn: &mut |_| {},
            },
        )
        .unwrap();
        outputs.push(sink.bytes);
    }
    assert!(deferred.waiting.is_empty(), "batches left uncollected");
    assert_eq!(
        deferred.most_waiting,
        crate::squashfs::data::MAX_IN_FLIGHT + 1,
        "batches waiting at once (the oldest is collected when one more is out)"
    );
    assert_eq!(outputs[0].len(), outputs[1].len());
    assert!(outputs[0] == outputs[1], "background compression changed the SIF");
}

#[test]
fn options_select_compression_and_block_size() {
    if !have("unsquashfs") {
        return;
    }
    let data = noise(200_000, 5).iter().map(|b| b % 4).collect::<Vec<u8>>();
    let layers = || vec![Layer::new().file("data", &data).build()];
    let cfg = config(&[], &[], &["sh"]);
    for (opts, want) in [
        (vec![("compression", "zstd")], ["Compression zstd", "Block size 131072"]),
        (
            vec![("compression", "xz"), ("block-size", "64K")],
            ["Compression xz", "Block size 65536"],
        ),
        (
            vec![("compression", "gzip"), ("block-size", "1M")],
            ["Compression gzip", "Block size 1048576"],
        ),
    ] {
        let out = run_export(layers(), &cfg, Some(0), &opts).unwrap();
        let dir = Scratch::new("opts");
        let path = dir.join("r.sqfs");
        std::fs::write(&path, partition(&out)).unwrap();
        let s = run(Command::new("unsquashfs").arg("-s").arg(&path));
        for w in want {
            assert!(s.contains(w), "{opts:?}: {s}");
        }
        unsquashfs_extract(&path, None, &dir.join("root"));
        assert_eq!(std::fs::read(dir.join("root/data")).unwrap(), data);
        if let Some(m) = kernel_mount(&path, 0, &dir.join("mnt")) {
            compare_trees(&dir.join("root"), &m.0);
        }
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }
}

#[test]
fn warns_about_xz_streams_linux_cannot_read() {
    let cfg = config(&[], &[], &["sh"]);
    let digests = vec!["sha256:1".to_string()];
    let opts = vec![("compression".to_string(), "xz".to_string())];
    let req = Request {
        names: &[],
        config_json: &cfg,
        manifest_digest: "sha256:00",
        layer_digests: &digests,
        timestamp: Some(0),
        options: &opts,
    };
    let mut src = MemLayers {
        layers: vec![Layer::new().file("f", &noise(5000, 1)).build()],
        opened: vec![],
    };
    let mut sink = VecSink::default();
    // xz2's default encoder writes CRC64 checks.
    let mut codec = |_: Compression, blocks: &[Vec<u8>]| -> Result<Vec<Vec<u8>>> {
        use std::io::Write;
        Ok(blocks
            .iter()
            .map(|b| {
                let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(b).unwrap();
                e.finish().unwrap()
            })
            .collect())
    };
    let mut warnings = Vec::new();
    export(
        &req,
        &mut src,
        &mut sink,
        Hooks {
            codec: &mut codec,
            background: None,
            cancelled: &|| false,
            warn: &mut |m| warnings.push(m.to_string()),
        },
    )
    .unwrap();
    assert!(warnings.iter().any(|w| w.contains("CRC64")), "{warnings:?}");
    // The dictionary the streams declare is recorded in the compressor options.
    let p = 36864 + 96;
    assert_eq!(&sink.bytes[p..p + 2], &(0x8000u16 | 8).to_le_bytes());
    assert_eq!(u32::from_le_bytes(sink.bytes[p + 2..p + 6].try_into().unwrap()), 8 << 20);
}

#[test]
fn rejects_bad_requests() {
    let cfg = config(&[], &[], &["sh"]);
    let one = || vec![Layer::new().file("f", b"x").build()];
    let e = run_export(one(), &cfg, None, &[("compresion", "gzip")]).err().unwrap();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("\"compresion\"")), "{e}");
    assert!(matches!(
        run_export(one(), &cfg, None, &[("compression", "lz4")]),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        run_export(one(), &cfg, None, &[("scheme", "oci")]),
        Err(Error::InvalidInput(_))
    ));
    assert!(run_export(one(), &cfg, None, &[("scheme", "sif")]).is_ok());
    assert!(matches!(
        run_export(one(), &cfg, None, &[("block-size", "3000")]),
        Err(Error::InvalidInput(_))
    ));
    let e = run_export(vec![], &cfg, None, &[]).err().unwrap();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("no layers")), "{e}");
    let bad_arch = br#"{"architecture":"pdp11","config":{}}"#;
    assert!(matches!(run_export(one(), bad_arch, None, &[]), Err(Error::InvalidInput(_))));
    // A non-directory with entries below it in the same layer cannot be extracted.
    let contradictory = Layer::new().file("a", b"file").file("a/b", b"child").build();
    let e = run_export(vec![contradictory], &cfg, None, &[]).err().unwrap();
    assert!(
        matches!(&e, Error::InvalidInput(m) if m.contains("layer 1") && m.contains("a/b")),
        "{e}"
    );
    // Across layers the higher one wins instead.
    let low = Layer::new().file("a", b"file").build();
    let high = Layer::new().file("a/b", b"child").build();
    assert!(run_export(vec![low, high], &cfg, None, &[]).is_ok());
    // A hard link to a path no layer has.
    let dangling = Layer::new().link(tar::EntryType::Link, "l", "nowhere").build();
    assert!(matches!(run_export(vec![dangling], &cfg, None, &[]), Err(Error::InvalidInput(_))));
    // Not a tar stream.
    let e = run_export(vec![vec![b'x'; 2048]], &cfg, None, &[]).err().unwrap();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("layer 1")), "{e}");
}

#[test]
fn cancellation_stops_the_export() {
    let cfg = config(&[], &[], &["sh"]);
    let digests = vec!["sha256:1".to_string()];
    let req = Request {
        names: &[],
        config_json: &cfg,
        manifest_digest: "sha256:00",
        layer_digests: &digests,
        timestamp: None,
        options: &[],
    };
    let mut src = MemLayers {
        layers: vec![Layer::new().file("f", b"x").build()],
        opened: vec![],
    };
    let mut sink = VecSink::default();
    let mut codec = |_: Compression, b: &[Vec<u8>]| Ok(b.to_vec());
    let r = export(
        &req,
        &mut src,
        &mut sink,
        Hooks {
            codec: &mut codec,
            background: None,
            cancelled: &|| true,
            warn: &mut |_| {},
        },
    );
    assert_eq!(r.err(), Some(Error::Cancelled));
}

#[test]
fn image_without_names_uses_the_digest_and_merges_root_metadata() {
    if !have("unsquashfs") {
        return;
    }
    let cfg = config(&[], &[], &[]);
    let digests = vec!["sha256:1".to_string(), "sha256:2".to_string()];
    let layers = vec![
        Layer::new().dir("./", 0o700).build(),
        Layer::new().dir("./", 0o755).file(".wh..wh..opq", b"").build(),
    ];
    let req = Request {
        names: &[],
        config_json: &cfg,
        manifest_digest: "sha256:ab",
        layer_digests: &digests,
        timestamp: Some(5),
        options: &[],
    };
    let mut src = MemLayers { layers, opened: vec![] };
    let mut sink = VecSink::default();
    let mut codec = native_compress(Compression::Gzip);
    let mut codec = |_: Compression, b: &[Vec<u8>]| codec(b);
    let s = export(
        &req,
        &mut src,
        &mut sink,
        Hooks {
            codec: &mut codec,
            background: None,
            cancelled: &|| false,
            warn: &mut |_| {},
        },
    )
    .unwrap();
    let def = &sink.bytes[32176..32176 + 35];
    assert_eq!(def, b"bootstrap: docker\nfrom: sha256:ab\n\n");
    let dir = Scratch::new("noname");
    let p = dir.join("x.sif");
    std::fs::write(&p, &sink.bytes).unwrap();
    let list = unsquashfs_list(&p, Some(s.partition_offset));
    assert!(list[0].starts_with("drwxr-xr-x 0/0"), "{list:?}");
    assert!(Path::new(&p).exists());
}

#[test]
fn export_a_layer_given_by_path() {
    // KILN_SIF_LAYER=/path/layer.tar [KILN_SIF_OUT=/path/out.sif]: manual runs on large layers.
    let Ok(path) = std::env::var("KILN_SIF_LAYER") else { return };
    let layer = std::fs::read(&path).unwrap();
    let cfg = config(&["PATH=/usr/bin:/bin"], &[], &["sh"]);
    let start = std::time::Instant::now();
    if std::env::var("KILN_SIF_STORE").is_ok() {
        // Compression left out: what the merge, tar and squashfs code cost on their own.
        let digests = vec!["sha256:1".to_string()];
        let req = Request {
            names: &[],
            config_json: &cfg,
            manifest_digest: "sha256:00",
            layer_digests: &digests,
            timestamp: Some(0),
            options: &[],
        };
        let mut src = MemLayers {
            layers: vec![layer],
            opened: vec![],
        };
        let mut sink = VecSink::default();
        let mut codec = |_: Compression, b: &[Vec<u8>]| Ok(b.to_vec());
        let s = export(
            &req,
            &mut src,
            &mut sink,
            Hooks {
                codec: &mut codec,
                background: None,
                cancelled: &|| false,
                warn: &mut |_| {},
            },
        )
        .unwrap();
        eprintln!("stored: {} bytes, {} inodes, {:?}", sink.bytes.len(), s.inodes, start.elapsed());
        return;
    }
    let out = run_export(vec![layer], &cfg, Some(0), &[]).unwrap();
    eprintln!("{} bytes, {} inodes, {:?}", out.bytes.len(), out.summary.inodes, start.elapsed());
    if let Ok(dest) = std::env::var("KILN_SIF_OUT") {
        std::fs::write(dest, &out.bytes).unwrap();
    }
}
