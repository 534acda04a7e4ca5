//! kiln's rootless RUN sandbox: user, mount, pid, uts, ipc and net namespaces, overlay rootfs.
//!
//! [`run`] executes one RUN step in fresh Linux namespaces with the `nix` crate; no runc or crun.
//!
//! # Processes
//!
//! ```text
//! caller ──fork──▶ M ──fork──▶ G (pid 1: mounts, then reaper) ──fork──▶ S (the step: exec argv)
//! ```
//!
//! * The **caller** (any thread of a possibly multithreaded process) prepares everything that
//!   allocates before forking: every path, option string, argv/envp array, file descriptor and
//!   the list of mount points is built into a `Plan` of `CString`s. After `fork` the children
//!   only make syscalls on that plan and on fixed-size stack buffers, never touching the heap or
//!   a lock another thread might hold (glibc `fork` also resets malloc's locks, but nothing
//!   relies on it). Failures travel back as fixed binary records (step id, errno, path) on a
//!   close-on-exec pipe and the caller turns them into messages such as
//!   `mount overlay on /tmp/kiln-sandbox-…/root: EPERM`.
//! * **M** closes every inherited descriptor it does not need (so a concurrent run's pipes are
//!   never kept open), `unshare`s the user namespace, waits while the caller writes the id maps,
//!   `unshare`s mount, pid, uts, ipc (and net) namespaces and forks G, then waits for G and exits
//!   with its status. M dies with the calling thread (`PR_SET_PDEATHSIG`).
//! * **G** is pid 1 of the new pid namespace and dies with M (`PR_SET_PDEATHSIG`): when M is
//!   killed, the kernel kills every process of the namespace. G sets the hostname, brings `lo`
//!   up (private network), builds the mount tree (below), forks S, then reaps: it forwards
//!   SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to S, and when S exits it
//!   SIGKILLs everything left in the namespace (so `sleep 1000 &` does not survive) and exits
//!   with S's status (exit code, or 128+signal).
//! * **S** resets signal dispositions and mask, starts a new session, wires stdio, drops the
//!   capabilities the step does not keep from its bounding set and installs the seccomp filter
//!   (see [`Confinement`]), drops to the step's user (`setgroups`, `setresgid`, `setresuid`) and
//!   `execve`s argv (searching the step's `PATH` inside the rootfs). Resource limits are set by M,
//!   before it makes the user namespace.
//!
//! # Mount tree
//!
//! G makes `/` recursively private, mounts a private tmpfs on a per-run scratch directory
//! (created empty in `/dev/shm`, else the host's temp dir, and removed after the run), mounts the rootfs on
//! `scratch/root` (overlayfs through `fsopen`/`fsconfig` with `lowerdir+`, falling back to
//! `mount(2)`; `userxattr` inside a user namespace, the normal `trusted.*` options without one; a
//! plain directory is bind-mounted), writes every file mount (secrets, CA bundles,
//! `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`) on the scratch tmpfs, takes detached
//! `open_tree` copies of them and of every host bind source, `/sys` and the host's `null`,
//! `zero`, `full`, `random`, `urandom` and `tty`, then `pivot_root`s into the rootfs and detaches
//! the old root. Inside, it mounts a fresh `/proc`, a tmpfs `/dev` (device binds, the usual
//! symlinks, `devpts` with `newinstance,ptmxmode=0666`, a tmpfs `/dev/shm`), `/sys` (a fresh
//! read-only sysfs in a private network namespace, else a read-only recursive bind of the host's)
//! and attaches the file, bind and tmpfs mounts. Every mount lives only in the step's mount
//! namespace, so the host's `/proc/self/mountinfo` never changes and all of them vanish with G.
//!
//! # Mount points and the layer
//!
//! Mount targets are resolved component by component inside the new root (symlinks followed but
//! never out of it). Whatever the sandbox had to create for them (e.g. `/etc/hosts` on a busybox
//! rootfs, `/run/secrets/…`) is recorded, and after the run removed again from the writable
//! directory (the overlay upper dir, or the rootfs dir) when it is still an empty stub; a
//! whiteout that the stub replaced is restored, and a parent directory that creating the stub
//! copied up into the upper dir is removed again when it is still empty, not opaque, and has the
//! lower directory's mode and owner (it is moved into the overlay's work directory, whose owner
//! deletes it with the rest of that directory). [`RunOutcome::created_paths`] lists the created paths that
//! do not belong to the step's result so a layer differ can also exclude them. A directory the
//! sandbox created but the step then put files in is left in place and not listed. `cwd` is
//! created (owned by the step's user) when missing and is part of the result.
//!
//! # User namespace
//!
//! See [`IdMap::detect`]: real root maps the full id range onto itself (`0 0 4294967295`, so
//! files keep their owners and overlay mounts use `userxattr`), or runs with no user namespace
//! at all with [`UserNs::Disabled`]; any other caller maps container 0 to itself and container
//! 1..=65536 to its `/etc/subuid`/`/etc/subgid` ranges through `newuidmap`/`newgidmap`, or, without
//! ranges, only container 0 (with a warning once per process).
//!
//! # Stopping
//!
//! M dies with the calling thread, G with M, and the pid namespace with G, so a kiln killed by
//! Ctrl-C or SIGTERM takes every step process (and every mount) with it. A kiln that handles those
//! signals itself calls [`terminate_all`] (async-signal-safe) or [`Canceller::cancel`]; [`run`]
//! then returns status 137 after the usual clean-up. When kiln itself is SIGKILLed, no clean-up
//! runs: the mount-point stubs stay in the upper dir (the run's layer is abandoned anyway) and the
//! empty scratch directory is removed by the next run in any process.

