//! Exporters driven through the kiln binary and checked by peer tools: one `kiln build` writes
//! the store image, an oci-archive, an OCI layout, a docker-archive and a SIF (several `-t`);
//! skopeo, umoci, oci-image-tool, podman, siftool and unsquashfs must accept them and find the
//! same image. Failed exports leave no output file behind.

#[path = "../conformance/support.rs"]
mod support;

use kiln_tests::Kiln;
use kiln_tests::util::{lossy, run_ok};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::Bases;

/// What Apptainer adds to a SIF's root filesystem (not in the image; see plugins/sif).
const APPTAINER_ADDITIONS: &[&str] = &[
    "/.singularity.d",
    "/singularity",
    "/environment",
    "/.exec",
    "/.run",
    "/.shell",
    "/.test",
    "/etc/hosts",
    "/etc/resolv.conf",
    // a mount point Apptainer expects (the busybox base has /tmp, /proc, /sys, /dev, /home, /root)
    "/var/tmp",
];

fn ocitree_diff(a: &Path, b: &Path, ignores: &[&str]) -> (bool, String) {
    let mut c = Command::new("python3");
    c.arg("/work/shared/tools/ocitree.py").arg("diff").arg(a).arg(b);
    for i in ignores {
        c.arg("--ignore").arg(i);
    }
    let o = c.output().expect("running ocitree.py");
    (o.status.success(), format!("{}{}", lossy(&o.stdout), lossy(&o.stderr)))
}

