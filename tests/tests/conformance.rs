//! Differential conformance of `kiln build` against buildah 1.28 (the reference daemonless
//! builder) on the shared Dockerfile corpus, plus kiln's own cases (`tests/conformance/`) for what
//! the corpus misses or buildah 1.28 lacks (heredocs, ADD --chown of archives), checked by hand
//! against the Dockerfile reference and BuildKit.
//!
//! Each case is copied to a temporary context with its base images pointed at a loopback
//! registry, built by both tools into oci-archives and compared with `ocitree.py diff` (config
//! and flattened filesystem; timestamps never compared). buildah's images are cached by input
//! under the test cache (`KILN_CONFORMANCE_FRESH=1` rebuilds them).
//!
//! Where kiln deliberately differs from buildah 1.28 the comparison is narrowed, with the reason:
//! - kiln makes no layer for a step that changes nothing (buildah makes an empty one): the layer
//!   counts are compared separately, expecting exactly that many fewer;
//! - kiln removes the mount points it had to create for `RUN --mount` targets (as BuildKit does);
//!   buildah leaves empty directories (and `/run/secrets` stubs, under the always-ignored `/run`);
//! - `ADD --chown` of an archive chowns its entries, and VOLUME directories keep later changes
//!   (both as BuildKit); those paths are checked by hand.
//!
//! `tests/conformance/README.md` lists kiln's own cases.
//!
//! Corpus status (all pass): 01 02 03 04 05 06 07 08 09; 02 also in the docker format. 08 (HTTPS
//! from RUN behind the host's intercepting proxy, with a `debian-py` base made by buildah) runs
//! only when the machine reaches pypi.org, and also checks that without the host's CA bundle the
//! build fails.

#[path = "../conformance/support.rs"]
mod support;

use kiln_tests::Kiln;
use kiln_tests::util::{lossy, sha256_bytes};
use serde_json::Value;
use std::path::{Path, PathBuf};
use support::*;

/// One build context ready for both tools: a registry with its bases, the context copied and
/// pointed at it (and finished by its `prepare.py`), its flags, and a kiln store.
struct Case {
    name: String,
    src: PathBuf,
    bases: Bases,
    ctx: tempfile::TempDir,
    args: Vec<String>,
    out: tempfile::TempDir,
    kiln: Kiln,
}

impl Case {
    fn corpus(name: &str) -> Case {
        Case::at(name, &Path::new(CORPUS).join(name))
    }

    fn own(name: &str) -> Case {
        Case::at(name, &own_case(name))
    }

    fn at(name: &str, src: &Path) -> Case {
        let dockerfile = std::fs::read_to_string(src.join("Dockerfile")).unwrap_or_default();
        let bases = Bases::for_dockerfile(&dockerfile);
        let ctx = copy_context(src, &bases.host());
        let args = case_args(ctx.path());
        let kiln = Kiln::new();
        kiln.mark_insecure(&bases.reg);
        Case {
            name: name.to_string(),
            src: src.to_path_buf(),
            bases,
            ctx,
            args,
            out: tempfile::tempdir().expect("temp dir"),
            kiln,
        }
    }

    fn ctx(&self) -> &Path {
        self.ctx.path()
    }

    /// buildah's image of this case (cached), built from its own copy of the context (buildah
    /// 1.28 lets `RUN --mount=type=bind,rw` write into the context).
    fn reference(&self) -> PathBuf {
        let theirs = copy_context(&self.src, &self.bases.host());
        reference(
            &self.bases,
            &self.name,
            &self.src,
            theirs.path(),
            &self.args,
        )
    }

    /// kiln's image of this case with `extra` flags, as `out/FILE` (a docker-archive for
    /// `--format docker`, else an oci-archive); returns its path and stdout.
    fn build(&self, file: &str, extra: &[&str]) -> (PathBuf, String) {
        let out = self.out.path().join(file);
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend(self.args.iter().cloned());
        let stdout = kiln_build_ok(&self.kiln, self.ctx(), &args, &out);
        (out, stdout)
    }

    /// Build with kiln and compare with buildah: see [`compare`].
    fn check(&self, extra: &[&str], fewer_layers: u64) -> PathBuf {
        let reference = self.reference();
        let (ours, _) = self.build("kiln.tar", &[]);
        compare(&self.name, &reference, &ours, extra, fewer_layers);
        ours
    }
}

