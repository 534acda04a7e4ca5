//! `kiln build`'s executor features beyond the conformance corpus: independent stages in
//! parallel (`--jobs`), `--progress=plain|json|auto`, `RUN --mount=type=ssh` with `--ssh`, and
//! BuildKit's automatic platform ARGs, and the lazy layers of stages no image exports.
//!
//! Parallelism is checked by ordering evidence, never by timings: two independent stages record
//! the host's uptime when their RUN starts and ends, and the final stage prints both intervals.

#[path = "../conformance/support.rs"]
mod support;

use kiln_tests::Kiln;
use kiln_tests::util::lossy;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use support::*;

/// A build context holding `files`, the Dockerfile's `{REG}` replaced by the registry host.
fn context(bases: &Bases, dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        dockerfile.replace("{REG}", &bases.host()),
    )
    .expect("writing the Dockerfile");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("writing a context file");
    }
    dir
}

fn build(kiln: &Kiln, ctx: &Path, flags: &[&str]) -> Output {
    let mut args = vec!["build"];
    args.extend_from_slice(flags);
    args.push(ctx.to_str().expect("utf-8 path"));
    kiln.output(&args)
}

fn build_ok(kiln: &Kiln, ctx: &Path, flags: &[&str]) -> String {
    let o = build(kiln, ctx, flags);
    assert!(
        o.status.success(),
        "kiln build {flags:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        lossy(&o.stdout),
        lossy(&o.stderr)
    );
    lossy(&o.stdout)
}

/// The whitespace-separated words after `marker` on the first output line that has them and
/// is not the echo of a STEP line.
fn marked<'a>(out: &'a str, marker: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| !l.contains(" STEP "))
        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no {marker:?} line in:\n{out}"))
        .split_whitespace()
        .collect()
}

const STAGES: &str = "\
FROM {REG}/busybox:latest AS a
RUN echo hello-from-a; s=$(cut -d' ' -f1 /proc/uptime); sleep 2; e=$(cut -d' ' -f1 /proc/uptime); echo \"$s $e\" > /stamp
FROM {REG}/busybox:latest AS b
RUN echo hello-from-b; s=$(cut -d' ' -f1 /proc/uptime); sleep 2; e=$(cut -d' ' -f1 /proc/uptime); echo \"$s $e\" > /stamp
FROM {REG}/busybox:latest AS unused
RUN echo never-built
FROM {REG}/busybox:latest
COPY --from=a /stamp /a
COPY --from=b /stamp /b
RUN echo \"INTERVALS $(cat /a) $(cat /b)\"
";

/// (start, end) of stage a's and stage b's RUN, from the final stage's output.
fn intervals(out: &str) -> ((f64, f64), (f64, f64)) {
    let v: Vec<f64> = marked(out, "INTERVALS ")
        .iter()
        .map(|w| w.parse().unwrap_or_else(|_| panic!("{w:?} in:\n{out}")))
        .collect();
    assert_eq!(v.len(), 4, "{out}");
    ((v[0], v[1]), (v[2], v[3]))
}

#[test]
fn independent_stages_overlap_with_two_jobs_and_not_with_one() {
    let bases = Bases::start(false);
    let ctx = context(&bases, STAGES, &[]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);

    let out = build_ok(
        &kiln,
        ctx.path(),
        &["--no-cache", "--jobs", "2", "--progress=plain"],
    );
    let ((a0, a1), (b0, b1)) = intervals(&out);
    assert!(
        a0 < b1 && b0 < a1,
        "with --jobs 2 stages a [{a0}, {a1}] and b [{b0}, {b1}] should overlap:\n{out}"
    );
    // Parallel output names its stage; the stage the target does not need never runs.
    assert!(out.contains("[a] hello-from-a"), "{out}");
    assert!(out.contains("[b] hello-from-b"), "{out}");
    assert!(!out.contains("never-built"), "{out}");
    // Build-wide step numbers stay those of a sequential build (3 needed stages, 8 steps).
    for n in 1..=8 {
        assert!(
            out.contains(&format!("STEP {n}/8: ")),
            "STEP {n}/8 missing:\n{out}"
        );
    }
    assert!(out.contains("[b] --> done in "), "{out}");

    let out = build_ok(
        &kiln,
        ctx.path(),
        &["--no-cache", "--jobs", "1", "--progress=plain"],
    );
    let ((a0, a1), (b0, b1)) = intervals(&out);
    assert!(
        a1 <= b0 || b1 <= a0,
        "with --jobs 1 stages a [{a0}, {a1}] and b [{b0}, {b1}] must not overlap:\n{out}"
    );
    assert!(
        out.contains("\nhello-from-a\n") && !out.contains("[a] hello"),
        "sequential output is not prefixed:\n{out}"
    );
    // Sequential order is plan order: a's RUN before b's.
    assert!(a1 <= b0, "a runs before b with --jobs 1:\n{out}");
}

