//! buildah-style scripting with kiln's working-container verbs: the shared corpus of buildah
//! scripts run once with `kiln` and once with buildah 1.28 must give equivalent images (config,
//! flattened filesystem and layer count, compared by `ocitree.py`); working containers persist
//! between invocations, are listed, and `kiln rm -a` removes them with every mount; misuse fails
//! with a clear message and a non-zero status.
//!
//! Each script also runs as a build file, `kiln build -f SCRIPT.sh`, through the buildah-script
//! frontend plugin, and that image must equal buildah's too.
//!
//! Each script runs under `bash` in a copy of the scripts folder (its context) with the corpus
//! registry `127.0.0.1:5000` replaced by a loopback registry holding busybox, and `buildah`
//! resolved through `PATH` to a wrapper: for kiln, every `buildah` word is rewritten to `kiln` and
//! `kiln` runs with the test's store; for the reference, buildah runs with a private store, chroot
//! isolation and the loopback registry marked insecure.

#[path = "../conformance/support.rs"]
mod support;

use kiln_tests::util::lossy;
use kiln_tests::{Kiln, kiln_bin};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// The buildah scripts of the shared corpus and their context.
const SCRIPTS: &str = "/work/shared/conformance/scripts";

/// A shell word quoted for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Write an executable `dir/name` that runs `cmd` (program, arguments and environment changes)
/// with the script's own arguments appended.
fn wrapper(dir: &Path, name: &str, cmd: &Command) {
    let mut text = String::from("#!/bin/sh\n");
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => text.push_str(&format!(
                "export {}={}\n",
                k.to_string_lossy(),
                sh_quote(&v.to_string_lossy())
            )),
            None => text.push_str(&format!("unset {}\n", k.to_string_lossy())),
        }
    }
    // An absolute program path: the wrapper may shadow the program's own name in PATH.
    let program = PathBuf::from(cmd.get_program());
    let program = if program.is_absolute() {
        program
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(&program))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{} is not in PATH", program.display()))
    };
    text.push_str("exec ");
    text.push_str(&sh_quote(&program.to_string_lossy()));
    for a in cmd.get_args() {
        text.push(' ');
        text.push_str(&sh_quote(&a.to_string_lossy()));
    }
    text.push_str(" \"$@\"\n");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("writing a wrapper");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
}

/// Run `script` (text) with bash in `ctx`, `bin` first in `PATH`; panics with its output on
/// failure.
fn run_script(name: &str, script: &str, ctx: &Path, bin: &Path) {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("bash")
        .arg("-euc")
        .arg(script)
        .current_dir(ctx)
        .env("PATH", path)
        .env("BUILDAH_ISOLATION", "chroot")
        .output()
        .expect("running bash");
    assert!(
        o.status.success(),
        "{name} failed ({}):\n--- script\n{script}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        lossy(&o.stdout),
        lossy(&o.stderr)
    );
}

/// The image name a script commits (the last word of its `buildah commit` line).
fn committed_name(script: &str) -> String {
    script
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with("buildah commit "))
        .find_map(|l| l.split_whitespace().last())
        .expect("the script commits an image")
        .to_string()
}

/// Run corpus script `file` with buildah and with kiln, push both images to oci-archives and
/// require `ocitree.py diff` to find them equal (layer count included).
fn check_script(file: &str) {
    let text = std::fs::read_to_string(Path::new(SCRIPTS).join(file))
        .unwrap_or_else(|e| panic!("reading {file}: {e}"));
    check_script_text(file, &text);
}

