//! End-to-end tests of kiln-sandbox in real namespaces, on a busybox rootfs built from the host's
//! static busybox. Run as root (they also run the example binary as unprivileged users).

use std::cell::RefCell;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kiln_sandbox::{
    Canceller, Error, ExtraMount, FileSource, LineTail, Network, Output, Rootfs, RunOutcome,
    RunSpec, UserSpec,
};
use tempfile::TempDir;

const BUSYBOX: &str = "/usr/bin/busybox";

/// A busybox rootfs: /bin/busybox plus applet symlinks, /etc/passwd, /etc/group, /root, /tmp.
fn make_busybox(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/group"),
        "root:x:0:\nstaff:x:4000:nobody\nnogroup:x:65534:\n",
    )
    .unwrap();
    fs::create_dir_all(root.join("root")).unwrap();
    fs::set_permissions(root.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
}

struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kiln-sbx-test")
            .tempdir()
            .unwrap();
        make_busybox(&dir.path().join("lower"));
        fs::create_dir(dir.path().join("upper")).unwrap();
        fs::create_dir(dir.path().join("work")).unwrap();
        Fixture { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn lower(&self) -> PathBuf {
        self.path("lower")
    }
    fn upper(&self) -> PathBuf {
        self.path("upper")
    }
    fn overlay(&self) -> Rootfs {
        Rootfs::Overlay {
            lowers: vec![self.lower()],
            upper: self.upper(),
            work: self.path("work"),
        }
    }
    /// Every path in the upper dir, relative, sorted.
    fn upper_tree(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.upper(), &self.upper(), &mut out);
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.path().strip_prefix(base).unwrap().display().to_string());
        if e.file_type().unwrap().is_dir() {
            walk(base, &e.path(), out);
        }
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// The host's mounts that a sandbox of this process could have left behind: everything under
/// the temp dir (rootfs dirs, scratch dirs) and under /dev/shm. Mounts other programs make
/// elsewhere meanwhile are not this test's business.
fn mountinfo() -> String {
    let tmp = std::env::temp_dir().display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|mp| mp.starts_with(&tmp) || mp.starts_with("/dev/shm/") || mp.contains("kiln-sandbox-")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs `spec` capturing stdout and stderr; asserts the host's mount table did not change.
fn run_capture(mut spec: RunSpec<'_>) -> (Result<RunOutcome, Error>, String, String) {
    let out = Rc::new(RefCell::new(Vec::new()));
    let err = Rc::new(RefCell::new(Vec::new()));
    let (o, e) = (out.clone(), err.clone());
    spec.stdout = Output::Callback(Box::new(move |b| o.borrow_mut().extend_from_slice(b)));
    spec.stderr = Output::Callback(Box::new(move |b| e.borrow_mut().extend_from_slice(b)));
    let before = mountinfo();
    let r = kiln_sandbox::run(spec);
    assert_eq!(before, mountinfo(), "the host's mount table changed");
    let out = String::from_utf8_lossy(&out.borrow()).into_owned();
    let err = String::from_utf8_lossy(&err.borrow()).into_owned();
    (r, out, err)
}

fn run_ok(spec: RunSpec<'_>) -> (RunOutcome, String) {
    let (r, out, err) = run_capture(spec);
    match r {
        Ok(o) => {
            assert_eq!(o.status, 0, "step failed: stdout {out:?} stderr {err:?}");
            (o, out)
        }
        Err(e) => panic!("run failed: {e}; stdout {out:?} stderr {err:?}"),
    }
}

#[test]
fn root_inside_own_hostname_and_pid_namespace() {
    let f = Fixture::new();
    let mut spec = RunSpec::new(
        f.overlay(),
        sh("id -u; id -g; hostname; cat /etc/hostname; ls /proc"),
    );
    spec.hostname = "stepbox".into();
    let (_, out) = run_ok(spec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..4], &["0", "0", "stepbox", "stepbox"], "{out}");
    let pids: Vec<u32> = lines[4..].iter().filter_map(|l| l.parse().ok()).collect();
    // pid 1 (the reaper), sh, and possibly ls as a separate process: nothing from the host.
    assert!(
        pids.contains(&1) && pids.len() <= 3 && pids.iter().all(|p| *p < 10),
        "{pids:?}"
    );
}

