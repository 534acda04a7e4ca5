//! Layers written by another OCI tool (umoci) applied with kiln-layer: the flattened tree must match umoci's own
//! unpack and ocitree.py's view of the image.

mod common;

use std::fs;
use std::process::Command;

use common::*;
use kiln_layer::{ApplyOptions, apply_layer, decompress};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn umoci_layers_flatten_like_umoci_and_ocitree() {
    if !have("umoci") || !have("jq") {
        eprintln!("umoci or jq not installed; skipped");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    sh(&format!(
        "cd {} && umoci init --layout img && umoci new --image img:t && umoci unpack --image img:t b1 \
         && cd b1/rootfs && mkdir -p etc d/sub gone && echo a > etc/a && echo x > d/x && echo y > d/sub/y \
         && echo g > gone/g && ln etc/a etc/a.hard && ln -s etc/a sym && chmod 4755 etc/a && chown 7:8 d/x \
         && cd ../.. && umoci repack --image img:t b1 && umoci unpack --image img:t b2 && cd b2/rootfs \
         && rm -rf gone d && mkdir d && echo new > d/new && rm sym && echo b > etc/b \
         && cd ../.. && umoci repack --image img:t b2 && umoci unpack --image img:t b3",
        dir.display()
    ));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {}/img && m=$(jq -r '.manifests[0].digest' index.json | cut -d: -f2) \
             && jq -r '.layers[].digest' blobs/sha256/$m | cut -d: -f2",
            dir.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let layers: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(layers.len(), 2);

    let flat = dir.join("flat");
    fs::create_dir(&flat).unwrap();
    let mut whiteouts = 0;
    for l in &layers {
        let blob = fs::File::open(dir.join("img/blobs/sha256").join(l)).unwrap();
        let stats =
            apply_layer(decompress(blob).unwrap(), &flat, &ApplyOptions::default()).unwrap();
        whiteouts += stats.whiteouts;
    }
    assert_eq!(whiteouts, 4, "d/.wh.sub, d/.wh.x, .wh.gone, .wh.sym");
    assert_same(
        &snapshot(&dir.join("b3/rootfs"), &[]),
        &snapshot(&flat, &[]),
        "umoci unpack vs kiln apply",
    );

    if let Some(tool) = ocitree() {
        let out = Command::new("python3")
            .arg(&tool)
            .arg("diff")
            .arg(format!("{}/img:t", dir.display()))
            .arg(&flat)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ocitree: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