/// [`check_script`] for a script given as text (run in the corpus scripts' context).
fn check_script_text(file: &str, text: &str) {
    let bases = Bases::start(false);
    let host = bases.host();
    let text = text.replace(CORPUS_REGISTRY, &host);
    let image = committed_name(&text);
    let out = tempfile::tempdir().expect("temp dir");
    // A docker-format commit goes to a docker-archive (an OCI one drops the docker-only fields).
    let fmt_args: Vec<String> = if text.contains("commit --format docker") {
        vec!["--format".into(), "docker".into()]
    } else {
        vec![]
    };

    // The reference: buildah 1.28.
    let buildah = Buildah::new(&bases.reg);
    let bin_b = tempfile::tempdir().expect("temp dir");
    wrapper(bin_b.path(), "buildah", &buildah.cmd());
    let ctx_b = copy_context(Path::new(SCRIPTS), &host);
    run_script(
        &format!("{file} (buildah)"),
        &text,
        ctx_b.path(),
        bin_b.path(),
    );
    let theirs = out.path().join("buildah.tar");
    buildah.push_archive(&image, &theirs, &fmt_args);

    // kiln's verbs in place of buildah's.
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let bin_k = tempfile::tempdir().expect("temp dir");
    wrapper(bin_k.path(), "kiln", &kiln.cmd(Vec::<&str>::new()));
    let ctx_k = copy_context(Path::new(SCRIPTS), &host);
    let ours_text = text
        .lines()
        .map(|l| match l.find("buildah") {
            Some(_) if !l.trim_start().starts_with('#') => l.replace("buildah ", "kiln "),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!ours_text.contains("$(buildah") && !ours_text.contains("\nbuildah "));
    run_script(
        &format!("{file} (kiln)"),
        &ours_text,
        ctx_k.path(),
        bin_k.path(),
    );
    let ours = out.path().join("kiln.tar");
    kiln.run(["push", "--quiet", &image, &archive_dest(&ours, &fmt_args)]);
    assert_eq!(
        kiln.run(["containers", "-q"]).trim(),
        "",
        "{file} removes its container"
    );

    // The same script as a build file, through the buildah-script frontend (picked by the
    // `.sh` extension): `kiln build` with no -t names the image as the script's commit does.
    let built_by = Kiln::new();
    built_by.mark_insecure(&bases.reg);
    let ctx_f = copy_context(Path::new(SCRIPTS), &host);
    // Outside the context: `add $c . /ctx/` must not pick it up.
    let script_file = out
        .path()
        .join(format!("{}.sh", file.trim_end_matches(".sh")));
    std::fs::write(&script_file, &text).expect("writing the script");
    let mut build = vec![
        "build".to_string(),
        "-f".into(),
        script_file.to_string_lossy().into_owned(),
    ];
    build.extend(fmt_args.iter().cloned());
    build.push(ctx_f.path().to_string_lossy().into_owned());
    built_by.run(&build);
    let built = out.path().join("frontend.tar");
    built_by.run(["push", "--quiet", &image, &archive_dest(&built, &fmt_args)]);
    assert_eq!(
        built_by.run(["containers", "-q"]).trim(),
        "",
        "{file}: a build leaves no working container"
    );

    for (what, ours) in [("verbs", &ours), ("frontend", &built)] {
        let (same, report) = diff(&theirs, ours, &[], &[]);
        assert!(
            same,
            "{file}: kiln's image ({what}) differs from buildah's ({} vs {}):\n{report}",
            theirs.display(),
            ours.display()
        );
        let (s_theirs, s_ours) = (summary(&theirs), summary(ours));
        assert_eq!(
            s_theirs["layers"], s_ours["layers"],
            "{file} ({what}): layer count"
        );
        assert_eq!(
            s_theirs["meta"]["history_entries"], s_ours["meta"]["history_entries"],
            "{file} ({what}): one history entry per commit, as buildah"
        );
    }
}

#[test]
fn script_01_scratch_runecho() {
    check_script("01-scratch-runecho.sh");
}

#[test]
fn script_02_busybox_tool() {
    check_script("02-busybox-tool.sh");
}

// Beyond the corpus: what `run` deleted stays deleted under a copy into a re-created directory
// (an opaque directory over the whiteout), `--chown` by name, `--chmod`, `add` of a directory,
// `copy --from` another container, env expansion, volumes, stop signal, annotations, shell-form
// entrypoint, hard links a `run` made, and two commits of the same container (each one layer more
// than the base).
#[test]
fn script_own_mixed_verbs() {
    let text = r#"
src=$(buildah from 127.0.0.1:5000/busybox:latest)
buildah run $src -- sh -c 'mkdir -p /data && echo payload > /data/p && chmod 600 /data/p'
c=$(buildah from --name mixed 127.0.0.1:5000/busybox:latest)
buildah run $c -- sh -c 'rm -rf /usr/sbin && mkdir -p /var/lib/x && echo 1 > /var/lib/x/one && echo l > /var/lib/x/l1 && ln /var/lib/x/l1 /var/lib/x/l2'
buildah copy --chmod 0751 $c ./runecho.sh /usr/sbin/runecho.sh
buildah copy --chown nobody $c ./runecho.sh /home/
buildah add $c . /ctx/
buildah copy --from $src $c /data/p /srv/p
buildah config --env A=1 --env 'B=${A}2' --volume /vol --stop-signal SIGINT --entrypoint 'exec /usr/sbin/runecho.sh' --annotation team=kiln $c
buildah commit $c mixed-first
buildah run $c -- sh -c 'rm /var/lib/x/one && touch /var/lib/x/two'
buildah commit $c mixed
buildah rm $c $src
"#;
    check_script_text("own-mixed-verbs", text);
}

// `commit --squash`: one layer holding the base's files too, through the verbs and through the
// build file (whose squashed layer comes from the build cache when nothing changed).
#[test]
fn script_own_squash() {
    let text = r#"
c=$(buildah from 127.0.0.1:5000/busybox:latest)
buildah run $c -- sh -c 'echo one > /one && rm /bin/ls'
buildah commit --squash $c squashed
buildah rm $c
"#;
    check_script_text("own-squash", text);
}

// The docker format keeps HEALTHCHECK, SHELL and ONBUILD set by `config`.
#[test]
fn script_own_docker_format() {
    let text = r#"
c=$(buildah from 127.0.0.1:5000/busybox:latest)
buildah run $c -- touch /ok
buildah config --healthcheck 'CMD-SHELL test -f /ok' --healthcheck-interval 30s --healthcheck-retries 3 $c
buildah config --shell '/bin/sh -ec' --onbuild 'RUN echo hi' --cmd '["sh", "-c", "echo ok"]' --user nobody $c
buildah commit --format docker $c tool-docker
buildah rm $c
"#;
    check_script_text("own-docker-format", text);
}

/// Mount points below `root` in this process's mount namespace.
fn mounts_under(root: &Path) -> Vec<String> {
    let me = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&me))
        .map(str::to_string)
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn container_names(kiln: &Kiln) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&kiln.run(["containers", "--format", "json"])).expect("JSON list");
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|c| c["containername"].as_str().unwrap_or_default().to_string())
        .collect()
}