mod caps;
mod child;
mod cleanup;
mod confine;
mod idmap;
mod parent;
mod plan;
mod probe;
mod seccomp;
mod sys;
mod user;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

pub use caps::{CapError, Capabilities};
pub use confine::{Confinement, Rlimit};
pub use idmap::{IdMap, IdMapKind, IdRange};
pub use parent::terminate_all;
pub use probe::probe_overlay;
pub use user::{ResolvedUser, UserSpec, resolve_user};

/// The root filesystem of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// overlayfs: read-only `lowers` (topmost first), the step's writes land in `upper`; `work`
    /// is overlayfs's empty work directory on the same filesystem as `upper`.
    Overlay {
        /// Lower directories, topmost first.
        lowers: Vec<PathBuf>,
        /// Upper (writable) directory.
        upper: PathBuf,
        /// Work directory.
        work: PathBuf,
    },
    /// Run directly in this directory (the copy-based fallback): writes land in it.
    Dir(PathBuf),
}

impl Rootfs {
    /// The directory the step's writes land in.
    pub fn writable_dir(&self) -> &std::path::Path {
        match self {
            Rootfs::Overlay { upper, .. } => upper,
            Rootfs::Dir(d) => d,
        }
    }
}

/// The step's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Share the host's network namespace.
    #[default]
    Host,
    /// A new network namespace with no usable interface (`lo` stays down).
    None,
    /// A new network namespace with `lo` up.
    Private,
}

/// Changes to the step's `/etc/resolv.conf` (as `--dns`, `--dns-search`, `--dns-option`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// Name servers instead of the host's.
    pub servers: Vec<String>,
    /// Search domains instead of the host's.
    pub search: Vec<String>,
    /// Resolver options added to the host's.
    pub options: Vec<String>,
}

/// Whether to create a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserNs {
    /// Always (rootless by default; identity-mapped for real root).
    #[default]
    Auto,
    /// Never: only for real root; overlay mounts then use `trusted.overlay.*` xattrs.
    Disabled,
}

impl UserNs {
    /// The xattr prefix overlayfs uses in the upper dir (opaque markers, redirects) for runs with
    /// this setting: `user.overlay.` inside a user namespace, else `trusted.overlay.`.
    pub fn overlay_xattr_prefix(self) -> &'static str {
        match self {
            UserNs::Auto => "user.overlay.",
            UserNs::Disabled => "trusted.overlay.",
        }
    }
}

/// Content of an [`ExtraMount::File`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// These bytes.
    Bytes(Vec<u8>),
    /// The content of this host file (opened by the caller, streamed by the sandbox).
    HostPath(PathBuf),
}

