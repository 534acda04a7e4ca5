//! Self-tests of the integration harness: every registry variant starts and accepts a skopeo push,
//! authentication is really enforced, and the cutting proxy cuts.

use kiln_tests::skopeo::{Side, registry_flags};
use kiln_tests::{Cut, CutProxy, Registry, Skopeo, Variant, bases};
use std::process::Command;

fn curl_status(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--noproxy",
            "*",
        ])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn plain_registry_takes_busybox() {
    let reg = Registry::start(Variant::Plain);
    let digest = bases::push_busybox(&reg);
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(
        Skopeo::new().manifest_digest(&reg, "busybox:latest"),
        digest
    );
    assert_eq!(curl_status(&[&format!("{}/v2/", reg.url())]), "200");
}

#[test]
fn tls_registry_verifies_with_its_ca() {
    let reg = Registry::start(Variant::Tls);
    let ca = reg.ca_cert().unwrap().to_str().unwrap().to_string();
    assert_eq!(
        curl_status(&["--cacert", &ca, &format!("{}/v2/", reg.url())]),
        "200"
    );
    // Without the CA the handshake fails (curl reports 000).
    assert_eq!(
        curl_status(&["--cacert", "/dev/null", &format!("{}/v2/", reg.url())]),
        "000"
    );
    bases::push_busybox(&reg);
}

#[test]
fn htpasswd_registry_demands_credentials() {
    let reg = Registry::start(Variant::Htpasswd);
    assert_eq!(curl_status(&[&format!("{}/v2/", reg.url())]), "401");
    let (u, p) = reg.credentials().unwrap();
    assert_eq!(
        curl_status(&["-u", &format!("{u}:{p}"), &format!("{}/v2/", reg.url())]),
        "200"
    );
    assert_eq!(
        curl_status(&["-u", &format!("{u}:wrong"), &format!("{}/v2/", reg.url())]),
        "401"
    );
    bases::push_busybox(&reg);
}

#[test]
fn token_registry_issues_tokens() {
    let reg = Registry::start(Variant::Token);
    bases::push_busybox(&reg);
    let ts = reg.token_server().unwrap();
    let reqs = ts.requests();
    assert!(
        reqs.iter().any(|r| r.user.as_deref() == Some("kiln")
            && r.scopes
                .iter()
                .any(|s| s.contains("busybox") && s.contains("push"))),
        "{reqs:?}"
    );
    // An anonymous client may pull.
    let raw = Skopeo::new()
        .cmd()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(reg.docker("busybox:latest"))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    // ...but not push.
    let push = Skopeo::new()
        .cmd()
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", bases::busybox_layout().display()))
        .arg(reg.docker("anon:latest"))
        .output()
        .unwrap();
    assert!(!push.status.success(), "anonymous push should be refused");
}

#[test]
fn cut_proxy_cuts_blob_downloads() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let proxy = CutProxy::start(reg.addr(), Cut::blobs(4096, usize::MAX));
    let out = tempfile::tempdir().unwrap();
    let r = Skopeo::new()
        .cmd()
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/busybox:latest", proxy.host()))
        .arg(format!("oci:{}:x", out.path().display()))
        .output()
        .unwrap();
    assert!(
        !r.status.success(),
        "copy through a cutting proxy should fail"
    );
    assert!(proxy.cuts() >= 1);
    let _ = registry_flags(&reg, Side::Src);
}

#[test]
fn debian_base_is_built_once_and_pushed() {
    let reg = Registry::start(Variant::Plain);
    let digest = bases::push_debian(&reg);
    assert_eq!(
        Skopeo::new().manifest_digest(&reg, "debian:bookworm"),
        digest
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&Skopeo::new().inspect_config(&reg, "debian:bookworm")).unwrap();
    assert_eq!(cfg["config"]["Cmd"][0], "bash");
    // The rootfs is a real minbase: apt and bash are there, caches are not.
    let tar = bases::debian_rootfs_tar();
    let list = kiln_tests::util::run_ok(Command::new("tar").arg("-tf").arg(&tar)).stdout;
    let list = String::from_utf8_lossy(&list);
    assert!(
        list.lines().any(|l| l == "./usr/bin/apt"),
        "apt in the rootfs"
    );
    assert!(
        list.lines()
            .any(|l| l == "./bin/bash" || l == "./usr/bin/bash"),
        "bash in the rootfs"
    );
    assert!(
        !list.lines().any(
            |l| l.starts_with("./var/lib/apt/lists/") && l.len() > "./var/lib/apt/lists/".len()
        ),
        "apt lists removed"
    );
    // A second push reuses the cached layout.
    let reg2 = Registry::start(Variant::Plain);
    let t = std::time::Instant::now();
    assert_eq!(bases::push_debian(&reg2), digest);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "cached: {:?}",
        t.elapsed()
    );
}