#[test]
fn overlay_writes_land_in_upper_and_stubs_do_not() {
    let f = Fixture::new();
    let spec = RunSpec::new(
        f.overlay(),
        sh(
            "echo data > /root/new && cat /etc/hosts && test -s /etc/resolv.conf && mkdir -p /var/lib/x",
        ),
    );
    let (o, out) = run_ok(spec);
    assert!(
        out.contains("127.0.0.1\tlocalhost") && out.contains("127.0.1.1\tkiln"),
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(f.upper().join("root/new")).unwrap(),
        "data\n"
    );
    assert!(!f.lower().join("root/new").exists());
    // Only the step's changes: no /etc (copy-up undone), no /proc, /dev, /sys stubs.
    assert_eq!(
        f.upper_tree(),
        vec!["root", "root/new", "var", "var/lib", "var/lib/x"]
    );
    let created: Vec<String> = o
        .created_paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for p in [
        "/proc",
        "/dev",
        "/sys",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/hostname",
    ] {
        assert!(created.contains(&p.to_string()), "{created:?}");
    }
    // A second step on the same upper still sees the first one's file.
    let (_, out) = run_ok(RunSpec::new(f.overlay(), sh("cat /root/new")));
    assert_eq!(out, "data\n");
}

#[test]
fn volatile_overlay_skips_syncs_and_keeps_writes() {
    let f = Fixture::new();
    let mut spec = RunSpec::new(
        f.overlay(),
        sh("echo data > /root/new && sync && grep ' / / ' /proc/self/mountinfo"),
    );
    spec.volatile = true;
    let (_, out) = run_ok(spec);
    assert!(out.contains("overlay") && out.contains("volatile"), "{out}");
    assert_eq!(
        fs::read_to_string(f.upper().join("root/new")).unwrap(),
        "data\n"
    );
    // The default stays durable: no volatile option.
    let f = Fixture::new();
    let (_, out) = run_ok(RunSpec::new(
        f.overlay(),
        sh("grep ' / / ' /proc/self/mountinfo"),
    ));
    assert!(
        out.contains("overlay") && !out.contains("volatile"),
        "{out}"
    );
}

#[test]
fn existing_etc_files_are_shadowed_not_copied_up() {
    let f = Fixture::new();
    fs::write(f.lower().join("etc/hosts"), "ORIGINAL\n").unwrap();
    fs::write(f.lower().join("etc/hostname"), "orig\n").unwrap();
    let mut spec = RunSpec::new(
        f.overlay(),
        sh("cat /etc/hosts /etc/hostname; echo more >> /etc/hosts"),
    );
    spec.hostname = "h2".into();
    let (o, out) = run_ok(spec);
    assert!(!out.contains("ORIGINAL") && out.contains("h2"), "{out}");
    assert!(f.upper_tree().is_empty(), "{:?}", f.upper_tree());
    assert_eq!(
        fs::read_to_string(f.lower().join("etc/hosts")).unwrap(),
        "ORIGINAL\n"
    );
    assert!(!o.created_paths.iter().any(|p| p.starts_with("/etc/hosts")));
}

