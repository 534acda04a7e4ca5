//! The `proxy-ca` mount injector end to end: a RUN step reaches a TLS server whose CA was made at
//! test time only when `kiln build --inject proxy-ca --ca-cert` is used, and nothing of the
//! injection (CA bytes, mount points, environment) is left in the image or the store.

use kiln_tests::pki::Pki;
use kiln_tests::traces::{Needle, needle, traces};
use kiln_tests::util::{free_port, lossy, run_ok, wait_for_port};
use kiln_tests::{Kiln, Registry, Variant, bases};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `openssl s_server -www` on 127.0.0.1 with a certificate from `pki`; killed when dropped.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(pki: &Pki) -> TlsServer {
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&pki.server_cert)
            .arg("-key")
            .arg(&pki.server_key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting openssl s_server");
        assert!(wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10)), "openssl s_server did not listen on {port}");
        TlsServer { child, port }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A build context directory with one Containerfile.
fn context(dir: &Path, name: &str, containerfile: &str) -> PathBuf {
    let ctx = dir.join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Containerfile"), containerfile).unwrap();
    ctx
}

fn build_args<'a>(ctx: &'a Path, tag: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["build", "--tls-verify=false", "-t", tag];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    args
}

/// The ocitree.py of the shared tools beside the repository.
fn ocitree() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for up in manifest.ancestors() {
        let p = up.join("shared/tools/ocitree.py");
        if p.exists() {
            return p;
        }
    }
    panic!("shared/tools/ocitree.py not found beside the repository");
}

/// Export `image` as an oci-archive and return ocitree's summary of it.
fn summary(kiln: &Kiln, dir: &Path, image: &str) -> serde_json::Value {
    let archive = dir.join(format!("{}.tar", image.replace([':', '/'], "_")));
    let _ = std::fs::remove_file(&archive);
    kiln.run(["push", image, &format!("oci-archive:{}", archive.display())]);
    let out = run_ok(Command::new("python3").arg(ocitree()).arg("summary").arg(&archive));
    serde_json::from_slice(&out.stdout).expect("ocitree summary is JSON")
}

/// The summary's files by path, without `ignore`d ones.
fn files(summary: &serde_json::Value, ignore: &[&str]) -> Vec<serde_json::Value> {
    summary["files"].as_array().expect("files").iter().filter(|f| !ignore.contains(&f["path"].as_str().unwrap_or(""))).cloned().collect()
}

fn file<'a>(summary: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    summary["files"].as_array().expect("files").iter().find(|f| f["path"] == path)
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Every regular file under `root` (decompressed too when it is gzip or zstd) is free of
/// `needles`; returns how many files were read.
fn assert_nothing_contains(root: &Path, needles: &[Needle]) -> usize {
    let (hits, files) = traces(root, needles);
    assert!(hits.is_empty(), "the CA is in the store: {hits:?}");
    files
}

/// What identifies the test CA: its DER bytes and a line of its PEM body.
fn ca_needles(pki: &Pki) -> Vec<Needle> {
    let der = run_ok(Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(&pki.ca_cert)).stdout;
    let pem = std::fs::read_to_string(&pki.ca_cert).unwrap();
    let line = pem.lines().nth(2).expect("a PEM body line").as_bytes().to_vec();
    assert_eq!(line.len(), 64);
    vec![needle("ca-der", der), needle("ca-pem-line", line)]
}

#[test]
fn debian_curl_trusts_the_injected_ca_and_keeps_no_trace() {
    let reg = Registry::start(Variant::Plain);
    bases::push_debian(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&tmp.path().join("pki"));
    let server = TlsServer::start(&pki);
    let ca = pki.ca_cert.to_str().unwrap();
    let kiln = Kiln::new();

    // A Debian image with curl and the distribution's CA bundle, and one without the bundle.
    let base = context(
        tmp.path(),
        "base",
        &format!(
            "FROM {}\nRUN apt-get update -q && apt-get install -y -q --no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*\n",
            reg.reference("debian:bookworm")
        ),
    );
    kiln.run(build_args(&base, "curlbase", &["-q"]));
    let nobundle = context(tmp.path(), "nobundle", "FROM curlbase\nRUN rm /etc/ssl/certs/ca-certificates.crt\n");
    kiln.run(build_args(&nobundle, "nobundle", &["-q"]));

    // Without the injector the handshake fails; with it, curl trusts the CA and the image's own
    // CAs are still in the bundle.
    let strict = context(
        tmp.path(),
        "strict",
        &format!(
            "FROM curlbase\nRUN curl -fsS -o /dev/null {} && test $(grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt) -gt 100\n",
            server.url()
        ),
    );
    let err = kiln.run_fail(build_args(&strict, "strict-plain", &[]));
    assert!(err.contains("certificate"), "curl should fail on the unknown CA:\n{err}");
    kiln.run(build_args(&strict, "strict-inj", &["--inject", "proxy-ca", "--ca-cert", ca]));

    // The same step recording the HTTP status, without and with the injector, on both bases:
    // the images differ only in that status.
    for from in ["curlbase", "nobundle"] {
        let status = context(
            tmp.path(),
            &format!("status-{from}"),
            &format!("FROM {from}\nRUN curl -s -o /dev/null -w '%{{http_code}}' {} > /status || true\n", server.url()),
        );
        kiln.run(build_args(&status, &format!("{from}-plain"), &["-q"]));
        kiln.run(build_args(&status, &format!("{from}-inj"), &["-q", "--inject", "proxy-ca", "--ca-cert", ca]));
        let plain = summary(&kiln, tmp.path(), &format!("{from}-plain"));
        let inj = summary(&kiln, tmp.path(), &format!("{from}-inj"));
        assert_eq!(file(&plain, "/status").unwrap()["sha256"], sha256_hex(b"000"), "{from}: without the injector the handshake fails");
        assert_eq!(file(&inj, "/status").unwrap()["sha256"], sha256_hex(b"200"), "{from}: with the injector curl gets 200");
        assert_eq!(files(&plain, &["/status"]), files(&inj, &["/status"]), "{from}: the injection left files behind");
        assert_eq!(plain["config"], inj["config"], "{from}: the injection changed the config");
        assert!(inj["config"]["Env"].to_string().find("SSL_CERT_FILE").is_none());
        assert!(file(&inj, "/etc/kiln").is_none());
        if from == "nobundle" {
            assert!(file(&inj, "/etc/ssl/certs/ca-certificates.crt").is_none(), "the mount point created for the bundle stayed");
        }
    }

    // A step that rewrites the system bundle (update-ca-certificates renames a new file over it)
    // still works: the merged bundle then lives elsewhere and the CA variables point there.
    let rewrite =
        context(tmp.path(), "rewrite", &format!("FROM curlbase\nRUN update-ca-certificates && curl -fsS -o /dev/null {}\n", server.url()));
    kiln.run(build_args(&rewrite, "rewrite-inj", &["--inject", "proxy-ca", "--ca-cert", ca]));

    // A config file can turn the injector on; --ca-cert still names the CA.
    let conf = kiln.home().path().join(".config/kiln");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("kiln.toml"), "inject = [\"proxy-ca\"]\n").unwrap();
    kiln.run(build_args(&strict, "strict-conf", &["--no-cache", "--ca-cert", ca]));
    std::fs::remove_file(conf.join("kiln.toml")).unwrap();

    // No blob (layers decompressed), config, cache entry or snapshot of the store holds the CA.
    let checked = assert_nothing_contains(kiln.root(), &ca_needles(&pki));
    assert!(checked > 10, "only {checked} files in the store");
    drop(server);
}