// Containers live in the store: each verb below is a separate kiln process, and what one did
// (run, copy, config, mount) is there for the next; `kiln rm -a` removes every container and
// every mount made by `kiln mount`.
#[test]
fn containers_persist_and_rm_all_cleans_up() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let busybox = bases.reg.reference("busybox:latest");

    let a = kiln.run(["from", "--quiet", &busybox]).trim().to_string();
    assert_eq!(a, "busybox-working-container");
    let b = kiln.run(["from", &busybox]).trim().to_string();
    assert_eq!(b, "busybox-working-container-1", "numbered on collision");
    let s = kiln.run(["from", "scratch"]).trim().to_string();
    assert_eq!(s, "working-container");
    let named = kiln
        .run(["from", "--name", "mine", "scratch"])
        .trim()
        .to_string();
    assert_eq!(named, "mine");
    let err = kiln.run_fail(["from", "--name", "mine", "scratch"]);
    assert!(err.contains("mine"), "a taken name is refused: {err}");
    assert_eq!(
        container_names(&kiln),
        vec![a.clone(), b.clone(), s.clone(), named.clone()]
    );
    assert_eq!(kiln.run(["containers", "-q"]).lines().count(), 4);
    let table = kiln.run(["containers"]);
    assert!(
        table.starts_with("CONTAINER ID") && table.contains(&b),
        "{table}"
    );

    // run, then copy, config and a second run in later invocations.
    kiln.run(["run", &a, "--", "sh", "-c", "echo one > /made-by-run"]);
    let host_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(host_file.path(), "copied\n").unwrap();
    kiln.run([
        "copy",
        "--chmod",
        "0640",
        "--chown",
        "1:1",
        &a,
        &host_file.path().display().to_string(),
        "/srv/copied.txt",
    ]);
    kiln.run(["config", "--workingdir", "/srv", "--env", "GREETING=hi", &a]);
    kiln.run([
        "run",
        "--env",
        "EXTRA=x",
        &a,
        "--",
        "sh",
        "-c",
        "test \"$PWD\" = /srv && test \"$GREETING$EXTRA\" = hix && cat copied.txt /made-by-run > both",
    ]);
    let inspect: serde_json::Value =
        serde_json::from_str(&kiln.run(["inspect", "--type", "container", &a])).expect("JSON");
    assert_eq!(inspect["Container"], a.as_str());
    assert_eq!(inspect["OCIv1"]["config"]["WorkingDir"], "/srv");
    assert_eq!(inspect["MountPoint"], "", "not mounted");
    let err = kiln.run_fail(["inspect", "--type", "image", &a]);
    assert!(!err.is_empty());

    // Commit to an archive: the changes of all those invocations are one new layer.
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("a.tar");
    kiln.run([
        "commit",
        "--quiet",
        &a,
        &format!("oci-archive:{}:latest", tar.display()),
    ]);
    let images = kiln.run(["images", "-q"]);
    assert_eq!(
        images.lines().count(),
        1,
        "only busybox is stored: {images}"
    );
    // The commit names its base image, as buildah's does.
    let manifest: serde_json::Value = serde_json::from_slice(&archive_blob(
        &tar,
        summary(&tar)["meta"]["manifest_digest"].as_str().unwrap(),
    ))
    .unwrap();
    let base_digest = kiln.run(["images", "--format", "{{.Digest}}", &busybox]);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        base_digest.trim()
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        busybox.as_str()
    );
    let squashed = out.path().join("squashed.tar");
    kiln.run([
        "commit",
        "--quiet",
        "--squash",
        &a,
        &format!("oci-archive:{}:latest", squashed.display()),
    ]);
    let sum = summary(&squashed);
    assert_eq!(sum["layers"], 1, "--squash makes one layer");
    assert_file(&sum, "/srv/both", b"copied\none\n");
    assert!(
        file(&sum, "/bin/busybox").is_some(),
        "the base is in the one layer"
    );
    let sum = summary(&tar);
    assert_eq!(
        sum["layers"], 2,
        "busybox's layer plus one: {}",
        sum["meta"]
    );
    assert_file(&sum, "/srv/both", b"copied\none\n");
    let copied = file(&sum, "/srv/copied.txt").expect("copied file");
    assert_eq!(
        (copied["mode"].as_str(), copied["uid"].as_u64()),
        (Some("0640"), Some(1))
    );
    assert_eq!(
        sum["config"]["Env"].as_array().unwrap().last().unwrap(),
        "GREETING=hi"
    );

    if is_root() {
        // A mount made by `kiln mount` outlives the process until umount or rm.
        let mp = kiln.run(["mount", &a]).trim().to_string();
        assert!(mounts_under(kiln.root()).contains(&mp), "{mp} is mounted");
        let inspect: serde_json::Value =
            serde_json::from_str(&kiln.run(["inspect", "--type", "container", &a])).unwrap();
        assert_eq!(inspect["MountPoint"], mp.as_str());
        assert_eq!(
            std::fs::read_to_string(Path::new(&mp).join("srv/both")).unwrap(),
            "copied\none\n"
        );
        // Writes through the mount are the container's.
        std::fs::write(Path::new(&mp).join("via-mount"), "m").unwrap();
        kiln.run(["run", &a, "--", "test", "-f", "/via-mount"]);
        let listed = kiln.run(["mount"]);
        assert!(listed.contains(&a) && listed.contains(&mp), "{listed}");
        kiln.run(["umount", &a]);
        assert!(mounts_under(kiln.root()).is_empty());
        kiln.run(["run", &a, "--", "test", "-f", "/via-mount"]);
        let mp_b = kiln.run(["mount", &b]).trim().to_string();
        kiln.run(["mount", &s]);
        assert_eq!(mounts_under(kiln.root()).len(), 2, "{mp_b}");

        // Inside `kiln unshare` a mount stays in that namespace.
        let script = format!(
            "mp=$({} --root {} mount {named}) && touch \"$mp/from-unshare\" && grep -q \" $mp \" /proc/self/mountinfo",
            kiln_bin().display(),
            kiln.root().display()
        );
        kiln.run(["unshare", "--", "sh", "-c", &script]);
        assert_eq!(
            mounts_under(kiln.root()).len(),
            2,
            "the unshare mount did not leak"
        );
    }

    let removed = kiln.run(["rm", "-a"]);
    assert_eq!(removed.lines().count(), 4, "{removed}");
    assert!(container_names(&kiln).is_empty());
    assert!(
        mounts_under(kiln.root()).is_empty(),
        "mounts left under the store: {:?}",
        mounts_under(kiln.root())
    );
    let left: Vec<PathBuf> = std::fs::read_dir(kiln.root().join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "container directories left: {left:?}");
}

