//! Resolving a RUN step's user (`name|uid[:group|gid]`) against the rootfs's own `/etc/passwd`
//! and `/etc/group`, read on the host through the overlay layers (whiteouts and opaque
//! directories honoured) or straight from a plain rootfs directory.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{Error, Rootfs};

/// Who a step runs as: `user` is a name or a numeric uid, `group` (optional) a name or a gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// User name or numeric uid.
    pub user: String,
    /// Group name or numeric gid; `None` means the user's primary group (gid 0 when the user has
    /// no passwd entry).
    pub group: Option<String>,
}

impl UserSpec {
    /// `root`.
    pub fn root() -> Self {
        UserSpec {
            user: "root".into(),
            group: None,
        }
    }

    /// Parses `name|uid[:group|gid]`; an empty string means root, and so does an empty user
    /// before a group (`:GID`, as Docker reads `--chown=:GID`).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self::root());
        }
        let (user, group) = match s.split_once(':') {
            Some(("", g)) => ("root", Some(g)),
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(Error::User {
                spec: s.into(),
                reason: "expected name|uid[:group|gid]".into(),
            });
        }
        Ok(UserSpec {
            user: user.into(),
            group: group.map(Into::into),
        })
    }
}

impl Default for UserSpec {
    fn default() -> Self {
        Self::root()
    }
}

impl FromStr for UserSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{}", self.user, g),
            None => f.write_str(&self.user),
        }
    }
}

/// A [`UserSpec`] resolved against the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// Container uid.
    pub uid: u32,
    /// Container primary gid.
    pub gid: u32,
    /// Supplementary gids: the primary gid, then the groups of `/etc/group` that list the user's
    /// name as a member (those only when the spec names no group).
    pub groups: Vec<u32>,
    /// Home directory from `/etc/passwd` (`/` when the user has no entry).
    pub home: String,
    /// User name, when `/etc/passwd` has one.
    pub name: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `spec` against `/etc/passwd` and `/etc/group` inside `rootfs`.
pub fn resolve_user(rootfs: &Rootfs, spec: &UserSpec) -> Result<ResolvedUser, Error> {
    let layers = rootfs_layers(rootfs);
    let passwd = read_db(&layers, "etc/passwd", parse_passwd)?;
    let groups = read_db(&layers, "etc/group", parse_group)?;
    let err = |reason: String| Error::User {
        spec: spec.to_string(),
        reason,
    };

    let by_uid = spec.user.parse::<u32>().ok();
    let entry = match by_uid {
        Some(uid) => passwd.iter().find(|e| e.uid == uid),
        None => Some(passwd.iter().find(|e| e.name == spec.user).ok_or_else(|| {
            err(format!(
                "no user {:?} in the rootfs's /etc/passwd",
                spec.user
            ))
        })?),
    };
    let uid = by_uid.unwrap_or_else(|| entry.map_or(0, |e| e.uid));
    let gid = match &spec.group {
        None => entry.map_or(0, |e| e.gid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| &e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| err(format!("no group {g:?} in the rootfs's /etc/group")))?,
        },
    };
    // The primary group is a supplementary group too (buildah's `id` shows `groups=GID…`); the
    // user's other groups come from /etc/group only when no group is named (`USER alice`, not
    // `USER alice:g2`), as with runc and Docker.
    let mut supplementary = vec![gid];
    if let Some(e) = entry.filter(|_| spec.group.is_none()) {
        for g in &groups {
            if g.members.iter().any(|m| m == &e.name) && !supplementary.contains(&g.gid) {
                supplementary.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        groups: supplementary,
        home: entry.map_or_else(|| "/".to_string(), |e| e.home.clone()),
        name: entry.map(|e| e.name.clone()),
    })
}

fn parse_passwd(line: &str) -> Option<PasswdEntry> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(PasswdEntry {
        name: f[0].into(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].into(),
    })
}

