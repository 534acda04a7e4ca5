//! Helpers shared by kiln-layer's integration tests: hand-made tars, tree snapshots, xattr access, re-running a
//! test inside `unshare`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// Builds tars byte by byte, so that names no well-behaved writer would produce (absolute, `..`) can be made.
#[derive(Default)]
pub struct RawTar {
    buf: Vec<u8>,
}

/// Metadata for one [`RawTar`] entry.
#[derive(Clone)]
pub struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            xattrs: Vec::new(),
        }
    }
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
    }

    pub fn raw(
        &mut self,
        name: &[u8],
        etype: EntryType,
        link: &[u8],
        data: &[u8],
        m: &Meta,
        dev: (u32, u32),
    ) {
        if !m.xattrs.is_empty() {
            let mut pax = Vec::new();
            for (k, v) in &m.xattrs {
                let key = format!("SCHILY.xattr.{k}");
                let rest = 3 + key.len() + v.len();
                let mut len = rest + 1;
                while rest + len.to_string().len() != len {
                    len = rest + len.to_string().len();
                }
                pax.extend_from_slice(format!("{len} {key}=").as_bytes());
                pax.extend_from_slice(v);
                pax.push(b'\n');
            }
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_size(pax.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            self.buf.extend_from_slice(h.as_bytes());
            self.buf.extend_from_slice(&pax);
            self.pad();
        }
        let mut h = Header::new_ustar();
        assert!(name.len() <= 100 && link.len() <= 100);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(etype);
        h.set_mode(m.mode);
        h.set_uid(m.uid);
        h.set_gid(m.gid);
        h.set_mtime(m.mtime);
        h.set_size(data.len() as u64);
        if matches!(etype, EntryType::Char | EntryType::Block) {
            h.set_device_major(dev.0).unwrap();
            h.set_device_minor(dev.1).unwrap();
        }
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_meta(name, data, &Meta::default())
    }

    pub fn file_meta(&mut self, name: &str, data: &[u8], m: &Meta) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Regular, b"", data, m, (0, 0));
        self
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.dir_meta(
            name,
            &Meta {
                mode: 0o755,
                ..Meta::default()
            },
        )
    }

    pub fn dir_meta(&mut self, name: &str, m: &Meta) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Directory, b"", b"", m, (0, 0));
        self
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let m = Meta {
            mode: 0o777,
            ..Meta::default()
        };
        self.raw(
            name.as_bytes(),
            EntryType::Symlink,
            target.as_bytes(),
            b"",
            &m,
            (0, 0),
        );
        self
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            name.as_bytes(),
            EntryType::Link,
            target.as_bytes(),
            b"",
            &Meta::default(),
            (0, 0),
        );
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

/// Reads an xattr without following symlinks.
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    let r = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// Sets an xattr without following symlinks; panics on failure.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// All xattr names of a path (no symlink following).
pub fn list_xattrs(path: &Path) -> Vec<String> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    let r =
        unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if r <= 0 {
        return Vec::new();
    }
    buf.truncate(r as usize);
    let mut v: Vec<String> = buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.sort();
    v
}

/// A canonical description of every path below `root` (type, mode, owner, content hash or link target, device,
/// xattrs except overlay/selinux ones, file mtime seconds, hardlink group). Paths are relative, without `./`.
pub fn snapshot(root: &Path, ignore: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    walk(root, root, ignore, &mut out, &mut inodes);
    for paths in inodes.values() {
        if paths.len() > 1 {
            let mut sorted = paths.clone();
            sorted.sort();
            for p in &sorted {
                let e = out.get_mut(p).unwrap();
                e.push_str(&format!(" links={}", sorted.join(",")));
            }
        }
    }
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    ignore: &[&str],
    out: &mut BTreeMap<String, String>,
    inodes: &mut HashMap<(u64, u64), Vec<String>>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if ignore.contains(&rel.as_str()) {
            continue;
        }
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let mut desc = format!(
            "mode={:o} uid={} gid={}",
            md.mode() & 0o7777,
            md.uid(),
            md.gid()
        );
        if ft.is_dir() {
            desc = format!("dir {desc}");
        } else if ft.is_file() {
            let data = fs::read(&path).unwrap();
            desc = format!(
                "file {desc} size={} sha={} mtime={}",
                data.len(),
                hex::encode(Sha256::digest(&data)),
                md.mtime()
            );
            if md.nlink() > 1 {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push(rel.clone());
            }
        } else if ft.is_symlink() {
            desc = format!(
                "symlink {desc} -> {}",
                fs::read_link(&path).unwrap().display()
            );
        } else if ft.is_char_device() || ft.is_block_device() {
            desc = format!("dev {desc} rdev={}", md.rdev());
        } else if ft.is_fifo() {
            desc = format!("fifo {desc}");
        } else {
            desc = format!("other {desc}");
        }
        let xattrs: Vec<String> = list_xattrs(&path)
            .into_iter()
            .filter(|k| !k.contains(".overlay.") && k != "security.selinux")
            .map(|k| {
                format!(
                    "{k}={}",
                    hex::encode(get_xattr(&path, &k).unwrap_or_default())
                )
            })
            .collect();
        if !xattrs.is_empty() {
            desc.push_str(&format!(" xattrs=[{}]", xattrs.join(",")));
        }
        out.insert(rel, desc);
        if ft.is_dir() {
            walk(root, &path, ignore, out, inodes);
        }
    }
}

/// Asserts two snapshots are equal, listing the differing paths.
pub fn assert_same(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, what: &str) {
    let mut diffs = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => diffs.push(format!("only in first: {k}: {v}")),
            Some(w) if w != v => diffs.push(format!("differs: {k}:\n   {v}\n   {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            diffs.push(format!("only in second: {k}: {v}"));
        }
    }
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

/// Runs a shell command, panicking with its output when it fails.
pub fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Environment variable that marks a test process re-run inside `unshare`.
pub const CHILD_ENV: &str = "KILN_LAYER_TEST_CHILD";

/// Re-runs the test `name` of the current test binary under `unshare <flags>` and asserts it passed.
/// Returns false (the caller should return) in the parent, true in the child.
pub fn in_unshare(name: &str, flags: &[&str]) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(flags)
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} under unshare {flags:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// Whether this process is root.
pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// The path of shared/tools/ocitree.py when the shared directory sits beside the repository.
pub fn ocitree() -> Option<std::path::PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for up in manifest.ancestors() {
        let p = up.join("shared/tools/ocitree.py");
        if p.is_file() {
            return Some(p);
        }
        let p = up.join("../shared/tools/ocitree.py");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}
