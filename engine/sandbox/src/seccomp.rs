//! The step's seccomp filter: a classic-BPF program, built by the caller before it forks and
//! installed by the step process right before it drops to the step's user.
//!
//! The filter refuses (with `EPERM`) the system calls that container engines keep from build
//! steps because they reach kernel state no namespace isolates — the kernel keyring, modules,
//! kexec and reboot, the clock, swap, accounting, `bpf`, `perf_event_open`, `userfaultfd`,
//! `open_by_handle_at` — and those that make or join namespaces or mount filesystems
//! (`unshare`/`clone` with namespace flags, `setns`, `mount`, the new mount API, `pivot_root`).
//! Each of those is let through when the step holds the capability Docker's default profile ties
//! it to (`--cap-add SYS_ADMIN` lets a step mount and unshare again, as with buildah). `clone3`
//! answers `ENOSYS`, so C libraries fall back to `clone`, whose flags the filter can read.
//! Everything else is allowed. On x86-64 the 32-bit (i386) calls are filtered by their own numbers
//! and x32 calls are refused; calls of any other architecture are refused. kiln has tables for
//! x86-64 and aarch64; elsewhere no filter is installed.
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]

use crate::caps::{Capabilities, number as cap};

/// `struct seccomp_data` offsets.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of the first argument (little-endian).
const OFF_ARG0_LO: u32 = 16;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

/// `CLONE_NEW*` flags: creating any namespace.
const NEW_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32
    | 0x80; // CLONE_NEWTIME

/// What the filter does with one system call.
#[derive(Clone, Copy)]
enum Rule {
    /// Refused unless the step holds this capability (`None`: always refused).
    Deny(Option<u32>),
    /// Refused when its first argument asks for a new namespace, unless the step holds
    /// `CAP_SYS_ADMIN`.
    DenyNewNamespace,
    /// Answered with `ENOSYS`.
    NoSys,
}

/// The rules for one architecture: (system call number, rule).
struct Table {
    audit_arch: u32,
    /// Numbers at or above this are refused (x32 calls on x86-64).
    refuse_from: Option<u32>,
    rules: Vec<(u32, Rule)>,
}

use Rule::{Deny, DenyNewNamespace, NoSys};

