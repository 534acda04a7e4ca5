//! The caller's side of a run: validation, preparing the plan, forking, writing the id maps,
//! streaming output, waiting, turning the children's records into results, and cleaning up.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::{ForkResult, fork, pipe2};

use crate::child::{CREATED_OVER_WHITEOUT, REC_COPYUP, REC_CREATED, REC_ERROR, REC_HEADER};
use crate::cleanup::{self, Created};
use crate::plan::{self, OutPlan, Prepared, step};
use crate::{
    Error, ExtraMount, FileSource, IdMap, Network, Output, ResolvedUser, Rootfs, RunOutcome,
    RunSpec,
};

const SLOTS: usize = 64;
static ACTIVE: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

/// SIGKILLs every running sandbox of this process (the first process of each; the rest of its
/// tree dies with it). Async-signal-safe: meant for a SIGINT/SIGTERM handler. Each affected
/// [`crate::run`] returns status 137 after its usual clean-up.
pub fn terminate_all() {
    for slot in &ACTIVE {
        let pid = slot.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: plain kill of a child we have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

struct Registration(Option<usize>);

impl Registration {
    fn new(pid: i32) -> Self {
        for (i, slot) in ACTIVE.iter().enumerate() {
            if slot
                .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Registration(Some(i));
            }
        }
        Registration(None)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.0.take() {
            ACTIVE[i].store(0, Ordering::SeqCst);
        }
    }
}

/// The per-run scratch directory (an empty mount point on the host); removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(Errno) -> Error {
    let what = what.into();
    move |errno| Error::Sys { what, errno }
}

fn validate(spec: &RunSpec<'_>) -> Result<(), Error> {
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return Err(Error::Spec("empty command".into()));
    }
    if !spec.cwd.starts_with('/') {
        return Err(Error::Spec(format!(
            "working directory {:?} is not absolute",
            spec.cwd
        )));
    }
    if spec.hostname.is_empty()
        || spec.hostname.len() > 64
        || spec.hostname.contains(['/', '\n', '\0', ' '])
    {
        return Err(Error::Spec(format!("invalid hostname {:?}", spec.hostname)));
    }
    let dir = |p: &Path, what: &str| -> Result<(), Error> {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Error::Spec(format!(
                "{what} {} is not a directory",
                p.display()
            ))),
            Err(source) => Err(Error::Io {
                what: format!("{what} {}", p.display()),
                source,
            }),
        }
    };
    match &spec.rootfs {
        Rootfs::Overlay {
            lowers,
            upper,
            work,
        } => {
            if lowers.is_empty() {
                return Err(Error::Spec(
                    "an overlay rootfs needs at least one lower dir".into(),
                ));
            }
            for l in lowers {
                dir(l, "lower dir")?;
            }
            dir(upper, "upper dir")?;
            dir(work, "work dir")?;
        }
        Rootfs::Dir(d) => dir(d, "rootfs dir")?,
    }
    for m in &spec.mounts {
        let t = m.target();
        if !t.starts_with('/') || t.len() > 3000 {
            return Err(Error::Spec(format!(
                "mount target {t:?} is not an absolute path"
            )));
        }
        match m {
            ExtraMount::BindFile { src, .. } => match fs::metadata(src) {
                Ok(md) if !md.is_dir() => {}
                Ok(_) => {
                    return Err(Error::Spec(format!(
                        "bind source {} is a directory",
                        src.display()
                    )));
                }
                Err(source) => {
                    return Err(Error::Io {
                        what: format!("bind source {}", src.display()),
                        source,
                    });
                }
            },
            ExtraMount::BindDir { src, .. } => dir(src, "bind source")?,
            _ => {}
        }
    }
    Ok(())
}

/// The step's `/etc/resolv.conf`: the host's, minus loopback name servers when the step has its
/// own network namespace (falling back to systemd-resolved's upstream list, then public servers).
fn resolv_conf(network: Network) -> Vec<u8> {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if network == Network::Host
        && host
            .lines()
            .any(|l| l.trim_start().starts_with("nameserver"))
    {
        return host.into_bytes();
    }
    let filter = |text: &str| -> Option<String> {
        let mut servers = 0;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                let mut f = l.split_whitespace();
                if f.next() != Some("nameserver") {
                    return true;
                }
                let addr = f.next().unwrap_or("");
                let lo = addr.starts_with("127.") || addr == "::1" || addr == "0.0.0.0";
                if !lo {
                    servers += 1;
                }
                !lo
            })
            .collect();
        (servers > 0).then(|| kept.join("\n") + "\n")
    };
    if let Some(t) = filter(&host) {
        return t.into_bytes();
    }
    if let Some(t) = fs::read_to_string("/run/systemd/resolve/resolv.conf")
        .ok()
        .and_then(|t| filter(&t))
    {
        return t.into_bytes();
    }
    b"nameserver 8.8.8.8\nnameserver 8.8.4.4\n".to_vec()
}