/// `ocitree.py diff` of buildah's and kiln's images must find them equivalent, with `extra` path
/// ignores; kiln must have exactly `fewer_layers` layers fewer (steps that change nothing).
fn compare(name: &str, reference: &Path, ours: &Path, extra: &[&str], fewer_layers: u64) {
    let keys: &[&str] = if fewer_layers > 0 { &["layers"] } else { &[] };
    let (same, report) = diff(reference, ours, extra, keys);
    assert!(
        same,
        "{name}: kiln's image differs from buildah's ({} vs {}):\n{report}",
        reference.display(),
        ours.display()
    );
    if fewer_layers > 0 {
        let theirs = summary(reference)["layers"].as_u64().expect("layer count");
        let mine = summary(ours)["layers"].as_u64().expect("layer count");
        assert_eq!(
            mine + fewer_layers,
            theirs,
            "{name}: kiln should skip exactly {fewer_layers} empty layer(s) buildah makes"
        );
    }
}

// ---- the shared corpus ------------------------------------------------------------------------

// Multi-stage: gcc in debian (apt from the mirror), the static binary shipped FROM scratch.
#[test]
fn corpus_01_static_scratch() {
    Case::corpus("01-static-scratch").check(&[], 0);
}

// Every metadata instruction; SHELL, HEALTHCHECK (and ONBUILD) are dropped in the OCI format.
#[test]
fn corpus_02_metadata() {
    Case::corpus("02-metadata").check(&[], 0);
}

// The same in the docker format, where SHELL and HEALTHCHECK are kept.
#[test]
fn corpus_02_metadata_docker_format() {
    let mut case = Case::corpus("02-metadata");
    case.name = "02-metadata-docker".into();
    case.args
        .extend(["--format".to_string(), "docker".to_string()]);
    let ours = case.check(&[], 0);
    let s = summary(&ours);
    assert_eq!(
        s["config"]["Shell"],
        serde_json::json!(["/bin/sh", "-ec"]),
        "{}",
        s["config"]
    );
    assert!(
        s["config"]["Healthcheck"]["Test"].is_array(),
        "{}",
        s["config"]
    );
}

// COPY --chown/--chmod (new parents get the --chown owner), .dockerignore with `!`.
#[test]
fn corpus_03_copy_chown_chmod() {
    Case::corpus("03-copy-chown-chmod").check(&[], 0);
}

// ADD of local archives. The last RUN only tests: no layer in kiln.
#[test]
fn corpus_04_add_tar() {
    Case::corpus("04-add-tar").check(&[], 1);
}

// Whiteouts and opaque directories.
#[test]
fn corpus_05_whiteouts() {
    Case::corpus("05-whiteouts").check(&[], 0);
}

// RUN --mount=type=secret. The last RUN only tests: no layer in kiln. buildah's /run/secrets
// stubs fall under the always-ignored /run.
#[test]
fn corpus_06_secret() {
    Case::corpus("06-secret").check(&[], 1);
}

// HTTPS from RUN behind the host's intercepting proxy: with the host's CA bundle mounted by
// `--volume` (bud.args) or injected by `--inject proxy-ca` the build works and matches buildah;
// without it curl cannot verify pypi.org and the build fails. Skipped when this machine has no HTTPS egress.
#[test]
fn corpus_08_https_ca() {
    if !https_egress() {
        eprintln!(
            "corpus_08_https_ca: skipped, https://pypi.org is not reachable from this machine"
        );
        return;
    }
    let case = Case::corpus("08-https-ca");
    case.check(&[], 0);
    let o = kiln_build(
        &case.kiln,
        case.ctx(),
        &[],
        &case.out.path().join("negative.tar"),
    );
    let err = lossy(&o.stderr);
    if o.status.success() {
        // No interception here: the image's own CA bundle trusts pypi.org, so there is nothing
        // negative to check.
        eprintln!(
            "corpus_08_https_ca: HTTPS is not intercepted here; negative case not applicable"
        );
    } else {
        assert!(
            err.contains("Dockerfile:5") && err.contains("exit status 60"),
            "without the host CA, curl should fail to verify (exit 60) at line 5:\n{err}"
        );
    }
    // The same build with the proxy-CA injector instead of a hand-written --volume (its default
    // CA bundle is the host's SSL_CERT_FILE), nothing from the cache: equal to buildah's image.
    let injected = case.out.path().join("injected.tar");
    kiln_build_ok(
        &case.kiln,
        case.ctx(),
        &["--no-cache".to_string(), "--inject".to_string(), "proxy-ca".to_string()],
        &injected,
    );
    compare(&format!("{}-inject", case.name), &case.reference(), &injected, &[], 0);
}

// apt-get against the Debian mirror.
#[test]
fn corpus_07_apt() {
    Case::corpus("07-apt").check(&[], 0);
}

// Global ARGs, stage inheritance, COPY --from by index and name.
#[test]
fn corpus_09_stages_args() {
    Case::corpus("09-stages-args").check(&[], 0);
}

