//! Builds the built-in plugins (../../plugins) for wasm32, encodes them as components and
//! writes them to OUT_DIR, where `src/lib.rs` embeds them.

use sha2::Digest as _;
use std::path::PathBuf;

/// The built-in plugins, by cargo package.
const PLUGINS: &[&str] = &[
    "kiln-plugin-dockerfile",
    "kiln-plugin-buildah-script",
    "kiln-plugin-proxy-ca",
    "kiln-plugin-secrets",
    "kiln-plugin-oci-archive",
    "kiln-plugin-sif",
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..").canonicalize().unwrap();
    let guests = root.join("plugins");
    // The plugins' sources and every local crate they build with.
    kiln_wasm_build::rerun_if_changed(&[
        guests.clone(),
        root.join("sdk"),
        root.join("wit"),
        root.join("engine/mountspec"),
    ]);
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = std::env::var_os("KILN_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/wasm-guests"));
    let built = kiln_wasm_build::build_components(&guests, PLUGINS, &target_dir)
        .unwrap_or_else(|e| panic!("building built-in plugins: {e:#}"));
    let mut list = String::from(
        "/// Built-in plugins: (package, component bytes).\npub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    let mut digests = String::from(
        "/// Built-in plugins: (package, sha256 of the component, hex).\npub static DIGESTS: &[(&str, &str)] = &[\n",
    );
    for b in built {
        let file = out.join(format!("{}.component.wasm", b.package));
        std::fs::write(&file, &b.component).unwrap();
        list.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            b.package,
            file.display().to_string()
        ));
        let hex = hex::encode(sha2::Sha256::digest(&b.component));
        digests.push_str(&format!("    ({:?}, {hex:?}),\n", b.package));
    }
    list.push_str("];\n");
    digests.push_str("];\n");
    list.push_str(&digests);
    std::fs::write(out.join("builtins.rs"), list).unwrap();
}
