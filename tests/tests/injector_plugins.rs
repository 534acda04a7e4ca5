//! The built-in mount injectors (`proxy-ca`, `secrets`) as kiln embeds them, called through the
//! plugin host the way the build executor calls them: their answers, the host's view of secret
//! handles, and their errors.

use kiln_plugin_host::{Catalog, HostConfig, HostError, InjectedContent, Injection, PluginHost, PluginKind, RootfsReadFn, StepInfo};
use std::collections::BTreeMap;

fn host_and_catalog(dir: &std::path::Path) -> (PluginHost, Catalog) {
    let host = PluginHost::new(HostConfig::from_env(Some(dir.join("cache")))).expect("plugin host");
    (host, Catalog::new(dir.join("plugins"), kiln_builtins::components()))
}

fn step(requested: Vec<Vec<(&str, &str)>>, options: Vec<(&str, &str)>, files: Vec<(&str, Vec<u8>)>) -> StepInfo {
    let own = |v: Vec<(&str, &str)>| v.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    StepInfo {
        stage: 0,
        index: 1,
        argv: vec!["/bin/sh".into(), "-c".into(), "make".into()],
        requested: requested.into_iter().map(own).collect(),
        options: own(options),
        files: files.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

fn inject(name: &str, info: &StepInfo, rootfs: Option<RootfsReadFn>, granted: &[&str]) -> Result<Injection, HostError> {
    let dir = tempfile::tempdir().unwrap();
    let (host, catalog) = host_and_catalog(dir.path());
    let (plugin, _) = catalog.load(&host, PluginKind::Injector, name).expect("the built-in injector loads");
    let granted: Vec<String> = granted.iter().map(|s| s.to_string()).collect();
    host.inject(&plugin, info, rootfs, &granted)
}

fn secret_id(c: &InjectedContent) -> &str {
    match c {
        InjectedContent::Secret(id) => id,
        InjectedContent::Bytes(_) => panic!("a secret mount carries bytes"),
    }
}

#[test]
fn secrets_places_granted_secrets_and_skips_optional_missing_ones() {
    let info = step(
        vec![
            vec![("type", "secret"), ("id", "npmrc")],
            vec![("type", "secret"), ("id", "not-given")],
            vec![
                ("type", "secret"),
                ("id", "tok"),
                ("target", "/root/.tok"),
                ("mode", "0440"),
                ("uid", "1000"),
                ("gid", "1000"),
                ("required", "true"),
            ],
            vec![("type", "cache"), ("target", "/root/.cache")],
        ],
        vec![],
        vec![],
    );
    let inj = inject("secrets", &info, None, &["npmrc", "tok"]).unwrap();
    assert!(inj.env.is_empty());
    assert_eq!(inj.mounts.len(), 2, "{inj:?}");
    let m = &inj.mounts[0];
    assert_eq!((m.target.as_str(), secret_id(&m.content), m.mode, m.uid, m.gid), ("/run/secrets/npmrc", "npmrc", 0o400, 0, 0));
    let m = &inj.mounts[1];
    assert_eq!((m.target.as_str(), secret_id(&m.content), m.mode, m.uid, m.gid), ("/root/.tok", "tok", 0o440, 1000, 1000));
}

#[test]
fn secrets_hands_env_requests_to_the_host_by_handle() {
    let info = step(
        vec![
            vec![("type", "secret"), ("id", "tok"), ("env", "TOKEN")],
            vec![("type", "secret"), ("id", "tok"), ("env", "TOKEN_TOO"), ("target", "/etc/tok")],
            vec![("type", "secret"), ("id", "absent"), ("env", "ABSENT")],
        ],
        vec![],
        vec![],
    );
    let inj = inject("secrets", &info, None, &["tok"]).unwrap();
    assert!(inj.env.is_empty(), "secret values must not pass through the plugin: {:?}", inj.env);
    assert_eq!(inj.secret_env, [("TOKEN".to_string(), "tok".to_string()), ("TOKEN_TOO".to_string(), "tok".to_string())]);
    assert_eq!(inj.mounts.len(), 1, "{inj:?}");
    assert_eq!((inj.mounts[0].target.as_str(), secret_id(&inj.mounts[0].content)), ("/etc/tok", "tok"));
    // Without the grant the env request is skipped (optional) or fails (required).
    let info = step(vec![vec![("id", "tok"), ("env", "TOKEN"), ("required", "true")]], vec![], vec![]);
    let e = inject("secrets", &info, None, &[]).unwrap_err().to_string();
    assert!(e.contains("secret \"tok\" is required but was not given"), "{e}");
}

#[test]
fn secrets_reports_missing_required_secrets_and_bad_requests() {
    let info = step(vec![vec![("id", "deploy-key"), ("required", "true")]], vec![], vec![]);
    let e = inject("secrets", &info, None, &["other"]).unwrap_err().to_string();
    assert!(e.contains("invalid input: secret \"deploy-key\" is required but was not given"), "{e}");

    let info = step(vec![vec![("id", "tok"), ("env", "A=B")]], vec![], vec![]);
    let e = inject("secrets", &info, None, &["tok"]).unwrap_err().to_string();
    assert!(e.contains("env=\"A=B\" is not a variable name"), "{e}");

    let info = step(vec![vec![("id", "tok"), ("target", "relative/path")]], vec![], vec![]);
    let e = inject("secrets", &info, None, &["tok"]).unwrap_err().to_string();
    assert!(e.contains("not an absolute, normalized path"), "{e}");

    let info = step(vec![], vec![("verbose", "1")], vec![]);
    let e = inject("secrets", &info, None, &[]).unwrap_err().to_string();
    assert!(e.contains("unknown option \"verbose\""), "{e}");
}

/// A test CA made with openssl.
fn ca_pem(dir: &std::path::Path) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kiln injector test CA",
            "-keyout",
        ])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .output()
        .expect("running openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(dir.join("ca.pem")).unwrap()
}

