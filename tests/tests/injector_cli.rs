//! A third-party mount injector driven through the CLI: `kiln plugin install` of the test
//! injector, then `kiln build --inject test-injector --inject-opt test-injector.mode=…`. A
//! well-behaved answer reaches the RUN and leaves no trace in the image; each hostile answer (a
//! mount under /proc, a `../` target, `..` inside an absolute target, a 100 MiB bundle, a secret it
//! was not granted (as a file or as env), a trap) stops the build with an error naming the plugin
//! and what it did wrong, and leaves the store as it was.

#[path = "../conformance/support.rs"]
mod support;
mod common;

use common::plugins::TEST_INJECTOR;
use kiln_tests::Kiln;
use kiln_tests::util::lossy;
use std::path::Path;
use support::Bases;

/// `kiln build` of `dockerfile` (`BASE` = the loopback registry's busybox) with the test injector
/// in `mode`; returns (exit code, stdout, stderr).
fn build_with(kiln: &Kiln, bases: &Bases, ctx: &Path, dockerfile: &str, opts: &[&str], out: &Path) -> (Option<i32>, String, String) {
    let text = dockerfile.replace("BASE", &bases.reg.reference("busybox:latest"));
    std::fs::write(ctx.join("Dockerfile"), text).unwrap();
    let mut c = kiln.cmd(["build", "--tls-verify=false", "--inject", "test-injector"]);
    for o in opts {
        c.arg("--inject-opt").arg(format!("test-injector.{o}"));
    }
    c.arg("-t").arg(format!("oci-archive:{}", out.display()));
    c.arg("-f").arg(ctx.join("Dockerfile")).arg(ctx);
    let o = c.output().expect("running kiln build");
    (o.status.code(), lossy(&o.stdout), lossy(&o.stderr))
}

fn images(kiln: &Kiln) -> String {
    kiln.run(["images", "--no-trunc", "--format", "{{.ID}} {{.Name}}:{{.Tag}}"])
}

#[test]
fn a_third_party_injector_is_used_and_its_hostile_answers_are_refused() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("test-injector.wasm");
    std::fs::write(&wasm, TEST_INJECTOR).unwrap();
    kiln.run(["plugin", "install", wasm.to_str().unwrap()]);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();

    // A good answer: the mount and the env are there during RUN, and not in the image.
    let good = dir.path().join("good.tar");
    let (code, out, err) = build_with(
        &kiln,
        &bases,
        &ctx,
        "FROM BASE\nRUN cat /etc/kiln-test/ok > /seen && echo \"$KILN_TEST_STEP\" > /step\n",
        &["mode=ok"],
        &good,
    );
    assert_eq!(code, Some(0), "the build with a good injector failed:\n{out}\n{err}");
    let s = support::summary(&good);
    support::assert_file(&s, "/seen", b"ok\n");
    assert!(support::file(&s, "/etc/kiln-test/ok").is_none(), "the injected file reached the image");
    assert!(support::file(&s, "/etc/kiln-test").is_none(), "the injected mount point reached the image");
    let config = support::archive_config(&good);
    let env = config["config"]["Env"].to_string();
    assert!(!env.contains("KILN_TEST_STEP"), "the injected env reached the config: {env}");
    let step = support::file(&s, "/step").expect("/step written by RUN");
    assert_ne!(step["size"], 1, "KILN_TEST_STEP was empty during RUN: {step}");
    kiln.run(["fsck"]);
    let before = images(&kiln);

    // Hostile answers: each is refused, naming the plugin and the offence.
    let cases: &[(&[&str], &str)] = &[
        (&["mode=proc-target"], "under /proc"),
        (&["mode=dotdot-target"], "../etc"),
        (&["mode=dotdot-inside"], "not a normalized path"),
        (&["mode=secret-env", "secret=not-granted", "var=X"], "not-granted"),
        (&["mode=bundle"], "at most"),
        (&["mode=secret", "secret=not-granted"], "not-granted"),
        (&["mode=panic"], "deliberate panic"),
    ];
    for (opts, offence) in cases {
        let out_file = dir.path().join("bad.tar");
        let (code, out, err) =
            build_with(&kiln, &bases, &ctx, "FROM BASE\nRUN echo never > /never\n", opts, &out_file);
        assert_ne!(code, Some(0), "{opts:?}: the build should fail:\n{out}\n{err}");
        assert!(!err.contains("panicked at"), "{opts:?}: kiln itself panicked:\n{err}");
        assert!(err.contains("test-injector"), "{opts:?}: the error should name the plugin:\n{err}");
        assert!(err.contains(offence), "{opts:?}: the error should say {offence:?}:\n{err}");
        assert!(err.contains("Dockerfile:2"), "{opts:?}: the error should name the step:\n{err}");
        assert!(!out_file.exists(), "{opts:?}: a failed build left {}", out_file.display());
        assert_eq!(images(&kiln), before, "{opts:?}: the failed build changed the store's images");
        kiln.run(["fsck"]);
    }

    // Options for an injector the build does not use are an error, not silently dropped.
    let (code, _, err) = build_with(&kiln, &bases, &ctx, "FROM BASE\n", &[], &good);
    assert_eq!(code, Some(0), "{err}");
    let o = kiln
        .cmd(["build", "--inject-opt", "nobody.mode=x", "-f"])
        .arg(ctx.join("Dockerfile"))
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(lossy(&o.stderr).contains("names no injector"), "{}", lossy(&o.stderr));
}
