//! Exports checked by the tools users will read them with: skopeo, umoci and shared/tools/ocitree.py.
//! Each test needs skopeo and umoci on PATH and says so (and passes) when they are missing.

mod common;

use common::*;
use kiln_plugin_oci_archive::export::{Written, export};
use kiln_plugin_oci_archive::model::{Descriptor, Image, Layer};
use std::path::{Path, PathBuf};
use std::process::Command;

const OCITREE: &str = "/work/shared/tools/ocitree.py";

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn tools_present(test: &str) -> bool {
    let ok = have("skopeo") && have("umoci");
    if !ok {
        eprintln!("{test}: skopeo or umoci missing, nothing checked");
    }
    ok
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OCI layout `dir/lay` with image `t1`: two gzip layers made by umoci, plus an env and a label.
fn umoci_image(dir: &Path) -> PathBuf {
    let lay = dir.join("lay");
    let root = dir.join("r");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hello"), "hi\n").unwrap();
    std::fs::write(root.join("two"), "two\n").unwrap();
    sh(Command::new("umoci").args(["init", "--layout"]).arg(&lay));
    let img = format!("{}:t1", lay.display());
    sh(Command::new("umoci").args(["new", "--image", &img]));
    sh(Command::new("umoci").args(["insert", "--image", &img]).arg(root.join("etc")).arg("/etc"));
    sh(Command::new("umoci").args(["insert", "--image", &img]).arg(root.join("two")).arg("/two"));
    sh(Command::new("umoci").args(["config", "--image", &img, "--config.env", "A=<b>&c", "--config.label", "x=y"]));
    lay
}

/// An OCI layout `dir/syn` with image `t1` built here: complete layer tars (umoci's lack the
/// end-of-archive blocks, which Python's tarfile, used by ocitree, refuses).
fn synthetic_image(dir: &Path) -> PathBuf {
    let lay = dir.join("syn");
    let layers = vec![layer_tar(&[("etc/hello", b"hi\n"), ("usr/bin/tool", &vec![5u8; 200_000])]), layer_tar(&[("two", b"two\n")])];
    let (image, blobs) = image(&layers, true, &[]);
    let sha = lay.join("blobs/sha256");
    std::fs::create_dir_all(&sha).unwrap();
    let put = |digest: &str, data: &[u8]| std::fs::write(sha.join(digest.strip_prefix("sha256:").unwrap()), data).unwrap();
    put(&image.manifest.digest, &image.manifest_json);
    put(&image.config.digest, &image.config_json);
    for (l, b) in image.layers.iter().zip(&blobs) {
        put(&l.descriptor.digest, b);
    }
    std::fs::write(lay.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": image.manifest.media_type, "digest": image.manifest.digest, "size": image.manifest.size,
        "annotations": {"org.opencontainers.image.ref.name": "t1"}}]});
    std::fs::write(lay.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    lay
}