/// A mount added to the step's rootfs. Targets are absolute paths inside the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraMount {
    /// Bind a host file.
    BindFile {
        /// Host file.
        src: PathBuf,
        /// Path inside the rootfs.
        target: String,
        /// Mount read-only.
        readonly: bool,
    },
    /// Bind a host directory (recursively).
    BindDir {
        /// Host directory.
        src: PathBuf,
        /// Path inside the rootfs.
        target: String,
        /// Mount read-only.
        readonly: bool,
    },
    /// A fresh tmpfs (mode 1777).
    Tmpfs {
        /// Path inside the rootfs.
        target: String,
        /// Size limit in bytes (`None`: the kernel default).
        size: Option<u64>,
    },
    /// A read-only file materialised on a private tmpfs and bind-mounted (secrets, CA bundles).
    File {
        /// Path inside the rootfs.
        target: String,
        /// Content.
        source: FileSource,
        /// Permission bits, e.g. `0o400`.
        mode: u32,
        /// Owner inside the container.
        uid: u32,
        /// Group inside the container.
        gid: u32,
    },
}

impl ExtraMount {
    /// The mount's target inside the rootfs.
    pub fn target(&self) -> &str {
        match self {
            ExtraMount::BindFile { target, .. }
            | ExtraMount::BindDir { target, .. }
            | ExtraMount::Tmpfs { target, .. }
            | ExtraMount::File { target, .. } => target,
        }
    }
}

/// The step's standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Input {
    /// The caller's stdin.
    Inherit,
    /// `/dev/null`.
    #[default]
    Null,
}

/// A callback receiving a step's output chunks.
pub type OutputCallback<'a> = Box<dyn FnMut(&[u8]) + 'a>;

/// Where one of the step's output streams goes.
#[derive(Default)]
pub enum Output<'a> {
    /// The caller's stdout/stderr.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe; the callback gets every chunk as it arrives, on the thread that called [`run`].
    Callback(OutputCallback<'a>),
}

impl std::fmt::Debug for Output<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Output::Inherit => "Inherit",
            Output::Null => "Null",
            Output::Callback(_) => "Callback",
        })
    }
}

/// Stops one run from any thread or a signal handler.
#[derive(Debug, Clone)]
pub struct Canceller {
    inner: Arc<(OwnedFd, OwnedFd)>,
}

impl Canceller {
    /// A new, untriggered canceller.
    pub fn new() -> Result<Self, Error> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|errno| Error::Sys {
                    what: "create the cancel pipe".into(),
                    errno,
                })?;
        Ok(Canceller {
            inner: Arc::new((r, w)),
        })
    }

    /// Kills the run this canceller was given to (or the next one, if none is running yet).
    /// Async-signal-safe.
    pub fn cancel(&self) {
        // SAFETY: writing one byte to a pipe we own.
        unsafe {
            libc::write(self.inner.1.as_raw_fd(), b"x".as_ptr().cast(), 1);
        }
    }

    pub(crate) fn read_fd(&self) -> i32 {
        self.inner.0.as_raw_fd()
    }
}

/// One RUN step.
#[derive(Debug)]
pub struct RunSpec<'a> {
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// Command and arguments; `argv[0]` without a `/` is searched in the step's `PATH`.
    pub argv: Vec<String>,
    /// Environment; `PATH` and `HOME` get defaults when absent.
    pub env: Vec<(String, String)>,
    /// Working directory (absolute); created, owned by the user, when missing.
    pub cwd: String,
    /// The user the step runs as.
    pub user: UserSpec,
    /// Hostname inside the step (also in `/etc/hostname` and `/etc/hosts`).
    pub hostname: String,
    /// More `/etc/hosts` lines, as (host name, address).
    pub extra_hosts: Vec<(String, String)>,
    /// Leave the rootfs's own `/etc/hosts` (if any) instead of generating one.
    pub no_hosts: bool,
    /// Changes to the generated `/etc/resolv.conf`.
    pub dns: DnsSettings,
    /// Network mode.
    pub network: Network,
    /// Extra mounts, attached in order.
    pub mounts: Vec<ExtraMount>,
    /// Standard input.
    pub stdin: Input,
    /// Standard output.
    pub stdout: Output<'a>,
    /// Standard error.
    pub stderr: Output<'a>,
    /// User-namespace policy.
    pub userns: UserNs,
    /// Capabilities, seccomp filter, `no_new_privs` and resource limits of the step's process.
    pub confinement: Confinement,
    /// Optional canceller.
    pub cancel: Option<Canceller>,
    /// Mount an overlay rootfs with `volatile`: the step's fsync/sync calls skip the upper dir
    /// (as buildah's build containers do). For upper dirs that are committed or thrown away
    /// right after the run; overlayfs refuses to mount that work dir again, so not for a
    /// working container's persistent upper. Ignored where the kernel lacks the option.
    pub volatile: bool,
}

