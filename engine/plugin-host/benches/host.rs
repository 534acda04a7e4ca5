//! Benchmark of the plugin host (`cargo bench -p kiln-plugin-host`): cold compile, cached load
//! and instantiate + one call for every built-in plugin, and bytes per second through blob
//! handles (a test exporter moving a 1 GiB sparse file in 64 KiB chunks). Prints tables with the
//! targets next to the numbers.

use kiln_plugin_host::{CacheOutcome, ExportImage, ExportLayer, HostConfig, Plugin, PluginHost, types};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Target: a cached load plus an instantiation and one call.
const LOAD_TARGET: Duration = Duration::from_millis(2);
/// Target: bytes per second through handles.
const THROUGHPUT_TARGET: f64 = 5e9;
/// Bytes moved through the handles (`cargo bench`).
const BLOB_SIZE: u64 = 1 << 30;
/// Bytes moved when the benchmark runs as a smoke test (`cargo test --benches`).
const SMOKE_BLOB_SIZE: u64 = 16 << 20;
/// Bytes per `read-at`.
const CHUNK: u32 = 64 << 10;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn builtin_table(runs: usize) {
    let cache = tempfile::tempdir().expect("cache dir");
    let cold = PluginHost::new(HostConfig::default()).expect("host");
    let cached = PluginHost::new(HostConfig { cache_dir: Some(cache.path().to_path_buf()), ..HostConfig::default() }).expect("host");
    println!("Built-in plugins (median of repeated runs; cached load includes instantiate + about())");
    println!(
        "{:<16} {:>8} {:>14} {:>15} {:>20} {:>22}",
        "PLUGIN", "KiB", "COLD COMPILE ms", "CACHED LOAD ms", "INSTANTIATE+CALL ms", "TARGET < 2 ms (load)"
    );
    for (pkg, bytes) in kiln_builtins::components() {
        let name = pkg.strip_prefix("kiln-plugin-").unwrap_or(pkg);
        let (p, cold_time) = time(|| cold.load(name, bytes).expect("cold load"));
        assert_eq!(p.cache, CacheOutcome::Compiled);
        let first = cached.load(name, bytes).expect("filling the cache");
        assert_eq!(first.cache, CacheOutcome::Compiled);
        let mut loads = Vec::new();
        let mut plugin: Option<Plugin> = None;
        for _ in 0..runs {
            let (p, t) = time(|| cached.load(name, bytes).expect("cached load"));
            assert_eq!(p.cache, CacheOutcome::Hit);
            loads.push(t);
            plugin = Some(p);
        }
        let plugin = plugin.unwrap();
        let mut calls = Vec::new();
        for _ in 0..runs * 10 {
            calls.push(time(|| cached.about(&plugin).expect("about")).1);
        }
        let load = median(loads);
        println!(
            "{:<16} {:>8} {:>14} {:>15} {:>20} {:>22}",
            name,
            bytes.len() / 1024,
            ms(cold_time),
            ms(load),
            ms(median(calls)),
            verdict(load < LOAD_TARGET)
        );
    }
    println!();
}

fn descriptor(media_type: &str, size: u64) -> types::Descriptor {
    types::Descriptor { media_type: media_type.into(), digest: format!("sha256:{}", "0".repeat(64)), size, annotations: vec![] }
}

fn throughput_table(size: u64) {
    let root = repo_root();
    let built =
        kiln_wasm_build::build_components(&root.join("tests/plugins"), &["kiln-test-exporter"], &root.join("target/wasm-test-guests"))
            .expect("building the test exporter");
    let host = PluginHost::new(HostConfig { timeout: Duration::from_secs(600), ..HostConfig::default() }).expect("host");
    let plugin = host.load("test-exporter", &built[0].component).expect("loading the test exporter");
    // tmpfs when there is one: the numbers are about the handles, not the disk.
    let scratch = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = tempfile::tempdir_in(&scratch).expect("scratch dir");
    let blob = dir.path().join("sparse-1GiB");
    std::fs::File::create(&blob).and_then(|f| f.set_len(size)).expect("creating the sparse blob");
    let image = ExportImage {
        names: vec![],
        manifest_json: b"{}".to_vec(),
        manifest_descriptor: descriptor("application/vnd.oci.image.manifest.v1+json", 2),
        config_json: b"{}".to_vec(),
        config_descriptor: descriptor("application/vnd.oci.image.config.v1+json", 2),
        layers: vec![ExportLayer { descriptor: descriptor("application/octet-stream", size), diff_id: String::new(), path: blob }],
        timestamp: None,
    };
    println!(
        "Bytes through blob handles: {} MiB sparse file, {} KiB chunks, writer output on {}",
        size >> 20,
        CHUNK >> 10,
        scratch.display()
    );
    println!("{:<48} {:>9} {:>10} {:>18}", "PATH", "SECONDS", "GB/s", "TARGET >= 5 GB/s");
    let modes = [
        ("read", "read-at into the plugin"),
        ("write", "read-at + write (host hashes at finish)"),
        ("copy-from", "copy-from (host copies, hashes at finish)"),
    ];
    for (mode, what) in modes {
        let out = dir.path().join(format!("out-{mode}"));
        let opts = vec![("mode".to_string(), mode.to_string()), ("chunk".to_string(), CHUNK.to_string())];
        let (r, t) = time(|| host.export(&plugin, &image, "bench", &opts, &out));
        let (desc, _) = r.unwrap_or_else(|e| panic!("{mode}: {e}"));
        let seen = desc.annotations.iter().find(|(k, _)| k == "kiln.test.seen").map(|(_, v)| v.clone());
        assert_eq!(seen.as_deref(), Some(size.to_string().as_str()), "{mode}");
        let _ = std::fs::remove_file(&out);
        let rate = size as f64 / t.as_secs_f64();
        println!("{:<48} {:>9.3} {:>10.2} {:>18}", what, t.as_secs_f64(), rate / 1e9, verdict(rate >= THROUGHPUT_TARGET));
    }
    // What the writer does with every byte, without any plugin: the bound for the paths above.
    let chunk = vec![0u8; CHUNK as usize];
    let (_, t) = time(|| {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for _ in 0..size / CHUNK as u64 {
            h.update(&chunk);
        }
        h.finalize()
    });
    println!(
        "{:<48} {:>9.3} {:>10.2} {:>18}",
        "reference: sha256 alone (host, no plugin)",
        t.as_secs_f64(),
        size as f64 / t.as_secs_f64() / 1e9,
        "-"
    );
    let out = dir.path().join("out-reference");
    let (_, t) = time(|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&out).expect("reference output");
        for _ in 0..size / CHUNK as u64 {
            f.write_all(&chunk).expect("writing the reference output");
        }
    });
    let _ = std::fs::remove_file(&out);
    println!(
        "{:<48} {:>9.3} {:>10.2} {:>18}",
        "reference: file writes alone (host, no plugin)",
        t.as_secs_f64(),
        size as f64 / t.as_secs_f64() / 1e9,
        "-"
    );
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) run a quick smoke pass.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if args.iter().any(|a| a == "--bench") {
        builtin_table(20);
        throughput_table(BLOB_SIZE);
    } else {
        builtin_table(2);
        throughput_table(SMOKE_BLOB_SIZE);
    }
}
