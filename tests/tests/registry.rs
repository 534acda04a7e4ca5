//! `kiln pull`, `kiln push`, `kiln login`, `kiln logout` driven as a user would, against loopback
//! registries, cross-checked with skopeo.

use kiln_tests::{Kiln, Registry, Skopeo, Variant, bases};
use serde_json::Value;

fn config_hex(reg: &Registry, image: &str) -> String {
    kiln_tests::util::sha256_bytes(&Skopeo::new().inspect_config(reg, image))
}

#[test]
fn pull_prints_the_image_id_and_push_round_trips() {
    let reg = Registry::start(Variant::Plain);
    let digest = bases::push_busybox(&reg);
    let kiln = Kiln::new();
    let out = kiln.run([
        "pull",
        "--tls-verify=false",
        &reg.reference("busybox:latest"),
    ]);
    assert_eq!(out.trim(), config_hex(&reg, "busybox:latest"));
    // By digest, quietly.
    let k2 = Kiln::new();
    let o = k2
        .cmd([
            "pull",
            "-q",
            "--tls-verify=false",
            &reg.docker(&format!("busybox@{digest}")),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "quiet: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Named by its digest (repository, no tag), so prune keeps it; rmi takes that name.
    let by_digest = format!("{}@{digest}", reg.reference("busybox"));
    let listed = k2.run(["images", "--format", "{{.Name}} {{.Tag}}"]);
    assert_eq!(
        listed.trim(),
        format!("{} <none>", reg.reference("busybox"))
    );
    k2.run(["prune"]);
    assert_eq!(k2.run(["images", "-q"]).lines().count(), 1);
    k2.run(["rmi", &by_digest]);
    assert_eq!(k2.run(["images", "-q"]).trim(), "");
    // Push elsewhere and compare with what skopeo sees.
    let dfile = kiln.root().join("digest");
    kiln.run([
        "push",
        "--tls-verify=false",
        "--digestfile",
        dfile.to_str().unwrap(),
        &reg.reference("busybox:latest"),
        &reg.docker("copy/busybox:1"),
    ]);
    let pushed = std::fs::read_to_string(&dfile).unwrap();
    assert_eq!(
        Skopeo::new().manifest_digest(&reg, "copy/busybox:1"),
        pushed.trim()
    );
    let back = tempfile::tempdir().unwrap();
    Skopeo::new().copy_from(
        &reg,
        "copy/busybox:1",
        &format!("oci:{}:x", back.path().display()),
        &[],
    );
}

#[test]
fn progress_lines_when_not_a_terminal() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let kiln = Kiln::new();
    let o = kiln.output([
        "pull",
        "--tls-verify=false",
        &reg.reference("busybox:latest"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("Copying blob"), "{err}");
    assert!(err.contains("Writing manifest"), "{err}");
    let again = kiln.output([
        "pull",
        "--tls-verify=false",
        &reg.reference("busybox:latest"),
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn push_format_docker() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let kiln = Kiln::new();
    let id = kiln.run([
        "pull",
        "-q",
        "--tls-verify=false",
        &reg.reference("busybox:latest"),
    ]);
    kiln.run([
        "push",
        "-q",
        "--format",
        "docker",
        "--tls-verify=false",
        id.trim(),
        &reg.docker("v2s2:1"),
    ]);
    let m: Value = Skopeo::new().manifest(&reg, "v2s2:1");
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(m["config"]["digest"], format!("sha256:{}", id.trim()));
}

#[test]
fn tls_registry_with_certs_d_cert_dir_and_no_verify() {
    let reg = Registry::start(Variant::Tls);
    bases::push_busybox(&reg);
    let r = reg.reference("busybox:latest");
    let kiln = Kiln::new();
    let err = kiln.run_fail(["pull", "-q", &r]);
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    kiln.run([
        "pull",
        "-q",
        "--cert-dir",
        reg.cert_dir().unwrap().to_str().unwrap(),
        &r,
    ]);
    let k2 = Kiln::new();
    k2.run(["pull", "-q", "--tls-verify=false", &r]);
    let k3 = Kiln::new();
    k3.trust(&reg);
    k3.run(["pull", "-q", &r]);
}

#[test]
fn login_logout_against_htpasswd() {
    let reg = Registry::start(Variant::Htpasswd);
    bases::push_busybox(&reg);
    let r = reg.reference("busybox:latest");
    let kiln = Kiln::new();
    let err = kiln.run_fail(["pull", "-q", "--tls-verify=false", &r]);
    assert!(
        err.contains("authentication") && err.contains("401"),
        "{err}"
    );
    let (user, pass) = reg.credentials().unwrap();
    let err = kiln.run_fail([
        "login",
        "--tls-verify=false",
        "-u",
        user,
        "-p",
        "nope",
        &reg.host(),
    ]);
    assert!(err.contains("401"), "{err}");
    let out = kiln.run_with_stdin(
        [
            "login",
            "--tls-verify=false",
            "-u",
            user,
            "--password-stdin",
            &reg.host(),
        ],
        format!("{pass}\n").as_bytes(),
    );
    assert!(out.contains("Login Succeeded"), "{out}");
    let auth: Value =
        serde_json::from_slice(&std::fs::read(kiln.home().auth_file()).unwrap()).unwrap();
    assert!(auth["auths"][reg.host()]["auth"].is_string(), "{auth}");
    assert_eq!(kiln.run(["login", "--get-login", &reg.host()]).trim(), user);
    kiln.run(["pull", "-q", "--tls-verify=false", &r]);
    kiln.run(["logout", &reg.host()]);
    kiln.run_fail(["logout", &reg.host()]);
    kiln.run_fail(["pull", "-q", "--tls-verify=false", &r]);
    // --creds without touching the auth file.
    kiln.run([
        "pull",
        "-q",
        "--tls-verify=false",
        "--creds",
        &format!("{user}:{pass}"),
        &r,
    ]);
    // `kiln build --creds` pulls its base with them.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {r}\nLABEL a=b\n"),
    )
    .unwrap();
    let ctx_path = ctx.path().to_str().unwrap();
    let err = kiln.run_fail([
        "build",
        "-q",
        "--pull=always",
        "--tls-verify=false",
        ctx_path,
    ]);
    assert!(err.contains("401"), "{err}");
    kiln.run([
        "build",
        "-q",
        "--pull=always",
        "--tls-verify=false",
        "--creds",
        &format!("{user}:{pass}"),
        ctx_path,
    ]);
    // An explicit --authfile.
    let af = kiln.root().join("my-auth.json");
    kiln.run([
        "login",
        "--tls-verify=false",
        "--authfile",
        af.to_str().unwrap(),
        "-u",
        user,
        "-p",
        pass,
        &reg.host(),
    ]);
    kiln.run([
        "pull",
        "-q",
        "--tls-verify=false",
        "--authfile",
        af.to_str().unwrap(),
        &r,
    ]);
    kiln.run(["logout", "--all", "--authfile", af.to_str().unwrap()]);
    kiln.run_fail([
        "pull",
        "-q",
        "--tls-verify=false",
        "--authfile",
        af.to_str().unwrap(),
        &r,
    ]);
}

#[test]
fn short_names_and_insecure_from_registries_conf_with_a_dead_proxy_set() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let mut kiln = Kiln::new();
    std::fs::write(
        kiln.home().registries_conf(),
        format!("unqualified-search-registries = ['{0}']\n[[registry]]\nlocation = '{0}'\ninsecure = true\n", reg.host()),
    )
    .unwrap();
    // Loopback is never proxied, whatever HTTPS_PROXY/HTTP_PROXY say.
    kiln.env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "")
        .env("no_proxy", "");
    let id = kiln.run(["pull", "-q", "busybox"]);
    assert_eq!(id.trim(), config_hex(&reg, "busybox:latest"));
}

#[test]
fn corrupt_blob_fails_naming_the_digest() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let m = Skopeo::new().manifest(&reg, "busybox:latest");
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let p = reg.blob_data_path(&layer);
    let mut b = std::fs::read(&p).unwrap();
    b[10] ^= 0x55;
    std::fs::write(&p, &b).unwrap();
    let kiln = Kiln::new();
    let o = kiln.output([
        "pull",
        "-q",
        "--tls-verify=false",
        &reg.reference("busybox:latest"),
    ]);
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&layer) && err.contains("digest mismatch"),
        "{err}"
    );
}