#[test]
fn a_failing_stage_fails_the_parallel_build() {
    let bases = Bases::start(false);
    let df = "FROM {REG}/busybox:latest AS a\nRUN sleep 1; echo slow-done > /done\n\
              FROM {REG}/busybox:latest AS b\nRUN exit 7\n\
              FROM {REG}/busybox:latest\nCOPY --from=a /done /a\nCOPY --from=b /done /b\nRUN echo final-ran\n";
    let ctx = context(&bases, df, &[]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let o = build(
        &kiln,
        ctx.path(),
        &["--jobs", "2", "--progress=plain", "-t", "never-made"],
    );
    assert!(!o.status.success());
    let err = lossy(&o.stderr);
    assert!(
        err.contains("Dockerfile:4"),
        "the failing RUN is named:\n{err}"
    );
    assert!(
        !lossy(&o.stdout).contains("final-ran"),
        "{}",
        lossy(&o.stdout)
    );
    let images = kiln.run(["images"]);
    assert!(
        !images.contains("never-made"),
        "no image is made by a failed build:\n{images}"
    );
}

const SIMPLE: &str = "\
FROM {REG}/busybox:latest AS base
ENV GREETING=hi
RUN echo \"say $GREETING\"; echo to-stderr >&2
FROM base
COPY note.txt /note.txt
";

fn json_events(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON ({e}):\n{out}"))
        })
        .collect()
}

fn statuses(events: &[Value], status: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["event"] == "step" && e["status"] == status)
        .map(|e| e["step"].as_u64().expect("step number"))
        .collect()
}

#[test]
fn progress_json_is_one_event_per_line() {
    let bases = Bases::start(false);
    let ctx = context(&bases, SIMPLE, &[("note.txt", "note\n")]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);

    let out = build_ok(&kiln, ctx.path(), &["--progress=json", "-t", "jsonimg"]);
    let events = json_events(&out);
    assert_eq!(statuses(&events, "started"), vec![1, 2, 3, 4, 5], "{out}");
    assert_eq!(statuses(&events, "done"), vec![1, 2, 3, 4, 5], "{out}");
    assert!(statuses(&events, "cached").is_empty(), "{out}");
    let run = events
        .iter()
        .find(|e| e["event"] == "step" && e["status"] == "started" && e["step"] == 3)
        .expect("step 3 started");
    assert_eq!(
        run["instruction"],
        "RUN echo \"say $GREETING\"; echo to-stderr >&2"
    );
    assert_eq!(run["stage_name"], "base");
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "step" && e["status"] == "done")
            .all(|e| e["duration_ms"].as_f64().is_some()),
        "{out}"
    );
    let outputs: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "output")
        .map(|e| (e["stream"].as_str().unwrap(), e["line"].as_str().unwrap()))
        .collect();
    assert!(outputs.contains(&("stdout", "say hi")), "{out}");
    assert!(outputs.contains(&("stderr", "to-stderr")), "{out}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "plugin" && e["call"] == "dockerfile: parse"),
        "plugin calls are timed:\n{out}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "warning"),
        "no warnings (the automatic BUILDPLATFORM arg is never unused):\n{out}"
    );
    let summary = events.last().expect("events");
    assert_eq!(summary["event"], "summary", "{out}");
    assert!(summary["plugin_ms"].as_f64().is_some(), "{out}");
    let id = summary["image"].as_str().expect("image id").to_string();
    let listed = kiln.run(["images", "--no-trunc", "-q"]);
    assert!(
        listed.contains(id.trim_start_matches("sha256:")),
        "{id} not in:\n{listed}"
    );

    // An unchanged rebuild: every step after FROM is cached.
    let out = build_ok(&kiln, ctx.path(), &["--progress=json"]);
    let events = json_events(&out);
    assert_eq!(statuses(&events, "cached"), vec![2, 3, 5], "{out}");
    assert!(!events.iter().any(|e| e["event"] == "output"), "{out}");
}

