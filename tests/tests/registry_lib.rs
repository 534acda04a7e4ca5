//! kiln-registry against real registries (Debian's docker-registry on loopback), checked with
//! skopeo: pulls, pushes, formats, TLS, basic and bearer auth, corrupt content, broken
//! connections, imports and plugin artifacts.

use kiln_registry::{
    ClientOptions, Credentials, Error, Platform, Progress, PushFormat, RegistryClient,
};
use kiln_store::Store;
use kiln_tests::bases::{self, Compression, ImageSpec, Layout};
use kiln_tests::{Cut, CutProxy, Registry, Skopeo, Variant};
use serde_json::Value;
use std::path::PathBuf;

/// A store in a temp dir, plus a client configured for `reg`: certificates from its cert dir for
/// TLS variants, `tls_verify=false` otherwise; its own auth file and an empty registries.conf.
struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    auth_file: PathBuf,
    conf: PathBuf,
    cert_dir: Option<PathBuf>,
    tls_verify: Option<bool>,
}

impl Env {
    fn new(reg: &Registry) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let conf = dir.path().join("registries.conf");
        std::fs::write(&conf, "unqualified-search-registries = []\n").unwrap();
        let cert_dir = reg.cert_dir();
        let tls_verify = if reg.variant().is_tls() {
            None
        } else {
            Some(false)
        };
        Env {
            auth_file: dir.path().join("auth.json"),
            conf,
            _dir: dir,
            store,
            cert_dir,
            tls_verify,
        }
    }

    fn opts(&self) -> ClientOptions {
        ClientOptions {
            tls_verify: self.tls_verify,
            auth_file: Some(self.auth_file.clone()),
            cert_dir: self.cert_dir.clone(),
            progress: Progress::Quiet,
            registries_conf: Some(self.conf.clone()),
            retry_delay: std::time::Duration::from_millis(20),
            ..ClientOptions::default()
        }
    }

    fn client(&self) -> RegistryClient {
        RegistryClient::new(self.opts()).unwrap()
    }

    fn blob_count(&self) -> usize {
        self.store.list_blobs().unwrap().len()
    }

    fn tmp_is_empty(&self) -> bool {
        std::fs::read_dir(self.store.tmp_dir())
            .unwrap()
            .next()
            .is_none()
    }
}

fn config_digest(skopeo: &Skopeo, reg: &Registry, image: &str) -> String {
    format!(
        "sha256:{}",
        kiln_tests::util::sha256_bytes(&skopeo.inspect_config(reg, image))
    )
}

#[test]
fn pull_by_tag_and_digest_match_skopeo() {
    let reg = Registry::start(Variant::Plain);
    let pushed = bases::push_busybox(&reg);
    let skopeo = Skopeo::new();
    let env = Env::new(&reg);
    let c = env.client();
    let img = c.pull(&env.store, &reg.docker("busybox:latest")).unwrap();
    assert_eq!(img.manifest_digest.to_string(), pushed);
    assert_eq!(
        img.id.to_string(),
        config_digest(&skopeo, &reg, "busybox:latest")
    );
    assert_eq!(img.record.names, vec![reg.reference("busybox:latest")]);
    let m = env.store.image_manifest(&img.record).unwrap();
    for l in &m.layers {
        assert!(env.store.has_blob(&l.digest));
    }
    // By digest: same image, the bare name (no docker://) works too.
    let env2 = Env::new(&reg);
    let by_digest = env2
        .client()
        .pull(&env2.store, &reg.reference(&format!("busybox@{pushed}")))
        .unwrap();
    assert_eq!(by_digest.id, img.id);
    // Named by the digest (no tag), as buildah names it.
    assert_eq!(
        by_digest.record.names,
        vec![reg.reference(&format!("busybox@{pushed}"))]
    );
    assert_eq!(
        env.store
            .resolve_image(&reg.reference("busybox:latest"))
            .unwrap()
            .id,
        img.id
    );
}

