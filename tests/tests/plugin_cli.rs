//! `kiln plugin list/inspect/install/remove` driven through the built `kiln` binary (build it
//! first: `cargo build -p kiln-cli`), with a temporary `--root` per test.

mod common;

use common::plugins::{TEST_INJECTOR, TEST_INJECTOR_PATH, TEST_WASI_IMPORTER};
use common::sha256;
use kiln_tests::{Kiln, Registry, Skopeo, Variant};
use serde_json::Value;
use std::path::Path;

/// The built-ins: name and kind.
const BUILTINS: &[(&str, &str)] = &[
    ("dockerfile", "frontend"),
    ("buildah-script", "frontend"),
    ("proxy-ca", "injector"),
    ("secrets", "injector"),
    ("oci-archive", "exporter"),
    ("sif", "exporter"),
];

fn list_json(kiln: &Kiln) -> Vec<Value> {
    let out = kiln.run(["plugin", "list", "--format", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("plugin list --format json is not JSON ({e}):\n{out}"));
    v.as_array().unwrap_or_else(|| panic!("not a JSON array:\n{out}")).clone()
}

fn find<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|e| e["name"] == name)
}

/// Copy the test injector to `dir/test-injector.wasm` (an ordinary file a user would have).
fn injector_file(dir: &Path) -> std::path::PathBuf {
    let f = dir.join("test-injector.wasm");
    std::fs::write(&f, TEST_INJECTOR).unwrap();
    f
}

