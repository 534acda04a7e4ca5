//! `--storage-driver vfs` (a copy of the stage's filesystem per RUN) against the default overlay
//! driver: the same Dockerfile built both ways gives equivalent images (`ocitree.py diff`, layers
//! included), a deleted-and-recreated directory becomes an opaque directory, run-time mount points
//! never reach a layer, a step that changes nothing makes no layer, the vfs cache is reused (also
//! by an overlay build of the same store), and the host's mount table is untouched.

#[path = "../conformance/support.rs"]
mod support;

use kiln_tests::Kiln;
use kiln_tests::util::lossy;
use std::io::Read;
use std::path::Path;
use support::Bases;

fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo")
}

fn build(kiln: &Kiln, ctx: &Path, flags: &[&str], out: &Path) -> String {
    let mut c = kiln.cmd(["build", "--tls-verify=false", "--progress=plain"]);
    c.args(flags)
        .arg("-t")
        .arg(format!("oci-archive:{}", out.display()))
        .arg(ctx);
    let o = c.output().expect("running kiln build");
    let log = format!("{}{}", lossy(&o.stdout), lossy(&o.stderr));
    assert!(o.status.success(), "kiln build {flags:?} failed:\n{log}");
    log
}

/// Names of the entries of every layer of an oci-archive, in order.
fn layer_entries(archive: &Path) -> Vec<Vec<String>> {
    let s = support::summary(archive);
    let manifest: serde_json::Value = serde_json::from_slice(&support::archive_blob(
        archive,
        s["meta"]["manifest_digest"]
            .as_str()
            .expect("summary names the manifest digest"),
    ))
    .expect("the manifest is JSON");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let blob = support::archive_blob(archive, l["digest"].as_str().unwrap());
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&blob[..])
                .read_to_end(&mut tar)
                .expect("gunzip a layer");
            let mut c = std::process::Command::new("tar")
                .arg("-t")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("running tar -t");
            let mut stdin = c.stdin.take().unwrap();
            let feeder = std::thread::spawn(move || {
                use std::io::Write;
                stdin.write_all(&tar).unwrap();
            });
            let o = c.wait_with_output().unwrap();
            feeder.join().unwrap();
            assert!(o.status.success(), "tar -t of a layer failed");
            lossy(&o.stdout).lines().map(str::to_string).collect()
        })
        .collect()
}