#[test]
fn second_pull_downloads_no_blob() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let counter = CutProxy::start(reg.addr(), Cut::count("/blobs/sha256:"));
    let env = Env::new(&reg);
    let c = env.client();
    let src = format!("docker://{}/busybox:latest", counter.host());
    c.pull(&env.store, &src).unwrap();
    let first = counter.matching_requests();
    assert!(first >= 2, "config and layer fetched: {first}");
    c.pull(&env.store, &src).unwrap();
    assert_eq!(counter.matching_requests(), first, "nothing fetched again");
}

#[test]
fn fetch_config_reads_no_layer() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let counter = CutProxy::start(reg.addr(), Cut::count("/blobs/sha256:"));
    let env = Env::new(&reg);
    let (bytes, digest) = env
        .client()
        .fetch_config(
            &format!("docker://{}/busybox:latest", counter.host()),
            &Platform::host(),
        )
        .unwrap();
    assert_eq!(
        digest.to_string(),
        config_digest(&Skopeo::new(), &reg, "busybox:latest")
    );
    let cfg: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(cfg["config"]["Cmd"][0], "/bin/sh");
    assert_eq!(counter.matching_requests(), 1, "only the config blob");
}

#[test]
fn push_round_trip_and_skopeo_copies_back() {
    let reg = Registry::start(Variant::Plain);
    let original = bases::push_busybox(&reg);
    let env = Env::new(&reg);
    let c = env.client();
    c.pull(&env.store, &reg.docker("busybox:latest")).unwrap();
    let digest = c
        .push(
            &env.store,
            &reg.reference("busybox:latest"),
            &reg.docker("copy/busybox:v1"),
            None,
        )
        .unwrap();
    assert_eq!(
        digest.to_string(),
        original,
        "the stored manifest goes byte for byte"
    );
    let skopeo = Skopeo::new();
    assert_eq!(
        skopeo.manifest_digest(&reg, "copy/busybox:v1"),
        digest.to_string()
    );
    let out = tempfile::tempdir().unwrap();
    skopeo.copy_from(
        &reg,
        "copy/busybox:v1",
        &format!("oci:{}:x", out.path().display()),
        &[],
    );
    assert!(out.path().join("index.json").exists());
}

#[test]
fn skopeo_copy_in_then_pull() {
    let reg = Registry::start(Variant::Plain);
    let skopeo = Skopeo::new();
    let layout = bases::busybox_layout();
    skopeo.copy_to(
        &format!("oci:{}:latest", layout.display()),
        &reg,
        "in/bb:2",
        &["--format=v2s2"],
    );
    let env = Env::new(&reg);
    let img = env
        .client()
        .pull(&env.store, &reg.docker("in/bb:2"))
        .unwrap();
    assert_eq!(
        img.record.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        img.manifest_digest.to_string(),
        skopeo.manifest_digest(&reg, "in/bb:2")
    );
}

#[test]
fn push_docker_format_converts_media_types_only() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let env = Env::new(&reg);
    let c = env.client();
    let img = c.pull(&env.store, &reg.docker("busybox:latest")).unwrap();
    let digest = c
        .push(
            &env.store,
            &img.id.to_string(),
            &reg.docker("v2s2/bb:latest"),
            Some(PushFormat::Docker),
        )
        .unwrap();
    let skopeo = Skopeo::new();
    let m = skopeo.manifest(&reg, "v2s2/bb:latest");
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        m["config"]["digest"],
        img.id.to_string(),
        "config bytes unchanged"
    );
    assert_eq!(
        skopeo.manifest_digest(&reg, "v2s2/bb:latest"),
        digest.to_string()
    );
    // And back to OCI.
    let env2 = Env::new(&reg);
    let c2 = env2.client();
    c2.pull(&env2.store, &reg.docker("v2s2/bb:latest")).unwrap();
    c2.push(
        &env2.store,
        &reg.reference("v2s2/bb:latest"),
        &reg.docker("oci/bb:latest"),
        Some(PushFormat::Oci),
    )
    .unwrap();
    let m = skopeo.manifest(&reg, "oci/bb:latest");
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}