#[test]
fn whiteout_under_a_mount_point_is_restored() {
    let f = Fixture::new();
    fs::write(f.lower().join("etc/hosts"), "ORIGINAL\n").unwrap();
    fs::create_dir(f.upper().join("etc")).unwrap();
    nix::sys::stat::mknod(
        &f.upper().join("etc/hosts"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    let (_, out) = run_ok(RunSpec::new(f.overlay(), sh("cat /etc/hosts")));
    assert!(out.contains("localhost"), "{out}");
    let m = fs::symlink_metadata(f.upper().join("etc/hosts")).unwrap();
    assert!(
        m.file_type().is_char_device() && m.rdev() == 0,
        "whiteout not restored"
    );
    assert_eq!(f.upper_tree(), vec!["etc", "etc/hosts"]);
}

#[test]
fn dangling_symlink_targets_resolve_inside_the_rootfs() {
    let f = Fixture::new();
    symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        f.lower().join("etc/resolv.conf"),
    )
    .unwrap();
    let (o, out) = run_ok(RunSpec::new(
        f.overlay(),
        sh("cat /etc/resolv.conf; ls -l /etc/resolv.conf"),
    ));
    assert!(out.contains("nameserver"), "{out}");
    assert!(
        out.contains("-> ../run/systemd/resolve/stub-resolv.conf"),
        "{out}"
    );
    assert!(f.upper_tree().is_empty(), "{:?}", f.upper_tree());
    assert!(
        o.created_paths
            .contains(&PathBuf::from("/run/systemd/resolve/stub-resolv.conf")),
        "{:?}",
        o.created_paths
    );
}

#[test]
fn exit_codes_and_signals() {
    let f = Fixture::new();
    let (r, _, _) = run_capture(RunSpec::new(f.overlay(), sh("exit 7")));
    assert_eq!(r.unwrap().status, 7);
    let (r, _, _) = run_capture(RunSpec::new(f.overlay(), sh("kill -9 $$")));
    assert_eq!(r.unwrap().status, 137);
    let (r, _, _) = run_capture(RunSpec::new(f.overlay(), vec!["false".into()]));
    assert_eq!(r.unwrap().status, 1);
}

#[test]
fn exec_failures_are_errors() {
    let f = Fixture::new();
    let (r, _, _) = run_capture(RunSpec::new(f.overlay(), vec!["no-such-command".into()]));
    match r {
        Err(Error::Exec { argv0, errno }) => {
            assert_eq!(
                (argv0.as_str(), errno),
                ("no-such-command", nix::errno::Errno::ENOENT)
            )
        }
        other => panic!("{other:?}"),
    }
    fs::write(f.lower().join("root/script"), "#!/bin/sh\n").unwrap();
    let (r, _, _) = run_capture(RunSpec::new(f.overlay(), vec!["/root/script".into()]));
    assert!(
        matches!(
            r,
            Err(Error::Exec {
                errno: nix::errno::Errno::EACCES,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn setup_errors_name_what_failed() {
    let f = Fixture::new();
    let mut spec = RunSpec::new(f.overlay(), sh("true"));
    spec.mounts.push(ExtraMount::Tmpfs {
        target: "/etc/passwd/sub".into(),
        size: None,
    });
    let (r, _, _) = run_capture(spec);
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("create mount point /etc/passwd") && msg.contains("ENOTDIR"),
        "{msg}"
    );
    assert!(f.upper_tree().is_empty(), "{:?}", f.upper_tree());

    // An overlay whose work dir is on another filesystem than its upper dir.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let spec = RunSpec::new(
        Rootfs::Overlay {
            lowers: vec![f.lower()],
            upper: f.upper(),
            work: shm.path().to_path_buf(),
        },
        sh("true"),
    );
    let msg = run_capture(spec).0.unwrap_err().to_string();
    assert!(
        msg.starts_with("mount overlay on ") && msg.contains("workdir"),
        "{msg}"
    );
}

#[test]
fn background_processes_do_not_survive() {
    let f = Fixture::new();
    let token = format!("{}", 900000 + std::process::id() % 90000);
    let start = Instant::now();
    let (_, out) = run_ok(RunSpec::new(
        f.overlay(),
        sh(&format!("sleep {token} & echo started")),
    ));
    assert_eq!(out, "started\n");
    assert!(start.elapsed() < Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(100));
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(!cmd.contains(&format!("sleep {token}")), "survivor: {cmd}");
        }
    }
}

#[test]
fn network_none_has_no_route_and_no_loopback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let f = Fixture::new();
    let mut spec = RunSpec::new(
        f.overlay(),
        sh(&format!(
            "grep -v Iface /proc/net/route | wc -l; cat /sys/class/net/lo/flags; ls /sys/class/net; \
             if nc -w 1 127.0.0.1 {port} </dev/null; then echo connected; else echo failed; fi"
        )),
    );
    spec.network = Network::None;
    let (_, out) = run_ok(spec);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["0", "0x8", "lo", "failed"],
        "{out}"
    );
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "a connection arrived from a step without network"
    );

    // The same probe on the host network does reach the listener (so the check above means
    // something).
    listener.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = [0u8; 3];
        conn.read_exact(&mut got).unwrap();
        got
    });
    let mut spec = RunSpec::new(
        f.overlay(),
        sh(&format!(
            "grep -v Iface /proc/net/route | wc -l; echo hi | nc -w 1 127.0.0.1 {port}; true"
        )),
    );
    spec.network = Network::Host;
    let (_, out) = run_ok(spec);
    assert!(
        out.trim().parse::<u32>().unwrap() > 0,
        "the host network has no routes: {out}"
    );
    assert_eq!(&server.join().unwrap(), b"hi\n");
}

