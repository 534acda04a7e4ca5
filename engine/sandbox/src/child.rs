//! The forked side of a run: process M (namespaces), G (pid 1: mounts, then reaper) and S (the
//! step). Only syscalls on the prepared [`Plan`] and fixed-size stack buffers; no heap, no locks,
//! no panicking paths. Failures are sent to the caller as binary records, then the process exits.

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{ForkResult, fork, pivot_root};

use crate::plan::{Attach, Content, DEV_NODES, OutPlan, Plan, RootPlan, step};
use crate::sys;

/// Record kinds on the report pipe.
pub(crate) const REC_ERROR: u32 = 1;
pub(crate) const REC_CREATED: u32 = 2;
pub(crate) const REC_COPYUP: u32 = 3;
/// Header: kind, step, value (errno or flags), payload length; all u32/i32 native-endian.
pub(crate) const REC_HEADER: usize = 16;
/// Flag of a [`REC_CREATED`] record: the created path replaced a whiteout in the upper dir.
pub(crate) const CREATED_OVER_WHITEOUT: i32 = 1;

/// Exit status of a child whose setup failed (the caller reads the reason from the records).
const SETUP_FAILED: i32 = 125;
const PATH_CAP: usize = 4096;
const MAX_PAYLOAD: usize = 4000;

/// A NUL-terminated path in a fixed buffer.
struct PBuf {
    b: [u8; PATH_CAP],
    n: usize,
}

impl PBuf {
    fn new() -> Self {
        PBuf {
            b: [0; PATH_CAP],
            n: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.b.get(..self.n).unwrap_or(&[])
    }

    fn cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(self.b.get(..=self.n).unwrap_or(&[0])).unwrap_or(c"")
    }

    fn set(&mut self, s: &[u8]) -> Result<(), Errno> {
        self.n = 0;
        self.push(s)
    }

    fn push(&mut self, s: &[u8]) -> Result<(), Errno> {
        let end = self.n + s.len();
        if end >= PATH_CAP {
            return Err(Errno::ENAMETOOLONG);
        }
        if let Some(dst) = self.b.get_mut(self.n..end) {
            dst.copy_from_slice(s);
        }
        self.n = end;
        if let Some(z) = self.b.get_mut(end) {
            *z = 0;
        }
        Ok(())
    }

    /// Appends `/comp` (no extra slash after a lone `/`).
    fn push_comp(&mut self, comp: &[u8]) -> Result<(), Errno> {
        if self.bytes() != b"/" {
            self.push(b"/")?;
        }
        self.push(comp)
    }

    /// Drops the last component of an absolute path (never above `/`).
    fn pop_comp(&mut self) {
        let bytes = self.bytes();
        let cut = match bytes.iter().rposition(|c| *c == b'/') {
            Some(0) | None => 1,
            Some(i) => i,
        };
        self.n = cut.min(self.n.max(1));
        if let Some(b) = self.b.get_mut(0) {
            *b = b'/';
        }
        if let Some(z) = self.b.get_mut(self.n) {
            *z = 0;
        }
    }
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = buf.get(n as usize..).unwrap_or(&[]);
    }
    Ok(())
}

fn send(fd: RawFd, kind: u32, step: u32, value: i32, payload: &[u8]) {
    let mut rec = [0u8; REC_HEADER + MAX_PAYLOAD];
    let n = payload.len().min(MAX_PAYLOAD);
    rec[0..4].copy_from_slice(&kind.to_ne_bytes());
    rec[4..8].copy_from_slice(&step.to_ne_bytes());
    rec[8..12].copy_from_slice(&value.to_ne_bytes());
    rec[12..16].copy_from_slice(&(n as u32).to_ne_bytes());
    if let (Some(dst), Some(src)) = (rec.get_mut(REC_HEADER..REC_HEADER + n), payload.get(..n)) {
        dst.copy_from_slice(src);
    }
    let _ = write_all(fd, rec.get(..REC_HEADER + n).unwrap_or(&[]));
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit never returns and runs no user-space clean-up.
    unsafe { libc::_exit(code) }
}

fn fail(p: &Plan, step: u32, e: Errno, path: &[u8]) -> ! {
    send(p.report_w, REC_ERROR, step, e as i32, path);
    exit(SETUP_FAILED)
}

fn ck<T>(p: &Plan, r: Result<T, Errno>, step: u32) -> T {
    match r {
        Ok(v) => v,
        Err(e) => fail(p, step, e, b""),
    }
}

