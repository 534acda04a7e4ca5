//! `kiln build` on broken Dockerfiles and contexts: it must fail (non-zero exit), name the
//! offending `Dockerfile:LINE` on stderr, and leave the store as it was (same images, `kiln fsck`
//! clean, no temporary files left behind).

#[path = "../conformance/support.rs"]
mod support;

use kiln_tests::Kiln;
use kiln_tests::util::lossy;
use std::path::Path;
use support::Bases;

/// What the store holds, in a form that does not depend on the clock.
fn images(kiln: &Kiln) -> String {
    kiln.run([
        "images",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Name}}:{{.Tag}} {{.Digest}}",
    ])
}

fn tmp_entries(kiln: &Kiln) -> Vec<String> {
    std::fs::read_dir(kiln.root().join("tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A context with a file, a subdirectory, a symlink pointing out of the context, and a file its
/// .dockerignore excludes.
fn context() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kiln-bad-ctx.")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("f.txt"), "file\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/inner.txt"), "inner\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("outside")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("sub/up")).unwrap();
    std::fs::write(dir.path().join("ignored.txt"), "ignored\n").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "ignored.txt\n").unwrap();
    dir
}

/// Build `dockerfile` (with `BASE` replaced by the registry's busybox) in `ctx`; returns
/// (exit code, stderr).
fn build(
    kiln: &Kiln,
    bases: &Bases,
    ctx: &Path,
    dockerfile: &str,
    extra: &[&str],
) -> (Option<i32>, String) {
    let text = dockerfile.replace("BASE", &bases.reg.reference("busybox:latest"));
    std::fs::write(ctx.join("Dockerfile"), text).unwrap();
    let mut c = kiln.cmd(["build", "--tls-verify=false", "-t", "localhost/bad:latest"]);
    c.args(extra).arg("-f").arg(ctx.join("Dockerfile")).arg(ctx);
    let o = c.output().expect("running kiln build");
    (o.status.code(), lossy(&o.stderr))
}

#[test]
fn broken_builds_fail_at_their_line_and_leave_the_store_alone() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let ctx = context();
    // A good build first, so the store has an image, blobs, snapshots and cache entries.
    let (code, err) = build(
        &kiln,
        &bases,
        ctx.path(),
        "FROM BASE\nCOPY f.txt /f.txt\nRUN echo ok > /ok\n",
        &[],
    );
    assert_eq!(code, Some(0), "the good build failed:\n{err}");
    kiln.run(["tag", "localhost/bad:latest", "localhost/good:1"]);
    kiln.run(["rmi", "localhost/bad:latest"]);
    let before = images(&kiln);
    assert!(before.contains("localhost/good:1"), "{before}");

    // (name, Dockerfile, line that must be named, a phrase of the message)
    let cases: &[(&str, &str, u32, &str)] = &[
        (
            "unknown instruction",
            "FROM BASE\nRUN true\nFROB x\n",
            3,
            "FROB",
        ),
        (
            "unterminated heredoc",
            "FROM BASE\nRUN true\nRUN <<EOF\necho never closed\n",
            3,
            "heredoc",
        ),
        (
            "bad flag",
            "FROM BASE\n\nCOPY --frob=1 f.txt /x\n",
            3,
            "--frob",
        ),
        (
            "missing stage index",
            "FROM BASE AS one\nRUN true\n\nFROM BASE\nCOPY --from=7 /x /y\n",
            5,
            "--from",
        ),
        (
            "missing stage name",
            "FROM BASE\nRUN true\nCOPY --from=nosuchstage /x /y\n",
            3,
            "nosuchstage",
        ),
        (
            "source outside the context",
            "FROM BASE\nCOPY f.txt /f\nCOPY ../x /y\n",
            3,
            "outside the build context",
        ),
        (
            "symlink out of the context",
            "FROM BASE\nCOPY outside /y\n",
            2,
            "outside the build context",
        ),
        (
            "missing source",
            "FROM BASE\nCOPY f.txt /f\n\nCOPY nothere.txt /y\n",
            4,
            "nothere.txt",
        ),
        (
            "source excluded by .dockerignore",
            "FROM BASE\nCOPY f.txt /f\nCOPY ignored.txt /y\n",
            3,
            "excluded by the build context's ignore file",
        ),
        (
            "a directory copied onto a file of the image",
            "FROM BASE\nRUN echo f > /afile\nCOPY sub /afile/\n",
            3,
            "/afile already exists and is not a directory",
        ),
        (
            "a file copied below a file of the image",
            "FROM BASE\nRUN echo f > /afile\nCOPY f.txt /afile/x/\n",
            3,
            "not a directory",
        ),
        (
            "RUN of a program the image lacks",
            "FROM BASE\nRUN [\"/no/such/program\"]\n",
            2,
            "/no/such/program",
        ),
        (
            "failing RUN",
            "FROM BASE\nCOPY f.txt /f\nRUN echo about to fail >&2; exit 3\n",
            3,
            "exit status 3",
        ),
        (
            "failing RUN in an earlier stage",
            "FROM BASE AS b\nRUN exit 4\nFROM BASE\nCOPY --from=b /x /y\n",
            2,
            "exit status 4",
        ),
    ];
    for (name, dockerfile, line, phrase) in cases {
        let (code, err) = build(&kiln, &bases, ctx.path(), dockerfile, &[]);
        assert!(
            code.is_some_and(|c| c != 0),
            "{name}: the build should fail (exit {code:?}):\n{err}"
        );
        assert!(
            err.contains(&format!("Dockerfile:{line}")),
            "{name}: stderr should name Dockerfile:{line}:\n{err}"
        );
        assert!(
            err.contains(phrase),
            "{name}: stderr should mention {phrase:?}:\n{err}"
        );
        assert!(
            !err.contains(&format!("Dockerfile:{line}: Dockerfile:{line}")),
            "{name}: the location is named twice:\n{err}"
        );
        assert_eq!(
            images(&kiln),
            before,
            "{name}: a failed build must not change the images"
        );
        assert!(
            tmp_entries(&kiln).is_empty(),
            "{name}: temporary files left in the store: {:?}",
            tmp_entries(&kiln)
        );
    }
    // The failing RUN's output reaches the user, and its exit status is kiln's.
    let (code, err) = build(
        &kiln,
        &bases,
        ctx.path(),
        "FROM BASE\nRUN echo about to fail >&2; exit 3\n",
        &[],
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("about to fail"), "{err}");

    let fsck = kiln.cmd(["fsck"]).output().unwrap();
    assert!(
        fsck.status.success(),
        "fsck after failed builds:\n{}{}",
        lossy(&fsck.stdout),
        lossy(&fsck.stderr)
    );
    assert!(
        lossy(&fsck.stdout).contains("0 corrupt, 0 broken"),
        "{}",
        lossy(&fsck.stdout)
    );
    // The good image still builds from the cache.
    let (code, err) = build(
        &kiln,
        &bases,
        ctx.path(),
        "FROM BASE\nCOPY f.txt /f.txt\nRUN echo ok > /ok\n",
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
}

