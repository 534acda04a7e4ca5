//! Test helpers: native compressors equivalent to the host codec, scratch directories, and
//! runners for squashfs-tools and siftool.

use crate::error::{Error, Result};
use crate::squashfs::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compress blocks as squashfs expects for `c` (zlib level 9, zstd 15, xz preset 6 with CRC32
/// checks as mksquashfs writes them).
pub fn native_compress(c: Compression) -> impl FnMut(&[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    move |blocks: &[Vec<u8>]| {
        blocks
            .iter()
            .map(|b| match c {
                Compression::Gzip => {
                    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(9));
                    e.write_all(b).and_then(|_| e.finish()).map_err(|e| Error::Io(e.to_string()))
                }
                Compression::Zstd => zstd::bulk::compress(b, 15).map_err(|e| Error::Io(e.to_string())),
                Compression::Xz => {
                    let stream = xz2::stream::Stream::new_easy_encoder(6, xz2::stream::Check::Crc32).unwrap();
                    let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
                    e.write_all(b).and_then(|_| e.finish()).map_err(|e| Error::Io(e.to_string()))
                }
            })
            .collect()
    }
}

/// A fresh, empty scratch directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Create one named after `tag`.
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "kiln-sif-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    /// A path inside.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether a command exists on this machine (tests needing it are skipped otherwise).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Run a command, assert it succeeded, return stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `unsquashfs -lln` of an image (optionally at an offset), as lines without the
/// `squashfs-root` prefix: "MODE UID/GID SIZE PATH[ -> TARGET]" (times dropped).
pub fn unsquashfs_list(image: &Path, offset: Option<u64>) -> Vec<String> {
    let mut cmd = Command::new("unsquashfs");
    cmd.arg("-lln");
    if let Some(o) = offset {
        cmd.arg("-o").arg(o.to_string());
    }
    cmd.arg(image);
    let out = run(&mut cmd);
    out.lines()
        .filter_map(|l| {
            // Device numbers print as "MAJ,  MIN": join them into one field.
            let l = l.replace(",  ", ",").replace(", ", ",");
            let l = l.as_str();
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || !f[5].starts_with("squashfs-root") {
                return None;
            }
            let path = l[l.find("squashfs-root").unwrap() + "squashfs-root".len()..].to_string();
            let path = if path.is_empty() { "/".to_string() } else { path };
            Some(format!("{} {} {} {}", f[0], f[1], f[2], path))
        })
        .collect()
}

/// Extract an image with `unsquashfs -d` into `dir` (which must not exist).
pub fn unsquashfs_extract(image: &Path, offset: Option<u64>, dir: &Path) {
    let mut cmd = Command::new("unsquashfs");
    cmd.arg("-no-progress").arg("-d").arg(dir);
    if let Some(o) = offset {
        cmd.arg("-o").arg(o.to_string());
    }
    cmd.arg(image);
    run(&mut cmd);
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A kernel squashfs mount, unmounted on drop.
pub struct Mount(pub PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

/// Mount `image` at `offset` with the kernel's squashfs driver (as Apptainer's setuid mode
/// does). `None` when this machine cannot mount at all; panics when it mounts a reference
/// image made by mksquashfs but refuses ours.
pub fn kernel_mount(image: &Path, offset: u64, at: &Path) -> Option<Mount> {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if !root || !have("mksquashfs") {
        return None;
    }
    std::fs::create_dir_all(at).unwrap();
    let try_mount = |img: &Path, off: u64| {
        Command::new("mount")
            .args(["-t", "squashfs", "-o", &format!("loop,ro,offset={off}")])
            .arg(img)
            .arg(at)
            .output()
            .unwrap()
    };
    let out = try_mount(image, offset);
    if out.status.success() {
        eprintln!("kernel-mounted {} at offset {offset}", image.display());
        return Some(Mount(at.to_path_buf()));
    }
    let why = String::from_utf8_lossy(&out.stderr).into_owned();
    let reference = at.with_extension("ref.sqfs");
    let src = at.with_extension("ref.d");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    run(Command::new("mksquashfs")
        .arg(&src)
        .arg(&reference)
        .args(["-noappend", "-quiet", "-comp", "gzip"]));
    let baseline = try_mount(&reference, 0);
    if baseline.status.success() {
        drop(Mount(at.to_path_buf()));
        panic!("the kernel mounts mksquashfs images but refused {}: {why}", image.display());
    }
    None
}

/// Compare two directory trees: types, permissions, owners, mtimes, contents, link targets,
/// device numbers and hard link groups.
pub fn compare_trees(a: &Path, b: &Path) {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![PathBuf::new()];
    let mut links_a = std::collections::HashMap::new();
    let mut links_b = std::collections::HashMap::new();
    while let Some(rel) = stack.pop() {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).unwrap(),
            std::fs::symlink_metadata(&pb).unwrap_or_else(|e| panic!("{}: {e}", pb.display())),
        );
        let what = rel.display().to_string();
        assert_eq!(ma.file_type(), mb.file_type(), "{what}: type");
        assert_eq!(
            (ma.mode(), ma.uid(), ma.gid()),
            (mb.mode(), mb.uid(), mb.gid()),
            "{what}: mode/owner"
        );
        if !ma.is_dir() {
            assert_eq!(ma.mtime(), mb.mtime(), "{what}: mtime");
            assert_eq!(ma.nlink(), mb.nlink(), "{what}: link count");
        }
        if ma.file_type().is_symlink() {
            assert_eq!(std::fs::read_link(&pa).unwrap(), std::fs::read_link(&pb).unwrap(), "{what}: target");
        } else if ma.is_file() {
            assert!(std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(), "{what}: contents");
            links_a.entry(ma.ino()).or_insert_with(Vec::new).push(what.clone());
            links_b.entry(mb.ino()).or_insert_with(Vec::new).push(what.clone());
        } else if ma.is_dir() {
            let mut names_a: Vec<_> = std::fs::read_dir(&pa).unwrap().map(|e| e.unwrap().file_name()).collect();
            let mut names_b: Vec<_> = std::fs::read_dir(&pb).unwrap().map(|e| e.unwrap().file_name()).collect();
            names_a.sort();
            names_b.sort();
            assert_eq!(names_a, names_b, "{what}: entries");
            stack.extend(names_a.into_iter().map(|n| rel.join(n)));
        } else {
            assert_eq!(ma.rdev(), mb.rdev(), "{what}: device");
        }
    }
    let mut ga: Vec<Vec<String>> = links_a
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    let mut gb: Vec<Vec<String>> = links_b
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    ga.sort();
    gb.sort();
    assert_eq!(ga, gb, "hard link groups");
}