fn ckp<T>(p: &Plan, r: Result<T, Errno>, step: u32, path: &[u8]) -> T {
    match r {
        Ok(v) => v,
        Err(e) => fail(p, step, e, path),
    }
}

fn close(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: closing a descriptor this process owns.
        unsafe { libc::close(fd) };
    }
}

fn decode_status(st: libc::c_int) -> i32 {
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        SETUP_FAILED
    }
}

fn set_pdeathsig(p: &Plan) {
    // SAFETY: plain prctl call.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    ck(p, sys::check(r), step::id(step::PDEATHSIG, 0));
}

/// Closes every descriptor >= 3 that is not in the sorted list `keep`.
fn close_others(keep: &[RawFd]) {
    let mut next: u32 = 3;
    for &fd in keep {
        let fd = fd as u32;
        if fd > next {
            let _ = sys::close_range(next, fd - 1, 0);
        }
        next = next.max(fd + 1);
    }
    let _ = sys::close_range(next, u32::MAX, 0);
}

/// Restores default signal handling (the caller's handlers must not run in the children), keeps
/// SIGPIPE ignored so a vanished caller cannot kill a child mid-write, and unblocks everything.
fn reset_signals(keep_sigpipe_ignored: bool) {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let disp = if sig == libc::SIGPIPE && keep_sigpipe_ignored {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        // SAFETY: installing a default/ignore disposition.
        unsafe { libc::signal(sig, disp) };
    }
    // SAFETY: sigset_t is plain data initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Process M. Runs right after `fork` in the caller; never returns.
///
/// # Safety
/// Must only be called in a freshly forked child; `fds` has one slot per `plan.clones`.
pub(crate) unsafe fn middle(p: &Plan, fds: &mut [RawFd]) -> ! {
    reset_signals(true);
    set_pdeathsig(p);
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != p.parent_pid {
        exit(SETUP_FAILED);
    }
    close_others(&p.keep_fds);
    // A hard limit above kiln's own can only be raised here, before the user namespace (and
    // only by a privileged kiln); the step's process sets the exact limits.
    for (resource, limit) in &p.rlimits {
        let resource = *resource as libc::__rlimit_resource_t;
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with pointers to stack structs.
        unsafe {
            if libc::getrlimit(resource, &mut cur) == 0 && cur.rlim_max < limit.rlim_max {
                cur.rlim_max = limit.rlim_max;
                libc::setrlimit(resource, &cur);
            }
        }
    }
    if let Some((go_r, ready_w)) = p.sync {
        ck(
            p,
            unshare(CloneFlags::CLONE_NEWUSER),
            step::id(step::UNSHARE_USER, 0),
        );
        if write_all(ready_w, b"u").is_err() {
            exit(SETUP_FAILED);
        }
        let mut b = [0u8; 1];
        loop {
            // SAFETY: reading into a 1-byte stack buffer.
            let n = unsafe { libc::read(go_r, b.as_mut_ptr().cast(), 1) };
            if n == 1 {
                break;
            }
            if n < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            // The caller could not write the id maps; it reports why.
            exit(SETUP_FAILED);
        }
        close(go_r);
        close(ready_w);
    }
    ck(p, unshare(p.ns_flags), step::id(step::UNSHARE, 0));
    let mut lifeline = [-1 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    let r = unsafe { libc::pipe2(lifeline.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    ck(p, sys::check(r), step::id(step::PIPE, 0));
    // SAFETY: this process is single-threaded.
    match ck(p, unsafe { fork() }, step::id(step::FORK, 0)) {
        ForkResult::Child => {
            close(lifeline[1]);
            // SAFETY: freshly forked child.
            unsafe { reaper(p, fds, lifeline[0]) }
        }
        ForkResult::Parent { child } => {
            close(lifeline[0]);
            for o in [p.stdout, p.stderr] {
                if let OutPlan::Fd(fd) = o {
                    close(fd);
                }
            }
            close(p.report_w);
            let mut st: libc::c_int = 0;
            loop {
                // SAFETY: waiting for our own child.
                let r = unsafe { libc::waitpid(child.as_raw(), &mut st, 0) };
                if r == child.as_raw() {
                    exit(decode_status(st));
                }
                if r < 0 && Errno::last() != Errno::EINTR {
                    exit(SETUP_FAILED);
                }
            }
        }
    }
}

/// Zeroes this process's command line after `argv[0]` (the memory `/proc/PID/cmdline` shows):
/// G is a fork of kiln, and steps can read pid 1's command line.
fn blank_command_line(p: &Plan) {
    let Some((start, end)) = p.argv_area else {
        return;
    };
    // SAFETY: start..end is the command-line area of kiln's address space, which this fork
    // shares (copy-on-write) and nothing in this process reads any more.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        let first = area
            .iter()
            .position(|b| *b == 0)
            .map_or(area.len(), |n| n + 1);
        area[first..].fill(0);
    }
}

/// Process G: pid 1 of the new pid namespace.
unsafe fn reaper(p: &Plan, fds: &mut [RawFd], lifeline: RawFd) -> ! {
    set_pdeathsig(p);
    let mut b = [0u8; 1];
    // SAFETY: non-blocking read into a stack buffer; EOF means M is already gone.
    if unsafe { libc::read(lifeline, b.as_mut_ptr().cast(), 1) } == 0 {
        exit(SETUP_FAILED);
    }
    close(lifeline);
    blank_command_line(p);
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o022) };

    let hn = p.hostname.to_bytes();
    // SAFETY: hn is a valid slice.
    let r = unsafe { libc::sethostname(hn.as_ptr().cast(), hn.len()) };
    ck(p, sys::check(r), step::id(step::HOSTNAME, 0));
    if p.lo_up {
        ck(p, lo_up(), step::id(step::LO_UP, 0));
    }

    let upper_fd = setup_before_pivot(p, fds);

    ck(
        p,
        nix::unistd::chdir(p.scratch_root.as_c_str()),
        step::id(step::PIVOT, 0),
    );
    ck(p, pivot_root(c".", c"."), step::id(step::PIVOT, 0));
    ck(
        p,
        umount2(c".", MntFlags::MNT_DETACH),
        step::id(step::DETACH_OLD_ROOT, 0),
    );
    ck(p, nix::unistd::chdir(c"/"), step::id(step::PIVOT, 0));

    let mut resolved = PBuf::new();
    for (i, t) in p.targets.iter().enumerate() {
        ensure(
            p,
            upper_fd,
            t.path.to_bytes(),
            t.dir,
            true,
            None,
            &mut resolved,
            step::id(step::TARGET, i),
        );
        attach(p, fds, &t.attach, &resolved, step::id(step::ATTACH, i));
    }
    close(upper_fd);
    let mut cwd = PBuf::new();
    ensure(
        p,
        -1,
        p.cwd.to_bytes(),
        true,
        false,
        Some((p.uid, p.gid)),
        &mut cwd,
        step::id(step::CWD, 0),
    );
    for fd in fds.iter() {
        close(*fd);
    }

    // Signals are taken with sigwaitinfo from here on; S unblocks them before exec.
    // SAFETY: sigset_t is plain data initialised by sigfillset.
    let all = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        all
    };
    // SAFETY: setting this process's signal mask.
    let r = unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };
    ck(p, sys::check(r), step::id(step::SIGNALS, 0));

    // SAFETY: this process is single-threaded.
    let s = match ck(p, unsafe { fork() }, step::id(step::FORK, 1)) {
        // SAFETY: freshly forked child.
        ForkResult::Child => unsafe { run_step(p, cwd.cstr()) },
        ForkResult::Parent { child } => child.as_raw(),
    };
    for o in [p.stdout, p.stderr] {
        if let OutPlan::Fd(fd) = o {
            close(fd);
        }
    }
    close(p.report_w);
    reap(s, &all)
}

