//! Test helpers: native compressors equivalent to the host codec, scratch directories, and
//! runners for squashfs-tools and siftool.

use crate::error::{Error, Result};
use crate::squashfs::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compress blocks the way the host codec does for `c` (zlib level 9, zstd 15, xz 6).
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
                    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
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
        let p = std::env::temp_dir().join(format!("kiln-sif-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
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
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Run a command, assert it succeeded, return stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
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