#[test]
fn vfs_and_overlay_build_the_same_image() {
    let bases = Bases::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("copied.txt"), "from the context\n").unwrap();
    let base = bases.reg.reference("busybox:latest");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\n\
             RUN rm /bin/ls /etc/group && mkdir -p /data/sub /data/keep && echo hello > /data/sub/f \
               && echo k > /data/keep/k && chmod 0700 /data/keep\n\
             RUN true\n\
             RUN echo one > /f1 && ln /f1 /f1link && rm -rf /data/sub && mkdir /data/sub \
               && echo again > /data/sub/g && ln -s /f1 /sym && chown 12:34 /data/keep/k && chmod 4755 /f1\n\
             COPY copied.txt /data/copied.txt\n\
             RUN --mount=type=tmpfs,target=/mnt/scratch touch /mnt/scratch/x \
               && cat /data/copied.txt > /data/readback && cat /etc/hostname > /seen-hostname\n\
             WORKDIR /made/by/workdir\n\
             RUN pwd > here\n"
        ),
    )
    .unwrap();

    let before = mountinfo();
    let overlay = Kiln::new();
    let o_img = tmp.path().join("overlay.tar");
    let o_log = build(&overlay, &ctx, &["--storage-driver", "overlay"], &o_img);
    assert!(!o_log.contains("vfs"), "{o_log}");

    let vfs = Kiln::new();
    let v_img = tmp.path().join("vfs.tar");
    let v_log = build(&vfs, &ctx, &["--storage-driver=vfs"], &v_img);
    assert!(
        !v_log.contains("overlay mounts are not available"),
        "an explicit driver is not probed:\n{v_log}"
    );
    assert_eq!(mountinfo(), before, "a build changed the host's mounts");

    // Each driver kept what it works with: overlay upper dirs per step over one flattened base, or
    // a flattened filesystem per RUN (plus the COPY's upper dir, and its flattening for the next RUN).
    let snapshots = |k: &Kiln, prefix: &str| {
        std::fs::read_dir(k.root().join("snapshots"))
            .expect("the store has snapshots")
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(prefix)
            })
            .count()
    };
    assert_eq!(
        (snapshots(&overlay, "flat-"), snapshots(&overlay, "upper-")),
        (1, 5)
    );
    assert_eq!(
        (snapshots(&vfs, "flat-"), snapshots(&vfs, "upper-")),
        (6, 1)
    );

    // Equivalent images: config, history and every layer's files (timestamps aside).
    let (same, report) = support::diff(&o_img, &v_img, &[], &[]);
    assert!(same, "overlay and vfs images differ:\n{report}");
    // Layer by layer, the same entries (`RUN true` made none; the recreated directory is opaque).
    let (ol, vl) = (layer_entries(&o_img), layer_entries(&v_img));
    assert_eq!(ol, vl, "layer entries differ");
    assert_eq!(
        vl.len(),
        6,
        "busybox + 4 RUN layers with changes + COPY: {vl:?}"
    );
    let third = &vl[2];
    assert!(
        third.contains(&"data/sub/.wh..wh..opq".to_string()),
        "no opaque marker: {third:?}"
    );
    assert!(vl[1].contains(&"bin/.wh.ls".to_string()), "{:?}", vl[1]);
    for l in &vl[1..] {
        for e in l {
            assert!(
                !e.starts_with("mnt") && !e.contains("resolv.conf") && !e.contains("hosts"),
                "a mount point reached a layer: {e} in {l:?}"
            );
        }
    }
    let s = support::summary(&v_img);
    support::assert_file(&s, "/data/readback", b"from the context\n");
    support::assert_file(&s, "/made/by/workdir/here", b"/made/by/workdir\n");
    support::assert_file(&s, "/seen-hostname", b"kiln\n");
    assert!(support::file(&s, "/bin/ls").is_none() && support::file(&s, "/data/sub/f").is_none());

    // The env var picks the driver too; the vfs store's cache answers every step.
    let mut vfs = vfs;
    vfs.env("KILN_STORAGE_DRIVER", "vfs");
    let again = build(&vfs, &ctx, &[], &tmp.path().join("again.tar"));
    assert!(
        support::all_cached(&again),
        "an unchanged vfs rebuild ran steps:\n{again}"
    );
    // An overlay build of that store reuses the vfs snapshots as lowers for a new last step.
    std::fs::write(
        ctx.join("Dockerfile"),
        std::fs::read_to_string(ctx.join("Dockerfile"))
            .unwrap()
            .replace(
                "RUN pwd > here",
                "RUN pwd > here && cat /data/sub/g /f1 > both",
            ),
    )
    .unwrap();
    let mixed_img = tmp.path().join("mixed.tar");
    build(&vfs, &ctx, &["--storage-driver", "overlay"], &mixed_img);
    support::assert_file(
        &support::summary(&mixed_img),
        "/made/by/workdir/both",
        b"again\none\n",
    );
    assert_eq!(mountinfo(), before, "a build changed the host's mounts");

    // A bad driver name is refused, naming the flag.
    let o = vfs
        .cmd(["build", "--storage-driver", "zfs"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--storage-driver") && err.contains("zfs"),
        "{err}"
    );
}

/// `kiln ARGS…` with its store on an overlayfs mount, made in a private mount namespace for this
/// one command (`unshare -m`): overlayfs refuses an upper dir on overlayfs, so the probe fails
/// there. The store's contents live on in `backing/upper` between commands.
fn on_overlay_store(kiln: &Kiln, backing: &Path, args: &[&str]) -> std::process::Output {
    let plain = kiln.cmd(args);
    for d in ["lower", "upper", "work"] {
        std::fs::create_dir_all(backing.join(d)).unwrap();
    }
    let mut c = std::process::Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t overlay overlay -o lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work \"$0\" && exec \"$@\"",
            backing.display()
        ))
        .arg(kiln.root())
        .arg(plain.get_program())
        .args(plain.get_args());
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.output().expect("running kiln under unshare")
}