fn reap(s: libc::pid_t, all: &libc::sigset_t) -> ! {
    loop {
        // SAFETY: siginfo_t is plain data filled by the kernel.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: all and info are valid.
        let sig = unsafe { libc::sigwaitinfo(all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            let mut main: Option<i32> = None;
            loop {
                let mut st: libc::c_int = 0;
                // SAFETY: reaping any child without blocking.
                let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == s {
                    main = Some(decode_status(st));
                }
            }
            if let Some(code) = main {
                // Pid 1 killing -1 reaches every other process of the namespace.
                // SAFETY: plain kill.
                unsafe { libc::kill(-1, libc::SIGKILL) };
                loop {
                    let mut st: libc::c_int = 0;
                    // SAFETY: blocking reap of what is left.
                    let pid = unsafe { libc::waitpid(-1, &mut st, 0) };
                    if pid < 0 && Errno::last() != Errno::EINTR {
                        break;
                    }
                }
                exit(code);
            }
        } else if matches!(
            sig,
            libc::SIGINT
                | libc::SIGTERM
                | libc::SIGHUP
                | libc::SIGQUIT
                | libc::SIGUSR1
                | libc::SIGUSR2
                | libc::SIGWINCH
        ) && sent_from_outside(&info)
        {
            // SAFETY: plain kill.
            unsafe { libc::kill(s, sig) };
        }
    }
}

/// Whether a signal came from outside the step's pid namespace (kiln, the terminal, the
/// kernel): sent by `kill` or the kernel (a code a process cannot forge with `sigqueue`) by a
/// sender that has no pid here. A step that signals pid 1 is ignored, as a container's init
/// ignores signals it has no handler for.
fn sent_from_outside(info: &libc::siginfo_t) -> bool {
    const SI_USER: i32 = 0;
    const SI_KERNEL: i32 = 0x80;
    // SAFETY: si_pid is valid for SI_USER and SI_KERNEL signals.
    matches!(info.si_code, SI_USER | SI_KERNEL) && unsafe { info.si_pid() == 0 }
}

/// Brings `lo` up in the current network namespace.
fn lo_up() -> Result<(), Errno> {
    // SAFETY: socket/ioctl on a zero-initialised ifreq holding "lo".
    unsafe {
        let s = sys::check(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let r = (|| {
            sys::check(libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr))?;
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            sys::check(libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr))
        })();
        libc::close(s);
        r.map(drop)
    }
}

