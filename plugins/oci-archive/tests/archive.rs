//! Whole exports into memory, read back with an independent tar reader.

mod common;

use common::*;
use kiln_plugin_oci_archive::export::{Error, Written, export};
use kiln_plugin_oci_archive::model::Image;

fn run(image: &Image, blobs: Vec<Vec<u8>>, dest: &str, scheme: &str) -> (Result<Written, Error>, MemIo) {
    let mut io = MemIo::new(blobs);
    let r = export(&mut io, image, dest, &opts(scheme));
    (r, io)
}

fn two_layers() -> Vec<Vec<u8>> {
    vec![layer_tar(&[("etc/hello", b"hi\n"), ("bin/tool", &vec![7u8; 300_000])]), layer_tar(&[("two", b"two\n")])]
}

#[test]
fn oci_archive_is_a_complete_image_layout() {
    let (mut image, blobs) = image(&two_layers(), true, &["localhost/app:latest"]);
    image.timestamp = Some(1_700_000_000);
    let (r, io) = run(&image, blobs.clone(), "out.tar:myimg:v1", "oci-archive");
    let Written::Manifest(desc) = r.unwrap() else { panic!("expected a manifest descriptor") };
    assert_eq!(desc.digest, image.manifest.digest);
    assert_eq!(desc.size, image.manifest.size);
    assert_eq!(desc.annotations, vec![("org.opencontainers.image.ref.name".to_string(), "myimg:v1".to_string())]);
    // Layer bodies went through copy-from, never through `write`.
    assert!(io.largest_write < blobs[0].len().min(4096), "largest write {} bytes", io.largest_write);

    let m = members(&io.out);
    let mut hexes: Vec<String> = blobs.iter().map(|b| sha256_hex(b)).collect();
    hexes.push(sha256_hex(&image.config_json));
    hexes.push(sha256_hex(&image.manifest_json));
    hexes.sort();
    let mut want = vec!["blobs/".to_string(), "blobs/sha256/".to_string()];
    want.extend(hexes.iter().map(|h| format!("blobs/sha256/{h}")));
    want.push("index.json".into());
    want.push("oci-layout".into());
    assert_eq!(m.iter().map(|e| e.path.clone()).collect::<Vec<_>>(), want);
    for e in &m {
        assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 1_700_000_000), "{}", e.path);
        if e.path.ends_with('/') {
            assert_eq!((e.kind, e.mode), (b'5', 0o755), "{}", e.path);
        } else {
            assert_eq!((e.kind, e.mode), (b'0', 0o644), "{}", e.path);
        }
        if let Some(h) = e.path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(sha256_hex(&e.data), h, "blob content matches its name");
        }
    }
    let index: serde_json::Value = serde_json::from_slice(&m[m.len() - 2].data).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"][0]["digest"], image.manifest.digest.as_str());
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "myimg:v1");
    assert_eq!(m[m.len() - 1].data, br#"{"imageLayoutVersion": "1.0.0"}"#);
}

#[test]
fn oci_and_oci_archive_write_the_same_stream() {
    let (image, blobs) = image(&two_layers(), true, &[]);
    let (a, io_a) = run(&image, blobs.clone(), "x.tar", "oci-archive");
    let (b, io_b) = run(&image, blobs, "dir", "oci");
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(io_a.out, io_b.out);
}

#[test]
fn oci_ref_defaults_to_the_first_name_and_may_be_absent() {
    let (image1, blobs) = image(&two_layers(), false, &["localhost/app:1", "other:2"]);
    let (r, _) = run(&image1, blobs.clone(), "out.tar", "oci-archive");
    let Written::Manifest(d) = r.unwrap() else { panic!() };
    assert_eq!(d.annotations, vec![("org.opencontainers.image.ref.name".to_string(), "localhost/app:1".to_string())]);

    let (image2, blobs) = image(&two_layers(), false, &[]);
    let (r, io) = run(&image2, blobs, "out.tar", "oci-archive");
    let Written::Manifest(d) = r.unwrap() else { panic!() };
    assert!(d.annotations.is_empty());
    let m = members(&io.out);
    let index = String::from_utf8(m[m.len() - 2].data.clone()).unwrap();
    assert!(!index.contains("annotations"), "{index}");
}