#[test]
fn network_private_has_lo_up() {
    let f = Fixture::new();
    let mut spec = RunSpec::new(
        f.overlay(),
        sh("cat /sys/class/net/lo/flags; ip link show lo; cat /etc/resolv.conf"),
    );
    spec.network = Network::Private;
    let (_, out) = run_ok(spec);
    assert!(
        out.starts_with("0x9\n") && out.contains("LOOPBACK,UP"),
        "{out}"
    );
    assert!(
        out.contains("nameserver") && !out.contains("nameserver 127."),
        "{out}"
    );
}

#[test]
fn user_groups_and_cwd() {
    let f = Fixture::new();
    let mut spec = RunSpec::new(
        f.overlay(),
        sh("id -u; id -g; id -G; pwd; echo $HOME; touch mine"),
    );
    spec.user = UserSpec::parse("nobody").unwrap();
    spec.cwd = "/work/dir".into();
    let (_, out) = run_ok(spec);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["65534", "65534", "65534 4000", "/work/dir", "/nonexistent"]
    );
    for p in ["work", "work/dir", "work/dir/mine"] {
        let m = fs::metadata(f.upper().join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{p}");
    }
    let mut spec = RunSpec::new(f.overlay(), sh("id -u; id -g"));
    spec.user = UserSpec::parse("1234:staff").unwrap();
    let (_, out) = run_ok(spec);
    assert_eq!(out, "1234\n4000\n");
    let spec = RunSpec {
        user: UserSpec::parse("nosuchuser").unwrap(),
        ..RunSpec::new(f.overlay(), sh("true"))
    };
    assert!(matches!(run_capture(spec).0, Err(Error::User { .. })));
}

#[test]
fn extra_mounts_work_and_leave_nothing_in_the_layer() {
    let f = Fixture::new();
    let host = f.path("host");
    fs::create_dir_all(host.join("ro")).unwrap();
    fs::create_dir_all(host.join("rw")).unwrap();
    fs::write(host.join("ro/file"), "from host\n").unwrap();
    fs::write(host.join("ca.pem"), "CERT\n").unwrap();
    fs::write(host.join("single"), "single\n").unwrap();
    let mut spec = RunSpec::new(
        f.overlay(),
        sh(
            "cat /run/secrets/token; stat -c '%a %u' /run/secrets/token; cat /etc/ssl/ca.pem; \
            cat /mnt/ro/file; touch /mnt/ro/x 2>/dev/null && echo ro-writable; \
            echo out > /mnt/rw/made; echo t > /cache/t; cat /opt/single; \
            echo y > /run/secrets/token 2>/dev/null || echo secret-ro",
        ),
    );
    spec.mounts = vec![
        ExtraMount::File {
            target: "/run/secrets/token".into(),
            source: FileSource::Bytes(b"s3cret\n".to_vec()),
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
        ExtraMount::File {
            target: "/etc/ssl/ca.pem".into(),
            source: FileSource::HostPath(host.join("ca.pem")),
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
        ExtraMount::BindDir {
            src: host.join("ro"),
            target: "/mnt/ro".into(),
            readonly: true,
        },
        ExtraMount::BindDir {
            src: host.join("rw"),
            target: "/mnt/rw".into(),
            readonly: false,
        },
        ExtraMount::Tmpfs {
            target: "/cache".into(),
            size: Some(1 << 20),
        },
        ExtraMount::BindFile {
            src: host.join("single"),
            target: "/opt/single".into(),
            readonly: true,
        },
    ];
    let (o, out) = run_ok(spec);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "s3cret",
            "400 0",
            "CERT",
            "from host",
            "single",
            "secret-ro"
        ],
        "{out}"
    );
    assert_eq!(fs::read_to_string(host.join("rw/made")).unwrap(), "out\n");
    assert!(!host.join("ro/x").exists());
    assert!(f.upper_tree().is_empty(), "{:?}", f.upper_tree());
    for p in [
        "/run",
        "/run/secrets",
        "/run/secrets/token",
        "/etc/ssl",
        "/etc/ssl/ca.pem",
        "/mnt/ro",
        "/cache",
        "/opt/single",
    ] {
        assert!(
            o.created_paths.contains(&PathBuf::from(p)),
            "{p} not in {:?}",
            o.created_paths
        );
    }
}

