//! The prepared, allocation-complete description of one run that the forked processes execute,
//! built by the caller before `fork`; and the step ids the children report failures with.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sched::CloneFlags;

use crate::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
use crate::{Error, ExtraMount, IdMap, Network, ResolvedUser, Rootfs, RunSpec};

/// Step ids carried by failure records: `code << 16 | index`.
pub(crate) mod step {
    pub const PDEATHSIG: u32 = 1;
    pub const UNSHARE_USER: u32 = 2;
    pub const UNSHARE: u32 = 3;
    pub const FORK: u32 = 4;
    pub const MAKE_PRIVATE: u32 = 5;
    pub const SCRATCH: u32 = 6;
    pub const SCRATCH_ROOT: u32 = 7;
    pub const OVERLAY: u32 = 8;
    pub const OVERLAY_LOWER: u32 = 9;
    pub const OVERLAY_OPT: u32 = 10;
    pub const BIND_ROOTFS: u32 = 11;
    pub const OPEN_UPPER: u32 = 12;
    pub const FILE: u32 = 13;
    pub const CLONE: u32 = 14;
    pub const PIVOT: u32 = 15;
    pub const DETACH_OLD_ROOT: u32 = 16;
    pub const HOSTNAME: u32 = 17;
    pub const LO_UP: u32 = 18;
    pub const TARGET: u32 = 19;
    pub const ATTACH: u32 = 20;
    pub const DEV_NODE: u32 = 21;
    pub const DEV_LINK: u32 = 22;
    pub const DEVPTS: u32 = 23;
    pub const SHM: u32 = 24;
    pub const CWD: u32 = 25;
    pub const STDIO: u32 = 26;
    pub const SETGROUPS: u32 = 27;
    pub const SETGID: u32 = 28;
    pub const SETUID: u32 = 29;
    pub const CHDIR: u32 = 30;
    pub const EXEC: u32 = 31;
    pub const PIPE: u32 = 32;
    pub const SIGNALS: u32 = 33;
    pub const RLIMIT: u32 = 34;
    pub const CAPBSET: u32 = 35;
    pub const SECCOMP: u32 = 36;
    pub const NO_NEW_PRIVS: u32 = 37;

    pub const fn id(code: u32, index: usize) -> u32 {
        (code << 16) | (index as u32 & 0xffff)
    }
}

/// Device nodes bound from the host into the step's `/dev`: (name, host path, required).
pub(crate) const DEV_NODES: [(&[u8], &std::ffi::CStr, bool); 6] = [
    (b"null", c"/dev/null", true),
    (b"zero", c"/dev/zero", true),
    (b"full", c"/dev/full", true),
    (b"random", c"/dev/random", true),
    (b"urandom", c"/dev/urandom", true),
    (b"tty", c"/dev/tty", false),
];

/// How the rootfs is mounted.
pub(crate) enum RootPlan {
    Overlay {
        lowers: Vec<CString>,
        upper: CString,
        work: CString,
        userxattr: bool,
        /// Try the `volatile` option (see [`crate::RunSpec::volatile`]).
        volatile: bool,
        /// `mount(2)` option string for kernels without `lowerdir+` (None if it would not fit).
        legacy: Option<CString>,
    },
    Bind(CString),
}

/// Content of a file materialised on the scratch tmpfs.
pub(crate) enum Content {
    Bytes(Vec<u8>),
    /// A host file opened by the caller.
    Fd(RawFd),
}