/// `conf` with `dns` applied: its name servers or search domains replaced when `dns` has some,
/// its options added to.
fn with_dns(conf: Vec<u8>, dns: &crate::DnsSettings) -> Vec<u8> {
    if dns == &crate::DnsSettings::default() {
        return conf;
    }
    let text = String::from_utf8_lossy(&conf);
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        let replaced = match key {
            "nameserver" => !dns.servers.is_empty(),
            "search" | "domain" => !dns.search.is_empty(),
            _ => false,
        };
        if !replaced {
            out.push_str(line);
            out.push('\n');
        }
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.search.is_empty() {
        out.push_str(&format!("search {}\n", dns.search.join(" ")));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out.into_bytes()
}

fn hosts_file(hostname: &str, extra: &[(String, String)]) -> Vec<u8> {
    let mut s = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    for (host, addr) in extra {
        s.push_str(&format!("{addr}\t{host}\n"));
    }
    s.into_bytes()
}

/// Checks that the step's ids exist in the mapping; returns the supplementary groups to set.
fn check_mapped(idmap: &IdMap, user: &ResolvedUser, spec: &RunSpec<'_>) -> Result<Vec<u32>, Error> {
    let hint = if idmap.kind == crate::IdMapKind::Single {
        " (only container id 0 exists: the caller has no /etc/subuid and /etc/subgid ranges)"
    } else {
        ""
    };
    let err = |reason: String| Error::User {
        spec: spec.user.to_string(),
        reason,
    };
    if idmap.host_uid(user.uid).is_none() {
        return Err(err(format!(
            "uid {} is not mapped in the user namespace{hint}",
            user.uid
        )));
    }
    if idmap.host_gid(user.gid).is_none() {
        return Err(err(format!(
            "gid {} is not mapped in the user namespace{hint}",
            user.gid
        )));
    }
    for m in &spec.mounts {
        if let ExtraMount::File {
            target, uid, gid, ..
        } = m
            && (idmap.host_uid(*uid).is_none() || idmap.host_gid(*gid).is_none())
        {
            return Err(Error::Spec(format!(
                "owner {uid}:{gid} of the file mounted at {target} is not mapped{hint}"
            )));
        }
    }
    let (mapped, dropped): (Vec<u32>, Vec<u32>) = user
        .groups
        .iter()
        .partition(|g| idmap.host_gid(**g).is_some());
    if !dropped.is_empty() {
        tracing::warn!(
            "supplementary groups {dropped:?} of {} are not mapped; the step runs without them",
            spec.user
        );
    }
    Ok(mapped)
}

/// Removes the (empty) scratch directories of processes that no longer exist: left behind only
/// when a kiln was SIGKILLed mid-run.
fn sweep_stale_scratch(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("kiln-sandbox-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir(e.path());
        }
    }
}