#[test]
fn push_mounts_and_skips_known_blobs() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let uploads = CutProxy::start(reg.addr(), Cut::count("PATCH "));
    let env = Env::new(&reg);
    let c = env.client();
    let host = uploads.host();
    c.pull(&env.store, &format!("docker://{host}/busybox:latest"))
        .unwrap();
    // Same registry, other repository: every blob is mounted, nothing uploaded.
    c.push(
        &env.store,
        &format!("{host}/busybox:latest"),
        &format!("docker://{host}/other:1"),
        None,
    )
    .unwrap();
    assert_eq!(
        uploads.matching_requests(),
        0,
        "blobs were mounted, not uploaded"
    );
    // The same repository again: HEAD says present.
    c.push(
        &env.store,
        &format!("{host}/busybox:latest"),
        &format!("docker://{host}/other:2"),
        None,
    )
    .unwrap();
    assert_eq!(uploads.matching_requests(), 0);
    // A fresh registry gets real uploads.
    let reg2 = Registry::start(Variant::Plain);
    let uploads2 = CutProxy::start(reg2.addr(), Cut::count("PATCH "));
    c.push(
        &env.store,
        &format!("{host}/busybox:latest"),
        &format!("docker://{}/bb:1", uploads2.host()),
        None,
    )
    .unwrap();
    assert_eq!(
        uploads2.matching_requests(),
        2,
        "config and one layer uploaded"
    );
}

#[test]
fn tls_with_cert_dir_and_without_verification() {
    let reg = Registry::start(Variant::Tls);
    bases::push_busybox(&reg);
    let env = Env::new(&reg);
    env.client()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap();
    // No CA: the certificate is refused and there is no fallback to http.
    let mut opts = env.opts();
    opts.cert_dir = None;
    let err = RegistryClient::new(opts.clone())
        .unwrap()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate")
            || err.to_string().contains("UnknownIssuer"),
        "{err}"
    );
    // tls_verify=false: accepted without the CA.
    opts.tls_verify = Some(false);
    let env2 = Env::new(&reg);
    RegistryClient::new(opts)
        .unwrap()
        .pull(&env2.store, &reg.docker("busybox:latest"))
        .unwrap();
}

#[test]
fn insecure_registry_from_registries_conf_falls_back_to_http() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let env = Env::new(&reg);
    let mut opts = env.opts();
    opts.tls_verify = None;
    let err = RegistryClient::new(opts.clone())
        .unwrap()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap_err();
    assert!(
        matches!(err, Error::Network { .. }),
        "https only without an insecure entry: {err}"
    );
    std::fs::write(&env.conf, format!("unqualified-search-registries = ['{}']\n[[registry]]\nlocation = '{}'\ninsecure = true\n", reg.host(), reg.host())).unwrap();
    let c = RegistryClient::new(opts).unwrap();
    // A short name resolves through unqualified-search-registries.
    let img = c.pull(&env.store, "busybox").unwrap();
    assert_eq!(
        img.reference.unwrap().to_string(),
        reg.reference("busybox:latest")
    );
}

#[test]
fn htpasswd_requires_login() {
    let reg = Registry::start(Variant::Htpasswd);
    bases::push_busybox(&reg);
    let env = Env::new(&reg);
    let err = env
        .client()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    let (user, pass) = reg.credentials().unwrap();
    let err = env.client().login(&reg.host(), user, "wrong").unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    assert!(!env.auth_file.exists(), "nothing saved for bad credentials");
    env.client().login(&reg.host(), user, pass).unwrap();
    let saved: Value = serde_json::from_slice(&std::fs::read(&env.auth_file).unwrap()).unwrap();
    assert!(saved["auths"][reg.host()]["auth"].is_string());
    env.client()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap();
    env.client().logout(&reg.host()).unwrap();
    assert!(
        env.client().logout(&reg.host()).is_err(),
        "second logout: not logged in"
    );
    let err = env
        .client()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
}