fn parse_group(line: &str) -> Option<GroupEntry> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 4 {
        return None;
    }
    Some(GroupEntry {
        name: f[0].into(),
        gid: f[2].parse().ok()?,
        members: f[3]
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(Into::into)
            .collect(),
    })
}

fn read_db<T>(
    layers: &[PathBuf],
    rel: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Vec<T>, Error> {
    let Some(path) = find_in_layers(layers, rel).map_err(|source| Error::Io {
        what: format!("look up /{rel}"),
        source,
    })?
    else {
        return Ok(Vec::new());
    };
    let io = |source| Error::Io {
        what: format!("read {}", path.display()),
        source,
    };
    let file = fs::File::open(&path).map_err(io)?;
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(io)?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(e) = parse(line) {
            out.push(e);
        }
    }
    Ok(out)
}

/// The rootfs's directories, topmost first (for an overlay: the upper dir, then the lowers).
pub(crate) fn rootfs_layers(rootfs: &Rootfs) -> Vec<PathBuf> {
    match rootfs {
        Rootfs::Dir(d) => vec![d.clone()],
        Rootfs::Overlay { lowers, upper, .. } => std::iter::once(upper.clone())
            .chain(lowers.iter().cloned())
            .collect(),
    }
}

/// Whether `path` (a directory) carries an overlayfs opaque marker in either xattr namespace.
pub(crate) fn is_opaque_dir(path: &Path) -> bool {
    has_xattr(path, c"trusted.overlay.opaque") || has_xattr(path, c"user.overlay.opaque")
}

/// Whether `path` has the extended attribute `name` (symlinks are not followed).
pub(crate) fn has_xattr(path: &Path, name: &std::ffi::CStr) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a zero-sized query writes nothing.
    unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

enum Found {
    Entry(PathBuf, fs::Metadata),
    Absent,
}

/// Looks up one path (components, no symlinks resolved) in the merged view of `layers`.
fn layered_lstat(layers: &[PathBuf], comps: &[Vec<u8>]) -> std::io::Result<Found> {
    for layer in layers {
        let mut stop_after = false;
        let mut p = layer.clone();
        let mut blocked = false;
        for (i, c) in comps.iter().enumerate() {
            p.push(OsStr::from_bytes(c));
            let last = i + 1 == comps.len();
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => {
                    return Ok(Found::Absent);
                }
                Ok(m) if last => return Ok(Found::Entry(p, m)),
                Ok(m) if !m.is_dir() => {
                    blocked = true;
                    break;
                }
                Ok(_) => {
                    if is_opaque_dir(&p) {
                        stop_after = true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            }
        }
        if blocked || stop_after {
            return Ok(Found::Absent);
        }
    }
    Ok(Found::Absent)
}

/// Finds `rel` (a path inside the rootfs) in the merged view of `layers`, following symlinks
/// inside the rootfs; returns the host path of the file.
pub(crate) fn find_in_layers(layers: &[PathBuf], rel: &str) -> std::io::Result<Option<PathBuf>> {
    let mut pending: Vec<Vec<u8>> = split(rel.as_bytes());
    pending.reverse();
    let mut resolved: Vec<Vec<u8>> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == b"." {
            continue;
        }
        if c == b".." {
            resolved.pop();
            continue;
        }
        resolved.push(c);
        match layered_lstat(layers, &resolved)? {
            Found::Absent => return Ok(None),
            Found::Entry(p, m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&p)?;
                let tb = target.as_os_str().as_bytes();
                resolved.pop();
                if tb.starts_with(b"/") {
                    resolved.clear();
                }
                for t in split(tb).into_iter().rev() {
                    pending.push(t);
                }
            }
            Found::Entry(p, _) => {
                if pending.is_empty() {
                    return Ok(Some(p));
                }
            }
        }
    }
    Ok(None)
}