/// Everything that needs the host's paths: private propagation, the scratch tmpfs, the rootfs
/// mount, file contents and detached clones. Returns a descriptor of the upper dir (or -1).
fn setup_before_pivot(p: &Plan, fds: &mut [RawFd]) -> RawFd {
    ck(
        p,
        mount(
            None::<&CStr>,
            c"/",
            None::<&CStr>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&CStr>,
        ),
        step::id(step::MAKE_PRIVATE, 0),
    );
    ck(
        p,
        mount(
            Some(c"tmpfs"),
            p.scratch.as_c_str(),
            Some(c"tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(c"mode=0700"),
        ),
        step::id(step::SCRATCH, 0),
    );
    // SAFETY: mkdir on a NUL-terminated path.
    let r = unsafe { libc::mkdir(p.scratch_root.as_ptr(), 0o755) };
    ck(p, sys::check(r), step::id(step::SCRATCH_ROOT, 0));

    match &p.rootfs {
        RootPlan::Overlay {
            lowers,
            upper,
            work,
            userxattr,
            volatile,
            legacy,
        } => mount_overlay(
            p,
            lowers,
            upper,
            work,
            (*userxattr, *volatile),
            legacy.as_deref(),
        ),
        RootPlan::Bind(dir) => ck(
            p,
            mount(
                Some(dir.as_c_str()),
                p.scratch_root.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&CStr>,
            ),
            step::id(step::BIND_ROOTFS, 0),
        ),
    }
    let upper_fd = match &p.upper {
        Some(u) => {
            // SAFETY: open on a NUL-terminated path.
            let fd = unsafe {
                libc::open(
                    u.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            ck(p, sys::check(fd), step::id(step::OPEN_UPPER, 0))
        }
        None => -1,
    };

    for (i, f) in p.files.iter().enumerate() {
        write_file(p, f, step::id(step::FILE, i));
    }
    for (i, c) in p.clones.iter().enumerate() {
        let Some(slot) = fds.get_mut(i) else { break };
        let made = if c.fresh {
            sys::fsopen(c.path.as_c_str()).and_then(|ctx| {
                let r = sys::fs_create_and_mount(ctx, c.attrs);
                close(ctx);
                r
            })
        } else {
            sys::open_tree_clone(c.path.as_c_str(), c.recursive)
        };
        match made {
            Ok(fd) => {
                if c.attrs != 0 && !c.fresh {
                    ck(
                        p,
                        sys::mount_setattr_fd(fd, c.attrs, c.recursive),
                        step::id(step::CLONE, i),
                    );
                }
                *slot = fd;
            }
            Err(_) if !c.required => *slot = -1,
            Err(e) => fail(p, step::id(step::CLONE, i), e, b""),
        }
    }
    upper_fd
}

fn mount_overlay(
    p: &Plan,
    lowers: &[std::ffi::CString],
    upper: &CStr,
    work: &CStr,
    (userxattr, volatile): (bool, bool),
    legacy: Option<&CStr>,
) {
    let ctx = match sys::fsopen(c"overlay") {
        Ok(fd) => fd,
        Err(Errno::ENOSYS) => return mount_overlay_legacy(p, legacy, Errno::ENOSYS),
        Err(e) => fail(p, step::id(step::OVERLAY, 0), e, b""),
    };
    for (i, l) in lowers.iter().enumerate() {
        match sys::fsconfig_string(ctx, c"lowerdir+", l.as_c_str()) {
            Ok(()) => {}
            // Kernels before 6.8 have no "lowerdir+".
            Err(Errno::EINVAL) if i == 0 => {
                close(ctx);
                return mount_overlay_legacy(p, legacy, Errno::EINVAL);
            }
            Err(e) => fail(p, step::id(step::OVERLAY_LOWER, i), e, b""),
        }
    }
    ck(
        p,
        sys::fsconfig_string(ctx, c"upperdir", upper),
        step::id(step::OVERLAY_OPT, 0),
    );
    ck(
        p,
        sys::fsconfig_string(ctx, c"workdir", work),
        step::id(step::OVERLAY_OPT, 1),
    );
    if userxattr {
        ck(
            p,
            sys::fsconfig_flag(ctx, c"userxattr"),
            step::id(step::OVERLAY_OPT, 2),
        );
    }
    // Kernels before 5.10 do not know it: the mount is then just not volatile.
    if volatile {
        let _ = sys::fsconfig_flag(ctx, c"volatile");
    }
    let mnt = ck(
        p,
        sys::fs_create_and_mount(ctx, 0),
        step::id(step::OVERLAY, 0),
    );
    close(ctx);
    ck(
        p,
        sys::move_mount_to(mnt, p.scratch_root.as_c_str()),
        step::id(step::OVERLAY, 0),
    );
    close(mnt);
}

fn mount_overlay_legacy(p: &Plan, legacy: Option<&CStr>, why: Errno) {
    let Some(opts) = legacy else {
        fail(p, step::id(step::OVERLAY, 0), why, b"")
    };
    ck(
        p,
        mount(
            Some(c"overlay"),
            p.scratch_root.as_c_str(),
            Some(c"overlay"),
            MsFlags::empty(),
            Some(opts),
        ),
        step::id(step::OVERLAY, 0),
    );
}

fn write_file(p: &Plan, f: &crate::plan::FilePlan, id: u32) {
    // SAFETY: open on a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            f.path.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            0o600,
        )
    };
    let fd = ck(p, sys::check(fd), id);
    match &f.content {
        Content::Bytes(b) => ck(p, write_all(fd, b), id),
        Content::Fd(src) => {
            let mut buf = [0u8; 16 * 1024];
            loop {
                // SAFETY: reading into a stack buffer.
                let n = unsafe { libc::read(*src, buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    if Errno::last() == Errno::EINTR {
                        continue;
                    }
                    fail(p, id, Errno::last(), b"");
                }
                if n == 0 {
                    break;
                }
                ck(p, write_all(fd, buf.get(..n as usize).unwrap_or(&[])), id);
            }
        }
    }
    // SAFETY: fchown/fchmod on our descriptor.
    unsafe {
        ck(p, sys::check(libc::fchown(fd, f.uid, f.gid)), id);
        ck(p, sys::check(libc::fchmod(fd, f.mode)), id);
    }
    close(fd);
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Resolves `target` inside the (new) root component by component, following symlinks without
/// leaving the root, and creates what is missing (directories; the last component as a file
/// unless `want_dir`). The canonical path ends up in `out`. With `track`, every creation is
/// reported (with the whiteout it replaced) together with the parent directories it copies up
/// into the upper dir (`upper_fd`).
#[allow(clippy::too_many_arguments)]
fn ensure(
    p: &Plan,
    upper_fd: RawFd,
    target: &[u8],
    want_dir: bool,
    track: bool,
    owner: Option<(u32, u32)>,
    out: &mut PBuf,
    id: u32,
) {
    let mut rest = PBuf::new();
    ckp(p, rest.set(target), id, target);
    let mut pos = 0usize;
    ckp(p, out.set(b"/"), id, target);
    let mut hops = 0;
    let mut cand = PBuf::new();
    let mut comp = [0u8; 256];
    loop {
        let bytes = rest.bytes();
        while pos < bytes.len() && bytes[pos] == b'/' {
            pos += 1;
        }
        if pos >= bytes.len() {
            break;
        }
        let start = pos;
        while pos < bytes.len() && bytes[pos] != b'/' {
            pos += 1;
        }
        let clen = pos - start;
        if clen > comp.len() {
            fail(p, id, Errno::ENAMETOOLONG, target);
        }
        comp[..clen].copy_from_slice(&bytes[start..pos]);
        let c = &comp[..clen];
        let is_last = bytes[pos..].iter().all(|b| *b == b'/');
        if c == b"." {
            continue;
        }
        if c == b".." {
            out.pop_comp();
            continue;
        }
        ckp(p, cand.set(out.bytes()), id, target);
        ckp(p, cand.push_comp(c), id, target);
        match sys::lstat(cand.cstr()) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                hops += 1;
                if hops > 40 {
                    fail(p, id, Errno::ELOOP, target);
                }
                let mut link = PBuf::new();
                // SAFETY: readlink into a stack buffer, leaving room for the NUL.
                let n = unsafe {
                    libc::readlink(
                        cand.cstr().as_ptr(),
                        link.b.as_mut_ptr().cast(),
                        PATH_CAP - 1,
                    )
                };
                let n = ckp(p, sys::check(n as libc::c_int), id, cand.bytes()) as usize;
                link.n = n;
                link.b[n] = 0;
                let absolute = link.bytes().first() == Some(&b'/');
                ckp(p, link.push(b"/"), id, target);
                ckp(p, link.push(&rest.bytes()[pos..]), id, target);
                ckp(p, rest.set(link.bytes()), id, target);
                pos = 0;
                if absolute {
                    ckp(p, out.set(b"/"), id, target);
                }
            }
            Ok(st) => {
                let dir = is_dir(&st);
                if !dir && (!is_last || want_dir) {
                    fail(p, id, Errno::ENOTDIR, cand.bytes());
                }
                if dir && is_last && !want_dir {
                    fail(p, id, Errno::EISDIR, cand.bytes());
                }
                ckp(p, out.set(cand.bytes()), id, target);
            }
            Err(Errno::ENOENT) => {
                let mut flags = 0;
                if track && upper_fd >= 0 {
                    flags = note_upper_state(p, upper_fd, out.bytes(), cand.bytes());
                }
                let make_dir = !is_last || want_dir;
                // A mount point must not look like a change of its directory: the directory's
                // times are put back after it is made (and again when it is removed).
                let parent_times = if track {
                    sys::lstat(out.cstr()).ok()
                } else {
                    None
                };
                // SAFETY: mkdir/open on NUL-terminated paths.
                let r = unsafe {
                    if make_dir {
                        libc::mkdir(cand.cstr().as_ptr(), 0o755)
                    } else {
                        let fd = libc::open(
                            cand.cstr().as_ptr(),
                            libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_WRONLY
                                | libc::O_CLOEXEC
                                | libc::O_NOFOLLOW,
                            0o644,
                        );
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        fd
                    }
                };
                ckp(p, sys::check(r), id, cand.bytes());
                if let Some((u, g)) = owner {
                    // SAFETY: lchown on a NUL-terminated path.
                    let r = unsafe { libc::lchown(cand.cstr().as_ptr(), u, g) };
                    ckp(p, sys::check(r), id, cand.bytes());
                }
                if let Some(st) = &parent_times {
                    sys::restore_times(out.cstr(), st);
                }
                if track {
                    send(p.report_w, REC_CREATED, id, flags, cand.bytes());
                }
                ckp(p, out.set(cand.bytes()), id, target);
            }
            Err(e) => fail(p, id, e, cand.bytes()),
        }
    }
}

/// Before `path` is created under `parent` (both canonical): reports each ancestor directory that
/// is not yet in the upper dir (the creation copies it up) and returns [`CREATED_OVER_WHITEOUT`]
/// when the upper dir has a whiteout at `path`.
fn note_upper_state(p: &Plan, upper_fd: RawFd, parent: &[u8], path: &[u8]) -> i32 {
    let mut rel = PBuf::new();
    let mut end = 1;
    while end <= parent.len() {
        let boundary = end == parent.len() || parent[end] == b'/';
        if boundary
            && end > 1
            && rel.set(&parent[1..end]).is_ok()
            && matches!(
                sys::fstatat_nofollow(upper_fd, rel.cstr()),
                Err(Errno::ENOENT)
            )
        {
            send(p.report_w, REC_COPYUP, 0, 0, &parent[..end]);
        }
        end += 1;
    }
    if path.len() > 1
        && rel.set(&path[1..]).is_ok()
        && sys::fstatat_nofollow(upper_fd, rel.cstr()).is_ok_and(|st| sys::is_whiteout(&st))
    {
        return CREATED_OVER_WHITEOUT;
    }
    0
}

fn join(base: &PBuf, name: &[u8]) -> Result<PBuf, Errno> {
    let mut b = PBuf::new();
    b.set(base.bytes())?;
    b.push_comp(name)?;
    Ok(b)
}

fn attach(p: &Plan, fds: &[RawFd], a: &Attach, at: &PBuf, id: u32) {
    let target = at.cstr();
    let path = at.bytes();
    match a {
        Attach::Dev { first_clone } => {
            ckp(
                p,
                mount(
                    Some(c"tmpfs"),
                    target,
                    Some(c"tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some(c"mode=0755,size=65536k"),
                ),
                id,
                path,
            );
            populate_dev(p, fds, *first_clone, at);
        }
        Attach::Sys { fresh, clone } => {
            let fresh_fd = fresh.and_then(|i| fds.get(i).copied()).unwrap_or(-1);
            let fd = if fresh_fd >= 0 {
                fresh_fd
            } else {
                fds.get(*clone).copied().unwrap_or(-1)
            };
            ckp(p, sys::move_mount_to(fd, target), id, path);
        }
        Attach::Clone(i) => {
            let fd = fds.get(*i).copied().unwrap_or(-1);
            ckp(p, sys::move_mount_to(fd, target), id, path);
        }
        Attach::Tmpfs(opts) => ckp(
            p,
            mount(
                Some(c"tmpfs"),
                target,
                Some(c"tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(opts.as_c_str()),
            ),
            id,
            path,
        ),
    }
}

fn populate_dev(p: &Plan, fds: &[RawFd], first_clone: usize, dev: &PBuf) {
    for (k, (name, _, _)) in DEV_NODES.iter().enumerate() {
        let id = step::id(step::DEV_NODE, k);
        let fd = fds.get(first_clone + k).copied().unwrap_or(-1);
        if fd < 0 {
            continue;
        }
        let node = ckp(p, join(dev, name), id, name);
        // SAFETY: open on a NUL-terminated path.
        let f = unsafe {
            libc::open(
                node.cstr().as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            )
        };
        ckp(p, sys::check(f), id, node.bytes());
        close(f);
        ckp(p, sys::move_mount_to(fd, node.cstr()), id, node.bytes());
    }
    let links: [(&[u8], &CStr); 6] = [
        (b"fd", c"/proc/self/fd"),
        (b"stdin", c"/proc/self/fd/0"),
        (b"stdout", c"/proc/self/fd/1"),
        (b"stderr", c"/proc/self/fd/2"),
        (b"ptmx", c"pts/ptmx"),
        (b"core", c"/proc/kcore"),
    ];
    for (k, (name, to)) in links.iter().enumerate() {
        let id = step::id(step::DEV_LINK, k);
        let l = ckp(p, join(dev, name), id, name);
        // SAFETY: symlink on NUL-terminated paths.
        let r = unsafe { libc::symlink(to.as_ptr(), l.cstr().as_ptr()) };
        ckp(p, sys::check(r), id, l.bytes());
    }
    let pts = ckp(p, join(dev, b"pts"), step::id(step::DEVPTS, 0), b"pts");
    // SAFETY: mkdir on a NUL-terminated path.
    let r = unsafe { libc::mkdir(pts.cstr().as_ptr(), 0o755) };
    ckp(p, sys::check(r), step::id(step::DEVPTS, 0), pts.bytes());
    ckp(
        p,
        mount(
            Some(c"devpts"),
            pts.cstr(),
            Some(c"devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some(p.devpts_opts.as_c_str()),
        ),
        step::id(step::DEVPTS, 0),
        pts.bytes(),
    );
    let shm = ckp(p, join(dev, b"shm"), step::id(step::SHM, 0), b"shm");
    // SAFETY: mkdir on a NUL-terminated path.
    let r = unsafe { libc::mkdir(shm.cstr().as_ptr(), 0o1777) };
    ckp(p, sys::check(r), step::id(step::SHM, 0), shm.bytes());
    ckp(
        p,
        mount(
            Some(c"shm"),
            shm.cstr(),
            Some(c"tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(c"mode=1777,size=65536k"),
        ),
        step::id(step::SHM, 0),
        shm.bytes(),
    );
}

fn redirect(p: &Plan, fd: RawFd, to: RawFd) {
    // SAFETY: dup2 on descriptors we own.
    let r = unsafe { libc::dup2(fd, to) };
    ck(p, sys::check(r), step::id(step::STDIO, to as usize));
}

fn open_null(p: &Plan, flags: libc::c_int) -> RawFd {
    // SAFETY: open on a NUL-terminated path.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), flags | libc::O_CLOEXEC) };
    ck(p, sys::check(fd), step::id(step::STDIO, 9))
}

/// Sets the step's resource limits, clears inherited capabilities, drops the capabilities the
/// step does not keep from the bounding set and installs the seccomp filter, while S is still
/// root in its namespace (installing a filter without `no_new_privs` needs `CAP_SYS_ADMIN`
/// there); `setresuid` to another user then empties the other sets.
fn confine(p: &Plan) {
    for (k, (resource, limit)) in p.rlimits.iter().enumerate() {
        // SAFETY: setrlimit with a pointer to a prepared struct.
        let r = unsafe { libc::setrlimit(*resource as libc::__rlimit_resource_t, limit) };
        ck(p, sys::check(r), step::id(step::RLIMIT, k));
    }
    // Nothing inherited from kiln (its inheritable and ambient sets, when it runs without a user
    // namespace) reaches the step: after exec, root has exactly the bounding set.
    // SAFETY: prctl with integer arguments; capget/capset on stack structs.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) == 0
            && (data[0].inheritable | data[1].inheritable) != 0
        {
            data[0].inheritable = 0;
            data[1].inheritable = 0;
            let r = libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as libc::c_int;
            ck(p, sys::check(r), step::id(step::CAPBSET, 64));
        }
    }
    for c in 0..=p.cap_last.min(63) {
        if p.caps & (1 << c) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) };
        if r < 0 && Errno::last() != Errno::EINVAL {
            ck(p, sys::check(r), step::id(step::CAPBSET, c as usize));
        }
    }
    if !p.seccomp.is_empty() {
        let prog = libc::sock_fprog {
            len: p.seccomp.len() as libc::c_ushort,
            filter: p.seccomp.as_ptr().cast_mut(),
        };
        // SAFETY: the program outlives the call (the kernel copies it).
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        ck(p, sys::check(r), step::id(step::SECCOMP, 0));
    }
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (two of them with version 3: capabilities 0–31, 32–63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Process S: becomes the step's command.
unsafe fn run_step(p: &Plan, cwd: &CStr) -> ! {
    reset_signals(false);
    // SAFETY: plain syscalls on prepared data.
    unsafe {
        libc::setsid();
        if p.stdin_null {
            let fd = open_null(p, libc::O_RDONLY);
            redirect(p, fd, 0);
        }
        for (o, to) in [(p.stdout, 1), (p.stderr, 2)] {
            match o {
                OutPlan::Inherit => {}
                OutPlan::Null => {
                    let fd = open_null(p, libc::O_WRONLY);
                    redirect(p, fd, to);
                }
                OutPlan::Fd(fd) => redirect(p, fd, to),
            }
        }
        ck(p, nix::unistd::chdir(cwd), step::id(step::CHDIR, 0));
        confine(p);
        if p.set_groups {
            let r = libc::setgroups(p.groups.len(), p.groups.as_ptr());
            ck(p, sys::check(r), step::id(step::SETGROUPS, 0));
        }
        ck(
            p,
            sys::check(libc::setresgid(p.gid, p.gid, p.gid)),
            step::id(step::SETGID, 0),
        );
        ck(
            p,
            sys::check(libc::setresuid(p.uid, p.uid, p.uid)),
            step::id(step::SETUID, 0),
        );
        if p.no_new_privs {
            let r = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            ck(p, sys::check(r), step::id(step::NO_NEW_PRIVS, 0));
        }
        libc::umask(0o022);
        let _ = sys::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
        let mut err = Errno::ENOENT;
        let mut denied = false;
        for c in &p.exec {
            libc::execve(c.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
            match Errno::last() {
                Errno::ENOENT
                | Errno::ENOTDIR
                | Errno::ESTALE
                | Errno::ENODEV
                | Errno::ETIMEDOUT => {}
                Errno::EACCES => denied = true,
                e => {
                    err = e;
                    break;
                }
            }
        }
        if denied && err == Errno::ENOENT {
            err = Errno::EACCES;
        }
        send(
            p.report_w,
            REC_ERROR,
            step::id(step::EXEC, 0),
            err as i32,
            b"",
        );
        exit(127)
    }
}
