//! Shared pieces of the plugin tests: the test plugin components built by `build.rs`, a plugin
//! host configured for hostile guests, request builders, and a per-thread heap meter.
#![allow(dead_code)]

pub mod alloc;

use kiln_plugin_host::{FrontendRequest, HostConfig, PluginHost, StepInfo};
use std::path::PathBuf;
use std::time::Duration;

/// Test plugin components (`TEST_INJECTOR`, `TEST_FRONTEND`, `TEST_EXPORTER`,
/// `TEST_WASI_IMPORTER`) and their files (`…_PATH`).
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/test_plugins.rs"));
}

/// The deadline of the runaway-loop test.
pub const DEADLINE: Duration = Duration::from_millis(300);
/// The deadline of the other hostile-plugin tests: generous, since this machine is shared and
/// copying a 100 MiB answer can take a while there.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The linear memory the hostile-plugin tests give each call.
pub const MEMORY_LIMIT: usize = 256 << 20;

/// A compile cache shared by the tests (entries are keyed by digest and engine, written
/// atomically), kept in cargo's scratch directory for integration tests so runs reuse it.
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

/// A host with a 256 MiB memory cap and a 30 s deadline, caching in a shared directory.
pub fn hostile_host() -> PluginHost {
    host_with(TIMEOUT)
}

/// The same with a 300 ms deadline.
pub fn deadline_host() -> PluginHost {
    host_with(DEADLINE)
}

fn host_with(timeout: Duration) -> PluginHost {
    let config = HostConfig { cache_dir: Some(shared_cache()), memory_limit: MEMORY_LIMIT, timeout, ..HostConfig::default() };
    PluginHost::new(config).expect("starting the plugin host")
}

/// An injector request for step 3 of stage 1 running `sh -c true`, with `options`.
pub fn step(options: &[(&str, &str)]) -> StepInfo {
    StepInfo {
        stage: 1,
        index: 3,
        argv: vec!["/bin/sh".into(), "-c".into(), "true".into()],
        requested: vec![],
        options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        files: vec![],
    }
}

/// A frontend request for `Kilnfile` with `build_args`.
pub fn request(build_args: &[(&str, &str)]) -> FrontendRequest {
    FrontendRequest {
        entry_file: "Kilnfile".into(),
        source: b"FROM scratch\n".to_vec(),
        target: None,
        build_args: build_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        platform: "linux/amd64".into(),
    }
}

/// sha256 of `bytes` as "sha256:<hex>".
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