// A build whose steps all come from the cache only looks things up: it gives the image it gave
// before (no new image for new timestamps, as buildah), and loads no plugin a step would need
// (the `secrets` injector here) because no step runs.
#[test]
fn cached_rebuild_reuses_its_image_and_loads_only_the_frontend() {
    let bases = Bases::start(false);
    let ctx = context(
        &bases,
        "FROM {REG}/busybox:latest\n\
         RUN --mount=type=secret,id=tok test -s /run/secrets/tok && echo used > /used\n\
         LABEL stage=one\n",
        &[("tok.txt", "token\n")],
    );
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let secret = format!("id=tok,src={}", ctx.path().join("tok.txt").display());
    let flags = ["--progress=json", "--secret", &secret, "-t", "reused"];
    let calls = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == "plugin")
            .map(|e| e["call"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let image = |events: &[Value]| events.last().expect("events")["image"].clone();

    let first = json_events(&build_ok(&kiln, ctx.path(), &flags));
    let first_calls = calls(&first);
    assert!(
        first_calls.iter().any(|c| c == "secrets: load")
            && first_calls.iter().any(|c| c == "secrets: inject"),
        "the secret step ran through the injector: {first_calls:?}"
    );
    let images_before = kiln.run(["images", "-a", "-q", "--no-trunc"]);

    // Later: the same inputs, another second on the clock.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = build_ok(&kiln, ctx.path(), &flags);
    let again = json_events(&out);
    assert_eq!(statuses(&again, "cached"), vec![2, 3], "{out}");
    assert_eq!(
        image(&again),
        image(&first),
        "an unchanged rebuild gives the same image:\n{out}"
    );
    assert_eq!(
        calls(&again),
        vec![
            "dockerfile: load".to_string(),
            "dockerfile: parse".to_string()
        ],
        "a cached build loads no injector:\n{out}"
    );
    assert_eq!(
        kiln.run(["images", "-a", "-q", "--no-trunc"]),
        images_before,
        "no image was added"
    );
    // A new label is a new image; --no-cache builds a new one too (its own timestamps).
    let labelled = json_events(&build_ok(
        &kiln,
        ctx.path(),
        &[&flags[..], &["--label", "x=y"]].concat(),
    ));
    assert_ne!(image(&labelled), image(&first));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let fresh = json_events(&build_ok(
        &kiln,
        ctx.path(),
        &[&flags[..], &["--no-cache"]].concat(),
    ));
    assert_ne!(image(&fresh), image(&first));
}

#[test]
fn progress_plain_marks_cache_hits_and_durations() {
    let bases = Bases::start(false);
    let ctx = context(&bases, SIMPLE, &[("note.txt", "note\n")]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let out = build_ok(&kiln, ctx.path(), &["--progress=plain"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[1/2] STEP 1/5: FROM ")
                && l.ends_with("/busybox:latest AS base")),
        "{out}"
    );
    assert!(lines.contains(&"[1/2] STEP 2/5: ENV GREETING=hi"), "{out}");
    assert!(lines.contains(&"[2/2] STEP 4/5: FROM base"), "{out}");
    assert!(lines.contains(&"say hi"), "{out}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("--> done in "))
            .count(),
        5,
        "{out}"
    );
    let out = build_ok(&kiln, ctx.path(), &["--progress=plain"]);
    assert_eq!(out.matches("--> Using cache").count(), 3, "{out}");
    assert!(!out.contains("say hi"), "{out}");
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn progress_auto_on_a_terminal_draws_a_live_view() {
    let bases = Bases::start(false);
    let ctx = context(&bases, SIMPLE, &[("note.txt", "note\n")]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let cmd = kiln.cmd(["build", "--progress=auto", ctx.path().to_str().unwrap()]);
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line.join(" "), "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let o = script.output().expect("running script");
    let out = lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", lossy(&o.stderr));
    // The live view reports finished steps instead of printing each STEP line as it starts.
    assert!(out.contains("DONE "), "{out}");
    assert!(
        out.contains("STEP 5/5: COPY note.txt in /note.txt"),
        "{out}"
    );
    let out2 = {
        let o = script.output().expect("running script");
        assert!(o.status.success());
        lossy(&o.stdout)
    };
    assert!(out2.contains("CACHED "), "{out2}");
}

const AGENT_PY: &str = r#"
import os, socket, struct
path = os.environ["SSH_AUTH_SOCK"]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.sendall(struct.pack(">IB", 1, 11))
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise SystemExit("agent closed the connection")
        b += c
    return b
(length,) = struct.unpack(">I", read(4))
msg = read(length)
assert msg[0] == 12, msg[0]
(count,) = struct.unpack(">I", msg[1:5])
off = 5
names = []
for _ in range(count):
    (kl,) = struct.unpack(">I", msg[off:off + 4]); off += 4 + kl
    (cl,) = struct.unpack(">I", msg[off:off + 4]); off += 4
    names.append(msg[off:off + cl].decode()); off += cl
print("AGENT", path, count, *names)
"#;

struct Agent {
    child: std::process::Child,
    sock: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("id_ed25519");
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test-key", "-f"])
            .arg(&key)
            .status()
            .expect("running ssh-keygen");
        assert!(ok.success());
        let sock = dir.path().join("agent.sock");
        let child = std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starting ssh-agent");
        for _ in 0..500 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let ok = std::process::Command::new("ssh-add")
            .arg("-q")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock)
            .status()
            .expect("running ssh-add");
        assert!(ok.success());
        Agent {
            child,
            sock,
            key,
            _dir: dir,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ssh_mount_forwards_the_agent() {
    let df = "FROM {REG}/debian-py:bookworm\nCOPY agent.py /agent.py\n\
              RUN --mount=type=ssh python3 /agent.py\n\
              RUN --mount=type=ssh,id=deploy,target=/tmp/deploy.sock python3 /agent.py\n\
              RUN --mount=type=ssh,id=absent echo \"OPTIONAL [${SSH_AUTH_SOCK:-unset}]\"\n";
    let bases = Bases::for_dockerfile("/debian-py");
    let ctx = context(&bases, df, &[("agent.py", AGENT_PY)]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let agent = Agent::start();
    let sock = format!("default={}", agent.sock.display());
    let key = format!("deploy={}", agent.key.display());
    let out = build_ok(
        &kiln,
        ctx.path(),
        &["--progress=plain", "--ssh", &sock, "--ssh", &key],
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("AGENT ")).collect();
    assert_eq!(
        lines,
        vec![
            "AGENT /run/buildkit/ssh_agent.0 1 kiln-test-key",
            // A key file: kiln runs an agent of its own holding it.
            "AGENT /tmp/deploy.sock 1 kiln-test-key",
        ],
        "{out}"
    );
    assert!(out.contains("OPTIONAL [unset]"), "{out}");

    // A required agent that is not given fails the step.
    let df = "FROM {REG}/debian-py:bookworm\nRUN --mount=type=ssh,required=true true\n";
    let ctx = context(&bases, df, &[]);
    let o = build(&kiln, ctx.path(), &["--progress=plain"]);
    assert!(!o.status.success());
    let err = lossy(&o.stderr);
    assert!(err.contains("Dockerfile:2") && err.contains("ssh"), "{err}");
}

#[test]
fn automatic_platform_args_when_declared() {
    let df = "FROM --platform=$BUILDPLATFORM {REG}/busybox:latest AS tools\n\
              ARG BUILDPLATFORM\nARG BUILDOS\nARG BUILDARCH\nARG BUILDVARIANT\n\
              ARG TARGETPLATFORM\nARG TARGETOS\nARG TARGETARCH\nARG TARGETVARIANT\n\
              RUN echo \"PLAT $BUILDPLATFORM $BUILDOS $BUILDARCH [$BUILDVARIANT] $TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT]\"\n\
              RUN echo marker > /marker\n\
              FROM {REG}/busybox:latest\nCOPY --from=tools /marker /h\n\
              RUN echo \"NOTDECLARED [$TARGETARCH] [$BUILDOS]\"\n";
    let bases = Bases::start(false);
    let ctx = context(&bases, df, &[]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let out = build_ok(&kiln, ctx.path(), &["--progress=plain"]);
    let p = format!("linux/{host_arch}");
    assert_eq!(
        marked(&out, "PLAT "),
        vec![&p, "linux", host_arch, "[]", &p, "linux", host_arch, "[]"],
        "{out}"
    );
    assert_eq!(marked(&out, "NOTDECLARED "), vec!["[]", "[]"], "{out}");

    // Cross-building: the target moves, the build platform stays the host's.
    if host_arch == "amd64" {
        let out = build_ok(
            &kiln,
            ctx.path(),
            &[
                "--progress=plain",
                "--platform",
                "linux/arm/v7",
                "--target",
                "tools",
            ],
        );
        assert_eq!(
            marked(&out, "PLAT "),
            vec![
                "linux/amd64",
                "linux",
                "amd64",
                "[]",
                "linux/arm/v7",
                "linux",
                "arm",
                "[v7]"
            ],
            "{out}"
        );
    }
}

/// The layer blobs of the store image `name` (the manifest's descriptors, media type and bytes).
fn image_layers(kiln: &Kiln, name: &str) -> Vec<(String, Vec<u8>)> {
    let index: Value = serde_json::from_slice(
        &std::fs::read(kiln.root().join("images.json")).expect("reading images.json"),
    )
    .expect("images.json parses");
    let want = format!("localhost/{name}:latest");
    let rec = index["images"]
        .as_array()
        .expect("an image list")
        .iter()
        .find(|r| {
            r["names"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == &want))
        })
        .unwrap_or_else(|| panic!("no image {want} in {index}"));
    let blob = |d: &str| {
        let hex = d.strip_prefix("sha256:").expect("a sha256 digest");
        std::fs::read(kiln.root().join("blobs/sha256").join(hex)).expect("reading a blob")
    };
    let manifest: Value =
        serde_json::from_slice(&blob(rec["manifest_digest"].as_str().unwrap())).unwrap();
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let bytes = blob(l["digest"].as_str().unwrap());
            (l["mediaType"].as_str().unwrap().to_string(), bytes)
        })
        .collect()
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

/// Layer blobs in the store that are plain tars.
fn plain_tar_blobs(kiln: &Kiln) -> usize {
    std::fs::read_dir(kiln.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .filter(|b| b.len() > 262 && &b[257..262] == b"ustar")
        .count()
}

/// The uncompressed tar of a gzip layer.
fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut tar).unwrap();
    tar
}

/// Entry paths of a tar.
fn tar_paths(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn layers_of_unexported_stages_are_made_when_something_reads_them() {
    let df = "FROM {REG}/busybox:latest AS a\nRUN mkdir /o && echo hi > /o/x\n\
              FROM {REG}/busybox:latest\nCOPY --from=a /o/ /y/\n";
    let bases = Bases::start(false);
    let ctx = context(&bases, df, &[]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    build_ok(&kiln, ctx.path(), &["-q", "-t", "final"]);
    let layers = image_layers(&kiln, "final");
    assert!(layers.len() >= 2, "{}", layers.len());
    for (mt, bytes) in &layers {
        assert!(mt.ends_with("tar+gzip") && is_gzip(bytes), "{mt}");
    }
    // A directory copied from stage a is read from its flattened filesystem, which is made
    // from its layers: the RUN's layer is made then, as a plain tar (no image names it).
    assert_eq!(plain_tar_blobs(&kiln), 1, "one plain-tar layer blob");
    // Exporting stage a reuses its cached step, and its image gets a gzip layer of it.
    let out = build_ok(
        &kiln,
        ctx.path(),
        &["--progress=plain", "--target", "a", "-t", "stage-a"],
    );
    assert!(out.contains("Using cache"), "{out}");
    let layers = image_layers(&kiln, "stage-a");
    let (mt, top) = layers.last().unwrap();
    assert!(mt.ends_with("tar+gzip") && is_gzip(top), "{mt}");
    let tar = gunzip(top);
    assert!(
        tar.windows(2).any(|w| w == b"hi"),
        "the RUN's file is in the layer"
    );
    assert_eq!(
        tar_paths(&tar),
        ["o/", "o/x"],
        "the layer holds the RUN's change only"
    );
}

#[test]
fn a_layer_made_later_is_the_layer_the_step_would_have_committed() {
    let df = "FROM {REG}/busybox:latest AS build\n\
              RUN mkdir -p /out/d && echo built > /out/a && echo gone > /out/b && ln -s a /out/l\n\
              RUN rm -r /out/b /out/d /etc/group && echo more > /out/c\n\
              FROM {REG}/busybox:latest\n\
              COPY --from=build /out/a /a\n";
    let bases = Bases::start(false);
    let ctx = context(&bases, df, &[]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    // A file copied from the stage is read through its snapshots: no layer of it is made
    // (with the vfs driver a RUN step's layer is made as it commits: its snapshot is the
    // flattened filesystem of the layer chain).
    build_ok(
        &kiln,
        ctx.path(),
        &["-q", "--timestamp", "0", "-t", "final"],
    );
    let vfs = std::env::var("KILN_STORAGE_DRIVER").is_ok_and(|d| d == "vfs");
    assert_eq!(
        plain_tar_blobs(&kiln),
        if vfs { 2 } else { 0 },
        "layer blobs of the stage"
    );
    let layers = image_layers(&kiln, "final");
    assert_eq!(tar_paths(&gunzip(&layers.last().unwrap().1)), ["a"]);
    // Exporting the stage makes its layers from the snapshots of its cached steps: they are
    // the layers a build without the cache commits.
    let out = build_ok(
        &kiln,
        ctx.path(),
        &[
            "--progress=plain",
            "--timestamp",
            "0",
            "--target",
            "build",
            "-t",
            "cached",
        ],
    );
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    build_ok(
        &kiln,
        ctx.path(),
        &[
            "-q",
            "--no-cache",
            "--timestamp",
            "0",
            "--target",
            "build",
            "-t",
            "direct",
        ],
    );
    let (cached, direct) = (image_layers(&kiln, "cached"), image_layers(&kiln, "direct"));
    assert_eq!(cached.len(), direct.len());
    for (i, (c, d)) in cached.iter().zip(&direct).enumerate() {
        assert!(
            c == d,
            "layer {i} differs between the cached and the direct build"
        );
    }
    let top = tar_paths(&gunzip(&cached.last().unwrap().1));
    for whiteout in ["etc/.wh.group", "out/.wh.b", "out/.wh.d"] {
        assert!(top.iter().any(|p| p == whiteout), "{whiteout} in {top:?}");
    }
}

/// An OCI layout in `dir` whose one layer is zstd-compressed and holds `/base.txt` and a shell
/// (busybox, so a RUN can use the image); returns the layout's path.
fn zstd_base_layout(dir: &Path, busybox_rootfs: &Path) -> PathBuf {
    use kiln_tests::util::sha256_bytes;
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", busybox_rootfs)
        .expect("busybox rootfs into the tar");
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "base.txt", &b"base\n"[..]).unwrap();
    let plain = tar.into_inner().unwrap();
    let diff_id = sha256_bytes(&plain);
    let blob = zstd::encode_all(&plain[..], 3).unwrap();
    let layout = dir.join("zstd-layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256_bytes(bytes);
        std::fs::write(blobs.join(&d), bytes).unwrap();
        (format!("sha256:{d}"), bytes.len())
    };
    let (layer, layer_size) = put(&blob);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    });
    let (config, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": layer, "size": layer_size}],
    });
    let (manifest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "zbase"},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

// A base image with a zstd layer: the built image carries that layer unchanged and its OCI
// manifest says zstd for it and gzip for the layer the build made; buildah runs the result.
#[test]
fn a_base_layer_keeps_its_own_compression() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("busybox");
    std::fs::create_dir_all(&rootfs).unwrap();
    kiln.run([
        "pull",
        "-q",
        "--tls-verify=false",
        &bases.reg.reference("busybox:latest"),
    ]);
    let c = kiln.run([
        "from",
        "-q",
        "--tls-verify=false",
        &bases.reg.reference("busybox:latest"),
    ]);
    let mnt = kiln.run(["mount", c.trim()]);
    let copied = std::process::Command::new("cp")
        .args(["-a", &format!("{}/.", mnt.trim())])
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(copied.success());
    kiln.run(["rm", c.trim()]);
    let layout = zstd_base_layout(work.path(), &rootfs);
    let id = kiln.run(["pull", "-q", &format!("oci:{}:zbase", layout.display())]);
    kiln.run(["tag", id.trim(), "localhost/zbase:1"]);
    let ctx = context(
        &bases,
        "FROM localhost/zbase:1\nRUN cat /base.txt > /copy.txt\n",
        &[],
    );
    let out = work.path().join("out.tar");
    build_ok(
        &kiln,
        ctx.path(),
        &[
            "-q",
            "--pull=never",
            "-t",
            &format!("oci-archive:{}", out.display()),
        ],
    );
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", out.display()))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", lossy(&raw.stderr));
    let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ]
    );
    // buildah (containers/image) checks each blob against its media type when it reads them.
    let root = work.path().join("buildah");
    let b = |args: &[&str]| {
        let o = std::process::Command::new("buildah")
            .arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "buildah {args:?}: {}", lossy(&o.stderr));
        lossy(&o.stdout)
    };
    let c = b(&["from", "-q", &format!("oci-archive:{}", out.display())]);
    let got = b(&[
        "run",
        "--isolation",
        "chroot",
        c.trim(),
        "--",
        "cat",
        "/copy.txt",
        "/base.txt",
    ]);
    assert_eq!(got, "base\nbase\n");
    b(&["rm", c.trim()]);
}