#[test]
fn oci_image_without_layers_is_valid() {
    let (image, blobs) = image(&[], true, &[]);
    let (r, io) = run(&image, blobs, "out.tar:empty", "oci-archive");
    assert!(r.is_ok());
    assert_eq!(members(&io.out).len(), 6, "2 dirs, config, manifest, index.json, oci-layout");
}

#[test]
fn docker_archive_matches_docker_save_layout() {
    let layers = two_layers();
    let (image, blobs) = image(&layers, true, &["localhost/app:latest"]);
    let (r, io) = run(&image, blobs, "out.tar:myimg:v1", "docker-archive");
    assert_eq!(r.unwrap(), Written::Archive);
    assert_eq!(io.patches, 2, "one header patch per layer");
    let m = members(&io.out);
    let diff: Vec<String> = layers.iter().map(|l| sha256_hex(l)).collect();
    let config_hex = sha256_hex(&image.config_json);

    assert_eq!(m[0].path, format!("{}.tar", diff[0]));
    assert_eq!(m[0].data, layers[0], "layers are stored uncompressed");
    assert_eq!(m[1].path, format!("{}.tar", diff[1]));
    assert_eq!(m[1].data, layers[1]);
    assert_eq!(m[2].path, format!("{config_hex}.json"));
    assert_eq!(m[2].data, image.config_json);
    for e in &m {
        assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 0), "{}", e.path);
        assert_eq!(e.mode, if e.kind == b'2' { 0 } else { 0o444 }, "{}", e.path);
    }

    let manifest: serde_json::Value = serde_json::from_slice(&m[m.len() - 2].data).unwrap();
    assert_eq!(m[m.len() - 2].path, "manifest.json");
    assert_eq!(manifest[0]["Config"], format!("{config_hex}.json"));
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["docker.io/library/myimg:v1", "localhost/app:latest"]));
    assert_eq!(manifest[0]["Layers"], serde_json::json!([format!("{}.tar", diff[0]), format!("{}.tar", diff[1])]));

    // Legacy layer directories: symlink to the physical layer, VERSION, json with parent links.
    let legacy: Vec<&Member> = m[3..m.len() - 2].iter().collect();
    assert_eq!(legacy.len(), 6);
    let id0 = legacy[0].path.strip_suffix("/layer.tar").unwrap().to_string();
    let id1 = legacy[3].path.strip_suffix("/layer.tar").unwrap().to_string();
    assert_eq!(legacy[0].link.as_deref(), Some(format!("../{}.tar", diff[0]).as_str()));
    assert_eq!(legacy[3].link.as_deref(), Some(format!("../{}.tar", diff[1]).as_str()));
    assert_eq!(legacy[1].path, format!("{id0}/VERSION"));
    assert_eq!(legacy[1].data, b"1.0");
    let j1: serde_json::Value = serde_json::from_slice(&legacy[5].data).unwrap();
    assert_eq!(j1["id"], id1.as_str());
    assert_eq!(j1["parent"], id0.as_str());
    assert_eq!(j1["os"], "linux");
    assert_eq!(j1["config"]["Labels"]["a"], "<b>");
    assert!(String::from_utf8_lossy(&legacy[5].data).contains(r#""a":"\u003cb\u003e""#), "Go-style HTML escaping");

    let repos: serde_json::Value = serde_json::from_slice(&m[m.len() - 1].data).unwrap();
    assert_eq!(m[m.len() - 1].path, "repositories");
    assert_eq!(repos, serde_json::json!({"docker.io/library/myimg": {"v1": id1}, "localhost/app": {"latest": id1}}));
}

#[test]
fn docker_archive_tags_are_the_reference_then_the_image_names() {
    let (image, blobs) = image(&two_layers(), false, &["localhost/app:1.0", "app", "x@sha256:00"]);
    let (r, io) = run(&image, blobs.clone(), "out.tar", "docker-archive");
    r.unwrap();
    let m = members(&io.out);
    let manifest: serde_json::Value = serde_json::from_slice(&m[m.len() - 2].data).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["localhost/app:1.0", "docker.io/library/app:latest"]));

    let (r, io) = run(&image, blobs, "out.tar:app:latest", "docker-archive");
    r.unwrap();
    let m = members(&io.out);
    let manifest: serde_json::Value = serde_json::from_slice(&m[m.len() - 2].data).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["docker.io/library/app:latest", "localhost/app:1.0"]));
    let repos: serde_json::Value = serde_json::from_slice(&m[m.len() - 1].data).unwrap();
    let top = m.iter().rev().find(|e| e.path.ends_with("/json")).unwrap().path.strip_suffix("/json").unwrap().to_string();
    assert_eq!(repos, serde_json::json!({"docker.io/library/app": {"latest": top}, "localhost/app": {"1.0": top}}));

    let (image, blobs) = image_without_names();
    let (r, io) = run(&image, blobs, "out.tar", "docker-archive");
    r.unwrap();
    let m = members(&io.out);
    let manifest: serde_json::Value = serde_json::from_slice(&m[m.len() - 2].data).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!([]));
    assert_eq!(m[m.len() - 1].data, b"{}");
}