fn split(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    #[test]
    fn parse_user_specs() {
        assert_eq!(UserSpec::parse("").unwrap(), UserSpec::root());
        assert_eq!(
            UserSpec::parse("1000:50").unwrap(),
            UserSpec {
                user: "1000".into(),
                group: Some("50".into())
            }
        );
        // `--chown=:GID`: the user is root, the group as given.
        assert_eq!(
            UserSpec::parse(":50").unwrap(),
            UserSpec { user: "root".into(), group: Some("50".into()) }
        );
        assert!(UserSpec::parse(":").is_err());
        assert!(UserSpec::parse("a:").is_err());
        assert_eq!(UserSpec::parse("bob").unwrap().to_string(), "bob");
    }

    #[test]
    fn resolves_through_layers() {
        let t = tempfile::tempdir().unwrap();
        let (low, up) = (t.path().join("low"), t.path().join("up"));
        write(
            &low.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        );
        write(
            &low.join("etc/group"),
            "root:x:0:\nbob:x:1000:\nwheel:x:10:bob,alice\naudio:x:29:bob\n",
        );
        fs::create_dir_all(&up).unwrap();
        let rootfs = Rootfs::Overlay {
            lowers: vec![low.clone()],
            upper: up.clone(),
            work: t.path().join("w"),
        };
        let r = resolve_user(&rootfs, &UserSpec::parse("bob").unwrap()).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.groups.clone(), r.home.as_str()),
            (1000, 1000, vec![1000, 10, 29], "/home/bob")
        );
        // A named group is the only one: /etc/group's other groups are not added.
        let r = resolve_user(&rootfs, &UserSpec::parse("1000:wheel").unwrap()).unwrap();
        assert_eq!((r.uid, r.gid, r.groups.clone()), (1000, 10, vec![10]));
        let r = resolve_user(&rootfs, &UserSpec::parse("bob:29").unwrap()).unwrap();
        assert_eq!((r.gid, r.groups), (29, vec![29]));
        let r = resolve_user(&rootfs, &UserSpec::parse("4242").unwrap()).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.home.as_str(), r.name.clone()),
            (4242, 0, "/", None)
        );
        assert!(resolve_user(&rootfs, &UserSpec::parse("nobody").unwrap()).is_err());
        assert!(resolve_user(&rootfs, &UserSpec::parse("bob:nogroup").unwrap()).is_err());

        // A newer passwd in the upper dir wins.
        write(
            &up.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\ncarol:x:7:7::/c:/bin/sh\n",
        );
        assert!(resolve_user(&rootfs, &UserSpec::parse("bob").unwrap()).is_err());
        assert_eq!(
            resolve_user(&rootfs, &UserSpec::parse("carol").unwrap())
                .unwrap()
                .uid,
            7
        );
        // A whiteout hides it altogether.
        fs::remove_file(up.join("etc/passwd")).unwrap();
        nix::sys::stat::mknod(
            &up.join("etc/passwd"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        assert!(resolve_user(&rootfs, &UserSpec::parse("bob").unwrap()).is_err());
        assert_eq!(
            resolve_user(&rootfs, &UserSpec::parse("0").unwrap())
                .unwrap()
                .home,
            "/"
        );
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("root");
        write(
            &d.join("usr/etc/passwd"),
            "root:x:0:0:root:/rootdir:/bin/sh\n",
        );
        symlink("/usr/etc", d.join("etc")).unwrap();
        let r = resolve_user(&Rootfs::Dir(d.clone()), &UserSpec::root()).unwrap();
        assert_eq!(r.home, "/rootdir");
        // An absolute link to the host's passwd resolves inside the rootfs instead.
        fs::remove_file(d.join("etc")).unwrap();
        fs::create_dir(d.join("etc")).unwrap();
        symlink("/../../../../etc/shadow-nope", d.join("etc/passwd")).unwrap();
        assert_eq!(find_in_layers(&[d], "etc/passwd").unwrap(), None);
    }
}