pub(crate) struct FilePlan {
    pub path: CString,
    pub content: Content,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A detached mount made before `pivot_root` (while the host's `/proc` and `/sys` are still
/// visible, which the kernel requires for fresh proc and sysfs mounts in a user namespace).
pub(crate) struct ClonePlan {
    /// The path to copy, or the filesystem type for `fresh`.
    pub path: CString,
    /// A new filesystem instance (`fsopen`) instead of a copy of a mount (`open_tree`).
    pub fresh: bool,
    pub recursive: bool,
    pub attrs: u64,
    pub required: bool,
    /// For messages.
    pub display: String,
}

pub(crate) enum Attach {
    Dev {
        first_clone: usize,
    },
    /// A fresh sysfs when it could be made, else the read-only copy of the host's.
    Sys {
        fresh: Option<usize>,
        clone: usize,
    },
    Clone(usize),
    Tmpfs(CString),
}

/// A mount point inside the new root and what is attached there.
pub(crate) struct TargetPlan {
    pub path: CString,
    pub dir: bool,
    pub attach: Attach,
    /// For messages, e.g. "bind /host/dir".
    pub what: String,
}

/// Where a step's output stream goes.
#[derive(Clone, Copy)]
pub(crate) enum OutPlan {
    Inherit,
    Null,
    Fd(RawFd),
}

pub(crate) struct Plan {
    pub parent_pid: libc::pid_t,
    /// Descriptors (>= 3) M keeps; everything else is closed. Sorted.
    pub keep_fds: Vec<RawFd>,
    pub report_w: RawFd,
    /// (M reads the caller's go-ahead, M writes "userns created"), when a user namespace is made.
    pub sync: Option<(RawFd, RawFd)>,
    pub ns_flags: CloneFlags,
    pub lo_up: bool,
    pub hostname: CString,
    /// The caller's command-line area (`arg_start..arg_end` of `/proc/self/stat`): G blanks it
    /// after `argv[0]`, so a step reading `/proc/1/cmdline` sees no build flags (build args).
    pub argv_area: Option<(usize, usize)>,
    pub scratch: CString,
    pub scratch_root: CString,
    pub rootfs: RootPlan,
    /// The overlay upper dir, to tell which created mount points land in it.
    pub upper: Option<CString>,
    pub files: Vec<FilePlan>,
    pub clones: Vec<ClonePlan>,
    pub targets: Vec<TargetPlan>,
    pub devpts_opts: CString,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    pub set_groups: bool,
    pub exec: Vec<CString>,
    /// Owns the strings `argv_ptrs` points into.
    #[allow(dead_code)]
    pub argv: Vec<CString>,
    pub argv_ptrs: Vec<*const libc::c_char>,
    /// Owns the strings `envp_ptrs` points into.
    #[allow(dead_code)]
    pub envp: Vec<CString>,
    pub envp_ptrs: Vec<*const libc::c_char>,
    pub stdin_null: bool,
    pub stdout: OutPlan,
    pub stderr: OutPlan,
    /// Resource limits S sets (M only raises hard limits to them before the user namespace).
    pub rlimits: Vec<(i32, libc::rlimit)>,
    /// Capabilities S keeps in its bounding set; the others up to `cap_last` are dropped.
    pub caps: u64,
    pub cap_last: u32,
    /// The seccomp program S installs (none when empty).
    pub seccomp: Vec<libc::sock_filter>,
    pub no_new_privs: bool,
}

pub(crate) fn cstr(s: &[u8], what: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Spec(format!("{what} contains a NUL byte")))
}

pub(crate) fn cpath(p: &Path, what: &str) -> Result<CString, Error> {
    cstr(p.as_os_str().as_bytes(), what)
}

/// Escapes a path for overlayfs's comma-separated option string (`:` too in lowerdir lists).
fn escape_overlay(p: &[u8], colon: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for &b in p {
        if b == b'\\' || b == b',' || (colon && b == b':') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Inputs of [`build`] that the caller prepared.
pub(crate) struct Prepared<'p> {
    pub parent_pid: libc::pid_t,
    pub idmap: &'p IdMap,
    pub user: &'p ResolvedUser,
    pub groups: Vec<u32>,
    pub scratch: &'p Path,
    pub report_w: RawFd,
    pub sync: Option<(RawFd, RawFd)>,
    pub stdout: OutPlan,
    pub stderr: OutPlan,
    /// One per `ExtraMount::File` with a host path, in order.
    pub host_file_fds: Vec<RawFd>,
    pub resolv_conf: Vec<u8>,
    pub hosts: Vec<u8>,
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
fn cap_last() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63)
    })
}