#[test]
fn list_shows_the_builtins_with_kind_and_digest() {
    let kiln = Kiln::new();
    let table = kiln.run(["plugin", "list"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["NAME", "KIND", "VERSION", "DIGEST", "SOURCE"] {
        assert!(header.contains(col), "{header}");
    }
    for (name, kind) in BUILTINS {
        let line = table.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("{name} missing:\n{table}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], *kind, "{line}");
        let digest = cols.iter().find(|c| c.starts_with("sha256:")).unwrap_or_else(|| panic!("no digest: {line}"));
        let hex = &digest["sha256:".len()..];
        assert!(hex.len() >= 12 && hex.chars().all(|c| c.is_ascii_hexdigit()), "{line}");
        assert_eq!(cols.last(), Some(&"builtin"), "{line}");
    }

    let list = list_json(&kiln);
    assert_eq!(list.len(), BUILTINS.len(), "{list:?}");
    for (name, kind) in BUILTINS {
        let e = find(&list, name).unwrap_or_else(|| panic!("{name} missing from {list:?}"));
        assert_eq!(e["kind"], *kind);
        assert_eq!(e["source"]["type"], "builtin");
        // The digest is the embedded component's sha256.
        let (_, bytes) = kiln_builtins::components().iter().find(|(p, _)| p.strip_prefix("kiln-plugin-") == Some(name)).unwrap();
        assert_eq!(e["digest"], sha256(bytes), "{name}");
        assert!(!e["version"].as_str().unwrap().is_empty());
    }
    // The table's short digest is the JSON digest's prefix.
    let docker = find(&list, "dockerfile").unwrap()["digest"].as_str().unwrap().to_string();
    assert!(table.contains(&docker[.."sha256:".len() + 12]), "{table}");
}

#[test]
fn unknown_list_format_is_an_error() {
    let kiln = Kiln::new();
    let err = kiln.run_fail(["plugin", "list", "--format", "yaml"]);
    assert!(err.contains("yaml"), "{err}");
}

#[test]
fn inspect_shows_world_imports_and_exports() {
    let kiln = Kiln::new();
    let out = kiln.run(["plugin", "inspect", "dockerfile"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(v["name"], "dockerfile");
    assert_eq!(v["kind"], "frontend");
    assert_eq!(v["world"], "kiln:plugin/frontend-plugin@0.1.0");
    assert_eq!(v["source"]["type"], "builtin");
    let strings = |k: &str| -> Vec<String> { v[k].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect() };
    let imports = strings("imports");
    let exports = strings("exports");
    assert!(imports.contains(&"kiln:plugin/host@0.1.0".to_string()), "{imports:?}");
    assert!(imports.iter().all(|i| i.starts_with("kiln:plugin/")), "{imports:?}");
    assert!(exports.contains(&"kiln:plugin/frontend@0.1.0".to_string()), "{exports:?}");
    assert!(exports.contains(&"kiln:plugin/about@0.1.0".to_string()), "{exports:?}");
    let err = kiln.run_fail(["plugin", "inspect", "no-such-plugin"]);
    assert!(err.contains("no-such-plugin"), "{err}");
}

#[test]
fn install_from_file_list_inspect_remove() {
    let kiln = Kiln::new();
    let dir = tempfile::tempdir().unwrap();
    let file = injector_file(dir.path());
    let digest = sha256(TEST_INJECTOR);
    let out = kiln.run(["plugin", "install", file.to_str().unwrap()]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["test-injector", "injector", "0.1.0", digest.as_str()], "{out}");

    let list = list_json(&kiln);
    assert_eq!(list.len(), BUILTINS.len() + 1);
    let e = find(&list, "test-injector").expect("installed plugin listed");
    assert_eq!(e["kind"], "injector");
    assert_eq!(e["digest"], digest);
    assert_eq!(e["source"]["type"], "file");
    assert_eq!(e["source"]["from"], file.canonicalize().unwrap().display().to_string());
    let table = kiln.run(["plugin", "list"]);
    let line = table.lines().find(|l| l.starts_with("test-injector")).unwrap_or_else(|| panic!("{table}"));
    assert!(line.ends_with("file"), "{line}");
    assert!(line.contains(&digest[..19]), "{line}");

    // The catalog keeps its own copy: the original file may go away.
    std::fs::remove_file(&file).unwrap();
    let stored = kiln.root().join("plugins").join(format!("{}.wasm", &digest["sha256:".len()..]));
    assert_eq!(std::fs::read(&stored).unwrap(), TEST_INJECTOR);
    let v: Value = serde_json::from_str(&kiln.run(["plugin", "inspect", "test-injector"])).unwrap();
    assert_eq!(v["world"], "kiln:plugin/mount-injector-plugin@0.1.0");
    assert_eq!(v["digest"], digest);
    // By digest too.
    let v: Value = serde_json::from_str(&kiln.run(["plugin", "inspect", digest.as_str()])).unwrap();
    assert_eq!(v["name"], "test-injector");

    let out = kiln.run(["plugin", "remove", "test-injector"]);
    assert_eq!(out.trim(), digest);
    assert!(find(&list_json(&kiln), "test-injector").is_none());
    assert!(!stored.exists(), "{} left behind", stored.display());
    let err = kiln.run_fail(["plugin", "remove", "test-injector"]);
    assert!(err.contains("test-injector"), "{err}");
}

#[test]
fn install_by_path_of_the_build_output() {
    // The component straight from the build directory, as a developer would install it.
    let kiln = Kiln::new();
    kiln.run(["plugin", "install", TEST_INJECTOR_PATH]);
    let e = find(&list_json(&kiln), "test-injector").cloned().expect("installed");
    assert_eq!(e["source"]["from"], Path::new(TEST_INJECTOR_PATH).canonicalize().unwrap().display().to_string());
}

#[test]
fn install_with_wrong_digest_is_refused() {
    let kiln = Kiln::new();
    let dir = tempfile::tempdir().unwrap();
    let file = injector_file(dir.path());
    let wrong = format!("sha256:{}", "0".repeat(64));
    for bad in ["sha256:wrong", wrong.as_str()] {
        let err = kiln.run_fail(["plugin", "install", file.to_str().unwrap(), "--digest", bad]);
        assert!(err.contains("digest mismatch") && err.contains(bad), "{err}");
    }
    assert!(find(&list_json(&kiln), "test-injector").is_none(), "installed despite the wrong digest");
    let right = sha256(TEST_INJECTOR);
    kiln.run(["plugin", "install", file.to_str().unwrap(), "--digest", right.as_str()]);
    assert!(find(&list_json(&kiln), "test-injector").is_some());
}

#[test]
fn install_of_a_wasi_plugin_is_refused() {
    let kiln = Kiln::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wasi.wasm");
    std::fs::write(&file, TEST_WASI_IMPORTER).unwrap();
    let err = kiln.run_fail(["plugin", "install", file.to_str().unwrap()]);
    assert!(err.contains("wasi:filesystem/") && err.contains("refused"), "{err}");
    assert_eq!(list_json(&kiln).len(), BUILTINS.len());
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, "not wasm").unwrap();
    let err = kiln.run_fail(["plugin", "install", junk.to_str().unwrap()]);
    assert!(err.contains("not a WebAssembly binary"), "{err}");
    let err = kiln.run_fail(["plugin", "install", "/nonexistent/p.wasm"]);
    assert!(err.contains("/nonexistent/p.wasm"), "{err}");
}

#[test]
fn builtins_cannot_be_removed() {
    let kiln = Kiln::new();
    let err = kiln.run_fail(["plugin", "remove", "dockerfile"]);
    assert!(err.contains("built-in plugins cannot be removed"), "{err}");
    assert!(find(&list_json(&kiln), "dockerfile").is_some());
}

/// Write `component` as a Wasm OCI artifact (config `application/vnd.wasm.config.v0+json`, one
/// `application/wasm` layer) in an OCI layout at `dir`, tagged `tag`.
fn wasm_artifact_layout(dir: &Path, component: &[u8], tag: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = sha256(bytes);
        std::fs::write(blobs.join(&d["sha256:".len()..]), bytes).unwrap();
        (d, bytes.len())
    };
    let (layer, layer_size) = put(component);
    let (config, config_size) = put(br#"{"architecture":"wasm","os":"wasip2"}"#);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/wasm", "digest": layer, "size": layer_size}],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let (m, m_size) = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": m_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    m
}

#[test]
fn install_from_registry() {
    let reg = Registry::start(Variant::Plain);
    let layout = tempfile::tempdir().unwrap();
    wasm_artifact_layout(layout.path(), TEST_INJECTOR, "v1");
    Skopeo::new().copy_to(&format!("oci:{}:v1", layout.path().display()), &reg, "plugins/test-injector:v1", &[]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&reg);
    let reference = reg.reference("plugins/test-injector:v1");
    let src = format!("docker://{reference}");
    let wrong = format!("sha256:{}", "1".repeat(64));
    let err = kiln.run_fail(["plugin", "install", "--tls-verify=false", "--digest", wrong.as_str(), src.as_str()]);
    assert!(err.contains("digest mismatch"), "{err}");
    let out = kiln.run(["plugin", "install", "--tls-verify=false", src.as_str()]);
    assert!(out.contains("test-injector") && out.contains(&sha256(TEST_INJECTOR)), "{out}");
    let list = list_json(&kiln);
    let e = find(&list, "test-injector").expect("installed from the registry");
    assert_eq!(e["source"]["type"], "oci");
    assert_eq!(e["source"]["from"], reference);
    kiln.run(["plugin", "remove", "test-injector"]);
    assert!(find(&list_json(&kiln), "test-injector").is_none());
}

#[test]
fn listing_into_a_closed_pipe_ends_quietly() {
    // `kiln plugin list | head -0`: the reader is gone before kiln prints its first line.
    let kiln = Kiln::new();
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = kiln
        .cmd(["plugin", "list"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run kiln plugin list");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "kiln panicked on a closed stdout:\n{stderr}");
    assert_eq!(out.status.code(), Some(141), "status on a closed stdout; stderr:\n{stderr}");
}