#[test]
fn without_overlay_the_vfs_driver_is_picked_and_said_once() {
    let bases = Bases::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let base = bases.reg.reference("busybox:latest");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\nRUN rm /bin/ls && mkdir -p /d/sub && echo hi > /d/sub/f\n\
             RUN rm -rf /d/sub && mkdir /d/sub && echo again > /d/sub/g\n"
        ),
    )
    .unwrap();
    let before = mountinfo();

    let kiln = Kiln::new();
    let backing = tmp.path().join("backing");
    let v_img = tmp.path().join("vfs.tar");
    let dest = format!("oci-archive:{}", v_img.display());
    let o = on_overlay_store(
        &kiln,
        &backing,
        &[
            "build",
            "--tls-verify=false",
            "--progress=plain",
            "-t",
            &dest,
            ctx.to_str().unwrap(),
        ],
    );
    let err = lossy(&o.stderr);
    assert!(
        o.status.success(),
        "build on an overlayfs store failed:\n{}{err}",
        lossy(&o.stdout)
    );
    assert_eq!(
        err.matches("using the vfs storage driver").count(),
        1,
        "the fallback is said exactly once:\n{err}"
    );
    assert!(err.contains("mount overlay"), "the reason is given:\n{err}");
    // There, asking for overlay fails at the RUN's mount, naming it.
    let o = on_overlay_store(
        &kiln,
        &backing,
        &[
            "build",
            "--tls-verify=false",
            "--no-cache",
            "--storage-driver",
            "overlay",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(
        !o.status.success() && lossy(&o.stderr).contains("mount overlay"),
        "{}",
        lossy(&o.stderr)
    );

    // The same Dockerfile with overlay on a normal store: an equivalent image.
    let overlay = Kiln::new();
    let o_img = tmp.path().join("overlay.tar");
    let log = build(&overlay, &ctx, &[], &o_img);
    assert!(!log.contains("vfs"), "{log}");
    let (same, report) = support::diff(&o_img, &v_img, &[], &[]);
    assert!(same, "overlay and vfs images differ:\n{report}");
    assert_eq!(layer_entries(&o_img), layer_entries(&v_img));
    assert_eq!(mountinfo(), before, "a build changed the host's mounts");
}

#[test]
fn working_containers_honour_the_vfs_driver() {
    let bases = Bases::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f.txt");
    std::fs::write(&file, "copied in\n").unwrap();
    let base = bases.reg.reference("busybox:latest");
    let before = mountinfo();
    let mut images = Vec::new();
    for driver in ["overlay", "vfs"] {
        let kiln = Kiln::new();
        let c = kiln.run([
            "--storage-driver",
            driver,
            "from",
            "--tls-verify=false",
            "-q",
            &base,
        ]);
        let c = c.trim();
        kiln.run([
            "run",
            c,
            "--",
            "sh",
            "-c",
            "rm -rf /home && mkdir /home && echo x > /home/new && rm /bin/ls",
        ]);
        kiln.run(["copy", c, file.to_str().unwrap(), "/copied.txt"]);
        // The second run sees the first one's and the copy's changes.
        kiln.run([
            "run",
            c,
            "--",
            "sh",
            "-c",
            "cat /home/new /copied.txt > /both",
        ]);
        let vfs_dir = std::fs::read_dir(kiln.root().join("containers"))
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.path().join("vfs-rootfs").is_dir());
        assert_eq!(vfs_dir, driver == "vfs", "{driver}: a vfs-rootfs directory");
        kiln.run(["commit", "-q", c, "localhost/out"]);
        let out = tmp.path().join(format!("{driver}.tar"));
        kiln.run([
            "push",
            "localhost/out",
            &format!("oci-archive:{}", out.display()),
        ]);
        images.push(out);
    }
    assert_eq!(
        mountinfo(),
        before,
        "working containers changed the host's mounts"
    );
    let s = support::summary(&images[1]);
    support::assert_file(&s, "/both", b"x\ncopied in\n");
    let (same, report) = support::diff(&images[0], &images[1], &[], &[]);
    assert!(
        same,
        "overlay and vfs containers commit different images:\n{report}"
    );
    let (ol, vl) = (layer_entries(&images[0]), layer_entries(&images[1]));
    assert_eq!(ol, vl, "layer entries differ");
    let last = vl.last().unwrap();
    for want in [
        "bin/.wh.ls",
        "home/.wh..wh..opq",
        "home/new",
        "copied.txt",
        "both",
    ] {
        assert!(last.contains(&want.to_string()), "{want} not in {last:?}");
    }
}
