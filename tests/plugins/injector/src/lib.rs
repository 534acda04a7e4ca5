//! A test mount injector. Its `mode` option picks what it does: answer well (`ok`, `secret`,
//! `read-rootfs`) or misbehave in one way (`loop`, `memory-bomb`, `recurse`, `panic`, `huge-bytes`,
//! `alias`, `proc-target`, `dotdot-target`, `dotdot-inside`, `sys-target`, `dev-target`, `bundle`,
//! `bad-env-name`; `secret-env` asks for a secret as an env variable), so the host's tests can
//! check each cap.

use kiln_sdk::injector::exports::kiln::plugin::about::{Guest as About, PluginInfo as Info};
use kiln_sdk::injector::exports::kiln::plugin::mount_injector::{Guest, Injection, StepInfo};
use kiln_sdk::injector::kiln::plugin::mounts::{self, Content, Mount};
use kiln_sdk::injector::kiln::plugin::types::PluginError;
use std::hint::black_box;

struct Plugin;

impl About for Plugin {
    fn info() -> Info {
        Info { name: "test-injector".into(), version: env!("CARGO_PKG_VERSION").into(), description: env!("CARGO_PKG_DESCRIPTION").into() }
    }
}

fn option<'a>(step: &'a StepInfo, key: &str) -> &'a str {
    step.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
}

fn bytes_mount(target: &str, data: Vec<u8>) -> Mount {
    Mount { target: target.into(), content: Content::Bytes(data), mode: 0o644, uid: 0, gid: 0 }
}

fn one(mount: Mount) -> Result<Injection, PluginError> {
    Ok(Injection { mounts: vec![mount], env: vec![] })
}

/// Recursion the compiler cannot turn into a loop: the call's result passes through `black_box`.
#[inline(never)]
fn descend(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let below = descend(black_box(n - 1));
    black_box(below).wrapping_add(n)
}

impl Guest for Plugin {
    fn mounts_for(step: StepInfo) -> Result<Injection, PluginError> {
        kiln_sdk::install_panic_hook();
        match option(&step, "mode") {
            "ok" => Ok(Injection {
                mounts: vec![bytes_mount("/etc/kiln-test/ok", b"ok\n".to_vec())],
                env: vec![
                    ("KILN_TEST_STEP".into(), format!("{}/{}", step.stage, step.index)),
                    ("KILN_TEST_ARGV".into(), step.argv.join(" ")),
                ],
            }),
            "loop" => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    block[4096] = 1;
                    hoard.push(black_box(block));
                    black_box(&hoard);
                }
            }
            "recurse" => {
                let depth = descend(black_box(u64::MAX));
                Ok(Injection { mounts: vec![], env: vec![("DEPTH".into(), depth.to_string())] })
            }
            "panic" => panic!("test-injector: deliberate panic (code 42)"),
            "huge-bytes" => one(bytes_mount("/etc/huge", vec![7u8; 1 << 30])),
            "alias" => {
                // Any module can hand the host many lists that share one buffer: 16 mounts point
                // at the same 64 MiB, which would be 1 GiB once copied out. The guest is raw wasm
                // to the host; the `unsafe` below only spells that in Rust.
                let mut buf = std::mem::ManuallyDrop::new(vec![0x41u8; 64 << 20]);
                let (ptr, len) = (buf.as_mut_ptr(), buf.len());
                let mounts =
                    (0..16).map(|i| bytes_mount(&format!("/etc/alias/{i}"), unsafe { Vec::from_raw_parts(ptr, len, len) })).collect();
                Ok(Injection { mounts, env: vec![] })
            }
            "proc-target" => one(bytes_mount("/proc/x", b"x".to_vec())),
            "dotdot-target" => one(bytes_mount("../etc", b"x".to_vec())),
            "dotdot-inside" => one(bytes_mount("/etc/ssl/../../root/.ssh/authorized_keys", b"x".to_vec())),
            "sys-target" => one(bytes_mount("/sys/kernel/uevent_helper", b"x".to_vec())),
            "dev-target" => one(bytes_mount("/dev/sda", b"x".to_vec())),
            "bad-env-name" => Ok(Injection { mounts: vec![], env: vec![("A=B".into(), "x".into())] }),
            "secret-env" => {
                let secret = mounts::lookup_secret(option(&step, "secret"))?;
                mounts::secret_env(option(&step, "var"), &secret)?;
                Ok(Injection { mounts: vec![], env: vec![] })
            }
            "bundle" => one(bytes_mount("/etc/ssl/certs/bundle.pem", vec![b'A'; 100 << 20])),
            "secret" => {
                let id = option(&step, "secret");
                let secret = mounts::lookup_secret(id)?;
                one(Mount { target: format!("/run/secrets/{id}"), content: Content::Secret(secret), mode: 0o400, uid: 0, gid: 0 })
            }
            "read-rootfs" => {
                let found = match mounts::read_rootfs_file(option(&step, "path"))? {
                    None => "absent".to_string(),
                    Some(b) => format!("bytes:{}", String::from_utf8_lossy(&b)),
                };
                Ok(Injection { mounts: vec![], env: vec![("FOUND".into(), found)] })
            }
            other => Err(PluginError::InvalidInput(format!("unknown mode {other:?}"))),
        }
    }
}

kiln_sdk::injector::export_injector!(Plugin);