impl<'a> RunSpec<'a> {
    /// A spec with defaults: root, cwd `/`, hostname `kiln`, host network, no extra mounts,
    /// stdin from `/dev/null`, inherited stdout and stderr, buildah's capabilities and kiln's
    /// seccomp filter.
    pub fn new(rootfs: Rootfs, argv: Vec<String>) -> Self {
        RunSpec {
            rootfs,
            argv,
            env: Vec::new(),
            cwd: "/".into(),
            user: UserSpec::root(),
            hostname: "kiln".into(),
            extra_hosts: Vec::new(),
            no_hosts: false,
            dns: DnsSettings::default(),
            network: Network::Host,
            mounts: Vec::new(),
            stdin: Input::Null,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            userns: UserNs::Auto,
            confinement: Confinement::default(),
            cancel: None,
            volatile: false,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Exit code, or 128+signal when the step was killed by a signal.
    pub status: i32,
    /// Paths (inside the rootfs, absolute) the sandbox created as mount points; they are not part
    /// of the step's result and have been removed from the writable directory.
    pub created_paths: Vec<PathBuf>,
}

/// Errors of the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is unusable.
    #[error("invalid run spec: {0}")]
    Spec(String),
    /// The user could not be resolved or mapped.
    #[error("user {spec:?}: {reason}")]
    User {
        /// The user spec.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// The id mapping could not be set up.
    #[error("user namespace: {0}")]
    IdMap(String),
    /// An I/O operation of the caller failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation, naming its file.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A syscall failed, in the caller or while setting the sandbox up.
    #[error("{what}: {errno}")]
    Sys {
        /// The operation, naming its path.
        what: String,
        /// The error.
        errno: nix::errno::Errno,
    },
    /// The step's command could not be executed.
    #[error("exec {argv0}: {errno}")]
    Exec {
        /// The command.
        argv0: String,
        /// The error (`ENOENT`: not found in `PATH`).
        errno: nix::errno::Errno,
    },
}

/// Keeps the last lines of a stream (for error messages), e.g. from an [`Output::Callback`].
#[derive(Debug, Clone, Default)]
pub struct LineTail {
    max: usize,
    lines: VecDeque<Vec<u8>>,
    partial: Vec<u8>,
}

impl LineTail {
    /// Keeps at most `max` lines.
    pub fn new(max: usize) -> Self {
        LineTail {
            max,
            lines: VecDeque::new(),
            partial: Vec::new(),
        }
    }

    /// Adds a chunk of output.
    pub fn push(&mut self, mut chunk: &[u8]) {
        while let Some(i) = chunk.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&chunk[..i]);
            let line = std::mem::take(&mut self.partial);
            self.lines.push_back(line);
            while self.lines.len() > self.max {
                self.lines.pop_front();
            }
            chunk = &chunk[i + 1..];
        }
        self.partial.extend_from_slice(chunk);
        // Bound a never-ending line.
        if self.partial.len() > 64 * 1024 {
            let cut = self.partial.len() - 64 * 1024;
            self.partial.drain(..cut);
        }
    }

    /// The kept lines (and an unterminated last line), lossily decoded.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        if !self.partial.is_empty() {
            out.push(String::from_utf8_lossy(&self.partial).into_owned());
            if out.len() > self.max {
                out.remove(0);
            }
        }
        out
    }
}

/// Runs one step to completion. See the crate documentation for what happens.
pub fn run(spec: RunSpec<'_>) -> Result<RunOutcome, Error> {
    parent::run(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_tail_keeps_last_lines() {
        let mut t = LineTail::new(2);
        t.push(b"a\nb");
        t.push(b"c\nd\ne");
        assert_eq!(t.lines(), vec!["d".to_string(), "e".to_string()]);
        t.push(b"\n");
        assert_eq!(t.lines(), vec!["d".to_string(), "e".to_string()]);
    }
}
