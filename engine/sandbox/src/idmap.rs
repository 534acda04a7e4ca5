//! User-namespace id mappings: choosing one for the caller (identity for real root, subordinate
//! ranges through `newuidmap`/`newgidmap`, or a single id), and writing it for a child process.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use crate::{Error, UserNs};

/// One contiguous range of a user-namespace mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container.
    pub container: u32,
    /// First id on the host.
    pub host: u32,
    /// Number of ids in the range.
    pub size: u32,
}

/// How the sandbox's user namespace maps ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMapKind {
    /// No user namespace: the caller is real root and asked for [`UserNs::Disabled`].
    NoUserNs,
    /// The caller is real root: the full id space maps onto itself (`0 0 4294967295`).
    Identity,
    /// Container id 0 is the caller, 1.. are the caller's `/etc/subuid` and `/etc/subgid` ranges,
    /// written by `newuidmap`/`newgidmap`.
    SubIds,
    /// Only container id 0 exists, mapped to the caller; `setgroups` is denied.
    Single,
}

/// The id mapping a run uses; also tells the layer code which host owner a container owner has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// Which kind of mapping this is.
    pub kind: IdMapKind,
    /// uid ranges (container → host).
    pub uids: Vec<IdRange>,
    /// gid ranges (container → host).
    pub gids: Vec<IdRange>,
}

const FULL: u32 = u32::MAX;
/// At most this many subordinate ids are mapped after container id 0.
const MAX_SUB_IDS: u32 = 65536;

fn to_host(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| id >= r.container && (id - r.container) < r.size)
        .map(|r| r.host + (id - r.container))
}

fn to_container(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| id >= r.host && (id - r.host) < r.size)
        .map(|r| r.container + (id - r.host))
}

impl IdMap {
    /// Chooses the mapping for the current process.
    ///
    /// Real root gets [`IdMapKind::Identity`] (or [`IdMapKind::NoUserNs`] with
    /// [`UserNs::Disabled`]); any other caller gets [`IdMapKind::SubIds`] when `/etc/subuid` and
    /// `/etc/subgid` both have a range for it and `newuidmap`/`newgidmap` exist, else
    /// [`IdMapKind::Single`] with a one-time warning.
    pub fn detect(userns: UserNs) -> Result<IdMap, Error> {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        if userns == UserNs::Disabled {
            if uid != 0 {
                return Err(Error::IdMap(format!(
                    "running without a user namespace needs real root, but the caller is uid {uid}"
                )));
            }
            let all = vec![IdRange {
                container: 0,
                host: 0,
                size: FULL,
            }];
            return Ok(IdMap {
                kind: IdMapKind::NoUserNs,
                uids: all.clone(),
                gids: all,
            });
        }
        if uid == 0 {
            let all = vec![IdRange {
                container: 0,
                host: 0,
                size: FULL,
            }];
            return Ok(IdMap {
                kind: IdMapKind::Identity,
                uids: all.clone(),
                gids: all,
            });
        }
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let sub_u = read_subids(Path::new("/etc/subuid"), name.as_deref(), uid)?;
        let sub_g = read_subids(Path::new("/etc/subgid"), name.as_deref(), uid)?;
        let tools = find_tool("newuidmap").is_some() && find_tool("newgidmap").is_some();
        if !sub_u.is_empty() && !sub_g.is_empty() && tools {
            return Ok(IdMap {
                kind: IdMapKind::SubIds,
                uids: sub_layout(uid, &sub_u),
                gids: sub_layout(gid, &sub_g),
            });
        }
        static WARN: Once = Once::new();
        WARN.call_once(|| {
            tracing::warn!(
                "no /etc/subuid and /etc/subgid ranges (or no newuidmap/newgidmap) for uid {uid}: \
                 RUN steps see only uid/gid 0; add ranges (e.g. `usermod --add-subuids 100000-165535 \
                 --add-subgids 100000-165535 USER`) to run steps as other users"
            );
        });
        Ok(IdMap {
            kind: IdMapKind::Single,
            uids: vec![IdRange {
                container: 0,
                host: uid,
                size: 1,
            }],
            gids: vec![IdRange {
                container: 0,
                host: gid,
                size: 1,
            }],
        })
    }

