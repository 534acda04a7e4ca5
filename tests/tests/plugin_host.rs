//! The plugin host against hostile guests: forbidden imports, runaway loops, memory bombs, deep
//! recursion, oversized answers, panics and injector answers that break the mount rules; each
//! fails with a clear error and leaves the host able to run the next call. Also the compile
//! cache (hits, and repair of damaged entries), the build-context and rootfs sandboxes, the
//! exporter's handles, and the built-in plugins.

mod common;

use common::alloc::{Metered, peak_heap};
use common::plugins::{TEST_EXPORTER, TEST_FRONTEND, TEST_INJECTOR, TEST_WASI_IMPORTER};
use common::{DEADLINE, MEMORY_LIMIT, deadline_host, hostile_host, request, sha256, step};
use kiln_plugin_host::{
    CacheOutcome, ExportImage, ExportLayer, HostConfig, HostError, InjectedContent, Plugin, PluginHost, PluginKind, types,
};
use std::path::Path;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: Metered = Metered;

fn injector(host: &PluginHost) -> Plugin {
    let p = host.load("test-injector.wasm", TEST_INJECTOR).expect("loading the test injector");
    assert_eq!(p.kind, PluginKind::Injector);
    assert_eq!(p.info.name, "test-injector");
    p
}

/// The well-behaved call every hostile test ends with: the same host still works.
fn assert_host_still_works(host: &PluginHost, plugin: &Plugin) {
    let inj = host.inject(plugin, &step(&[("mode", "ok")]), None, &[]).expect("a well-behaved call after the hostile one");
    assert_eq!(inj.mounts.len(), 1);
    assert_eq!(inj.mounts[0].target, "/etc/kiln-test/ok");
    assert!(matches!(&inj.mounts[0].content, InjectedContent::Bytes(b) if b == b"ok\n"));
    assert!(inj.env.contains(&("KILN_TEST_STEP".into(), "1/3".into())), "{:?}", inj.env);
    assert!(inj.env.contains(&("KILN_TEST_ARGV".into(), "/bin/sh -c true".into())), "{:?}", inj.env);
}

fn inject_err(host: &PluginHost, plugin: &Plugin, mode: &str) -> HostError {
    match host.inject(plugin, &step(&[("mode", mode)]), None, &[]) {
        Ok(inj) => panic!("mode {mode}: the host accepted {} mounts and env {:?}", inj.mounts.len(), inj.env),
        Err(e) => e,
    }
}

fn trap_reason(e: &HostError) -> &str {
    match e {
        HostError::Trap { reason, .. } => reason,
        other => panic!("expected a trap, got {other:?}"),
    }
}