// `--no-hosts`: RUN sees (and may change) the image's own /etc/hosts instead of a generated one;
// the choice is part of the step's cache key.
#[test]
fn no_hosts_leaves_the_image_hosts_file() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let ctx = context(
        &bases,
        "FROM {REG}/busybox:latest\nCOPY hosts /etc/hosts\nRUN cat /etc/hosts > /seen && echo x >> /etc/hosts\n",
        &[("hosts", "10.9.9.9\tmine\n")],
    );
    let out = tempfile::tempdir().unwrap();
    let image = |flags: &[&str]| {
        let path = out.path().join(format!("{}.tar", flags.len()));
        let dest = format!("oci-archive:{}", path.display());
        let mut args = vec!["-q", "--tls-verify=false", "-t", &dest];
        args.extend_from_slice(flags);
        build_ok(&kiln, ctx.path(), &args);
        summary(&path)
    };
    let own = image(&["--no-hosts"]);
    assert_file(&own, "/seen", b"10.9.9.9\tmine\n");
    assert_file(&own, "/etc/hosts", b"10.9.9.9\tmine\nx\n");
    let generated = image(&[]);
    assert_file(
        &generated,
        "/seen",
        b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tkiln\n",
    );
    assert_file(&generated, "/etc/hosts", b"10.9.9.9\tmine\n");
}