// A rebuild with nothing changed answers every step from the cache and gives the same image;
// an edit to an ignored file keeps the cache, a changed source invalidates its COPY and what
// follows (timings are in bench/build-vs-buildah.sh).
#[test]
fn unchanged_rebuild_hits_the_cache() {
    let case = Case::corpus("03-copy-chown-chmod");
    let (first, out1) = case.build("first.tar", &[]);
    assert!(
        !out1.contains("Using cache"),
        "a fresh store has no cache:\n{out1}"
    );
    let (second, out2) = case.build("second.tar", &[]);
    assert!(
        all_cached(&out2),
        "every step of an unchanged rebuild should come from the cache:\n{out2}"
    );
    let (m1, m2) = (
        summary(&first)["meta"].clone(),
        summary(&second)["meta"].clone(),
    );
    assert_eq!(
        m1["layer_digests"], m2["layer_digests"],
        "the cache gives the same layers"
    );
    // ... and the same image: as buildah reuses the image of a build whose steps all hit, the
    // rebuild does not write a copy that differs only in its timestamps.
    let image_id = |out: &str| out.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        image_id(&out1).len() >= 64,
        "no image id at the end of:\n{out1}"
    );
    assert_eq!(
        image_id(&out1),
        image_id(&out2),
        "an unchanged rebuild gives the same image"
    );
    std::fs::write(case.ctx().join("notes.tmp"), "ignored edit\n").expect("editing the context");
    let (_, out3) = case.build("third.tar", &[]);
    assert!(
        all_cached(&out3),
        "a change to an ignored file keeps the cache:\n{out3}"
    );
    std::fs::write(case.ctx().join("app/conf/app.conf"), "changed\n").expect("editing the context");
    let (_, out4) = case.build("fourth.tar", &[]);
    assert!(
        !out4.contains("Using cache"),
        "a changed source must be copied again, and what follows rerun:\n{out4}"
    );
}

// ---- kiln's own cases -------------------------------------------------------------------------

// --target builds only the named stage and what it needs (the last stage would fail).
#[test]
fn own_target_stage() {
    let case = Case::own("target-stage");
    let reference = case.reference();
    let (ours, out) = case.build("kiln.tar", &[]);
    compare("target-stage", &reference, &ours, &[], 0);
    assert!(
        !out.contains("unused.txt") && !out.contains("RUN false"),
        "stages the target does not need must not run:\n{out}"
    );
    let s = summary(&ours);
    assert!(file(&s, "/mid.txt").is_some() && file(&s, "/copied/base.txt").is_some());
    assert_eq!(s["config"]["Labels"]["stage"], "mid");
}

// ENTRYPOINT clears an inherited CMD; a CMD set earlier in the same stage survives.
#[test]
fn own_entrypoint_clears_inherited_cmd() {
    let case = Case::own("entrypoint-cmd");
    let ours = case.check(&[], 0);
    let last = summary(&ours);
    assert_eq!(last["config"]["Cmd"], serde_json::json!(["world"]));
    assert_eq!(
        last["config"]["Entrypoint"],
        serde_json::json!(["/bin/echo"])
    );
    let (first, _) = case.build("cleared.tar", &["--target", "cleared"]);
    let s = summary(&first);
    assert!(
        s["config"].get("Cmd").is_none(),
        "busybox's CMD must not survive ENTRYPOINT: {}",
        s["config"]
    );
    assert_eq!(
        s["config"]["Entrypoint"],
        serde_json::json!(["/bin/echo", "hello"])
    );
}