// Rootless (run here as `nobody` when the tests run as root): `kiln mount` refuses outside a user
// namespace and names `kiln unshare`; inside `kiln unshare` it mounts, and the mount stays in
// that namespace.
#[test]
fn rootless_mount_needs_unshare() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("rootless_mount_needs_unshare: skipped (needs root to become nobody)");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("kiln-rootless.")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let store = dir.path().join("store");
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(kiln_bin())
            .arg("--root")
            .arg(&store)
            .args(args)
            .env("HOME", dir.path())
            .env("KILN_LOG", "error")
            .output()
            .expect("running setpriv")
    };
    let o = as_nobody(&["from", "scratch"]);
    assert!(o.status.success(), "{}", lossy(&o.stderr));
    let c = lossy(&o.stdout).trim().to_string();
    let o = as_nobody(&["mount", &c]);
    assert!(!o.status.success());
    assert!(
        lossy(&o.stderr).contains("kiln unshare"),
        "{}",
        lossy(&o.stderr)
    );
    let script = format!(
        "mp=$({} --root {} mount {c}) && touch \"$mp/made-inside\" && grep -q \" $mp \" /proc/self/mountinfo",
        kiln_bin().display(),
        store.display()
    );
    let o = as_nobody(&["unshare", "--", "sh", "-c", &script]);
    assert!(o.status.success(), "{}", lossy(&o.stderr));
    assert!(
        mounts_under(dir.path()).is_empty(),
        "nothing mounted outside"
    );
    let o = as_nobody(&["rm", "-a"]);
    assert!(o.status.success(), "{}", lossy(&o.stderr));
}

