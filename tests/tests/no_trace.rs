//! Nothing of what the injectors place reaches the image, the store or the build log: a build with
//! `--secret` (file and env), `RUN --mount=type=secret` (a file target and `env=`), a
//! `--run-mount` secret, `--inject proxy-ca --ca-cert` and proxy variables set. The secret bytes,
//! the CA (DER and base64 body lines) and the proxy values are looked for in every file of the
//! store (blobs decompressed: layers, configs, manifests; cache entries; snapshot directories), in
//! an oci-archive export and in the `--progress=plain` and `--progress=json` logs; the layer tars
//! are listed to show that the mount points left no empty files or directories. Each search is
//! first shown to find what it looks for in control files.

use kiln_tests::pki::Pki;
use kiln_tests::traces::{Hit, Needle, needle, names, stream_hits, traces};
use kiln_tests::util::{lossy, run_ok, sha256_bytes};
use kiln_tests::{Kiln, Registry, Variant, bases};
use std::path::Path;
use std::process::Command;

/// A unique token for this run, so that no other test's files can match.
fn token(kind: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{kind}{}", &sha256_bytes(format!("{kind}{nanos}{}", std::process::id()).as_bytes())[..20])
}

/// The needles of the CA: its DER bytes and every full line of its PEM body.
fn ca_needles(ca_pem: &Path) -> Vec<Needle> {
    let der = run_ok(Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(ca_pem)).stdout;
    let pem = std::fs::read_to_string(ca_pem).unwrap();
    let mut out = vec![needle("ca-der", der)];
    for (i, line) in pem.lines().filter(|l| l.len() == 64).enumerate() {
        out.push(needle(&format!("ca-pem-line-{i}"), line.as_bytes()));
    }
    assert!(out.len() >= 3, "the test CA has too few PEM body lines:\n{pem}");
    out
}

/// Layer tars of an extracted oci-archive (manifest order) and what each lists.
fn layer_listings(dir: &Path) -> Vec<(String, Vec<String>)> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| dir.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let mdigest = index["manifests"][0]["digest"].as_str().expect("index names a manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(mdigest)).unwrap()).unwrap();
    let mut out = Vec::new();
    for l in manifest["layers"].as_array().expect("manifest layers") {
        let digest = l["digest"].as_str().unwrap().to_string();
        let listing = run_ok(Command::new("tar").arg("-tf").arg(blob(&digest))).stdout;
        let entries = lossy(&listing)
            .lines()
            .map(|e| e.trim_start_matches("./").trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty() && e != ".")
            .collect();
        out.push((digest, entries));
    }
    out
}

