//! Builds the test plugins (`plugins/`, a separate wasm32 workspace) with `kiln-wasm-build`,
//! encodes them as components in OUT_DIR and generates `test_plugins.rs` there: one
//! `pub const NAME: &[u8]` per plugin (its component bytes) plus `pub const NAME_PATH: &str`
//! (the component file), for tests that hand a file to the `kiln` binary; and
//! `EXAMPLE_CORP_INJECTOR_PATH`, the example injector of `examples/corp-injector`.

use std::path::PathBuf;

/// Test plugins by cargo package, and the constant each becomes.
const PLUGINS: &[(&str, &str)] = &[
    ("kiln-test-injector", "TEST_INJECTOR"),
    ("kiln-test-frontend", "TEST_FRONTEND"),
    ("kiln-test-exporter", "TEST_EXPORTER"),
    ("kiln-test-wasi-importer", "TEST_WASI_IMPORTER"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("..").canonicalize().unwrap();
    let guests = manifest.join("plugins");
    kiln_wasm_build::rerun_if_changed(&[guests.clone(), root.join("sdk"), root.join("wit")]);
    println!("cargo:rerun-if-env-changed=KILN_TEST_GUEST_TARGET_DIR");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir =
        std::env::var_os("KILN_TEST_GUEST_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target/wasm-test-guests"));
    let packages: Vec<&str> = PLUGINS.iter().map(|(p, _)| *p).collect();
    let built = kiln_wasm_build::build_components(&guests, &packages, &target_dir)
        .unwrap_or_else(|e| panic!("building the test plugins in {}: {e:#}", guests.display()));
    let mut code = String::from("// Test plugin components built by build.rs.\n");
    for (b, (_, constant)) in built.iter().zip(PLUGINS) {
        let file = out.join(format!("{}.component.wasm", b.package));
        std::fs::write(&file, &b.component).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        let file = file.display().to_string();
        code.push_str(&format!(
            "/// The `{pkg}` component.\npub const {constant}: &[u8] = include_bytes!({file:?});\n\
             /// Where the `{pkg}` component file is.\npub const {constant}_PATH: &str = {file:?};\n",
            pkg = b.package
        ));
    }
    // The example third-party injector, built from its own workspace as its README says, so that
    // the tests install what a user would.
    let corp = root.join("examples/corp-injector");
    kiln_wasm_build::rerun_if_changed(&[corp.join("src"), corp.join("Cargo.toml")]);
    let built = kiln_wasm_build::build_components(&corp, &["corp-injector"], &target_dir.join("examples"))
        .unwrap_or_else(|e| panic!("building {}: {e:#}", corp.display()));
    let file = out.join("corp-injector.component.wasm");
    std::fs::write(&file, &built[0].component).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    code.push_str(&format!(
        "/// Where the `examples/corp-injector` component file is.\npub const EXAMPLE_CORP_INJECTOR_PATH: &str = {:?};\n",
        file.display().to_string()
    ));
    std::fs::write(out.join("test_plugins.rs"), code).unwrap();
}
