//! The images under `examples/` build with kiln against a loopback registry and work: the static
//! server copied into scratch answers HTTP, the Python app passes its self-test as its user; the
//! example third-party injector installs with `kiln plugin install` and works with `--inject`.

#[path = "../conformance/support.rs"]
mod support;

use kiln_tests::Kiln;
use kiln_tests::util::lossy;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

/// The test plugins and the example injector built by `build.rs`.
#[allow(dead_code)]
mod plugins {
    include!(concat!(env!("OUT_DIR"), "/test_plugins.rs"));
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn build(kiln: &Kiln, name: &str, tag: &str, args: &[String]) -> String {
    let dir = example(name);
    let mut cmd = vec![
        "build".to_string(),
        "--progress=plain".into(),
        "-t".into(),
        tag.into(),
    ];
    cmd.extend(args.iter().cloned());
    cmd.push(dir.to_str().expect("utf-8 path").to_string());
    kiln.run(&cmd)
}

fn image_config(kiln: &Kiln, tag: &str) -> Value {
    let out = kiln.run(["inspect", "-t", "image", tag]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect is not JSON ({e}):\n{out}"))
}

/// The OCI config object within `kiln inspect`'s answer, wherever it sits.
fn oci_config(v: &Value) -> &Value {
    for key in ["OCIv1", "oci", "config"] {
        if let Some(c) = v.get(key).and_then(|c| c.get("config")) {
            return c;
        }
    }
    v.get("config").unwrap_or(v)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http_get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn static_server_into_scratch_serves_http() {
    let bases = Bases::start(true);
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let debian = format!("DEBIAN={}/debian:bookworm", bases.host());
    build(
        &kiln,
        "static-server",
        "static-server",
        &["--build-arg".into(), debian],
    );

    let inspected = image_config(&kiln, "static-server");
    let config = oci_config(&inspected);
    assert_eq!(config["User"], "65534:65534", "{inspected:#}");
    assert_eq!(config["Entrypoint"][0], "/bin/tinyhttpd", "{inspected:#}");

    let ctr = kiln.run(["from", "static-server"]).trim().to_string();
    let port = free_port();
    let mut server = kiln
        .cmd([
            "run",
            &ctr,
            "--",
            "/bin/tinyhttpd",
            "/srv",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting the server");
    let t0 = Instant::now();
    let answer = loop {
        if let Some(a) = http_get(port) {
            break Some(a);
        }
        if t0.elapsed() > Duration::from_secs(30) || server.try_wait().ok().flatten().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // SIGTERM lets kiln stop its sandbox before exiting.
    let _ = std::process::Command::new("kill")
        .arg(server.id().to_string())
        .status();
    let _ = server.wait();
    let answer = answer.expect("the server never answered");
    assert!(answer.contains("served by tinyhttpd"), "{answer}");
}

#[test]
fn python_app_self_tests_as_its_user() {
    let bases = Bases::for_dockerfile("/debian-py");
    let kiln = Kiln::new();
    kiln.mark_insecure(&bases.reg);
    let base = format!("PYTHON_BASE={}/debian-py:bookworm", bases.host());
    let out = build(
        &kiln,
        "python-app",
        "python-app",
        &["--build-arg".into(), base],
    );
    assert!(out.contains("self-test ok: \"hello, kiln\""), "{out}");

    let inspected = image_config(&kiln, "python-app");
    let config = oci_config(&inspected);
    assert_eq!(config["User"], "app", "{inspected:#}");
    assert_eq!(config["WorkingDir"], "/app", "{inspected:#}");

    let ctr = kiln.run(["from", "python-app"]).trim().to_string();
    let o = kiln.output([
        "run",
        &ctr,
        "--",
        "sh",
        "-c",
        "id -un; python3 /app/app.py --self-test",
    ]);
    let out = lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", lossy(&o.stderr));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["app", "self-test ok: \"hello, kiln\""],
        "{out}"
    );
}

/// `examples/corp-injector`, built as its README says: `kiln plugin install`, then `--inject corp`
/// (and `--inject-opt corp.site=…`): the RUN sees its variable and file, the image neither.
#[test]
fn corp_injector_installs_and_injects_for_the_step_only() {
    let bases = Bases::start(false);
    let kiln = Kiln::new();
    let installed = kiln.run(["plugin", "install", plugins::EXAMPLE_CORP_INJECTOR_PATH]);
    assert!(installed.contains("corp") && installed.contains("injector"), "{installed}");
    let list = kiln.run(["plugin", "list"]);
    assert!(list.lines().any(|l| l.starts_with("corp ") && l.contains("injector")), "{list}");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN test \"$CORP_BUILD_SITE\" = eu && cp /etc/corp/build-info /seen-info\n",
            bases.reg.reference("busybox:latest")
        ),
    )
    .unwrap();
    let ctx = tmp.path().to_str().unwrap();
    let plain = kiln.run_fail(["build", "--tls-verify=false", "-t", "corp-plain", ctx]);
    assert!(plain.contains("RUN failed"), "without --inject corp the RUN should fail:\n{plain}");
    let out = tmp.path().join("corp.tar");
    let dest = format!("oci-archive:{}", out.display());
    kiln.run(["build", "--tls-verify=false", "--inject", "corp", "--inject-opt", "corp.site=eu", "-t", &dest, ctx]);
    let s = summary(&out);
    assert_file(&s, "/seen-info", b"site=eu\nstage=0\nstep=0\n");
    assert!(file(&s, "/etc/corp").is_none() && file(&s, "/etc/corp/build-info").is_none(), "the injected file reached the image");
    let config = archive_config(&out);
    assert!(!config["config"]["Env"].to_string().contains("CORP_BUILD_SITE"), "the injected env reached the config: {config}");
}
