//! Manual test driver for kiln-sandbox: runs one command in a rootfs.
//!
//! ```text
//! run [OPTIONS] ROOTFS -- CMD [ARGS...]
//!   ROOTFS               a directory (run in it directly), or with --upper/--work the topmost
//!                        lower dir of an overlay (more lowers with --lower, top first)
//!   --lower DIR          another lower dir below ROOTFS (repeatable)
//!   --upper DIR --work DIR   overlay upper and work dirs
//!   --net host|none|private
//!   --user SPEC          name|uid[:group|gid]
//!   --cwd DIR            working directory inside
//!   --hostname NAME
//!   --env K=V            (repeatable)
//!   --bind SRC:DST[:ro]  bind a host file or directory (repeatable)
//!   --tmpfs DST          (repeatable)
//!   --secret DST=HOSTFILE   a 0400 file mount (repeatable)
//!   --capture            collect stdout/stderr through callbacks and print the last lines
//! ```
//! Prints `status=N` and `created=PATHS` on stderr; exits with the step's status. SIGINT and
//! SIGTERM stop the step through `terminate_all`.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_sandbox::{ExtraMount, FileSource, LineTail, Network, Output, Rootfs, RunSpec, UserSpec};

extern "C" fn on_signal(_: libc::c_int) {
    kiln_sandbox::terminate_all();
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: run [--lower DIR] [--upper DIR --work DIR] [--net host|none|private] [--user SPEC] [--cwd DIR] [--hostname NAME] [--env K=V] [--bind SRC:DST[:ro]] [--tmpfs DST] [--secret DST=FILE] [--capture] ROOTFS -- CMD..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut lowers, mut upper, mut work) =
        (Vec::<PathBuf>::new(), None::<PathBuf>, None::<PathBuf>);
    let (mut net, mut user, mut cwd, mut hostname) = (
        Network::Host,
        UserSpec::root(),
        "/".to_string(),
        "kiln".to_string(),
    );
    let (mut env, mut mounts, mut capture) = (Vec::new(), Vec::new(), false);
    let mut rootfs = None::<PathBuf>;
    let mut argv = Vec::new();
    while let Some(a) = args.next() {
        let mut val = || args.next();
        match a.as_str() {
            "--lower" => lowers.push(val().map(PathBuf::from).unwrap_or_default()),
            "--upper" => upper = val().map(PathBuf::from),
            "--work" => work = val().map(PathBuf::from),
            "--net" => {
                net = match val().as_deref() {
                    Some("host") => Network::Host,
                    Some("none") => Network::None,
                    Some("private") => Network::Private,
                    _ => return usage(),
                }
            }
            "--user" => match UserSpec::parse(&val().unwrap_or_default()) {
                Ok(u) => user = u,
                Err(e) => {
                    eprintln!("{e}");
                    return usage();
                }
            },
            "--cwd" => cwd = val().unwrap_or_default(),
            "--hostname" => hostname = val().unwrap_or_default(),
            "--env" => {
                let v = val().unwrap_or_default();
                let (k, v) = v.split_once('=').unwrap_or((&v, ""));
                env.push((k.to_string(), v.to_string()));
            }
            "--bind" => {
                let v = val().unwrap_or_default();
                let parts: Vec<&str> = v.split(':').collect();
                if parts.len() < 2 {
                    return usage();
                }
                let src = PathBuf::from(parts[0]);
                let (target, readonly) = (parts[1].to_string(), parts.get(2) == Some(&"ro"));
                mounts.push(if src.is_dir() {
                    ExtraMount::BindDir {
                        src,
                        target,
                        readonly,
                    }
                } else {
                    ExtraMount::BindFile {
                        src,
                        target,
                        readonly,
                    }
                });
            }
            "--tmpfs" => mounts.push(ExtraMount::Tmpfs {
                target: val().unwrap_or_default(),
                size: None,
            }),
            "--secret" => {
                let v = val().unwrap_or_default();
                let Some((t, f)) = v.split_once('=') else {
                    return usage();
                };
                mounts.push(ExtraMount::File {
                    target: t.into(),
                    source: FileSource::HostPath(f.into()),
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                });
            }
            "--capture" => capture = true,
            "--" => {
                argv = args.by_ref().collect();
                break;
            }
            _ if a.starts_with("--") => return usage(),
            _ => rootfs = Some(PathBuf::from(a)),
        }
    }
    let Some(rootfs) = rootfs else { return usage() };
    if argv.is_empty() {
        return usage();
    }
    let rootfs = match (upper, work) {
        (Some(upper), Some(work)) => {
            lowers.insert(0, rootfs);
            Rootfs::Overlay {
                lowers,
                upper,
                work,
            }
        }
        (None, None) => Rootfs::Dir(rootfs),
        _ => return usage(),
    };
    // SAFETY: the handler only calls an async-signal-safe function.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut out_tail = LineTail::new(20);
    let mut err_tail = LineTail::new(20);
    let mut spec = RunSpec::new(rootfs, argv);
    spec.env = env;
    spec.user = user;
    spec.cwd = cwd;
    spec.hostname = hostname;
    spec.network = net;
    spec.mounts = mounts;
    spec.stdin = kiln_sandbox::Input::Inherit;
    if capture {
        spec.stdout = Output::Callback(Box::new(|b| out_tail.push(b)));
        spec.stderr = Output::Callback(Box::new(|b| err_tail.push(b)));
    }
    let result = kiln_sandbox::run(spec);
    if capture {
        for l in out_tail.lines() {
            println!("{l}");
        }
        for l in err_tail.lines() {
            eprintln!("{l}");
        }
    }
    match result {
        Ok(o) => {
            eprintln!("status={}", o.status);
            let created: Vec<String> = o
                .created_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            eprintln!("created={}", created.join(","));
            ExitCode::from(o.status.clamp(0, 255) as u8)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(125)
        }
    }
}