#[test]
fn created_dir_filled_by_the_step_is_kept() {
    let f = Fixture::new();
    let mut spec = RunSpec::new(f.overlay(), sh("echo keep > /run/kept"));
    spec.mounts = vec![ExtraMount::Tmpfs {
        target: "/run/cache".into(),
        size: None,
    }];
    let (o, _) = run_ok(spec);
    assert_eq!(f.upper_tree(), vec!["run", "run/kept"]);
    assert!(o.created_paths.contains(&PathBuf::from("/run/cache")));
    assert!(!o.created_paths.contains(&PathBuf::from("/run")));
}

#[test]
fn dir_rootfs_runs_in_place() {
    let f = Fixture::new();
    let root = f.lower();
    let (o, out) = run_ok(RunSpec::new(
        Rootfs::Dir(root.clone()),
        sh("echo hi > /root/f; hostname; cat /etc/hosts | wc -l"),
    ));
    assert_eq!(out, "kiln\n3\n");
    assert_eq!(fs::read_to_string(root.join("root/f")).unwrap(), "hi\n");
    for p in [
        "proc",
        "dev",
        "sys",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ] {
        assert!(!root.join(p).exists(), "{p} left in the rootfs");
    }
    assert_eq!(o.created_paths.len(), 6);
}

#[test]
fn output_streams_are_separate_and_tail_keeps_last_lines() {
    let f = Fixture::new();
    let tail = Rc::new(RefCell::new(LineTail::new(3)));
    let t = tail.clone();
    let mut spec = RunSpec::new(f.overlay(), sh("seq 1 5000; echo oops >&2"));
    spec.stdout = Output::Callback(Box::new(move |b| t.borrow_mut().push(b)));
    let err = Rc::new(RefCell::new(Vec::new()));
    let e = err.clone();
    spec.stderr = Output::Callback(Box::new(move |b| e.borrow_mut().extend_from_slice(b)));
    assert_eq!(kiln_sandbox::run(spec).unwrap().status, 0);
    assert_eq!(tail.borrow().lines(), vec!["4998", "4999", "5000"]);
    assert_eq!(&*err.borrow(), b"oops\n");
}

#[test]
fn canceller_stops_a_running_step() {
    let f = Fixture::new();
    let c = Canceller::new().unwrap();
    let mut spec = RunSpec::new(f.overlay(), sh("sleep 1000"));
    spec.cancel = Some(c.clone());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c.cancel();
    });
    let start = Instant::now();
    let before = mountinfo();
    let o = kiln_sandbox::run(spec).unwrap();
    t.join().unwrap();
    assert_eq!(o.status, 137);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(before, mountinfo());
    assert!(f.upper_tree().is_empty(), "{:?}", f.upper_tree());
}

#[test]
fn concurrent_runs_from_many_threads() {
    let f = Fixture::new();
    let lower = f.lower();
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let lower = lower.clone();
            let base = f.path(&format!("c{i}"));
            std::thread::spawn(move || {
                fs::create_dir_all(base.join("u")).unwrap();
                fs::create_dir_all(base.join("w")).unwrap();
                let rootfs = Rootfs::Overlay {
                    lowers: vec![lower],
                    upper: base.join("u"),
                    work: base.join("w"),
                };
                let (o, out) = run_ok(RunSpec::new(
                    rootfs,
                    sh(&format!("echo {i} > /root/n; cat /root/n")),
                ));
                assert_eq!(out, format!("{i}\n"));
                o.status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 0);
    }
}

// ---- the example binary, as other users and under signals ----

fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples/run");
    assert!(
        p.exists(),
        "{} missing: cargo test builds examples",
        p.display()
    );
    p
}

struct TempUser(String);