// Misuse fails with a message naming what is wrong and a non-zero status; a failing command's
// status is kiln run's.
#[test]
fn errors_are_clear() {
    let kiln = Kiln::new();
    let err = kiln.run_fail(["run", "nosuch", "--", "true"]);
    assert!(
        err.contains("nosuch") && err.contains("no working container"),
        "{err}"
    );
    let c = kiln.run(["from", "scratch"]).trim().to_string();
    let o = kiln.output(["run", &c, "--", "/bin/sh", "-c", "exit 3"]);
    assert!(!o.status.success(), "no /bin/sh in scratch");
    kiln.run(["rm", &c]);
    let err = kiln.run_fail(["commit", &c, "gone"]);
    assert!(
        err.contains(&c) && err.contains("no working container"),
        "{err}"
    );
    let err = kiln.run_fail(["rm", &c]);
    assert!(err.contains(&c), "{err}");
    let err = kiln.run_fail(["copy", "nosuch", "/etc/hostname", "/x"]);
    assert!(err.contains("nosuch"), "{err}");

    let bases = Bases::start(false);
    let mut k2 = Kiln::new();
    k2.env("KILN_LOG", "error");
    k2.mark_insecure(&bases.reg);
    let c = k2
        .run(["from", &bases.reg.reference("busybox:latest")])
        .trim()
        .to_string();
    let o = k2.output(["run", &c, "--", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", lossy(&o.stderr));
    let err = k2.run_fail([
        "config",
        "--healthcheck-interval",
        "soon",
        "--healthcheck",
        "CMD true",
        &c,
    ]);
    assert!(err.contains("soon"), "{err}");
    k2.run(["rm", "--all"]);
}

/// A build script's mistakes stop the build before anything runs, naming `file:line:column`;
/// a failing `run` names its line; the store keeps no image and no working container. The
/// frontend is picked by `# syntax=buildah-script` as well as by the `.sh`/`.buildah` extension.
#[test]
fn build_script_errors_name_their_line() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let busybox = bases.reg.reference("busybox:latest");
    let ctx = tempfile::tempdir().expect("temp dir");
    std::fs::write(ctx.path().join("f"), "x").unwrap();
    let cases = [
        (
            "bad-verb.sh",
            "c=$(buildah from scratch)\n\nbuildah frobnicate $c\n".to_string(),
            "bad-verb.sh:3:9: error: buildah frobnicate is not supported",
        ),
        (
            "unset.buildah",
            "c=$(buildah from scratch)\nbuildah copy $ctr f /\nbuildah commit $c x\n".to_string(),
            "unset.buildah:2:14: error: variable ctr is not set",
        ),
        (
            "no-extension",
            "# syntax=buildah-script\nc=$(buildah from scratch)\nbuildah config --cmd 'x' $c | tee\n"
                .to_string(),
            "no-extension:3:29: error: pipes",
        ),
        (
            "quote.sh",
            "c=$(buildah from scratch)\nbuildah config --label 'a=b $c\n".to_string(),
            "quote.sh:2:24: error: a single quote is not closed",
        ),
        (
            "caps.sh",
            "c=$(buildah from --security-opt label=disable scratch)\nbuildah run --cap-add SYS_ADMIN $c -- true\n"
                .to_string(),
            "caps.sh:2:13: error: buildah run --cap-add SYS_ADMIN: a build script cannot change one step's confinement; give `kiln build --cap-add SYS_ADMIN`",
        ),
        (
            "failing-run.sh",
            format!("c=$(buildah from {busybox})\nbuildah copy $c f /f\nbuildah run $c -- sh -c 'echo oops >&2; exit 7'\nbuildah commit $c never\n"),
            "failing-run.sh:3",
        ),
    ];
    for (name, text, want) in cases {
        let file = ctx.path().join(name);
        std::fs::write(&file, text).unwrap();
        let o = kiln.output([
            "build".as_ref(),
            "-f".as_ref(),
            file.as_os_str(),
            ctx.path().as_os_str(),
        ]);
        let err = lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: the build succeeded");
        assert!(err.contains(want), "{name}: {want:?} not in:\n{err}");
        if name == "failing-run.sh" {
            assert!(
                err.contains("exit status 7") && err.contains("oops"),
                "{err}"
            );
        }
    }
    let images = kiln.run(["images"]);
    assert!(
        !images.contains("never") && !images.contains("localhost/x"),
        "only the base image is left:\n{images}"
    );
    assert_eq!(
        kiln.run(["containers", "-q"]).trim(),
        "",
        "no container is left"
    );
}

/// `from --cap-add/--cap-drop/--ulimit/--device` apply to every later `run` of the container,
/// `run --cap-add/--cap-drop` to that command only, as with buildah; a bad value is refused.
#[test]
fn from_and_run_take_capabilities_limits_and_devices() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let busybox = bases.reg.reference("busybox:latest");
    let c = kiln
        .run([
            "from",
            "--cap-add",
            "NET_RAW",
            "--cap-drop",
            "chown",
            "--ulimit",
            "nofile=256:512",
            "--device",
            "/dev/zero:/dev/kiln-zero",
            &busybox,
        ])
        .trim()
        .to_string();
    let bounding = |extra: &[&str]| -> String {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend([
            c.as_str(),
            "--",
            "sh",
            "-c",
            "grep CapBnd /proc/self/status",
        ]);
        kiln.run(args).trim().to_string()
    };
    // buildah's 800405fb, CHOWN dropped and NET_RAW added.
    assert_eq!(bounding(&[]), "CapBnd:\t00000000800425fa");
    assert_eq!(
        bounding(&["--cap-drop", "NET_RAW"]),
        "CapBnd:\t00000000800405fa"
    );
    assert_eq!(
        bounding(&["--cap-add", "ALL"]).len(),
        "CapBnd:\t".len() + 16
    );
    let out = kiln.run([
        "run",
        &c,
        "--",
        "sh",
        "-c",
        "ulimit -n; head -c 4 /dev/kiln-zero | od -An -tx1",
    ]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["256", "00", "00", "00", "00"]
    );
    let err = kiln.run_fail([
        "run",
        "--cap-add",
        "KILL",
        "--cap-drop",
        "kill",
        &c,
        "--",
        "true",
    ]);
    assert!(err.contains("both added and dropped"), "{err}");
    let err = kiln.run_fail(["from", "--ulimit", "nofile=2:1", "scratch"]);
    assert!(err.contains("--ulimit nofile=2:1"), "{err}");
    kiln.run(["rm", &c]);
}
