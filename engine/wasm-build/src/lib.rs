//! Builds guest crates for `wasm32-unknown-unknown` and encodes each core module as a
//! WebAssembly component. Used by build scripts (`kiln-builtins`, the test plugins), so that
//! the host only ever loads components and a plain `cargo build` produces everything.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target guests are built for: no WASI, so plugins can import nothing kiln does not give.
pub const GUEST_TARGET: &str = "wasm32-unknown-unknown";

/// One built guest: its package name and the encoded component.
pub struct BuiltComponent {
    /// The cargo package name (e.g. `kiln-plugin-dockerfile`).
    pub package: String,
    /// The component's bytes.
    pub component: Vec<u8>,
}

/// Build `packages` of the guest workspace at `workspace` in release mode, each in its own cargo
/// invocation (so SDK features never unify across plugins), into `target_dir`, and encode them.
pub fn build_components(workspace: &Path, packages: &[&str], target_dir: &Path) -> Result<Vec<BuiltComponent>> {
    ensure_target();
    let mut out = Vec::new();
    for pkg in packages {
        cargo_build(workspace, pkg, target_dir)?;
        let core_path = target_dir
            .join(GUEST_TARGET)
            .join("release")
            .join(format!("{}.wasm", pkg.replace('-', "_")));
        let core = std::fs::read(&core_path).with_context(|| format!("reading {}", core_path.display()))?;
        let component = encode_component(&core).with_context(|| format!("encoding {pkg} as a component"))?;
        out.push(BuiltComponent { package: (*pkg).to_string(), component });
    }
    Ok(out)
}

/// Encode a core module built with wit-bindgen into a component (a component is returned as is).
pub fn encode_component(core: &[u8]) -> Result<Vec<u8>> {
    if is_component(core) {
        return Ok(core.to_vec());
    }
    wit_component::ComponentEncoder::default().module(core)?.validate(true).encode()
}

/// Whether `bytes` is a component rather than a core module (layer field of the preamble).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

/// Add the guest target with rustup when the toolchain lacks it (a fresh machine), so that a
/// plain `cargo build` works; without rustup the build fails later with a clear message.
fn ensure_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let present = sysroot.map(|s| Path::new(&s).join("lib/rustlib").join(GUEST_TARGET).exists()).unwrap_or(false);
    if !present {
        println!("cargo:warning=installing the {GUEST_TARGET} target with rustup (needed by kiln's built-in plugins)");
        let _ = Command::new("rustup").args(["target", "add", GUEST_TARGET]).status();
    }
}

fn cargo_build(workspace: &Path, pkg: &str, target_dir: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--quiet", "--target", GUEST_TARGET, "-p", pkg])
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build's settings are for the host; a guest build must not inherit them.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
    ] {
        cmd.env_remove(var);
    }
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("CARGO_FEATURE_") || k.starts_with("CARGO_CFG_") || k.starts_with("DEP_") {
            cmd.env_remove(k);
        }
    }
    let status = cmd.status().with_context(|| format!("running cargo for {pkg}"))?;
    if !status.success() {
        bail!(
            "building guest {pkg} for {GUEST_TARGET} failed ({status}); is the target installed? \
             (`rustup target add {GUEST_TARGET}`)"
        );
    }
    Ok(())
}

/// Tell cargo to rerun the build script when anything under these paths changes.
pub fn rerun_if_changed(paths: &[PathBuf]) {
    for p in paths {
        for entry in walk(p) {
            println!("cargo:rerun-if-changed={}", entry.display());
        }
    }
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