pub(crate) fn build(spec: &RunSpec<'_>, prep: Prepared<'_>) -> Result<Plan, Error> {
    let c = &spec.confinement;
    let userns = prep.idmap.uses_userns();
    let mut ns_flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if spec.network != Network::Host {
        ns_flags |= CloneFlags::CLONE_NEWNET;
    }
    let scratch_root = prep.scratch.join("root");
    let rootfs = match &spec.rootfs {
        Rootfs::Overlay {
            lowers,
            upper,
            work,
        } => {
            let mut legacy = b"lowerdir=".to_vec();
            for (i, l) in lowers.iter().enumerate() {
                if i > 0 {
                    legacy.push(b':');
                }
                legacy.extend(escape_overlay(l.as_os_str().as_bytes(), true));
            }
            legacy.extend(b",upperdir=");
            legacy.extend(escape_overlay(upper.as_os_str().as_bytes(), false));
            legacy.extend(b",workdir=");
            legacy.extend(escape_overlay(work.as_os_str().as_bytes(), false));
            if userns {
                legacy.extend(b",userxattr");
            }
            RootPlan::Overlay {
                lowers: lowers
                    .iter()
                    .map(|l| cpath(l, "lower dir"))
                    .collect::<Result<_, _>>()?,
                upper: cpath(upper, "upper dir")?,
                work: cpath(work, "work dir")?,
                userxattr: userns,
                volatile: spec.volatile,
                legacy: if legacy.len() < 4000 {
                    Some(cstr(&legacy, "overlay options")?)
                } else {
                    None
                },
            }
        }
        Rootfs::Dir(d) => RootPlan::Bind(cpath(d, "rootfs dir")?),
    };

    let mut files = Vec::new();
    let mut clones = Vec::new();
    let mut targets = Vec::new();

    // Host device nodes and /sys.
    let first_dev = clones.len();
    for (name, host, required) in DEV_NODES {
        clones.push(ClonePlan {
            path: host.to_owned(),
            fresh: false,
            recursive: false,
            attrs: 0,
            required,
            display: format!("/dev/{}", String::from_utf8_lossy(name)),
        });
    }
    let proc_clone = clones.len();
    clones.push(ClonePlan {
        path: c"proc".to_owned(),
        fresh: true,
        recursive: false,
        attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        required: true,
        display: "a new proc filesystem".into(),
    });
    let fresh_sys = (spec.network != Network::Host).then(|| {
        clones.push(ClonePlan {
            path: c"sysfs".to_owned(),
            fresh: true,
            recursive: false,
            attrs: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            required: false,
            display: "a new sysfs".into(),
        });
        clones.len() - 1
    });
    let sys_clone = clones.len();
    clones.push(ClonePlan {
        path: c"/sys".to_owned(),
        fresh: false,
        recursive: true,
        attrs: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        required: true,
        display: "/sys".into(),
    });
    targets.push(TargetPlan {
        path: c"/proc".to_owned(),
        dir: true,
        attach: Attach::Clone(proc_clone),
        what: "mount proc".into(),
    });
    targets.push(TargetPlan {
        path: c"/dev".to_owned(),
        dir: true,
        attach: Attach::Dev {
            first_clone: first_dev,
        },
        what: "mount tmpfs /dev".into(),
    });
    targets.push(TargetPlan {
        path: c"/sys".to_owned(),
        dir: true,
        attach: Attach::Sys {
            fresh: fresh_sys,
            clone: sys_clone,
        },
        what: "mount sysfs".into(),
    });

    // Generated /etc files, then the caller's mounts.
    let scratch = prep.scratch;
    #[allow(clippy::too_many_arguments)]
    fn add_file(
        (files, clones, targets): (
            &mut Vec<FilePlan>,
            &mut Vec<ClonePlan>,
            &mut Vec<TargetPlan>,
        ),
        scratch: &Path,
        target: &str,
        content: Content,
        mode: u32,
        uid: u32,
        gid: u32,
        ro: bool,
    ) -> Result<(), Error> {
        let file_attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        let path = scratch.join(format!("f{}", files.len()));
        files.push(FilePlan {
            path: cpath(&path, "scratch file")?,
            content,
            mode,
            uid,
            gid,
        });
        clones.push(ClonePlan {
            path: cpath(&path, "scratch file")?,
            fresh: false,
            recursive: false,
            attrs: file_attrs | if ro { MOUNT_ATTR_RDONLY } else { 0 },
            required: true,
            display: format!("the file for {target}"),
        });
        targets.push(TargetPlan {
            path: cstr(target.as_bytes(), "mount target")?,
            dir: false,
            attach: Attach::Clone(clones.len() - 1),
            what: format!("bind the generated {target}"),
        });
        Ok(())
    }
    let hostname = format!("{}\n", spec.hostname).into_bytes();
    for (target, content) in [
        ("/etc/resolv.conf", prep.resolv_conf),
        ("/etc/hosts", prep.hosts),
        ("/etc/hostname", hostname),
    ] {
        if target == "/etc/hosts" && spec.no_hosts {
            continue;
        }
        add_file(
            (&mut files, &mut clones, &mut targets),
            scratch,
            target,
            Content::Bytes(content),
            0o644,
            0,
            0,
            false,
        )?;
    }
    let mut host_fds = prep.host_file_fds.iter();
    for m in &spec.mounts {
        match m {
            ExtraMount::File {
                target,
                source,
                mode,
                uid,
                gid,
            } => {
                let content = match source {
                    crate::FileSource::Bytes(b) => Content::Bytes(b.clone()),
                    crate::FileSource::HostPath(_) => Content::Fd(
                        *host_fds
                            .next()
                            .ok_or_else(|| Error::Spec("host file descriptor missing".into()))?,
                    ),
                };
                add_file(
                    (&mut files, &mut clones, &mut targets),
                    scratch,
                    target,
                    content,
                    *mode & 0o7777,
                    *uid,
                    *gid,
                    true,
                )?;
            }
            ExtraMount::BindFile {
                src,
                target,
                readonly,
            }
            | ExtraMount::BindDir {
                src,
                target,
                readonly,
            } => {
                let dir = matches!(m, ExtraMount::BindDir { .. });
                clones.push(ClonePlan {
                    path: cpath(src, "bind source")?,
                    fresh: false,
                    recursive: dir,
                    attrs: if *readonly { MOUNT_ATTR_RDONLY } else { 0 },
                    required: true,
                    display: src.display().to_string(),
                });
                targets.push(TargetPlan {
                    path: cstr(target.as_bytes(), "mount target")?,
                    dir,
                    attach: Attach::Clone(clones.len() - 1),
                    what: format!("bind {}", src.display()),
                });
            }
            ExtraMount::Tmpfs { target, size } => {
                let opts = match size {
                    Some(s) => format!("mode=1777,size={s}"),
                    None => "mode=1777".into(),
                };
                targets.push(TargetPlan {
                    path: cstr(target.as_bytes(), "mount target")?,
                    dir: true,
                    attach: Attach::Tmpfs(cstr(opts.as_bytes(), "tmpfs options")?),
                    what: "mount tmpfs".into(),
                });
            }
        }
    }

    // Environment and command.
    let mut env: Vec<(String, String)> = spec.env.clone();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), prep.user.home.clone()));
    }
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let argv0 = &spec.argv[0];
    let exec: Vec<CString> = if argv0.contains('/') {
        vec![cstr(argv0.as_bytes(), "argv[0]")?]
    } else {
        path_var
            .split(':')
            .map(|d| {
                if d.is_empty() {
                    ".".to_string()
                } else {
                    d.to_string()
                }
            })
            .map(|d| {
                cstr(
                    format!("{}/{argv0}", d.trim_end_matches('/')).as_bytes(),
                    "PATH entry",
                )
            })
            .collect::<Result<_, _>>()?
    };
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes(), "argument"))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}").as_bytes(), "environment variable"))
        .collect::<Result<_, _>>()?;
    let argv_ptrs = argv
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs = envp
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();

    let mut devpts = "newinstance,ptmxmode=0666,mode=0620".to_string();
    if prep.idmap.host_gid(5).is_some() {
        devpts.push_str(",gid=5");
    }

    let mut keep_fds: Vec<RawFd> = vec![prep.report_w];
    if let Some((a, b)) = prep.sync {
        keep_fds.extend([a, b]);
    }
    for o in [prep.stdout, prep.stderr] {
        if let OutPlan::Fd(fd) = o {
            keep_fds.push(fd);
        }
    }
    keep_fds.extend(&prep.host_file_fds);
    keep_fds.retain(|fd| *fd > 2);
    keep_fds.sort_unstable();
    keep_fds.dedup();

    Ok(Plan {
        parent_pid: prep.parent_pid,
        keep_fds,
        report_w: prep.report_w,
        sync: prep.sync,
        ns_flags,
        lo_up: spec.network == Network::Private,
        hostname: cstr(spec.hostname.as_bytes(), "hostname")?,
        scratch: cpath(prep.scratch, "scratch dir")?,
        scratch_root: cpath(&scratch_root, "scratch dir")?,
        rootfs,
        upper: match &spec.rootfs {
            Rootfs::Overlay { upper, .. } => Some(cpath(upper, "upper dir")?),
            Rootfs::Dir(_) => None,
        },
        files,
        clones,
        targets,
        devpts_opts: cstr(devpts.as_bytes(), "devpts options")?,
        argv_area: argv_area(),
        cwd: cstr(spec.cwd.as_bytes(), "cwd")?,
        uid: prep.user.uid,
        gid: prep.user.gid,
        groups: prep.groups,
        set_groups: prep.idmap.allows_setgroups(),
        exec,
        argv,
        argv_ptrs,
        envp,
        envp_ptrs,
        stdin_null: spec.stdin == crate::Input::Null,
        stdout: prep.stdout,
        stderr: prep.stderr,
        rlimits: c
            .rlimits
            .iter()
            .map(|r| {
                let limit = libc::rlimit {
                    rlim_cur: r.soft,
                    rlim_max: r.hard,
                };
                (r.resource, limit)
            })
            .collect(),
        caps: c.capabilities.bits(),
        cap_last: cap_last(),
        seccomp: if c.seccomp {
            crate::seccomp::filter(c.capabilities)
        } else {
            Vec::new()
        },
        no_new_privs: c.no_new_privileges,
    })
}