#[test]
fn proxy_ca_follows_the_image_it_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let (user, img) = (tmp.path().join("user"), tmp.path().join("image"));
    std::fs::create_dir_all(&user).unwrap();
    std::fs::create_dir_all(&img).unwrap();
    let ca = ca_pem(&user);
    // A Fedora-like image with its bundle behind the RHEL path and a JVM.
    let image: BTreeMap<&str, Vec<u8>> = BTreeMap::from([
        ("/etc/os-release", b"NAME=Fedora\nID=fedora\n".to_vec()),
        ("/etc/pki/tls/certs/ca-bundle.crt", ca_pem(&img)),
        ("/usr/lib/jvm/jre/bin/java", b"\x7fELF".to_vec()),
    ]);
    let image_bundle = image["/etc/pki/tls/certs/ca-bundle.crt"].clone();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let reader: RootfsReadFn = Box::new(move |p: &str| {
        seen.lock().unwrap().push(p.to_string());
        Ok(image.get(p).cloned())
    });
    let info = step(vec![], vec![("HTTP_PROXY", "http://proxy.corp:8080"), ("no_proxy", "localhost")], vec![("ca-cert", ca.clone())]);
    let inj = inject("proxy-ca", &info, Some(reader), &[]).unwrap();

    let targets: Vec<&str> = inj.mounts.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["/etc/pki/tls/certs/ca-bundle.crt", "/etc/kiln/java-cacerts.p12"]);
    let InjectedContent::Bytes(bundle) = &inj.mounts[0].content else { panic!("bundle is bytes") };
    assert!(bundle.starts_with(&image_bundle), "the image's bundle comes first");
    let text = String::from_utf8_lossy(bundle);
    assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    let body_line = String::from_utf8_lossy(&ca).lines().nth(2).unwrap().to_string();
    assert!(text.contains(&body_line), "the user's CA is in the bundle");
    let env: BTreeMap<&str, &str> = inj.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(env["SSL_CERT_FILE"], "/etc/pki/tls/certs/ca-bundle.crt");
    assert_eq!(env["http_proxy"], "http://proxy.corp:8080");
    assert_eq!(env["HTTP_PROXY"], "http://proxy.corp:8080");
    assert_eq!(env["NO_PROXY"], "localhost");
    assert!(env["JAVA_TOOL_OPTIONS"].contains("-Dhttp.proxyHost=proxy.corp -Dhttp.proxyPort=8080"), "{}", env["JAVA_TOOL_OPTIONS"]);
    let asked = asked.lock().unwrap();
    assert!(asked.iter().any(|p| p == "/etc/os-release") && asked.iter().any(|p| p == "/usr/lib/jvm/jre/bin/java"), "{asked:?}");
}

#[test]
fn proxy_ca_refuses_what_it_does_not_know() {
    let info = step(vec![], vec![], vec![("client-cert", b"x".to_vec())]);
    let e = inject("proxy-ca", &info, None, &[]).unwrap_err().to_string();
    assert!(e.contains("invalid input: unknown file \"client-cert\""), "{e}");
    let info = step(vec![], vec![("PROXY", "x")], vec![]);
    let e = inject("proxy-ca", &info, None, &[]).unwrap_err().to_string();
    assert!(e.contains("invalid input: unknown option \"PROXY\""), "{e}");
}