/// Where scratch directories (empty mount points) are made: `/dev/shm` when it is usable, since
/// creating and removing a directory there costs microseconds (on a disk filesystem mounted with
/// `discard`, removing one waits for the device), then the temp dir.
fn scratch_parents() -> Vec<PathBuf> {
    let mut v = Vec::new();
    let shm = Path::new("/dev/shm");
    if nix::unistd::access(
        shm,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .is_ok()
    {
        v.push(shm.to_path_buf());
    }
    v.push(std::env::temp_dir());
    v
}

fn make_scratch() -> Result<Scratch, Error> {
    let mut last = None;
    for parent in scratch_parents() {
        sweep_stale_scratch(&parent);
        let template = parent.join(format!("kiln-sandbox-{}-XXXXXX", std::process::id()));
        match nix::unistd::mkdtemp(&template) {
            Ok(p) => return Ok(Scratch(p)),
            Err(e) => last = Some((e, template)),
        }
    }
    let (errno, template) = last.expect("the temp dir is always a candidate");
    Err(Error::Sys {
        what: format!("create a scratch directory {}", template.display()),
        errno,
    })
}

fn pipe(what: &str) -> Result<(OwnedFd, OwnedFd), Error> {
    pipe2(OFlag::O_CLOEXEC).map_err(sys_err(format!("create the {what} pipe")))
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Reads what is available from `fd`; `Ok(false)` at end of file.
fn read_some(fd: RawFd, buf: &mut [u8], mut sink: impl FnMut(&[u8])) -> Result<bool, Errno> {
    loop {
        // SAFETY: reading into a valid buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            sink(&buf[..n as usize]);
            continue;
        }
        if n == 0 {
            return Ok(false);
        }
        match Errno::last() {
            Errno::EAGAIN => return Ok(true),
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

struct Stream<'s, 'a> {
    fd: Option<OwnedFd>,
    out: &'s mut Output<'a>,
}

pub(crate) fn run(mut spec: RunSpec<'_>) -> Result<RunOutcome, Error> {
    validate(&spec)?;
    let idmap = IdMap::detect(spec.userns)?;
    let user = crate::resolve_user(&spec.rootfs, &spec.user)?;
    let groups = check_mapped(&idmap, &user, &spec)?;

    let mut host_files: Vec<OwnedFd> = Vec::new();
    for m in &spec.mounts {
        if let ExtraMount::File {
            source: FileSource::HostPath(p),
            ..
        } = m
        {
            let f = fs::File::open(p).map_err(|source| Error::Io {
                what: format!("open {}", p.display()),
                source,
            })?;
            host_files.push(f.into());
        }
    }
    let scratch = make_scratch()?;
    let (report_r, report_w) = pipe("report")?;
    let sync = if idmap.uses_userns() {
        Some((pipe("sync")?, pipe("sync")?))
    } else {
        None
    };
    let mut out_pipes: [Option<(OwnedFd, OwnedFd)>; 2] = [None, None];
    let mut out_plans = [OutPlan::Inherit, OutPlan::Inherit];
    for (i, o) in [&spec.stdout, &spec.stderr].into_iter().enumerate() {
        out_plans[i] = match o {
            Output::Inherit => OutPlan::Inherit,
            Output::Null => OutPlan::Null,
            Output::Callback(_) => {
                let p = pipe("output")?;
                let w = p.1.as_raw_fd();
                out_pipes[i] = Some(p);
                OutPlan::Fd(w)
            }
        };
    }

    let plan = plan::build(
        &spec,
        Prepared {
            parent_pid: nix::unistd::getpid().as_raw(),
            idmap: &idmap,
            user: &user,
            groups,
            scratch: &scratch.0,
            report_w: report_w.as_raw_fd(),
            // (M reads the go-ahead from the first pipe, writes "ready" to the second.)
            sync: sync
                .as_ref()
                .map(|((go_r, _), (_, ready_w))| (go_r.as_raw_fd(), ready_w.as_raw_fd())),
            stdout: out_plans[0],
            stderr: out_plans[1],
            host_file_fds: host_files.iter().map(AsRawFd::as_raw_fd).collect(),
            resolv_conf: with_dns(resolv_conf(spec.network), &spec.dns),
            hosts: hosts_file(&spec.hostname, &spec.extra_hosts),
        },
    )?;
    let mut clone_fds: Vec<RawFd> = vec![-1; plan.clones.len()];

    // SAFETY: the child only runs `child::middle`, which makes syscalls on the prepared plan and
    // never returns.
    let pid = match unsafe { fork() }.map_err(sys_err("fork the sandbox"))? {
        ForkResult::Child => unsafe { crate::child::middle(&plan, &mut clone_fds) },
        ForkResult::Parent { child } => child.as_raw(),
    };
    let registration = Registration::new(pid);
    drop(report_w);
    drop(host_files);
    let mut streams: Vec<Stream<'_, '_>> = Vec::new();
    let [o0, o1] = out_pipes;
    let (stdout, stderr) = (&mut spec.stdout, &mut spec.stderr);
    for (p, out) in [(o0, stdout), (o1, stderr)] {
        if let Some((r, w)) = p {
            drop(w);
            set_nonblocking(r.as_raw_fd());
            streams.push(Stream { fd: Some(r), out });
        }
    }
    // SAFETY: pidfd_open returns a new descriptor we own.
    let pidfd = match crate::sys::pidfd_open(pid) {
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(errno) => {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(Error::Sys {
                what: "pidfd_open for the sandbox".into(),
                errno,
            });
        }
    };

    // Id maps: wait for M to create its user namespace, write them, let it go on.
    let mut map_error = None;
    if let Some(((go_r, go_w), (ready_r, ready_w))) = sync {
        drop(go_r);
        drop(ready_w);
        let mut b = [0u8; 1];
        // SAFETY: blocking read of one byte; EOF if M failed first.
        let n = loop {
            let n = unsafe { libc::read(ready_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            if n < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            break n;
        };
        if n == 1 {
            match idmap.write_for(pid) {
                // SAFETY: one-byte write to our pipe.
                Ok(()) => unsafe {
                    libc::write(go_w.as_raw_fd(), b"g".as_ptr().cast(), 1);
                },
                Err(e) => map_error = Some(e),
            }
        }
        drop(go_w);
        drop(ready_r);
    }

    // Stream output and records until M has exited and every pipe is closed.
    let report_fd = report_r.as_raw_fd();
    set_nonblocking(report_fd);
    let mut report = Vec::new();
    let mut report_open = true;
    let mut exited = false;
    let mut cancel_fd = spec.cancel.as_ref().map(|c| c.read_fd());
    let mut buf = vec![0u8; 64 * 1024];
    let mut deadline: Option<std::time::Instant> = None;
    loop {
        let open_streams = streams.iter().filter(|s| s.fd.is_some()).count();
        if exited && !report_open && open_streams == 0 {
            break;
        }
        if let Some(d) = deadline
            && std::time::Instant::now() >= d
        {
            break;
        }
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        let mut roles: Vec<usize> = Vec::new();
        let push =
            |pfds: &mut Vec<libc::pollfd>, roles: &mut Vec<usize>, fd: RawFd, role: usize| {
                pfds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                roles.push(role);
            };
        if report_open {
            push(&mut pfds, &mut roles, report_fd, 0);
        }
        for (i, s) in streams.iter().enumerate() {
            if let Some(fd) = &s.fd {
                push(&mut pfds, &mut roles, fd.as_raw_fd(), 10 + i);
            }
        }
        if !exited {
            push(&mut pfds, &mut roles, pidfd.as_raw_fd(), 1);
        }
        if let Some(fd) = cancel_fd {
            push(&mut pfds, &mut roles, fd, 2);
        }
        let timeout = if exited { 200 } else { -1 };
        // SAFETY: pfds is a valid array of pollfd.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            break;
        }
        for (pfd, role) in pfds.iter().zip(&roles) {
            if pfd.revents == 0 {
                continue;
            }
            match *role {
                0 => {
                    if !read_some(report_fd, &mut buf, |b| report.extend_from_slice(b))
                        .unwrap_or(false)
                    {
                        report_open = false;
                    }
                }
                1 => {
                    exited = true;
                    // Step processes are gone with the pid namespace; allow pipes a moment to
                    // drain in case something outside still holds them.
                    deadline = Some(std::time::Instant::now() + std::time::Duration::from_secs(2));
                }
                2 => {
                    // SAFETY: plain kill of our unreaped child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    cancel_fd = None;
                }
                r => {
                    let s = &mut streams[r - 10];
                    let fd = s.fd.as_ref().map(AsRawFd::as_raw_fd).unwrap_or(-1);
                    let out = &mut s.out;
                    let open = read_some(fd, &mut buf, |b| {
                        if let Output::Callback(cb) = &mut **out {
                            cb(b)
                        }
                    })
                    .unwrap_or(false);
                    if !open {
                        s.fd = None;
                    }
                }
            }
        }
    }
    drop(registration);
    let mut st: libc::c_int = 0;
    let status = loop {
        // SAFETY: reaping our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else if libc::WIFSIGNALED(st) {
                128 + libc::WTERMSIG(st)
            } else {
                125
            };
        }
        if r < 0 && Errno::last() != Errno::EINTR {
            break 125;
        }
    };
    if report_open {
        let _ = read_some(report_fd, &mut buf, |b| report.extend_from_slice(b));
    }

    // Records.
    let mut created = Vec::new();
    let mut copyups = Vec::new();
    let mut error: Option<Error> = None;
    let mut rest = &report[..];
    while rest.len() >= REC_HEADER {
        let word = |i: usize| u32::from_ne_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let (kind, id, value, len) = (word(0), word(4), word(8) as i32, word(12) as usize);
        if rest.len() < REC_HEADER + len {
            break;
        }
        let payload = &rest[REC_HEADER..REC_HEADER + len];
        match kind {
            REC_CREATED => created.push(Created {
                path: payload.to_vec(),
                over_whiteout: value & CREATED_OVER_WHITEOUT != 0,
            }),
            REC_COPYUP => copyups.push(payload.to_vec()),
            REC_ERROR if error.is_none() => {
                let errno = Errno::from_raw(value);
                error = Some(if id >> 16 == step::EXEC {
                    Error::Exec {
                        argv0: spec.argv[0].clone(),
                        errno,
                    }
                } else {
                    Error::Sys {
                        what: plan::describe(&plan, &spec, id, &String::from_utf8_lossy(payload)),
                        errno,
                    }
                });
            }
            _ => {}
        }
        rest = &rest[REC_HEADER + len..];
    }

    let created_paths = cleanup::clean(&spec.rootfs, &created, &copyups);
    drop(scratch);
    if let Some(e) = map_error {
        return Err(e);
    }
    if let Some(e) = error {
        return Err(e);
    }
    Ok(RunOutcome {
        status,
        created_paths,
    })
}