impl TempUser {
    fn new(tag: &str, system: bool) -> Self {
        let name = format!("ksbx{tag}{}", std::process::id() % 100000);
        let mut cmd = Command::new("useradd");
        cmd.args(["-M", "-s", "/bin/sh"]);
        if system {
            cmd.arg("-r");
        }
        let st = cmd.arg(&name).status().unwrap();
        assert!(st.success(), "useradd {name}");
        TempUser(name)
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

/// A rootfs fixture owned by `user`, plus a copy of the example binary it can run.
fn owned_fixture(user: &str) -> (Fixture, PathBuf) {
    let f = Fixture::new();
    let bin = f.path("run");
    fs::copy(example_bin(), &bin).unwrap();
    fs::set_permissions(f.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(f.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    (f, bin)
}

#[test]
fn unprivileged_user_without_subids() {
    let u = TempUser::new("a", true);
    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    assert!(!subuid.lines().any(|l| l.starts_with(&format!("{}:", u.0))));
    let (f, bin) = owned_fixture(&u.0);
    let out = Command::new("runuser")
        .args(["-u", &u.0, "--"])
        .arg(&bin)
        .args(["--net", "private", "--upper"])
        .arg(f.upper())
        .arg("--work")
        .arg(f.path("work"))
        .arg(f.lower())
        .args([
            "--",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; echo x > /root/y",
        ])
        .env("TMPDIR", f.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout {stdout} stderr {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0");
    let uid = fs::metadata(f.dir.path()).unwrap().uid();
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        vec!["0".to_string(), uid.to_string(), "1".into()]
    );
    assert_eq!(f.upper_tree(), vec!["root", "root/y"]);
    assert_eq!(fs::metadata(f.upper().join("root/y")).unwrap().uid(), uid);

    // Another user than root cannot exist in a single-id namespace.
    let out = Command::new("runuser")
        .args(["-u", &u.0, "--"])
        .arg(&bin)
        .args(["--user", "nobody"])
        .arg(f.lower())
        .args(["--", "id"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not mapped"));
}

#[test]
fn unprivileged_user_with_subids() {
    let u = TempUser::new("b", false);
    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    let Some(line) = subuid.lines().find(|l| l.starts_with(&format!("{}:", u.0))) else {
        panic!("useradd allocated no /etc/subuid range for {}", u.0);
    };
    let start: u32 = line.split(':').nth(1).unwrap().parse().unwrap();
    let (f, bin) = owned_fixture(&u.0);
    let out = Command::new("runuser")
        .args(["-u", &u.0, "--"])
        .arg(&bin)
        .args(["--user", "nobody", "--cwd", "/tmp/w", "--upper"])
        .arg(f.upper())
        .arg("--work")
        .arg(f.path("work"))
        .arg(f.lower())
        .args(["--", "sh", "-c", "id -u; touch f"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout {stdout} stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "65534");
    // Container uid 65534 is the 65534th subordinate id (container 1 = the range's start).
    assert_eq!(
        fs::metadata(f.upper().join("tmp/w/f")).unwrap().uid(),
        start + 65533
    );
}

#[test]
fn sigterm_to_the_caller_stops_the_step() {
    let f = Fixture::new();
    let token = format!("{}", 800000 + std::process::id() % 90000);
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        let mut child = Command::new(example_bin())
            .arg("--upper")
            .arg(f.upper())
            .arg("--work")
            .arg(f.path("work"))
            .arg(f.lower())
            .args(["--", "sh", "-c", &format!("sleep {token} & sleep {token}")])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let st = child.wait().unwrap();
        assert!(start.elapsed() < Duration::from_secs(10));
        if sig == libc::SIGTERM {
            // The example's handler calls terminate_all; run() returns and cleans up.
            assert_eq!(st.code(), Some(137));
            assert!(f.upper_tree().is_empty(), "{:?}", f.upper_tree());
        }
        std::thread::sleep(Duration::from_millis(200));
        for e in fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                assert!(
                    !cmd.contains(&format!("sleep {token}")),
                    "survivor after signal {sig}: {cmd}"
                );
            }
        }
    }
}

#[test]
fn real_root_without_a_user_namespace() {
    assert_eq!(
        kiln_sandbox::IdMap::detect(kiln_sandbox::UserNs::Auto)
            .unwrap()
            .kind,
        kiln_sandbox::IdMapKind::Identity
    );
    let f = Fixture::new();
    let mut spec = RunSpec::new(
        f.overlay(),
        sh("cat /proc/self/uid_map; mkdir /opaque-test; rm -rf /root; mkdir /root"),
    );
    spec.userns = kiln_sandbox::UserNs::Disabled;
    let (_, out) = run_ok(spec);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        vec!["0", "0", "4294967295"]
    );
    // Without a user namespace overlayfs marks the re-created directory opaque with trusted.*.
    let opaque = f.upper().join("root");
    let c = std::ffi::CString::new(opaque.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated strings; a zero-sized query.
    let r = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    assert!(r > 0, "no trusted.overlay.opaque on {}", opaque.display());
    assert_eq!(f.upper_tree(), vec!["opaque-test", "root"]);
}