/// Calls with the same number on every architecture (the generic table from 403 on).
fn common_new_calls() -> Vec<(u32, Rule)> {
    let admin = Deny(Some(cap::SYS_ADMIN));
    vec![
        (428, admin), // open_tree
        (429, admin), // move_mount
        (430, admin), // fsopen
        (431, admin), // fsconfig
        (432, admin), // fsmount
        (433, admin), // fspick
        (435, NoSys), // clone3
        (442, admin), // mount_setattr
        (443, admin), // quotactl_fd
    ]
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn native_table() -> Table {
    use libc::*;
    let admin = Deny(Some(cap::SYS_ADMIN));
    let mut rules: Vec<(i64, Rule)> = vec![
        (SYS_acct, Deny(Some(cap::SYS_PACCT))),
        (SYS_add_key, Deny(None)),
        (SYS_request_key, Deny(None)),
        (SYS_keyctl, Deny(None)),
        (SYS_bpf, admin),
        (SYS_clock_adjtime, Deny(Some(cap::SYS_TIME))),
        (SYS_clock_settime, Deny(Some(cap::SYS_TIME))),
        (SYS_settimeofday, Deny(Some(cap::SYS_TIME))),
        (SYS_init_module, Deny(Some(cap::SYS_MODULE))),
        (SYS_finit_module, Deny(Some(cap::SYS_MODULE))),
        (SYS_delete_module, Deny(Some(cap::SYS_MODULE))),
        (SYS_kexec_load, Deny(Some(cap::SYS_BOOT))),
        (SYS_kexec_file_load, Deny(Some(cap::SYS_BOOT))),
        (SYS_reboot, Deny(Some(cap::SYS_BOOT))),
        (SYS_lookup_dcookie, admin),
        (SYS_mount, admin),
        (SYS_umount2, admin),
        (SYS_pivot_root, admin),
        (SYS_open_by_handle_at, Deny(Some(cap::DAC_READ_SEARCH))),
        (SYS_perf_event_open, admin),
        (SYS_quotactl, admin),
        (SYS_setns, admin),
        (SYS_swapon, admin),
        (SYS_swapoff, admin),
        (SYS_syslog, Deny(Some(cap::SYSLOG))),
        (SYS_userfaultfd, Deny(Some(cap::SYS_PTRACE))),
        (SYS_vhangup, Deny(Some(cap::SYS_TTY_CONFIG))),
        (SYS_nfsservctl, Deny(None)),
        (SYS_unshare, DenyNewNamespace),
        (SYS_clone, DenyNewNamespace),
    ];
    #[cfg(target_arch = "x86_64")]
    rules.extend([
        (174, Deny(None)), // create_module
        (177, Deny(None)), // get_kernel_syms
        (178, Deny(None)), // query_module
        (SYS_sysfs, Deny(None)),
        (SYS__sysctl, Deny(None)),
        (SYS_uselib, Deny(None)),
        (SYS_ustat, Deny(None)),
        (SYS_iopl, Deny(Some(cap::SYS_RAWIO))),
        (SYS_ioperm, Deny(Some(cap::SYS_RAWIO))),
    ]);
    let mut rules: Vec<(u32, Rule)> = rules.into_iter().map(|(n, r)| (n as u32, r)).collect();
    rules.extend(common_new_calls());
    #[cfg(target_arch = "x86_64")]
    return Table {
        audit_arch: AUDIT_ARCH_X86_64,
        refuse_from: Some(0x4000_0000),
        rules,
    };
    #[cfg(target_arch = "aarch64")]
    return Table {
        audit_arch: AUDIT_ARCH_AARCH64,
        refuse_from: None,
        rules,
    };
}

/// The i386 numbers of the same calls (x86-64 kernels run 32-bit programs).
#[cfg(target_arch = "x86_64")]
fn compat_table() -> Option<Table> {
    let admin = Deny(Some(cap::SYS_ADMIN));
    let time = Deny(Some(cap::SYS_TIME));
    let mut rules = vec![
        (51, Deny(Some(cap::SYS_PACCT))),        // acct
        (286, Deny(None)),                       // add_key
        (287, Deny(None)),                       // request_key
        (288, Deny(None)),                       // keyctl
        (357, admin),                            // bpf
        (343, time),                             // clock_adjtime
        (405, time),                             // clock_adjtime64
        (264, time),                             // clock_settime
        (404, time),                             // clock_settime64
        (79, time),                              // settimeofday
        (25, time),                              // stime
        (128, Deny(Some(cap::SYS_MODULE))),      // init_module
        (350, Deny(Some(cap::SYS_MODULE))),      // finit_module
        (129, Deny(Some(cap::SYS_MODULE))),      // delete_module
        (283, Deny(Some(cap::SYS_BOOT))),        // kexec_load
        (88, Deny(Some(cap::SYS_BOOT))),         // reboot
        (253, admin),                            // lookup_dcookie
        (21, admin),                             // mount
        (22, admin),                             // umount
        (52, admin),                             // umount2
        (217, admin),                            // pivot_root
        (342, Deny(Some(cap::DAC_READ_SEARCH))), // open_by_handle_at
        (336, admin),                            // perf_event_open
        (131, admin),                            // quotactl
        (346, admin),                            // setns
        (87, admin),                             // swapon
        (115, admin),                            // swapoff
        (103, Deny(Some(cap::SYSLOG))),          // syslog
        (374, Deny(Some(cap::SYS_PTRACE))),      // userfaultfd
        (111, Deny(Some(cap::SYS_TTY_CONFIG))),  // vhangup
        (169, Deny(None)),                       // nfsservctl
        (127, Deny(None)),                       // create_module
        (130, Deny(None)),                       // get_kernel_syms
        (167, Deny(None)),                       // query_module
        (135, Deny(None)),                       // sysfs
        (149, Deny(None)),                       // _sysctl
        (86, Deny(None)),                        // uselib
        (62, Deny(None)),                        // ustat
        (113, Deny(None)),                       // vm86old
        (166, Deny(None)),                       // vm86
        (110, Deny(Some(cap::SYS_RAWIO))),       // iopl
        (101, Deny(Some(cap::SYS_RAWIO))),       // ioperm
        (310, DenyNewNamespace),                 // unshare
        (120, DenyNewNamespace),                 // clone (flags are its first argument on i386)
    ];
    rules.extend(common_new_calls());
    Some(Table {
        audit_arch: AUDIT_ARCH_I386,
        refuse_from: None,
        rules,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn compat_table() -> Option<Table> {
    None
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The instructions for one architecture's calls; every path ends in a return.
///
/// The rules that apply (those the step's capabilities do not lift) are sorted by number and
/// searched as a balanced binary tree of `JGE` jumps with short linear runs at the leaves, so a
/// call costs about ten instructions whatever its number (a linear list made `read` and
/// `write`, the most frequent calls, walk every rule).
fn table_body(t: &Table, caps: Capabilities) -> Vec<libc::sock_filter> {
    let eperm = RET_ERRNO | libc::EPERM as u32;
    let mut p = vec![stmt(BPF_LD_W_ABS, OFF_NR)];
    if let Some(from) = t.refuse_from {
        p.push(jump(BPF_JGE_K, from, 0, 1));
        p.push(stmt(BPF_RET_K, eperm));
    }
    let mut rules: Vec<(u32, Rule)> = t
        .rules
        .iter()
        .copied()
        .filter(|(_, rule)| match rule {
            Deny(Some(c)) => !caps.contains(*c),
            DenyNewNamespace => !caps.contains(cap::SYS_ADMIN),
            Deny(None) | NoSys => true,
        })
        .collect();
    rules.sort_by_key(|(nr, _)| *nr);
    rules.dedup_by_key(|(nr, _)| *nr);
    p.extend(search(&rules));
    p
}

/// Rules at the leaves of the search tree, checked one after the other.
const LEAF: usize = 4;

/// The search over `rules` (sorted by number, the number in the accumulator).
fn search(rules: &[(u32, Rule)]) -> Vec<libc::sock_filter> {
    if rules.len() <= LEAF {
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let mut p = Vec::new();
        for &(nr, rule) in rules {
            match rule {
                Deny(_) => {
                    p.push(jump(BPF_JEQ_K, nr, 0, 1));
                    p.push(stmt(BPF_RET_K, eperm));
                }
                NoSys => {
                    p.push(jump(BPF_JEQ_K, nr, 0, 1));
                    p.push(stmt(BPF_RET_K, RET_ERRNO | libc::ENOSYS as u32));
                }
                DenyNewNamespace => {
                    // nr? then: flags & NEW_NAMESPACE_FLAGS ? EPERM : allow.
                    p.push(jump(BPF_JEQ_K, nr, 0, 4));
                    p.push(stmt(BPF_LD_W_ABS, OFF_ARG0_LO));
                    p.push(jump(BPF_JSET_K, NEW_NAMESPACE_FLAGS, 0, 1));
                    p.push(stmt(BPF_RET_K, eperm));
                    p.push(stmt(BPF_RET_K, RET_ALLOW));
                }
            }
        }
        p.push(stmt(BPF_RET_K, RET_ALLOW));
        return p;
    }
    let mid = rules.len() / 2;
    let below = search(&rules[..mid]);
    let above = search(&rules[mid..]);
    let skip = u8::try_from(below.len()).expect("seccomp search subtree fits a BPF jump");
    let mut p = vec![jump(BPF_JGE_K, rules[mid].0, skip, 0)];
    p.extend(below);
    p.extend(above);
    p
}

/// No filter where kiln has no table for the architecture.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn filter(_caps: Capabilities) -> Vec<libc::sock_filter> {
    Vec::new()
}

/// The filter program for a step holding `caps`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn filter(caps: Capabilities) -> Vec<libc::sock_filter> {
    let table = native_table();
    let native = table_body(&table, caps);
    let compat = compat_table().map(|t| (t.audit_arch, table_body(&t, caps)));
    let eperm = RET_ERRNO | libc::EPERM as u32;
    let mut p = vec![stmt(BPF_LD_W_ABS, OFF_ARCH)];
    // Not the native architecture: skip its body (jf counts from the next instruction).
    let skip = u8::try_from(native.len()).expect("seccomp table fits a BPF jump");
    p.push(jump(BPF_JEQ_K, table.audit_arch, 0, skip));
    p.extend(native);
    if let Some((arch, body)) = compat {
        // Reached by that skip, with the architecture still loaded.
        let skip = u8::try_from(body.len()).expect("seccomp table fits a BPF jump");
        p.push(jump(BPF_JEQ_K, arch, 0, skip));
        p.extend(body);
    }
    p.push(stmt(BPF_RET_K, eperm));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic-BPF program on one `seccomp_data` (the instructions the filter uses).
    fn eval(p: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    let k = i.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                BPF_RET_K => return i.k,
                BPF_JEQ_K | BPF_JGE_K | BPF_JSET_K => {
                    let taken = match i.code {
                        BPF_JEQ_K => acc == i.k,
                        BPF_JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    /// Every call number of both tables, and the numbers around them, gets what its rule says.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_search_tree_answers_every_number_as_the_rules_say() {
        let eperm = RET_ERRNO | libc::EPERM as u32;
        for caps in [
            Capabilities::BUILDAH_DEFAULT,
            Capabilities::ALL,
            Capabilities::NONE,
        ] {
            let prog = filter(caps);
            for (arch, table) in [
                (AUDIT_ARCH_X86_64, native_table()),
                (AUDIT_ARCH_I386, compat_table().unwrap()),
            ] {
                for nr in 0..600u32 {
                    let want = match table.rules.iter().find(|(n, _)| *n == nr) {
                        Some((_, Deny(Some(c)))) if caps.contains(*c) => RET_ALLOW,
                        Some((_, Deny(_))) => eperm,
                        Some((_, NoSys)) => RET_ERRNO | libc::ENOSYS as u32,
                        Some((_, DenyNewNamespace)) if !caps.contains(cap::SYS_ADMIN) => {
                            assert_eq!(eval(&prog, arch, nr, libc::CLONE_NEWNS as u64), eperm);
                            RET_ALLOW
                        }
                        _ => RET_ALLOW,
                    };
                    assert_eq!(eval(&prog, arch, nr, 0), want, "arch {arch:#x} nr {nr}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_filter_refuses_what_it_should_and_allows_the_rest() {
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let d = filter(Capabilities::BUILDAH_DEFAULT);
        let x = AUDIT_ARCH_X86_64;
        assert!(d.len() < 4096);
        assert_eq!(eval(&d, x, libc::SYS_keyctl as u32, 0), eperm);
        assert_eq!(eval(&d, x, libc::SYS_mount as u32, 0), eperm);
        assert_eq!(eval(&d, x, 435, 0), RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(eval(&d, x, libc::SYS_read as u32, 0), RET_ALLOW);
        assert_eq!(eval(&d, x, libc::SYS_execve as u32, 0), RET_ALLOW);
        assert_eq!(eval(&d, x, libc::SYS_ptrace as u32, 0), RET_ALLOW);
        let user = libc::CLONE_NEWUSER as u64;
        assert_eq!(eval(&d, x, libc::SYS_unshare as u32, user), eperm);
        assert_eq!(
            eval(&d, x, libc::SYS_unshare as u32, libc::CLONE_FILES as u64),
            RET_ALLOW
        );
        assert_eq!(eval(&d, x, libc::SYS_clone as u32, 0x80), eperm);
        assert_eq!(
            eval(&d, x, libc::SYS_clone as u32, libc::SIGCHLD as u64),
            RET_ALLOW
        );
        // x32 and unknown architectures; i386 by its own numbers.
        assert_eq!(eval(&d, x, 0x4000_0000 | 3, 0), eperm);
        assert_eq!(eval(&d, 0xc000_00b7, 63, 0), eperm);
        assert_eq!(eval(&d, AUDIT_ARCH_I386, 288, 0), eperm);
        assert_eq!(eval(&d, AUDIT_ARCH_I386, 3, 0), RET_ALLOW);
        assert_eq!(eval(&d, AUDIT_ARCH_I386, 120, user), eperm);
        // CAP_SYS_ADMIN lets mounts and namespaces through; the keyring stays closed.
        let admin = Capabilities::BUILDAH_DEFAULT
            .with_changes(&["SYS_ADMIN"], &[] as &[&str])
            .unwrap();
        let a = filter(admin);
        assert_eq!(eval(&a, x, libc::SYS_mount as u32, 0), RET_ALLOW);
        assert_eq!(eval(&a, x, libc::SYS_unshare as u32, user), RET_ALLOW);
        assert_eq!(eval(&a, x, libc::SYS_keyctl as u32, 0), eperm);
    }
}