#[test]
fn pull_from_oci_archive_and_docker_archive() {
    let layout = bases::busybox_layout();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bb.tar");
    kiln_tests::util::run_ok(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
    );
    let kiln = Kiln::new();
    let id = kiln.run([
        "pull",
        "-q",
        &format!("oci-archive:{}:latest", archive.display()),
    ]);
    let docker = dir.path().join("d.tar");
    Skopeo::new().copy(
        &[],
        &format!("oci:{}:latest", layout.display()),
        &format!("docker-archive:{}:example.com/bb:1", docker.display()),
    );
    let id2 = kiln.run([
        "pull",
        "-q",
        &format!("docker-archive:{}", docker.display()),
    ]);
    assert_eq!(id.trim(), id2.trim());
}

#[test]
fn unknown_layer_media_type_fails_naming_it() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let mut m = Skopeo::new().manifest(&reg, "busybox:latest");
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    m["layers"][0]["mediaType"] = "application/vnd.example.mystery.layer".into();
    let body = serde_json::to_vec(&m).unwrap();
    let url = format!("http://{}/v2/busybox/manifests/mystery", reg.host());
    let put = std::process::Command::new("curl")
        .args(["-fsS", "--noproxy", "*", "-X", "PUT", "-H"])
        .arg(format!("Content-Type: {}", m["mediaType"].as_str().unwrap()))
        .arg("--data-binary")
        .arg("@-")
        .arg(&url)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&body)?;
            c.wait()
        })
        .expect("curl PUT manifest");
    assert!(put.success(), "the registry refused the crafted manifest");
    let kiln = Kiln::new();
    let o = kiln.output(["pull", "-q", "--tls-verify=false", &reg.reference("busybox:mystery")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a layer of unknown media type was accepted");
    assert!(err.contains("application/vnd.example.mystery.layer"), "the error should name the media type:\n{err}");
    assert!(err.contains(&layer[7..19]), "the error should name the layer digest:\n{err}");
    assert!(kiln.run(["images", "-q"]).trim().is_empty(), "a failed pull left an image");
    kiln.run(["fsck"]);
}

/// `kiln pull` on a terminal draws progress bars (run under `script`, which gives it a pty);
/// `-q` prints only the image id.
#[test]
fn progress_bars_on_a_terminal_and_quiet_with_q() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let kiln = Kiln::new();
    let inner = kiln.cmd(["pull", "--tls-verify=false", &reg.reference("busybox:latest")]);
    let line = std::iter::once(inner.get_program())
        .chain(inner.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let o = script.output().expect("running script");
    let tty = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "pull on a terminal failed:\n{tty}");
    assert!(tty.contains("Copying blob") && tty.contains('['), "no progress bar on a terminal:\n{tty}");
    assert!(tty.contains("\u{1b}["), "a terminal view redraws its bars with escape sequences:\n{tty}");

    let quiet = Kiln::new();
    let o = quiet.output(["pull", "-q", "--tls-verify=false", &reg.reference("busybox:latest")]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), config_hex(&reg, "busybox:latest"));
    assert!(o.stderr.is_empty(), "-q printed progress: {}", String::from_utf8_lossy(&o.stderr));
}