// ENV order in the config: the base's variables, then the stage's in the order it first set
// them; equal to buildah's, for the first stage (PATH re-set) and for a stage built on it.
#[test]
fn own_env_order() {
    let case = Case::own("env-order");
    let last = summary(&case.check(&[], 0));
    assert_eq!(
        last["config"]["Env"],
        serde_json::json!([
            "A=4",
            "C=3",
            "PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "D=8",
            "B=6",
            "E=7"
        ])
    );
    let (first, _) = case.build("first.tar", &["--target", "first"]);
    assert_eq!(
        summary(&first)["config"]["Env"],
        serde_json::json!([
            "A=4",
            "B=2",
            "C=3",
            "PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ])
    );
}

// Setuid/setgid bits of build-context sources: dropped by COPY and ADD (sticky bits kept), set
// by --chmod, kept in extracted archives and in copies from a stage; equal to buildah's.
#[test]
fn own_copy_setid() {
    let case = Case::own("copy-setid");
    let last = summary(&case.check(&[], 0));
    let mode = |s: &Value, p: &str| file(s, p).unwrap()["mode"].as_str().unwrap().to_string();
    assert_eq!(mode(&last, "/both"), "0750");
    assert_eq!(mode(&last, "/from-stage/tdir/tsuid"), "6755");
    assert_eq!(mode(&last, "/from-stage/chmodded"), "4755");
    let (first, _) = case.build("ctx.tar", &["--target", "ctx"]);
    let s = summary(&first);
    for dir in ["/copied", "/added"] {
        assert_eq!(mode(&s, &format!("{dir}/suid")), "0755");
        assert_eq!(mode(&s, &format!("{dir}/sgid")), "0755");
        assert_eq!(mode(&s, &format!("{dir}/sticky")), "1755");
        assert_eq!(mode(&s, &format!("{dir}/sgid-dir")), "0775");
        assert_eq!(mode(&s, &format!("{dir}/sticky-dir")), "1777");
    }
    assert_eq!(mode(&s, "/extracted/tdir"), "3775");
}

// `--layers=false` (buildah bud's default): one layer per stage, hard links kept across the
// fold, every instruction in the history and only each stage's last one carrying its layer.
// Equal to buildah's but for the metadata-only stage, which gets no (empty) layer in kiln.
#[test]
fn own_layers_false() {
    let case = Case::own("layers-false");
    let ours = case.check(&[], 1);
    let config = archive_config(&ours);
    let empty: Vec<bool> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(
        empty,
        [false, true, true, false, true, true, true, false],
        "{}",
        config["history"]
    );
    let s = summary(&ours);
    let linked = file(&s, "/copied/two").unwrap()["hardlinks"].clone();
    assert_eq!(linked, serde_json::json!(["/copied/b/two", "/copied/two"]));
    // A flag given twice: the last one counts, as with buildah (here `--layers=false`).
    let (twice, _) = case.build("twice.tar", &["--layers=true"]);
    assert_eq!(summary(&twice)["layers"], s["layers"]);
}

// `--squash`: one layer with the whole filesystem and the last history entry, equal to
// buildah's; `--omit-history` leaves the history out; buildah's `--rm`, `--force-rm`, `-D`,
// `--os` and `--arch` are accepted.
#[test]
fn own_squash() {
    let case = Case::own("squash");
    let ours = case.check(&[], 0);
    let config = archive_config(&ours);
    assert_eq!(summary(&ours)["layers"], 1);
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["created_by"], "/bin/sh -c #(nop) CMD [\"x\"]");
    assert!(!history[0]["empty_layer"].as_bool().unwrap_or(false));
    // An unchanged rebuild takes the squashed layer from the cache: of the flattened
    // filesystems (all removed before it) it makes only its base's, which FROM always has, not
    // the whole image's, and gives the same image.
    let small = tempfile::tempdir().unwrap();
    std::fs::write(
        small.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nRUN echo x > /x\n",
            case.bases.host()
        ),
    )
    .unwrap();
    let squash_build = || {
        let dir = small.path().to_str().unwrap();
        case.kiln
            .run(["build", "-q", "--tls-verify=false", "--squash", dir])
            .trim()
            .to_string()
    };
    let first = squash_build();
    let snapshots = case.kiln.root().join("snapshots");
    let flat = || -> Vec<String> {
        std::fs::read_dir(&snapshots)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("flat-"))
            .collect()
    };
    for n in flat() {
        std::fs::remove_dir_all(snapshots.join(n)).unwrap();
    }
    assert_eq!(squash_build(), first);
    assert_eq!(flat().len(), 1, "{:?}", flat());
    let (bare, _) = case.build(
        "bare.tar",
        &[
            "--omit-history",
            "--rm",
            "--force-rm=false",
            "-D",
            "--os",
            "linux",
            "--arch",
            "amd64",
        ],
    );
    let config = archive_config(&bare);
    assert!(config.get("history").is_none_or(Value::is_null), "{config}");
    assert_eq!(config["architecture"], "amd64");
}

// `--env`, `--unsetenv`, `--add-host` and `--dns*`: equal to buildah's but for /hosts and
// /resolv (each tool writes its own /etc/hosts and /etc/resolv.conf) and /a (buildah 1.28's
// first RUN after FROM does not see `--env` yet), which are checked by hand.
#[test]
fn own_build_env() {
    let case = Case::own("build-env");
    let ours = case.check(&["/hosts", "/a", "/resolv"], 0);
    let s = summary(&ours);
    assert_file(&s, "/a", b"A=1\n");
    assert_eq!(
        s["config"]["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "A=1",
            "C=3"
        ])
    );
    assert_file(&s, "/b", b"A=1 B=2 C=3\n");
    let hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                 127.0.1.1\tkiln\n10.1.2.3\tmyhost\n";
    assert_file(&s, "/hosts", hosts.as_bytes());
    // The host's resolv.conf (RUN shares its network) with its servers and search domains
    // replaced and the option added.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut resolv: String = host
        .lines()
        .filter(|l| {
            !matches!(
                l.split_whitespace().next(),
                Some("nameserver" | "search" | "domain")
            )
        })
        .map(|l| format!("{l}\n"))
        .collect();
    resolv.push_str("nameserver 192.0.2.53\nsearch corp.example\noptions ndots:2\n");
    assert_file(&s, "/resolv", resolv.as_bytes());
}