/// The image `tag` of the layout at `lay`, and its layer blobs.
fn load_layout(lay: &Path, tag: &str, names: &[&str]) -> (Image, Vec<Vec<u8>>) {
    let blob = |digest: &str| std::fs::read(lay.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(lay.join("index.json")).unwrap()).unwrap();
    let entry =
        index["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag).unwrap();
    let desc = |v: &serde_json::Value| Descriptor {
        media_type: v["mediaType"].as_str().unwrap().into(),
        digest: v["digest"].as_str().unwrap().into(),
        size: v["size"].as_u64().unwrap(),
        annotations: vec![],
    };
    let manifest_desc = desc(entry);
    let manifest_json = blob(&manifest_desc.digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_json).unwrap();
    let config_desc = desc(&manifest["config"]);
    let config_json = blob(&config_desc.digest);
    let config: serde_json::Value = serde_json::from_slice(&config_json).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let mut layers = Vec::new();
    let mut blobs = Vec::new();
    for (l, d) in manifest["layers"].as_array().unwrap().iter().zip(diff_ids) {
        let descriptor = desc(l);
        blobs.push(blob(&descriptor.digest));
        layers.push(Layer { descriptor, diff_id: d.as_str().unwrap().into() });
    }
    let image = Image {
        names: names.iter().map(|s| s.to_string()).collect(),
        manifest_json,
        manifest: manifest_desc,
        config_json,
        config: config_desc,
        layers,
        timestamp: None,
    };
    (image, blobs)
}

fn export_to(image: &Image, blobs: &[Vec<u8>], dest: &str, scheme: &str, file: &Path) -> Written {
    let mut io = MemIo::new(blobs.to_vec());
    let w = export(&mut io, image, dest, &opts(scheme)).unwrap();
    std::fs::write(file, &io.out).unwrap();
    w
}

#[test]
fn docker_archive_is_byte_identical_to_skopeos() {
    if !tools_present("docker_archive_is_byte_identical_to_skopeos") {
        return;
    }
    let dir = scratch("docker-identical");
    for lay in [umoci_image(&dir), synthetic_image(&dir)] {
        let theirs = dir.join("skopeo.tar");
        let _ = std::fs::remove_file(&theirs);
        sh(Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:t1", lay.display()))
            .arg(format!("docker-archive:{}:docker.io/library/myimg:v1", theirs.display())));
        let (image, blobs) = load_layout(&lay, "t1", &[]);
        let ours = dir.join("kiln.tar");
        export_to(&image, &blobs, "kiln.tar:myimg:v1", "docker-archive", &ours);
        let (a, b) = (std::fs::read(&theirs).unwrap(), std::fs::read(&ours).unwrap());
        if a != b {
            let la = sh(Command::new("tar").arg("tvf").arg(&theirs));
            let lb = sh(Command::new("tar").arg("tvf").arg(&ours));
            panic!("{}: archives differ ({} vs {} bytes)\nskopeo:\n{la}\nkiln:\n{lb}", lay.display(), a.len(), b.len());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn docker_archive_reads_back_with_skopeo() {
    if !tools_present("docker_archive_reads_back_with_skopeo") {
        return;
    }
    let dir = scratch("docker-read");
    let lay = synthetic_image(&dir);
    let (image, blobs) = load_layout(&lay, "t1", &["localhost/app:1.0"]);
    let ours = dir.join("kiln.tar");
    export_to(&image, &blobs, "kiln.tar", "docker-archive", &ours);
    let inspect = sh(Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", ours.display())));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(v["Labels"]["a"], "<b>");
    assert!(v["Env"].as_array().unwrap().iter().any(|e| e == "PATH=/usr/bin:/bin"));
    // Round trip to an OCI layout (skopeo checks every layer against its diff ID) and compare trees.
    let back = dir.join("back");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("docker-archive:{}:localhost/app:1.0", ours.display()))
        .arg(format!("oci:{}:back", back.display())));
    if Path::new(OCITREE).exists() {
        sh(Command::new("python3")
            .arg(OCITREE)
            .args(["diff", "--ignore-key", "meta"])
            .arg(format!("{}:t1", lay.display()))
            .arg(format!("{}:back", back.display())));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn oci_archive_reads_back_with_skopeo_and_umoci() {
    if !tools_present("oci_archive_reads_back_with_skopeo_and_umoci") {
        return;
    }
    let dir = scratch("oci-read");
    let lay = synthetic_image(&dir);
    let (mut image, blobs) = load_layout(&lay, "t1", &[]);
    image.timestamp = Some(1_600_000_000);
    let ours = dir.join("kiln.tar");
    let Written::Manifest(desc) = export_to(&image, &blobs, "kiln.tar:myimg:v1", "oci-archive", &ours) else {
        panic!("expected a manifest descriptor")
    };
    let inspect = sh(Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}:myimg:v1", ours.display())));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Digest"], desc.digest.as_str());
    assert_eq!(v["Labels"]["a"], "<b>");

    // Unpacked like the `oci:` scheme: the layout umoci and skopeo see is the source image.
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    sh(Command::new("tar").arg("xf").arg(&ours).arg("-C").arg(&unpacked));
    let bundle = dir.join("bundle");
    sh(Command::new("umoci").args(["unpack", "--rootless", "--image"]).arg(format!("{}:myimg:v1", unpacked.display())).arg(&bundle));
    assert_eq!(std::fs::read(bundle.join("rootfs/etc/hello")).unwrap(), b"hi\n");
    assert_eq!(std::fs::read(bundle.join("rootfs/two")).unwrap(), b"two\n");
    assert_eq!(std::fs::read(bundle.join("rootfs/usr/bin/tool")).unwrap(), vec![5u8; 200_000]);
    let copy = dir.join("copy");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci-archive:{}:myimg:v1", ours.display()))
        .arg(format!("oci:{}:c", copy.display())));
    if Path::new(OCITREE).exists() {
        sh(Command::new("python3").arg(OCITREE).args(["diff", "--ignore-key", "meta"]).arg(format!("{}:t1", lay.display())).arg(&ours));
        sh(Command::new("python3").arg(OCITREE).args(["summary", "--no-files", "--ref", "myimg:v1"]).arg(&ours));
    }
    if have("oci-image-tool") {
        // (oci-image-tool cannot walk tar files, skopeo's included: check the unpacked layout.)
        sh(Command::new("oci-image-tool").args(["validate", "--type", "image", "--ref", "name=myimg:v1"]).arg(&unpacked));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