#[test]
fn secrets_ca_and_proxies_leave_no_trace_in_store_archive_or_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(Variant::Plain);
    bases::push_busybox(&reg);
    let pki = Pki::generate(&tmp.path().join("pki"));

    let file_secret = token("kiln-nt-file-secret-");
    let env_secret = token("kiln-nt-env-secret-");
    let http_proxy = format!("http://{}.invalid:3128", token("hproxy-"));
    let https_proxy = format!("http://{}.invalid:3129", token("sproxy-"));
    let no_proxy_host = format!("{}.internal", token("noproxy-"));
    let secret_file = tmp.path().join("file.secret");
    std::fs::write(&secret_file, &file_secret).unwrap();

    let mut needles = vec![
        needle("file-secret", file_secret.as_bytes()),
        needle("env-secret", env_secret.as_bytes()),
        needle("http-proxy", http_proxy.as_bytes()),
        needle("https-proxy", https_proxy.as_bytes()),
        needle("no-proxy", no_proxy_host.as_bytes()),
    ];
    needles.extend(ca_needles(&pki.ca_cert));
    // Written by a RUN at run time (the Dockerfile only holds `$((6*7))`): proves that layers
    // are searched decompressed.
    let marker = needle("marker", format!("kiln-nt-42-marker-{}", &file_secret[20..30]).as_bytes());

    // Control: the search finds each needle as stored, gzip- and zstd-compressed.
    let control = tmp.path().join("control");
    std::fs::create_dir(&control).unwrap();
    let all: Vec<u8> = needles.iter().flat_map(|n| [n.bytes.as_slice(), b"\n"].concat()).collect();
    std::fs::write(control.join("plain"), &all).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &all).unwrap();
    std::fs::write(control.join("gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(control.join("zst-src"), &all).unwrap();
    run_ok(Command::new("zstd").args(["-q", "--rm", "-o"]).arg(control.join("zst")).arg(control.join("zst-src")));
    let (hits, files) = traces(&control, &needles);
    assert_eq!(files, 3);
    for n in &needles {
        for (file, decompressed) in [("plain", false), ("gz", true), ("zst", true)] {
            let want = Hit { needle: n.name.clone(), path: control.join(file), decompressed };
            assert!(hits.contains(&want), "the search missed {} in control file {file}: {hits:?}", n.name);
        }
    }

    let sha = |s: &str| sha256_bytes(s.as_bytes());
    let dockerfile = format!(
        "FROM {base}\n\
         RUN --mount=type=secret,id=filesec,target=/etc/app/file.key test \"$(sha256sum < /etc/app/file.key | cut -d' ' -f1)\" = {h_file} \
           && echo kiln-nt-$((6*7))-marker-{tail} > /marker\n\
         RUN --mount=type=secret,id=envsec,env=API_TOKEN test \"$(printf %s \"$API_TOKEN\" | sha256sum | cut -d' ' -f1)\" = {h_env} \
           && test ! -e /run/secrets/envsec && echo ok > /ok-env\n\
         RUN --mount=type=secret,id=envsec,target=/run/secrets/envsec,env=BOTH test -s /run/secrets/envsec && test -n \"$BOTH\" \
           && test \"$(sha256sum < /opt/global/token | cut -d' ' -f1)\" = {h_file} \
           && test \"$(printf %s \"$HTTPS_PROXY\" | sha256sum | cut -d' ' -f1)\" = {h_proxy} \
           && test \"$SSL_CERT_FILE\" = /etc/ssl/certs/ca-certificates.crt && grep -q 'BEGIN CERTIFICATE' \"$SSL_CERT_FILE\" \
           && echo ok > /ok-both\n\
         RUN test -z \"$API_TOKEN\" && test -z \"$BOTH\" && test ! -e /run/secrets && test ! -e /etc/app && echo ok > /ok-after\n",
        base = reg.reference("busybox:latest"),
        h_file = sha(&file_secret),
        h_env = sha(&env_secret),
        h_proxy = sha(&https_proxy),
        tail = &file_secret[20..30],
    );
    for n in &needles {
        assert!(!dockerfile.as_bytes().windows(n.bytes.len()).any(|w| w == n.bytes.as_slice()), "the Dockerfile itself holds {}", n.name);
    }
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), &dockerfile).unwrap();

    let mut kiln = Kiln::new();
    kiln.env("KILN_NT_TOKEN", &env_secret)
        .env("HTTP_PROXY", &http_proxy)
        .env("HTTPS_PROXY", &https_proxy)
        .env("NO_PROXY", &format!("127.0.0.1,localhost,::1,{no_proxy_host}"));
    let archive = tmp.path().join("image.tar");
    let common = |progress: &str| -> Vec<String> {
        let mut a: Vec<String> = ["build", "--tls-verify=false", "--inject", "proxy-ca", "--ca-cert"].map(String::from).to_vec();
        a.push(pki.ca_cert.display().to_string());
        a.push("--secret".into());
        a.push(format!("id=filesec,src={}", secret_file.display()));
        a.push("--secret".into());
        a.push("id=envsec,env=KILN_NT_TOKEN".into());
        a.push("--run-mount".into());
        a.push("type=secret,id=filesec,target=/opt/global/token,required".into());
        a.push(format!("--progress={progress}"));
        a
    };
    let mut plain = common("plain");
    plain.extend(["-t".into(), "nt".into(), "-t".into(), format!("oci-archive:{}", archive.display()), ctx.display().to_string()]);
    let o = kiln.output(&plain);
    let plain_log = format!("{}{}", lossy(&o.stdout), lossy(&o.stderr));
    assert!(o.status.success(), "the build failed:\n{plain_log}");
    assert!(plain_log.contains("STEP 5/5"), "{plain_log}");
    let mut json = common("json");
    json.extend(["--no-cache".into(), "-t".into(), "nt-json".into(), ctx.display().to_string()]);
    let o = kiln.output(&json);
    let json_log = format!("{}{}", lossy(&o.stdout), lossy(&o.stderr));
    assert!(o.status.success(), "the json build failed:\n{json_log}");
    assert!(json_log.lines().filter(|l| l.starts_with('{')).count() >= 5, "{json_log}");

    // The logs.
    for (name, log) in [("plain", &plain_log), ("json", &json_log)] {
        let found = stream_hits(log.as_bytes(), &needles).unwrap();
        assert!(found.is_empty(), "the --progress={name} log holds {found:?}:\n{log}");
    }

    // The store: blobs (layers decompressed, configs, manifests), cache entries, snapshots.
    let (hits, files) = traces(kiln.root(), &[needles.as_slice(), std::slice::from_ref(&marker)].concat());
    assert!(files > 10, "only {files} files in the store");
    assert!(
        hits.iter().any(|h| h.needle == "marker" && h.decompressed),
        "the marker written by RUN was not found in a decompressed layer: the search does not see layers ({hits:?})"
    );
    let leaks: Vec<&Hit> = hits.iter().filter(|h| h.needle != "marker").collect();
    assert!(leaks.is_empty(), "the store holds what the injectors placed: {leaks:?}");

    // The oci-archive, unpacked.
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run_ok(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&unpacked));
    let (hits, files) = traces(&unpacked, &[needles.as_slice(), std::slice::from_ref(&marker)].concat());
    assert!(files >= 4, "only {files} files in the archive");
    assert!(hits.iter().any(|h| h.needle == "marker" && h.decompressed), "{hits:?}");
    let leaks: Vec<&Hit> = hits.iter().filter(|h| h.needle != "marker").collect();
    assert!(leaks.is_empty(), "the archive holds what the injectors placed: {leaks:?}");
    assert!(names(&hits) == ["marker"]);

    // The layers: the busybox base, then one per RUN holding only what the RUN wrote; no mount
    // point (/etc/app, /run/secrets, /opt/global, /etc/ssl/certs) left behind, empty or not.
    let layers = layer_listings(&unpacked);
    assert_eq!(layers.len(), 5, "{layers:?}");
    let added: Vec<&Vec<String>> = layers[1..].iter().map(|(_, e)| e).collect();
    assert_eq!(added, [&vec!["marker".to_string()], &vec!["ok-env".to_string()], &vec!["ok-both".to_string()], &vec![
        "ok-after".to_string()
    ]]);
    for (digest, entries) in &layers {
        for e in entries {
            for gone in ["run", "opt", "etc/app", "etc/ssl", "etc/kiln"] {
                assert!(e != gone && !e.starts_with(&format!("{gone}/")), "layer {digest} holds {e}");
            }
        }
    }
}