// COPY --from=IMAGE (a reference that is no stage).
#[test]
fn own_copy_from_image() {
    let case = Case::own("copy-from-image");
    let ours = case.check(&[], 0);
    let s = summary(&ours);
    assert!(
        file(&s, "/bin/busybox").is_some()
            && file(&s, "/etc/passwd").is_some()
            && file(&s, "/usr/bin/env").is_some()
    );
}

// .dockerignore: `**`, directory excludes, `!` re-includes below excluded directories.
#[test]
fn own_dockerignore_exceptions() {
    let case = Case::own("dockerignore");
    let ours = case.check(&[], 0);
    let s = summary(&ours);
    for present in [
        "/ctx/src/main.c",
        "/ctx/src/gen/keep.c",
        "/ctx/docs/public/y.md",
        "/ctx/vendor/keep/k.txt",
        "/docs/public/y.md",
        "/src-only/gen/keep.c",
    ] {
        assert!(file(&s, present).is_some(), "{present} should be copied");
    }
    for absent in [
        "/ctx/.secret",
        "/ctx/top.tmp",
        "/ctx/nested.log",
        "/ctx/src/gen/out.c",
        "/ctx/docs/internal",
        "/ctx/vendor/drop",
        "/ctx/Dockerfile",
        "/docs/internal",
    ] {
        assert!(file(&s, absent).is_none(), "{absent} is ignored");
    }
}

// RUN --mount=type=cache/tmpfs/bind. Two RUNs change nothing visible (the cache write, the final
// test): no layers in kiln. kiln removes the mount points it created (/mnt, /opt, /var/other), as
// BuildKit does; buildah 1.28 leaves them as empty directories.
#[test]
fn own_run_mounts() {
    let case = Case::own("run-mounts");
    let ours = case.check(&["/mnt", "/opt", "/var/other"], 2);
    let s = summary(&ours);
    assert_file(&s, "/seen-cache.txt", b"cached\n");
    assert_file(&s, "/tmpfs-ok.txt", b"ok\n");
    assert_file(&s, "/from-bind.txt", b"bound data\n");
    assert_file(&s, "/rw-seen.txt", b"scribble\n");
    assert_file(&s, "/from-stage.txt", b"from stage\n");
    for stub in ["/mnt", "/opt", "/var/other", "/cache", "/scratch"] {
        assert!(
            file(&s, stub).is_none(),
            "{stub}: mount points kiln made are removed"
        );
    }
    let ctx_file = std::fs::read(case.ctx().join("data/in.txt")).unwrap();
    assert_eq!(
        lossy(&ctx_file),
        "bound data\n",
        "a read-write bind mount must not write into the build context"
    );
}