// `--stdin`: RUN reads kiln's standard input (else /dev/null); `--logfile`: everything the build
// prints goes to the file, standard output stays empty.
#[test]
fn stdin_reaches_run_and_logfile_takes_the_output() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let ctx = context(
        &bases,
        "FROM {REG}/busybox:latest\nRUN cat > /in.txt\n",
        &[],
    );
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("img.tar");
    let log = out.path().join("build.log");
    let dest = format!("oci-archive:{}", archive.display());
    let printed = kiln.run_with_stdin(
        [
            "build",
            "--no-cache",
            "--tls-verify=false",
            "--stdin",
            "--logfile",
            log.to_str().unwrap(),
            "-t",
            &dest,
            ctx.path().to_str().unwrap(),
        ],
        b"from stdin\n",
    );
    assert_eq!(printed, "");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("STEP 2/2: RUN cat > /in.txt"), "{logged}");
    let id = logged.lines().last().unwrap_or_default();
    assert_eq!(id.len(), 64, "{logged}");
    assert_file(&summary(&archive), "/in.txt", b"from stdin\n");
    kiln.run_with_stdin(
        [
            "build",
            "--no-cache",
            "-q",
            "--tls-verify=false",
            "-t",
            &dest,
            ctx.path().to_str().unwrap(),
        ],
        b"not read\n",
    );
    assert_file(&summary(&archive), "/in.txt", b"");
}