#[test]
fn bearer_tokens_anonymous_pull_authenticated_push() {
    let reg = Registry::start(Variant::Token);
    bases::push_busybox(&reg);
    let env = Env::new(&reg);
    let c = env.client();
    let img = c.pull(&env.store, &reg.docker("busybox:latest")).unwrap();
    let err = c
        .push(&env.store, &img.id.to_string(), &reg.docker("mine:1"), None)
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { .. }),
        "anonymous push refused: {err}"
    );
    let (user, pass) = reg.credentials().unwrap();
    env.client().login(&reg.host(), user, pass).unwrap();
    let c = env.client();
    let d = c
        .push(&env.store, &img.id.to_string(), &reg.docker("mine:1"), None)
        .unwrap();
    assert_eq!(Skopeo::new().manifest_digest(&reg, "mine:1"), d.to_string());
    let reqs = reg.token_server().unwrap().requests();
    assert!(
        reqs.iter()
            .any(|r| r.user.is_none() && r.scopes == ["repository:busybox:pull"]),
        "anonymous pull token: {reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| r.user.as_deref() == Some(user)
            && r.scopes.iter().any(|s| s == "repository:mine:pull,push")),
        "push token with scope: {reqs:?}"
    );
    // Using explicit credentials (--creds) instead of the auth file works too.
    let mut opts = env.opts();
    opts.auth_file = Some(env.auth_file.with_extension("none"));
    opts.credentials = Some(Credentials::new(user, pass));
    RegistryClient::new(opts)
        .unwrap()
        .push(&env.store, &img.id.to_string(), &reg.docker("mine:2"), None)
        .unwrap();
}

#[test]
fn lying_manifest_digest_is_refused() {
    let reg = Registry::start(Variant::Plain);
    let digest = bases::push_busybox(&reg);
    let path = reg.blob_data_path(&digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"\n");
    std::fs::write(&path, &bytes).unwrap();
    let env = Env::new(&reg);
    for src in [
        reg.docker(&format!("busybox@{digest}")),
        reg.docker("busybox:latest"),
    ] {
        let err = env.client().pull(&env.store, &src).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{src}: {err}");
        assert!(
            err.to_string().contains(&digest),
            "error names the digest: {err}"
        );
        assert!(
            err.to_string().contains("/manifests/"),
            "error names the URL: {err}"
        );
    }
    assert!(env.store.list_images().unwrap().is_empty());
}

fn busybox_layer(reg: &Registry) -> (String, u64) {
    let m = Skopeo::new().manifest(reg, "busybox:latest");
    (
        m["layers"][0]["digest"].as_str().unwrap().to_string(),
        m["layers"][0]["size"].as_u64().unwrap(),
    )
}

#[test]
fn truncated_and_corrupted_blobs_leave_nothing_behind() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let (layer, size) = busybox_layer(&reg);
    let path = reg.blob_data_path(&layer);
    let good = std::fs::read(&path).unwrap();
    // Truncated.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let env = Env::new(&reg);
    let err = env
        .client()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap_err();
    assert!(err.to_string().contains(&layer), "names the layer: {err}");
    assert!(err.to_string().contains("/blobs/"), "names the URL: {err}");
    let d: kiln_registry::Digest = layer.parse().unwrap();
    assert!(!env.store.has_blob(&d));
    assert!(env.tmp_is_empty(), "no half blob left in the store's tmp");
    assert!(env.store.list_images().unwrap().is_empty());
    // Same size, different bytes.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    assert_eq!(bad.len() as u64, size);
    std::fs::write(&path, &bad).unwrap();
    let err = env
        .client()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layer), "{err}");
    assert!(!env.store.has_blob(&d));
    assert!(env.tmp_is_empty());
}

#[test]
fn connection_cut_mid_blob_resumes_or_fails_cleanly() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let (layer, _) = busybox_layer(&reg);
    let d: kiln_registry::Digest = layer.parse().unwrap();
    // Always cut: the pull fails after its retries, naming the blob; nothing is stored.
    let always = CutProxy::start(reg.addr(), Cut::blobs(64 * 1024, usize::MAX));
    let env = Env::new(&reg);
    let mut opts = env.opts();
    opts.retries = 2;
    let err = RegistryClient::new(opts)
        .unwrap()
        .pull(
            &env.store,
            &format!("docker://{}/busybox:latest", always.host()),
        )
        .unwrap_err();
    assert!(err.to_string().contains(&layer), "{err}");
    assert!(always.cuts() >= 3, "retried: {} cuts", always.cuts());
    assert!(!env.store.has_blob(&d));
    assert!(env.tmp_is_empty());
    // Cut once: the download resumes and the pull succeeds.
    let once = CutProxy::start(reg.addr(), Cut::blobs(64 * 1024, 1));
    let img = env
        .client()
        .pull(
            &env.store,
            &format!("docker://{}/busybox:latest", once.host()),
        )
        .unwrap();
    assert_eq!(once.cuts(), 1);
    assert!(env.store.has_blob(&d));
    assert_eq!(
        img.id.to_string(),
        config_digest(&Skopeo::new(), &reg, "busybox:latest")
    );
}