// A symlink inside a copied directory is copied as a symlink (never followed out of the
// context); naming a path through a symlink that leaves the context is refused.
#[test]
fn symlinks_never_lead_out_of_the_context() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let ctx = context();
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("img.tar");
    let text =
        "FROM BASE\nCOPY sub /sub/\n".replace("BASE", &bases.reg.reference("busybox:latest"));
    std::fs::write(ctx.path().join("Dockerfile"), text).unwrap();
    support::kiln_build_ok(&kiln, ctx.path(), &[], &archive);
    let s = support::summary(&archive);
    let up = support::file(&s, "/sub/up").expect("/sub/up is copied");
    assert_eq!(
        (up["type"].as_str(), up["link"].as_str()),
        (Some("symlink"), Some("/etc"))
    );
    assert!(support::file(&s, "/sub/up/passwd").is_none());
    let (code, err) = build(
        &kiln,
        &bases,
        ctx.path(),
        "FROM BASE\n\nCOPY sub/up/passwd /p\n",
        &[],
    );
    assert!(
        code.is_some_and(|c| c != 0),
        "copying through sub/up must fail:\n{err}"
    );
    assert!(err.contains("Dockerfile:3"), "{err}");
}

// ADD --checksum of a URL: a mismatch fails at its line, a match adds the file (mode 0600).
#[test]
fn add_url_checksum_is_verified() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let ctx = context();
    let url = format!("{}/v2/", bases.reg.url());
    let good = format!("sha256:{}", kiln_tests::util::sha256_bytes(b"{}"));
    let bad = format!("sha256:{}", "0".repeat(64));
    let (code, err) = build(
        &kiln,
        &bases,
        ctx.path(),
        &format!("FROM BASE\n\nADD --checksum={bad} {url} /fetched.json\n"),
        &[],
    );
    assert!(
        code.is_some_and(|c| c != 0),
        "a wrong checksum must fail:\n{err}"
    );
    assert!(
        err.contains("Dockerfile:3") && err.contains("--checksum"),
        "{err}"
    );
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("img.tar");
    let text = format!("FROM BASE\nADD --checksum={good} {url} /fetched.json\n")
        .replace("BASE", &bases.reg.reference("busybox:latest"));
    std::fs::write(ctx.path().join("Dockerfile"), text).unwrap();
    support::kiln_build_ok(&kiln, ctx.path(), &[], &archive);
    let s = support::summary(&archive);
    support::assert_file(&s, "/fetched.json", b"{}");
    assert_eq!(support::file(&s, "/fetched.json").unwrap()["mode"], "0600");
}