#[test]
fn a_run_step_can_neither_stop_the_build_through_pid_1_nor_read_its_flags() {
    let bases = Bases::start(false);
    let df = "FROM {REG}/busybox:latest\nARG TOKEN\n\
              RUN kill -TERM 1; kill -INT 1; kill -HUP 1; sleep 1; echo still-$((1+1))-running\n\
              RUN tr '\\0' ' ' < /proc/1/cmdline; echo\n";
    let ctx = context(&bases, df, &[]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let out = build_ok(
        &kiln,
        ctx.path(),
        &["--progress=plain", "--build-arg", "TOKEN=hunter2-token"],
    );
    assert!(out.contains("still-2-running"), "{out}");
    // The build arg reached the step's environment, not pid 1's command line.
    assert!(!out.contains("hunter2-token"), "{out}");
    assert!(!out.contains("--build-arg"), "{out}");
}

#[test]
fn proxy_args_and_kilns_proxy_variables_reach_run_without_keying_its_cache() {
    let bases = Bases::start(false);
    let df =
        "FROM {REG}/busybox:latest\nRUN echo \"proxy=$http_proxy https=$HTTPS_PROXY\" > /proxy\n";
    let ctx = context(&bases, df, &[]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("a.tar");
    let dest = format!("oci-archive:{}", archive.display());
    // kiln's environment holds only the proxy variables the test gives it.
    let build = |flags: &[&str], https_proxy: Option<&str>| {
        let mut args = vec!["build", "--progress=plain", "-t", &dest];
        args.extend_from_slice(flags);
        args.push(ctx.path().to_str().unwrap());
        let mut c = kiln.cmd(&args);
        for v in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "FTP_PROXY",
            "ALL_PROXY",
        ] {
            c.env_remove(v).env_remove(v.to_lowercase());
        }
        if let Some(p) = https_proxy {
            c.env("HTTPS_PROXY", p);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", lossy(&o.stderr));
        lossy(&o.stdout)
    };
    let first = build(&["--build-arg", "http_proxy=http://a:1"], None);
    assert!(!first.contains("Using cache"), "{first}");
    assert_file(&summary(&archive), "/proxy", b"proxy=http://a:1 https=\n");
    let second = build(&["--build-arg", "http_proxy=http://b:2"], None);
    assert!(
        all_cached(&second),
        "a changed proxy reran the step:\n{second}"
    );
    // kiln's own proxy variables (--http-proxy, on by default), never in the image's config.
    build(&["--no-cache"], Some("http://h:3"));
    assert_file(&summary(&archive), "/proxy", b"proxy= https=http://h:3\n");
    assert!(!archive_config(&archive).to_string().contains("h:3"));
    build(&["--no-cache", "--http-proxy=false"], Some("http://h:3"));
    assert_file(&summary(&archive), "/proxy", b"proxy= https=\n");
}

#[test]
fn add_chown_of_an_archive_never_reaches_past_its_own_entries() {
    use std::os::unix::fs::MetadataExt;
    let bases = Bases::start(false);
    // An archive that makes `a/x`, then turns `a` into a link to a host directory.
    let header = || {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_mode(0o777);
        h
    };
    let victim = tempfile::tempdir().unwrap();
    std::fs::write(victim.path().join("x"), "host file\n").unwrap();
    let df = "FROM {REG}/busybox:latest\nADD --chown=1234:1234 evil.tar /d/\n";
    let ctx = context(&bases, df, &[]);
    let mut b = tar::Builder::new(std::fs::File::create(ctx.path().join("evil.tar")).unwrap());
    let mut h = header();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "a/", std::io::empty()).unwrap();
    let mut h = header();
    h.set_mode(0o644);
    h.set_size(2);
    b.append_data(&mut h, "a/x", &b"x\n"[..]).unwrap();
    let mut h = header();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "a", victim.path()).unwrap();
    b.finish().unwrap();
    drop(b);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("a.tar");
    build_ok(
        &kiln,
        ctx.path(),
        &["-t", &format!("oci-archive:{}", archive.display())],
    );
    let host = std::fs::metadata(victim.path().join("x")).unwrap();
    assert_eq!(
        (host.uid(), host.gid()),
        (0, 0),
        "the host file was chowned"
    );
    let s = summary(&archive);
    let link = file(&s, "/d/a").unwrap();
    assert_eq!(
        (link["type"].as_str(), link["uid"].as_u64()),
        (Some("symlink"), Some(1234))
    );
}