#[test]
fn server_errors_are_retried() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let flaky = CutProxy::start(reg.addr(), Cut::status("/manifests/", 503, 2));
    let env = Env::new(&reg);
    env.client()
        .pull(
            &env.store,
            &format!("docker://{}/busybox:latest", flaky.host()),
        )
        .unwrap();
    assert_eq!(flaky.cuts(), 2);
    let down = CutProxy::start(reg.addr(), Cut::status("/manifests/", 503, usize::MAX));
    let mut opts = env.opts();
    opts.retries = 1;
    let err = RegistryClient::new(opts)
        .unwrap()
        .pull(
            &env.store,
            &format!("docker://{}/busybox:latest", down.host()),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Status { status: 503, .. }), "{err}");
}

#[test]
fn index_platform_selection() {
    let reg = Registry::start(Variant::Plain);
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("l.tar");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/arch"), "any\n").unwrap();
    bases::tar_dir(&root, &tar, true);
    let mut layout = Layout::create(&dir.path().join("layout"));
    let amd = layout.add_image(
        &[&tar],
        &ImageSpec {
            arch: "amd64".into(),
            cmd: vec!["amd".into()],
            ..ImageSpec::default()
        },
    );
    let arm = layout.add_image(
        &[&tar],
        &ImageSpec {
            arch: "arm64".into(),
            variant: Some("v8".into()),
            cmd: vec!["arm".into()],
            compression: Compression::None,
            ..ImageSpec::default()
        },
    );
    let idx = layout.add_index(&[amd, arm]);
    layout.tag(&idx, "multi");
    Skopeo::new().copy_to(
        &format!("oci:{}:multi", layout.dir().display()),
        &reg,
        "multi:1",
        &["--all", "--preserve-digests"],
    );
    let env = Env::new(&reg);
    let c = env.client();
    let cmd = |img: &kiln_registry::PulledImage| {
        env.store
            .image_config(&img.record)
            .unwrap()
            .config
            .cmd
            .unwrap()[0]
            .clone()
    };
    let arm_img = c
        .pull_platform(
            &env.store,
            &reg.docker("multi:1"),
            &Platform::parse("linux/arm64").unwrap(),
        )
        .unwrap();
    assert_eq!(cmd(&arm_img), "arm");
    let m = env.store.image_manifest(&arm_img.record).unwrap();
    assert_eq!(
        m.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar",
        "uncompressed layer kept"
    );
    let amd_img = c
        .pull_platform(
            &env.store,
            &reg.docker("multi:1"),
            &Platform::parse("linux/amd64").unwrap(),
        )
        .unwrap();
    assert_eq!(cmd(&amd_img), "amd");
    let err = c
        .pull_platform(
            &env.store,
            &reg.docker("multi:1"),
            &Platform::parse("linux/s390x").unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NoMatchingPlatform { .. }), "{err}");
    assert!(
        err.to_string().contains("linux/arm64/v8"),
        "lists what is available: {err}"
    );
}

#[test]
fn zstd_layers_pull_and_refuse_docker_format() {
    let reg = Registry::start(Variant::Plain);
    Skopeo::new().copy_to(
        &format!("oci:{}:latest", bases::busybox_layout().display()),
        &reg,
        "zbb:1",
        &["--dest-compress-format=zstd", "--dest-compress"],
    );
    let m = Skopeo::new().manifest(&reg, "zbb:1");
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let env = Env::new(&reg);
    let c = env.client();
    let img = c.pull(&env.store, &reg.docker("zbb:1")).unwrap();
    let err = c
        .push(
            &env.store,
            &img.id.to_string(),
            &reg.docker("zbb:docker"),
            Some(PushFormat::Docker),
        )
        .unwrap_err();
    assert!(err.to_string().contains("zstd"), "{err}");
    c.push(
        &env.store,
        &img.id.to_string(),
        &reg.docker("zbb:oci"),
        Some(PushFormat::Oci),
    )
    .unwrap();
}