fn refusal(e: &HostError) -> &str {
    match e {
        HostError::Refused { reason, .. } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn heap_meter_sees_allocations() {
    let (v, peak) = peak_heap(|| vec![1u8; 10 << 20]);
    assert!(peak >= 10 << 20, "{peak}");
    drop(v);
    let (_, peak) = peak_heap(|| ());
    assert!(peak < 1 << 20, "{peak}");
}

#[test]
fn wasi_filesystem_import_is_refused_at_load() {
    let host = hostile_host();
    let err = host.load("wasi-importer.wasm", TEST_WASI_IMPORTER).err().expect("a plugin importing wasi:filesystem loaded");
    let HostError::ForbiddenImport { plugin, import } = &err else { panic!("expected ForbiddenImport, got {err:?}") };
    // The label, not the name the plugin would have told: none of its code ran.
    assert_eq!(plugin, "wasi-importer.wasm");
    assert!(import.starts_with("wasi:filesystem/"), "{import}");
    let msg = err.to_string();
    assert!(msg.contains(import.as_str()) && msg.contains("refused"), "{msg}");
    assert_host_still_works(&host, &injector(&host));
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let host = deadline_host();
    let plugin = injector(&host);
    let started = Instant::now();
    let err = inject_err(&host, &plugin, "loop");
    let took = started.elapsed();
    match &err {
        HostError::Timeout { plugin, limit_ms, doing } => {
            assert_eq!(plugin, "test-injector");
            assert_eq!(*limit_ms, DEADLINE.as_millis() as u64);
            assert!(doing.contains("step 3 of stage 1"), "{doing}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.to_string().contains("300 ms"), "{err}");
    // Not a speed check (see the benchmark): the call came back at all, and not after minutes.
    assert!(took < Duration::from_secs(60), "the loop ran {took:?}");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn memory_bomb_traps_at_the_memory_cap() {
    let host = hostile_host();
    let plugin = injector(&host);
    let err = inject_err(&host, &plugin, "memory-bomb");
    let reason = trap_reason(&err);
    assert!(reason.contains(&format!("memory limit of {} MiB", MEMORY_LIMIT >> 20)), "{reason}");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn deep_recursion_traps_as_stack_overflow() {
    let host = hostile_host();
    let plugin = injector(&host);
    let err = inject_err(&host, &plugin, "recurse");
    let reason = trap_reason(&err);
    assert!(reason.contains("stack overflow"), "{reason}");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn panic_message_reaches_the_error() {
    let host = hostile_host();
    let plugin = injector(&host);
    let err = inject_err(&host, &plugin, "panic");
    let reason = trap_reason(&err);
    assert!(reason.contains("test-injector: deliberate panic (code 42)"), "{reason}");
    assert!(reason.contains("src/lib.rs"), "the panic's location is missing: {reason}");
    assert!(err.to_string().contains("plugin test-injector failed while preparing mounts"), "{err}");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn gigabyte_mount_traps_at_the_memory_cap_without_host_allocation() {
    let host = hostile_host();
    let plugin = injector(&host);
    let (err, peak) = peak_heap(|| inject_err(&host, &plugin, "huge-bytes"));
    let reason = trap_reason(&err);
    assert!(reason.contains("memory limit"), "{reason}");
    assert!(peak < 64 << 20, "the host's heap grew by {peak} bytes during the call");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn gigabyte_plan_traps_at_the_memory_cap_without_host_allocation() {
    let host = hostile_host();
    let plugin = host.load("test-frontend.wasm", TEST_FRONTEND).unwrap();
    assert_eq!(plugin.kind, PluginKind::Frontend);
    let ctx = tempfile::tempdir().unwrap();
    let (r, peak) = peak_heap(|| host.parse(&plugin, &request(&[("mode", "huge-plan")]), ctx.path(), None));
    let err = r.expect_err("a 1 GiB plan was accepted");
    let reason = trap_reason(&err);
    assert!(reason.contains("memory limit"), "{reason}");
    assert!(peak < 64 << 20, "the host's heap grew by {peak} bytes during the call");
    let plan = host.parse(&plugin, &request(&[("mode", "ok")]), ctx.path(), None).unwrap().expect("a plan");
    assert_eq!(plan.stages.len(), 1);
}

/// A guest may answer with 16 lists that share one 64 MiB buffer of its memory: 1 GiB once the
/// host copies them out, although the guest never held more than its cap.
#[test]
fn aliased_answer_is_refused_without_gigabyte_host_allocation() {
    let host = hostile_host();
    let plugin = injector(&host);
    let (err, peak) = peak_heap(|| inject_err(&host, &plugin, "alias"));
    assert!(matches!(err, HostError::Refused { .. } | HostError::Trap { .. }), "{err:?}");
    assert!(peak < 256 << 20, "the host's heap grew by {} MiB while lifting the answer ({err})", peak >> 20);
    assert_host_still_works(&host, &plugin);
}

#[test]
fn mount_under_proc_is_refused() {
    let host = hostile_host();
    let plugin = injector(&host);
    let err = inject_err(&host, &plugin, "proc-target");
    let reason = refusal(&err);
    assert!(reason.contains("\"/proc/x\"") && reason.contains("under /proc"), "{reason}");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn relative_mount_target_is_refused() {
    let host = hostile_host();
    let plugin = injector(&host);
    let err = inject_err(&host, &plugin, "dotdot-target");
    let reason = refusal(&err);
    assert!(reason.contains("\"../etc\"") && reason.contains("not an absolute path"), "{reason}");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn dotdot_inside_an_absolute_target_is_refused() {
    let host = hostile_host();
    let plugin = injector(&host);
    let err = inject_err(&host, &plugin, "dotdot-inside");
    let reason = refusal(&err);
    assert!(reason.contains("/etc/ssl/../../root") && reason.contains("not a normalized path"), "{reason}");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn mounts_under_sys_and_dev_are_refused() {
    let host = hostile_host();
    let plugin = injector(&host);
    for (mode, dir) in [("sys-target", "/sys"), ("dev-target", "/dev")] {
        let err = inject_err(&host, &plugin, mode);
        let reason = refusal(&err);
        assert!(reason.contains(&format!("under {dir}")), "{mode}: {reason}");
        assert!(err.to_string().contains("plugin test-injector: refused its answer"), "{err}");
    }
    assert_host_still_works(&host, &plugin);
}

#[test]
fn invalid_env_name_is_refused() {
    let host = hostile_host();
    let plugin = injector(&host);
    let err = inject_err(&host, &plugin, "bad-env-name");
    assert!(refusal(&err).contains("env name \"A=B\" is invalid"), "{err}");
    assert_host_still_works(&host, &plugin);
}

/// The host's own check, without a plugin's memory cap in the way: a 1 GiB bundle (zeroed pages,
/// never touched) is refused by size.
#[test]
fn gigabyte_bundle_is_refused_by_the_host_check() {
    let bundle = |bytes: Vec<u8>| kiln_plugin_host::Injection {
        mounts: vec![kiln_plugin_host::InjectedMount {
            target: "/etc/ssl/certs/ca-certificates.crt".into(),
            content: InjectedContent::Bytes(bytes),
            mode: 0o444,
            uid: 0,
            gid: 0,
        }],
        ..Default::default()
    };
    let reason = kiln_plugin_host::validate_injection(&bundle(vec![0u8; 1 << 30])).expect_err("a 1 GiB bundle passed");
    assert!(reason.contains(&format!("carry {} bytes", 1u64 << 30)), "{reason}");
    kiln_plugin_host::validate_injection(&bundle(b"-----BEGIN CERTIFICATE-----\n".to_vec())).expect("a small bundle is fine");
}

#[test]
fn secret_env_needs_a_grant_and_never_carries_the_value() {
    let host = hostile_host();
    let plugin = injector(&host);
    let ask = |id: &str, var: &str| step(&[("mode", "secret-env"), ("secret", id), ("var", var)]);
    let err = host.inject(&plugin, &ask("prod-db", "DB"), None, &["ci-token".into()]).expect_err("an ungranted secret reached env");
    match &err {
        HostError::Plugin { reason, .. } => assert!(reason.contains("denied") && reason.contains("\"prod-db\""), "{reason}"),
        other => panic!("expected the plugin's denied error, got {other:?}"),
    }
    let err = host.inject(&plugin, &ask("ci-token", "A=B"), None, &["ci-token".into()]).expect_err("a bad variable name");
    assert!(err.to_string().contains("env name \"A=B\" is invalid"), "{err}");
    let inj = host.inject(&plugin, &ask("ci-token", "TOKEN"), None, &["ci-token".into()]).expect("a granted secret");
    assert_eq!(inj.secret_env, [("TOKEN".to_string(), "ci-token".to_string())]);
    assert!(inj.env.is_empty() && inj.mounts.is_empty(), "{inj:?}");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn hundred_mib_bundle_is_refused() {
    let host = hostile_host();
    let plugin = injector(&host);
    let err = inject_err(&host, &plugin, "bundle");
    let reason = refusal(&err);
    assert!(reason.contains(&format!("carry {} bytes", 100 << 20)), "{reason}");
    assert!(reason.contains(&kiln_plugin_host::MAX_INJECTED_BYTES.to_string()), "{reason}");
    assert_host_still_works(&host, &plugin);
}

#[test]
fn secret_not_granted_is_refused_and_granted_one_is_placed() {
    let host = hostile_host();
    let plugin = injector(&host);
    let ask = step(&[("mode", "secret"), ("secret", "prod-db")]);
    let err = host.inject(&plugin, &ask, None, &["ci-token".into()]).expect_err("an ungranted secret was placed");
    match &err {
        HostError::Plugin { reason, .. } => {
            assert!(reason.contains("denied") && reason.contains("\"prod-db\"") && reason.contains("not granted"), "{reason}")
        }
        other => panic!("expected the plugin's denied error, got {other:?}"),
    }
    let ok = step(&[("mode", "secret"), ("secret", "ci-token")]);
    let inj = host.inject(&plugin, &ok, None, &["ci-token".into()]).expect("a granted secret");
    assert_eq!(inj.mounts.len(), 1);
    assert_eq!(inj.mounts[0].target, "/run/secrets/ci-token");
    assert_eq!(inj.mounts[0].mode, 0o400);
    assert!(matches!(&inj.mounts[0].content, InjectedContent::Secret(id) if id == "ci-token"));
    assert_host_still_works(&host, &plugin);
}

#[test]
fn rootfs_reads_go_through_the_callback_with_limits() {
    use std::sync::{Arc, Mutex};
    let host = hostile_host();
    let plugin = injector(&host);
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let found = |path: &str| -> Result<String, HostError> {
        let log = asked.clone();
        let reader: kiln_plugin_host::RootfsReadFn = Box::new(move |p: &str| {
            log.lock().unwrap().push(p.to_string());
            match p {
                "/etc/hostname" => Ok(Some(b"inside\n".to_vec())),
                "/big" => Ok(Some(vec![0u8; (16 << 20) + 1])),
                "/broken" => Err("device on fire".to_string()),
                _ => Ok(None),
            }
        });
        let inj = host.inject(&plugin, &step(&[("mode", "read-rootfs"), ("path", path)]), Some(reader), &[])?;
        Ok(inj.env.iter().find(|(k, _)| k == "FOUND").map(|(_, v)| v.clone()).unwrap())
    };
    assert_eq!(found("/etc/hostname").unwrap(), "bytes:inside\n");
    assert_eq!(found("/etc/shadow").unwrap(), "absent");
    let plugin_reason = |path: &str| match found(path) {
        Err(HostError::Plugin { reason, .. }) => reason,
        other => panic!("{path}: expected the plugin to pass on the host's error, got {other:?}"),
    };
    let r = plugin_reason("../../etc/passwd");
    assert!(r.contains("not an absolute path"), "{r}");
    let r = plugin_reason("/big");
    assert!(r.contains("denied") && r.contains(&(16u64 << 20).to_string()), "{r}");
    let r = plugin_reason("/broken");
    assert!(r.contains("device on fire"), "{r}");
    // A relative path never reaches the callback.
    assert_eq!(*asked.lock().unwrap(), ["/etc/hostname", "/etc/shadow", "/big", "/broken"]);
    // Without a root filesystem every file is absent.
    let inj = host.inject(&plugin, &step(&[("mode", "read-rootfs"), ("path", "/etc/hostname")]), None, &[]).unwrap();
    assert!(inj.env.contains(&("FOUND".into(), "absent".into())), "{:?}", inj.env);
    assert_host_still_works(&host, &plugin);
}

#[test]
fn build_context_cannot_be_escaped() {
    let host = hostile_host();
    let plugin = host.load("test-frontend.wasm", TEST_FRONTEND).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP-SECRET-CONTENT").unwrap();
    let ctx = outside.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Kilnfile"), "inside").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), ctx.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", ctx.join("rel-link")).unwrap();
    let paths = ["Kilnfile", "../secret.txt", "abs-link", "rel-link", "/etc/passwd", "sub/../../secret.txt"];
    let req = request(&[("mode", "escape"), ("paths", &paths.join("\n"))]);
    let plan = host.parse(&plugin, &req, &ctx, None).unwrap().expect("a plan");
    let common_plan_env = match &plan.stages[0].steps[0].kind {
        kiln_plugin_host::plan::StepKind::Env(env) => env.clone(),
        other => panic!("{other:?}"),
    };
    let get = |k: String| common_plan_env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(get("open:Kilnfile".into()), "ok:inside");
    for p in &paths[1..] {
        let opened = get(format!("open:{p}"));
        assert!(opened.starts_with("err:"), "{p} opened: {opened}");
        assert!(!opened.contains("TOP-SECRET") && !opened.contains("root:"), "{p}: {opened}");
    }
}

fn dummy_descriptor(media_type: &str, bytes: &[u8]) -> types::Descriptor {
    types::Descriptor { media_type: media_type.into(), digest: sha256(bytes), size: bytes.len() as u64, annotations: vec![] }
}

/// An image of one layer at `layer`, for the test exporter.
fn image(layer: &Path) -> ExportImage {
    let config = b"{}".to_vec();
    let manifest = b"{\"schemaVersion\":2}".to_vec();
    let size = std::fs::metadata(layer).unwrap().len();
    ExportImage {
        names: vec!["test:latest".into()],
        manifest_descriptor: dummy_descriptor("application/vnd.oci.image.manifest.v1+json", &manifest),
        manifest_json: manifest,
        config_descriptor: dummy_descriptor("application/vnd.oci.image.config.v1+json", &config),
        config_json: config,
        layers: vec![ExportLayer {
            descriptor: types::Descriptor {
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                digest: sha256(&std::fs::read(layer).unwrap()),
                size,
                annotations: vec![],
            },
            diff_id: String::new(),
            path: layer.to_path_buf(),
        }],
        timestamp: None,
    }
}

#[test]
fn exporter_moves_bytes_through_handles_intact() {
    let host = hostile_host();
    let plugin = host.load("test-exporter.wasm", TEST_EXPORTER).unwrap();
    assert_eq!(plugin.kind, PluginKind::Exporter);
    assert_eq!(host.schemes(&plugin).unwrap(), vec!["kiln-test".to_string()]);
    let dir = tempfile::tempdir().unwrap();
    // Not a multiple of any chunk size, so the last read is short.
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let layer = dir.path().join("layer");
    std::fs::write(&layer, &data).unwrap();
    let gz = dir.path().join("layer.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &data).unwrap();
    enc.finish().unwrap();
    for (mode, src, chunk) in
        [("write", &layer, "65536"), ("write", &layer, "4000000"), ("copy-from", &layer, ""), ("copy-from-split", &layer, ""), ("stream", &gz, "100000")]
    {
        let out = dir.path().join(format!("out-{mode}-{chunk}"));
        let opts = vec![("mode".to_string(), mode.to_string()), ("chunk".to_string(), chunk.to_string())];
        let (desc, finished) = host.export(&plugin, &image(src), "somewhere", &opts, &out).unwrap_or_else(|e| panic!("{mode}: {e}"));
        let written = std::fs::read(&out).unwrap();
        assert!(written == data, "{mode}/{chunk}: {} bytes written, {} expected", written.len(), data.len());
        assert_eq!(desc.digest, sha256(&data), "{mode}");
        assert_eq!(desc.size, data.len() as u64);
        assert_eq!(desc.media_type, "application/vnd.kiln.test");
        let finished = finished.unwrap();
        assert_eq!(finished.digest, desc.digest);
        assert_eq!(finished.uncompressed_size, data.len() as u64);
    }
    // Reads past the end come back empty rather than failing or wrapping.
    let out = dir.path().join("read-only");
    let opts = vec![("mode".to_string(), "read".to_string())];
    let (desc, _) = host.export(&plugin, &image(&layer), "x", &opts, &out).unwrap();
    assert!(desc.annotations.contains(&("kiln.test.seen".into(), data.len().to_string())), "{:?}", desc.annotations);
    assert_eq!(desc.size, 0);
}

#[test]
fn background_compression_agrees_and_is_bounded() {
    let host = hostile_host();
    let plugin = host.load("test-exporter.wasm", TEST_EXPORTER).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i / 7 % 251) as u8 ^ (i >> 13) as u8).collect();
    let layer = dir.path().join("layer");
    std::fs::write(&layer, &data).unwrap();
    let out = dir.path().join("out");
    let opts = vec![("mode".to_string(), "codec".to_string()), ("chunk".to_string(), "1048576".to_string())];
    let (desc, _) = host.export(&plugin, &image(&layer), "x", &opts, &out).unwrap_or_else(|e| panic!("{e}"));
    let note = |k: &str| desc.annotations.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(note("kiln.test.codec-refused-after").as_deref(), Some(kiln_plugin_host::MAX_CODEC_PENDING.to_string().as_str()));
    // The blocks are zlib streams of the layer's 64 KiB pieces, in order.
    let written = std::fs::read(&out).unwrap();
    let (mut at, mut back) = (0, Vec::new());
    while at < written.len() {
        let n = u32::from_le_bytes(written[at..at + 4].try_into().unwrap()) as usize;
        let mut d = flate2::read::ZlibDecoder::new(&written[at + 4..at + 4 + n]);
        let before = back.len();
        std::io::Read::read_to_end(&mut d, &mut back).unwrap();
        assert!(back.len() - before <= 64 << 10);
        at += 4 + n;
    }
    assert!(back == data, "{} bytes back of {}", back.len(), data.len());
}

#[test]
fn wrong_kind_of_call_is_refused() {
    let host = hostile_host();
    let plugin = injector(&host);
    let ctx = tempfile::tempdir().unwrap();
    let err = host.parse(&plugin, &request(&[("mode", "ok")]), ctx.path(), None).expect_err("an injector parsed");
    assert!(matches!(err, HostError::NotFound { ref kind, .. } if kind == "frontend"), "{err:?}");
    assert!(matches!(host.schemes(&plugin), Err(HostError::NotFound { .. })));
}

#[test]
fn garbage_is_not_a_plugin() {
    let host = hostile_host();
    for (what, bytes) in [("text", &b"#!/bin/sh\necho hi\n"[..]), ("truncated", &TEST_INJECTOR[..TEST_INJECTOR.len() / 2])] {
        let err = host.load(what, bytes).err().unwrap_or_else(|| panic!("{what} loaded"));
        assert!(matches!(err, HostError::Invalid { .. }), "{what}: {err:?}");
    }
}

#[test]
fn compile_cache_hits_and_repairs_damaged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig { cache_dir: Some(dir.path().to_path_buf()), ..HostConfig::default() };
    let host = PluginHost::new(config.clone()).unwrap();
    let first = host.load("test-injector", TEST_INJECTOR).unwrap();
    assert_eq!(first.cache, CacheOutcome::Compiled);
    let hex = first.digest.strip_prefix("sha256:").unwrap().to_string();
    assert_eq!(first.digest, sha256(TEST_INJECTOR));
    let entry = host.compile_cache().entry_path(&hex).unwrap();
    assert!(entry.starts_with(dir.path()) && entry.exists(), "{}", entry.display());
    assert_eq!(host.load("test-injector", TEST_INJECTOR).unwrap().cache, CacheOutcome::Hit);
    // A second process (a new host, a new engine) finds the entry too.
    let host = PluginHost::new(config).unwrap();
    assert_eq!(host.load("test-injector", TEST_INJECTOR).unwrap().cache, CacheOutcome::Hit);

    let good = std::fs::read(&entry).unwrap();
    let len = good.len();
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..len / 2].to_vec()),
        ("truncated to a trailer's size", good[..20].to_vec()),
        ("empty", vec![]),
        ("flipped in the code", {
            let mut b = good.clone();
            b[len - len / 3] ^= 0x10;
            b
        }),
        ("flipped in the checksum", {
            // The trailer: CRC-32 (4 bytes), code length (8), magic (8).
            let mut b = good.clone();
            b[len - 20] ^= 0x01;
            b
        }),
        ("flipped in the length", {
            let mut b = good.clone();
            b[len - 16] ^= 0x01;
            b
        }),
        ("trailer missing", good[..len - 20].to_vec()),
        ("longer", {
            let mut b = good.clone();
            b.extend_from_slice(b"trailing");
            b
        }),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&entry, &bytes).unwrap();
        let p = host.load("test-injector", TEST_INJECTOR).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(p.cache, CacheOutcome::Repaired, "{what}");
        assert_host_still_works(&host, &p);
        assert_eq!(std::fs::read(&entry).unwrap().len(), len, "{what}: the entry was not rewritten");
        assert_eq!(host.load("test-injector", TEST_INJECTOR).unwrap().cache, CacheOutcome::Hit, "{what}");
    }
}

#[test]
fn no_cache_dir_compiles_every_time() {
    let host = PluginHost::new(HostConfig::default()).unwrap();
    assert!(host.compile_cache().entry_path("00").is_none());
    for _ in 0..2 {
        assert_eq!(host.load("test-injector", TEST_INJECTOR).unwrap().cache, CacheOutcome::Compiled);
    }
}

#[test]
fn builtins_load_with_their_kinds() {
    let host = hostile_host();
    let want = [
        ("dockerfile", PluginKind::Frontend),
        ("buildah-script", PluginKind::Frontend),
        ("proxy-ca", PluginKind::Injector),
        ("secrets", PluginKind::Injector),
        ("oci-archive", PluginKind::Exporter),
        ("sif", PluginKind::Exporter),
    ];
    let components = kiln_builtins::components();
    assert_eq!(components.len(), want.len());
    for (name, kind) in want {
        let (_, bytes) = components.iter().find(|(pkg, _)| pkg.strip_prefix("kiln-plugin-") == Some(name)).unwrap();
        let p = host.load(name, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((p.info.name.as_str(), p.kind), (name, kind));
        assert!(p.imports.iter().all(|i| i.starts_with("kiln:plugin/")), "{name}: {:?}", p.imports);
        assert!(!p.info.version.is_empty() && !p.info.description.is_empty(), "{name}: {:?}", p.info);
    }
}