/// `skopeo` with its output as JSON.
fn skopeo_json(args: &[&str]) -> Value {
    let out = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

/// A build cache kept in a registry: one build pushes the steps it runs (`--cache-to`), a build
/// on a machine with an empty store takes them from there (`--cache-from`) instead of running
/// them — the RUN that writes random bytes gives the same layer — and a changed step runs again.
#[test]
fn a_build_cache_in_a_registry_serves_a_fresh_store() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let ctx = tempfile::tempdir().unwrap();
    let dockerfile = |last: &str| {
        format!(
            "FROM {}\nENV A=1\nRUN head -c 16 /dev/urandom | od -An -tx1 > /random\n\
             COPY f.txt /f.txt\nRUN {last}\n",
            reg.reference("busybox:latest")
        )
    };
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile("echo one > /one")).unwrap();
    std::fs::write(ctx.path().join("f.txt"), "f\n").unwrap();
    let ctx_path = ctx.path().to_str().unwrap();
    let cache = format!("{}/build-cache", reg.host());

    let first = Kiln::new();
    first.run([
        "build",
        "--tls-verify=false",
        "--cache-to",
        &cache,
        "-t",
        &reg.docker("out:first"),
        ctx_path,
    ]);
    let tags = skopeo_json(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{cache}"),
    ]);
    assert_eq!(
        tags["Tags"].as_array().unwrap().len(),
        4,
        "one cache image per step: {tags}"
    );

    let fresh = Kiln::new();
    let out = fresh.run([
        "build",
        "--tls-verify=false",
        "--cache-from",
        &format!("docker://{cache}"),
        "-t",
        &reg.docker("out:second"),
        ctx_path,
    ]);
    assert_eq!(out.matches("Using cache").count(), 4, "{out}");
    let layers = |tag: &str| {
        skopeo_json(&[
            "inspect",
            "--tls-verify=false",
            &reg.docker(&format!("out:{tag}")),
        ])["Layers"]
            .clone()
    };
    assert_eq!(layers("first"), layers("second"));
    assert_eq!(layers("first").as_array().unwrap().len(), 4);

    // A changed last step runs; the steps before it still come from the registry.
    std::fs::write(
        ctx.path().join("Dockerfile.first"),
        dockerfile("echo one > /one"),
    )
    .unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile("echo two > /two")).unwrap();
    let other = Kiln::new();
    let out = other.run([
        "build",
        "--tls-verify=false",
        "--cache-from",
        &cache,
        ctx_path,
    ]);
    assert_eq!(out.matches("Using cache").count(), 3, "{out}");
    assert!(out.contains("STEP 5/5: RUN echo two"), "{out}");

    // A cache image whose config misstates its new layer's uncompressed digest answers
    // nothing: every entry of the repository is rewritten so, and a fresh store runs every step.
    let tampered = format!("{}/tampered-cache", reg.host());
    let skopeo = Skopeo::new();
    for tag in tags["Tags"].as_array().unwrap() {
        let tag = tag.as_str().unwrap();
        let layout = tempfile::tempdir().unwrap();
        let dir = layout.path().display().to_string();
        skopeo.copy_from(
            &reg,
            &format!("build-cache:{tag}"),
            &format!("oci:{dir}:t"),
            &[],
        );
        let blob = |d: &str| {
            layout
                .path()
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let put = |bytes: &[u8]| -> (String, usize) {
            let hex = kiln_tests::util::sha256_bytes(bytes);
            std::fs::write(blob(&hex), bytes).unwrap();
            (format!("sha256:{hex}"), bytes.len())
        };
        let mut index: Value =
            serde_json::from_slice(&std::fs::read(layout.path().join("index.json")).unwrap())
                .unwrap();
        let mut manifest: Value = serde_json::from_slice(
            &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let mut config: Value = serde_json::from_slice(
            &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let last = config["rootfs"]["diff_ids"].as_array().unwrap().len() - 1;
        config["rootfs"]["diff_ids"][last] = format!("sha256:{}", "0".repeat(64)).into();
        let (d, n) = put(&serde_json::to_vec(&config).unwrap());
        manifest["config"]["digest"] = d.into();
        manifest["config"]["size"] = n.into();
        let (d, n) = put(&serde_json::to_vec(&manifest).unwrap());
        index["manifests"][0]["digest"] = d.into();
        index["manifests"][0]["size"] = n.into();
        std::fs::write(
            layout.path().join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        skopeo.copy_to(
            &format!("oci:{dir}:t"),
            &reg,
            &format!("tampered-cache:{tag}"),
            &[],
        );
    }
    let o = Kiln::new().output([
        "build",
        "--tls-verify=false",
        "--cache-from",
        &tampered,
        &format!("--file={}", ctx.path().join("Dockerfile.first").display()),
        ctx_path,
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stderr}");
    assert_eq!(stdout.matches("Using cache").count(), 0, "{stdout}");
    assert!(stderr.contains("does not hash to its diff_id"), "{stderr}");

    // `--cache-ttl`: entries older than it answer nothing, in the registry or in the store.
    let aged = Kiln::new();
    let ttl_build = |ttl: &str, from: &[&str]| {
        let mut args = vec!["build", "--tls-verify=false", "--cache-ttl", ttl];
        args.extend_from_slice(from);
        args.push(ctx_path);
        aged.run(args).matches("Using cache").count()
    };
    assert_eq!(ttl_build("1ms", &["--cache-from", &cache]), 0);
    assert_eq!(ttl_build("1h", &[]), 4);
    assert_eq!(ttl_build("1ms", &[]), 0);
    assert_eq!(ttl_build("0", &[]), 0);

    // A repository with a tag is refused; an unreachable one is a warning, not a failure.
    let err = other.run_fail(["build", "--cache-to", &format!("{cache}:v1"), ctx_path]);
    assert!(err.contains("without a tag"), "{err}");
    let o = Kiln::new().output([
        "build",
        "--tls-verify=false",
        "--cache-from",
        "127.0.0.1:1/nothing",
        ctx_path,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr)
            .matches("127.0.0.1:1/nothing")
            .count(),
        1
    );
}

/// `kiln manifest inspect LIST`, and the architectures of its entries in order.
fn list_archs(kiln: &Kiln, list: &str) -> (Value, Vec<String>) {
    let index: Value = serde_json::from_str(&kiln.run(["manifest", "inspect", list])).unwrap();
    let archs = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    (index, archs)
}

/// An OCI layout in `work` with one busybox image (gzip layer) per architecture of `archs`,
/// and their descriptors.
fn busybox_per_arch(work: &std::path::Path, archs: &[&str]) -> (bases::Layout, Vec<Value>) {
    use kiln_tests::bases::{Compression, ImageSpec, Layout};
    let rootfs = work.join("rootfs");
    bases::busybox_rootfs(&rootfs);
    let tar = work.join("rootfs.tar");
    bases::tar_dir(&rootfs, &tar, true);
    let layout = Layout::create(&work.join("layout"));
    let images = archs
        .iter()
        .map(|arch| {
            layout.add_image(
                &[&tar],
                &ImageSpec {
                    arch: arch.to_string(),
                    compression: Compression::Gzip,
                    ..ImageSpec::default()
                },
            )
        })
        .collect();
    (layout, images)
}

/// A multi-platform build as buildah users make one: `kiln build --platform linux/amd64,linux/arm64
/// --manifest LIST` builds each platform (FROM picks its base from a multi-platform image, RUN sees
/// `TARGETARCH`) into a manifest list, `kiln manifest push --all` pushes the images and the
/// index, and skopeo reads each platform's image back; the list verbs edit it as buildah's do.
#[test]
fn multi_platform_build_into_a_manifest_list() {
    let reg = Registry::start(Variant::Plain);
    let work = tempfile::tempdir().unwrap();
    let (mut layout, images) = busybox_per_arch(work.path(), &["amd64", "arm64"]);
    let idx = layout.add_index(&images);
    layout.tag(&idx, "multi");
    Skopeo::new().copy_to(
        &format!("oci:{}:multi", layout.dir().display()),
        &reg,
        "base:1",
        &["--all", "--preserve-digests"],
    );

    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\nARG TARGETARCH\nRUN echo $TARGETARCH > /arch\n",
            reg.reference("base:1")
        ),
    )
    .unwrap();
    let ctx_path = ctx.path().to_str().unwrap();
    let kiln = Kiln::new();
    let err = kiln.run_fail(["build", "--platform", "linux/amd64,linux/arm64", ctx_path]);
    assert!(err.contains("--manifest"), "{err}");
    kiln.run([
        "build",
        "--tls-verify=false",
        "--platform",
        "linux/amd64,linux/arm64",
        "--manifest",
        "app",
        ctx_path,
    ]);
    let (_, archs) = list_archs(&kiln, "app");
    assert_eq!(archs, ["amd64", "arm64"]);
    // The base's name now holds the arm64 image: an amd64 build without pulling says so.
    let err = kiln.run_fail([
        "build",
        "--pull=never",
        "--platform",
        "linux/amd64",
        ctx_path,
    ]);
    assert!(err.contains("is for linux/arm64, not linux/amd64"), "{err}");
    // A rebuild for one platform replaces that platform's entry (--platform may repeat).
    kiln.run([
        "build",
        "--tls-verify=false",
        "--no-cache",
        "--platform",
        "linux/arm64",
        "--manifest",
        "app",
        ctx_path,
    ]);
    kiln.run([
        "build",
        "--tls-verify=false",
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/arm64",
        "--manifest",
        "app",
        ctx_path,
    ]);
    let again: Value = serde_json::from_str(&kiln.run(["manifest", "inspect", "app"])).unwrap();
    assert_eq!(again["manifests"].as_array().unwrap().len(), 2);
    // Unnamed images a list holds are not dangling.
    kiln.run(["prune"]);

    let digest_file = kiln.root().join("list-digest");
    kiln.run([
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "--digestfile",
        digest_file.to_str().unwrap(),
        "app",
        &reg.docker("app:1"),
    ]);
    let raw = Skopeo::new().inspect_raw(&reg, "app:1");
    let pushed: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        pushed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(pushed["manifests"], again["manifests"]);
    assert_eq!(
        std::fs::read_to_string(&digest_file).unwrap(),
        format!("sha256:{}", kiln_tests::util::sha256_bytes(&raw))
    );
    for arch in ["amd64", "arm64"] {
        let out = tempfile::tempdir().unwrap();
        Skopeo::new().copy_from(
            &reg,
            "app:1",
            &format!("oci:{}:x", out.path().display()),
            &["--override-arch", arch],
        );
        let config = skopeo_json(&[
            "inspect",
            "--config",
            &format!("oci:{}:x", out.path().display()),
        ]);
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["history"].as_array().unwrap().len(), 3, "{config}");
    }
    // A list goes to a tag; converting needs the images pushed too.
    let err = kiln.run_fail([
        "manifest",
        "push",
        "--tls-verify=false",
        "app",
        &reg.docker(&format!("app@sha256:{}", "1".repeat(64))),
    ]);
    assert!(err.contains("to a tag, not a digest"), "{err}");
    let err = kiln.run_fail([
        "manifest",
        "push",
        "--format",
        "v2s2",
        "--tls-verify=false",
        "app",
        &reg.docker("app:v2s2"),
    ]);
    assert!(err.contains("--all"), "{err}");
    // As a Docker manifest list, the images converted with it.
    kiln.run([
        "manifest",
        "push",
        "--all",
        "--format",
        "v2s2",
        "--tls-verify=false",
        "app",
        &reg.docker("app:docker"),
    ]);
    let docker: Value =
        serde_json::from_slice(&Skopeo::new().inspect_raw(&reg, "app:docker")).unwrap();
    assert_eq!(
        docker["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert!(
        docker["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json")
    );

    // create/add/remove/exists/rm.
    let entry = again["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    kiln.run(["manifest", "create", "other"]);
    let err = kiln.run_fail(["manifest", "create", "other"]);
    assert!(err.contains("already exists"), "{err}");
    kiln.run(["manifest", "add", "--arch", "riscv64", "other", &entry]);
    let other: Value = serde_json::from_str(&kiln.run(["manifest", "inspect", "other"])).unwrap();
    assert_eq!(other["manifests"][0]["platform"]["architecture"], "riscv64");
    kiln.run([
        "manifest",
        "annotate",
        "--variant",
        "rva23",
        "--annotation",
        "org.example.note=hi",
        "other",
        &entry,
    ]);
    let other: Value = serde_json::from_str(&kiln.run(["manifest", "inspect", "other"])).unwrap();
    assert_eq!(other["manifests"][0]["platform"]["variant"], "rva23");
    assert_eq!(
        other["manifests"][0]["annotations"]["org.example.note"],
        "hi"
    );
    kiln.run(["manifest", "remove", "other", &entry]);
    kiln.run(["manifest", "exists", "other"]);
    kiln.run(["manifest", "rm", "other"]);
    let o = kiln.output(["manifest", "exists", "other"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stderr.is_empty() && o.stdout.is_empty());
    let err = kiln.run_fail(["manifest", "rm", "nope", "app"]);
    assert!(err.contains("nope"), "{err}");
    assert_eq!(
        kiln.output(["manifest", "exists", "app"]).status.code(),
        Some(1)
    );
}

#[test]
fn manifest_add_records_registry_images_and_push_all_copies_them() {
    // CI pushed one image per architecture; a list is made of them without pulling layers.
    let reg = Registry::start(Variant::Plain);
    let work = tempfile::tempdir().unwrap();
    let archs = ["amd64", "arm64"];
    let (mut layout, images) = busybox_per_arch(work.path(), &archs);
    for (arch, image) in archs.iter().zip(&images) {
        layout.tag(image, arch);
        Skopeo::new().copy_to(
            &format!("oci:{}:{arch}", layout.dir().display()),
            &reg,
            &format!("app:{arch}"),
            &["--preserve-digests"],
        );
    }
    let manifest: Value =
        serde_json::from_slice(&Skopeo::new().inspect_raw(&reg, "app:amd64")).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let kiln = Kiln::new();
    kiln.run(["manifest", "create", "app"]);
    for arch in ["amd64", "arm64"] {
        kiln.run([
            "manifest",
            "add",
            "--tls-verify=false",
            "app",
            &reg.docker(&format!("app:{arch}")),
        ]);
    }
    let (list, archs) = list_archs(&kiln, "app");
    assert_eq!(archs, ["amd64", "arm64"]);
    // Recorded, not pulled: no image and no layer in the store.
    assert_eq!(kiln.run(["images", "-q"]).trim(), "");
    let layer_path = kiln
        .root()
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    assert!(!layer_path.exists());
    // What the list needs survives a prune: its entries' manifests and configs.
    kiln.run(["prune"]);
    let after: Value = serde_json::from_str(&kiln.run(["manifest", "inspect", "app"])).unwrap();
    assert_eq!(after, list);
    for m in list["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
        assert!(kiln.root().join("blobs/sha256").join(d).exists(), "{m}");
    }

    // Into another repository of the same registry: the layers are mounted.
    kiln.run([
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "app",
        &reg.docker("multi:1"),
    ]);
    assert!(!layer_path.exists());
    // Into another registry: copied through the store, from the repository the list recorded
    // (not the best-effort memory of where blobs were seen, which is gone).
    std::fs::remove_file(kiln.root().join("registry/blob-locations.json")).unwrap();
    let other = Registry::start(Variant::Plain);
    kiln.run([
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "app",
        &other.docker("multi:1"),
    ]);
    for r in [&reg, &other] {
        let pushed: Value =
            serde_json::from_slice(&Skopeo::new().inspect_raw(r, "multi:1")).unwrap();
        assert_eq!(pushed["manifests"], list["manifests"]);
        for arch in ["amd64", "arm64"] {
            let out = tempfile::tempdir().unwrap();
            let dest = format!("oci:{}:x", out.path().display());
            Skopeo::new().copy_from(r, "multi:1", &dest, &["--override-arch", arch]);
            let config = skopeo_json(&["inspect", "--config", &dest]);
            assert_eq!(config["architecture"], arch);
        }
    }
    // A source that lost the image: the push names the blob it could not get.
    let kiln2 = Kiln::new();
    kiln2.run(["manifest", "create", "app"]);
    kiln2.run([
        "manifest",
        "add",
        "--tls-verify=false",
        "app",
        &reg.docker("app:amd64"),
    ]);
    drop(reg);
    let err = kiln2.run_fail([
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "app",
        &other.docker("elsewhere:1"),
    ]);
    assert!(err.contains(&layer), "{err}");
}

#[test]
fn local_transports_behave_as_buildahs() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let kiln = Kiln::new();
    let busybox = reg.reference("busybox:latest");
    kiln.run(["pull", "-q", "--tls-verify=false", &busybox]);
    kiln.run(["tag", &busybox, "localhost/other:1"]);
    // Images pushed into one oci: directory stay side by side; a name pushed again is replaced.
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("layout");
    for (image, r) in [
        (&*busybox, "bb"),
        ("localhost/other:1", "o1"),
        (&*busybox, "bb"),
    ] {
        kiln.run(["push", "-q", image, &format!("oci:{}:{r}", dir.display())]);
    }
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["o1", "bb"]);
    for r in ["bb", "o1"] {
        skopeo_json(&["inspect", &format!("oci:{}:{r}", dir.display())]);
    }
    // Pulled back, an image is named after its reference (buildah's localhost/REF), so prune
    // keeps it.
    let fresh = Kiln::new();
    fresh.run(["pull", "-q", &format!("oci:{}:o1", dir.display())]);
    fresh.run(["prune"]);
    assert_eq!(
        fresh
            .run(["images", "--format", "{{.Name}}:{{.Tag}}"])
            .trim(),
        "localhost/o1:latest"
    );
    // A docker-archive's plain-tar layers are stored compressed, so they leave kiln compressed.
    let archive = out.path().join("b.da");
    kiln.run([
        "push",
        "-q",
        &busybox,
        &format!("docker-archive:{}:x/bb:1", archive.display()),
    ]);
    let k2 = Kiln::new();
    k2.run([
        "pull",
        "-q",
        &format!("docker-archive:{}", archive.display()),
    ]);
    // Named by every RepoTags entry (the reference pushed, then the image's names).
    let mut names: Vec<String> = k2
        .run(["images", "--format", "{{.Name}}:{{.Tag}}"])
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    let mut want = vec![
        "docker.io/x/bb:1".to_string(),
        busybox.clone(),
        "localhost/other:1".to_string(),
    ];
    want.sort();
    assert_eq!(names, want);
    let again = out.path().join("again");
    k2.run(["push", "-q", "x/bb:1", &format!("oci:{}", again.display())]);
    let m = skopeo_json(&["inspect", "--raw", &format!("oci:{}", again.display())]);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // An OCI layout holds an OCI manifest: a stored Docker manifest is converted (skopeo finds
    // only OCI manifests in a layout).
    kiln.run([
        "push",
        "-q",
        "--format",
        "docker",
        &busybox,
        &format!("docker://{}", reg.reference("as-docker:1")),
        "--tls-verify=false",
    ]);
    let k3 = Kiln::new();
    k3.run([
        "pull",
        "-q",
        "--tls-verify=false",
        &reg.reference("as-docker:1"),
    ]);
    let converted = out.path().join("converted");
    let digest_file = out.path().join("converted-digest");
    k3.run([
        "push",
        "-q",
        "--digestfile",
        digest_file.to_str().unwrap(),
        &reg.reference("as-docker:1"),
        &format!("oci:{}", converted.display()),
    ]);
    let m = skopeo_json(&["inspect", "--raw", &format!("oci:{}", converted.display())]);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let inspected = skopeo_json(&["inspect", &format!("oci:{}", converted.display())]);
    assert_eq!(
        inspected["Digest"].as_str().unwrap(),
        std::fs::read_to_string(&digest_file).unwrap()
    );
    // --digestfile for a local transport: the manifest digest.
    let digest_file = out.path().join("digest");
    kiln.run([
        "push",
        "-q",
        "--digestfile",
        digest_file.to_str().unwrap(),
        &busybox,
        &format!("oci-archive:{}", out.path().join("a.tar").display()),
    ]);
    let want = kiln.run(["images", "--format", "{{.Digest}}", &busybox]);
    assert_eq!(
        std::fs::read_to_string(&digest_file).unwrap(),
        want.lines().next().unwrap()
    );
    // containers-storage: is kiln's own store, never a registry.
    kiln.run(["push", &busybox, "containers-storage:localhost/copied:1"]);
    let id = kiln.run(["pull", "containers-storage:localhost/copied:1"]);
    assert_eq!(
        id.trim(),
        kiln.run(["images", "-q", "--no-trunc", &busybox])
            .trim()
            .trim_start_matches("sha256:")
    );
    let err = kiln.run_fail(["push", &busybox, "bogus:foo/x:1"]);
    assert!(err.contains("unknown transport \"bogus\""), "{err}");
    let err = kiln.run_fail(["pull", "--authfile", "/nonexistent/auth.json", &busybox]);
    assert!(err.contains("checking authfile"), "{err}");
}