#[test]
fn imports_oci_dir_oci_archive_and_docker_archive() {
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let want = config_digest(&Skopeo::new(), &reg, "busybox:latest");
    let layout = bases::busybox_layout();
    let env = Env::new(&reg);
    let c = env.client();
    let img = c
        .import(&env.store, &format!("oci:{}:latest", layout.display()))
        .unwrap();
    assert_eq!(img.id.to_string(), want);

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
    let env2 = Env::new(&reg);
    let img = env2
        .client()
        .pull(
            &env2.store,
            &format!("oci-archive:{}:latest", archive.display()),
        )
        .unwrap();
    assert_eq!(img.id.to_string(), want);

    let darchive = dir.path().join("docker.tar");
    Skopeo::new().copy(
        &[],
        &format!("oci:{}:latest", layout.display()),
        &format!("docker-archive:{}:example.com/bb:7", darchive.display()),
    );
    let env3 = Env::new(&reg);
    let img = env3
        .client()
        .import(
            &env3.store,
            &format!("docker-archive:{}", darchive.display()),
        )
        .unwrap();
    assert_eq!(img.id.to_string(), want, "the config travels unchanged");
    assert_eq!(img.record.names, vec!["example.com/bb:7".to_string()]);
    // A corrupted oci layout blob is refused, naming it.
    let broken = dir.path().join("broken");
    kiln_tests::util::run_ok(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(&layout)
            .arg(&broken),
    );
    let m: Value =
        serde_json::from_slice(&std::fs::read(broken.join("index.json")).unwrap()).unwrap();
    let mdigest = m["manifests"][0]["digest"].as_str().unwrap().to_string();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(broken.join("blobs/sha256").join(&mdigest[7..])).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let lp = broken.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = std::fs::read(&lp).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&lp, &bytes).unwrap();
    let env4 = Env::new(&reg);
    let err = env4
        .client()
        .import(&env4.store, &format!("oci:{}:latest", broken.display()))
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layer), "{err}");
    assert!(
        !env4.store.has_blob(&layer.parse().unwrap()),
        "the bad layer is not stored"
    );
    assert!(
        env4.blob_count() <= 1,
        "at most the config got in: {:?}",
        env4.store.list_blobs().unwrap()
    );
    assert!(env4.tmp_is_empty());
    assert!(env4.store.list_images().unwrap().is_empty());
}

#[test]
fn wasm_artifacts_round_trip() {
    let reg = Registry::start(Variant::Plain);
    let env = Env::new(&reg);
    let c = env.client();
    let wasm = b"\0asm\x0d\0\x01\0 pretend component".to_vec();
    let d = c
        .push_artifact(&reg.docker("plugins/hello:1"), &wasm)
        .unwrap();
    let m = Skopeo::new().manifest(&reg, "plugins/hello:1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(
        Skopeo::new().manifest_digest(&reg, "plugins/hello:1"),
        d.to_string()
    );
    let (bytes, digest) = c.pull_artifact(&reg.docker("plugins/hello:1")).unwrap();
    assert_eq!(bytes, wasm);
    assert_eq!(digest, kiln_registry::Digest::of_bytes(&wasm));
    bases::push_busybox(&reg);
    let err = c.pull_artifact(&reg.docker("busybox:latest")).unwrap_err();
    assert!(err.to_string().contains("not a Wasm artifact"), "{err}");
}

#[test]
fn tls_and_basic_auth_together() {
    let reg = Registry::start(Variant::TlsHtpasswd);
    bases::push_busybox(&reg);
    let env = Env::new(&reg);
    let (user, pass) = reg.credentials().unwrap();
    let err = env
        .client()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    env.client()
        .login(&format!("docker://{}/", reg.host()), user, pass)
        .unwrap();
    let img = env
        .client()
        .pull(&env.store, &reg.docker("busybox:latest"))
        .unwrap();
    env.client()
        .push(
            &env.store,
            &img.id.to_string(),
            &reg.docker("again:1"),
            Some(PushFormat::Docker),
        )
        .unwrap();
    assert_eq!(
        Skopeo::new().manifest(&reg, "again:1")["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}