/// Human description of a failed step (the errno is appended by the error's Display).
pub(crate) fn describe(plan: &Plan, spec: &RunSpec<'_>, id: u32, path: &str) -> String {
    let (code, idx) = (id >> 16, (id & 0xffff) as usize);
    let scratch_root = plan.scratch_root.to_string_lossy();
    let at = |default: &str| {
        if path.is_empty() {
            default.to_string()
        } else {
            path.to_string()
        }
    };
    match code {
        step::PDEATHSIG => "set the parent-death signal".into(),
        step::UNSHARE_USER => "create a user namespace (unshare CLONE_NEWUSER)".into(),
        step::UNSHARE => format!("create namespaces (unshare {:?})", plan.ns_flags),
        step::FORK => "fork the sandbox's pid 1".into(),
        step::MAKE_PRIVATE => "make / a private mount (MS_REC|MS_PRIVATE)".into(),
        step::SCRATCH => format!("mount tmpfs on {}", plan.scratch.to_string_lossy()),
        step::SCRATCH_ROOT => format!("create {scratch_root}"),
        step::OVERLAY => match &spec.rootfs {
            Rootfs::Overlay {
                lowers,
                upper,
                work,
            } => format!(
                "mount overlay on {scratch_root} (lowerdir {}, upperdir {}, workdir {})",
                lowers
                    .iter()
                    .map(|l| l.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
                upper.display(),
                work.display()
            ),
            Rootfs::Dir(_) => format!("mount overlay on {scratch_root}"),
        },
        step::OVERLAY_LOWER => match &spec.rootfs {
            Rootfs::Overlay { lowers, .. } => format!(
                "mount overlay on {scratch_root} (lowerdir {})",
                lowers
                    .get(idx)
                    .map(|l| l.display().to_string())
                    .unwrap_or_default()
            ),
            Rootfs::Dir(_) => format!("mount overlay on {scratch_root}"),
        },
        step::OVERLAY_OPT => match &spec.rootfs {
            Rootfs::Overlay { upper, work, .. } => match idx {
                0 => format!(
                    "mount overlay on {scratch_root} (upperdir {})",
                    upper.display()
                ),
                1 => format!(
                    "mount overlay on {scratch_root} (workdir {})",
                    work.display()
                ),
                _ => format!("mount overlay on {scratch_root} (userxattr)"),
            },
            Rootfs::Dir(_) => format!("mount overlay on {scratch_root}"),
        },
        step::BIND_ROOTFS => format!(
            "bind {} on {scratch_root}",
            spec.rootfs.writable_dir().display()
        ),
        step::OPEN_UPPER => format!("open {}", spec.rootfs.writable_dir().display()),
        step::FILE => format!(
            "write {}",
            plan.clones
                .iter()
                .filter(|c| c.display.starts_with("the file for "))
                .nth(idx)
                .map_or_else(|| "a mount file".to_string(), |c| c.display.clone())
        ),
        step::CLONE => match plan.clones.get(idx) {
            Some(c) if c.fresh => format!("create {}", c.display),
            Some(c) => format!("clone the mount of {} (open_tree)", c.display),
            None => "clone a mount".into(),
        },
        step::PIVOT => format!("pivot_root into {scratch_root}"),
        step::DETACH_OLD_ROOT => "detach the old root".into(),
        step::HOSTNAME => format!("set hostname {:?}", spec.hostname),
        step::LO_UP => "bring lo up (SIOCSIFFLAGS)".into(),
        step::TARGET => {
            let t = plan.targets.get(idx);
            format!(
                "create mount point {} for {}",
                at(&t.map_or_else(String::new, |t| t.path.to_string_lossy().into_owned())),
                t.map_or("a mount", |t| t.what.as_str())
            )
        }
        step::ATTACH => {
            let t = plan.targets.get(idx);
            format!(
                "{} on {}",
                t.map_or("mount", |t| t.what.as_str()),
                at(&t.map_or_else(String::new, |t| t.path.to_string_lossy().into_owned()))
            )
        }
        step::DEV_NODE => format!(
            "bind /dev/{}",
            DEV_NODES
                .get(idx)
                .map_or("?".into(), |d| String::from_utf8_lossy(d.0))
        ),
        step::DEV_LINK => format!("create symlink {}", at("in /dev")),
        step::DEVPTS => format!("mount devpts on {}", at("/dev/pts")),
        step::SHM => format!("mount tmpfs on {}", at("/dev/shm")),
        step::CWD => format!("create working directory {}", at(&spec.cwd)),
        step::STDIO => "set up stdio".into(),
        step::SETGROUPS => format!("setgroups {:?}", plan.groups),
        step::SETGID => format!("setresgid {}", plan.gid),
        step::SETUID => format!("setresuid {}", plan.uid),
        step::CHDIR => format!("chdir {}", at(&spec.cwd)),
        step::PIPE => "create a pipe".into(),
        step::SIGNALS => "set the signal mask".into(),
        step::RLIMIT => match spec.confinement.rlimits.get(idx) {
            Some(r) => format!("set --ulimit {}={}:{}", r.name(), r.soft, r.hard),
            None => "set a resource limit".into(),
        },
        step::CAPBSET if idx == 64 => "clear the inheritable capabilities".into(),
        step::CAPBSET => format!("drop capability {idx} from the bounding set"),
        step::SECCOMP => "install the seccomp filter".into(),
        step::NO_NEW_PRIVS => "set no_new_privs".into(),
        _ => format!("sandbox step {code}"),
    }
}

/// Where this process's command line lives (fields 48 and 49 of `/proc/self/stat`), read once.
fn argv_area() -> Option<(usize, usize)> {
    static AREA: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    *AREA.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let start = fields.get(48 - 3)?.parse().ok()?;
        let end = fields.get(49 - 3)?.parse().ok()?;
        (start < end).then_some((start, end))
    })
}