#[test]
fn images_built_on_an_image_name_their_base_in_manifest_annotations() {
    let bases = Bases::start(false);
    let df = "FROM {REG}/busybox:latest AS base\nRUN echo > /y\nFROM base\nCOPY note.txt /\n\
              FROM scratch AS empty\nCOPY note.txt /\n";
    let ctx = context(&bases, df, &[("note.txt", "n\n")]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let out = tempfile::tempdir().unwrap();
    let manifest = |target: &str, extra: &[&str]| {
        let archive = out.path().join(format!("{target}.tar"));
        let mut flags = vec!["--target", target, "-t"];
        let dest = format!("oci-archive:{}", archive.display());
        flags.push(&dest);
        flags.extend_from_slice(extra);
        build_ok(&kiln, ctx.path(), &flags);
        let s = summary(&archive);
        let m: Value = serde_json::from_slice(&archive_blob(
            &archive,
            s["meta"]["manifest_digest"].as_str().unwrap(),
        ))
        .unwrap();
        m["annotations"].clone()
    };
    // Through a stage too: the image the stage chain starts from.
    let a = manifest("base", &[]);
    assert_eq!(
        a["org.opencontainers.image.base.name"],
        format!("{}/busybox:latest", bases.host())
    );
    let pulled = kiln.run([
        "images",
        "--format",
        "{{.Digest}}",
        &format!("{}/busybox:latest", bases.host()),
    ]);
    assert_eq!(
        a["org.opencontainers.image.base.digest"],
        pulled.trim(),
        "{a}"
    );
    assert!(manifest("empty", &[])["org.opencontainers.image.base.name"].is_null());
    // --annotation wins.
    let a = manifest(
        "base",
        &["--annotation", "org.opencontainers.image.base.name=mine"],
    );
    assert_eq!(a["org.opencontainers.image.base.name"], "mine");
}

#[test]
fn an_output_names_the_image_only_as_this_build_does() {
    let bases = Bases::start(false);
    let ctx = context(&bases, "FROM {REG}/busybox:latest\nRUN echo > /y\n", &[]);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    build_ok(&kiln, ctx.path(), &["-t", "localhost/first:1"]);
    // The second build reuses the first's image from the cache; its archive has only its tag.
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("x.da");
    build_ok(
        &kiln,
        ctx.path(),
        &[
            "-t",
            &format!("docker-archive:{}:foo/x:1", archive.display()),
        ],
    );
    let o = std::process::Command::new("tar")
        .args(["-xOf", archive.to_str().unwrap(), "manifest.json"])
        .output()
        .unwrap();
    let m: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["docker.io/foo/x:1"]));
}