    /// Host uid of container uid `id`, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        to_host(&self.uids, id)
    }

    /// Host gid of container gid `id`, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        to_host(&self.gids, id)
    }

    /// Container uid of host uid `id`, if mapped.
    pub fn container_uid(&self, id: u32) -> Option<u32> {
        to_container(&self.uids, id)
    }

    /// Container gid of host gid `id`, if mapped.
    pub fn container_gid(&self, id: u32) -> Option<u32> {
        to_container(&self.gids, id)
    }

    /// Whether the run creates a user namespace at all.
    pub fn uses_userns(&self) -> bool {
        self.kind != IdMapKind::NoUserNs
    }

    /// Whether steps may call `setgroups` (false only for [`IdMapKind::Single`]).
    pub fn allows_setgroups(&self) -> bool {
        self.kind != IdMapKind::Single
    }

    /// Writes this mapping for process `pid`, which has just created its user namespace.
    pub(crate) fn write_for(&self, pid: i32) -> Result<(), Error> {
        match self.kind {
            IdMapKind::NoUserNs => Ok(()),
            IdMapKind::Identity | IdMapKind::Single => {
                if self.kind == IdMapKind::Single {
                    write_proc(pid, "setgroups", "deny")?;
                }
                write_proc(pid, "uid_map", &map_text(&self.uids))?;
                write_proc(pid, "gid_map", &map_text(&self.gids))
            }
            IdMapKind::SubIds => {
                run_map_tool("newuidmap", pid, &self.uids)?;
                run_map_tool("newgidmap", pid, &self.gids)
            }
        }
    }
}

fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
        .collect()
}

fn write_proc(pid: i32, file: &str, text: &str) -> Result<(), Error> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    let r = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    r.map_err(|source| Error::Io {
        what: format!("write {:?} to {}", text.trim_end(), path.display()),
        source,
    })
}

fn run_map_tool(tool: &str, pid: i32, ranges: &[IdRange]) -> Result<(), Error> {
    let exe = find_tool(tool).ok_or_else(|| Error::IdMap(format!("{tool} not found")))?;
    let mut cmd = Command::new(&exe);
    cmd.arg(pid.to_string());
    for r in ranges {
        cmd.args([
            r.container.to_string(),
            r.host.to_string(),
            r.size.to_string(),
        ]);
    }
    let out = cmd.output().map_err(|source| Error::Io {
        what: format!("run {}", exe.display()),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::IdMap(format!(
            "{} {pid} {}: {}: {}",
            exe.display(),
            map_text(ranges).trim_end().replace('\n', " "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Container 0 is the caller's own id; the subordinate ranges follow from container id 1.
fn sub_layout(own: u32, subs: &[(u32, u32)]) -> Vec<IdRange> {
    let mut out = vec![IdRange {
        container: 0,
        host: own,
        size: 1,
    }];
    let mut next = 1u32;
    let mut left = MAX_SUB_IDS;
    for &(start, count) in subs {
        if left == 0 {
            break;
        }
        let size = count.min(left);
        out.push(IdRange {
            container: next,
            host: start,
            size,
        });
        next += size;
        left -= size;
    }
    out
}

/// Ranges `(start, count)` for `name` or `uid` in a subordinate-id file.
fn read_subids(path: &Path, name: Option<&str>, uid: u32) -> Result<Vec<(u32, u32)>, Error> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                what: format!("read {}", path.display()),
                source,
            });
        }
    };
    let uid_s = uid.to_string();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.trim().split(':');
        let (Some(owner), Some(start), Some(count)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if owner != uid_s && Some(owner) != name {
            continue;
        }
        if let (Ok(s), Ok(c)) = (start.parse::<u32>(), count.parse::<u32>())
            && c > 0
        {
            out.push((s, c));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_layout_caps_and_translates() {
        let m = IdMap {
            kind: IdMapKind::SubIds,
            uids: sub_layout(1000, &[(100000, 65536), (300000, 10)]),
            gids: vec![],
        };
        assert_eq!(m.uids.len(), 2);
        assert_eq!(m.host_uid(0), Some(1000));
        assert_eq!(m.host_uid(1), Some(100000));
        assert_eq!(m.host_uid(65536), Some(165535));
        assert_eq!(m.host_uid(65537), None);
        assert_eq!(m.container_uid(100999), Some(1000));
        assert_eq!(m.container_uid(1000), Some(0));
    }

    #[test]
    fn subid_file_matches_name_or_uid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("subuid");
        fs::write(&p, "alice:100000:65536\n1001:200000:100\nbob:300000:0\n").unwrap();
        assert_eq!(
            read_subids(&p, Some("alice"), 1000).unwrap(),
            vec![(100000, 65536)]
        );
        assert_eq!(
            read_subids(&p, Some("carol"), 1001).unwrap(),
            vec![(200000, 100)]
        );
        assert!(read_subids(&p, Some("bob"), 5).unwrap().is_empty());
    }
}
