//! `kiln build --run-mount`/`--mount`: a mount written as `RUN --mount=` takes it reaches every
//! RUN of every stage (secret, cache, bind of the context, tmpfs), never a layer; it is part of
//! the cache key; a missing required secret names the RUN's line; a bad value names the flag.

#[path = "../conformance/support.rs"]
mod support;

use kiln_tests::Kiln;
use kiln_tests::util::lossy;
use std::path::Path;
use support::Bases;

fn build(kiln: &Kiln, ctx: &Path, flags: &[String], out: &Path) -> (bool, String) {
    let mut c = kiln.cmd(["build", "--tls-verify=false", "--progress=plain"]);
    c.args(flags).arg("-t").arg(format!("oci-archive:{}", out.display())).arg(ctx);
    let o = c.output().expect("running kiln build");
    (o.status.success(), format!("{}{}", lossy(&o.stdout), lossy(&o.stderr)))
}

#[test]
fn run_mounts_reach_every_run_of_every_stage_and_no_layer() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("data")).unwrap();
    std::fs::write(ctx.join("data/in.txt"), "from the context\n").unwrap();
    let base = bases.reg.reference("busybox:latest");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base} AS one\n\
             RUN test \"$(cat /opt/tok)\" = run-mount-secret && echo one > /cache/seen-one && cp /mnt/data/in.txt /from-bind-one\n\
             FROM {base}\n\
             COPY --from=one /from-bind-one /from-one\n\
             RUN test \"$(cat /opt/tok)\" = run-mount-secret && cat /cache/seen-one > /cache-seen \
               && test -z \"$(ls -A /scratch)\" && touch /scratch/x && grep -q ' /scratch tmpfs ' /proc/mounts \
               && cat /mnt/data/in.txt > /from-bind-two && ! touch /mnt/data/new 2>/dev/null\n\
             RUN test ! -e /scratch/x && test -s /opt/tok\n"
        ),
    )
    .unwrap();
    let secret = tmp.path().join("tok");
    std::fs::write(&secret, "run-mount-secret").unwrap();
    let cache_id = format!("kiln-run-mount-test-{}", std::process::id());
    let mut flags: Vec<String> = vec![
        "--secret".into(),
        format!("id=tok,src={}", secret.display()),
        "--run-mount".into(),
        "type=secret,id=tok,target=/opt/tok,required".into(),
        "--mount".into(),
        format!("type=cache,id={cache_id},target=/cache"),
        "--run-mount".into(),
        "type=bind,source=data,target=/mnt/data".into(),
        "--run-mount".into(),
        "type=tmpfs,target=/scratch".into(),
    ];
    let out = tmp.path().join("image.tar");
    let (ok, log) = build(&kiln, &ctx, &flags, &out);
    assert!(ok, "the build with --run-mount failed:\n{log}");
    let s = support::summary(&out);
    support::assert_file(&s, "/from-one", b"from the context\n");
    support::assert_file(&s, "/cache-seen", b"one\n");
    support::assert_file(&s, "/from-bind-two", b"from the context\n");
    for gone in ["/opt", "/opt/tok", "/cache", "/mnt", "/mnt/data", "/scratch", "/run"] {
        assert!(support::file(&s, gone).is_none(), "{gone} reached the image");
    }

    // Same flags: every step from the cache. One more --run-mount: the RUNs run again.
    let (ok, log) = build(&kiln, &ctx, &flags, &tmp.path().join("again.tar"));
    assert!(ok && support::all_cached(&log), "an unchanged rebuild ran steps:\n{log}");
    flags.extend(["--run-mount".to_string(), "type=tmpfs,target=/extra".to_string()]);
    let (ok, log) = build(&kiln, &ctx, &flags, &tmp.path().join("more.tar"));
    assert!(ok, "{log}");
    assert!(!support::all_cached(&log) && log.contains("RUN test ! -e /scratch/x"), "another --run-mount reused the cache:\n{log}");

    // A required secret the user did not give: the error names the first RUN's line.
    // (--no-cache: like BuildKit, a secret is not part of the cache key.)
    let mut no_secret: Vec<String> = flags[2..].to_vec();
    no_secret.push("--no-cache".into());
    let (ok, log) = build(&kiln, &ctx, &no_secret, &tmp.path().join("fail.tar"));
    assert!(!ok, "a build without the required secret passed:\n{log}");
    assert!(log.contains("Dockerfile:2:") && log.contains("secret \"tok\" is required but was not given"), "{log}");

    // A value RUN --mount would refuse is refused, naming the flag.
    let (ok, log) = build(&kiln, &ctx, &["--run-mount".into(), "type=cache,colour=red,target=/c".into()], &tmp.path().join("bad.tar"));
    assert!(!ok && log.contains("--run-mount \"type=cache,colour=red,target=/c\": unknown option \"colour\""), "{log}");
    // A target under /proc never reaches the sandbox.
    let flags = vec![
        "--secret".into(),
        format!("id=tok,src={}", secret.display()),
        "--run-mount".into(),
        "type=secret,id=tok,target=/proc/sys/kernel/tok".into(),
    ];
    let (ok, log) = build(&kiln, &ctx, &flags, &tmp.path().join("proc.tar"));
    assert!(!ok && log.contains("under /proc"), "{log}");
}