fn skopeo_digest(image: &str) -> String {
    let o = run_ok(Command::new("skopeo").args(["inspect", "--tls-verify=false", image]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("skopeo inspect JSON");
    v["Digest"].as_str().expect("Digest").to_string()
}

/// A context: a file to COPY, and a Containerfile on the loopback busybox that deletes a lower
/// file, so the layers carry a whiteout.
fn context(bases: &Bases) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hello.txt"), "hello from kiln\n").unwrap();
    let text = format!(
        "FROM {}\nCOPY hello.txt /srv/hello.txt\nRUN echo built > /built && rm /etc/group\n\
         ENV GREETING=hi\nCMD [\"/bin/sh\", \"-c\", \"echo $GREETING\"]\n",
        bases.reg.reference("busybox:latest")
    );
    std::fs::write(ctx.path().join("Containerfile"), text).unwrap();
    ctx
}

#[test]
fn one_build_many_exports_accepted_by_peer_tools() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let ctx = context(&bases);
    let out = tempfile::tempdir().unwrap();
    let (arch, dir, darch, sif) = (
        out.path().join("img.oci.tar"),
        out.path().join("layout"),
        out.path().join("img.docker.tar"),
        out.path().join("img.sif"),
    );
    let ctxs = ctx.path().to_str().unwrap();
    kiln.run([
        "build",
        "--tls-verify=false",
        "--timestamp",
        "0",
        "-t",
        "localhost/exported:1",
        "-t",
        &format!("oci-archive:{}", arch.display()),
        "-t",
        &format!("oci:{}:latest", dir.display()),
        "-t",
        &format!("docker-archive:{}:localhost/exported:1", darch.display()),
        "-t",
        &format!("sif:{}", sif.display()),
        "-f",
        &format!("{ctxs}/Containerfile"),
        ctxs,
    ]);
    let store_digest = kiln
        .run(["images", "--no-trunc", "--format", "{{.Digest}}", "localhost/exported:1"])
        .trim()
        .to_string();
    assert!(store_digest.starts_with("sha256:"), "store digest: {store_digest:?}");

    // oci-archive and oci: the store's manifest, byte for byte.
    assert_eq!(skopeo_digest(&format!("oci-archive:{}", arch.display())), store_digest);
    assert_eq!(skopeo_digest(&format!("oci:{}:latest", dir.display())), store_digest);
    run_ok(Command::new("oci-image-tool").args(["validate", "--type", "image", "--ref", "name=latest"]).arg(&dir));
    let bundle = out.path().join("bundle");
    run_ok(Command::new("umoci").args(["unpack", "--rootless", "--image"]).arg(format!("{}:latest", dir.display())).arg(&bundle));
    let (same, report) = ocitree_diff(&arch, &bundle.join("rootfs"), &[]);
    assert!(same, "umoci's unpacked rootfs differs from the oci-archive:\n{report}");
    assert!(!bundle.join("rootfs/etc/group").exists(), "the whiteout of /etc/group was not applied");

    // Through the loopback registry and back: the digest survives.
    let remote = format!("docker://{}", bases.reg.reference("exported:1"));
    run_ok(Command::new("skopeo").args(["copy", "--dest-tls-verify=false"]).arg(format!("oci-archive:{}", arch.display())).arg(&remote));
    assert_eq!(skopeo_digest(&remote), store_digest);

    // docker-archive: skopeo and podman read it; same files as the OCI image.
    let o = run_ok(Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", darch.display())));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(3), "docker-archive layers: {v}");
    let (same, report) = ocitree_diff(&arch, &darch, &[]);
    assert!(same, "docker-archive and oci-archive differ:\n{report}");
    if Path::new("/usr/bin/podman").exists() {
        let pr = out.path().join("podman");
        let podman = |args: &[&str]| {
            let mut c = Command::new("podman");
            c.arg("--root").arg(pr.join("root")).arg("--runroot").arg(pr.join("run"));
            c.args(["--storage-driver", "vfs"]).args(args);
            c
        };
        let o = run_ok(podman(&["load", "-i", darch.to_str().unwrap()]).env("XDG_RUNTIME_DIR", pr.join("xdg")));
        assert!(lossy(&o.stdout).contains("localhost/exported:1"), "podman load: {}", lossy(&o.stdout));
    }

    // SIF: siftool reads it; the partition is the image's rootfs plus Apptainer's additions.
    let list = lossy(&run_ok(Command::new("siftool").arg("list").arg(&sif)).stdout);
    for kind in ["Def.FILE", "JSON.Generic", "FS (Squashfs/*System/"] {
        assert!(list.contains(kind), "siftool list lacks {kind}:\n{list}");
    }
    run_ok(Command::new("siftool").arg("header").arg(&sif));
    let part = out.path().join("part.sqfs");
    let dump = run_ok(Command::new("siftool").args(["dump", "4"]).arg(&sif));
    std::fs::write(&part, &dump.stdout).unwrap();
    let root = out.path().join("sifroot");
    run_ok(Command::new("unsquashfs").arg("-no-progress").arg("-d").arg(&root).arg(&part));
    let (same, report) = ocitree_diff(&arch, &root, APPTAINER_ADDITIONS);
    assert!(same, "the SIF partition differs from the image:\n{report}");
    assert_eq!(std::fs::read(root.join("srv/hello.txt")).unwrap(), b"hello from kiln\n");
    assert!(!root.join("etc/group").exists(), "the whiteout of /etc/group was not applied in the SIF");
    // Apptainer's way in: source the env scripts, then run the runscript.
    let o = run_ok(Command::new("chroot").arg(&root).args([
        "/bin/sh",
        "-c",
        "for f in /.singularity.d/env/*.sh; do . \"$f\"; done; exec /.singularity.d/runscript",
    ]));
    assert_eq!(lossy(&o.stdout).trim(), "hi", "runscript output");

    // Reproducible: the same image exported again with the same --timestamp is byte-identical.
    let again = out.path().join("again.sif");
    kiln.run(["push", "--timestamp", "0", "localhost/exported:1", &format!("sif:{}", again.display())]);
    assert!(std::fs::read(&sif).unwrap() == std::fs::read(&again).unwrap(), "two SIF exports differ");
    let arch2 = out.path().join("again.oci.tar");
    kiln.run(["push", "localhost/exported:1", &format!("oci-archive:{}", arch2.display())]);
    assert!(std::fs::read(&arch).unwrap() == std::fs::read(&arch2).unwrap(), "two oci-archive exports differ");
}

fn assert_failed_without_output(kiln: &Kiln, args: &[&str], dest: &Path, says: &str) {
    let o = kiln.output(args);
    let err = lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(err.contains(says), "{args:?}: the error should say {says:?}:\n{err}");
    assert!(!err.contains("panicked"), "{args:?}: kiln panicked:\n{err}");
    assert!(!dest.exists(), "{args:?}: a failed export left {}", dest.display());
}

#[test]
fn bad_exports_fail_clearly_and_leave_nothing() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let ctx = context(&bases);
    let ctxs = ctx.path().to_str().unwrap();
    let file = format!("{ctxs}/Containerfile");
    kiln.run(["build", "--tls-verify=false", "-t", "localhost/good:1", "-f", &file, ctxs]);
    let out = tempfile::tempdir().unwrap();
    let sif: PathBuf = out.path().join("x.sif");
    let dest = format!("sif:{}", sif.display());

    // An option the SIF exporter does not know.
    assert_failed_without_output(
        &kiln,
        &["push", "--export-opt", "sif.bogus=1", "localhost/good:1", &dest],
        &sif,
        "bogus",
    );
    // An image without layers has no root filesystem to put in a SIF.
    std::fs::write(out.path().join("Containerfile"), "FROM scratch\nLABEL only=metadata\n").unwrap();
    let octx = out.path().to_str().unwrap();
    let ofile = format!("{octx}/Containerfile");
    kiln.run(["build", "-t", "localhost/empty:1", "-f", &ofile, octx]);
    assert_failed_without_output(&kiln, &["push", "localhost/empty:1", &dest], &sif, "layer");
    // A scheme nobody serves.
    let o = kiln.output(["push", "localhost/good:1", "nosuchscheme:/tmp/x"]);
    assert!(!o.status.success());
    kiln.run(["fsck"]);
}