fn image_without_names() -> (Image, Vec<Vec<u8>>) {
    image(&two_layers(), true, &[])
}

#[test]
fn docker_archive_writes_a_repeated_layer_once() {
    let l = layer_tar(&[("a", b"a")]);
    let (image, blobs) = image(&[l.clone(), l.clone()], true, &[]);
    let (r, io) = run(&image, blobs, "out.tar:x:1", "docker-archive");
    r.unwrap();
    let m = members(&io.out);
    let physical: Vec<&Member> = m.iter().filter(|e| e.path.ends_with(".tar") && !e.path.contains('/')).collect();
    assert_eq!(physical.len(), 1);
    let links: Vec<&Member> = m.iter().filter(|e| e.kind == b'2').collect();
    assert_eq!(links.len(), 2);
    assert_ne!(links[0].path, links[1].path);
    let manifest: serde_json::Value = serde_json::from_slice(&m[m.len() - 2].data).unwrap();
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 2);
}

#[test]
fn docker_archive_without_layers_is_written() {
    let (image, blobs) = image(&[], true, &["a:b"]);
    let (r, io) = run(&image, blobs, "out.tar", "docker-archive");
    r.unwrap();
    let m = members(&io.out);
    assert_eq!(m.iter().map(|e| e.path.as_str()).collect::<Vec<_>>()[1..], ["manifest.json", "repositories"]);
}

#[test]
fn bad_requests_are_invalid_input_naming_the_problem() {
    let (image, blobs) = image(&two_layers(), true, &[]);
    let err = |dest: &str, options: Vec<(String, String)>, img: &Image| {
        let mut io = MemIo::new(blobs.clone());
        export(&mut io, img, dest, &options).unwrap_err()
    };
    let e = err("out.tar", vec![("compression".into(), "gzip".into())], &image);
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("unknown option `compression`")), "{e}");
    let e = err("out.tar", opts("zip"), &image);
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("`zip`")), "{e}");
    let e = err("out.tar:bad ref", opts("oci-archive"), &image);
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("bad ref")), "{e}");
    let e = err("out.tar:Upper", opts("docker-archive"), &image);
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("lowercase")), "{e}");
    let e = err(":x", opts("oci"), &image);
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");

    let mut tampered = image.clone();
    tampered.config_json.push(b' ');
    tampered.config.size += 1;
    let e = err("out.tar", opts("oci-archive"), &tampered);
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("config") && m.contains("hashes to")), "{e}");

    let mut tampered = image.clone();
    tampered.layers[1].descriptor.digest = "sha256:../../etc/passwd".into();
    let e = err("out.tar", opts("oci-archive"), &tampered);
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("layer 1")), "{e}");

    let mut tampered = image.clone();
    tampered.layers[0].diff_id = "sha512:abc".into();
    let e = err("out.tar", opts("docker-archive"), &tampered);
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("layer 0 diff-id")), "{e}");

    let mut tampered = image.clone();
    tampered.layers[0].descriptor.size += 1;
    let e = err("out.tar", opts("oci-archive"), &tampered);
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("layer 0")), "{e}");
}

#[test]
fn scheme_defaults_to_oci_archive() {
    let (image, blobs) = image(&two_layers(), true, &[]);
    let mut a = MemIo::new(blobs.clone());
    export(&mut a, &image, "x.tar", &[]).unwrap();
    let (_, b) = run(&image, blobs, "x.tar", "oci-archive");
    assert_eq!(a.out, b.out);
}