#[test]
fn busybox_gets_bundle_truststore_and_proxies_for_the_step_only() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&tmp.path().join("pki"));
    let ca = pki.ca_cert.to_str().unwrap();
    let mut kiln = Kiln::new();
    kiln.env("HTTPS_PROXY", "http://proxy.invalid:3128");

    // A "JVM" (the plugin looks for /usr/bin/java) in a busybox image without any CA bundle.
    let jvm = context(tmp.path(), "jvm", &format!("FROM {}\nRUN touch /usr/bin/java\n", reg.reference("busybox:latest")));
    kiln.run(build_args(&jvm, "fakejvm", &["-q"]));
    let checks = [
        "test -s /etc/ssl/certs/ca-certificates.crt",
        "grep -q \"$(sed -n 3p /ca.pem)\" /etc/ssl/certs/ca-certificates.crt",
        "test \"$SSL_CERT_FILE\" = /etc/ssl/certs/ca-certificates.crt",
        "test \"$NODE_EXTRA_CA_CERTS\" = /etc/ssl/certs/ca-certificates.crt",
        "test -s /etc/kiln/java-cacerts.p12",
        "echo \"$JAVA_TOOL_OPTIONS\" | grep -q -- '-Djavax.net.ssl.trustStore=/etc/kiln/java-cacerts.p12 '",
        "echo \"$JAVA_TOOL_OPTIONS\" | grep -q -- '-Dhttps.proxyHost=proxy.invalid -Dhttps.proxyPort=3128'",
        "test \"$https_proxy\" = http://proxy.invalid:3128",
        "test \"$HTTPS_PROXY\" = http://proxy.invalid:3128",
        "! echo x 2>/dev/null >> /etc/ssl/certs/ca-certificates.crt",
    ];
    // The CA is handed in through a bind volume so that the check can compare it; the volume
    // is not part of the image either.
    let run = context(tmp.path(), "run", &format!("FROM fakejvm\nRUN {}\n", checks.join(" && ")));
    let volume = format!("{ca}:/ca.pem:ro");
    let err = kiln.run_fail(build_args(&run, "checked-plain", &["-v", &volume]));
    assert!(err.contains("RUN failed") && err.contains("test -s /etc/ssl/certs/ca-certificates.crt"), "{err}");
    kiln.run(build_args(&run, "checked-inj", &["-v", &volume, "--inject", "proxy-ca", "--ca-cert", ca]));

    let base = summary(&kiln, tmp.path(), "fakejvm");
    let inj = summary(&kiln, tmp.path(), "checked-inj");
    assert_eq!(files(&base, &[]), files(&inj, &[]), "the injection left files behind");
    assert_eq!(base["config"], inj["config"]);
    assert!(file(&inj, "/etc/ssl").is_none() && file(&inj, "/etc/kiln").is_none());
    assert_nothing_contains(kiln.root(), &ca_needles(&pki));
}

#[test]
fn a_ca_file_without_certificates_fails_the_build() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let kiln = Kiln::new();
    let bad = tmp.path().join("not-a-ca.pem");
    std::fs::write(&bad, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let ctx = context(tmp.path(), "ctx", &format!("FROM {}\nRUN true\n", reg.reference("busybox:latest")));
    let err = kiln.run_fail(build_args(&ctx, "bad", &["--inject", "proxy-ca", "--ca-cert", bad.to_str().unwrap()]));
    assert!(err.contains("ca-cert") && err.contains("PRIVATE KEY"), "{err}");
    let out = kiln.output(["images"]);
    assert!(!lossy(&out.stdout).contains("localhost/bad"), "a failed build left an image");
}