// ONBUILD with --format docker: the triggers are kept in the base and run in the child (in its
// context), not inherited further. The child's final RUN only tests: no layer in kiln.
#[test]
fn own_onbuild_docker_format() {
    let src = own_case("onbuild");
    let bases = Bases::start(false);
    let ctx = copy_context(&src.join("base"), &bases.host());
    let child = copy_context(&src.join("child"), &bases.host());
    let key = sha256_bytes(
        format!(
            "{}{}{}",
            tree_hash(&src),
            bases.digests.join(","),
            "onbuild-v2"
        )
        .as_bytes(),
    );
    let cache = kiln_tests::util::cache_dir().join("conformance-ref");
    std::fs::create_dir_all(&cache).unwrap();
    let (ref_base, ref_child) = (
        cache.join(format!("onbuild-base-{}.tar", &key[..16])),
        cache.join(format!("onbuild-child-{}.tar", &key[..16])),
    );
    if !ref_child.exists() || std::env::var("KILN_CONFORMANCE_FRESH").is_ok_and(|v| v == "1") {
        let b = Buildah::new(&bases.reg);
        for (dir, name, out) in [
            (ctx.path(), "localhost/onbuild-base", &ref_base),
            (child.path(), "localhost/onbuild-child", &ref_child),
        ] {
            let o = b.bud(name, dir, &["--format".into(), "docker".into()]);
            assert!(
                o.status.success(),
                "buildah bud {name}:\n{}",
                lossy(&o.stderr)
            );
            let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
            b.push_archive(name, &tmp, &["--format".into(), "docker".into()]);
            std::fs::rename(&tmp, out).unwrap();
        }
    }
    let kiln = Kiln::new();
    let out = tempfile::tempdir().unwrap();
    let (k_base, k_child) = (out.path().join("base.tar"), out.path().join("child.tar"));
    let fmt = ["--format".to_string(), "docker".to_string()];
    let mut tagged = fmt.to_vec();
    tagged.extend(["-t".to_string(), "localhost/onbuild-base".to_string()]);
    kiln_build_ok(&kiln, ctx.path(), &tagged, &k_base);
    let stdout = kiln_build_ok(&kiln, child.path(), &fmt, &k_child);
    compare("onbuild-base", &ref_base, &k_base, &[], 0);
    compare("onbuild-child", &ref_child, &k_child, &[], 1);
    let b = summary(&k_base);
    assert_eq!(
        b["config"]["OnBuild"].as_array().map(Vec::len),
        Some(3),
        "{}",
        b["config"]
    );
    let c = summary(&k_child);
    assert!(
        c["config"].get("OnBuild").is_none(),
        "triggers are not inherited: {}",
        c["config"]
    );
    assert!(
        c["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "TRIGGERED=yes")
    );
    assert_file(&c, "/app/payload.txt", b"from child context\n");
    assert_file(&c, "/app/size.txt", b"19\n");
    assert!(
        stdout.contains("19"),
        "the child's RUN sees the trigger's file:\n{stdout}"
    );
}

// Heredocs: buildah 1.28 has none, so the files are checked by hand.
#[test]
fn own_heredocs() {
    let case = Case::own("heredoc");
    let (ours, _) = case.build("kiln.tar", &[]);
    let s = summary(&ours);
    assert_file(&s, "/h1.txt", b"one\ntwo\n");
    assert_file(&s, "/h2.txt", b"tabs stripped 3\n");
    assert_file(&s, "/h3.txt", b"shebang\n");
    assert_file(&s, "/h4.txt", b"line world\n");
    assert_file(&s, "/etc/greeting.txt", b"hello world\n");
    assert_file(&s, "/etc/literal.txt", b"hello ${NAME}\n");
    assert_file(&s, "/multi/A", b"a-content\n");
    assert_file(&s, "/multi/B", b"b-content\n");
    for p in ["/etc/greeting.txt", "/etc/literal.txt"] {
        assert_eq!(file(&s, p).unwrap()["mode"], "0644", "{p}");
    }
    for p in ["/multi/A", "/multi/B"] {
        assert_eq!(
            file(&s, p).unwrap()["mode"],
            "0755",
            "--chmod applies to heredoc files: {p}"
        );
    }
}

// ADD --chown of local archives: kiln follows BuildKit 0.23+ (the owner applies to the archive's
// entries, never to directories that were already there); buildah 1.28 keeps the archive's owners.
// Those subtrees are checked by hand, everything else against buildah.
#[test]
fn own_add_chown_tar() {
    let case = Case::own("add-chown-tar");
    let ours = case.check(&["/dest", "/srv/existing/pkg", "/named/pkg"], 0);
    let s = summary(&ours);
    let owner = |p: &str| {
        let f = file(&s, p).unwrap_or_else(|| panic!("{p} missing"));
        (
            f["uid"].as_u64().unwrap(),
            f["gid"].as_u64().unwrap(),
            f["mode"].as_str().unwrap().to_string(),
        )
    };
    for (root, uid, gid) in [
        ("/dest", 1234, 2345),
        ("/srv/existing", 1234, 2345),
        ("/named", 65534, 65534),
        ("/plain", 5, 6),
    ] {
        assert_eq!(
            owner(&format!("{root}/pkg")),
            (uid, gid, "0750".into()),
            "{root}/pkg"
        );
        assert_eq!(owner(&format!("{root}/pkg/bin")), (uid, gid, "0755".into()));
        assert_eq!(
            owner(&format!("{root}/pkg/bin/tool")),
            (uid, gid, "0755".into())
        );
        assert_eq!(
            owner(&format!("{root}/pkg/README")),
            (uid, gid, "0644".into())
        );
        let alias = file(&s, &format!("{root}/pkg/bin/alias")).unwrap();
        assert_eq!(
            (
                alias["type"].as_str(),
                alias["link"].as_str(),
                alias["uid"].as_u64()
            ),
            (Some("symlink"), Some("tool"), Some(uid))
        );
    }
    assert_eq!(
        owner("/dest"),
        (1234, 2345, "0755".into()),
        "a new destination belongs to the --chown user"
    );
    assert_eq!(
        owner("/srv/existing"),
        (3, 3, "0755".into()),
        "an existing destination keeps its owner"
    );
    assert_eq!(owner("/srv"), (0, 0, "0755".into()));
    assert_eq!(owner("/plain"), (0, 0, "0755".into()));
}

// --network none: the registry is out of reach, loopback works. The same build on the host
// network fails, so the check can fail.
#[test]
fn own_network_none() {
    let case = Case::own("network-none");
    let reg = format!("REGISTRY={}", case.bases.host());
    let (ours, _) = case.build("none.tar", &["--network", "none", "--build-arg", &reg]);
    let s = summary(&ours);
    assert_file(&s, "/net.txt", b"unreachable\n");
    assert_file(&s, "/loopback.txt", b"pong\n");
    let o = kiln_build(
        &case.kiln,
        case.ctx(),
        &["--build-arg".to_string(), reg.clone()],
        &case.out.path().join("host.tar"),
    );
    assert!(
        !o.status.success(),
        "on the host network the registry is reachable and the first RUN fails"
    );
    assert!(
        lossy(&o.stderr).contains(&format!("reached {}", case.bases.host())),
        "{}",
        lossy(&o.stderr)
    );
}

// --timestamp: two builds in empty stores, with the context touched in between, give the same
// manifest; another timestamp gives another one.
#[test]
fn own_timestamp_reproducible() {
    let case = Case::own("timestamp");
    let build = |file: &str, ts: &str| {
        let kiln = Kiln::new();
        let out = case.out.path().join(file);
        let now = std::time::SystemTime::now();
        std::fs::File::options()
            .write(true)
            .open(case.ctx().join("hello.txt"))
            .unwrap()
            .set_modified(now)
            .unwrap();
        kiln_build_ok(
            &kiln,
            case.ctx(),
            &["--timestamp".to_string(), ts.to_string()],
            &out,
        );
        out
    };
    let a = build("a.tar", "1700000000");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build("b.tar", "1700000000");
    let c = build("c.tar", "1700000001");
    let digest = |p: &Path| {
        summary(p)["meta"]["manifest_digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        digest(&a),
        digest(&b),
        "same inputs and --timestamp: same image"
    );
    assert_ne!(digest(&a), digest(&c), "the timestamp is part of the image");
    let config: Value = archive_config(&a);
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    // The base's own history entry (the first) keeps its date.
    for h in &config["history"].as_array().unwrap()[1..] {
        assert_eq!(h["created"], "2023-11-14T22:13:20Z", "{h}");
    }
}

// COPY odds and ends (globs, variables, a bare-uid --chown, hardlinks, relative destinations,
// WORKDIR creation). kiln keeps changes made to a VOLUME after its declaration, as BuildKit does
// and the Dockerfile reference describes; buildah 1.28 discards them (legacy builder behaviour):
// /v is compared by hand.
#[test]
fn own_copy_misc() {
    let case = Case::own("copy-misc");
    let ours = case.check(&["/v"], 0);
    let s = summary(&ours);
    assert_file(&s, "/v/f", b"after\n");
    assert_file(&s, "/v/g", b"more\n");
    let owned = file(&s, "/owned/b.txt").unwrap();
    assert_eq!(
        (
            owned["uid"].as_u64(),
            owned["gid"].as_u64(),
            owned["mode"].as_str()
        ),
        (Some(1000), Some(1000), Some("0640"))
    );
    let y = file(&s, "/tree/x/y").unwrap();
    assert_eq!(
        y["hardlinks"],
        serde_json::json!(["/tree/hard", "/tree/x/y"]),
        "hardlinks are kept: {y}"
    );
    assert_file(&s, "/etc/a.txt", b"a\n");
    assert_file(&s, "/new/work/dir/sub/b.txt", b"b\n");
    assert!(file(&s, "/tmp/by-nobody").is_some_and(|f| f["uid"] == 65534));
}

// COPY/ADD edge cases (compressed files that are no tar, WORKDIR made by a COPY, a RUN user's
// named group, xattrs, FIFOs, linked files named as separate sources) equal to buildah's; the
// layer of a RUN that only changes a directory's time holds that directory with its new time
// (the comparison ignores times).
#[test]
fn own_copy_edges() {
    let case = Case::own("copy-edges");
    let ours = case.check(&[], 0);
    let s = summary(&ours);
    assert_file(
        &s,
        "/a1/plain.gz",
        &std::fs::read(case.ctx().join("plain.gz")).unwrap(),
    );
    assert_file(&s, "/a4/tt/in", b"in\n");
    assert_eq!(file(&s, "/c3/sub").unwrap()["uid"], 65534);
    assert_file(
        &s,
        "/named-group",
        b"uid=1500(alice) gid=2600(g2) groups=2600(g2)\n",
    );
    for p in ["/attrs/capfile", "/from-stage"] {
        let x = &file(&s, p).unwrap()["xattrs"];
        assert!(
            x["security.capability"].is_string() && x["user.note"].is_string(),
            "{p}: {x}"
        );
    }
    assert_eq!(file(&s, "/attrs/fifo").unwrap()["type"], "fifo");
    assert_file(&s, "/odd/sub/abs/x", b"abs\n");
    assert_file(&s, "/odd/sub/b", b"b\n");
    assert!(file(&s, "/links/h1").unwrap().get("hardlinks").is_none());
    let top = archive_top_layer(&ours);
    let dated = top
        .iter()
        .find(|(p, _)| p.trim_end_matches('/') == "dated")
        .unwrap_or_else(|| panic!("the touched directory is not in the layer: {top:?}"));
    assert!((981158400..981244800).contains(&dated.1), "{dated:?}");
}

// COPY --parents, --exclude and a symbolic --chmod (buildah 1.28 lacks them): checked by hand.
#[test]
fn own_copy_parents() {
    let case = Case::own("copy-parents");
    let (ours, _) = case.build("kiln.tar", &[]);
    let s = summary(&ours);
    assert_file(&s, "/out/a/b/f.txt", b"x\n");
    assert_file(&s, "/out/a/g.txt", b"y\n");
    assert_file(&s, "/pivot/b/f.txt", b"x\n");
    assert_file(&s, "/glob/a/g.txt", b"y\n");
    for flat in [
        "/out/f.txt",
        "/out/g.txt",
        "/pivot/f.txt",
        "/pivot/a",
        "/glob/g.txt",
        "/glob/a/b",
    ] {
        assert!(
            file(&s, flat).is_none(),
            "{flat} should not exist with --parents"
        );
    }
    // --exclude.
    assert_file(&s, "/ex-top/b/f.txt", b"x\n");
    assert!(file(&s, "/ex-top/g.txt").is_none());
    assert_file(&s, "/ex-deep/g.txt", b"y\n");
    assert!(file(&s, "/ex-deep/b").is_some() && file(&s, "/ex-deep/b/f.txt").is_none());
    assert_file(&s, "/ex-dot/a/g.txt", b"y\n");
    assert_file(&s, "/ex-dot/a/b/f.txt", b"x\n");
    assert!(file(&s, "/ex-dot/Dockerfile").is_some());
    assert_file(&s, "/ex-glob/f.txt", b"x\n");
    assert!(file(&s, "/ex-glob/g.txt").is_none());
    // --chmod=u+x,go-w on 0644 files and a 0755 directory.
    assert_eq!(file(&s, "/chmod-sym/g.txt").unwrap()["mode"], "0744");
    assert_eq!(file(&s, "/chmod-sym/b").unwrap()["mode"], "0755");
}

// RUN's confinement: buildah's default capabilities and a seccomp filter (equal to buildah's
// steps but for the open-files limit, which each tool sets its own way); then `--cap-add`,
// `--cap-drop`, `--security-opt`, `--ulimit` and `--device`, checked by hand.
#[test]
fn own_confinement() {
    let case = Case::own("confinement");
    let ours = case.check(&["/nofile"], 0);
    let s = summary(&ours);
    assert_file(
        &s,
        "/status-root",
        b"CapInh:\t0000000000000000\nCapPrm:\t00000000800405fb\nCapEff:\t00000000800405fb\n\
          CapBnd:\t00000000800405fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\n",
    );
    assert_file(
        &s,
        "/status-nobody",
        b"CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
          CapBnd:\t00000000800405fb\nCapAmb:\t0000000000000000\n",
    );
    assert_file(&s, "/unshare", b"unshare-refused\n");
    assert_file(&s, "/mount", b"mount-refused\n");
    assert_file(&s, "/device", b"");

    let (flagged, _) = case.build(
        "flagged.tar",
        &[
            "--cap-add",
            "NET_RAW,sys_admin",
            "--cap-drop",
            "CAP_CHOWN",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "no-new-privileges",
            "--ulimit",
            "nofile=512:1024",
            "--device",
            "/dev/null:/dev/kiln-null",
        ],
    );
    let s = summary(&flagged);
    assert_file(
        &s,
        "/status-root",
        b"CapInh:\t0000000000000000\nCapPrm:\t00000000802425fa\nCapEff:\t00000000802425fa\n\
          CapBnd:\t00000000802425fa\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n",
    );
    assert_file(&s, "/unshare", b"unshare-ok\n");
    assert_file(&s, "/mount", b"mount-ok\n");
    assert_file(&s, "/nofile", b"512\n1024\n");
    assert_file(&s, "/device", b"1,3\n");
    // The device is bound for RUN only.
    assert!(file(&s, "/dev/kiln-null").is_none());

    // Bad values are refused before anything is built.
    for (flag, value, says) in [
        ("--cap-add", "NET_RAWR", "unknown capability"),
        ("--ulimit", "nofiles=1", "unknown limit type"),
        (
            "--security-opt",
            "seccomp=/profile.json",
            "seccomp profiles",
        ),
        ("--device", "/etc/passwd", "is not a device"),
    ] {
        let err = case
            .kiln
            .run_fail(["build", flag, value, case.ctx().to_str().unwrap()]);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}
